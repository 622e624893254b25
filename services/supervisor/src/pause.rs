//! Freezing and thawing a container's cgroup (`pause`/`unpause`), waiting until the
//! kernel reports the state reached.
use std::time::Duration;

use cgroups_rs::fs::{freezer::FreezerController, hierarchies, Cgroup};
use cgroups_rs::FreezerState;

use crate::{
    cgroup,
    error::{Error, Result},
};

const PATIENCE: Duration = Duration::from_secs(10);

fn controller(cg: &Cgroup) -> Result<&FreezerController> {
    cg.controller_of::<FreezerController>()
        .ok_or_else(|| Error::Internal("no freezer cgroup controller on this host".into()))
}

/// True when the kernel reports the cgroup frozen (v2: `cgroup.events`; v1:
/// `freezer.state`), false when thawed; None while in between.
fn frozen(path: &str, cg: &Cgroup) -> Result<Option<bool>> {
    if cg.v2() {
        let events = hierarchies::auto().root().join(path).join("cgroup.events");
        let text = std::fs::read_to_string(&events)
            .map_err(|e| Error::io(format!("read {}", events.display()), e))?;
        return Ok(text
            .lines()
            .find_map(|l| l.strip_prefix("frozen "))
            .map(|v| v.trim() == "1"));
    }
    Ok(
        match controller(cg)?
            .state()
            .map_err(|e| Error::Internal(format!("freezer state of {path}: {e}")))?
        {
            FreezerState::Frozen => Some(true),
            FreezerState::Thawed => Some(false),
            FreezerState::Freezing => None,
        },
    )
}

/// Freezes (`freeze`) or thaws the container's cgroup and waits until done.
pub fn set(instance: &str, id: &str, freeze: bool) -> Result<()> {
    let path = cgroup::path(instance, id);
    let cg = Cgroup::load(hierarchies::auto(), path.as_str());
    if !cg.exists() {
        return Err(Error::FailedPrecondition(format!(
            "container {id} has no cgroup"
        )));
    }
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        // v1 may fall back to THAWED if a task could not be frozen: write again.
        let c = controller(&cg)?;
        let res = if freeze { c.freeze() } else { c.thaw() };
        res.map_err(|e| Error::Internal(format!("freezer of {path}: {e}")))?;
        for _ in 0..20 {
            if frozen(&path, &cg)? == Some(freeze) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Internal(format!(
                "cgroup {path} did not become {} in {PATIENCE:?}",
                if freeze { "frozen" } else { "thawed" }
            )));
        }
    }
}

pub async fn set_async(instance: &str, id: &str, freeze: bool) -> Result<()> {
    let (instance, id) = (instance.to_string(), id.to_string());
    tokio::task::spawn_blocking(move || set(&instance, &id, freeze))
        .await
        .map_err(|e| Error::Internal(format!("freezer task: {e}")))?
}
