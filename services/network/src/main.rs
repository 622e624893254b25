//! `berth-network`: serves the network service on its Unix socket until SIGTERM/SIGINT.
use anyhow::Context;
use berth_common::{events, Config, Service};
use berth_proto::network::v1::network_server::NetworkServer;
use tonic::service::Routes;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    berth_common::telemetry::init("info");
    let config = Config::load().context("read the configuration")?;
    let service = berth_network::NetworkService::open(&config)
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
