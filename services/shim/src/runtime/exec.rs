//! `exec`: one more process in a running container. The shim joins the container's PID
//! namespace for its children (setns only affects processes forked afterwards), forks,
//! moves the child into the container's cgroups; the child joins the other namespaces
//! (mount last, which also puts it in the container's root), then finishes like the
//! container's first process.
use std::convert::Infallible;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Process;

use super::{cgroup, read_status, stdio, StartError, Started};
use crate::error::{Context, Error, Result};
use crate::sys;

/// Joined in this order; `pid` is joined by the shim itself.
const NAMESPACES: [(&str, libc::c_int); 5] = [
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("mnt", libc::CLONE_NEWNS),
];

fn gone(pid: i32, path: &str, e: std::io::Error) -> Error {
    Error::Spec(format!(
        "container process {pid} is not running: open {path}: {e}"
    ))
}

/// Opens `/proc/<pid>/ns/<name>`; `None` when it is the shim's own namespace already.
fn open_ns(pid: i32, name: &str) -> Result<Option<OwnedFd>> {
    let path = format!("/proc/{pid}/ns/{name}");
    let f = std::fs::File::open(&path).map_err(|e| gone(pid, &path, e))?;
    let theirs = f.metadata().map_err(|e| gone(pid, &path, e))?;
    let own = if name == "pid" {
        "/proc/self/ns/pid_for_children".to_string()
    } else {
        format!("/proc/self/ns/{name}")
    };
    let same =
        std::fs::metadata(&own).is_ok_and(|m| m.ino() == theirs.ino() && m.dev() == theirs.dev());
    Ok((!same).then(|| f.into()))
}

/// The `cgroup.procs` files of `pid`'s cgroups, one per hierarchy (host view).
fn cgroup_files(pid: i32) -> Result<Vec<PathBuf>> {
    let path = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&path).map_err(|e| gone(pid, &path, e))?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .ctx(|| "read /proc/self/mountinfo".into())?;
    Ok(
        cgroup::procs_files_of(&text, &cgroup::parse_mountinfo(&mounts))
            .into_iter()
            .filter(|f| f.exists())
            .collect(),
    )
}

fn join_cgroups(child: i32, files: &[PathBuf]) -> Result<()> {
    for f in files {
        std::fs::write(f, child.to_string()).ctx(|| format!("write {}", f.display()))?;
    }
    Ok(())
}

/// Starts `process` in the container whose first process is `pid`, up to just before
/// execve (like [`super::start`]).
pub fn exec(pid: i32, process: &Process, user: &str) -> Result<Started, StartError> {
    let fail = |error| StartError { error, pid: None };
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(fail(Error::Spec("exec process has no args".into())));
    }
    let pid_ns = open_ns(pid, "pid").map_err(fail)?;
    let mut namespaces = Vec::new();
    for (name, flag) in NAMESPACES {
        if let Some(fd) = open_ns(pid, name).map_err(fail)? {
            namespaces.push((fd, flag, name));
        }
    }
    let cgroups = cgroup_files(pid).map_err(fail)?;
    // Exec's stdin is always a pipe: the shim closes it when no client wants it.
    let (parent_io, child_io) =
        stdio::create(process.terminal().unwrap_or(false), true).map_err(fail)?;
    let (cg_r, cg_w) = sys::pipe().ctx(|| "pipe".into()).map_err(fail)?;
    let (st_r, st_w) = sys::pipe().ctx(|| "pipe".into()).map_err(fail)?;
    let (go_r, go_w) = sys::pipe().ctx(|| "pipe".into()).map_err(fail)?;
    if let Some(ns) = &pid_ns {
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWPID) } != 0 {
            return Err(fail(Error::io(
                format!("join pid namespace of {pid}"),
                std::io::Error::last_os_error(),
            )));
        }
    }
    drop(pid_ns);

    // SAFETY: the shim is single-threaded, so the child may allocate freely.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(fail(Error::io(
            "fork exec process",
            std::io::Error::last_os_error(),
        )));
    }
    if child == 0 {
        drop((cg_w, st_r, go_w, parent_io));
        let st = st_w.as_raw_fd();
        let err = match in_child(process, user, &namespaces, &child_io, cg_r, &st_w, go_r) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        super::write_status(st, err.exit_code(), &err.to_string());
        unsafe { libc::_exit(err.exit_code()) };
    }
    drop((cg_r, st_w, go_r, child_io, namespaces));
    let failed = |error| {
        super::reap(child);
        StartError {
            error,
            pid: Some(child),
        }
    };
    if let Err(e) = join_cgroups(child, &cgroups) {
        return Err(failed(e));
    }
    if let Err(e) = sys::write_all(cg_w.as_raw_fd(), b"c") {
        return Err(failed(Error::io("signal exec process", e)));
    }
    drop(cg_w);
    match read_status(st_r.as_raw_fd()) {
        Some((0, _)) => match parent_io.finish() {
            Ok(stdio) => Ok(Started {
                pid: child,
                stdio,
                go: Some(go_w),
                status: st_r,
            }),
            Err(e) => Err(failed(e)),
        },
        Some((code, msg)) => Err(failed(Error::Reported { code, msg })),
        None => Err(failed(Error::Spec(
            "exec process exited during setup".into(),
        ))),
    }
}

fn in_child(
    process: &Process,
    user: &str,
    namespaces: &[(OwnedFd, libc::c_int, &str)],
    io: &stdio::ChildStdio,
    cgroup: OwnedFd,
    status: &OwnedFd,
    go: OwnedFd,
) -> Result<Infallible> {
    super::init::reset_signals();
    let mut b = [0u8; 1];
    if sys::read_full(cgroup.as_raw_fd(), &mut b).ctx(|| "wait for cgroup setup".into())? != 1 {
        unsafe { libc::_exit(125) };
    }
    drop(cgroup);
    for (fd, flag, name) in namespaces {
        if unsafe { libc::setns(fd.as_raw_fd(), *flag) } != 0 {
            return Err(Error::io(
                format!("join {name} namespace"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    stdio::install(io).ctx(|| "set up exec stdio".into())?;
    stdio::install_pty(io)?;
    let cwd = if process.cwd().as_os_str().is_empty() {
        Path::new("/")
    } else {
        process.cwd().as_path()
    };
    // Docker's exec does not create a missing working directory.
    match std::fs::metadata(cwd) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(Error::Workdir(cwd.display().to_string())),
        Err(e) => {
            return Err(Error::Chdir {
                path: cwd.display().to_string(),
                source: e,
            })
        }
    }
    super::process::exec(process, user, cwd, status, go, false)
}
