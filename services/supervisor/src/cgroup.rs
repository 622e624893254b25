//! The container's cgroup `<instance>/<id>` in every hierarchy (v1, or v2 when unified).
//! No limits yet: the runtime moves the process in; we create and delete.
use std::time::Duration;

use cgroups_rs::fs::{hierarchies, Cgroup};

use crate::error::{Error, Result};

pub fn path(instance: &str, id: &str) -> String {
    format!("{instance}/{id}")
}

/// Creates the cgroup (idempotent).
pub fn create(instance: &str, id: &str) -> Result<()> {
    let path = path(instance, id);
    Cgroup::new(hierarchies::auto(), &path)
        .map(|_| ())
        .map_err(|e| Error::Internal(format!("create cgroup {path}: {e}")))
}

/// True when the cgroup exists.
pub fn exists(instance: &str, id: &str) -> bool {
    Cgroup::load(hierarchies::auto(), path(instance, id)).exists()
}

/// The processes in the cgroup.
pub fn procs(instance: &str, id: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = Cgroup::load(hierarchies::auto(), path(instance, id))
        .procs()
        .into_iter()
        .map(|p| p.pid as i32)
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn delete_once(path: &str) -> Result<()> {
    let cg = Cgroup::load(hierarchies::auto(), path);
    if !cg.exists() {
        return Ok(());
    }
    cg.delete()
        .map_err(|e| Error::Internal(format!("delete cgroup {path}: {e}")))
}

/// Deletes the cgroup, retrying for up to ~2 s while it is busy (processes still leaving).
pub async fn delete(instance: &str, id: &str) -> Result<()> {
    let path = path(instance, id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let p = path.clone();
        let res = tokio::task::spawn_blocking(move || delete_once(&p))
            .await
            .map_err(|e| Error::Internal(format!("delete cgroup {path}: {e}")))?;
        match res {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
