//! `berth-supervisor`: serves the Supervisor API on its Unix socket until SIGTERM/SIGINT.
fn main() -> anyhow::Result<()> {
    berth_common::serve::run_daemon(berth_supervisor::daemon::run)
}
