//! `berth-volume`: serves the volume service on its Unix socket until SIGTERM/SIGINT.
fn main() -> anyhow::Result<()> {
    berth_common::serve::run_daemon(berth_volume::daemon::run)
}
