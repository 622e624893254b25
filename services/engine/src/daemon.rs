//! The engine daemon: serves the engine (coordinator) API on its Unix socket until SIGTERM/SIGINT.
//! `berth-engine` runs it alone; `berthd` runs it beside the other services in one process.
use anyhow::Context;
use berth_common::{config::FileConfig, Config, Service};
use berth_proto::engine::v1::engine_server::EngineServer;
use tonic::service::Routes;

/// Opens the service's state and serves its socket until SIGTERM/SIGINT.
pub async fn run() -> anyhow::Result<()> {
    let file = FileConfig::load().context("read the configuration")?;
    let config = Config::from_file(&file);
    let engine = crate::Engine::new(&config).with_log_defaults(file.logs);
    // Detached `--rm` containers whose waiter died with a previous engine.
    let rescan = engine.clone();
    tokio::spawn(async move { rescan.rescan_auto_remove().await });
    const MAX: usize = 256 * 1024 * 1024;
    let server = EngineServer::new(engine)
        .max_decoding_message_size(MAX)
        .max_encoding_message_size(MAX);
    berth_common::serve::serve_unix(
        &config.socket(Service::Engine),
        Routes::new(server),
        &["berth.engine.v1.Engine"],
    )
    .await
}
