//! Ports: `-p`/`--expose` parsing and the ways Docker prints published ports (`port`,
//! the PORTS column of `ps`, inspect's `Ports`). Pure functions.
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::{bail, Result};
use berth_proto::network::v1::PortBinding;
use berth_proto::supervisor::v1::PublishedPort;

/// `80`, `8000-8002` → (start, end).
fn range(value: &str, what: &str, flag_value: &str) -> Result<(u32, u32)> {
    let one = |s: &str| -> Result<u32> {
        match s.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(n),
            _ => bail!(
                "invalid argument {flag_value:?} for \"-p, --publish\" flag: invalid {what}: {value}"
            ),
        }
    };
    match value.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if b < a {
                bail!("invalid argument {flag_value:?} for \"-p, --publish\" flag: invalid {what}: {value}");
            }
            Ok((a, b))
        }
        None => {
            let p = one(value)?;
            Ok((p, p))
        }
    }
}

fn protocol(proto: &str, flag_value: &str) -> Result<String> {
    let p = proto.to_ascii_lowercase();
    if !matches!(p.as_str(), "tcp" | "udp" | "sctp") {
        bail!("invalid argument {flag_value:?} for \"-p, --publish\" flag: invalid proto: {proto}");
    }
    Ok(p)
}

/// One `-p` value: `80`, `8080:80`, `127.0.0.1:8080:80`, `127.0.0.1::80`, `8080:80/udp`,
/// `[::1]:8080:80`, ranges `8000-8001:80-81` (equal lengths) — one binding per port.
pub fn publish(value: &str) -> Result<Vec<PortBinding>> {
    let (spec, proto) = match value.rsplit_once('/') {
        Some((s, p)) => (s, protocol(p, value)?),
        None => (value, "tcp".to_string()),
    };
    // The host IP may be an IPv6 address in brackets; split it off first.
    let (host_ip, rest) = if let Some(after) = spec.strip_prefix('[') {
        match after.split_once("]:") {
            Some((ip, rest)) => (ip.to_string(), rest),
            None => bail!(
                "invalid argument {value:?} for \"-p, --publish\" flag: invalid IP address: {spec}"
            ),
        }
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            1 | 2 => (String::new(), spec),
            3 => (parts[0].to_string(), &spec[parts[0].len() + 1..]),
            _ => bail!("invalid argument {value:?} for \"-p, --publish\" flag: too many colons"),
        }
    };
    if !host_ip.is_empty() && host_ip.parse::<IpAddr>().is_err() {
        bail!(
            "invalid argument {value:?} for \"-p, --publish\" flag: invalid IP address: {host_ip}"
        );
    }
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (h, c),
        None => ("", rest),
    };
    if container.is_empty() {
        bail!("invalid argument {value:?} for \"-p, --publish\" flag: no port specified: {value}");
    }
    let (c_start, c_end) = range(container, "containerPort", value)?;
    let host_range = if host.is_empty() {
        None
    } else {
        Some(range(host, "hostPort", value)?)
    };
    if let Some((h_start, h_end)) = host_range {
        if h_end - h_start != c_end - c_start {
            bail!("invalid argument {value:?} for \"-p, --publish\" flag: invalid ranges specified for container and host ports: {rest}");
        }
    }
    Ok((c_start..=c_end)
        .map(|port| PortBinding {
            protocol: proto.clone(),
            container_port: port,
            host_ip: host_ip.clone(),
            host_port: host_range.map_or(0, |(h, _)| h + (port - c_start)),
        })
        .collect())
}

/// One `--expose` value (`80`, `53/udp`, `8000-8002/tcp`), checked and passed on as is.
pub fn expose(value: &str) -> Result<String> {
    let (ports, proto) = value.split_once('/').unwrap_or((value, "tcp"));
    let bad = || {
        anyhow::anyhow!("invalid argument {value:?} for \"--expose\" flag: invalid range format for --expose: {value}")
    };
    if !matches!(proto.to_ascii_lowercase().as_str(), "tcp" | "udp" | "sctp") {
        return Err(bad());
    }
    let num = |s: &str| s.parse::<u32>().ok().filter(|n| (1..=65535).contains(n));
    let ok = match ports.split_once('-') {
        Some((a, b)) => matches!((num(a), num(b)), (Some(a), Some(b)) if a <= b),
        None => num(ports).is_some(),
    };
    if !ok {
        return Err(bad());
    }
    Ok(value.to_string())
}

/// `berth port CONTAINER 80/tcp`: the private port and protocol (tcp by default).
pub fn private_port(value: &str) -> Result<(u32, String)> {
    let (port, proto) = value.split_once('/').unwrap_or((value, "tcp"));
    match port.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) && !proto.is_empty() => {
            Ok((p, proto.to_ascii_lowercase()))
        }
        _ => bail!("Error: invalid port ({value}): must be PORT or PORT/PROTO"),
    }
}

fn host_ip(p: &PublishedPort) -> &str {
    if p.host_ip.is_empty() {
        "0.0.0.0"
    } else {
        &p.host_ip
    }
}

fn host_addr(p: &PublishedPort) -> String {
    let ip = host_ip(p);
    if ip.contains(':') {
        format!("[{ip}]:{}", p.host_port)
    } else {
        format!("{ip}:{}", p.host_port)
    }
}

fn proto(p: &PublishedPort) -> &str {
    if p.protocol.is_empty() {
        "tcp"
    } else {
        &p.protocol
    }
}

/// Sorted as Docker sorts them: by container port, then protocol, then host address.
fn sorted(ports: &[PublishedPort]) -> Vec<&PublishedPort> {
    let mut v: Vec<&PublishedPort> = ports.iter().collect();
    v.sort_by(|a, b| {
        (a.container_port, proto(a), host_ip(a), a.host_port).cmp(&(
            b.container_port,
            proto(b),
            host_ip(b),
            b.host_port,
        ))
    });
    v
}

/// `berth port` lines: `80/tcp -> 0.0.0.0:8080`, or only the addresses when a private
/// port was asked for.
pub fn port_lines(ports: &[PublishedPort], filter: Option<&(u32, String)>) -> Vec<String> {
    sorted(ports)
        .into_iter()
        .filter(|p| filter.is_none_or(|(port, pr)| p.container_port == *port && proto(p) == pr))
        .map(|p| match filter {
            Some(_) => host_addr(p),
            None => format!("{}/{} -> {}", p.container_port, proto(p), host_addr(p)),
        })
        .collect()
}

/// The PORTS column of `ps`: `0.0.0.0:8080->80/tcp, 53/udp`; consecutive ports with
/// consecutive host ports on one address are shown as ranges, as Docker does.
pub fn ps_column(ports: &[PublishedPort], exposed_only: &[(u32, String)]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let list = sorted(ports);
    let mut i = 0;
    while i < list.len() {
        let first = list[i];
        let mut j = i;
        while j + 1 < list.len() {
            let (cur, next) = (list[j], list[j + 1]);
            let consecutive = next.container_port == cur.container_port + 1
                && next.host_port == cur.host_port + 1
                && proto(next) == proto(cur)
                && host_ip(next) == host_ip(cur);
            if !consecutive {
                break;
            }
            j += 1;
        }
        let last = list[j];
        let (c, h) = if i == j {
            (
                first.container_port.to_string(),
                first.host_port.to_string(),
            )
        } else {
            (
                format!("{}-{}", first.container_port, last.container_port),
                format!("{}-{}", first.host_port, last.host_port),
            )
        };
        let ip = host_ip(first);
        let ip = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        parts.push(format!("{ip}:{h}->{c}/{}", proto(first)));
        i = j + 1;
    }
    for (port, pr) in exposed_only {
        if !ports
            .iter()
            .any(|p| p.container_port == *port && proto(p) == pr)
        {
            parts.push(format!("{port}/{pr}"));
        }
    }
    parts.join(", ")
}

/// The record's exposed ports ("80/tcp") as (port, protocol); others are skipped.
pub fn exposed_list(values: &[String]) -> Vec<(u32, String)> {
    values
        .iter()
        .filter_map(|v| {
            let (port, proto) = v.split_once('/').unwrap_or((v, "tcp"));
            Some((port.parse().ok()?, proto.to_string()))
        })
        .collect()
}

/// inspect's `NetworkSettings.Ports`: `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}`,
/// and `null` for a port that is exposed but not published.
pub fn inspect_map(
    ports: &[PublishedPort],
    exposed: &[(u32, String)],
) -> BTreeMap<String, serde_json::Value> {
    let mut out: BTreeMap<String, serde_json::Value> = exposed
        .iter()
        .map(|(port, pr)| (format!("{port}/{pr}"), serde_json::Value::Null))
        .collect();
    for p in sorted(ports) {
        let entry = out
            .entry(format!("{}/{}", p.container_port, proto(p)))
            .or_insert(serde_json::Value::Null);
        if entry.is_null() {
            *entry = serde_json::json!([]);
        }
        if let Some(list) = entry.as_array_mut() {
            list.push(serde_json::json!({
                "HostIp": host_ip(p),
                "HostPort": p.host_port.to_string(),
            }));
        }
    }
    out
}

/// Converts the network service's bindings to the record's.
pub fn published(bindings: &[PortBinding]) -> Vec<PublishedPort> {
    bindings
        .iter()
        .map(|b| PublishedPort {
            protocol: b.protocol.clone(),
            container_port: b.container_port,
            host_ip: b.host_ip.clone(),
            host_port: b.host_port,
        })
        .collect()
}

/// True for a valid `--ip` (IPv4 only: berth's networks are IPv4).
pub fn ipv4(value: &str) -> Result<String> {
    match value.parse::<Ipv4Addr>() {
        Ok(_) => Ok(value.to_string()),
        Err(_) => {
            bail!("invalid argument {value:?} for \"--ip\" flag: invalid IPv4 address: {value}")
        }
    }
}

/// A `--mac-address` like `02:42:ac:11:00:02`.
pub fn mac_address(value: &str) -> Result<String> {
    let parts: Vec<&str> = value.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        bail!("invalid argument {value:?} for \"--mac-address\" flag: {value} is not a valid mac address");
    }
    Ok(value.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(proto: &str, c: u32, ip: &str, h: u32) -> PortBinding {
        PortBinding {
            protocol: proto.into(),
            container_port: c,
            host_ip: ip.into(),
            host_port: h,
        }
    }

    fn pp(proto: &str, c: u32, ip: &str, h: u32) -> PublishedPort {
        PublishedPort {
            protocol: proto.into(),
            container_port: c,
            host_ip: ip.into(),
            host_port: h,
        }
    }

    #[test]
    fn publish_forms() {
        assert_eq!(publish("80").unwrap(), vec![b("tcp", 80, "", 0)]);
        assert_eq!(publish("8080:80").unwrap(), vec![b("tcp", 80, "", 8080)]);
        assert_eq!(
            publish("127.0.0.1:8080:80").unwrap(),
            vec![b("tcp", 80, "127.0.0.1", 8080)]
        );
        assert_eq!(
            publish("127.0.0.1::80").unwrap(),
            vec![b("tcp", 80, "127.0.0.1", 0)]
        );
        assert_eq!(
            publish("8080:80/udp").unwrap(),
            vec![b("udp", 80, "", 8080)]
        );
        assert_eq!(
            publish("[::1]:8080:80").unwrap(),
            vec![b("tcp", 80, "::1", 8080)]
        );
        assert_eq!(
            publish("8000-8001:80-81").unwrap(),
            vec![b("tcp", 80, "", 8000), b("tcp", 81, "", 8001)]
        );
        assert_eq!(
            publish("80-81").unwrap(),
            vec![b("tcp", 80, "", 0), b("tcp", 81, "", 0)]
        );
    }

    #[test]
    fn publish_errors_name_the_bad_value() {
        for (value, part) in [
            ("abc", "invalid containerPort: abc"),
            ("x:80", "invalid hostPort: x"),
            ("8080:0", "invalid containerPort: 0"),
            ("1.2.3:8080:80", "invalid IP address: 1.2.3"),
            ("8080:80/icmp", "invalid proto: icmp"),
            ("8000-8002:80-81", "invalid ranges"),
            ("1:2:3:4", "too many colons"),
            ("8080:", "no port specified"),
        ] {
            let e = publish(value).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!(
                    "invalid argument {value:?} for \"-p, --publish\" flag"
                )),
                "{e}"
            );
            assert!(e.contains(part), "{value}: {e}");
        }
    }

    #[test]
    fn expose_values() {
        for ok in ["80", "53/udp", "8000-8002/tcp"] {
            assert_eq!(expose(ok).unwrap(), ok);
        }
        for bad in ["", "x", "80/icmp", "9-8", "0"] {
            assert!(
                expose(bad).unwrap_err().to_string().contains("--expose"),
                "{bad}"
            );
        }
    }

    #[test]
    fn port_command_lines() {
        let ports = vec![
            pp("udp", 53, "", 5353),
            pp("tcp", 80, "", 8080),
            pp("tcp", 80, "::", 8080),
        ];
        assert_eq!(
            port_lines(&ports, None),
            vec![
                "53/udp -> 0.0.0.0:5353",
                "80/tcp -> 0.0.0.0:8080",
                "80/tcp -> [::]:8080"
            ]
        );
        let f = private_port("80").unwrap();
        assert_eq!(
            port_lines(&ports, Some(&f)),
            vec!["0.0.0.0:8080", "[::]:8080"]
        );
        let f = private_port("53/udp").unwrap();
        assert_eq!(port_lines(&ports, Some(&f)), vec!["0.0.0.0:5353"]);
        assert!(private_port("x").is_err());
    }

    #[test]
    fn ps_column_groups_ranges() {
        let ports = vec![
            pp("tcp", 81, "", 8001),
            pp("tcp", 80, "", 8000),
            pp("udp", 53, "127.0.0.1", 5353),
        ];
        assert_eq!(
            ps_column(&ports, &[(9000, "tcp".into())]),
            "127.0.0.1:5353->53/udp, 0.0.0.0:8000-8001->80-81/tcp, 9000/tcp"
        );
        assert_eq!(ps_column(&[], &[]), "");
        assert_eq!(
            ps_column(&[], &exposed_list(&["80/tcp".into(), "x".into()])),
            "80/tcp"
        );
    }

    #[test]
    fn inspect_ports_map() {
        let m = inspect_map(
            &[pp("tcp", 80, "", 8080)],
            &[(80, "tcp".into()), (53, "udp".into())],
        );
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({
                "53/udp": null,
                "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]
            })
        );
    }

    #[test]
    fn ip_and_mac() {
        assert!(ipv4("172.18.0.5").is_ok());
        assert!(ipv4("fe80::1").is_err());
        assert_eq!(
            mac_address("02:42:AC:11:00:02").unwrap(),
            "02:42:ac:11:00:02"
        );
        assert!(mac_address("02:42:ac:11:00").is_err());
    }
}
