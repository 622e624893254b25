//! The container's cgroup `<instance>/<id>` in every hierarchy (v1, or v2 when unified).
//! The supervisor creates and deletes it and writes its limits ([`crate::limits`]); the
//! runtime moves the process in between fork and exec.
use std::{path::PathBuf, time::Duration};

use cgroups_rs::fs::{hierarchies, Cgroup};

use crate::error::{Error, Result};

pub fn path(instance: &str, id: &str) -> String {
    format!("{instance}/{id}")
}

/// The controllers a container's limits and stats use (v1 hierarchy names).
const CONTROLLERS: [&str; 7] = [
    "memory", "cpu", "cpuacct", "cpuset", "blkio", "pids", "freezer",
];

/// Where each controller's hierarchy is mounted: one directory per controller on v1
/// (several may share one), the unified root on v2. Detected once.
#[derive(Debug, Clone)]
pub struct Layout {
    v2_root: Option<PathBuf>,
    v1: Vec<(String, PathBuf)>,
}

impl Layout {
    /// This host's layout, from `/proc/self/mountinfo`.
    pub fn detect() -> Layout {
        if hierarchies::is_cgroup2_unified_mode() {
            return Layout::fixed_v2(PathBuf::from(hierarchies::UNIFIED_MOUNTPOINT));
        }
        let mut v1: Vec<(String, PathBuf)> = Vec::new();
        for m in hierarchies::mountinfo_self() {
            for c in m
                .super_opts
                .iter()
                .filter(|o| CONTROLLERS.contains(&o.as_str()))
            {
                if !v1.iter().any(|(have, _)| have == c) {
                    v1.push((c.clone(), m.mount_point.clone()));
                }
            }
        }
        Layout { v2_root: None, v1 }
    }

    /// A v1 layout with the given (controller, mount point) pairs (tests).
    pub fn fixed_v1(mounts: Vec<(String, PathBuf)>) -> Layout {
        Layout {
            v2_root: None,
            v1: mounts,
        }
    }

    /// A v2 layout rooted at `root` (tests).
    pub fn fixed_v2(root: PathBuf) -> Layout {
        Layout {
            v2_root: Some(root),
            v1: Vec::new(),
        }
    }

    pub fn is_v2(&self) -> bool {
        self.v2_root.is_some()
    }

    /// The directory of cgroup `rel` (`<instance>/<id>`, or "" for the root) in
    /// `controller`'s hierarchy; None when that controller is not mounted (v1).
    pub fn dir(&self, controller: &str, rel: &str) -> Option<PathBuf> {
        let rel = rel.trim_start_matches('/');
        if let Some(root) = &self.v2_root {
            return Some(if rel.is_empty() {
                root.clone()
            } else {
                root.join(rel)
            });
        }
        let (_, mount) = self.v1.iter().find(|(c, _)| c == controller)?;
        Some(if rel.is_empty() {
            mount.clone()
        } else {
            mount.join(rel)
        })
    }

    /// v2: whether the root offers `controller` to its children.
    pub fn v2_root_has_controller(&self, controller: &str) -> bool {
        let Some(root) = &self.v2_root else {
            return false;
        };
        std::fs::read_to_string(root.join("cgroup.controllers"))
            .is_ok_and(|s| s.split_whitespace().any(|c| c == controller))
    }
}

/// Creates the cgroup (idempotent).
pub fn create(instance: &str, id: &str) -> Result<()> {
    let path = path(instance, id);
    Cgroup::new(hierarchies::auto(), &path)
        .map(|_| ())
        .map_err(|e| Error::Internal(format!("create cgroup {path}: {e}")))
}

/// Creates the instance's parent cgroup (idempotent): its files are those of every
/// container's cgroup, which the root's are not (v1 `pids.max`, v2 `memory.max`).
pub fn create_instance(instance: &str) -> Result<()> {
    Cgroup::new(hierarchies::auto(), instance)
        .map(|_| ())
        .map_err(|e| Error::Internal(format!("create cgroup {instance}: {e}")))
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
