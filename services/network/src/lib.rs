//! The network service: networks (`none`, `host`, the default `bridge`, user-defined
//! bridge and macvlan networks), IPAM, per-container network namespaces and endpoints,
//! published ports, the firewall and the embedded DNS.
//!
//! Layout: [`netns`] and [`link`] do the kernel work (on dedicated OS threads, never on a
//! tokio worker), [`endpoint`] builds one container link, [`ipam`] and [`names`] are pure
//! rules, [`store`] keeps the records in SQLite and [`state`] derives views from them,
//! [`service`], [`networks`] and [`reconcile`] are the logic, and [`grpc`] the thin skin.
//!
//! A container's configuration is recorded at create (AttachContainer); its kernel objects,
//! ports and DNS names exist only between ActivateContainer and DeactivateContainer, which
//! the supervisor calls around each run of the container (ADR 7).
pub mod cluster;
pub mod daemon;
pub mod dns;
pub mod endpoint;
pub mod error;
pub mod firewall;
pub mod grpc;
pub mod hosts_lock;
pub mod ipam;
pub mod link;
pub mod names;
pub mod netns;
pub mod networks;
mod overlay;
mod overlay_sync;
pub mod proxy;
mod reconcile;
pub mod service;
pub mod state;
pub mod store;
pub mod sysctl;
pub mod vxlan;

pub use error::{Error, Result};
pub use service::{NetworkService, Options};

#[cfg(test)]
mod root_tests;
#[cfg(test)]
mod vxlan_tests;
