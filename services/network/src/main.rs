//! `berth-network`: serves the network service on its Unix socket until SIGTERM/SIGINT.
fn main() -> anyhow::Result<()> {
    berth_common::serve::run_daemon(berth_network::daemon::run)
}
