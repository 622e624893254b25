//! `--init` (annotation `io.berth.init`): the container's first process stays as PID 1,
//! forks the command (PID 2), forwards signals to it, reaps every zombie and exits with
//! the command's status. Like tini, without an external binary.
use std::os::fd::RawFd;

use crate::error::Error;

const FORWARD: [libc::c_int; 7] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// Forks; the child runs `exec` (which returns only on failure, then reported on the
/// status pipe with its exit code); the parent is the init and never returns.
pub(super) fn run(status: RawFd, exec: &mut dyn FnMut() -> Error) -> ! {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in FORWARD {
            libc::sigaddset(&mut set, s);
        }
        libc::sigaddset(&mut set, libc::SIGCHLD);
        let mut old: libc::sigset_t = std::mem::zeroed();
        // Blocked before fork, so no signal slips through before the loop waits for it
        // (and blocked signals reach a PID 1 that has no handlers).
        libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old);
        let child = libc::fork();
        if child < 0 {
            let e = std::io::Error::last_os_error();
            super::write_status(status, 125, &format!("fork the init's child: {e}"));
            libc::_exit(125);
        }
        if child == 0 {
            // Its own process group (the foreground one on a terminal), so signals and
            // job control reach everything it starts.
            libc::setpgid(0, 0);
            if libc::isatty(0) == 1 {
                let mut ttou: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut ttou);
                libc::sigaddset(&mut ttou, libc::SIGTTOU);
                libc::sigprocmask(libc::SIG_BLOCK, &ttou, std::ptr::null_mut());
                libc::tcsetpgrp(0, libc::getpid());
            }
            libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            let err = exec();
            super::write_status(status, err.exit_code(), &err.to_string());
            libc::_exit(err.exit_code());
        }
        // Also here, so a signal that comes before the child ran is sent to the group.
        libc::setpgid(child, child);
        // Only the command reports on the status pipe: its successful exec closes it.
        libc::close(status);
        libc::prctl(libc::PR_SET_NAME, c"berth-init".as_ptr());
        hide_cmdline();
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let sig = libc::sigwaitinfo(&set, &mut info);
            if sig < 0 {
                continue;
            }
            if sig != libc::SIGCHLD {
                let target = if libc::getpgid(child) == child {
                    -child
                } else {
                    child
                };
                libc::kill(target, sig);
                continue;
            }
            loop {
                let mut st = 0;
                let pid = libc::waitpid(-1, &mut st, libc::WNOHANG);
                if pid <= 0 {
                    break;
                }
                if pid == child {
                    let code = if libc::WIFSIGNALED(st) {
                        128 + libc::WTERMSIG(st)
                    } else {
                        libc::WEXITSTATUS(st)
                    };
                    libc::_exit(code);
                }
            }
        }
    }
}

/// PID 1 is a fork of the shim: its command line would show the shim's arguments (host
/// paths) in the container's `ps`. Overwrites it in place with `berth-init`.
fn hide_cmdline() {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the command name, which ends at the last ')': field 3 comes first,
    // arg_start and arg_end are fields 48 and 49.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let (Some(Ok(start)), Some(Ok(end))) = (
        fields.get(48 - 3).map(|f| f.parse::<usize>()),
        fields.get(49 - 3).map(|f| f.parse::<usize>()),
    ) else {
        return;
    };
    let name = b"berth-init";
    if start == 0 || end <= start + name.len() {
        return;
    }
    // SAFETY: the kernel's argument area of this process, which nothing reads any more.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, end - start);
        area.fill(0);
        area[..name.len()].copy_from_slice(name);
    }
}
