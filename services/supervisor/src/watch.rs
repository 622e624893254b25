//! Watching and signalling a container's process through a pidfd, after checking its
//! start time (field 22 of `/proc/<pid>/stat`) so a reused PID is never touched; and
//! reading the `exit.json` the shim writes when the process ends.
use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
    time::Duration,
};

use serde::Deserialize;
use tokio::io::unix::AsyncFd;

use crate::store::Exit;

/// `(state, start time)` from the contents of `/proc/<pid>/stat`.
pub fn parse_stat(stat: &str) -> Option<(char, u64)> {
    // The command name (field 2) may contain spaces and parentheses: fields resume
    // after the last ')'. Field 3 is the state, field 22 the start time.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

fn read_stat(pid: i32) -> Option<(char, u64)> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .as_deref()
        .and_then(parse_stat)
}

/// The start time of `pid`, if it exists.
pub fn start_time(pid: i32) -> Option<u64> {
    read_stat(pid).map(|(_, t)| t)
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    pid > 0 && read_stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// PIDs of `berth-shim` processes started for container `id` (by their command line).
pub fn shim_pids_for(id: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_shim = args.first().is_some_and(|a| a.ends_with(b"berth-shim"));
        let for_id = args
            .windows(2)
            .any(|w| w[0] == b"--id" && w[1] == id.as_bytes());
        if is_shim && for_id {
            out.push(pid);
        }
    }
    out
}

/// An open pidfd.
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    pub fn open(pid: i32) -> io::Result<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the fd was just returned to us and is owned by nobody else.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Opens a pidfd for `pid` only if it is still the process that started at
    /// `start_time`; `None` when it is gone (or the PID was reused).
    pub fn open_verified(pid: i32, start_time: u64) -> io::Result<Option<PidFd>> {
        if pid <= 0 {
            return Ok(None);
        }
        let fd = match PidFd::open(pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
            Err(e) => return Err(e),
        };
        // The pidfd pins this process; checking after opening closes the race.
        match read_stat(pid) {
            Some((state, t)) if t == start_time && state != 'X' => Ok(Some(fd)),
            _ => Ok(None),
        }
    }

    pub fn send_signal(&self, signal: i32) -> io::Result<()> {
        // SAFETY: pidfd_send_signal(fd, sig, NULL info, 0 flags).
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            // Already exited: not an error for the caller.
            if e.raw_os_error() == Some(libc::ESRCH) {
                return Ok(());
            }
            return Err(e);
        }
        Ok(())
    }

    /// Resolves when the process has exited (the pidfd becomes readable).
    pub async fn exited(self) -> io::Result<()> {
        // SAFETY: the OwnedFd is moved into the AsyncFd and stays open, unchanged, until
        // the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(self.0, tokio::io::Interest::READABLE) }
            .map_err(|e| io::Error::other(e.to_string()))?;
        let _guard = fd.readable().await?;
        Ok(())
    }
}

#[derive(Deserialize)]
struct ExitJson {
    exit_code: i32,
    #[serde(default)]
    oom_killed: bool,
    #[serde(default)]
    finished_at: String,
}

pub fn parse_exit_json(bytes: &[u8]) -> Option<Exit> {
    let e: ExitJson = serde_json::from_slice(bytes).ok()?;
    Some(Exit {
        exit_code: e.exit_code,
        oom_killed: e.oom_killed,
        finished_at: e.finished_at,
        error: String::new(),
    })
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

const NO_EXIT_STATUS: &str = "shim exited without recording the exit status";

/// The exit status of a run that ended: `<bundle>/exit.json`, retried every 10 ms for up
/// to `patience` while the shim (`shim_pid`) is still alive writing it; exit 255 with an
/// error when the shim is gone and left nothing.
pub async fn read_exit(bundle: &Path, shim_pid: i32, patience: Duration) -> Exit {
    read_exit_file(&bundle.join("exit.json"), shim_pid, patience).await
}

/// [`read_exit`] for another file (an exec's `exec-<id>.json`).
pub async fn read_exit_file(path: &Path, shim_pid: i32, patience: Duration) -> Exit {
    let path = path.to_path_buf();
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let shim_alive = alive(shim_pid);
        if let Ok(bytes) = tokio::fs::read(&path).await {
            if let Some(exit) = parse_exit_json(&bytes) {
                return exit;
            }
        }
        if !shim_alive || tokio::time::Instant::now() >= deadline {
            // One last look: the shim may have renamed the file just before exiting.
            if let Some(exit) = tokio::fs::read(&path)
                .await
                .ok()
                .as_deref()
                .and_then(parse_exit_json)
            {
                return exit;
            }
            return Exit {
                exit_code: 255,
                oom_killed: false,
                finished_at: now_rfc3339(),
                error: NO_EXIT_STATUS.into(),
            };
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing_survives_odd_command_names() {
        let stat =
            "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(parse_stat(stat), Some(('S', 987654)));
        assert_eq!(parse_stat("garbage"), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_stat(&own).unwrap().1 > 0);
    }

    #[test]
    fn exit_json_parses() {
        let e = parse_exit_json(
            br#"{"exit_code": 137, "oom_killed": true, "finished_at": "2026-01-01T00:00:00.5Z"}"#,
        )
        .unwrap();
        assert_eq!(
            (e.exit_code, e.oom_killed, e.finished_at.as_str()),
            (137, true, "2026-01-01T00:00:00.5Z")
        );
        assert!(parse_exit_json(b"{").is_none());
    }

    #[tokio::test]
    async fn pidfd_watches_and_signals_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let start = start_time(pid).unwrap();
        assert!(
            PidFd::open_verified(pid, start + 1).unwrap().is_none(),
            "wrong start time"
        );
        let fd = PidFd::open_verified(pid, start).unwrap().unwrap();
        let fd2 = PidFd::open(pid).unwrap();
        fd2.send_signal(libc::SIGKILL).unwrap();
        // Our own child becomes a zombie: readable without reaping.
        tokio::time::timeout(Duration::from_secs(5), fd.exited())
            .await
            .unwrap()
            .unwrap();
        child.wait().unwrap();
        assert!(!alive(pid));
    }

    #[tokio::test]
    async fn missing_exit_json_with_a_dead_shim_is_255() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_exit(dir.path(), 0, Duration::from_secs(5)).await;
        assert_eq!((e.exit_code, e.error.as_str()), (255, NO_EXIT_STATUS));
        std::fs::write(
            dir.path().join("exit.json"),
            br#"{"exit_code":3,"oom_killed":false,"finished_at":"x"}"#,
        )
        .unwrap();
        assert_eq!(
            read_exit(dir.path(), 0, Duration::from_secs(5))
                .await
                .exit_code,
            3
        );
    }
}
