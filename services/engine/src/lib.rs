//! The coordinator: the user-facing API, and the multi-service operations as sagas.
//!
//! Layout: [`clients`] (lazy channels to the five services), [`spec`] (pure rules that turn
//! an image and the user's flags into a container spec), [`saga`] (the undo stack and
//! the teardown collector), [`engine`] (the operations), [`grpc`] (the thin gRPC skin),
//! [`network`] (links, connect/disconnect) with its pure parts in [`ports`], [`links`]
//! and [`netsettings`], [`resources`] (Docker's rules for the resource limits), [`events`]
//! (the services' event logs merged for `berth events`).
//! The engine owns no durable state.
pub mod clients;
pub mod daemon;
pub mod engine;
pub mod events;
pub mod grpc;
pub mod info;
pub mod links;
pub mod netsettings;
pub mod network;
pub mod ports;
pub mod resources;
pub mod saga;
pub mod spec;

pub use engine::Engine;
