//! The container's stdio: pipes, or a pty whose master the shim keeps.
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::error::{Context, Result};
use crate::sys;

/// The shim's ends.
pub struct ParentStdio {
    /// Container stdout (or the pty master).
    pub stdout: OwnedFd,
    /// Container stderr; none with a pty.
    pub stderr: Option<OwnedFd>,
    /// Where attach STDIN goes; none when the container's stdin is /dev/null.
    pub stdin: Option<OwnedFd>,
    pub pty: bool,
}

/// The container's ends, installed as 0, 1, 2 in the child.
pub struct ChildStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub pty: bool,
}

pub fn create(terminal: bool, open_stdin: bool) -> Result<(ParentStdio, ChildStdio)> {
    if terminal {
        let mut master = 0;
        let mut slave = 0;
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        if rc != 0 {
            return Err(crate::Error::io("openpty", std::io::Error::last_os_error()));
        }
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        for fd in [&master, &slave] {
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        let stdin = if open_stdin {
            Some(sys::dup(&master).ctx(|| "dup pty master".into())?)
        } else {
            None
        };
        // Like runc, the terminal is all of 0, 1 and 2; without open stdin the shim just
        // never types into it.
        let child_in = sys::dup(&slave).ctx(|| "dup pty slave".into())?;
        let child_err = sys::dup(&slave).ctx(|| "dup pty slave".into())?;
        return Ok((
            ParentStdio {
                stdout: master,
                stderr: None,
                stdin,
                pty: true,
            },
            ChildStdio {
                stdin: child_in,
                stdout: slave,
                stderr: child_err,
                pty: true,
            },
        ));
    }
    let (out_r, out_w) = sys::pipe().ctx(|| "stdout pipe".into())?;
    let (err_r, err_w) = sys::pipe().ctx(|| "stderr pipe".into())?;
    let (stdin, child_in) = if open_stdin {
        let (r, w) = sys::pipe().ctx(|| "stdin pipe".into())?;
        (Some(w), r)
    } else {
        (None, dev_null().ctx(|| "open /dev/null".into())?)
    };
    Ok((
        ParentStdio {
            stdout: out_r,
            stderr: Some(err_r),
            stdin,
            pty: false,
        },
        ChildStdio {
            stdin: child_in,
            stdout: out_w,
            stderr: err_w,
            pty: false,
        },
    ))
}

fn dev_null() -> std::io::Result<OwnedFd> {
    Ok(std::fs::File::open("/dev/null")?.into())
}

/// In the child: a new session, the pty as controlling terminal, and fds 0-2.
pub fn install(c: &ChildStdio) -> std::io::Result<()> {
    unsafe { libc::setsid() };
    if c.pty && unsafe { libc::ioctl(c.stdout.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    sys::dup2(c.stdin.as_raw_fd(), 0)?;
    sys::dup2(c.stdout.as_raw_fd(), 1)?;
    sys::dup2(c.stderr.as_raw_fd(), 2)
}
