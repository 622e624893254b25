//! The container's first process between fork and execve. The shim is single-threaded,
//! so allocating here is safe.
use std::convert::Infallible;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::stdio::ChildStdio;
use super::{rootfs, ANN_INIT, ANN_USER};
use crate::error::{Context, Error, Result};
use crate::sys;

pub(super) fn run(
    spec: &Spec,
    bundle: &Path,
    io: &ChildStdio,
    cgroup: OwnedFd,
    status: &OwnedFd,
    go: OwnedFd,
) -> Result<Infallible> {
    reset_signals();
    // Wait until the shim has moved us into our cgroups (so the cgroup namespace is
    // rooted there and all memory is charged to the container).
    let mut b = [0u8; 1];
    if sys::read_full(cgroup.as_raw_fd(), &mut b).ctx(|| "wait for cgroup setup".into())? != 1 {
        unsafe { libc::_exit(125) };
    }
    drop(cgroup);
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Spec("no process".into()))?;
    let linux = spec.linux().as_ref();
    let namespaces = linux
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    let has_ns = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    let mut flags = 0;
    for ns in &namespaces {
        let flag = ns_flag(ns.typ());
        match ns.path() {
            Some(path) if ns.typ() != LinuxNamespaceType::Pid => {
                let f = std::fs::File::open(path)
                    .ctx(|| format!("open namespace {}", path.display()))?;
                if unsafe { libc::setns(f.as_raw_fd(), flag) } != 0 {
                    return Err(Error::io(
                        format!("join namespace {}", path.display()),
                        std::io::Error::last_os_error(),
                    ));
                }
            }
            None if ns.typ() != LinuxNamespaceType::Pid => flags |= flag,
            _ => {}
        }
    }
    if flags != 0 && unsafe { libc::unshare(flags) } != 0 {
        return Err(Error::io(
            "unshare namespaces",
            std::io::Error::last_os_error(),
        ));
    }
    super::stdio::install(io).ctx(|| "set up container stdio".into())?;

    let rootfs = rootfs::rootfs_path(spec, bundle);
    if !has_ns(LinuxNamespaceType::Mount) {
        return Err(Error::Spec(
            "the built-in runtime needs a mount namespace".into(),
        ));
    }
    rootfs::prepare(spec, &rootfs)?;
    if let Some(h) = spec
        .hostname()
        .as_deref()
        .filter(|_| has_ns(LinuxNamespaceType::Uts))
    {
        if unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) } != 0 {
            return Err(Error::io(
                format!("sethostname {h}"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    rootfs::pivot(&rootfs)?;
    // The pty comes from the container's own devpts, so `tty` names it.
    super::stdio::install_pty(io)?;

    let cwd = if process.cwd().as_os_str().is_empty() {
        PathBuf::from("/")
    } else {
        process.cwd().clone()
    };
    match std::fs::metadata(&cwd) {
        Ok(m) if !m.is_dir() => return Err(Error::Workdir(cwd.display().to_string())),
        Ok(_) => {}
        // Docker creates a missing working directory.
        Err(_) => rootfs::mkdir_all(&cwd)?,
    }
    if let Some(l) = linux {
        rootfs::mask(l.masked_paths().as_deref().unwrap_or_default())?;
        rootfs::readonly(l.readonly_paths().as_deref().unwrap_or_default())?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        rootfs::root_readonly()?;
    }
    let annotations = spec.annotations().clone().unwrap_or_default();
    let who = annotations.get(ANN_USER).map_or("", String::as_str);
    let init = annotations.get(ANN_INIT).is_some_and(|v| v == "true");
    super::process::exec(process, who, &cwd, status, go, init)
}

pub(super) fn ns_flag(t: LinuxNamespaceType) -> libc::c_int {
    match t {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => 0x80,
    }
}

/// The shim blocks SIGCHLD and ignores SIGPIPE; both would leak into the container.
pub(super) fn reset_signals() {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
}
