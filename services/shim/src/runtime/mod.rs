//! The built-in OCI runtime: forks the container's first process into new namespaces,
//! builds its root file system and credentials, and execs it when told to.
//!
//! Shim ↔ child handshake over three close-on-exec pipes:
//! 1. the shim puts the child into its cgroups, then writes one byte on `cgroup`;
//! 2. the child sets everything up and writes a status message (code 0 = ready) on
//!    `status`, or the error that stopped it;
//! 3. the shim writes one byte on `go`; the child execs. A failing execve writes a second
//!    status message; a successful one closes `status` (end of file).
pub mod capabilities;
pub mod cgroup;
pub mod exec;
pub mod exec_path;
mod init;
mod initproc;
mod process;
pub mod pty;
pub mod rootfs;
pub mod securejoin;
pub mod stdio;
pub mod user;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Context, Error, Result};
use crate::sys;

pub const ANN_USER: &str = "io.berth.user";
pub const ANN_STDIN: &str = "io.berth.stdin";
/// `"true"`: the container's PID 1 is the built-in init (`docker run --init`).
pub const ANN_INIT: &str = "io.berth.init";

/// A container process that is set up and waits for [`Started::go`].
pub struct Started {
    pub pid: i32,
    pub stdio: stdio::ParentStdio,
    go: Option<OwnedFd>,
    status: OwnedFd,
}

/// Where the container's first process stands after `start` fails.
#[derive(Debug)]
pub struct StartError {
    pub error: Error,
    /// The child, already reaped, if there was one.
    pub pid: Option<i32>,
}

impl Started {
    /// Lets the process exec.
    pub fn go(&mut self) {
        if let Some(fd) = self.go.take() {
            let _ = sys::write_all(fd.as_raw_fd(), b"g");
        }
    }

    /// After [`Started::go`]: `Ok` once execve succeeded, or the exec error.
    pub fn exec_result(&self) -> Result<(), Error> {
        match read_status(self.status.as_raw_fd()) {
            Some((0, _)) | None => Ok(()),
            Some((code, msg)) => Err(Error::Reported { code, msg }),
        }
    }

    pub fn status_fd(&self) -> RawFd {
        self.status.as_raw_fd()
    }
}

fn write_status(fd: RawFd, code: i32, msg: &str) {
    let msg = &msg.as_bytes()[..msg.len().min(3000)];
    let mut buf = Vec::with_capacity(6 + msg.len());
    buf.extend_from_slice(&((4 + msg.len()) as u16).to_be_bytes());
    buf.extend_from_slice(&code.to_be_bytes());
    buf.extend_from_slice(msg);
    let _ = sys::write_all(fd, &buf);
}

/// One status message, or `None` at end of file.
fn read_status(fd: RawFd) -> Option<(i32, String)> {
    let mut len = [0u8; 2];
    if sys::read_full(fd, &mut len).ok()? != 2 {
        return None;
    }
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    if sys::read_full(fd, &mut body).ok()? != body.len() || body.len() < 4 {
        return None;
    }
    let code = i32::from_be_bytes(body[..4].try_into().ok()?);
    Some((code, String::from_utf8_lossy(&body[4..]).into_owned()))
}

fn reap(pid: i32) {
    let mut status = 0;
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, &mut status, 0);
    }
}

/// Forks the container's first process and runs its setup up to just before execve.
pub fn start(spec: &Spec, bundle: &Path) -> Result<Started, StartError> {
    let fail = |error| StartError { error, pid: None };
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| fail(Error::Spec("config.json has no process".into())))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(fail(Error::Spec("config.json has no process.args".into())));
    }
    let annotations = spec.annotations().clone().unwrap_or_default();
    let open_stdin = annotations.get(ANN_STDIN).is_some_and(|v| v == "true");
    let (parent_io, child_io) =
        stdio::create(process.terminal().unwrap_or(false), open_stdin).map_err(fail)?;
    let (cg_r, cg_w) = sys::pipe().ctx(|| "pipe".into()).map_err(fail)?;
    let (st_r, st_w) = sys::pipe().ctx(|| "pipe".into()).map_err(fail)?;
    let (go_r, go_w) = sys::pipe().ctx(|| "pipe".into()).map_err(fail)?;

    let linux = spec.linux().as_ref();
    let namespaces = linux
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    if let Some(pid_ns) = namespaces
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Pid)
    {
        if pid_ns.path().is_some() {
            return Err(fail(Error::Spec(
                "joining an existing pid namespace is not supported".into(),
            )));
        }
        // Only the shim's children enter the new PID namespace; the shim forks just once.
        if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
            return Err(fail(Error::io(
                "unshare pid namespace",
                std::io::Error::last_os_error(),
            )));
        }
    }

    // SAFETY: the shim is single-threaded, so the child may allocate freely.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(fail(Error::io(
            "fork container process",
            std::io::Error::last_os_error(),
        )));
    }
    if pid == 0 {
        drop((cg_w, st_r, go_w, parent_io));
        let st = st_w.as_raw_fd();
        let err = match init::run(spec, bundle, &child_io, cg_r, &st_w, go_r) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        write_status(st, err.exit_code(), &err.to_string());
        unsafe { libc::_exit(err.exit_code()) };
    }
    drop((cg_r, st_w, go_r, child_io));
    let failed = |error| {
        reap(pid);
        StartError {
            error,
            pid: Some(pid),
        }
    };
    let cgroups_path = linux
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Err(e) = cgroup::join(pid, &cgroups_path) {
        return Err(failed(e));
    }
    if let Err(e) = sys::write_all(cg_w.as_raw_fd(), b"c") {
        return Err(failed(Error::io("signal container process", e)));
    }
    drop(cg_w);
    match read_status(st_r.as_raw_fd()) {
        Some((0, _)) => match parent_io.finish() {
            Ok(stdio) => Ok(Started {
                pid,
                stdio,
                go: Some(go_w),
                status: st_r,
            }),
            Err(e) => Err(failed(e)),
        },
        Some((code, msg)) => Err(failed(Error::Reported { code, msg })),
        None => Err(failed(Error::Spec(
            "container process exited during setup".into(),
        ))),
    }
}
