//! `berth-supervisor`: serves the Supervisor API on its Unix socket until SIGTERM/SIGINT.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    berth_common::telemetry::init("info");
    berth_supervisor::daemon::run().await
}
