//! `berth-engine`: serves the engine (coordinator) API on its Unix socket until
//! SIGTERM/SIGINT.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    berth_common::telemetry::init("info");
    berth_engine::daemon::run().await
}
