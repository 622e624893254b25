//! Docker's rules for the resource limits of `run`/`create` and `update` (its daemon's
//! `verifyPlatformContainerResources` and `container.UpdateContainer`), as pure functions
//! over the request and the host's facts ([`Host`], and a block-device lookup passed in).
//!
//! Conventions (the supervisor's `Resources`): bytes, microseconds, CPUs × 1e9, 0 unset.
//! What is normalized here, so that inspect shows Docker's values:
//! - `memory_swap` 0 with a memory limit becomes twice the memory limit (Docker's default);
//! - `memory_swappiness` -1 is "unset" (Docker's CLI default);
//! - `pids_limit` ≤ 0 is "unlimited": 0 on create, -1 on update (0 there means "leave");
//! - throttle devices get their major/minor numbers from the device node.
//!
//! `--cpu-shares` below 2 or above 262144 is refused (Docker's daemon clamps with a log
//! line nobody sees; the issue asks for a refusal naming the value).
use std::collections::BTreeSet;

use berth_proto::supervisor::v1::{Resources, ThrottleDevice};
use tonic::Status;

/// Docker's `linuxMinMemory`.
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;
pub const MIN_CPU_SHARES: i64 = 2;
pub const MAX_CPU_SHARES: i64 = 262_144;
/// 0.01 CPU.
pub const MIN_NANO_CPUS: i64 = 10_000_000;

/// A refused value: the message names the value and the rule (Docker's words first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl From<Invalid> for Status {
    fn from(e: Invalid) -> Status {
        Status::invalid_argument(e.0)
    }
}

fn invalid<T>(message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid(message.into()))
}

/// What the rules need to know about the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// CPUs the containers may use (for the `--cpus` range).
    pub ncpu: u32,
    /// Online CPUs and memory nodes, in the kernel's list form ("0-1").
    pub cpus: String,
    pub mems: String,
}

impl Host {
    /// From /sys/devices/system/{cpu,node}/online (a host without NUMA has node 0 only).
    pub fn current() -> Host {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let cpus = read("/sys/devices/system/cpu/online").unwrap_or_else(|| {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            if n == 1 {
                "0".into()
            } else {
                format!("0-{}", n - 1)
            }
        });
        let mems = read("/sys/devices/system/node/online").unwrap_or_else(|| "0".into());
        let ncpu = parse_list(&cpus).map_or(1, |s| s.len().max(1) as u32);
        Host { ncpu, cpus, mems }
    }
}

/// Major and minor numbers of a block device node, or why it is not one.
pub type DeviceLookup<'a> = &'a dyn Fn(&str) -> Result<(u32, u32), String>;

/// The real lookup: stat(2) the path; it must be a block device.
pub fn block_device(path: &str) -> Result<(u32, u32), String> {
    use nix::sys::stat::{major, minor, stat, SFlag};
    let st = stat(path).map_err(|e| e.desc().to_lowercase())?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFBLK {
        return Err("not a block device".into());
    }
    Ok((major(st.st_rdev) as u32, minor(st.st_rdev) as u32))
}

/// Validates and normalizes the limits of a new container. Returns Docker's warnings
/// (things that do not stop the create).
pub fn check_create(
    r: &mut Resources,
    host: &Host,
    devices: DeviceLookup,
) -> Result<Vec<String>, Invalid> {
    normalize(r, false);
    if r.memory > 0 && r.memory_swap == 0 {
        r.memory_swap = r.memory.saturating_mul(2);
    }
    check(r, host)?;
    resolve_devices(r, devices)?;
    Ok(warnings(r))
}

/// Validates a change of a container's limits (`update`) against its `current` ones:
/// Docker's update conflicts, then every rule on the merged result. `change` is
/// normalized in place and is what the supervisor gets (its zero values mean "leave").
pub fn check_update(
    current: &Resources,
    change: &mut Resources,
    host: &Host,
    devices: DeviceLookup,
) -> Result<Vec<String>, Invalid> {
    normalize(change, true);
    let conflict = |what: &str, already: &str| {
        invalid(format!(
            "Conflicting options: {what} cannot be updated as {already} has already been set"
        ))
    };
    if change.nano_cpus != 0 && current.cpu_period > 0 && change.cpu_period == 0 {
        return conflict("NanoCPUs", "CPU Period");
    }
    if change.nano_cpus != 0 && current.cpu_quota > 0 && change.cpu_quota == 0 {
        return conflict("NanoCPUs", "CPU Quota");
    }
    if change.cpu_period != 0 && current.nano_cpus > 0 && change.nano_cpus == 0 {
        return conflict("CPU Period", "NanoCPUs");
    }
    if change.cpu_quota != 0 && current.nano_cpus > 0 && change.nano_cpus == 0 {
        return conflict("CPU Quota", "NanoCPUs");
    }
    if change.memory != 0 && change.memory_swap == 0 {
        if current.memory_swap > 0 && change.memory > current.memory_swap {
            return invalid(format!(
                "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time (--memory {}, current --memory-swap {})",
                bytes(change.memory),
                bytes(current.memory_swap)
            ));
        }
        if current.memory_swap == 0 && change.memory > 0 {
            // No swap limit yet: the create default, twice the memory.
            change.memory_swap = change.memory.saturating_mul(2);
        }
    }
    let mut merged = merge(current, change);
    normalize(&mut merged, false);
    check(&merged, host)?;
    resolve_devices(change, devices)?;
    Ok(warnings(&merged))
}

/// `current` with the set fields of `change`.
pub fn merge(current: &Resources, change: &Resources) -> Resources {
    let mut m = current.clone();
    let num = |dst: &mut i64, v: i64| {
        if v != 0 {
            *dst = v;
        }
    };
    num(&mut m.memory, change.memory);
    num(&mut m.memory_swap, change.memory_swap);
    num(&mut m.memory_reservation, change.memory_reservation);
    num(&mut m.nano_cpus, change.nano_cpus);
    num(&mut m.cpu_period, change.cpu_period);
    num(&mut m.cpu_quota, change.cpu_quota);
    num(&mut m.cpu_shares, change.cpu_shares);
    num(&mut m.pids_limit, change.pids_limit);
    m.oom_kill_disable |= change.oom_kill_disable;
    if change.memory_swappiness.is_some() {
        m.memory_swappiness = change.memory_swappiness;
    }
    if !change.cpuset_cpus.is_empty() {
        m.cpuset_cpus = change.cpuset_cpus.clone();
    }
    if !change.cpuset_mems.is_empty() {
        m.cpuset_mems = change.cpuset_mems.clone();
    }
    if change.blkio_weight != 0 {
        m.blkio_weight = change.blkio_weight;
    }
    for (dst, src) in [
        (&mut m.device_read_bps, &change.device_read_bps),
        (&mut m.device_write_bps, &change.device_write_bps),
        (&mut m.device_read_iops, &change.device_read_iops),
        (&mut m.device_write_iops, &change.device_write_iops),
    ] {
        if !src.is_empty() {
            dst.clone_from(src);
        }
    }
    m
}

fn normalize(r: &mut Resources, update: bool) {
    if r.memory_swappiness == Some(-1) {
        r.memory_swappiness = None;
    }
    if r.pids_limit < 0 {
        r.pids_limit = if update { -1 } else { 0 };
    }
}

/// Every rule, in Docker's order.
pub fn check(r: &Resources, host: &Host) -> Result<(), Invalid> {
    // Memory.
    if r.memory != 0 && r.memory < MIN_MEMORY {
        return invalid(format!(
            "Minimum memory limit allowed is 6MB (--memory {})",
            bytes(r.memory)
        ));
    }
    if r.memory_swap < -1 {
        return invalid(format!(
            "Invalid value {} for --memory-swap: it is a size, or -1 for unlimited swap",
            r.memory_swap
        ));
    }
    if r.memory > 0 && r.memory_swap > 0 && r.memory_swap < r.memory {
        return invalid(format!(
            "Minimum memoryswap limit should be larger than memory limit, see usage (--memory {}, --memory-swap {})",
            bytes(r.memory),
            bytes(r.memory_swap)
        ));
    }
    if r.memory == 0 && r.memory_swap > 0 {
        return invalid(format!(
            "You should always set the Memory limit when using Memoryswap limit, see usage (--memory-swap {})",
            bytes(r.memory_swap)
        ));
    }
    if let Some(s) = r.memory_swappiness {
        if !(0..=100).contains(&s) {
            return invalid(format!(
                "Invalid value: {s}, valid memory swappiness range is 0-100"
            ));
        }
    }
    if r.memory_reservation != 0 && r.memory_reservation < MIN_MEMORY {
        return invalid(format!(
            "Minimum memory reservation allowed is 6MB (--memory-reservation {})",
            bytes(r.memory_reservation)
        ));
    }
    if r.memory > 0 && r.memory_reservation > 0 && r.memory < r.memory_reservation {
        return invalid(format!(
            "Minimum memory limit can not be less than memory reservation limit, see usage (--memory {}, --memory-reservation {})",
            bytes(r.memory),
            bytes(r.memory_reservation)
        ));
    }
    // CPU.
    if r.nano_cpus != 0 && r.cpu_period != 0 {
        return invalid("Conflicting options: Nano CPUs and CPU Period cannot both be set");
    }
    if r.nano_cpus != 0 && r.cpu_quota != 0 {
        return invalid("Conflicting options: Nano CPUs and CPU Quota cannot both be set");
    }
    let max_nano = i64::from(host.ncpu) * 1_000_000_000;
    if r.nano_cpus != 0 && (r.nano_cpus < MIN_NANO_CPUS || r.nano_cpus > max_nano) {
        return invalid(format!(
            "Range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available (--cpus {})",
            cpus(r.nano_cpus),
            n = host.ncpu
        ));
    }
    if r.cpu_period != 0 && !(1000..=1_000_000).contains(&r.cpu_period) {
        return invalid(format!(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000) (--cpu-period {})",
            r.cpu_period
        ));
    }
    if r.cpu_quota < -1 || (r.cpu_quota > 0 && r.cpu_quota < 1000) {
        return invalid(format!(
            "CPU cfs quota can not be less than 1ms (i.e. 1000) (--cpu-quota {})",
            r.cpu_quota
        ));
    }
    if r.cpu_shares != 0 && !(MIN_CPU_SHARES..=MAX_CPU_SHARES).contains(&r.cpu_shares) {
        return invalid(format!(
            "Invalid value {} for --cpu-shares: the range of CPU shares is from {MIN_CPU_SHARES} to {MAX_CPU_SHARES}",
            r.cpu_shares
        ));
    }
    // Cpuset.
    cpuset(&r.cpuset_cpus, &host.cpus, "cpus", "CPUs")?;
    cpuset(&r.cpuset_mems, &host.mems, "mems", "memory nodes")?;
    // Block I/O.
    if r.blkio_weight != 0 && !(10..=1000).contains(&r.blkio_weight) {
        return invalid(format!(
            "Range of blkio weight is from 10 to 1000 (--blkio-weight {})",
            r.blkio_weight
        ));
    }
    Ok(())
}

/// Docker's warnings for limits that are accepted but probably not what was meant.
fn warnings(r: &Resources) -> Vec<String> {
    let mut out = Vec::new();
    if r.oom_kill_disable && r.memory == 0 {
        out.push(
            "OOM killer is disabled for the container, but no memory limit is set, this can result in the system running out of resources."
                .to_string(),
        );
    }
    out
}

fn cpuset(requested: &str, available: &str, kind: &str, what: &str) -> Result<(), Invalid> {
    if requested.is_empty() {
        return Ok(());
    }
    let Some(wanted) = parse_list(requested) else {
        return invalid(format!(
            "Invalid value {requested} for cpuset {kind}: invalid format: {requested}"
        ));
    };
    let have = parse_list(available).unwrap_or_default();
    if !wanted.is_subset(&have) {
        return invalid(format!(
            "Requested {what} are not available - requested {requested}, available: {available}"
        ));
    }
    Ok(())
}

/// The kernel's list form ("0-2,4"), as Docker's `parsers.ParseUintList`; `None` when
/// malformed. An empty string is the empty set.
pub fn parse_list(list: &str) -> Option<BTreeSet<u32>> {
    let mut out = BTreeSet::new();
    if list.is_empty() {
        return Some(out);
    }
    for part in list.split(',') {
        let num = |s: &str| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u32>().ok())
                .flatten()
        };
        match part.split_once('-') {
            None => {
                out.insert(num(part)?);
            }
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                // Docker caps a list at a sane size rather than allocating for it.
                if b < a || b - a > 8192 {
                    return None;
                }
                out.extend(a..=b);
            }
        }
    }
    Some(out)
}

fn resolve_devices(r: &mut Resources, devices: DeviceLookup) -> Result<(), Invalid> {
    let lists: [(&str, &mut Vec<ThrottleDevice>); 4] = [
        ("--device-read-bps", &mut r.device_read_bps),
        ("--device-write-bps", &mut r.device_write_bps),
        ("--device-read-iops", &mut r.device_read_iops),
        ("--device-write-iops", &mut r.device_write_iops),
    ];
    for (flag, list) in lists {
        for d in list.iter_mut() {
            if !d.path.starts_with('/') {
                return invalid(format!(
                    "Invalid value {}:{} for {flag}: bad format for device path: {}",
                    d.path, d.rate, d.path
                ));
            }
            match devices(&d.path) {
                Ok((major, minor)) => {
                    d.major = major;
                    d.minor = minor;
                }
                Err(why) => return invalid(format!("Invalid device {} for {flag}: {why}", d.path)),
            }
        }
    }
    Ok(())
}

/// Bytes as the user probably wrote them ("64MiB"), exact or in bytes.
fn bytes(n: i64) -> String {
    const UNITS: [(&str, i64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if n != 0 && n % size == 0 {
            return format!("{}{unit}", n / size);
        }
    }
    format!("{n}B")
}

/// Nano CPUs as `--cpus` takes them ("0.5").
fn cpus(nano: i64) -> String {
    let s = format!("{:.9}", nano as f64 / 1e9);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: i64 = 1 << 20;

    fn host() -> Host {
        Host {
            ncpu: 2,
            cpus: "0-1".into(),
            mems: "0".into(),
        }
    }

    fn fake_devices(path: &str) -> Result<(u32, u32), String> {
        match path {
            "/dev/vda" => Ok((253, 0)),
            "/dev/null" => Err("not a block device".into()),
            _ => Err("no such file or directory".into()),
        }
    }

    fn create(r: Resources) -> Result<Resources, String> {
        let mut r = r;
        check_create(&mut r, &host(), &fake_devices)
            .map(|_| r)
            .map_err(|e| e.0)
    }

    fn refused(r: Resources) -> String {
        create(r).expect_err("should be refused")
    }

    #[test]
    fn empty_is_fine_and_unchanged() {
        assert_eq!(create(Resources::default()).unwrap(), Resources::default());
    }

    #[test]
    fn memory_minimum() {
        let e = refused(Resources {
            memory: 4 * MB,
            ..Default::default()
        });
        assert_eq!(e, "Minimum memory limit allowed is 6MB (--memory 4MiB)");
        assert!(create(Resources {
            memory: 6 * MB,
            ..Default::default()
        })
        .is_ok());
        let e = refused(Resources {
            memory: -5,
            ..Default::default()
        });
        assert!(e.starts_with("Minimum memory limit allowed is 6MB"), "{e}");
    }

    #[test]
    fn swap_defaults_to_twice_memory() {
        let r = create(Resources {
            memory: 64 * MB,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.memory_swap, 128 * MB);
        let r = create(Resources {
            memory: 64 * MB,
            memory_swap: -1,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.memory_swap, -1);
        let r = create(Resources {
            memory: 64 * MB,
            memory_swap: 64 * MB,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.memory_swap, 64 * MB);
    }

    #[test]
    fn swap_rules() {
        let e = refused(Resources {
            memory_swap: 128 * MB,
            ..Default::default()
        });
        assert!(
            e.starts_with("You should always set the Memory limit when using Memoryswap limit"),
            "{e}"
        );
        assert!(e.contains("128MiB"), "{e}");
        let e = refused(Resources {
            memory: 64 * MB,
            memory_swap: 32 * MB,
            ..Default::default()
        });
        assert!(
            e.starts_with("Minimum memoryswap limit should be larger than memory limit"),
            "{e}"
        );
        assert!(e.contains("--memory-swap 32MiB"), "{e}");
        let e = refused(Resources {
            memory: 64 * MB,
            memory_swap: -2,
            ..Default::default()
        });
        assert!(e.contains("-2 for --memory-swap"), "{e}");
        // -1 without a memory limit: allowed (nothing to limit), as Docker.
        assert!(create(Resources {
            memory_swap: -1,
            ..Default::default()
        })
        .is_ok());
    }

    #[test]
    fn reservation_rules() {
        let e = refused(Resources {
            memory: 32 * MB,
            memory_reservation: 64 * MB,
            ..Default::default()
        });
        assert!(
            e.starts_with("Minimum memory limit can not be less than memory reservation limit"),
            "{e}"
        );
        let e = refused(Resources {
            memory_reservation: MB,
            ..Default::default()
        });
        assert!(
            e.starts_with("Minimum memory reservation allowed is 6MB"),
            "{e}"
        );
        assert!(create(Resources {
            memory: 64 * MB,
            memory_reservation: 32 * MB,
            ..Default::default()
        })
        .is_ok());
        // A reservation without a limit is fine.
        assert!(create(Resources {
            memory_reservation: 32 * MB,
            ..Default::default()
        })
        .is_ok());
    }

    #[test]
    fn swappiness_range() {
        for ok in [0, 60, 100] {
            assert!(create(Resources {
                memory_swappiness: Some(ok),
                ..Default::default()
            })
            .is_ok());
        }
        let e = refused(Resources {
            memory_swappiness: Some(101),
            ..Default::default()
        });
        assert_eq!(
            e,
            "Invalid value: 101, valid memory swappiness range is 0-100"
        );
        assert!(refused(Resources {
            memory_swappiness: Some(-2),
            ..Default::default()
        })
        .contains("-2"));
        // -1 is Docker's "unset".
        let r = create(Resources {
            memory_swappiness: Some(-1),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.memory_swappiness, None);
    }

    #[test]
    fn oom_kill_disable_without_memory_warns() {
        let mut r = Resources {
            oom_kill_disable: true,
            ..Default::default()
        };
        let w = check_create(&mut r, &host(), &fake_devices).unwrap();
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("OOM killer is disabled"), "{w:?}");
        let mut r = Resources {
            oom_kill_disable: true,
            memory: 64 * MB,
            ..Default::default()
        };
        assert!(check_create(&mut r, &host(), &fake_devices)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn cpus_range() {
        for ok in [MIN_NANO_CPUS, 500_000_000, 2_000_000_000] {
            assert!(create(Resources {
                nano_cpus: ok,
                ..Default::default()
            })
            .is_ok());
        }
        let e = refused(Resources {
            nano_cpus: 3_000_000_000,
            ..Default::default()
        });
        assert_eq!(
            e,
            "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available (--cpus 3)"
        );
        let e = refused(Resources {
            nano_cpus: 5_000_000,
            ..Default::default()
        });
        assert!(e.contains("(--cpus 0.005)"), "{e}");
        assert!(refused(Resources {
            nano_cpus: -1_000_000_000,
            ..Default::default()
        })
        .starts_with("Range of CPUs"));
    }

    #[test]
    fn cpus_exclusive_with_period_and_quota() {
        let e = refused(Resources {
            nano_cpus: 500_000_000,
            cpu_period: 100_000,
            ..Default::default()
        });
        assert_eq!(
            e,
            "Conflicting options: Nano CPUs and CPU Period cannot both be set"
        );
        let e = refused(Resources {
            nano_cpus: 500_000_000,
            cpu_quota: 50_000,
            ..Default::default()
        });
        assert_eq!(
            e,
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set"
        );
    }

    #[test]
    fn period_and_quota_ranges() {
        assert!(create(Resources {
            cpu_period: 100_000,
            cpu_quota: 25_000,
            ..Default::default()
        })
        .is_ok());
        for bad in [999, 1_000_001, -5] {
            let e = refused(Resources {
                cpu_period: bad,
                ..Default::default()
            });
            assert!(
                e.starts_with("CPU cfs period can not be less than 1ms"),
                "{e}"
            );
            assert!(e.contains(&format!("--cpu-period {bad}")), "{e}");
        }
        for bad in [999, -2] {
            let e = refused(Resources {
                cpu_quota: bad,
                ..Default::default()
            });
            assert!(
                e.starts_with("CPU cfs quota can not be less than 1ms"),
                "{e}"
            );
        }
        // -1: no quota, as the kernel takes it.
        assert!(create(Resources {
            cpu_quota: -1,
            ..Default::default()
        })
        .is_ok());
    }

    #[test]
    fn cpu_shares_range() {
        for ok in [2, 512, 1024, 262_144] {
            assert!(create(Resources {
                cpu_shares: ok,
                ..Default::default()
            })
            .is_ok());
        }
        for bad in [1, -3, 262_145] {
            let e = refused(Resources {
                cpu_shares: bad,
                ..Default::default()
            });
            assert_eq!(
                e,
                format!("Invalid value {bad} for --cpu-shares: the range of CPU shares is from 2 to 262144")
            );
        }
    }

    #[test]
    fn cpusets_must_exist() {
        assert!(create(Resources {
            cpuset_cpus: "0-1".into(),
            cpuset_mems: "0".into(),
            ..Default::default()
        })
        .is_ok());
        let e = refused(Resources {
            cpuset_cpus: "0-7".into(),
            ..Default::default()
        });
        assert_eq!(
            e,
            "Requested CPUs are not available - requested 0-7, available: 0-1"
        );
        let e = refused(Resources {
            cpuset_mems: "1".into(),
            ..Default::default()
        });
        assert_eq!(
            e,
            "Requested memory nodes are not available - requested 1, available: 0"
        );
        let e = refused(Resources {
            cpuset_cpus: "0-a".into(),
            ..Default::default()
        });
        assert_eq!(e, "Invalid value 0-a for cpuset cpus: invalid format: 0-a");
        let e = refused(Resources {
            cpuset_mems: "1-0".into(),
            ..Default::default()
        });
        assert!(e.starts_with("Invalid value 1-0 for cpuset mems"), "{e}");
    }

    #[test]
    fn lists() {
        assert_eq!(parse_list("").unwrap().len(), 0);
        assert_eq!(
            parse_list("0-2,4").unwrap().into_iter().collect::<Vec<_>>(),
            vec![0, 1, 2, 4]
        );
        assert_eq!(
            parse_list("3").unwrap().into_iter().collect::<Vec<_>>(),
            vec![3]
        );
        for bad in ["a", "1,", ",1", "1-", "-1", "2-1", "1--2", " 1", "0-100000"] {
            assert!(parse_list(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn blkio_weight_range() {
        for ok in [10, 300, 1000] {
            assert!(create(Resources {
                blkio_weight: ok,
                ..Default::default()
            })
            .is_ok());
        }
        for bad in [9, 1001] {
            assert_eq!(
                refused(Resources {
                    blkio_weight: bad,
                    ..Default::default()
                }),
                format!("Range of blkio weight is from 10 to 1000 (--blkio-weight {bad})")
            );
        }
    }

    fn throttle(path: &str, rate: u64) -> ThrottleDevice {
        ThrottleDevice {
            path: path.into(),
            rate,
            ..Default::default()
        }
    }

    #[test]
    fn throttle_devices_get_their_numbers() {
        let r = create(Resources {
            device_write_bps: vec![throttle("/dev/vda", 1 << 20)],
            device_read_iops: vec![throttle("/dev/vda", 100)],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            (r.device_write_bps[0].major, r.device_write_bps[0].minor),
            (253, 0)
        );
        assert_eq!(r.device_write_bps[0].rate, 1 << 20);
        assert_eq!(r.device_read_iops[0].major, 253);
    }

    #[test]
    fn throttle_devices_must_be_block_devices() {
        let e = refused(Resources {
            device_read_bps: vec![throttle("/dev/nosuch", 1)],
            ..Default::default()
        });
        assert_eq!(
            e,
            "Invalid device /dev/nosuch for --device-read-bps: no such file or directory"
        );
        let e = refused(Resources {
            device_write_iops: vec![throttle("/dev/null", 1)],
            ..Default::default()
        });
        assert_eq!(
            e,
            "Invalid device /dev/null for --device-write-iops: not a block device"
        );
        let e = refused(Resources {
            device_write_bps: vec![throttle("vda", 1)],
            ..Default::default()
        });
        assert!(e.contains("bad format for device path: vda"), "{e}");
    }

    #[test]
    fn the_real_lookup() {
        assert_eq!(block_device("/dev/null").unwrap_err(), "not a block device");
        assert_eq!(
            block_device("/dev/berth-nosuch").unwrap_err(),
            "no such file or directory"
        );
        // A block device, when this machine has one.
        let blocks = std::fs::read_dir("/dev").into_iter().flatten().flatten();
        for entry in blocks {
            use std::os::unix::fs::FileTypeExt;
            if entry.file_type().is_ok_and(|t| t.is_block_device()) {
                let path = entry.path();
                assert!(block_device(path.to_str().unwrap()).is_ok(), "{path:?}");
                break;
            }
        }
    }

    #[test]
    fn pids_limit_zero_or_negative_is_unlimited() {
        for v in [0, -1, -5] {
            assert_eq!(
                create(Resources {
                    pids_limit: v,
                    ..Default::default()
                })
                .unwrap()
                .pids_limit,
                0
            );
        }
        assert_eq!(
            create(Resources {
                pids_limit: 64,
                ..Default::default()
            })
            .unwrap()
            .pids_limit,
            64
        );
    }

    #[test]
    fn the_host() {
        let h = Host::current();
        assert!(h.ncpu >= 1);
        assert!(parse_list(&h.cpus).is_some_and(|s| s.len() == h.ncpu as usize));
        assert!(parse_list(&h.mems).is_some_and(|s| !s.is_empty()));
    }

    fn update(current: &Resources, change: Resources) -> Result<Resources, String> {
        let mut change = change;
        check_update(current, &mut change, &host(), &fake_devices)
            .map(|_| change)
            .map_err(|e| e.0)
    }

    #[test]
    fn update_validates_the_merged_limits() {
        let current = Resources {
            memory: 64 * MB,
            memory_swap: 128 * MB,
            ..Default::default()
        };
        // Raising memory within the swap limit.
        let c = update(
            &current,
            Resources {
                memory: 128 * MB,
                nano_cpus: 1_000_000_000,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.memory, 128 * MB);
        assert_eq!(c.memory_swap, 0, "the swap is left as it is");
        // Past it without a new swap limit: Docker's refusal.
        let e = update(
            &current,
            Resources {
                memory: 256 * MB,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            e.starts_with("Memory limit should be smaller than already set memoryswap limit"),
            "{e}"
        );
        assert!(update(
            &current,
            Resources {
                memory: 256 * MB,
                memory_swap: 512 * MB,
                ..Default::default()
            },
        )
        .is_ok());
        // A swap limit below the current memory limit.
        let e = update(
            &current,
            Resources {
                memory_swap: 32 * MB,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.starts_with("Minimum memoryswap limit"), "{e}");
        // The swap alone, for a container with a memory limit: fine.
        assert!(update(
            &current,
            Resources {
                memory_swap: 256 * MB,
                ..Default::default()
            },
        )
        .is_ok());
        // Each value is still checked.
        let e = update(
            &current,
            Resources {
                cpu_shares: 1,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.contains("--cpu-shares"), "{e}");
        let e = update(
            &current,
            Resources {
                cpuset_cpus: "5".into(),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(e.starts_with("Requested CPUs are not available"), "{e}");
    }

    #[test]
    fn update_memory_of_an_unlimited_container() {
        let c = update(
            &Resources::default(),
            Resources {
                memory: 128 * MB,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.memory_swap, 256 * MB);
        let unlimited_swap = Resources {
            memory: 64 * MB,
            memory_swap: -1,
            ..Default::default()
        };
        let c = update(
            &unlimited_swap,
            Resources {
                memory: 1024 * MB,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.memory_swap, 0);
        // Swap without any memory limit.
        let e = update(
            &Resources::default(),
            Resources {
                memory_swap: 64 * MB,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(
            e.starts_with("You should always set the Memory limit"),
            "{e}"
        );
    }

    #[test]
    fn update_cpu_conflicts() {
        let nano = Resources {
            nano_cpus: 500_000_000,
            ..Default::default()
        };
        let e = update(
            &nano,
            Resources {
                cpu_quota: 50_000,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            e,
            "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
        );
        let e = update(
            &nano,
            Resources {
                cpu_period: 50_000,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            e,
            "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set"
        );
        let quota = Resources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            ..Default::default()
        };
        let e = update(
            &quota,
            Resources {
                nano_cpus: 1_000_000_000,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            e,
            "Conflicting options: NanoCPUs cannot be updated as CPU Period has already been set"
        );
        // Raising --cpus over --cpus.
        assert!(update(
            &nano,
            Resources {
                nano_cpus: 1_500_000_000,
                ..Default::default()
            },
        )
        .is_ok());
        // Out of range.
        assert!(update(
            &nano,
            Resources {
                nano_cpus: 8_000_000_000,
                ..Default::default()
            },
        )
        .unwrap_err()
        .starts_with("Range of CPUs"));
    }

    #[test]
    fn update_pids_limit() {
        let current = Resources {
            pids_limit: 64,
            ..Default::default()
        };
        let c = update(
            &current,
            Resources {
                pids_limit: -5,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(c.pids_limit, -1, "unlimited, not 'leave as is'");
        let c = update(&current, Resources::default()).unwrap();
        assert_eq!(c.pids_limit, 0);
    }

    #[test]
    fn merging() {
        let current = Resources {
            memory: 64 * MB,
            cpu_shares: 512,
            cpuset_cpus: "0".into(),
            memory_swappiness: Some(10),
            ..Default::default()
        };
        let m = merge(
            &current,
            &Resources {
                cpu_shares: 1024,
                cpuset_mems: "0".into(),
                ..Default::default()
            },
        );
        assert_eq!(m.memory, 64 * MB);
        assert_eq!(m.cpu_shares, 1024);
        assert_eq!(m.cpuset_cpus, "0");
        assert_eq!(m.cpuset_mems, "0");
        assert_eq!(m.memory_swappiness, Some(10));
    }

    #[test]
    fn statuses_are_invalid_argument() {
        let s: Status = Invalid("x".into()).into();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(s.message(), "x");
    }
}
