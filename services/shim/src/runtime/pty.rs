//! A terminal inside the container, the way runc makes one: the container process opens
//! the master from the container's own `/dev/ptmx` (its devpts instance), makes the slave
//! its controlling terminal and fds 0-2, and hands the master to the shim over a unix
//! socket (SCM_RIGHTS).
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::error::{Context, Result};
use crate::sys;

/// A connected pair of close-on-exec unix stream sockets: (shim end, container end).
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// In the container process, after pivot_root and setsid: opens a pty from `/dev/ptmx`,
/// installs its slave as controlling terminal and 0-2, and sends the master on `sock`.
pub fn setup_in_container(sock: &OwnedFd) -> Result<()> {
    let master = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags_noctty()
        .open("/dev/ptmx")
        .ctx(|| "open /dev/ptmx".into())?;
    let m = master.as_raw_fd();
    let unlock: libc::c_int = 0;
    if unsafe { libc::ioctl(m, libc::TIOCSPTLCK, &unlock) } != 0 {
        return Err(crate::Error::io(
            "unlockpt /dev/ptmx",
            io::Error::last_os_error(),
        ));
    }
    let mut n: libc::c_uint = 0;
    if unsafe { libc::ioctl(m, libc::TIOCGPTN, &mut n) } != 0 {
        return Err(crate::Error::io(
            "ptsname /dev/ptmx",
            io::Error::last_os_error(),
        ));
    }
    let name = format!("/dev/pts/{n}");
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags_noctty()
        .open(&name)
        .ctx(|| format!("open {name}"))?;
    let s = slave.as_raw_fd();
    if unsafe { libc::ioctl(s, libc::TIOCSCTTY, 0) } != 0 {
        return Err(crate::Error::io(
            format!("make {name} the controlling terminal"),
            io::Error::last_os_error(),
        ));
    }
    for fd in 0..3 {
        sys::dup2(s, fd).ctx(|| format!("dup {name} to fd {fd}"))?;
    }
    send_fd(sock.as_raw_fd(), m).ctx(|| "send pty master to the shim".into())
}

trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}

impl NoCtty for std::fs::OpenOptions {
    fn custom_flags_noctty(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOCTTY)
    }
}

fn send_fd(sock: RawFd, fd: RawFd) -> io::Result<()> {
    let byte = [b'm'];
    let mut iov = libc::iovec {
        iov_base: byte.as_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
    }
    loop {
        if unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) } >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// In the shim: receives the pty master the container process sent.
pub fn recv_master(sock: &OwnedFd) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    loop {
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n > 0 {
            break;
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "container process sent no pty master",
            ));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null()
            || (*cmsg).cmsg_level != libc::SOL_SOCKET
            || (*cmsg).cmsg_type != libc::SCM_RIGHTS
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "no file descriptor in the pty message",
            ));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
        Ok(OwnedFd::from_raw_fd(fd))
    }
}
