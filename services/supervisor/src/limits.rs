//! Resource limits: a container's [`Resources`] turned into the cgroup files to write
//! (pure functions, v1 and v2), their validation, the merge of an update into the stored
//! limits, and writing them into a cgroup.
//!
//! Conventions (as Docker's HostConfig, see the proto): 0 is "unset" for every number;
//! `memory_swap` is memory plus swap, -1 unlimited, 0 with `memory` set means twice
//! `memory`; `pids_limit` -1 is unlimited (written as `max`, so an update can lift a
//! limit); `cpu_quota` -1 is unlimited.
//!
//! Writing: a file the kernel lacks (blkio.weight on this host) is skipped with Docker's
//! warning; a write the kernel refuses is an error naming the file and the value. On v1
//! `memory.limit_in_bytes` must stay ≤ `memory.memsw.limit_in_bytes`, and cfs period and
//! quota are checked as a ratio, so those pairs are written in one order and, when the
//! kernel answers EINVAL, in the other (as runc does).
use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use berth_proto::supervisor::v1::{Resources, ThrottleDevice};

use crate::{
    cgroup::Layout,
    error::{Error, Result},
};

/// CFS period used for `--cpus` (µs), Docker's.
pub const DEFAULT_CFS_PERIOD: i64 = 100_000;
/// Docker's minimum memory limit (and reservation).
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// One value to write into one file of the container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// The controller (v1 hierarchy) the file belongs to; on v2 every file is in the
    /// one directory.
    pub controller: &'static str,
    pub file: &'static str,
    pub value: String,
    /// Written instead when `file` does not exist (v2: `io.bfq.weight` → `io.weight`).
    pub fallback: Option<(&'static str, String)>,
}

impl Write {
    fn new(controller: &'static str, file: &'static str, value: impl ToString) -> Write {
        Write {
            controller,
            file,
            value: value.to_string(),
            fallback: None,
        }
    }

    /// (controller, file, value), for tests and logs.
    pub fn triple(&self) -> (&str, &str, &str) {
        (self.controller, self.file, &self.value)
    }
}

/// Docker's words for a limit the kernel's cgroups cannot apply (the file is missing).
pub fn unsupported_warning(file: &str) -> &'static str {
    match file {
        "memory.limit_in_bytes" | "memory.max" => {
            "Your kernel does not support memory limit capabilities or the cgroup is not mounted. Limitation discarded."
        }
        "memory.memsw.limit_in_bytes" | "memory.swap.max" => {
            "Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap."
        }
        "memory.soft_limit_in_bytes" | "memory.low" => {
            "Your kernel does not support memory soft limit capabilities or the cgroup is not mounted. Limitation discarded."
        }
        "memory.oom_control" => "Your kernel does not support OomKillDisable. OomKillDisable discarded.",
        "memory.swappiness" => {
            "Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory swappiness discarded."
        }
        "cpu.shares" | "cpu.weight" => {
            "Your kernel does not support CPU shares or the cgroup is not mounted. Shares discarded."
        }
        "cpu.cfs_period_us" | "cpu.cfs_quota_us" | "cpu.max" => {
            "Your kernel does not support CPU CFS scheduler. CPU period/quota discarded."
        }
        "cpuset.cpus" | "cpuset.mems" => {
            "Your kernel does not support cpuset or the cgroup is not mounted. Cpuset discarded."
        }
        "blkio.weight" | "io.bfq.weight" | "io.weight" => {
            "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."
        }
        "blkio.throttle.read_bps_device" => {
            "Your kernel does not support BPS Block I/O read limit or the cgroup is not mounted. Block I/O BPS read limit discarded."
        }
        "blkio.throttle.write_bps_device" => {
            "Your kernel does not support BPS Block I/O write limit or the cgroup is not mounted. Block I/O BPS write limit discarded."
        }
        "blkio.throttle.read_iops_device" => {
            "Your kernel does not support IOPS Block read limit or the cgroup is not mounted. Block I/O IOPS read limit discarded."
        }
        "blkio.throttle.write_iops_device" => {
            "Your kernel does not support IOPS Block write limit or the cgroup is not mounted. Block I/O IOPS write limit discarded."
        }
        "io.max" => {
            "Your kernel does not support Block I/O throttling or the cgroup is not mounted. Block I/O limits discarded."
        }
        "pids.max" => {
            "Your kernel does not support PIDs limit capabilities or the cgroup is not mounted. PIDs limit discarded."
        }
        _ => "Your kernel does not support this resource limit or the cgroup is not mounted. Limit discarded.",
    }
}

// ----- validation -----

/// Docker's checks of values that do not depend on the host (the engine has checked the
/// host-dependent ones: CPUs and memory nodes that exist, devices).
pub fn validate(r: &Resources) -> Result<()> {
    let bad = |m: &str| Err(Error::InvalidArgument(m.to_string()));
    if r.memory < 0 {
        return bad(&format!("invalid memory limit {}", r.memory));
    }
    if r.memory != 0 && r.memory < MIN_MEMORY {
        return bad("Minimum memory limit allowed is 6MB");
    }
    if r.memory_swap < -1 {
        return bad(&format!("invalid memory-swap limit {}", r.memory_swap));
    }
    if r.memory > 0 && r.memory_swap > 0 && r.memory_swap < r.memory {
        return bad("Minimum memoryswap limit should be larger than memory limit, see usage");
    }
    if r.memory == 0 && r.memory_swap > 0 {
        return bad(
            "You should always set the Memory limit when using Memoryswap limit, see usage",
        );
    }
    if r.memory_reservation < 0 {
        return bad(&format!(
            "invalid memory reservation {}",
            r.memory_reservation
        ));
    }
    if r.memory_reservation > 0 && r.memory_reservation < MIN_MEMORY {
        return bad("Minimum memory reservation allowed is 6MB");
    }
    if r.memory > 0 && r.memory_reservation > 0 && r.memory < r.memory_reservation {
        return bad(
            "Minimum memory limit can not be less than memory reservation limit, see usage",
        );
    }
    if let Some(s) = r.memory_swappiness {
        if !(0..=100).contains(&s) {
            return bad(&format!(
                "Invalid value: {s}, valid memory swappiness range is 0-100"
            ));
        }
    }
    if r.nano_cpus > 0 && r.cpu_period > 0 {
        return bad("Conflicting options: Nano CPUs and CPU Period cannot both be set");
    }
    if r.nano_cpus > 0 && r.cpu_quota > 0 {
        return bad("Conflicting options: Nano CPUs and CPU Quota cannot both be set");
    }
    if r.nano_cpus < 0 {
        return bad(&format!("invalid NanoCPUs {}", r.nano_cpus));
    }
    if r.cpu_period != 0 && !(1000..=1_000_000).contains(&r.cpu_period) {
        return bad(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
        );
    }
    if r.cpu_quota > 0 && r.cpu_quota < 1000 {
        return bad("CPU cfs quota can not be less than 1ms (i.e. 1000)");
    }
    if r.cpu_quota < -1 {
        return bad(&format!("invalid CPU cfs quota {}", r.cpu_quota));
    }
    if r.cpu_shares < 0 {
        return bad(&format!("invalid CPU shares {}", r.cpu_shares));
    }
    if r.blkio_weight != 0 && !(10..=1000).contains(&r.blkio_weight) {
        return bad("Range of blkio weight is from 10 to 1000");
    }
    for (what, list) in throttle_lists(r) {
        for d in list {
            if d.major == 0 && d.minor == 0 && d.path.is_empty() {
                return bad(&format!("{what}: a device needs its major:minor numbers"));
            }
        }
    }
    Ok(())
}

fn throttle_lists(r: &Resources) -> [(&'static str, &Vec<ThrottleDevice>); 4] {
    [
        ("device-read-bps", &r.device_read_bps),
        ("device-write-bps", &r.device_write_bps),
        ("device-read-iops", &r.device_read_iops),
        ("device-write-iops", &r.device_write_iops),
    ]
}

// ----- conversions -----

/// v1 `memory.memsw.limit_in_bytes`: None when not written.
fn memsw_v1(r: &Resources) -> Option<i64> {
    if r.memory <= 0 {
        return None;
    }
    Some(match r.memory_swap {
        0 => r.memory.saturating_mul(2),
        -1 => -1,
        n => n,
    })
}

/// v2 `memory.swap.max` (swap alone): None when not written, -1 for `max`.
fn swap_v2(r: &Resources) -> Option<i64> {
    if r.memory <= 0 {
        return None;
    }
    Some(match r.memory_swap {
        0 => r.memory,
        -1 => -1,
        n => (n - r.memory).max(0),
    })
}

/// (period, quota) to write, µs; quota -1 is unlimited. None when neither is set.
fn cfs(r: &Resources) -> (Option<i64>, Option<i64>) {
    if r.nano_cpus > 0 {
        let quota = (r.nano_cpus as i128 * DEFAULT_CFS_PERIOD as i128 / 1_000_000_000) as i64;
        return (Some(DEFAULT_CFS_PERIOD), Some(quota.max(1000)));
    }
    (
        (r.cpu_period > 0).then_some(r.cpu_period),
        (r.cpu_quota != 0).then_some(r.cpu_quota.max(-1)),
    )
}

/// Docker/runc's cgroup v1 shares (2..262144) → v2 weight (1..10000).
pub fn shares_to_weight(shares: i64) -> i64 {
    if shares == 0 {
        return 0;
    }
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// runc's blkio weight (10..1000) → v2 `io.weight` (1..10000).
pub fn blkio_to_io_weight(weight: u32) -> u64 {
    if weight == 0 {
        return 0;
    }
    let w = weight.clamp(10, 1000) as u64;
    1 + ((w - 10) * 9999) / 990
}

fn max_or(n: i64) -> String {
    if n < 0 {
        "max".into()
    } else {
        n.to_string()
    }
}

/// The files to write for `r` on a cgroup v1 host, in order.
pub fn v1_writes(r: &Resources) -> Vec<Write> {
    let mut w = Vec::new();
    // cpuset first: a v1 cpuset cgroup needs cpus and mems before a task may join.
    if !r.cpuset_cpus.is_empty() {
        w.push(Write::new("cpuset", "cpuset.cpus", &r.cpuset_cpus));
    }
    if !r.cpuset_mems.is_empty() {
        w.push(Write::new("cpuset", "cpuset.mems", &r.cpuset_mems));
    }
    if r.memory > 0 {
        w.push(Write::new("memory", "memory.limit_in_bytes", r.memory));
    }
    if let Some(memsw) = memsw_v1(r) {
        w.push(Write::new("memory", "memory.memsw.limit_in_bytes", memsw));
    }
    if r.memory_reservation > 0 {
        w.push(Write::new(
            "memory",
            "memory.soft_limit_in_bytes",
            r.memory_reservation,
        ));
    }
    if r.oom_kill_disable {
        w.push(Write::new("memory", "memory.oom_control", 1));
    }
    if let Some(s) = r.memory_swappiness {
        w.push(Write::new("memory", "memory.swappiness", s));
    }
    if r.cpu_shares > 0 {
        w.push(Write::new("cpu", "cpu.shares", r.cpu_shares));
    }
    let (period, quota) = cfs(r);
    if let Some(p) = period {
        w.push(Write::new("cpu", "cpu.cfs_period_us", p));
    }
    if let Some(q) = quota {
        w.push(Write::new("cpu", "cpu.cfs_quota_us", q));
    }
    if r.blkio_weight > 0 {
        w.push(Write::new("blkio", "blkio.weight", r.blkio_weight));
    }
    let files = [
        "blkio.throttle.read_bps_device",
        "blkio.throttle.write_bps_device",
        "blkio.throttle.read_iops_device",
        "blkio.throttle.write_iops_device",
    ];
    for ((_, list), file) in throttle_lists(r).into_iter().zip(files) {
        for d in list {
            w.push(Write::new(
                "blkio",
                file,
                format!("{}:{} {}", d.major, d.minor, d.rate),
            ));
        }
    }
    if r.pids_limit != 0 {
        w.push(Write::new("pids", "pids.max", max_or(r.pids_limit)));
    }
    w
}

/// The `io.max` lines: one per device, with the limits set for it (0 rate: `max`).
fn io_max_lines(r: &Resources) -> Vec<String> {
    let mut devices: Vec<(u32, u32)> = Vec::new();
    for (_, list) in throttle_lists(r) {
        for d in list {
            if !devices.contains(&(d.major, d.minor)) {
                devices.push((d.major, d.minor));
            }
        }
    }
    let keys = ["rbps", "wbps", "riops", "wiops"];
    devices
        .into_iter()
        .map(|(maj, min)| {
            let mut line = format!("{maj}:{min}");
            for ((_, list), key) in throttle_lists(r).into_iter().zip(keys) {
                if let Some(d) = list.iter().find(|d| (d.major, d.minor) == (maj, min)) {
                    if d.rate == 0 {
                        line.push_str(&format!(" {key}=max"));
                    } else {
                        line.push_str(&format!(" {key}={}", d.rate));
                    }
                }
            }
            line
        })
        .collect()
}

/// The files to write for `r` on a cgroup v2 host, in order. `oom_kill_disable` and
/// `memory_swappiness` have no v2 file: see [`v2_unsupported`].
pub fn v2_writes(r: &Resources) -> Vec<Write> {
    let mut w = Vec::new();
    if !r.cpuset_cpus.is_empty() {
        w.push(Write::new("cpuset", "cpuset.cpus", &r.cpuset_cpus));
    }
    if !r.cpuset_mems.is_empty() {
        w.push(Write::new("cpuset", "cpuset.mems", &r.cpuset_mems));
    }
    if r.memory > 0 {
        w.push(Write::new("memory", "memory.max", r.memory));
    }
    if let Some(swap) = swap_v2(r) {
        w.push(Write::new("memory", "memory.swap.max", max_or(swap)));
    }
    if r.memory_reservation > 0 {
        w.push(Write::new("memory", "memory.low", r.memory_reservation));
    }
    if r.cpu_shares > 0 {
        w.push(Write::new(
            "cpu",
            "cpu.weight",
            shares_to_weight(r.cpu_shares),
        ));
    }
    let (period, quota) = cfs(r);
    if period.is_some() || quota.is_some() {
        let q = match quota {
            Some(q) if q > 0 => q.to_string(),
            _ => "max".into(),
        };
        let p = period.unwrap_or(DEFAULT_CFS_PERIOD);
        w.push(Write::new("cpu", "cpu.max", format!("{q} {p}")));
    }
    if r.blkio_weight > 0 {
        let mut bfq = Write::new("io", "io.bfq.weight", r.blkio_weight);
        bfq.fallback = Some(("io.weight", blkio_to_io_weight(r.blkio_weight).to_string()));
        w.push(bfq);
    }
    for line in io_max_lines(r) {
        w.push(Write::new("io", "io.max", line));
    }
    if r.pids_limit != 0 {
        w.push(Write::new("pids", "pids.max", max_or(r.pids_limit)));
    }
    w
}

/// What v2 cannot do at all, in Docker's words.
pub fn v2_unsupported(r: &Resources) -> Vec<String> {
    let mut out = Vec::new();
    if r.oom_kill_disable {
        out.push(unsupported_warning("memory.oom_control").to_string());
    }
    if r.memory_swappiness.is_some() {
        out.push(unsupported_warning("memory.swappiness").to_string());
    }
    out
}

pub fn writes(r: &Resources, v2: bool) -> Vec<Write> {
    if v2 {
        v2_writes(r)
    } else {
        v1_writes(r)
    }
}

// ----- update -----

/// Docker's conflicts between an update and the container's current limits.
fn conflict(m: &str) -> Error {
    Error::FailedPrecondition(m.to_string())
}

/// Merges the set fields of `update` into `old` (proto3 zero values keep the old value),
/// with Docker's update rules. A throttle device in `update` replaces the same device's
/// entry; rate 0 removes it. The result is validated.
pub fn merge(old: &Resources, update: &Resources) -> Result<Resources> {
    if update.nano_cpus > 0 && old.cpu_quota > 0 && update.cpu_quota == 0 {
        return Err(conflict(
            "Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set",
        ));
    }
    if update.nano_cpus > 0 && old.cpu_period > 0 && update.cpu_period == 0 {
        return Err(conflict(
            "Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set",
        ));
    }
    if update.cpu_quota > 0 && old.nano_cpus > 0 && update.nano_cpus == 0 {
        return Err(conflict(
            "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set",
        ));
    }
    if update.cpu_period > 0 && old.nano_cpus > 0 && update.nano_cpus == 0 {
        return Err(conflict(
            "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set",
        ));
    }
    let mut r = old.clone();
    if update.memory != 0 {
        // An explicit memory-swap that the new memory exceeds must be updated with it.
        if old.memory_swap > 0 && update.memory > old.memory_swap && update.memory_swap == 0 {
            return Err(conflict(
                "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time",
            ));
        }
        r.memory = update.memory;
    }
    if update.memory_swap != 0 {
        r.memory_swap = update.memory_swap;
    }
    if update.memory_reservation != 0 {
        r.memory_reservation = update.memory_reservation;
    }
    if update.oom_kill_disable {
        r.oom_kill_disable = true;
    }
    if update.memory_swappiness.is_some() {
        r.memory_swappiness = update.memory_swappiness;
    }
    if update.nano_cpus != 0 {
        r.nano_cpus = update.nano_cpus;
    }
    if update.cpu_period != 0 {
        r.cpu_period = update.cpu_period;
    }
    if update.cpu_quota != 0 {
        r.cpu_quota = update.cpu_quota;
    }
    if update.cpu_shares != 0 {
        r.cpu_shares = update.cpu_shares;
    }
    if !update.cpuset_cpus.is_empty() {
        r.cpuset_cpus = update.cpuset_cpus.clone();
    }
    if !update.cpuset_mems.is_empty() {
        r.cpuset_mems = update.cpuset_mems.clone();
    }
    if update.blkio_weight != 0 {
        r.blkio_weight = update.blkio_weight;
    }
    merge_devices(&mut r.device_read_bps, &update.device_read_bps);
    merge_devices(&mut r.device_write_bps, &update.device_write_bps);
    merge_devices(&mut r.device_read_iops, &update.device_read_iops);
    merge_devices(&mut r.device_write_iops, &update.device_write_iops);
    if update.pids_limit != 0 {
        r.pids_limit = update.pids_limit;
    }
    validate(&r)?;
    Ok(r)
}

fn merge_devices(list: &mut Vec<ThrottleDevice>, update: &[ThrottleDevice]) {
    for d in update {
        list.retain(|o| (o.major, o.minor) != (d.major, d.minor));
        if d.rate != 0 {
            list.push(d.clone());
        }
    }
}

/// Writes that lift the throttles `update` removes (rate 0) from a live cgroup.
pub fn removals(update: &Resources, v2: bool) -> Vec<Write> {
    let mut w = Vec::new();
    if v2 {
        let keys = ["rbps", "wbps", "riops", "wiops"];
        for ((_, list), key) in throttle_lists(update).into_iter().zip(keys) {
            for d in list.iter().filter(|d| d.rate == 0) {
                w.push(Write::new(
                    "io",
                    "io.max",
                    format!("{}:{} {key}=max", d.major, d.minor),
                ));
            }
        }
        return w;
    }
    let files = [
        "blkio.throttle.read_bps_device",
        "blkio.throttle.write_bps_device",
        "blkio.throttle.read_iops_device",
        "blkio.throttle.write_iops_device",
    ];
    for ((_, list), file) in throttle_lists(update).into_iter().zip(files) {
        for d in list.iter().filter(|d| d.rate == 0) {
            w.push(Write::new(
                "blkio",
                file,
                format!("{}:{} 0", d.major, d.minor),
            ));
        }
    }
    w
}

// ----- writing -----

/// The two files that the kernel checks against each other (v1).
fn paired(a: &str, b: &str) -> bool {
    matches!(
        (a, b),
        ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
            | ("cpu.cfs_period_us", "cpu.cfs_quota_us")
    )
}

enum Outcome {
    Written,
    Missing,
}

/// One write(2) of `value` to an existing cgroup file.
fn write_file(path: &Path, value: &str) -> std::io::Result<Outcome> {
    let mut f = match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Missing),
        Err(e) => return Err(e),
    };
    f.write_all(value.as_bytes())?;
    Ok(Outcome::Written)
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// The error for a refused write, naming the file and the value.
fn refused(dir: &Path, w: &Write, path: &Path, e: std::io::Error) -> Error {
    // The kernel cannot reclaim below current usage: runc's words.
    if e.raw_os_error() == Some(libc::EBUSY)
        && matches!(
            w.file,
            "memory.limit_in_bytes" | "memory.memsw.limit_in_bytes"
        )
    {
        let (usage, peak) = if w.file == "memory.limit_in_bytes" {
            ("memory.usage_in_bytes", "memory.max_usage_in_bytes")
        } else {
            (
                "memory.memsw.usage_in_bytes",
                "memory.memsw.max_usage_in_bytes",
            )
        };
        return Error::FailedPrecondition(format!(
            "unable to set memory limit to {} (current usage: {}, peak usage: {}): write {}: {e}",
            w.value,
            read_trimmed(&dir.join(usage)),
            read_trimmed(&dir.join(peak)),
            path.display()
        ));
    }
    Error::CgroupWrite {
        path: path.display().to_string(),
        value: w.value.clone(),
        source: e,
    }
}

/// Writes `writes` into the cgroup `rel` (`<instance>/<id>`). Returns Docker's warnings
/// for files this kernel lacks (skipped); fails on the first refused write, and with
/// [`Error::NotRunning`] when the cgroup itself is gone.
pub fn apply(layout: &Layout, rel: &str, writes: &[Write]) -> Result<Vec<String>> {
    let mut warnings: Vec<String> = Vec::new();
    let mut warn = |file: &str| {
        let w = unsupported_warning(file).to_string();
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    };
    let mut i = 0;
    while i < writes.len() {
        let w = &writes[i];
        let Some(dir) = layout.dir(w.controller, rel) else {
            warn(w.file);
            i += 1;
            continue;
        };
        let path = dir.join(w.file);
        match write_file(&path, &w.value) {
            Ok(Outcome::Written) => {}
            Ok(Outcome::Missing) if !dir.is_dir() => {
                return Err(Error::NotRunning(
                    rel.rsplit('/').next().unwrap_or(rel).into(),
                ))
            }
            Ok(Outcome::Missing) => match &w.fallback {
                Some((file, value)) => {
                    let alt = dir.join(file);
                    match write_file(&alt, value) {
                        Ok(Outcome::Written) => {}
                        Ok(Outcome::Missing) => warn(w.file),
                        Err(e) => {
                            let w2 = Write::new(w.controller, file, value);
                            return Err(refused(&dir, &w2, &alt, e));
                        }
                    }
                }
                None => warn(w.file),
            },
            Err(e)
                if e.raw_os_error() == Some(libc::EINVAL)
                    && writes.get(i + 1).is_some_and(|n| paired(w.file, n.file)) =>
            {
                // The other order: the partner first, then this one again.
                let next = &writes[i + 1];
                let next_path = dir.join(next.file);
                match write_file(&next_path, &next.value) {
                    Ok(Outcome::Written) => {}
                    Ok(Outcome::Missing) => warn(next.file),
                    Err(e2) => return Err(refused(&dir, next, &next_path, e2)),
                }
                match write_file(&path, &w.value) {
                    Ok(_) => {}
                    Err(e) => return Err(refused(&dir, w, &path, e)),
                }
                i += 1;
            }
            Err(e) => return Err(refused(&dir, w, &path, e)),
        }
        i += 1;
    }
    Ok(warnings)
}

/// Docker's warnings for the limits of `r` that this host's cgroups cannot apply, checked
/// against the instance's parent cgroup (`instance`) when it exists, else the hierarchy
/// root (v1) or the controllers the root offers (v2). Nothing is written.
pub fn unsupported(layout: &Layout, instance: &str, r: &Resources) -> Vec<String> {
    let mut out = if layout.is_v2() {
        v2_unsupported(r)
    } else {
        Vec::new()
    };
    for w in unsupported_writes(layout, instance, &writes(r, layout.is_v2())) {
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// [`unsupported`] for a list of writes.
pub fn unsupported_writes(layout: &Layout, instance: &str, writes: &[Write]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |w: &str| {
        if !out.iter().any(|o| o == w) {
            out.push(w.to_string());
        }
    };
    for w in writes {
        let present = match layout.dir(w.controller, instance) {
            None => false,
            Some(dir) if dir.is_dir() => {
                dir.join(w.file).exists()
                    || w.fallback
                        .as_ref()
                        .is_some_and(|(f, _)| dir.join(f).exists())
            }
            Some(_) if layout.is_v2() => layout.v2_root_has_controller(w.controller),
            Some(_) => layout
                .dir(w.controller, "")
                .is_some_and(|root| root.join(w.file).exists()),
        };
        if !present {
            push(unsupported_warning(w.file));
        }
    }
    out
}

/// Where `writes` would go, for logs.
pub fn describe(layout: &Layout, rel: &str, writes: &[Write]) -> Vec<String> {
    writes
        .iter()
        .map(|w| {
            let dir = layout
                .dir(w.controller, rel)
                .unwrap_or_else(|| PathBuf::from("?"));
            format!("{}={}", dir.join(w.file).display(), w.value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 1024 * 1024;

    fn triples(w: &[Write]) -> Vec<(&str, &str, &str)> {
        w.iter().map(Write::triple).collect()
    }

    fn dev(major: u32, minor: u32, rate: u64) -> ThrottleDevice {
        ThrottleDevice {
            path: "/dev/vda".into(),
            major,
            minor,
            rate,
        }
    }

    fn everything() -> Resources {
        Resources {
            memory: 64 * M,
            memory_swap: 128 * M,
            memory_reservation: 32 * M,
            oom_kill_disable: true,
            memory_swappiness: Some(0),
            cpu_period: 100_000,
            cpu_quota: 25_000,
            cpu_shares: 512,
            cpuset_cpus: "0".into(),
            cpuset_mems: "0".into(),
            blkio_weight: 300,
            device_read_bps: vec![dev(254, 0, 2 * M as u64)],
            device_write_bps: vec![dev(254, 0, M as u64)],
            device_read_iops: vec![dev(7, 1, 100)],
            device_write_iops: vec![dev(254, 0, 50)],
            pids_limit: 64,
            ..Default::default()
        }
    }

    #[test]
    fn nothing_set_writes_nothing() {
        assert!(v1_writes(&Resources::default()).is_empty());
        assert!(v2_writes(&Resources::default()).is_empty());
    }

    #[test]
    fn v1_files_for_every_limit() {
        assert_eq!(
            triples(&v1_writes(&everything())),
            vec![
                ("cpuset", "cpuset.cpus", "0"),
                ("cpuset", "cpuset.mems", "0"),
                ("memory", "memory.limit_in_bytes", "67108864"),
                ("memory", "memory.memsw.limit_in_bytes", "134217728"),
                ("memory", "memory.soft_limit_in_bytes", "33554432"),
                ("memory", "memory.oom_control", "1"),
                ("memory", "memory.swappiness", "0"),
                ("cpu", "cpu.shares", "512"),
                ("cpu", "cpu.cfs_period_us", "100000"),
                ("cpu", "cpu.cfs_quota_us", "25000"),
                ("blkio", "blkio.weight", "300"),
                ("blkio", "blkio.throttle.read_bps_device", "254:0 2097152"),
                ("blkio", "blkio.throttle.write_bps_device", "254:0 1048576"),
                ("blkio", "blkio.throttle.read_iops_device", "7:1 100"),
                ("blkio", "blkio.throttle.write_iops_device", "254:0 50"),
                ("pids", "pids.max", "64"),
            ]
        );
    }

    #[test]
    fn v1_memory_swap_defaults_and_unlimited() {
        let r = Resources {
            memory: 64 * M,
            ..Default::default()
        };
        assert_eq!(
            triples(&v1_writes(&r)),
            vec![
                ("memory", "memory.limit_in_bytes", "67108864"),
                ("memory", "memory.memsw.limit_in_bytes", "134217728"),
            ]
        );
        let r = Resources {
            memory: 64 * M,
            memory_swap: -1,
            ..Default::default()
        };
        assert_eq!(
            triples(&v1_writes(&r)),
            vec![
                ("memory", "memory.limit_in_bytes", "67108864"),
                ("memory", "memory.memsw.limit_in_bytes", "-1"),
            ]
        );
        // Equal to memory: no swap at all.
        let r = Resources {
            memory: 32 * M,
            memory_swap: 32 * M,
            ..Default::default()
        };
        assert_eq!(v1_writes(&r)[1].value, (32 * M).to_string());
    }

    #[test]
    fn nano_cpus_become_period_and_quota() {
        let r = Resources {
            nano_cpus: 500_000_000,
            ..Default::default()
        };
        assert_eq!(
            triples(&v1_writes(&r)),
            vec![
                ("cpu", "cpu.cfs_period_us", "100000"),
                ("cpu", "cpu.cfs_quota_us", "50000"),
            ]
        );
        assert_eq!(
            triples(&v2_writes(&r)),
            vec![("cpu", "cpu.max", "50000 100000")]
        );
        let r = Resources {
            nano_cpus: 1_500_000_000,
            ..Default::default()
        };
        assert_eq!(v1_writes(&r)[1].value, "150000");
        // 0.01 CPU: the kernel's minimum quota is 1 ms.
        let r = Resources {
            nano_cpus: 10_000_000,
            ..Default::default()
        };
        assert_eq!(v1_writes(&r)[1].value, "1000");
    }

    #[test]
    fn quota_alone_and_unlimited_quota() {
        let r = Resources {
            cpu_quota: 50_000,
            ..Default::default()
        };
        assert_eq!(
            triples(&v1_writes(&r)),
            vec![("cpu", "cpu.cfs_quota_us", "50000")]
        );
        assert_eq!(
            triples(&v2_writes(&r)),
            vec![("cpu", "cpu.max", "50000 100000")]
        );
        let r = Resources {
            cpu_quota: -1,
            cpu_period: 50_000,
            ..Default::default()
        };
        assert_eq!(
            triples(&v1_writes(&r)),
            vec![
                ("cpu", "cpu.cfs_period_us", "50000"),
                ("cpu", "cpu.cfs_quota_us", "-1")
            ]
        );
        assert_eq!(
            triples(&v2_writes(&r)),
            vec![("cpu", "cpu.max", "max 50000")]
        );
    }

    #[test]
    fn v2_files_for_every_limit() {
        assert_eq!(
            triples(&v2_writes(&everything())),
            vec![
                ("cpuset", "cpuset.cpus", "0"),
                ("cpuset", "cpuset.mems", "0"),
                ("memory", "memory.max", "67108864"),
                ("memory", "memory.swap.max", "67108864"),
                ("memory", "memory.low", "33554432"),
                ("cpu", "cpu.weight", "20"),
                ("cpu", "cpu.max", "25000 100000"),
                ("io", "io.bfq.weight", "300"),
                ("io", "io.max", "254:0 rbps=2097152 wbps=1048576 wiops=50"),
                ("io", "io.max", "7:1 riops=100"),
                ("pids", "pids.max", "64"),
            ]
        );
        let w = v2_writes(&everything());
        let bfq = w.iter().find(|w| w.file == "io.bfq.weight").unwrap();
        assert_eq!(bfq.fallback, Some(("io.weight", "2930".to_string())));
        assert_eq!(
            v2_unsupported(&everything()),
            vec![
                "Your kernel does not support OomKillDisable. OomKillDisable discarded.",
                "Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory swappiness discarded."
            ]
        );
    }

    #[test]
    fn v2_swap_is_the_part_above_memory() {
        let swap = |memory, memory_swap| {
            v2_writes(&Resources {
                memory,
                memory_swap,
                ..Default::default()
            })
            .into_iter()
            .find(|w| w.file == "memory.swap.max")
            .map(|w| w.value)
        };
        assert_eq!(swap(64 * M, 0).as_deref(), Some("67108864"));
        assert_eq!(swap(64 * M, -1).as_deref(), Some("max"));
        assert_eq!(swap(64 * M, 64 * M).as_deref(), Some("0"));
        assert_eq!(swap(64 * M, 96 * M).as_deref(), Some("33554432"));
        assert_eq!(swap(0, 0), None);
    }

    #[test]
    fn shares_to_weight_is_runcs() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(512), 20);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
        assert_eq!(blkio_to_io_weight(500), 4950);
    }

    #[test]
    fn pids_unlimited_is_max() {
        let r = Resources {
            pids_limit: -1,
            ..Default::default()
        };
        assert_eq!(triples(&v1_writes(&r)), vec![("pids", "pids.max", "max")]);
        assert_eq!(triples(&v2_writes(&r)), vec![("pids", "pids.max", "max")]);
    }

    #[test]
    fn validation_names_the_rule() {
        let msg = |r: Resources| validate(&r).unwrap_err().to_string();
        assert_eq!(
            msg(Resources {
                memory: M,
                ..Default::default()
            }),
            "Minimum memory limit allowed is 6MB"
        );
        assert_eq!(
            msg(Resources {
                memory: 64 * M,
                memory_swap: 32 * M,
                ..Default::default()
            }),
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        );
        assert_eq!(
            msg(Resources {
                memory_swap: 32 * M,
                ..Default::default()
            }),
            "You should always set the Memory limit when using Memoryswap limit, see usage"
        );
        assert_eq!(
            msg(Resources {
                nano_cpus: 1_000_000_000,
                cpu_quota: 5000,
                ..Default::default()
            }),
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set"
        );
        assert_eq!(
            msg(Resources {
                memory_swappiness: Some(101),
                ..Default::default()
            }),
            "Invalid value: 101, valid memory swappiness range is 0-100"
        );
        assert_eq!(
            msg(Resources {
                blkio_weight: 5,
                ..Default::default()
            }),
            "Range of blkio weight is from 10 to 1000"
        );
        assert!(validate(&everything()).is_ok());
        assert!(matches!(
            validate(&Resources {
                cpu_period: 10,
                ..Default::default()
            }),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn merge_keeps_unset_fields_and_applies_dockers_rules() {
        let old = Resources {
            memory: 64 * M,
            nano_cpus: 500_000_000,
            device_write_bps: vec![dev(254, 0, M as u64)],
            ..Default::default()
        };
        let r = merge(
            &old,
            &Resources {
                nano_cpus: 1_000_000_000,
                memory: 128 * M,
                pids_limit: 10,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            (r.memory, r.memory_swap, r.nano_cpus, r.pids_limit),
            (128 * M, 0, 1_000_000_000, 10)
        );
        assert_eq!(r.device_write_bps, old.device_write_bps);
        // The default swap (2 × memory) follows the memory.
        assert_eq!(v1_writes(&r)[1].value, (256 * M).to_string());

        // Rate 0 removes a device's throttle.
        let r = merge(
            &old,
            &Resources {
                device_write_bps: vec![dev(254, 0, 0)],
                ..Default::default()
            },
        )
        .unwrap();
        assert!(r.device_write_bps.is_empty());
        assert_eq!(
            triples(&removals(
                &Resources {
                    device_write_bps: vec![dev(254, 0, 0)],
                    ..Default::default()
                },
                false
            )),
            vec![("blkio", "blkio.throttle.write_bps_device", "254:0 0")]
        );

        let e = merge(
            &old,
            &Resources {
                cpu_quota: 20_000,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(e, Error::FailedPrecondition(_)));
        assert_eq!(
            e.to_string(),
            "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
        );

        let with_swap = Resources {
            memory: 64 * M,
            memory_swap: 128 * M,
            ..Default::default()
        };
        let e = merge(
            &with_swap,
            &Resources {
                memory: 256 * M,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time"
        );
        let e = merge(
            &with_swap,
            &Resources {
                memory_swap: 32 * M,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)));
        let r = merge(
            &with_swap,
            &Resources {
                memory: 256 * M,
                memory_swap: 512 * M,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!((r.memory, r.memory_swap), (256 * M, 512 * M));
    }

    /// A fake v1 hierarchy in a temp dir: writes land in plain files.
    fn fake_v1(files: &[(&str, &str)]) -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().unwrap();
        let mut mounts = Vec::new();
        for c in ["memory", "cpu", "cpuset", "blkio", "pids"] {
            let root = dir.path().join(c);
            std::fs::create_dir_all(root.join("inst/c1")).unwrap();
            mounts.push((c.to_string(), root));
        }
        for (c, f) in files {
            for sub in ["", "inst", "inst/c1"] {
                std::fs::write(dir.path().join(c).join(sub).join(f), "").unwrap();
            }
        }
        (dir, Layout::fixed_v1(mounts))
    }

    #[test]
    fn apply_writes_files_and_warns_for_missing_ones() {
        let (dir, layout) = fake_v1(&[
            ("memory", "memory.limit_in_bytes"),
            ("memory", "memory.memsw.limit_in_bytes"),
            ("pids", "pids.max"),
        ]);
        let r = Resources {
            memory: 64 * M,
            blkio_weight: 300,
            pids_limit: 7,
            ..Default::default()
        };
        let warnings = apply(&layout, "inst/c1", &v1_writes(&r)).unwrap();
        assert_eq!(
            warnings,
            vec![
                "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."
            ]
        );
        let read = |c: &str, f: &str| {
            std::fs::read_to_string(dir.path().join(c).join("inst/c1").join(f)).unwrap()
        };
        assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(read("memory", "memory.memsw.limit_in_bytes"), "134217728");
        assert_eq!(read("pids", "pids.max"), "7");
        assert_eq!(
            unsupported(&layout, "inst", &r),
            vec![
                "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."
            ]
        );
        // Before the instance exists, the hierarchy root answers.
        assert_eq!(unsupported(&layout, "other", &r).len(), 1);
    }
}
