//! The image-store daemon: serves the image store on its Unix socket until SIGTERM/SIGINT. `berth-
//! image-store` runs it alone; `berthd` runs it beside the other services in one process.
use std::sync::Arc;

use crate::{service::ImageStoreService, Store, SERVICE_NAME};
use anyhow::Context;
use berth_common::{
    config::FileConfig,
    events::{self, EventLog},
    Config, Service,
};

/// Opens the service's state and serves its socket until SIGTERM/SIGINT.
pub async fn run() -> anyhow::Result<()> {
    // A malformed configuration file stops the service with the file, line and key.
    let file = FileConfig::load()?;
    let config = Config::from_file(&file);
    let state = config.state_dir(Service::ImageStore);
    berth_common::config::ensure_private_dir(&state)
        .with_context(|| format!("create {}", state.display()))?;
    let events = EventLog::open_or_memory(&state, "image-store");
    let store = tokio::task::spawn_blocking(move || Store::open(&state))
        .await
        .context("open image store")?
        .context("open image store")?;
    let service = ImageStoreService::new(Arc::new(store))
        .with_registries(file.registries)
        .with_events(events.clone());
    let routes =
        tonic::service::Routes::new(service.into_server()).add_service(events::server(events));
    berth_common::serve::serve_unix(
        &config.socket(Service::ImageStore),
        routes,
        &[SERVICE_NAME, events::SERVICE_NAME],
    )
    .await
}
