//! Where a reference lives: registry endpoint (scheme + host), repository, tag or digest.
use std::net::IpAddr;

use berth_common::config::RegistriesConfig;

use crate::{
    error::{Error, Result},
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
    pub fn for_domain(domain: &str, registries: &RegistriesConfig) -> Endpoint {
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
        let scheme = if is_loopback(domain) || registries.is_insecure(domain) {
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

impl Endpoint {
    /// A pull mirror from the configuration file (`http://host:port`, checked there).
    pub fn for_mirror(url: &str) -> Result<Endpoint> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
            ("http", rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            ("https", rest)
        } else {
            return Err(Error::InvalidArgument(format!(
                "mirror {url:?} must start with http:// or https://"
            )));
        };
        let host = rest.trim_end_matches('/').to_string();
        Ok(Endpoint {
            scheme,
            display: host.clone(),
            host,
        })
    }
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
    pub fn parse(s: &str, registries: &RegistriesConfig) -> Result<RemoteRef> {
        let reference = Reference::parse_normalized(s)?;
        Ok(RemoteRef {
            endpoint: Endpoint::for_domain(&reference.domain, registries),
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

    /// The registry as blob sources record it: `docker.io`, `127.0.0.1:5000`.
    pub fn endpoint_name(&self) -> String {
        self.endpoint.display.clone()
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

    fn none() -> RegistriesConfig {
        RegistriesConfig::default()
    }

    fn insecure(list: &[&str]) -> RegistriesConfig {
        RegistriesConfig {
            insecure: list.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn cidrs_and_mirrors() {
        let cfg = insecure(&["10.0.0.0/8"]);
        assert_eq!(Endpoint::for_domain("10.2.3.4:5000", &cfg).scheme, "http");
        assert_eq!(Endpoint::for_domain("11.2.3.4:5000", &cfg).scheme, "https");
        let m = Endpoint::for_mirror("http://127.0.0.1:5001/").unwrap();
        assert_eq!((m.scheme, m.host.as_str()), ("http", "127.0.0.1:5001"));
        assert_eq!(
            Endpoint::for_mirror("https://m.example").unwrap().scheme,
            "https"
        );
        assert!(Endpoint::for_mirror("m.example").is_err());
        // Docker Hub references name the domain the `mirrors` list applies to.
        let hub = RegistriesConfig {
            mirrors: vec!["http://127.0.0.1:5001".into()],
            ..Default::default()
        };
        let r = RemoteRef::parse("busybox", &hub).unwrap();
        assert_eq!(hub.mirrors_of(&r.reference.domain).len(), 1);
        let r = RemoteRef::parse("127.0.0.1:5000/busybox", &hub).unwrap();
        assert!(hub.mirrors_of(&r.reference.domain).is_empty());
    }

    #[test]
    fn docker_hub_names() {
        let r = RemoteRef::parse("busybox", &none()).unwrap();
        assert_eq!(r.endpoint.host, "registry-1.docker.io");
        assert_eq!(r.endpoint.scheme, "https");
        assert_eq!(r.endpoint.display, "docker.io");
        assert_eq!(r.repository, "library/busybox");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.shown(), "busybox:latest");
        let r = RemoteRef::parse("someone/app:1", &none()).unwrap();
        assert_eq!(r.repository, "someone/app");
        assert_eq!(r.manifest_ref(), "1");
    }

    #[test]
    fn private_registries_and_digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = RemoteRef::parse(&format!("127.0.0.1:5000/a/b@{d}"), &none()).unwrap();
        assert_eq!(r.endpoint.host, "127.0.0.1:5000");
        assert_eq!(r.endpoint.scheme, "http");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), d);
        assert_eq!(r.shown(), format!("127.0.0.1:5000/a/b@{d}"));

        let r = RemoteRef::parse("localhost/x:t", &none()).unwrap();
        assert_eq!(r.endpoint.scheme, "http");
        assert_eq!(r.repository, "x");
        assert_eq!(r.tag.as_deref(), Some("t"));

        let r = RemoteRef::parse("reg.example.com:5000/a/b:t", &none()).unwrap();
        assert_eq!(r.endpoint.scheme, "https");
        assert_eq!(r.endpoint.host, "reg.example.com:5000");
        let cfg = insecure(&["reg.example.com:5000"]);
        let r = RemoteRef::parse("reg.example.com:5000/a/b:t", &cfg).unwrap();
        assert_eq!(r.endpoint.scheme, "http");
        let cfg = insecure(&["reg.example.com"]);
        let r = RemoteRef::parse("reg.example.com:5000/a/b:t", &cfg).unwrap();
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
        assert_eq!(Endpoint::for_domain("", &none()).host, DOCKER_HUB_HOST);
        assert_eq!(
            Endpoint::for_domain("https://index.docker.io/v1/", &none()).display,
            "docker.io"
        );
    }
}
