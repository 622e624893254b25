//! Tests that measure the kernel's effect (CPU time, block I/O rates, overlay throughput):
//! a binary of their own, so that no functional test runs beside them and skews the figures
//! (cargo runs test binaries one after another).
mod limits;
mod limits_io;
mod overlay_bench;
