//! Per-container log pipelines, drivers and log reading.
//!
//! [`router::Router`] owns the logs (the testable logic); [`ingest`] serves the shims'
//! plain socket; [`service`] is the thin gRPC layer. Drivers implement
//! [`logger::Logger`]; json-file ([`jsonfile`]) is the only one so far.
pub mod attrs;
pub mod awslogs;
pub mod daemon;
pub mod error;
pub mod fluentd;
pub mod ingest;
pub mod jsonfile;
pub mod local;
pub mod logger;
pub mod optvalue;
pub mod remote;
pub mod router;
pub mod service;
pub mod syslog;
pub mod syslog_tls;
pub mod tag;

pub use error::{Error, Result};
pub use router::Router;

/// The gRPC service name reported by health.
pub const SERVICE_NAME: &str = "berth.logs.v1.LogRouter";
