//! `berth-engine`: serves the engine (coordinator) API on its Unix socket until
//! SIGTERM/SIGINT.
fn main() -> anyhow::Result<()> {
    berth_common::serve::run_daemon(berth_engine::daemon::run)
}
