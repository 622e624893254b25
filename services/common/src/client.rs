//! Connecting to a service's Unix socket.
use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use crate::{Config, Service};

/// A channel that connects on first use and reconnects after the service restarts, so
/// services may start in any order.
pub fn unix_channel(socket: impl Into<PathBuf>) -> Channel {
    let socket = socket.into();
    Endpoint::from_static("http://berth.local").connect_with_connector_lazy(tower::service_fn(
        move |_| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        },
    ))
}

/// The lazy channel to `service` as configured.
pub fn channel(config: &Config, service: Service) -> Channel {
    unix_channel(config.socket(service))
}
