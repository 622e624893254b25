//! Per-container shim and the built-in runtime.
