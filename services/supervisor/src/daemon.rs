//! The supervisor daemon: serves the Supervisor API on its Unix socket until SIGTERM/SIGINT.
//! `berth-supervisor` runs it alone; `berthd` runs it beside the other services in one process.
use crate::{server, Options, Supervisor};
use anyhow::Context;
use berth_common::{events, Config, Service};

/// Opens the service's state and serves its socket until SIGTERM/SIGINT.
pub async fn run() -> anyhow::Result<()> {
    let config = Config::load().context("read the configuration")?;
    let socket = config.socket(Service::Supervisor);
    let opts = Options::from_config(config);
    tracing::info!(state = %opts.state_dir.display(), shim = %opts.shim_binary.display(), "starting");
    let sup = Supervisor::start_up(opts)
        .await
        .context("open and reconcile container records")?;
    let routes = tonic::service::Routes::new(server::Service::new(sup.clone()).into_server())
        .add_service(events::server(sup.events().clone()));
    berth_common::serve::serve_unix(
        &socket,
        routes,
        &[server::SERVICE_NAME, events::SERVICE_NAME],
    )
    .await?;
    sup.shutdown();
    Ok(())
}
