//! Container records, lifecycle and per-container shims.
//!
//! The gRPC layer ([`server`]) is thin; the work is in [`lifecycle`] (state machine and
//! reconciliation), [`store`] (SQLite records), [`spec`] (OCI bundle), [`cgroup`],
//! [`shim`] (spawning and its report), [`watch`] (pidfds, exit.json) and [`attach`].
pub mod attach;
pub mod cgroup;
pub mod error;
pub mod lifecycle;
pub mod names;
pub mod server;
pub mod shim;
pub mod signal;
pub mod spec;
pub mod store;
pub mod watch;

pub use error::{Error, Result};
pub use lifecycle::{Options, Supervisor};
