//! The log-router daemon: serves the log router's gRPC API and the shims' ingest socket until
//! SIGTERM/SIGINT. `berth-log-router` runs it alone; `berthd` runs it beside the other services in
//! one process.
use std::sync::Arc;

use crate::{ingest, service::LogRouterService, Router, SERVICE_NAME};
use anyhow::Context;
use berth_common::{Config, Service};

/// Opens the service's state and serves its socket until SIGTERM/SIGINT.
pub async fn run() -> anyhow::Result<()> {
    let config = Config::load().context("read the configuration")?;
    let state = config.state_dir(Service::LogRouter);
    berth_common::config::ensure_private_dir(&state)
        .with_context(|| format!("create {}", state.display()))?;
    let router = tokio::task::spawn_blocking(move || Router::open(&state))
        .await
        .context("open log router")?
        .context("open log router")?;
    let router = Arc::new(router);
    let ingest_socket = config.log_ingest_socket();
    let listener = berth_common::serve::bind_unix(&ingest_socket)?;
    tracing::info!(socket = %ingest_socket.display(), "ingesting");
    let ingest = tokio::spawn({
        let router = router.clone();
        async move {
            if let Err(e) = ingest::serve(router, listener).await {
                tracing::error!(error = %e, "ingest socket failed");
            }
        }
    });
    let routes = tonic::service::Routes::new(LogRouterService::new(router).into_server());
    let served = berth_common::serve::serve_unix(
        &config.socket(Service::LogRouter),
        routes,
        &[SERVICE_NAME],
    )
    .await;
    ingest.abort();
    let _ = std::fs::remove_file(&ingest_socket);
    served
}
