//! Shared by berth's services and CLI: where things live ([`config`]), serving gRPC on a
//! Unix socket with health and reflection ([`serve`]), connecting to a service
//! ([`client`]), status helpers ([`status`]), tracing set-up and trace propagation
//! ([`telemetry`]), per-method gRPC metrics ([`metrics`]) and mutual TLS over TCP ([`tls`]).
pub mod client;
pub mod cluster;
pub mod config;
pub mod events;
pub mod ids;
pub mod memory;
pub mod metrics;
pub mod netsettings;
pub mod serve;
pub mod status;
pub mod telemetry;
pub mod tls;

pub use config::{Config, Service};
