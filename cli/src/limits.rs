//! Pure parsers for the resource limit flags (`run`, `create`, `update`), with Docker's
//! units and error words: `invalid argument "abc" for "-m, --memory" flag: invalid size:
//! 'abc'`. The values go to the engine in base units (bytes, microseconds, CPUs × 1e9);
//! the rules between them (minimum memory, ranges, existing CPUs) are the engine's.
use anyhow::{bail, Result};
use berth_proto::supervisor::v1::{Resources, ThrottleDevice};

use crate::args::{LimitFlags, UpdatableLimits, UpdateArgs};

/// Docker's flag error.
fn flag_error(flag: &str, value: &str, why: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("invalid argument \"{value}\" for \"{flag}\" flag: {why}")
}

/// go-units `RAMInBytes`: a decimal number, an optional space, an optional unit (b, k, m,
/// g, t, p; case-insensitive, binary multiples) with an optional `i` and `b`: "64m",
/// "1g", "1mb", "512k", "1.5GiB", "100". Negative sizes are refused.
pub fn ram_in_bytes(value: &str) -> Option<i64> {
    let bytes = value.as_bytes();
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut end = digits;
    if bytes.get(end) == Some(&b'.') {
        let frac = bytes[end + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if frac == 0 {
            return None;
        }
        end += 1 + frac;
    }
    let number: f64 = value[..end].parse().ok()?;
    let mut rest = &value[end..];
    rest = rest.strip_prefix(' ').unwrap_or(rest);
    let lower = rest.to_ascii_lowercase();
    let mut unit = lower.as_str();
    let mult: f64 = match unit.chars().next() {
        Some(c @ ('k' | 'm' | 'g' | 't' | 'p')) => {
            unit = &unit[1..];
            let power = match c {
                'k' => 1,
                'm' => 2,
                'g' => 3,
                't' => 4,
                _ => 5,
            };
            1024f64.powi(power)
        }
        _ => 1.0,
    };
    unit = unit.strip_prefix('i').unwrap_or(unit);
    unit = unit.strip_prefix('b').unwrap_or(unit);
    if !unit.is_empty() {
        return None;
    }
    let size = number * mult;
    if !size.is_finite() || size >= i64::MAX as f64 {
        return None;
    }
    Some(size as i64)
}

/// A size flag (`-m`, `--memory-reservation`).
pub fn size(flag: &str, value: &str) -> Result<i64> {
    ram_in_bytes(value).ok_or_else(|| flag_error(flag, value, format!("invalid size: '{value}'")))
}

/// `--memory-swap`: a size or -1 (unlimited).
pub fn memory_swap(flag: &str, value: &str) -> Result<i64> {
    if value == "-1" {
        return Ok(-1);
    }
    size(flag, value)
}

/// Go's `strconv.ParseInt` for an int64 flag.
pub fn int(flag: &str, value: &str) -> Result<i64> {
    value.parse::<i64>().map_err(|e| {
        let why = if matches!(
            e.kind(),
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow
        ) {
            "value out of range"
        } else {
            "invalid syntax"
        };
        flag_error(
            flag,
            value,
            format!("strconv.ParseInt: parsing \"{value}\": {why}"),
        )
    })
}

/// `--blkio-weight` (Go's uint16).
pub fn uint16(flag: &str, value: &str) -> Result<u16> {
    value.parse::<u16>().map_err(|e| {
        let why = if matches!(e.kind(), std::num::IntErrorKind::PosOverflow) {
            "value out of range"
        } else {
            "invalid syntax"
        };
        flag_error(
            flag,
            value,
            format!("strconv.ParseUint: parsing \"{value}\": {why}"),
        )
    })
}

/// `--cpus`: a decimal number of CPUs to nano CPUs ("0.5" → 500000000), exactly as
/// Docker's `NanoCPUs` does (finer than 1e-9 is "value is too precise").
pub fn nano_cpus(flag: &str, value: &str) -> Result<i64> {
    let bad = || {
        flag_error(
            flag,
            value,
            format!("failed to parse {value} as a rational number"),
        )
    };
    let (negative, unsigned) = match value.strip_prefix('-') {
        Some(v) => (true, v),
        None => (false, value.strip_prefix('+').unwrap_or(value)),
    };
    let (whole, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if (whole.is_empty() && frac.is_empty())
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let (kept, dropped) = frac.split_at(frac.len().min(9));
    if dropped.bytes().any(|b| b != b'0') {
        return Err(flag_error(flag, value, "value is too precise"));
    }
    let whole: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let frac: i128 = format!("{kept:0<9}").parse().map_err(|_| bad())?;
    let nano = whole
        .checked_mul(1_000_000_000)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)?;
    let nano = if negative { -nano } else { nano };
    i64::try_from(nano).map_err(|_| flag_error(flag, value, "value out of range"))
}

const BPS_FORMAT: &str = "The correct format is <device-path>:<number>[<unit>]. Number must be a positive integer. Unit is optional and can be kb, mb, or gb";
const IOPS_FORMAT: &str =
    "The correct format is <device-path>:<number>. Number must be a positive integer";

fn device_path<'a>(flag: &str, value: &'a str) -> Result<(&'a str, &'a str)> {
    match value.split_once(':') {
        Some((path, rate)) if !path.is_empty() => {
            if !path.starts_with("/dev/") {
                return Err(flag_error(
                    flag,
                    value,
                    format!("bad format for device path: {value}"),
                ));
            }
            Ok((path, rate))
        }
        _ => Err(flag_error(flag, value, format!("bad format: {value}"))),
    }
}

/// `--device-read-bps` / `--device-write-bps`: `PATH:RATE`, the rate a size ("1mb").
pub fn throttle_bps(flag: &str, value: &str) -> Result<ThrottleDevice> {
    let (path, rate) = device_path(flag, value)?;
    let rate = ram_in_bytes(rate).ok_or_else(|| {
        flag_error(
            flag,
            value,
            format!("invalid rate for device: {value}. {BPS_FORMAT}"),
        )
    })?;
    Ok(ThrottleDevice {
        path: path.to_string(),
        rate: rate as u64,
        ..Default::default()
    })
}

/// `--device-read-iops` / `--device-write-iops`: `PATH:N`.
pub fn throttle_iops(flag: &str, value: &str) -> Result<ThrottleDevice> {
    let (path, rate) = device_path(flag, value)?;
    let rate = rate.parse::<u64>().map_err(|_| {
        flag_error(
            flag,
            value,
            format!("invalid rate for device: {value}. {IOPS_FORMAT}"),
        )
    })?;
    Ok(ThrottleDevice {
        path: path.to_string(),
        rate,
        ..Default::default()
    })
}

/// `--cpus` as given on the command line: an explicit 0 is outside Docker's range
/// (0.01 to the host's CPUs) and refused here, where it is still told apart from "unset".
pub fn cpus_flag(value: &str) -> Result<i64> {
    let nano = nano_cpus("--cpus", value)?;
    if nano == 0 {
        return Err(flag_error(
            "--cpus",
            value,
            "Range of CPUs is from 0.01 to the number of CPUs available (leave --cpus out for no limit)",
        ));
    }
    Ok(nano)
}

/// Parses every value of a repeatable flag.
fn each(
    values: &[String],
    flag: &str,
    parse: fn(&str, &str) -> Result<ThrottleDevice>,
) -> Result<Vec<ThrottleDevice>> {
    values.iter().map(|v| parse(flag, v)).collect()
}

fn opt<T>(v: &Option<String>, parse: impl Fn(&str) -> Result<T>) -> Result<Option<T>> {
    v.as_deref().map(parse).transpose()
}

/// The flags `run` and `update` share, parsed; `pids_limit` as given (0 when absent).
fn updatable(u: &UpdatableLimits) -> Result<Resources> {
    Ok(Resources {
        memory: opt(&u.memory, |v| size("-m, --memory", v))?.unwrap_or(0),
        memory_swap: opt(&u.memory_swap, |v| memory_swap("--memory-swap", v))?.unwrap_or(0),
        memory_reservation: opt(&u.memory_reservation, |v| size("--memory-reservation", v))?
            .unwrap_or(0),
        nano_cpus: opt(&u.cpus, cpus_flag)?.unwrap_or(0),
        cpu_period: opt(&u.cpu_period, |v| int("--cpu-period", v))?.unwrap_or(0),
        cpu_quota: opt(&u.cpu_quota, |v| int("--cpu-quota", v))?.unwrap_or(0),
        cpu_shares: opt(&u.cpu_shares, |v| int("-c, --cpu-shares", v))?.unwrap_or(0),
        cpuset_cpus: u.cpuset_cpus.clone().unwrap_or_default(),
        cpuset_mems: u.cpuset_mems.clone().unwrap_or_default(),
        blkio_weight: opt(&u.blkio_weight, |v| uint16("--blkio-weight", v))?.unwrap_or(0) as u32,
        pids_limit: opt(&u.pids_limit, |v| int("--pids-limit", v))?.unwrap_or(0),
        ..Default::default()
    })
}

/// The limits of `run`/`create`; `None` when no flag was given.
pub fn resources(f: &LimitFlags) -> Result<Option<Resources>> {
    let swappiness = opt(&f.memory_swappiness, |v| int("--memory-swappiness", v))?;
    let r = Resources {
        oom_kill_disable: f.oom_kill_disable,
        // -1 is Docker's default: the kernel's swappiness.
        memory_swappiness: swappiness.filter(|s| *s != -1),
        device_read_bps: each(&f.device_read_bps, "--device-read-bps", throttle_bps)?,
        device_write_bps: each(&f.device_write_bps, "--device-write-bps", throttle_bps)?,
        device_read_iops: each(&f.device_read_iops, "--device-read-iops", throttle_iops)?,
        device_write_iops: each(&f.device_write_iops, "--device-write-iops", throttle_iops)?,
        ..updatable(&f.updatable)?
    };
    // 0 or negative: unlimited.
    let r = Resources {
        pids_limit: r.pids_limit.max(0),
        ..r
    };
    Ok((r != Resources::default()).then_some(r))
}

/// The change of `update`: only the flags given (zero values mean "leave as is", so
/// `--pids-limit 0` or negative is sent as -1, unlimited).
pub fn update_resources(a: &UpdateArgs) -> Result<Resources> {
    let mut r = updatable(&a.limits)?;
    if a.limits.pids_limit.is_some() && r.pids_limit <= 0 {
        r.pids_limit = -1;
    }
    if !any_update_flag(a) {
        bail!("you must provide one or more flags when using this command");
    }
    Ok(r)
}

/// Whether `update` was given anything to change.
pub fn any_update_flag(a: &UpdateArgs) -> bool {
    let u = &a.limits;
    [
        &u.memory,
        &u.memory_swap,
        &u.memory_reservation,
        &u.cpus,
        &u.cpu_period,
        &u.cpu_quota,
        &u.cpu_shares,
        &u.cpuset_cpus,
        &u.cpuset_mems,
        &u.blkio_weight,
        &u.pids_limit,
    ]
    .iter()
    .any(|f| f.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: i64 = 1 << 20;

    #[test]
    fn sizes_as_docker_reads_them() {
        for (text, bytes) in [
            ("64m", 64 * MB),
            ("64M", 64 * MB),
            ("1g", 1 << 30),
            ("1mb", MB),
            ("1MB", MB),
            ("512k", 512 << 10),
            ("512kb", 512 << 10),
            ("1.5g", 3 << 29),
            ("1GiB", 1 << 30),
            ("100", 100),
            ("100b", 100),
            ("10 m", 10 * MB),
            ("0", 0),
            ("1t", 1 << 40),
        ] {
            assert_eq!(ram_in_bytes(text), Some(bytes), "{text}");
        }
        for bad in [
            "", "abc", "-1", "m", "1x", "1mm", "1.m", ".5m", "1.2.3", "1  m", "1m ", "64mbb",
        ] {
            assert_eq!(ram_in_bytes(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn size_errors_use_dockers_words() {
        assert_eq!(
            size("-m, --memory", "abc").unwrap_err().to_string(),
            "invalid argument \"abc\" for \"-m, --memory\" flag: invalid size: 'abc'"
        );
        assert_eq!(memory_swap("--memory-swap", "-1").unwrap(), -1);
        assert!(memory_swap("--memory-swap", "-2")
            .unwrap_err()
            .to_string()
            .contains("invalid size: '-2'"));
    }

    #[test]
    fn ints() {
        assert_eq!(int("--cpu-period", "100000").unwrap(), 100_000);
        assert_eq!(int("--pids-limit", "-1").unwrap(), -1);
        assert_eq!(
            int("--cpu-period", "x").unwrap_err().to_string(),
            "invalid argument \"x\" for \"--cpu-period\" flag: strconv.ParseInt: parsing \"x\": invalid syntax"
        );
        assert!(int("--cpu-quota", "99999999999999999999")
            .unwrap_err()
            .to_string()
            .ends_with("value out of range"));
        assert_eq!(uint16("--blkio-weight", "300").unwrap(), 300);
        assert!(uint16("--blkio-weight", "-1")
            .unwrap_err()
            .to_string()
            .contains("strconv.ParseUint: parsing \"-1\": invalid syntax"));
        assert!(uint16("--blkio-weight", "70000")
            .unwrap_err()
            .to_string()
            .ends_with("value out of range"));
    }

    #[test]
    fn cpus() {
        for (text, nano) in [
            ("0.5", 500_000_000),
            ("1", 1_000_000_000),
            ("1.25", 1_250_000_000),
            ("0.01", 10_000_000),
            (".5", 500_000_000),
            ("2.", 2_000_000_000),
            ("0.000000001", 1),
            ("1.0000000000", 1_000_000_000),
            ("-1", -1_000_000_000),
            ("0", 0),
        ] {
            assert_eq!(nano_cpus("--cpus", text).unwrap(), nano, "{text}");
        }
        assert_eq!(
            nano_cpus("--cpus", "abc").unwrap_err().to_string(),
            "invalid argument \"abc\" for \"--cpus\" flag: failed to parse abc as a rational number"
        );
        assert_eq!(
            nano_cpus("--cpus", "0.0000000001").unwrap_err().to_string(),
            "invalid argument \"0.0000000001\" for \"--cpus\" flag: value is too precise"
        );
        for bad in ["", ".", "1.2.3", "1e3", "--1", "0x1"] {
            assert!(nano_cpus("--cpus", bad).is_err(), "{bad:?}");
        }
        // Given explicitly, 0 is out of range (the engine sees 0 as "unset").
        assert_eq!(cpus_flag("0.5").unwrap(), 500_000_000);
        for zero in ["0", "0.0", "-0"] {
            let e = cpus_flag(zero).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!(
                    "invalid argument \"{zero}\" for \"--cpus\" flag: Range of CPUs is from 0.01"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn throttles() {
        let d = throttle_bps("--device-write-bps", "/dev/vda:1mb").unwrap();
        assert_eq!((d.path.as_str(), d.rate), ("/dev/vda", 1 << 20));
        let d = throttle_bps("--device-read-bps", "/dev/loop0:512kb").unwrap();
        assert_eq!(d.rate, 512 << 10);
        let d = throttle_iops("--device-read-iops", "/dev/vda:100").unwrap();
        assert_eq!(d.rate, 100);
        assert_eq!(
            throttle_bps("--device-read-bps", "vda")
                .unwrap_err()
                .to_string(),
            "invalid argument \"vda\" for \"--device-read-bps\" flag: bad format: vda"
        );
        assert_eq!(
            throttle_bps("--device-read-bps", "vda:1mb")
                .unwrap_err()
                .to_string(),
            "invalid argument \"vda:1mb\" for \"--device-read-bps\" flag: bad format for device path: vda:1mb"
        );
        let e = throttle_bps("--device-write-bps", "/dev/vda:fast")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("invalid argument \"/dev/vda:fast\" for \"--device-write-bps\" flag: invalid rate for device: /dev/vda:fast. The correct format is"),
            "{e}"
        );
        let e = throttle_iops("--device-write-iops", "/dev/vda:1k")
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid rate for device: /dev/vda:1k"), "{e}");
        assert!(throttle_iops("--device-write-iops", "/dev/vda:-1").is_err());
    }

    #[test]
    fn run_flags_to_resources() {
        assert_eq!(resources(&LimitFlags::default()).unwrap(), None);
        let f = LimitFlags {
            updatable: UpdatableLimits {
                memory: Some("64m".into()),
                memory_swap: Some("128m".into()),
                memory_reservation: Some("32m".into()),
                cpus: Some("0.5".into()),
                cpu_shares: Some("512".into()),
                cpuset_cpus: Some("0".into()),
                cpuset_mems: Some("0".into()),
                blkio_weight: Some("300".into()),
                pids_limit: Some("64".into()),
                ..Default::default()
            },
            oom_kill_disable: true,
            memory_swappiness: Some("0".into()),
            device_write_bps: vec!["/dev/vda:1mb".into()],
            device_read_iops: vec!["/dev/vda:100".into()],
            ..Default::default()
        };
        let r = resources(&f).unwrap().unwrap();
        assert_eq!(r.memory, 64 * MB);
        assert_eq!(r.memory_swap, 128 * MB);
        assert_eq!(r.memory_reservation, 32 * MB);
        assert!(r.oom_kill_disable);
        assert_eq!(r.memory_swappiness, Some(0));
        assert_eq!(r.nano_cpus, 500_000_000);
        assert_eq!(r.cpu_shares, 512);
        assert_eq!((r.cpuset_cpus.as_str(), r.cpuset_mems.as_str()), ("0", "0"));
        assert_eq!(r.blkio_weight, 300);
        assert_eq!(r.device_write_bps[0].rate, MB as u64);
        assert_eq!(r.device_read_iops[0].rate, 100);
        assert_eq!(r.pids_limit, 64);
        // Docker's defaults: swappiness -1 and pids-limit ≤ 0 are "unset".
        let f = LimitFlags {
            updatable: UpdatableLimits {
                pids_limit: Some("-1".into()),
                ..Default::default()
            },
            memory_swappiness: Some("-1".into()),
            ..Default::default()
        };
        assert_eq!(resources(&f).unwrap(), None);
        let f = LimitFlags {
            updatable: UpdatableLimits {
                cpu_period: Some("100000".into()),
                cpu_quota: Some("25000".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let r = resources(&f).unwrap().unwrap();
        assert_eq!((r.cpu_period, r.cpu_quota), (100_000, 25_000));
        let f = LimitFlags {
            updatable: UpdatableLimits {
                memory: Some("lots".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(resources(&f)
            .unwrap_err()
            .to_string()
            .contains("\"lots\" for \"-m, --memory\""));
    }

    fn update_args(f: impl FnOnce(&mut UpdateArgs)) -> UpdateArgs {
        let mut a = UpdateArgs {
            limits: UpdatableLimits::default(),
            containers: vec!["web".into()],
        };
        f(&mut a);
        a
    }

    #[test]
    fn update_flags_to_the_change() {
        let r = update_resources(&update_args(|a| {
            a.limits.cpus = Some("1".into());
            a.limits.memory = Some("128m".into());
        }))
        .unwrap();
        assert_eq!(r.nano_cpus, 1_000_000_000);
        assert_eq!(r.memory, 128 * MB);
        assert_eq!(r.memory_swap, 0);
        for (given, sent) in [("0", -1), ("-1", -1), ("-7", -1), ("100", 100)] {
            let r = update_resources(&update_args(|a| a.limits.pids_limit = Some(given.into())))
                .unwrap();
            assert_eq!(r.pids_limit, sent, "{given}");
        }
        assert_eq!(
            update_resources(&update_args(|_| {}))
                .unwrap_err()
                .to_string(),
            "you must provide one or more flags when using this command"
        );
        assert!(update_resources(&update_args(|a| a.limits.cpus = Some("x".into()))).is_err());
    }
}
