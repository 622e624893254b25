//! The container's stdio: pipes, or a pty (opened inside the container) whose master
//! the shim keeps.
use std::os::fd::{AsRawFd, OwnedFd};

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

/// The container's ends: pipes installed as 0, 1, 2 in the child, or the socket on
/// which the child sends the master of the pty it opens inside the container.
pub enum ChildStdio {
    Pipes {
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    },
    Pty(OwnedFd),
}

/// The shim's ends before the container process has set up: with a terminal, the
/// master arrives on a socket once the child is ready.
pub enum PendingStdio {
    Ready(ParentStdio),
    Pty { sock: OwnedFd, open_stdin: bool },
}

impl PendingStdio {
    /// After the child reported ready: the shim's ends.
    pub fn finish(self) -> Result<ParentStdio> {
        match self {
            PendingStdio::Ready(p) => Ok(p),
            PendingStdio::Pty { sock, open_stdin } => {
                let master = super::pty::recv_master(&sock)
                    .ctx(|| "receive the pty master from the container".into())?;
                // Like runc, the terminal is all of 0, 1 and 2; without open stdin the
                // shim just never types into it.
                let stdin = if open_stdin {
                    Some(sys::dup(&master).ctx(|| "dup pty master".into())?)
                } else {
                    None
                };
                Ok(ParentStdio {
                    stdout: master,
                    stderr: None,
                    stdin,
                    pty: true,
                })
            }
        }
    }
}

pub fn create(terminal: bool, open_stdin: bool) -> Result<(PendingStdio, ChildStdio)> {
    if terminal {
        let (parent, child) = super::pty::socketpair().ctx(|| "pty socketpair".into())?;
        return Ok((
            PendingStdio::Pty {
                sock: parent,
                open_stdin,
            },
            ChildStdio::Pty(child),
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
        PendingStdio::Ready(ParentStdio {
            stdout: out_r,
            stderr: Some(err_r),
            stdin,
            pty: false,
        }),
        ChildStdio::Pipes {
            stdin: child_in,
            stdout: out_w,
            stderr: err_w,
        },
    ))
}

fn dev_null() -> std::io::Result<OwnedFd> {
    Ok(std::fs::File::open("/dev/null")?.into())
}

/// In the child: a new session and, for pipes, fds 0-2. A pty is set up later, inside
/// the container's root ([`super::pty::setup_in_container`]).
pub fn install(c: &ChildStdio) -> std::io::Result<()> {
    unsafe { libc::setsid() };
    match c {
        ChildStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => {
            sys::dup2(stdin.as_raw_fd(), 0)?;
            sys::dup2(stdout.as_raw_fd(), 1)?;
            sys::dup2(stderr.as_raw_fd(), 2)
        }
        ChildStdio::Pty(_) => Ok(()),
    }
}

/// In the child, inside the container's root: the pty, if there is one.
pub fn install_pty(c: &ChildStdio) -> crate::error::Result<()> {
    match c {
        ChildStdio::Pty(sock) => super::pty::setup_in_container(sock),
        ChildStdio::Pipes { .. } => Ok(()),
    }
}
