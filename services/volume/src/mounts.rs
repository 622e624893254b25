//! Mount specs and their validation (pure: no files, no database).
use std::collections::{BTreeMap, HashSet};

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountSpec {
    /// `None`: unspecified, refused.
    pub kind: Option<MountKind>,
    /// Host path (bind), volume name (volume; empty for anonymous), empty (tmpfs).
    pub source: String,
    pub destination: String,
    pub read_only: bool,
    pub options: Vec<String>,
    /// Driver options and labels for a volume this mount creates.
    pub volume_options: BTreeMap<String, String>,
    pub volume_labels: BTreeMap<String, String>,
    /// A bind whose source must exist (`--mount`); `-v` creates a missing one.
    pub require_source: bool,
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

const PROPAGATION: [&str; 6] = [
    "shared", "rshared", "slave", "rslave", "private", "rprivate",
];

/// Tmpfs options passed to the kernel as they are (besides `size=` and `mode=`).
const TMPFS_FLAGS: [&str; 8] = [
    "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime", "noatime",
];

/// `64m`, `1g`, `65536k`, `1048576`, `50%`: what tmpfs's `size=` takes.
fn valid_size(v: &str) -> bool {
    let digits = v.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', '%']);
    v.len() - digits.len() <= 1 && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn valid_mode(v: &str) -> bool {
    !v.is_empty() && v.len() <= 4 && v.bytes().all(|b| (b'0'..=b'7').contains(&b))
}

/// Checks one spec's options and returns those the runtime applies: `nocopy`, SELinux
/// relabel (`z`/`Z`, no SELinux here) and macOS consistency hints are dropped (`nocopy`
/// is read from the spec); the error names the refused option.
pub fn runtime_options(kind: MountKind, spec: &MountSpec) -> Result<Vec<String>> {
    let bad = |opt: &str, why: &str| {
        Error::InvalidMount(format!(
            "invalid mount config for type \"{}\" on {}: option {opt:?} {why}",
            kind.name(),
            spec.destination
        ))
    };
    let mut out = Vec::new();
    let mut propagation = false;
    for opt in &spec.options {
        let opt = opt.as_str();
        match (kind, opt) {
            (_, "z" | "Z" | "cached" | "delegated" | "consistent") => {}
            (MountKind::Volume, "nocopy") => {}
            (MountKind::Bind, p) if PROPAGATION.contains(&p) => {
                if propagation {
                    return Err(bad(opt, "repeats the propagation"));
                }
                propagation = true;
                out.push(p.to_string());
            }
            (MountKind::Volume | MountKind::Tmpfs, p) if PROPAGATION.contains(&p) => {
                return Err(bad(opt, "is for bind mounts only"));
            }
            (MountKind::Tmpfs, f) if TMPFS_FLAGS.contains(&f) => out.push(f.to_string()),
            (MountKind::Tmpfs, o) if o.starts_with("size=") => {
                if !valid_size(&o[5..]) {
                    return Err(bad(opt, "is not a size (like 64m)"));
                }
                out.push(o.to_string());
            }
            (MountKind::Tmpfs, o) if o.starts_with("mode=") => {
                if !valid_mode(&o[5..]) {
                    return Err(bad(opt, "is not an octal mode (like 1777)"));
                }
                out.push(o.to_string());
            }
            (MountKind::Tmpfs, o)
                if ["uid=", "gid=", "nr_inodes="].iter().any(|p| {
                    o.strip_prefix(p)
                        .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                }) =>
            {
                out.push(o.to_string())
            }
            _ => return Err(bad(opt, "is unknown")),
        }
    }
    if kind != MountKind::Volume
        && !(spec.volume_options.is_empty() && spec.volume_labels.is_empty())
    {
        return Err(Error::InvalidMount(format!(
            "invalid mount config for type \"{}\" on {}: volume options apply to volumes only",
            kind.name(),
            spec.destination
        )));
    }
    Ok(out)
}

/// Driver options of the local driver (Docker's): `type`, `device`, `o`; `type` and
/// `device` go together.
pub fn check_driver_options(options: &BTreeMap<String, String>) -> Result<()> {
    if let Some(key) = options
        .keys()
        .find(|k| !["type", "device", "o"].contains(&k.as_str()))
    {
        return Err(Error::InvalidOption(format!("invalid option: {key:?}")));
    }
    if !options.is_empty() {
        for key in ["type", "device"] {
            if options.get(key).is_none_or(|v| v.is_empty()) {
                return Err(Error::InvalidOption(format!(
                    "missing required option: {key:?}"
                )));
            }
        }
    }
    Ok(())
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
        runtime_options(kind, spec)?;
        if kind == MountKind::Volume {
            check_driver_options(&spec.volume_options)?;
        }
        out.push(MountSpec {
            kind: Some(kind),
            source,
            destination,
            options: spec.options.clone(),
            ..spec.clone()
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
            volume_options: BTreeMap::new(),
            volume_labels: BTreeMap::new(),
            require_source: false,
        }
    }

    fn with(mut s: MountSpec, opts: &[&str]) -> MountSpec {
        s.options = opts.iter().map(|o| o.to_string()).collect();
        s
    }

    #[test]
    fn options_are_checked_per_kind_naming_the_bad_one() {
        let ok = |s: MountSpec| runtime_options(s.kind.unwrap(), &s).unwrap();
        assert_eq!(
            ok(with(spec(MountKind::Bind, "/h", "/d"), &["rslave", "z"])),
            vec!["rslave"]
        );
        assert!(ok(with(spec(MountKind::Volume, "v1", "/d"), &["nocopy"])).is_empty());
        assert_eq!(
            ok(with(
                spec(MountKind::Tmpfs, "", "/t"),
                &["size=64m", "mode=1777", "noexec"]
            )),
            vec!["size=64m", "mode=1777", "noexec"]
        );
        for (s, part) in [
            (
                with(spec(MountKind::Volume, "v1", "/d"), &["rshared"]),
                "\"rshared\" is for bind mounts only",
            ),
            (
                with(spec(MountKind::Bind, "/h", "/d"), &["bogus"]),
                "\"bogus\" is unknown",
            ),
            (
                with(spec(MountKind::Bind, "/h", "/d"), &["slave", "shared"]),
                "repeats",
            ),
            (
                with(spec(MountKind::Tmpfs, "", "/t"), &["size=lots"]),
                "\"size=lots\"",
            ),
            (
                with(spec(MountKind::Tmpfs, "", "/t"), &["mode=999"]),
                "\"mode=999\"",
            ),
            (
                with(spec(MountKind::Tmpfs, "", "/t"), &["nocopy"]),
                "\"nocopy\" is unknown",
            ),
        ] {
            let e = err(&[s]);
            assert!(e.contains(part), "{e}");
        }
        let mut v = spec(MountKind::Volume, "v1", "/d");
        v.volume_options.insert("colour".into(), "red".into());
        assert_eq!(err(&[v]), "invalid option: \"colour\"");
        let mut v = spec(MountKind::Volume, "v1", "/d");
        v.volume_options.insert("type".into(), "tmpfs".into());
        assert!(err(&[v]).contains("\"device\""));
        let mut b = spec(MountKind::Bind, "/h", "/d");
        b.volume_options.insert("type".into(), "tmpfs".into());
        assert!(err(&[b]).contains("volume options apply to volumes only"));
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
