//! Connecting to a service: its Unix socket, or over TCP with mutual TLS when berth.toml
//! names it in `[remote]` (see [`crate::tls`]). Clients of berth's own services use a
//! [`Traced`] channel, which carries the caller's trace context in every call.
use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint},
};

use crate::{config::FileConfig, telemetry::TraceInjector, tls, Config, Service};

/// A channel that adds the current span's W3C `traceparent`/`tracestate` to each call's
/// metadata when spans are exported (see [`crate::telemetry`]); otherwise a plain channel.
pub type Traced = InterceptedService<Channel, TraceInjector>;

/// `channel` with trace context propagation.
pub fn traced(channel: Channel) -> Traced {
    InterceptedService::new(channel, TraceInjector)
}

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

/// The lazy channel to `service` as configured: its `[remote]` endpoint over mutual TLS
/// (with `client.pem` from the TLS directory) when the configuration file names one, else
/// its Unix socket, propagating the trace context. Must be called within a tokio runtime.
pub fn channel(config: &Config, service: Service) -> Traced {
    traced(plain_channel(config, service))
}

/// [`channel`] without trace context propagation.
fn plain_channel(config: &Config, service: Service) -> Channel {
    // The daemons have loaded (and checked) the file already: an error here means it
    // changed since; the local socket is the safe reading.
    let file = FileConfig::load().unwrap_or_default();
    match file.remote(service) {
        None => unix_channel(config.socket(service)),
        Some(url) => match tls::remote_channel(url, &tls::ClientFiles::in_dir(&file.tls_dir())) {
            Ok(channel) => channel,
            Err(e) => {
                let message = format!("{} at {url}: {e:#}", service.name());
                tracing::error!(error = %message, "cannot reach a remote service");
                failing_channel(message)
            }
        },
    }
}

/// A channel whose every call fails as a connection error carrying `message` (a client
/// whose settings are wrong, so that calls say why).
pub fn failing_channel(message: String) -> Channel {
    Endpoint::from_static("http://berth.invalid").connect_with_connector_lazy(tower::service_fn(
        move |_| {
            let message = message.clone();
            async move { Err::<TokioIo<UnixStream>, _>(std::io::Error::other(message)) }
        },
    ))
}
