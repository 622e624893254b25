//! Container records, lifecycle and per-container shims
