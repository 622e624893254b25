//! `top`: the container's processes (its cgroup's `cgroup.procs`) described from /proc
//! like `ps -ef`: UID PID PPID C STIME TTY TIME CMD.
use std::{
    collections::HashMap,
    time::{SystemTime, UNIX_EPOCH},
};

use crate::cgroup;

pub const TITLES: [&str; 8] = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];

/// What `ps -ef` needs from `/proc/<pid>/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub ppid: i32,
    pub tty_nr: u32,
    /// utime + stime, clock ticks.
    pub cpu_ticks: u64,
    /// Clock ticks after boot.
    pub start_ticks: u64,
}

pub fn parse_stat(stat: &str) -> Option<Stat> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let f: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // f[0] is field 3 (state).
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(Stat {
        comm,
        ppid: f.get(1)?.parse().ok()?,
        tty_nr: num(4)? as u32,
        cpu_ticks: num(11)? + num(12)?,
        start_ticks: num(19)?,
    })
}

/// `pts/N`, `ttyN` or `?`, from the kernel's tty_nr.
pub fn tty_name(tty_nr: u32) -> String {
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        0 => "?".into(),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        _ => "?".into(),
    }
}

/// `[DD-]HH:MM:SS` of cumulative CPU time.
pub fn cpu_time(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// `HH:MM` for a start within the last day, else `MonDD` (UTC).
pub fn start_time(start_unix: u64, now_unix: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    if now_unix.saturating_sub(start_unix) < 86400 {
        return format!("{:02}:{:02}", start_unix / 3600 % 24, start_unix / 60 % 60);
    }
    let t = UNIX_EPOCH + std::time::Duration::from_secs(start_unix);
    // humantime gives YYYY-MM-DDT...: take the month and day from it.
    let s = humantime::format_rfc3339_seconds(t).to_string();
    let month: usize = s.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    format!(
        "{}{}",
        MONTHS[(month - 1).min(11)],
        s.get(8..10).unwrap_or("01")
    )
}

fn boot_time() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ").map(|v| v.trim().parse().ok()))
        })
        .flatten()
        .unwrap_or(0)
}

fn users() -> HashMap<u32, String> {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

fn uid_of(pid: i32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn cmd_of(pid: i32, comm: &str) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if args.is_empty() {
        format!("[{comm}]")
    } else {
        args.join(" ")
    }
}

/// The rows for the processes of the container's cgroup (vanished ones skipped).
pub fn processes(instance: &str, id: &str) -> Vec<Vec<String>> {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|v| *v > 0)
        .unwrap_or(100) as u64;
    let boot = boot_time();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let users = users();
    let mut rows = Vec::new();
    for pid in cgroup::procs(instance, id) {
        let Some(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .as_deref()
            .and_then(parse_stat)
        else {
            continue;
        };
        let uid = uid_of(pid).unwrap_or(0);
        let started = boot + stat.start_ticks / hz;
        let elapsed = now.saturating_sub(started).max(1);
        let cpu_secs = stat.cpu_ticks / hz;
        let c = (stat.cpu_ticks * 100 / hz / elapsed).min(99);
        rows.push(vec![
            users.get(&uid).cloned().unwrap_or_else(|| uid.to_string()),
            pid.to_string(),
            stat.ppid.to_string(),
            c.to_string(),
            start_time(started, now),
            tty_name(stat.tty_nr),
            cpu_time(cpu_secs),
            cmd_of(pid, &stat.comm),
        ]);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parses_with_odd_command_names() {
        let line = "1234 (a (b) c) S 1 1234 1234 34816 1234 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5000 1000 100 0 0";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.comm, "a (b) c");
        assert_eq!(s.ppid, 1);
        assert_eq!(s.tty_nr, 34816);
        assert_eq!(s.cpu_ticks, 10);
        assert_eq!(s.start_ticks, 5000);
    }

    #[test]
    fn formats_like_ps() {
        assert_eq!(tty_name(0), "?");
        assert_eq!(tty_name(34816), "pts/0");
        assert_eq!(tty_name((136 << 8) | 3), "pts/3");
        assert_eq!(cpu_time(3725), "01:02:05");
        assert_eq!(cpu_time(90061), "1-01:01:01");
        assert_eq!(start_time(3600 * 5 + 60 * 7, 3600 * 6), "05:07");
        assert_eq!(start_time(0, 86400 * 40), "Jan01");
    }
}
