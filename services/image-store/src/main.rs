//! `berth-image-store`: serves the image store on its Unix socket until SIGTERM/SIGINT.
fn main() -> anyhow::Result<()> {
    berth_common::serve::run_daemon(berth_image_store::daemon::run)
}
