//! `--link name[:alias]`: parsing, and the environment variables Docker gives a container
//! for each link on the default bridge. Pure functions.
use berth_proto::network::v1::{Attachment, Endpoint};

use crate::ports::PortProto;

/// A parsed `--link`: the target container (name or ID) and the alias (the name when
/// none is given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    pub target: String,
    pub alias: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid link {0:?}: want name or name:alias")]
pub struct LinkError(pub String);

pub fn parse(value: &str) -> Result<LinkSpec, LinkError> {
    let (target, alias) = match value.split_once(':') {
        Some((t, a)) => (t, a),
        None => (value, value),
    };
    let target = target.strip_prefix('/').unwrap_or(target);
    let alias = alias.strip_prefix('/').unwrap_or(alias);
    if target.is_empty() || alias.is_empty() || alias.contains(':') {
        return Err(LinkError(value.to_string()));
    }
    Ok(LinkSpec {
        target: target.to_string(),
        alias: alias.to_string(),
    })
}

/// True for the network modes where Docker sets link environment variables (the
/// default bridge; user-defined networks resolve links through DNS only).
pub fn sets_env(mode: &str) -> bool {
    matches!(mode, "" | "bridge" | "default")
}

/// The variables' prefix: the alias upper-cased, every non-alphanumeric made `_`.
pub fn env_prefix(alias: &str) -> String {
    alias
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The linked container's endpoint the link goes over: the one on `mode`'s network
/// (the default bridge for ""), else the first.
pub fn endpoint_for<'a>(attachment: &'a Attachment, mode: &str) -> Option<&'a Endpoint> {
    let network = if mode.is_empty() || mode == "default" {
        "bridge"
    } else {
        mode
    };
    attachment
        .endpoints
        .iter()
        .find(|e| e.network_name == network || e.network_id == network)
        .or_else(|| attachment.endpoints.first())
}

/// "172.17.0.2/16" → "172.17.0.2".
pub fn address(cidr: &str) -> &str {
    cidr.split('/').next().unwrap_or(cidr)
}

/// What a link's variables are made from.
pub struct LinkEnv<'a> {
    /// The container being created (without "/").
    pub container_name: &'a str,
    pub alias: &'a str,
    /// The linked container's address on the shared network.
    pub ip: &'a str,
    /// Its exposed ports, sorted.
    pub ports: &'a [PortProto],
    /// Its own environment (`KEY=value`).
    pub env: &'a [String],
}

/// Docker's link variables: `<ALIAS>_NAME`, `<ALIAS>_PORT` (the lowest port, tcp first),
/// `<ALIAS>_PORT_<port>_<PROTO>` with `_ADDR`, `_PORT`, `_PROTO`, and `<ALIAS>_ENV_<key>`
/// for the linked container's environment except HOME, PATH and HOSTNAME.
pub fn env(link: &LinkEnv<'_>) -> Vec<String> {
    let prefix = env_prefix(link.alias);
    let ip = link.ip;
    let mut ports = link.ports.to_vec();
    // Docker's default port: the lowest number, tcp before udp at equal numbers.
    ports.sort_by_key(|p| (p.port, p.proto != "tcp"));
    let mut out = Vec::new();
    if let Some(p) = ports.first() {
        out.push(format!("{prefix}_PORT={}://{ip}:{}", p.proto, p.port));
    }
    for p in &ports {
        let key = format!("{prefix}_PORT_{}_{}", p.port, p.proto.to_ascii_uppercase());
        out.push(format!("{key}={}://{ip}:{}", p.proto, p.port));
        out.push(format!("{key}_ADDR={ip}"));
        out.push(format!("{key}_PORT={}", p.port));
        out.push(format!("{key}_PROTO={}", p.proto));
    }
    out.push(format!(
        "{prefix}_NAME=/{}/{}",
        link.container_name, link.alias
    ));
    for entry in link.env {
        let Some((key, value)) = entry.split_once('=') else {
            continue;
        };
        if matches!(key, "HOME" | "PATH" | "HOSTNAME") {
            continue;
        }
        out.push(format!("{prefix}_ENV_{key}={value}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_parse_with_and_without_alias() {
        assert_eq!(
            parse("db").unwrap(),
            LinkSpec {
                target: "db".into(),
                alias: "db".into()
            }
        );
        assert_eq!(
            parse("/db:database").unwrap(),
            LinkSpec {
                target: "db".into(),
                alias: "database".into()
            }
        );
        for bad in ["", ":x", "db:", "a:b:c"] {
            assert_eq!(parse(bad).unwrap_err(), LinkError(bad.into()), "{bad}");
        }
    }

    #[test]
    fn prefix_is_upper_case_with_underscores() {
        assert_eq!(env_prefix("database"), "DATABASE");
        assert_eq!(env_prefix("my-db.1"), "MY_DB_1");
    }

    #[test]
    fn dockers_link_variables() {
        let ports = vec![
            PortProto {
                port: 80,
                proto: "tcp".into(),
            },
            PortProto {
                port: 53,
                proto: "udp".into(),
            },
        ];
        let env_in = vec![
            "PATH=/bin".to_string(),
            "HOME=/root".to_string(),
            "HOSTNAME=x".to_string(),
            "MYSQL_ROOT_PASSWORD=secret".to_string(),
            "EMPTY=".to_string(),
        ];
        let got = env(&LinkEnv {
            container_name: "web",
            alias: "database",
            ip: "172.17.0.2",
            ports: &ports,
            env: &env_in,
        });
        assert_eq!(
            got,
            vec![
                "DATABASE_PORT=udp://172.17.0.2:53",
                "DATABASE_PORT_53_UDP=udp://172.17.0.2:53",
                "DATABASE_PORT_53_UDP_ADDR=172.17.0.2",
                "DATABASE_PORT_53_UDP_PORT=53",
                "DATABASE_PORT_53_UDP_PROTO=udp",
                "DATABASE_PORT_80_TCP=tcp://172.17.0.2:80",
                "DATABASE_PORT_80_TCP_ADDR=172.17.0.2",
                "DATABASE_PORT_80_TCP_PORT=80",
                "DATABASE_PORT_80_TCP_PROTO=tcp",
                "DATABASE_NAME=/web/database",
                "DATABASE_ENV_MYSQL_ROOT_PASSWORD=secret",
                "DATABASE_ENV_EMPTY=",
            ]
        );
    }

    #[test]
    fn only_name_and_env_without_ports() {
        let got = env(&LinkEnv {
            container_name: "web",
            alias: "db",
            ip: "172.17.0.2",
            ports: &[],
            env: &[],
        });
        assert_eq!(got, vec!["DB_NAME=/web/db"]);
    }

    #[test]
    fn the_endpoint_on_the_shared_network_is_used() {
        let ep = |name: &str, ip: &str| Endpoint {
            network_name: name.into(),
            ipv4_address: ip.into(),
            ..Default::default()
        };
        let a = Attachment {
            endpoints: vec![ep("front", "10.1.0.2/24"), ep("bridge", "172.17.0.2/16")],
            ..Default::default()
        };
        assert_eq!(
            endpoint_for(&a, "").map(|e| address(&e.ipv4_address)),
            Some("172.17.0.2")
        );
        assert_eq!(
            endpoint_for(&a, "front").map(|e| address(&e.ipv4_address)),
            Some("10.1.0.2")
        );
        assert_eq!(
            endpoint_for(&a, "other").map(|e| e.network_name.as_str()),
            Some("front")
        );
        assert!(endpoint_for(&Attachment::default(), "").is_none());
    }
}
