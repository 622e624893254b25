//! Serving a service's gRPC API on its Unix socket, and on TCP with mutual TLS when
//! berth.toml's `[listen]` names it, with gRPC health, reflection, a tracing span per
//! request (child of the caller's, see [`crate::telemetry`]), per-method metrics (served
//! at `/metrics` when `[metrics]` names the service, see [`crate::metrics`]), and a clean
//! shutdown on SIGTERM or SIGINT that flushes exported spans.
use std::{net::SocketAddr, os::unix::fs::PermissionsExt, path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{
    service::Routes,
    transport::{server::TcpIncoming, Server, ServerTlsConfig},
};

use crate::{
    config::FileConfig,
    metrics::{MetricsLayer, Registry},
    Config, Service,
};

/// How long a stopping service waits for open calls to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The `main` of a service process: limits malloc arenas before any thread starts, builds
/// the tokio runtime, installs tracing (see [`crate::telemetry::init`]) and runs `daemon`
/// (a service's `daemon::run`, or all of them in `berthd`) to its end.
pub fn run_daemon<F>(daemon: impl FnOnce() -> F) -> anyhow::Result<()>
where
    F: std::future::Future<Output = anyhow::Result<()>>,
{
    crate::memory::limit_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    runtime.block_on(async {
        crate::telemetry::init("info");
        daemon().await
    })
}

/// Serves `routes` on `socket` (mode 0600) until SIGTERM/SIGINT. `service_names` are the
/// fully qualified gRPC service names reported as SERVING by the health service.
///
/// When `socket` is the configured socket of a berth service ([`Config::socket`]) and
/// berth.toml's `[listen]` gives that service a TCP address, the same API is also served
/// there with mutual TLS ([`crate::tls::server_config`]); both stop together.
pub async fn serve_unix(
    socket: &Path,
    routes: Routes,
    service_names: &[&str],
) -> anyhow::Result<()> {
    let tcp = tcp_listener(socket).await?;
    let metrics = metrics_listener(socket).await?;
    let listener = bind_unix(socket)?;
    crate::memory::keep_small();
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in service_names {
        reporter
            .set_service_status(*name, tonic_health::ServingStatus::Serving)
            .await;
    }
    // Advertise only what this socket serves, although the descriptor set holds every
    // berth service (types shared between packages resolve either way).
    let reflection = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(berth_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        for name in service_names {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    let reflection_v1 = reflection()
        .build_v1()
        .context("build reflection service")?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("build reflection service")?;
    let routes = routes
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    tracing::info!(socket = %socket.display(), "serving");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let registry = metrics.as_ref().map(|(_, registry)| registry.clone());
    let metrics_task = metrics
        .map(|(listener, registry)| tokio::spawn(crate::metrics::serve_http(listener, registry)));
    let unix = Server::builder()
        .trace_fn(crate::telemetry::rpc_span)
        .layer(MetricsLayer::new(registry.clone()))
        .add_routes(routes.clone())
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), stopped(stop_rx.clone()));
    let server = async move {
        let Some((listener, tls, addr)) = tcp else {
            return unix.await.context("serve gRPC");
        };
        let tcp = Server::builder()
            .tls_config(tls)
            .context("TLS settings")?
            .trace_fn(crate::telemetry::rpc_span)
            .layer(MetricsLayer::new(registry))
            .add_routes(routes)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                stopped(stop_rx),
            );
        tracing::info!(%addr, "serving with mutual TLS");
        let unix = async { unix.await.context("serve gRPC") };
        let tcp = async { tcp.await.with_context(|| format!("serve gRPC on {addr}")) };
        tokio::try_join!(unix, tcp).map(|_| ())
    };
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result?,
        _ = shutdown_signal() => {
            let _ = stop_tx.send(true);
            // Long-lived streams (`logs -f`, attach) would hold a graceful shutdown open
            // forever: give them a moment, then go.
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(result) => result?,
                Err(_) => tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; stopping anyway"),
            }
        }
    }
    let _ = std::fs::remove_file(socket);
    if let Some(task) = metrics_task {
        task.abort();
    }
    tracing::info!("stopped");
    crate::telemetry::shutdown().await;
    Ok(())
}

/// The service whose socket is `socket` under `file`'s configuration.
fn service_at(file: &FileConfig, socket: &Path) -> Option<Service> {
    let config = Config::from_file(file);
    Service::ALL
        .into_iter()
        .find(|s| config.socket(*s) == socket)
}

/// The `/metrics` listener and the registry of the service whose socket is `socket`, when
/// berth.toml gives it a `[metrics]` address. A busy address is an error.
async fn metrics_listener(socket: &Path) -> anyhow::Result<Option<(TcpListener, Arc<Registry>)>> {
    let file = FileConfig::load()?;
    let Some(service) = service_at(&file, socket) else {
        return Ok(None);
    };
    let Some(addr) = file.metrics_addr(service) else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen for metrics on {addr}"))?;
    let addr = listener.local_addr().unwrap_or(addr);
    tracing::info!(%addr, "serving metrics at /metrics");
    Ok(Some((listener, Registry::new(service.name()))))
}

/// The TCP listener and TLS settings of the service whose socket is `socket`, when
/// berth.toml gives it a `[listen]` address. Missing or invalid certificates and a busy
/// address are errors: a service configured for TCP does not start without it.
async fn tcp_listener(
    socket: &Path,
) -> anyhow::Result<Option<(TcpListener, ServerTlsConfig, SocketAddr)>> {
    let file = FileConfig::load()?;
    let Some(service) = service_at(&file, socket) else {
        return Ok(None);
    };
    let Some(addr) = file.listen_addr(service) else {
        return Ok(None);
    };
    let dir = file.tls_dir();
    let tls = crate::tls::server_config(&dir, service)
        .with_context(|| format!("TLS material of {} in {}", service.name(), dir.display()))?;
    // Check the certificate and key now, not at the first connection.
    Server::builder()
        .tls_config(tls.clone())
        .with_context(|| format!("TLS material of {} in {}", service.name(), dir.display()))?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("listen on {addr}"))?;
    let addr = listener.local_addr().unwrap_or(addr);
    Ok(Some((listener, tls, addr)))
}

/// Binds a Unix socket, replacing a stale socket file left by a killed process.
pub fn bind_unix(socket: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("remove stale {}", socket.display())),
    }
    let listener =
        UnixListener::bind(socket).with_context(|| format!("bind {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod {}", socket.display()))?;
    Ok(listener)
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
}
