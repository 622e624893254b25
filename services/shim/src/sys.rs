//! Thin wrappers over the few raw syscalls the shim and the runtime use.
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub fn cstr(p: impl AsRef<std::ffi::OsStr>) -> io::Result<CString> {
    CString::new(p.as_ref().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub fn set_nonblock(fd: RawFd) -> io::Result<()> {
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match write(fd, buf)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => buf = &buf[n..],
        }
    }
    Ok(())
}

/// Reads until `buf` is full or end of file; returns how much was read.
pub fn read_full(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match read(fd, &mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

pub fn dup2(from: RawFd, to: RawFd) -> io::Result<()> {
    if from == to {
        // dup2 onto itself would leave close-on-exec set.
        let flags = check(unsafe { libc::fcntl(from, libc::F_GETFD) })?;
        return check(unsafe { libc::fcntl(from, libc::F_SETFD, flags & !libc::FD_CLOEXEC) })
            .map(drop);
    }
    check(unsafe { libc::dup2(from, to) }).map(drop)
}

pub fn dup(fd: &impl AsRawFd) -> io::Result<OwnedFd> {
    let n = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

pub fn mount(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = src.map(cstr).transpose()?;
    let target_c = cstr(target)?;
    let fstype = fstype.map(cstr).transpose()?;
    let data = data.filter(|d| !d.is_empty()).map(cstr).transpose()?;
    let p = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    check(unsafe {
        libc::mount(
            p(&src),
            target_c.as_ptr(),
            p(&fstype),
            flags,
            p(&data).cast(),
        )
    })
    .map(drop)
}

/// Makes sure 0, 1 and 2 are open, so pipes created later never land on them.
pub fn ensure_std_fds() {
    loop {
        let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if fd < 0 {
            return;
        }
        if fd > 2 {
            unsafe { libc::close(fd) };
            return;
        }
    }
}

/// Closes every descriptor from 3 up: the shim must not leak its caller's files into
/// a container.
pub fn close_from_3() {
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
}

/// The clean pages of the shim's own code and read-only data. Unmapping them leaves
/// them in the page cache, to fault back in on use, so an idle shim keeps only what its
/// poll loop touches. Only mappings without a dirty page qualify (discarding a written
/// page of a private mapping would lose the write); read-only mappings cannot become
/// dirty later, so the list stays valid.
#[derive(Debug, Default)]
pub struct CleanCode {
    ranges: Vec<(usize, usize)>,
}

impl CleanCode {
    pub fn find() -> CleanCode {
        let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
            return CleanCode::default();
        };
        let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
            return CleanCode::default();
        };
        let exe = exe.to_string_lossy();
        let mut current: Option<(usize, usize)> = None;
        let mut dirty = 0u64;
        let mut ranges = Vec::new();
        let mut finish = |current: Option<(usize, usize)>, dirty: u64| {
            if let Some(range) = current.filter(|_| dirty == 0) {
                ranges.push(range);
            }
        };
        for line in smaps.lines() {
            let mut fields = line.split_whitespace();
            let first = fields.next().unwrap_or("");
            if let Some((start, end)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
                finish(current.take(), dirty);
                dirty = 0;
                let perms = fields.next().unwrap_or("");
                let path = fields.nth(3).unwrap_or("");
                if path == exe && (perms == "r-xp" || perms == "r--p") {
                    if let (Ok(s), Ok(e)) = (
                        usize::from_str_radix(start, 16),
                        usize::from_str_radix(end, 16),
                    ) {
                        current = Some((s, e - s));
                    }
                }
            } else if first == "Private_Dirty:" || first == "Shared_Dirty:" {
                dirty += fields.next().and_then(|n| n.parse().ok()).unwrap_or(1);
            }
        }
        finish(current, dirty);
        CleanCode { ranges }
    }

    pub fn unmap(&self) {
        for &(start, len) in &self.ranges {
            unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        }
    }
}
