//! Named and anonymous volumes and mount resolution.
//!
//! [`store::Store`] holds the logic (testable against a temp dir), [`mounts`] the pure
//! validation of mount specs, and [`service`] is the thin gRPC layer.
pub mod copyup;
pub mod daemon;
pub mod driver;
pub mod error;
pub mod mounts;
pub mod service;
pub mod store;

pub use error::{Error, Result};
pub use store::Store;

/// The gRPC service name reported by health.
pub const SERVICE_NAME: &str = "berth.volume.v1.Volumes";
