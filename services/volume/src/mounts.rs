//! Mount specs and their validation (pure: no files, no database).
use std::collections::HashSet;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
}

impl MountKind {
    fn name(self) -> &'static str {
        match self {
            MountKind::Bind => "bind",
            MountKind::Volume => "volume",
            MountKind::Tmpfs => "tmpfs",
        }
    }
}

/// A container's mount as asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// `None`: unspecified, refused.
    pub kind: Option<MountKind>,
    /// Host path (bind), volume name (volume; empty for anonymous), empty (tmpfs).
    pub source: String,
    pub destination: String,
    pub read_only: bool,
    pub options: Vec<String>,
}

/// A mount resolved to a host path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResolvedMount {
    pub kind: MountKind,
    pub source: String,
    pub destination: String,
    pub read_only: bool,
    pub volume_name: String,
    pub options: Vec<String>,
}

/// Docker's local volume name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_volume_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

pub fn check_volume_name(name: &str) -> Result<()> {
    if valid_volume_name(name) {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_string()))
    }
}

/// `path` without empty, `.` and `..` components (lexically, like Go's filepath.Clean).
pub fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn absolute(kind: MountKind, path: &str) -> Result<()> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(Error::InvalidMount(format!(
            "invalid mount config for type \"{}\": invalid mount path: '{path}' mount path must be absolute",
            kind.name()
        )))
    }
}

/// Checks every spec (Docker's messages), and that no destination repeats; returns the
/// specs with cleaned destinations and bind sources.
pub fn validate(specs: &[MountSpec]) -> Result<Vec<MountSpec>> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let Some(kind) = spec.kind else {
            return Err(Error::InvalidMount(format!(
                "invalid mount config for {:?}: mount type unspecified",
                spec.destination
            )));
        };
        if spec.destination.is_empty() {
            return Err(Error::InvalidMount(format!(
                "invalid mount config for type \"{}\": field Target must not be empty",
                kind.name()
            )));
        }
        absolute(kind, &spec.destination)?;
        let destination = clean_path(&spec.destination);
        if destination == "/" {
            return Err(Error::InvalidMount(format!(
                "invalid specification: destination can't be '/' in {:?}",
                spec.destination
            )));
        }
        if !seen.insert(destination.clone()) {
            return Err(Error::InvalidMount(format!(
                "Duplicate mount point: {destination}"
            )));
        }
        let source = match kind {
            MountKind::Bind => {
                if spec.source.is_empty() {
                    return Err(Error::InvalidMount(
                        "invalid mount config for type \"bind\": field Source must not be empty"
                            .to_string(),
                    ));
                }
                absolute(kind, &spec.source)?;
                clean_path(&spec.source)
            }
            MountKind::Volume => {
                if !spec.source.is_empty() {
                    check_volume_name(&spec.source)?;
                }
                spec.source.clone()
            }
            MountKind::Tmpfs => {
                if !spec.source.is_empty() {
                    return Err(Error::InvalidMount(
                        "invalid mount config for type \"tmpfs\": field Source must not be specified"
                            .to_string(),
                    ));
                }
                String::new()
            }
        };
        out.push(MountSpec {
            kind: Some(kind),
            source,
            destination,
            read_only: spec.read_only,
            options: spec.options.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: MountKind, source: &str, destination: &str) -> MountSpec {
        MountSpec {
            kind: Some(kind),
            source: source.into(),
            destination: destination.into(),
            read_only: false,
            options: vec![],
        }
    }

    fn err(specs: &[MountSpec]) -> String {
        validate(specs).unwrap_err().to_string()
    }

    #[test]
    fn volume_names_follow_dockers_rule() {
        for ok in ["v1", "my_vol.2-x", "0a", "A_"] {
            assert!(valid_volume_name(ok), "{ok}");
        }
        for bad in ["", "a", "x/y", "_a", ".a", "-a", "a b", "a:b", "é1"] {
            assert!(!valid_volume_name(bad), "{bad}");
        }
        assert!(check_volume_name("x/y")
            .unwrap_err()
            .to_string()
            .starts_with("create x/y: \"x/y\" includes invalid characters"));
    }

    #[test]
    fn specs_are_validated_naming_the_value() {
        assert!(err(&[spec(MountKind::Bind, "/h", "data")])
            .contains("'data' mount path must be absolute"));
        assert!(err(&[spec(MountKind::Volume, "v", "/")]).contains("destination can't be '/'"));
        assert!(err(&[spec(MountKind::Volume, "v", "/a/..")]).contains("destination can't be '/'"));
        assert!(err(&[spec(MountKind::Bind, "rel", "/d")])
            .contains("'rel' mount path must be absolute"));
        assert!(err(&[spec(MountKind::Bind, "", "/d")]).contains("field Source must not be empty"));
        assert!(err(&[spec(MountKind::Tmpfs, "x", "/d")]).contains("must not be specified"));
        assert!(err(&[spec(MountKind::Volume, "x/y", "/d")]).contains("invalid characters"));
        assert_eq!(
            err(&[
                spec(MountKind::Volume, "", "/data"),
                spec(MountKind::Tmpfs, "", "/data/")
            ]),
            "Duplicate mount point: /data"
        );
        let mut unspecified = spec(MountKind::Volume, "", "/d");
        unspecified.kind = None;
        assert!(err(&[unspecified]).contains("mount type unspecified"));
        let ok = validate(&[
            spec(MountKind::Bind, "/host//dir/", "/data/./x"),
            spec(MountKind::Volume, "", "/anon"),
            spec(MountKind::Tmpfs, "", "/tmp"),
        ])
        .unwrap();
        assert_eq!(
            (ok[0].source.as_str(), ok[0].destination.as_str()),
            ("/host/dir", "/data/x")
        );
    }
}
