//! The network service: the networks `none` and `host`, and per-container network
//! namespaces (`none`: a new namespace with only `lo`, up; `host`: the host's;
//! `container:<id>`: another container's).
//!
//! Layout: [`netns`] does the kernel work (on dedicated OS threads, never on a tokio
//! worker), [`store`] keeps the attachments in SQLite, [`service`] is the logic and
//! [`grpc`] the thin gRPC skin.
pub mod error;
pub mod grpc;
pub mod netns;
pub mod service;
pub mod store;

pub use error::{Error, Result};
pub use service::NetworkService;
