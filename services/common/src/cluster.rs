//! `[cluster]` in berth.toml: the etcd cluster store that overlay networks across hosts
//! keep their state in, and this host's place in it. Without `store` berth is a single
//! host and needs no etcd.
//!
//! ```toml
//! [cluster]
//! store = ["http://10.0.0.1:2379"]  # etcd endpoints      (BERTH_CLUSTER_STORE, comma-separated)
//! advertise = "10.0.0.11"            # underlay address    (BERTH_ADVERTISE_ADDR)
//! node = "host-a"                    # default: hostname   (BERTH_NODE_NAME)
//! prefix = "/berth"                  # etcd key prefix     (BERTH_CLUSTER_PREFIX)
//! vxlan_port = 4789                  #                     (BERTH_VXLAN_PORT)
//! lease_ttl = 10                     # seconds a dead host's endpoints outlive it (BERTH_CLUSTER_LEASE_TTL)
//! # With https:// endpoints: the CA of etcd's certificate, and this host's client
//! # certificate when etcd checks clients (--client-cert-auth).
//! ca = "/etc/berth/etcd/ca.pem"      #                     (BERTH_CLUSTER_CA)
//! cert = "/etc/berth/etcd/client.pem"  #                   (BERTH_CLUSTER_CERT)
//! key = "/etc/berth/etcd/client-key.pem"  #                (BERTH_CLUSTER_KEY)
//! ```
use std::{net::Ipv4Addr, path::PathBuf};

use serde::Deserialize;

/// The section as written; [`ClusterFile::resolve`] checks it and applies the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    #[serde(default)]
    pub store: Vec<String>,
    pub advertise: Option<String>,
    pub node: Option<String>,
    pub prefix: Option<String>,
    pub vxlan_port: Option<u16>,
    pub lease_ttl: Option<u64>,
    pub ca: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
}

/// TLS to etcd's `https://` endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreTls {
    /// The CA that signed etcd's server certificate (PEM).
    pub ca: PathBuf,
    /// This host's client certificate and key (PEM), for an etcd that checks clients.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// A checked cluster configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// etcd client URLs (`http://host:port`).
    pub store: Vec<String>,
    /// This host's underlay address: the local end of every VXLAN tunnel.
    pub advertise: Ipv4Addr,
    /// Unique name of this host in the cluster.
    pub node: String,
    /// Every key berth writes starts with it (no trailing slash).
    pub prefix: String,
    pub vxlan_port: u16,
    /// TTL of this host's lease: its endpoints vanish this long after it dies.
    pub lease_ttl: u64,
    /// Set when any endpoint is `https://`.
    pub tls: Option<StoreTls>,
}

pub const DEFAULT_PREFIX: &str = "/berth";
pub const DEFAULT_VXLAN_PORT: u16 = 4789;
pub const DEFAULT_LEASE_TTL: u64 = 10;

impl ClusterFile {
    /// The configuration in effect, or None when no store is configured (single host).
    /// Errors name the bad key and value.
    pub fn resolve(&self) -> Result<Option<ClusterConfig>, String> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let store: Vec<String> = match env("BERTH_CLUSTER_STORE") {
            Some(v) => v.split(',').map(|s| s.trim().to_string()).collect(),
            None => self.store.clone(),
        };
        if store.is_empty() {
            return Ok(None);
        }
        for url in &store {
            check_store_url(url)?;
        }
        let tls = self.store_tls(&store, &env)?;
        let advertise = env("BERTH_ADVERTISE_ADDR")
            .or_else(|| self.advertise.clone())
            .ok_or_else(|| {
                "cluster.advertise is required with cluster.store: the IPv4 address other hosts reach this one at".to_string()
            })?;
        let advertise: Ipv4Addr = advertise
            .trim()
            .parse()
            .map_err(|_| format!("cluster.advertise {advertise:?} is not an IPv4 address"))?;
        if advertise.is_unspecified() || advertise.is_loopback() || advertise.is_multicast() {
            return Err(format!(
                "cluster.advertise {advertise} cannot be reached by other hosts"
            ));
        }
        let node = match env("BERTH_NODE_NAME").or_else(|| self.node.clone()) {
            Some(n) => n,
            None => nix_hostname()?,
        };
        if node.is_empty()
            || node.len() > 63
            || !node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(format!(
                "cluster.node {node:?}: want 1-63 letters, digits, '-', '_' or '.'"
            ));
        }
        let prefix = env("BERTH_CLUSTER_PREFIX")
            .or_else(|| self.prefix.clone())
            .unwrap_or_else(|| DEFAULT_PREFIX.into());
        let prefix = prefix.trim_end_matches('/').to_string();
        if !prefix.starts_with('/') || prefix.contains(char::is_whitespace) {
            return Err(format!(
                "cluster.prefix {prefix:?} must start with '/' (e.g. \"/berth\")"
            ));
        }
        let vxlan_port = match env("BERTH_VXLAN_PORT") {
            Some(v) => v
                .parse()
                .map_err(|_| format!("BERTH_VXLAN_PORT {v:?} is not a port"))?,
            None => self.vxlan_port.unwrap_or(DEFAULT_VXLAN_PORT),
        };
        if vxlan_port == 0 {
            return Err("cluster.vxlan_port 0 is not a port".into());
        }
        let lease_ttl = match env("BERTH_CLUSTER_LEASE_TTL") {
            Some(v) => v
                .parse()
                .map_err(|_| format!("BERTH_CLUSTER_LEASE_TTL {v:?} is not a number of seconds"))?,
            None => self.lease_ttl.unwrap_or(DEFAULT_LEASE_TTL),
        };
        if !(2..=3600).contains(&lease_ttl) {
            return Err(format!(
                "cluster.lease_ttl {lease_ttl} must be 2 to 3600 seconds"
            ));
        }
        Ok(Some(ClusterConfig {
            store,
            advertise,
            node,
            prefix,
            vxlan_port,
            lease_ttl,
            tls,
        }))
    }

    /// `ca`, `cert` and `key` checked against the endpoints: https needs a CA, a
    /// certificate needs its key, and TLS settings without an https endpoint are a mistake.
    fn store_tls(
        &self,
        store: &[String],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<StoreTls>, String> {
        let path = |var: &str, value: &Option<String>| env(var).or_else(|| value.clone());
        let ca = path("BERTH_CLUSTER_CA", &self.ca);
        let cert = path("BERTH_CLUSTER_CERT", &self.cert);
        let key = path("BERTH_CLUSTER_KEY", &self.key);
        let https = store.iter().find(|u| u.starts_with("https://"));
        let Some(https) = https else {
            if let Some((name, _)) = [("ca", &ca), ("cert", &cert), ("key", &key)]
                .into_iter()
                .find(|(_, v)| v.is_some())
            {
                return Err(format!(
                    "cluster.{name} is set but no cluster.store endpoint is https://"
                ));
            }
            return Ok(None);
        };
        let ca = ca.ok_or_else(|| {
            format!(
                "cluster.store {https:?} needs cluster.ca: the CA that signed etcd's certificate"
            )
        })?;
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            (Some(cert), None) => return Err(format!("cluster.cert {cert:?} needs cluster.key")),
            (None, Some(key)) => return Err(format!("cluster.key {key:?} needs cluster.cert")),
        };
        Ok(Some(StoreTls {
            ca: PathBuf::from(ca),
            identity,
        }))
    }
}

fn check_store_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            format!("cluster.store {url:?} must be http://host:port or https://host:port")
        })?;
    let (host, port) = rest
        .trim_end_matches('/')
        .rsplit_once(':')
        .ok_or_else(|| format!("cluster.store {url:?} has no port"))?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!(
            "cluster.store {url:?} must be http://host:port or https://host:port"
        ));
    }
    Ok(())
}

fn nix_hostname() -> Result<String, String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("cluster.node not set and the hostname is unreadable: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(store: &[&str], advertise: Option<&str>) -> ClusterFile {
        ClusterFile {
            store: store.iter().map(|s| s.to_string()).collect(),
            advertise: advertise.map(str::to_string),
            node: Some("host-a".into()),
            ..Default::default()
        }
    }

    #[test]
    fn no_store_means_single_host() {
        if std::env::var("BERTH_CLUSTER_STORE").is_ok() {
            return;
        }
        assert_eq!(ClusterFile::default().resolve(), Ok(None));
    }

    #[test]
    fn tls_settings_follow_the_endpoints() {
        if std::env::vars().any(|(k, _)| k.starts_with("BERTH_CLUSTER")) {
            return;
        }
        let with = |store: &[&str], ca: Option<&str>, cert: Option<&str>, key: Option<&str>| {
            ClusterFile {
                ca: ca.map(str::to_string),
                cert: cert.map(str::to_string),
                key: key.map(str::to_string),
                ..file(store, Some("10.0.0.11"))
            }
            .resolve()
        };
        let c = with(
            &["https://e1:2379"],
            Some("/ca.pem"),
            Some("/c.pem"),
            Some("/k.pem"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            c.tls,
            Some(StoreTls {
                ca: "/ca.pem".into(),
                identity: Some(("/c.pem".into(), "/k.pem".into())),
            })
        );
        let plain = with(&["http://e1:2379"], None, None, None)
            .unwrap()
            .unwrap();
        assert_eq!(plain.tls, None);
        let e = with(&["https://e1:2379"], None, None, None).unwrap_err();
        assert!(
            e.contains("cluster.ca") && e.contains("https://e1:2379"),
            "{e}"
        );
        let e = with(&["https://e1:2379"], Some("/ca.pem"), Some("/c.pem"), None).unwrap_err();
        assert!(e.contains("/c.pem") && e.contains("cluster.key"), "{e}");
        let e = with(&["http://e1:2379"], Some("/ca.pem"), None, None).unwrap_err();
        assert!(e.contains("cluster.ca") && e.contains("https"), "{e}");
        let e = with(&["ftp://e1:2379"], None, None, None).unwrap_err();
        assert!(e.contains("ftp://e1:2379"), "{e}");
    }

    #[test]
    fn defaults_and_checks() {
        if std::env::vars().any(|(k, _)| {
            k.starts_with("BERTH_CLUSTER")
                || k == "BERTH_ADVERTISE_ADDR"
                || k == "BERTH_NODE_NAME"
                || k == "BERTH_VXLAN_PORT"
        }) {
            return;
        }
        let c = file(&["http://10.0.0.1:2379"], Some("10.0.0.11"))
            .resolve()
            .unwrap()
            .unwrap();
        assert_eq!(c.prefix, "/berth");
        assert_eq!(c.vxlan_port, 4789);
        assert_eq!(c.lease_ttl, 10);
        assert_eq!(c.advertise, Ipv4Addr::new(10, 0, 0, 11));
        let e = file(&["http://10.0.0.1:2379"], None).resolve().unwrap_err();
        assert!(e.contains("advertise"), "{e}");
        let e = file(&["http://10.0.0.1:2379"], Some("nope"))
            .resolve()
            .unwrap_err();
        assert!(e.contains("nope"), "{e}");
        let e = file(&["http://10.0.0.1:2379"], Some("127.0.0.1"))
            .resolve()
            .unwrap_err();
        assert!(e.contains("127.0.0.1"), "{e}");
        let e = file(&["10.0.0.1:2379"], Some("10.0.0.11"))
            .resolve()
            .unwrap_err();
        assert!(e.contains("10.0.0.1:2379"), "{e}");
        let mut f = file(&["http://10.0.0.1:2379"], Some("10.0.0.11"));
        f.prefix = Some("berth".into());
        assert!(f.resolve().unwrap_err().contains("berth"));
        f.prefix = Some("/x/".into());
        assert_eq!(f.resolve().unwrap().unwrap().prefix, "/x");
        f.node = Some("bad name".into());
        assert!(f.resolve().unwrap_err().contains("bad name"));
    }
}
