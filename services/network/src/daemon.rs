//! The network daemon: serves the network service on its Unix socket until SIGTERM/SIGINT. `berth-
//! network` runs it alone; `berthd` runs it beside the other services in one process.
use anyhow::Context;
use berth_common::{events, Config, Service};
use berth_proto::network::v1::network_server::NetworkServer;
use tonic::service::Routes;

/// Opens the service's state and serves its socket until SIGTERM/SIGINT.
pub async fn run() -> anyhow::Result<()> {
    let config = Config::load().context("read the configuration")?;
    let service = crate::NetworkService::open(&config)
        .await
        .context("open the network state")?;
    let events = service.events().clone();
    let routes = Routes::new(NetworkServer::new(service)).add_service(events::server(events));
    berth_common::serve::serve_unix(
        &config.socket(Service::Network),
        routes,
        &["berth.network.v1.Network", events::SERVICE_NAME],
    )
    .await
}
