//! `berthd`: the six berth services in one process, each on its own Unix socket exactly as
//! when they run apart (`berth-engine`, `berth-supervisor`, …). One copy of the code, one
//! runtime and one heap instead of six take the idle engine to less than half the memory. The
//! services stay separate gRPC APIs, so tools still call them one by one, and any of them
//! can run alone instead (or on another host). Shims stay one process per container, so
//! containers keep running across a restart of `berthd`.
use std::{future::Future, pin::Pin};

use anyhow::Context;

type Daemon = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

fn main() -> anyhow::Result<()> {
    berth_common::serve::run_daemon(run_all)
}

async fn run_all() -> anyhow::Result<()> {
    let daemons: [(&str, Daemon); 6] = [
        ("image store", Box::pin(berth_image_store::daemon::run())),
        ("supervisor", Box::pin(berth_supervisor::daemon::run())),
        ("network", Box::pin(berth_network::daemon::run())),
        ("volume", Box::pin(berth_volume::daemon::run())),
        ("log router", Box::pin(berth_log_router::daemon::run())),
        ("engine", Box::pin(berth_engine::daemon::run())),
    ];
    let mut running = tokio::task::JoinSet::new();
    for (name, daemon) in daemons {
        running.spawn(async move { daemon.await.with_context(|| format!("the {name} service")) });
    }
    // Each serves until SIGTERM/SIGINT; one that fails (a busy socket, a broken store)
    // stops the process, as it would stop its own process when run apart.
    let mut outcome = Ok(());
    while let Some(done) = running.join_next().await {
        let served = match done {
            Ok(served) => served,
            // Stopped below, after the first failure.
            Err(e) if e.is_cancelled() => continue,
            Err(e) => Err(anyhow::anyhow!("a service panicked: {e}")),
        };
        if let Err(e) = served {
            if outcome.is_ok() {
                outcome = Err(e);
            }
            running.abort_all();
        }
    }
    berth_common::telemetry::shutdown().await;
    outcome
}
