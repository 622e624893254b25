//! The volume daemon: serves the volume service on its Unix socket until SIGTERM/SIGINT. `berth-
//! volume` runs it alone; `berthd` runs it beside the other services in one process.
use std::sync::Arc;

use crate::{service::VolumeService, Store, SERVICE_NAME};
use anyhow::Context;
use berth_common::{
    events::{self, EventLog},
    Config, Service,
};

/// Opens the service's state and serves its socket until SIGTERM/SIGINT.
pub async fn run() -> anyhow::Result<()> {
    let config = Config::load().context("read the configuration")?;
    let state = config.state_dir(Service::Volume);
    berth_common::config::ensure_private_dir(&state)
        .with_context(|| format!("create {}", state.display()))?;
    let events = EventLog::open_or_memory(&state, "volume");
    let store = tokio::task::spawn_blocking(move || Store::open(&state))
        .await
        .context("open volume store")?
        .context("open volume store")?;
    let service = VolumeService::new(Arc::new(store)).with_events(events.clone());
    let routes =
        tonic::service::Routes::new(service.into_server()).add_service(events::server(events));
    berth_common::serve::serve_unix(
        &config.socket(Service::Volume),
        routes,
        &[SERVICE_NAME, events::SERVICE_NAME],
    )
    .await
}
