//! berth's image store: content-addressed blobs, image configs and tags, unpacked layer
//! snapshots (overlayfs lower dirs) and containers' writable layers.
//!
//! [`store::Store`] holds the logic; [`service::ImageStoreService`] is the thin gRPC layer.
pub mod config;
pub mod daemon;
pub mod db;
pub mod error;
pub mod layer;
pub mod reference;
pub mod registry;
pub mod service;
pub mod store;
pub mod unpack;

pub use error::{Error, Result};
pub use store::Store;

/// The gRPC service name reported by the health service.
pub const SERVICE_NAME: &str = "berth.image.v1.ImageStore";
