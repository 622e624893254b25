//! `berth-network`: serves the network service on its Unix socket until SIGTERM/SIGINT.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    berth_common::telemetry::init("info");
    berth_network::daemon::run().await
}
