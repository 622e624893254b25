//! `berth-log-router`: serves the log router's gRPC API and the shims' ingest socket
//! until SIGTERM/SIGINT.
fn main() -> anyhow::Result<()> {
    berth_common::serve::run_daemon(berth_log_router::daemon::run)
}
