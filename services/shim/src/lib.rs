//! Per-container shim and the built-in OCI runtime.
//!
//! The shim is paid once per container, so it stays single-threaded and small: one
//! `poll` loop, no async runtime. `runtime` turns an OCI bundle into a running process;
//! `shim` holds its stdio, feeds the log router and attach clients, and records the exit.
pub mod args;
pub mod error;
pub mod otlp;
pub mod rfc3339;
pub mod runtime;
pub mod shim;
pub mod sys;

pub use error::Error;
