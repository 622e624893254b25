//! `berth-image-store`: serves the image store on its Unix socket until SIGTERM/SIGINT.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    berth_common::telemetry::init("info");
    berth_image_store::daemon::run().await
}
