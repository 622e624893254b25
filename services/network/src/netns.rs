//! Network namespace files: `<run>/netns/<container id>`, each a bind mount of an nsfs
//! inode, so the namespace lives while the file is mounted.
//!
//! Namespace switches (`unshare`, `setns`) happen only on a dedicated OS thread that exits
//! afterwards: a thread's network namespace must never leak into the tokio workers, and the
//! multi-threaded daemon never forks.
//!
//! The netns directory is deliberately *not* turned into a private mount point: a
//! container's mount namespace copies these bind mounts when it is cloned, but the
//! container then pivots into its rootfs and detaches the old root, which drops the copies;
//! and since Linux 3.18 unlinking a file that is a mount point in another namespace detaches
//! it there. A self-bind of the directory would instead be one more host mount that outlives
//! the service and that every cleanup (tests, `berth-down`) would have to know about.
use std::{
    ffi::CString,
    io,
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use nix::{
    mount::{mount, umount2, MntFlags, MsFlags},
    sched::{setns, unshare, CloneFlags},
};

use crate::{Error, Result};

/// Creates a new network namespace bound at `path` with `lo` up. Runs on its own thread.
/// On failure nothing is left at `path` (no file, no mount).
pub fn create(path: &Path) -> Result<()> {
    let path = path.to_path_buf();
    on_thread(move || {
        let result = create_here(&path);
        if result.is_err() {
            let _ = remove(&path);
        }
        result
    })
}

/// Body of [`create`]; runs on a thread that is thrown away afterwards.
fn create_here(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::sys(format!("create {}", dir.display()), e))?;
    }
    // A leftover file of a half-done attempt (crash between steps) is replaced.
    remove(path)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::sys(format!("create {}", path.display()), e))?;
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| Error::sys("unshare network namespace", e))?;
    let tid = nix::unistd::gettid();
    let source = PathBuf::from(format!("/proc/self/task/{tid}/ns/net"));
    mount(
        Some(&source),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        Error::sys(
            format!("bind {} onto {}", source.display(), path.display()),
            e,
        )
    })?;
    set_loopback_up().map_err(|e| Error::sys("bring lo up", e))?;
    Ok(())
}

/// Unmounts and deletes the namespace file at `path`. Missing or unmounted files succeed.
pub fn remove(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point; ENOENT: no file.
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(Error::sys(format!("unmount {}", path.display()), e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::sys(format!("remove {}", path.display()), e)),
    }
}

/// True when `path` is a mounted network namespace file (an nsfs inode).
pub fn is_namespace(path: &Path) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    // The width of the field differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type().0 as i64 == NSFS_MAGIC)
        .unwrap_or(false)
}

/// Runs `f` inside the network namespace at `path`, on a thread of its own.
pub fn in_namespace<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let path = path.to_path_buf();
    on_thread(move || {
        let file = std::fs::File::open(&path)
            .map_err(|e| Error::sys(format!("open {}", path.display()), e))?;
        setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| Error::sys(format!("join {}", path.display()), e))?;
        Ok(f())
    })
}

/// Runs `f` on a new OS thread and waits for it.
pub(crate) fn on_thread<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(f)
        .map_err(|e| Error::sys("spawn namespace thread", e))?
        .join()
        .map_err(|_| Error::sys("namespace thread", io::Error::other("panicked")))?
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    let name = CString::new(name).map_err(io::Error::other)?;
    let bytes = name.as_bytes_with_nul();
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if bytes.len() > req.ifr_name.len() {
        return Err(io::Error::other("interface name too long"));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    Ok(req)
}

fn inet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The interface flags of `name` in the calling thread's network namespace.
pub fn interface_flags(name: &str) -> io::Result<libc::c_short> {
    let sock = inet_socket()?;
    let mut req = ifreq_for(name)?;
    // SAFETY: SIOCGIFFLAGS reads into the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFFLAGS the flags member is the active one.
    Ok(unsafe { req.ifr_ifru.ifru_flags })
}

/// Sets IFF_UP on `lo` in the calling thread's network namespace.
fn set_loopback_up() -> io::Result<()> {
    let sock = inet_socket()?;
    let mut req = ifreq_for("lo")?;
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Names of the interfaces in the calling thread's network namespace.
pub fn interface_names() -> Vec<String> {
    let mut names = Vec::new();
    // SAFETY: if_nameindex returns an array terminated by a zero entry, freed below.
    unsafe {
        let list = libc::if_nameindex();
        if list.is_null() {
            return names;
        }
        let mut entry = list;
        while (*entry).if_index != 0 && !(*entry).if_name.is_null() {
            names.push(
                std::ffi::CStr::from_ptr((*entry).if_name)
                    .to_string_lossy()
                    .into_owned(),
            );
            entry = entry.add(1);
        }
        libc::if_freenameindex(list);
    }
    names
}
