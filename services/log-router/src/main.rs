//! `berth-log-router`: serves the log router's gRPC API and the shims' ingest socket
//! until SIGTERM/SIGINT.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    berth_common::telemetry::init("info");
    berth_log_router::daemon::run().await
}
