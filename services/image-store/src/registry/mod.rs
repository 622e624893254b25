//! Registry support: the OCI distribution API client, pull, push and login checks.
pub mod client;
pub mod pull;
pub mod push;
pub mod reference;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MT_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MT_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// containerd's name for a zstd layer in a Docker manifest (not in Docker's own spec).
pub const MT_DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
pub const MT_DOCKER_LAYER_FOREIGN: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const MT_OCI_LAYER_NONDIST_TAR: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const MT_OCI_LAYER_NONDIST_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const MT_OCI_LAYER_NONDIST_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
}

/// A manifest or an index (whichever fields the document has).
#[derive(Debug, Clone, Deserialize)]
pub struct ManifestDoc {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

impl ManifestDoc {
    pub fn is_index(&self, content_type: &str) -> bool {
        let mt = if self.media_type.is_empty() {
            content_type
        } else {
            &self.media_type
        };
        mt.contains("manifest.list") || mt.contains("image.index") || !self.manifests.is_empty()
    }
}

/// The wanted platform: "os/arch[/variant]"; empty means linux/amd64.
pub fn parse_platform(s: &str) -> Result<Platform> {
    if s.trim().is_empty() {
        return Ok(Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        });
    }
    let parts: Vec<&str> = s.trim().split('/').collect();
    match parts.as_slice() {
        [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: None,
        }),
        [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
            Ok(Platform {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: Some(variant.to_string()),
            })
        }
        _ => Err(Error::InvalidArgument(format!(
            "invalid platform {s:?}: want os/arch[/variant]"
        ))),
    }
}

/// Picks the manifest for `want` from an index: os and architecture must match; a wanted
/// variant must match too; without one, an entry without variant is preferred.
pub fn select_platform<'a>(manifests: &'a [Descriptor], want: &Platform) -> Option<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = manifests
        .iter()
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == want.os && p.architecture == want.architecture)
        })
        .collect();
    match &want.variant {
        Some(v) => candidates
            .iter()
            .find(|d| d.platform.as_ref().and_then(|p| p.variant.as_deref()) == Some(v))
            .copied(),
        None => candidates
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| p.variant.is_none()))
            .or(candidates.first())
            .copied(),
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Hashes a blob while it streams and checks it against the digest and size expected.
pub struct Verifier {
    hasher: Sha256,
    expected: String,
    expected_size: Option<u64>,
    pub received: u64,
}

impl Verifier {
    pub fn new(expected: &str, expected_size: Option<u64>) -> Result<Verifier> {
        if !expected.starts_with("sha256:") {
            return Err(Error::InvalidArgument(format!(
                "unsupported digest algorithm in {expected:?}"
            )));
        }
        Ok(Verifier {
            hasher: Sha256::new(),
            expected: expected.to_string(),
            expected_size,
            received: 0,
        })
    }

    pub fn update(&mut self, data: &[u8]) -> Result<()> {
        self.hasher.update(data);
        self.received += data.len() as u64;
        if let Some(max) = self.expected_size {
            if self.received > max {
                return Err(Error::DigestMismatch {
                    what: format!("blob {}", self.expected),
                    expected: format!("{max} bytes"),
                    actual: format!("more than {max} bytes"),
                });
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        let actual = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        if actual != self.expected {
            return Err(Error::DigestMismatch {
                what: format!("blob {}", self.expected),
                expected: self.expected,
                actual,
            });
        }
        if let Some(size) = self.expected_size {
            if size != self.received {
                return Err(Error::DigestMismatch {
                    what: format!("blob {}", self.expected),
                    expected: format!("{size} bytes"),
                    actual: format!("{} bytes", self.received),
                });
            }
        }
        Ok(())
    }
}

/// Lets one progress message through per interval (the last one is always sent by the
/// caller).
pub struct Throttle {
    interval: Duration,
    last: Option<Instant>,
}

impl Throttle {
    pub fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            last: None,
        }
    }

    pub fn ready_at(&mut self, now: Instant) -> bool {
        match self.last {
            Some(t) if now.duration_since(t) < self.interval => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }

    pub fn ready(&mut self) -> bool {
        self.ready_at(Instant::now())
    }
}

/// In-flight downloads keyed by layer digest: a second pull of the same layer waits for the
/// first to finish (and then finds it stored).
#[derive(Default)]
pub struct Inflight {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Inflight {
    /// Locks every digest, in sorted order (no deadlock between pulls).
    pub async fn lock_all(&self, digests: &[String]) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
        let mut sorted: Vec<String> = digests.to_vec();
        sorted.sort();
        sorted.dedup();
        let mut guards = Vec::new();
        for d in sorted {
            let m = {
                let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
                map.retain(|_, m| Arc::strong_count(m) > 1 || m.try_lock().is_err());
                map.entry(d).or_default().clone()
            };
            guards.push(m.lock_owned().await);
        }
        guards
    }
}

/// "sha256:abcdef…" → Docker's 12-character short ID.
pub fn short_digest(d: &str) -> String {
    let hex = d.split_once(':').map_or(d, |(_, h)| h);
    hex.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(os: &str, arch: &str, variant: Option<&str>, d: char) -> Descriptor {
        Descriptor {
            media_type: MT_OCI_MANIFEST.into(),
            digest: format!("sha256:{}", d.to_string().repeat(64)),
            size: 1,
            platform: Some(Platform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(str::to_string),
            }),
        }
    }

    #[test]
    fn platform_selection_in_an_index() {
        let list = vec![
            desc("linux", "arm", Some("v6"), 'a'),
            desc("linux", "arm", Some("v7"), 'b'),
            desc("linux", "amd64", None, 'c'),
            desc("linux", "arm64", Some("v8"), 'd'),
            desc("windows", "amd64", None, 'e'),
        ];
        let pick = |s: &str| {
            select_platform(&list, &parse_platform(s).unwrap())
                .map(|d| d.digest.chars().last().unwrap())
        };
        assert_eq!(pick(""), Some('c'));
        assert_eq!(pick("linux/amd64"), Some('c'));
        assert_eq!(pick("linux/arm/v7"), Some('b'));
        assert_eq!(pick("linux/arm"), Some('a'));
        assert_eq!(pick("linux/arm64"), Some('d'));
        assert_eq!(pick("windows/amd64"), Some('e'));
        assert_eq!(pick("linux/s390x"), None);
        assert_eq!(pick("linux/arm/v5"), None);
        assert!(parse_platform("linux").is_err());
        assert!(parse_platform("a/b/c/d").is_err());
    }

    #[test]
    fn verifier_checks_digest_and_size() {
        let data = b"hello world";
        let d = sha256_digest(data);
        let mut v = Verifier::new(&d, Some(data.len() as u64)).unwrap();
        v.update(&data[..5]).unwrap();
        v.update(&data[5..]).unwrap();
        v.finish().unwrap();

        let mut v = Verifier::new(&d, None).unwrap();
        v.update(b"hello wOrld").unwrap();
        assert!(matches!(v.finish(), Err(Error::DigestMismatch { .. })));

        let mut v = Verifier::new(&d, Some(3)).unwrap();
        assert!(v.update(data).is_err());

        let mut v = Verifier::new(&d, Some(100)).unwrap();
        v.update(data).unwrap();
        assert!(v.finish().is_err(), "short blob");
        assert!(Verifier::new("md5:abc", None).is_err());
    }

    #[test]
    fn throttle_lets_ten_per_second_through() {
        let mut t = Throttle::new(Duration::from_millis(100));
        let start = Instant::now();
        let mut sent = 0;
        for ms in 0..1000 {
            if t.ready_at(start + Duration::from_millis(ms)) {
                sent += 1;
            }
        }
        assert_eq!(sent, 10);
        // The last one went through at 900 ms.
        assert!(!t.ready_at(start + Duration::from_millis(950)));
        assert!(t.ready_at(start + Duration::from_millis(1000)));
    }

    #[test]
    fn short_digests() {
        assert_eq!(
            short_digest(&format!("sha256:{}", "ab".repeat(32))),
            "abababababab"
        );
    }
}
