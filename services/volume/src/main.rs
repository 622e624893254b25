//! `berth-volume`: serves the volume service on its Unix socket until SIGTERM/SIGINT.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    berth_common::telemetry::init("info");
    berth_volume::daemon::run().await
}
