//! Pure parsers for the CLI's flag values: environment (`-e`, `--env-file`),
//! `KEY=VALUE` options, `--add-host`, `--dns`, and times and durations (`logs --since`).
//! Every error names the value it refused.
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};
use berth_proto::supervisor::v1::{HostEntry, RestartPolicy};

/// Resolves `-e` values: `K=V` is kept, a bare `K` takes its value from `lookup` (skipped
/// when unset, as Docker does).
pub fn env_flag(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>> {
    match value.split_once('=') {
        Some(("", _)) => bail!("invalid environment variable: {value:?}"),
        Some(_) => Ok(Some(value.to_string())),
        None if value.is_empty() => bail!("invalid environment variable: {value:?}"),
        None if value.chars().any(char::is_whitespace) => {
            bail!("invalid environment variable: {value:?} contains whitespaces")
        }
        None => Ok(lookup(value).map(|v| format!("{value}={v}"))),
    }
}

/// Parses an env file's text (`K=V` lines, `#` comments, blank lines, bare `K` taken from
/// `lookup`). Errors name `file` and the line number.
pub fn env_file(
    file: &str,
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let lineno = index + 1;
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (line.trim_end(), None),
        };
        if key.is_empty() {
            bail!("{file}:{lineno}: no variable name in {line:?}");
        }
        if key.chars().any(char::is_whitespace) {
            bail!("{file}:{lineno}: variable {key:?} contains whitespaces");
        }
        match value {
            Some(v) => out.push(format!("{key}={v}")),
            None => {
                if let Some(v) = lookup(key) {
                    out.push(format!("{key}={v}"));
                }
            }
        }
    }
    Ok(out)
}

/// Parses `KEY=VALUE` for `flag` (`--log-opt`, `-o`); the value may be empty, the key not.
pub fn key_value(flag: &str, value: &str) -> Result<(String, String)> {
    match value.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => bail!("invalid {flag} {value:?}: expected KEY=VALUE"),
    }
}

/// Collects `KEY=VALUE` pairs into a map; later values win.
pub fn key_values(flag: &str, values: &[String]) -> Result<HashMap<String, String>> {
    values.iter().map(|v| key_value(flag, v)).collect()
}

/// Labels: `KEY=VALUE` or a bare `KEY` (empty value), as Docker takes them.
pub fn labels(values: &[String]) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for value in values {
        let (k, v) = value.split_once('=').unwrap_or((value.as_str(), ""));
        if k.is_empty() {
            bail!("invalid label {value:?}: the key is empty");
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Parses `--add-host host:ip` (or `host=ip`); the IP may be IPv6 or `host-gateway`.
pub fn add_host(value: &str) -> Result<HostEntry> {
    let split = if value.contains('=') {
        value.split_once('=')
    } else {
        value.split_once(':')
    };
    let (host, ip) =
        split.ok_or_else(|| anyhow!("invalid --add-host {value:?}: expected HOST:IP"))?;
    let ip = ip.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        bail!("invalid --add-host {value:?}: bad host name {host:?}");
    }
    if ip != "host-gateway" && ip.parse::<IpAddr>().is_err() {
        bail!("invalid --add-host {value:?}: invalid IP address {ip:?}");
    }
    Ok(HostEntry {
        hostname: host.to_string(),
        ip: ip.to_string(),
    })
}

/// Validates a `--dns` address.
pub fn dns(value: &str) -> Result<String> {
    value
        .parse::<IpAddr>()
        .map(|_| value.to_string())
        .map_err(|_| anyhow!("invalid --dns {value:?}: not an IP address"))
}

/// Parses `--tail`: `all` (or empty) is every line (-1), else a non-negative count.
pub fn tail(value: &str) -> Result<i64> {
    if value.is_empty() || value == "all" {
        return Ok(-1);
    }
    match value.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(n),
        Ok(_) => Ok(-1),
        Err(_) => bail!("invalid --tail {value:?}: expected a number of lines or \"all\""),
    }
}

/// Parses a Go duration (`300ms`, `10m`, `1h30m`, `1.5h`): units ns, us, µs, ms, s, m, h.
pub fn go_duration(value: &str) -> Result<Duration> {
    let bad = || anyhow!("invalid duration {value:?}");
    let s = value.strip_prefix('+').unwrap_or(value);
    if s.is_empty() {
        return Err(bad());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number = &rest[..num_len];
        if number.is_empty() || number == "." {
            return Err(bad());
        }
        let number: f64 = number.parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += number * nanos_per;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Parses an RFC 3339 timestamp (`Z` or `±HH:MM` offset, optional fraction), or a date
/// alone (`2024-01-02`), into nanoseconds since the epoch.
pub fn rfc3339_nanos(value: &str) -> Result<i64> {
    let bad = || anyhow!("invalid timestamp {value:?}");
    let mut s = value.to_string();
    if s.len() == 10 {
        s.push_str("T00:00:00Z");
    }
    let mut offset_secs = 0i64;
    if !s.ends_with('Z') && !s.ends_with('z') {
        // A trailing ±HH:MM offset after the time part.
        let time_start = s.find(['T', 't', ' ']).ok_or_else(bad)?;
        if let Some(pos) = s[time_start..].rfind(['+', '-']).map(|p| p + time_start) {
            let off = &s[pos + 1..];
            let (h, m) = off.split_once(':').unwrap_or((off, "0"));
            let h: i64 = h.parse().map_err(|_| bad())?;
            let m: i64 = m.parse().map_err(|_| bad())?;
            offset_secs = (h * 3600 + m * 60) * if &s[pos..pos + 1] == "-" { -1 } else { 1 };
            s.truncate(pos);
        }
        s.push('Z');
    }
    let t = humantime::parse_rfc3339_weak(&s).map_err(|_| bad())?;
    let nanos = system_time_nanos(t);
    Ok(nanos - offset_secs * 1_000_000_000)
}

/// Nanoseconds since the epoch (negative before it).
pub fn system_time_nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    }
}

/// Parses `--since`/`--until` as Docker does: an RFC 3339 timestamp or date, Unix seconds
/// (with an optional fraction), or a duration before `now` (`10m`, `1h30m`).
pub fn time_arg(flag: &str, value: &str, now: SystemTime) -> Result<i64> {
    let bad = || {
        anyhow!(
            "invalid value for {flag}: {value:?} (expected an RFC 3339 timestamp, Unix seconds \
             or a duration like 10m)"
        )
    };
    if value.is_empty() {
        return Err(bad());
    }
    if value.chars().all(|c| c.is_ascii_digit() || c == '.') {
        let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
        if secs.is_empty() || frac.len() > 9 || frac.contains('.') {
            return Err(bad());
        }
        let secs: i64 = secs.parse().map_err(|_| bad())?;
        let frac_nanos: i64 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<9}").parse().map_err(|_| bad())?
        };
        return Ok(secs * 1_000_000_000 + frac_nanos);
    }
    if let Ok(d) = go_duration(value) {
        return Ok(system_time_nanos(now) - d.as_nanos() as i64);
    }
    rfc3339_nanos(value).map_err(|_| bad())
}

/// Parses `--restart`: `no`, `always`, `unless-stopped`, `on-failure[:N]` (N ≥ 0).
pub fn restart_policy(value: &str) -> Result<RestartPolicy> {
    let (name, count) = match value.split_once(':') {
        Some((name, count)) => (name, Some(count)),
        None => (value, None),
    };
    match name {
        "no" | "always" | "unless-stopped" | "on-failure" => {}
        _ => bail!(
            "invalid restart policy '{value}': use one of 'no', 'always', 'on-failure[:max-retries]', or 'unless-stopped'"
        ),
    }
    let maximum_retry_count = match count {
        None => 0,
        Some(_) if name != "on-failure" => {
            bail!("invalid restart policy '{value}': maximum retry count can only be used with 'on-failure'")
        }
        Some(n) => match n.parse::<i32>() {
            Ok(n) if n >= 0 => n,
            _ => bail!(
                "invalid restart policy '{value}': maximum retry count must be a non-negative integer"
            ),
        },
    };
    Ok(RestartPolicy {
        name: name.to_string(),
        maximum_retry_count,
    })
}

/// The bytes of Docker's detach-key spec: comma-separated single characters or
/// `ctrl-<a-z|@|[|\\|]|^|_>`. Refused specs are named: `invalid detach keys (x)`.
pub fn detach_key_bytes(spec: &str) -> Result<Vec<u8>> {
    let invalid = || anyhow!("invalid detach keys ({spec})");
    let mut out = Vec::new();
    for key in spec.split(',') {
        let lower = key.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("ctrl-") {
            let &[c] = rest.as_bytes() else {
                return Err(invalid());
            };
            out.push(match c {
                b'a'..=b'z' => c - b'a' + 1,
                b'@' => 0,
                b'[' => 27,
                b'\\' => 28,
                b']' => 29,
                b'^' => 30,
                b'_' => 31,
                _ => return Err(invalid()),
            });
        } else {
            let &[c] = key.as_bytes() else {
                return Err(invalid());
            };
            out.push(c);
        }
    }
    Ok(out)
}

/// `--detach-keys` as the engine takes it: unset is the default (`""`), an empty value
/// (or `none`) disables detaching (`"none"`), anything else must parse.
pub fn detach_keys(value: Option<&str>) -> Result<String> {
    match value {
        None => Ok(String::new()),
        Some("") | Some("none") => Ok("none".to_string()),
        Some(spec) => {
            detach_key_bytes(spec)?;
            Ok(spec.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOME" => Some("/root".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn env_flags() {
        assert_eq!(env_flag("A=b", &env).unwrap(), Some("A=b".into()));
        assert_eq!(env_flag("A=", &env).unwrap(), Some("A=".into()));
        assert_eq!(env_flag("A=b=c", &env).unwrap(), Some("A=b=c".into()));
        assert_eq!(env_flag("HOME", &env).unwrap(), Some("HOME=/root".into()));
        assert_eq!(env_flag("EMPTY", &env).unwrap(), Some("EMPTY=".into()));
        assert_eq!(env_flag("UNSET", &env).unwrap(), None);
        let err = env_flag("=x", &env).unwrap_err().to_string();
        assert!(err.contains("\"=x\""), "{err}");
        assert!(env_flag("", &env).is_err());
        assert!(env_flag("A B", &env)
            .unwrap_err()
            .to_string()
            .contains("A B"));
    }

    #[test]
    fn env_files() {
        let text = "# comment\n\nA=1\n  B=two words\nHOME\nUNSET\nC=\"quoted\"\nD=\n";
        let got = env_file("f.env", text, &env).unwrap();
        assert_eq!(
            got,
            vec!["A=1", "B=two words", "HOME=/root", "C=\"quoted\"", "D="]
        );
        let err = env_file("f.env", "A=1\nBAD KEY=2\n", &env)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("f.env:2:"), "{err}");
        assert!(err.contains("BAD KEY"), "{err}");
        let err = env_file("x.env", "\n\n=v\n", &env).unwrap_err().to_string();
        assert!(err.starts_with("x.env:3:"), "{err}");
    }

    #[test]
    fn key_values_and_labels() {
        assert_eq!(
            key_value("--log-opt", "max-size=10m").unwrap(),
            ("max-size".into(), "10m".into())
        );
        assert_eq!(key_value("-o", "a=").unwrap(), ("a".into(), "".into()));
        let err = key_value("--log-opt", "novalue").unwrap_err().to_string();
        assert!(
            err.contains("--log-opt") && err.contains("novalue"),
            "{err}"
        );
        assert!(key_value("-o", "=x").is_err());
        let l = labels(&["a=b".into(), "c".into(), "a=z".into()]).unwrap();
        assert_eq!(l["a"], "z");
        assert_eq!(l["c"], "");
        assert!(labels(&["=x".into()])
            .unwrap_err()
            .to_string()
            .contains("=x"));
    }

    #[test]
    fn hosts_and_dns() {
        let h = add_host("db:10.0.0.2").unwrap();
        assert_eq!((h.hostname.as_str(), h.ip.as_str()), ("db", "10.0.0.2"));
        let h = add_host("v6:::1").unwrap();
        assert_eq!(h.ip, "::1");
        let h = add_host("v6=[fe80::1]").unwrap();
        assert_eq!(h.ip, "fe80::1");
        assert_eq!(add_host("gw:host-gateway").unwrap().ip, "host-gateway");
        for bad in ["nohost", "db:notanip", ":1.2.3.4"] {
            let err = add_host(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
        assert_eq!(dns("8.8.8.8").unwrap(), "8.8.8.8");
        assert!(dns("dns.example")
            .unwrap_err()
            .to_string()
            .contains("dns.example"));
    }

    #[test]
    fn tails() {
        assert_eq!(tail("all").unwrap(), -1);
        assert_eq!(tail("10").unwrap(), 10);
        assert_eq!(tail("0").unwrap(), 0);
        assert!(tail("ten").unwrap_err().to_string().contains("ten"));
    }

    #[test]
    fn durations() {
        assert_eq!(go_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(go_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(go_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(go_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(go_duration("2s500ms").unwrap(), Duration::from_millis(2500));
        for bad in ["", "10", "m", "10x", "1h30", "abc"] {
            assert!(go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let n = 1_700_000_000_000_000_000i64;
        assert_eq!(
            time_arg("--since", "10m", now).unwrap(),
            n - 600_000_000_000
        );
        assert_eq!(
            time_arg("--since", "1h30m", now).unwrap(),
            n - 5_400_000_000_000
        );
        assert_eq!(time_arg("--since", "1700000000", now).unwrap(), n);
        assert_eq!(
            time_arg("--since", "1700000000.5", now).unwrap(),
            n + 500_000_000
        );
        assert_eq!(time_arg("--since", "2023-11-14T22:13:20Z", now).unwrap(), n);
        assert_eq!(
            time_arg("--since", "2023-11-14T22:13:20.25Z", now).unwrap(),
            n + 250_000_000
        );
        assert_eq!(
            time_arg("--since", "2023-11-15T00:13:20+02:00", now).unwrap(),
            n
        );
        assert_eq!(
            time_arg("--since", "2023-11-14T21:13:20-01:00", now).unwrap(),
            n
        );
        assert_eq!(
            time_arg("--until", "2023-11-14", now).unwrap(),
            n - (22 * 3600 + 13 * 60 + 20) * 1_000_000_000
        );
        for bad in ["", "yesterday", "2023-13-45T00:00:00Z", "1.2.3"] {
            let err = time_arg("--since", bad, now).unwrap_err().to_string();
            assert!(
                err.contains("--since") && err.contains(&format!("{bad:?}")),
                "{err}"
            );
        }
    }
    #[test]
    fn restart_policies() {
        let p = |v: &str| restart_policy(v).map(|p| (p.name, p.maximum_retry_count));
        assert_eq!(p("no").unwrap(), ("no".into(), 0));
        assert_eq!(p("always").unwrap(), ("always".into(), 0));
        assert_eq!(p("unless-stopped").unwrap(), ("unless-stopped".into(), 0));
        assert_eq!(p("on-failure").unwrap(), ("on-failure".into(), 0));
        assert_eq!(p("on-failure:5").unwrap(), ("on-failure".into(), 5));
        for bad in [
            "sometimes",
            "",
            "always:3",
            "on-failure:x",
            "on-failure:-1",
            "on-failure:1:2",
            "no:0",
        ] {
            let err = p(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("'{bad}'")), "{bad}: {err}");
        }
    }

    #[test]
    fn detach_key_specs() {
        assert_eq!(detach_key_bytes("ctrl-p,ctrl-q").unwrap(), vec![16, 17]);
        assert_eq!(detach_key_bytes("a,b").unwrap(), b"ab".to_vec());
        assert_eq!(
            detach_key_bytes("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_").unwrap(),
            vec![0, 27, 28, 29, 30, 31]
        );
        assert_eq!(detach_key_bytes("ctrl-A,x").unwrap(), vec![1, b'x']);
        for bad in ["x", "ctrl-", "ctrl-1", "ctrl-pq", "ab", "a,,b", "ctrl-p,"] {
            let spec = if bad == "x" { "xy" } else { bad };
            assert_eq!(
                detach_key_bytes(spec).unwrap_err().to_string(),
                format!("invalid detach keys ({spec})")
            );
        }
        assert_eq!(detach_keys(None).unwrap(), "");
        assert_eq!(detach_keys(Some("")).unwrap(), "none");
        assert_eq!(detach_keys(Some("ctrl-x")).unwrap(), "ctrl-x");
        assert!(detach_keys(Some("bogus")).is_err());
    }
}
