//! A host-wide lock (`flock`) around choosing a subnet and putting its gateway address on
//! a bridge: every engine on the machine (parallel test engines, several instances) takes
//! it, so two of them never pick the same free subnet at the same moment. Once the address
//! is on the bridge, the others see it as a host address and avoid it.
use std::{
    fs::File,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

use crate::{Error, Result};

/// Default path of the IPAM lock.
pub const IPAM_LOCK: &str = "/run/lock/berth-ipam.lock";

/// Held while alive; the kernel releases it when the file closes (also on a crash).
pub struct HostLock {
    _file: File,
}

impl HostLock {
    /// Blocks until the exclusive lock on `path` is held. Call from blocking code only.
    pub fn acquire(path: &Path) -> Result<HostLock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::sys(format!("create {}", dir.display()), e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Error::sys(format!("open {}", path.display()), e))?;
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(HostLock { _file: file });
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::sys(format!("lock {}", path.display()), e));
            }
        }
    }
}

/// The lock path: `BERTH_IPAM_LOCK` or [`IPAM_LOCK`].
pub fn ipam_lock_path() -> PathBuf {
    std::env::var_os("BERTH_IPAM_LOCK")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(IPAM_LOCK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_excludes_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/ipam.lock");
        let first = HostLock::acquire(&path).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        let t = std::thread::spawn(move || {
            let _second = HostLock::acquire(&p).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        drop(first);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        t.join().unwrap();
    }
}
