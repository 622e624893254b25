//! Docker-style image references: parsing, normalization and the short ("familiar") form
//! Docker shows (`busybox:latest`, not `docker.io/library/busybox:latest`).
//!
//! Grammar (distribution/reference):
//! ```text
//! reference := name [ ":" tag ] [ "@" digest ]
//! name      := [ domain "/" ] component ( "/" component )*
//! domain    := host [ ":" port ]         (first part containing '.' or ':', or "localhost")
//! component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//! tag       := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! digest    := "sha256:" 64 lower-case hex
//! ```
use std::fmt;

use crate::error::Error;

pub const DEFAULT_DOMAIN: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
const NAME_MAX: usize = 255;

/// A parsed, normalized reference. `domain` is always set (`docker.io` by default) and
/// `path` carries `library/` for official images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub domain: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    /// Parses `s`; a reference without tag or digest gets `:latest`.
    pub fn parse_normalized(s: &str) -> Result<Reference, Error> {
        let mut r = Reference::parse(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parses `s` without adding a default tag.
    pub fn parse(s: &str) -> Result<Reference, Error> {
        let invalid = |why: &str| Error::InvalidReference {
            reference: s.to_string(),
            reason: why.to_string(),
        };
        if s.is_empty() {
            return Err(invalid("empty reference"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                validate_digest(digest).map_err(|why| invalid(&why))?;
                (rest, Some(digest.to_string()))
            }
            None => (s, None),
        };
        // A tag follows the last ':' after the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                if !valid_tag(tag) {
                    return Err(invalid(&format!("invalid tag {tag:?}")));
                }
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(invalid("empty repository name"));
        }
        if name.len() > NAME_MAX {
            return Err(invalid(
                "repository name must not be more than 255 characters",
            ));
        }
        let (domain, path) = split_domain(name);
        if let Some(domain) = &domain {
            if !valid_domain(domain) {
                return Err(invalid(&format!("invalid domain {domain:?}")));
            }
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid(&format!(
                "repository name ({path}) must be lowercase"
            )));
        }
        for component in path.split('/') {
            if !valid_component(component) {
                return Err(invalid(&format!(
                    "invalid repository name component {component:?}"
                )));
            }
        }
        if domain.is_none() && path.len() == 64 && path.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(
                "cannot specify 64-byte hexadecimal strings as a repository name",
            ));
        }
        let domain = match domain.as_deref() {
            None | Some("index.docker.io") => DEFAULT_DOMAIN.to_string(),
            Some(d) => d.to_string(),
        };
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The repository in the short form: `busybox`, `foo/bar`, `localhost:5000/a/b`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix("library/")
                .filter(|p| !p.contains('/'))
                .unwrap_or(&self.path)
                .to_string()
        } else {
            format!("{}/{}", self.domain, self.path)
        }
    }

    /// Full repository name: `docker.io/library/busybox`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
}

/// The familiar form: `busybox:latest`, `a/b@sha256:…`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.familiar_name())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Normalizes `s` to the familiar tagged form (`busybox` → `busybox:latest`).
pub fn normalize(s: &str) -> Result<String, Error> {
    Ok(Reference::parse_normalized(s)?.to_string())
}

fn split_domain(name: &str) -> (Option<String>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first.to_string()), rest)
        }
        _ => (None, name),
    }
}

fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator: ".", "_", "__" or one or more "-".
        let start = i;
        if b[i] == b'-' {
            while i < b.len() && b[i] == b'-' {
                i += 1;
            }
        } else if b[i] == b'_' {
            i += 1;
            if i < b.len() && b[i] == b'_' {
                i += 1;
            }
        } else if b[i] == b'.' {
            i += 1;
        } else {
            return false;
        }
        if i == start || i >= b.len() || !is_alnum(b[i]) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.' || c == b'-')
}

fn validate_digest(digest: &str) -> Result<(), String> {
    match digest.split_once(':') {
        Some(("sha256", hex)) if is_sha256_hex(hex) => Ok(()),
        _ => Err(format!("invalid digest {digest:?}")),
    }
}

/// True for 64 lower-case hex characters.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        normalize(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn normalizes_to_familiar_form() {
        assert_eq!(norm("busybox"), "busybox:latest");
        assert_eq!(norm("busybox:1.36"), "busybox:1.36");
        assert_eq!(norm("library/busybox"), "busybox:latest");
        assert_eq!(norm("docker.io/library/busybox:musl"), "busybox:musl");
        assert_eq!(norm("index.docker.io/library/busybox"), "busybox:latest");
        assert_eq!(norm("docker.io/foo/bar"), "foo/bar:latest");
        assert_eq!(norm("foo/bar:v1"), "foo/bar:v1");
        assert_eq!(norm("localhost:5000/a/b:t"), "localhost:5000/a/b:t");
        assert_eq!(norm("localhost/a"), "localhost/a:latest");
        assert_eq!(norm("quay.io/a/b/c"), "quay.io/a/b/c:latest");
        assert_eq!(
            norm("my-reg.example.com:443/x_y/z__w.v--1:T_a.g-1"),
            "my-reg.example.com:443/x_y/z__w.v--1:T_a.g-1"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(norm(&format!("a@{d}")), format!("a@{d}"));
        assert_eq!(norm(&format!("a:t@{d}")), format!("a:t@{d}"));
    }

    #[test]
    fn full_names() {
        let r = Reference::parse_normalized("busybox").unwrap();
        assert_eq!(r.full_name(), "docker.io/library/busybox");
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let r = Reference::parse("localhost:5000/a/b").unwrap();
        assert_eq!(r.domain, "localhost:5000");
        assert_eq!(r.path, "a/b");
        assert_eq!(r.tag, None);
    }

    #[test]
    fn refuses_invalid_forms() {
        for bad in [
            "",
            ":",
            ":latest",
            "busybox:",
            "a:b:c",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "a/",
            "/a",
            "a//b",
            "a:-tag",
            "a:.tag",
            "a@sha256:abc",
            "a@md5:0123",
            "a b",
            "a:t t",
            "éa",
            "localhost:port/a",
            "-reg.io/a",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(Reference::parse(&long_tag).is_err());
        let long_name = "a/".repeat(128) + "a";
        assert!(Reference::parse(&long_name).is_err());
        assert!(
            Reference::parse(&"ab".repeat(32)).is_err(),
            "64-hex repository name"
        );
    }

    #[test]
    fn uppercase_repository_is_refused_naming_it() {
        let err = Reference::parse("Busybox").unwrap_err().to_string();
        assert!(
            err.contains("Busybox") && err.contains("lowercase"),
            "{err}"
        );
        let err = Reference::parse("foo/Bar:latest").unwrap_err().to_string();
        assert!(err.contains("foo/Bar"), "{err}");
        // Upper-case tags are fine; an upper-case first part is a domain.
        assert!(Reference::parse("busybox:LATEST").is_ok());
        assert_eq!(norm("Registry.local/a"), "Registry.local/a:latest");
    }
}
