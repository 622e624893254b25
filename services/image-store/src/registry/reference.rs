//! Where a reference lives: registry endpoint (scheme + host), repository, tag or digest.
use std::net::IpAddr;

use crate::{
    error::Result,
    reference::{Reference, DEFAULT_DOMAIN},
};

/// Docker Hub's API host.
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// "http" or "https".
    pub scheme: &'static str,
    /// host[:port] to connect to.
    pub host: String,
    /// How messages name the registry (`docker.io`, `127.0.0.1:5000`).
    pub display: String,
}

impl Endpoint {
    /// The endpoint of a registry domain as references write it (`docker.io`, `host:port`).
    pub fn for_domain(domain: &str, insecure: &[String]) -> Endpoint {
        let domain = domain
            .trim()
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let domain = domain.split('/').next().unwrap_or(domain);
        let hub = domain.is_empty()
            || domain == DEFAULT_DOMAIN
            || domain == "index.docker.io"
            || domain == DOCKER_HUB_HOST;
        if hub {
            return Endpoint {
                scheme: "https",
                host: DOCKER_HUB_HOST.to_string(),
                display: DEFAULT_DOMAIN.to_string(),
            };
        }
        let scheme = if is_loopback(domain)
            || insecure.iter().any(|h| h == domain || h == host_of(domain))
        {
            "http"
        } else {
            "https"
        };
        Endpoint {
            scheme,
            host: domain.to_string(),
            display: domain.to_string(),
        }
    }
}

/// `BERTH_INSECURE_REGISTRIES`: comma-separated host[:port].
pub fn insecure_from_env() -> Vec<String> {
    std::env::var("BERTH_INSECURE_REGISTRIES")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The host without a port (`[::1]:5000` → `::1`).
fn host_of(domain: &str) -> &str {
    if let Some(rest) = domain.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match domain.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => domain,
    }
}

pub fn is_loopback(domain: &str) -> bool {
    let h = host_of(domain);
    h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A reference split for the distribution API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRef {
    pub endpoint: Endpoint,
    /// `library/busybox`, `team/app`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
    /// The parsed reference (familiar forms for messages and tags).
    pub reference: Reference,
}

impl RemoteRef {
    pub fn parse(s: &str, insecure: &[String]) -> Result<RemoteRef> {
        let reference = Reference::parse_normalized(s)?;
        Ok(RemoteRef {
            endpoint: Endpoint::for_domain(&reference.domain, insecure),
            repository: reference.path.clone(),
            tag: reference.tag.clone(),
            digest: reference.digest.clone(),
            reference,
        })
    }

    /// What the manifest URL names: the digest if any, else the tag.
    pub fn manifest_ref(&self) -> String {
        self.digest
            .clone()
            .or_else(|| self.tag.clone())
            .unwrap_or_else(|| "latest".into())
    }

    /// `busybox`, `127.0.0.1:5000/team/app`.
    pub fn familiar_name(&self) -> String {
        self.reference.familiar_name()
    }

    /// `busybox:latest` (tag) or `busybox@sha256:…` (digest).
    pub fn shown(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => format!("{}@{d}", self.familiar_name()),
            (None, Some(t)) => format!("{}:{t}", self.familiar_name()),
            (None, None) => self.familiar_name(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_names() {
        let r = RemoteRef::parse("busybox", &[]).unwrap();
        assert_eq!(r.endpoint.host, "registry-1.docker.io");
        assert_eq!(r.endpoint.scheme, "https");
        assert_eq!(r.endpoint.display, "docker.io");
        assert_eq!(r.repository, "library/busybox");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.shown(), "busybox:latest");
        let r = RemoteRef::parse("someone/app:1", &[]).unwrap();
        assert_eq!(r.repository, "someone/app");
        assert_eq!(r.manifest_ref(), "1");
    }

    #[test]
    fn private_registries_and_digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = RemoteRef::parse(&format!("127.0.0.1:5000/a/b@{d}"), &[]).unwrap();
        assert_eq!(r.endpoint.host, "127.0.0.1:5000");
        assert_eq!(r.endpoint.scheme, "http");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), d);
        assert_eq!(r.shown(), format!("127.0.0.1:5000/a/b@{d}"));

        let r = RemoteRef::parse("localhost/x:t", &[]).unwrap();
        assert_eq!(r.endpoint.scheme, "http");
        assert_eq!(r.repository, "x");
        assert_eq!(r.tag.as_deref(), Some("t"));

        let r = RemoteRef::parse("reg.example.com:5000/a/b:t", &[]).unwrap();
        assert_eq!(r.endpoint.scheme, "https");
        assert_eq!(r.endpoint.host, "reg.example.com:5000");
        let insecure = vec!["reg.example.com:5000".to_string()];
        let r = RemoteRef::parse("reg.example.com:5000/a/b:t", &insecure).unwrap();
        assert_eq!(r.endpoint.scheme, "http");
        let insecure = vec!["reg.example.com".to_string()];
        let r = RemoteRef::parse("reg.example.com:5000/a/b:t", &insecure).unwrap();
        assert_eq!(r.endpoint.scheme, "http");
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("127.5.6.7"));
        assert!(is_loopback("localhost:80"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
        assert!(!is_loopback("example.com"));
        assert_eq!(Endpoint::for_domain("", &[]).host, DOCKER_HUB_HOST);
        assert_eq!(
            Endpoint::for_domain("https://index.docker.io/v1/", &[]).display,
            "docker.io"
        );
    }
}
