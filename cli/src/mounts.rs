//! Every form of a container's mounts, parsed in one place: `-v`, `--mount`, `--tmpfs` and
//! `--volumes-from`. Syntax is checked here, each error naming the flag's value and the bad
//! part; the volume service checks the rest (option values, duplicate paths across forms,
//! bind sources against the image) before it makes anything.
use std::collections::HashMap;

use anyhow::{anyhow, bail, Result};
use berth_proto::volume::v1::{MountSpec, MountType};

/// All of a run/create's mount flags, in Docker's order of precedence on a path clash:
/// the explicit forms (checked here for duplicates), then `--volumes-from`.
pub fn collect(
    volumes: &[String],
    mounts: &[String],
    tmpfs: &[String],
    volumes_from: &[String],
) -> Result<Vec<MountSpec>> {
    let mut out = Vec::new();
    for v in volumes {
        out.push(volume_spec(v)?);
    }
    for m in mounts {
        out.push(mount_spec(m)?);
    }
    for t in tmpfs {
        out.push(tmpfs_spec(t)?);
    }
    let mut seen = HashMap::new();
    for m in &out {
        let dest = m.destination.trim_end_matches('/').to_string();
        if let Some(first) = seen.insert(dest.clone(), m.destination.clone()) {
            bail!(
                "Duplicate mount point: {dest} (given as {first:?} and {:?})",
                m.destination
            );
        }
    }
    for f in volumes_from {
        if f.is_empty() || f.starts_with(':') {
            bail!("invalid --volumes-from {f:?}: no container named");
        }
        out.push(MountSpec {
            volumes_from: f.clone(),
            ..Default::default()
        });
    }
    Ok(out)
}

fn truthy(flag: &str, key: &str, value: Option<&str>) -> Result<bool> {
    match value {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(v) => bail!("invalid value for {key} in --mount {flag:?}: {v:?} (true or false)"),
    }
}

/// Parses `--mount type=volume|bind|tmpfs,src=,dst=,readonly,...` (Docker's keys).
pub fn mount_spec(flag: &str) -> Result<MountSpec> {
    let mut kind = MountType::Volume;
    let mut m = MountSpec::default();
    // Which type-specific keys were used, to refuse them with another type.
    let mut family: Vec<(&str, &str)> = Vec::new();
    let mut propagation = None;
    let mut size = None;
    let mut mode = None;
    let mut nocopy = false;
    if flag.is_empty() {
        bail!("invalid --mount \"\": type, source and target are key=value pairs");
    }
    for field in flag.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v)),
            None => (field.trim(), None),
        };
        let need = || {
            value.filter(|v| !v.is_empty()).ok_or_else(|| {
                anyhow!("invalid field {field:?} in --mount {flag:?}: must be a key=value pair")
            })
        };
        match key.to_ascii_lowercase().as_str() {
            "type" => {
                kind = match need()? {
                    "volume" => MountType::Volume,
                    "bind" => MountType::Bind,
                    "tmpfs" => MountType::Tmpfs,
                    other => {
                        bail!("invalid type {other:?} in --mount {flag:?} (volume, bind or tmpfs)")
                    }
                }
            }
            "source" | "src" => m.source = need()?.to_string(),
            "destination" | "dst" | "target" => m.destination = need()?.to_string(),
            "readonly" | "ro" => m.read_only = truthy(flag, key, value)?,
            "consistency" => {
                need()?;
            }
            "bind-propagation" => {
                family.push(("bind", key));
                propagation = Some(need()?.to_string());
            }
            "volume-nocopy" => {
                family.push(("volume", key));
                nocopy = truthy(flag, key, value)?;
            }
            "volume-driver" => {
                family.push(("volume", key));
                let d = need()?;
                if d != "local" {
                    bail!("unknown volume driver {d:?} in --mount {flag:?}: only \"local\"");
                }
            }
            "volume-label" | "volume-opt" => {
                family.push(("volume", key));
                let (k, v) = need()?
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| {
                        anyhow!(
                            "invalid {key} {field:?} in --mount {flag:?}: must be {key}=KEY=VALUE"
                        )
                    })?;
                let map = if key == "volume-label" {
                    &mut m.volume_labels
                } else {
                    &mut m.volume_options
                };
                map.insert(k.to_string(), v.to_string());
            }
            "tmpfs-size" => {
                family.push(("tmpfs", key));
                size = Some(need()?.to_string());
            }
            "tmpfs-mode" => {
                family.push(("tmpfs", key));
                mode = Some(need()?.to_string());
            }
            _ => bail!("unexpected key {key:?} in --mount {flag:?}"),
        }
    }
    let kind_name = match kind {
        MountType::Bind => "bind",
        MountType::Tmpfs => "tmpfs",
        _ => "volume",
    };
    if let Some((_, key)) = family.iter().find(|(f, _)| *f != kind_name) {
        bail!("cannot use {key:?} with mount type {kind_name:?} in --mount {flag:?}");
    }
    if m.destination.is_empty() {
        bail!("invalid --mount {flag:?}: target is required");
    }
    if !m.destination.starts_with('/') {
        bail!(
            "invalid --mount {flag:?}: target {:?} must be an absolute path",
            m.destination
        );
    }
    match kind {
        MountType::Bind => {
            if m.source.is_empty() {
                bail!("invalid --mount {flag:?}: source is required for a bind mount");
            }
            if !m.source.starts_with('/') {
                bail!(
                    "invalid --mount {flag:?}: bind source {:?} must be an absolute path",
                    m.source
                );
            }
            // --mount never creates a missing bind source (Docker's rule; -v does).
            m.require_source = true;
        }
        MountType::Volume => {
            if !m.source.is_empty() && !valid_volume_name(&m.source) {
                bail!(
                    "invalid --mount {flag:?}: {:?} is not a volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]+); \
                     a host directory needs type=bind",
                    m.source
                );
            }
        }
        _ => {
            if !m.source.is_empty() {
                bail!("invalid --mount {flag:?}: a tmpfs mount takes no source");
            }
        }
    }
    m.options.extend(propagation);
    if nocopy {
        m.options.push("nocopy".into());
    }
    m.options.extend(size.map(|s| format!("size={s}")));
    m.options.extend(mode.map(|s| format!("mode={s}")));
    m.r#type = kind as i32;
    Ok(m)
}

/// Parses `--tmpfs /path[:opt,opt...]` (`ro` makes it read-only; the rest are tmpfs's
/// options, checked by the volume service).
pub fn tmpfs_spec(flag: &str) -> Result<MountSpec> {
    let (dest, opts) = match flag.split_once(':') {
        Some((d, o)) => (d, o),
        None => (flag, ""),
    };
    if !dest.starts_with('/') {
        bail!("invalid --tmpfs {flag:?}: the container path {dest:?} must be absolute");
    }
    let mut m = MountSpec {
        r#type: MountType::Tmpfs as i32,
        destination: dest.to_string(),
        ..Default::default()
    };
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => m.read_only = true,
            "rw" => m.read_only = false,
            o => m.options.push(o.to_string()),
        }
    }
    Ok(m)
}

/// Parses a `-v` spec: `/host:/ctr[:opts]` (bind), `name:/ctr[:opts]` (named volume),
/// `/ctr` (anonymous volume). Options: `ro`, `rw`, and others passed through (`nocopy`,
/// `z`, propagation modes).
pub fn volume_spec(spec: &str) -> Result<MountSpec> {
    let invalid = || anyhow!("invalid volume specification: '{spec}'");
    let parts: Vec<&str> = spec.split(':').collect();
    if parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
        return Err(invalid());
    }
    let (source, destination, mode) = match parts.as_slice() {
        [dst] => ("", *dst, None),
        [src, dst] => (*src, *dst, None),
        [src, dst, mode] => (*src, *dst, Some(*mode)),
        _ => return Err(invalid()),
    };
    if !destination.starts_with('/') {
        if parts.len() == 1 {
            bail!("invalid volume specification: '{spec}': the container path must be absolute");
        }
        bail!("invalid volume specification: '{spec}': mount path must be absolute");
    }
    if destination == "/" {
        bail!("invalid volume specification: '{spec}': destination can't be '/'");
    }
    let mut read_only = false;
    let mut options = Vec::new();
    let mut seen_rw = false;
    if let Some(mode) = mode {
        for opt in mode.split(',') {
            match opt {
                "ro" | "rw" => {
                    if seen_rw {
                        bail!("invalid mode: {mode} in volume specification '{spec}'");
                    }
                    seen_rw = true;
                    read_only = opt == "ro";
                }
                "z" | "Z" | "nocopy" | "shared" | "rshared" | "slave" | "rslave" | "private"
                | "rprivate" | "delegated" | "cached" | "consistent" => {
                    options.push(opt.to_string())
                }
                _ => bail!("invalid mode: {opt} in volume specification '{spec}'"),
            }
        }
    }
    let kind = if source.is_empty() {
        MountType::Volume
    } else if source.starts_with('/') {
        MountType::Bind
    } else {
        if !valid_volume_name(source) {
            bail!(
                "invalid volume specification: '{spec}': {source:?} includes invalid characters \
                 for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you \
                 intended to pass a host directory, use absolute path"
            );
        }
        MountType::Volume
    };
    if kind == MountType::Volume
        && options
            .iter()
            .any(|o| o.ends_with("shared") || o.ends_with("slave") || o.ends_with("private"))
    {
        bail!("invalid volume specification: '{spec}': propagation applies to bind mounts only");
    }
    Ok(MountSpec {
        r#type: kind as i32,
        source: source.to_string(),
        destination: destination.to_string(),
        read_only,
        options,
        ..Default::default()
    })
}

/// Docker's rule for volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    name.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes() {
        let m = volume_spec("/host:/ctr").unwrap();
        assert_eq!(m.r#type, MountType::Bind as i32);
        assert_eq!(
            (m.source.as_str(), m.destination.as_str(), m.read_only),
            ("/host", "/ctr", false)
        );
        let m = volume_spec("/host:/ctr:ro").unwrap();
        assert!(m.read_only);
        let m = volume_spec("data:/var/lib/data:rw").unwrap();
        assert_eq!(m.r#type, MountType::Volume as i32);
        assert_eq!(m.source, "data");
        assert!(!m.read_only);
        let m = volume_spec("/anon").unwrap();
        assert_eq!(m.r#type, MountType::Volume as i32);
        assert_eq!(m.source, "");
        assert_eq!(m.destination, "/anon");
        let m = volume_spec("/h:/c:ro,nocopy").unwrap();
        assert!(m.read_only);
        assert_eq!(m.options, vec!["nocopy"]);
        for bad in [
            "",
            "a:b:c:d",
            "rel",
            "/h:rel",
            "/h:/c:xx",
            "/h:/",
            "./rel:/c",
            "a b:/c",
            "x:/c",
            "/h::/c",
            "/h:/c:ro,rw",
            "vol:/c:rshared",
        ] {
            let err = volume_spec(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("'{bad}'")), "{bad}: {err}");
        }
    }

    fn bad(f: fn(&str) -> Result<MountSpec>, spec: &str, part: &str) {
        let e = f(spec).unwrap_err().to_string();
        assert!(e.contains(part), "{spec}: {e}");
    }

    #[test]
    fn mount_flags() {
        let m =
            mount_spec("type=volume,src=v1,dst=/v,readonly,volume-opt=type=tmpfs,volume-label=a=b")
                .unwrap();
        assert_eq!(m.r#type, MountType::Volume as i32);
        assert_eq!(
            (m.source.as_str(), m.destination.as_str(), m.read_only),
            ("v1", "/v", true)
        );
        assert_eq!(m.volume_options["type"], "tmpfs");
        assert_eq!(m.volume_labels["a"], "b");
        let m = mount_spec("type=bind,source=/srv,target=/srv,bind-propagation=rslave").unwrap();
        assert!(m.require_source);
        assert_eq!(m.options, vec!["rslave"]);
        let m = mount_spec("type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1770").unwrap();
        assert_eq!(m.options, vec!["size=64m", "mode=1770"]);
        let m = mount_spec("dst=/anon,volume-nocopy").unwrap();
        assert_eq!(
            (m.r#type, m.source.as_str()),
            (MountType::Volume as i32, "")
        );
        assert_eq!(m.options, vec!["nocopy"]);
        assert!(
            !mount_spec("type=bind,src=/a,dst=/b,ro=false")
                .unwrap()
                .read_only
        );

        bad(mount_spec, "type=disk,dst=/x", "invalid type \"disk\"");
        bad(
            mount_spec,
            "type=bind,src=/a,dst=rel",
            "target \"rel\" must be an absolute path",
        );
        bad(
            mount_spec,
            "type=bind,src=rel,dst=/x",
            "bind source \"rel\"",
        );
        bad(mount_spec, "type=bind,dst=/x", "source is required");
        bad(mount_spec, "type=volume,src=v1", "target is required");
        bad(
            mount_spec,
            "type=volume,src=v1,dst=/x,colour=red",
            "unexpected key \"colour\"",
        );
        bad(
            mount_spec,
            "type=volume,src=v1,dst=/x,tmpfs-size=1m",
            "cannot use \"tmpfs-size\" with mount type \"volume\"",
        );
        bad(
            mount_spec,
            "type=tmpfs,dst=/x,bind-propagation=rshared",
            "\"bind-propagation\"",
        );
        bad(mount_spec, "type=tmpfs,src=x,dst=/x", "takes no source");
        bad(
            mount_spec,
            "type=volume,src=a/b,dst=/x",
            "\"a/b\" is not a volume name",
        );
        bad(
            mount_spec,
            "type=volume,dst=/x,volume-opt=novalue",
            "volume-opt=KEY=VALUE",
        );
        bad(mount_spec, "type=volume,dst=/x,readonly=maybe", "\"maybe\"");
        bad(
            mount_spec,
            "type=volume,src=,dst=/x",
            "must be a key=value pair",
        );
        bad(mount_spec, "", "key=value");
    }

    #[test]
    fn tmpfs_flags() {
        let m = tmpfs_spec("/run:size=16m,mode=1777").unwrap();
        assert_eq!(m.r#type, MountType::Tmpfs as i32);
        assert_eq!(m.options, vec!["size=16m", "mode=1777"]);
        assert!(tmpfs_spec("/ro:ro").unwrap().read_only);
        assert!(tmpfs_spec("/plain").unwrap().options.is_empty());
        bad(tmpfs_spec, "run:size=1m", "\"run\" must be absolute");
    }

    #[test]
    fn all_forms_together_refuse_duplicate_paths() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let all = collect(
            &s(&["/a"]),
            &s(&["type=tmpfs,dst=/b"]),
            &s(&["/c"]),
            &s(&["store:ro"]),
        )
        .unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[3].volumes_from, "store:ro");
        let e = collect(&s(&["v1:/data"]), &[], &s(&["/data/"]), &[])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("Duplicate mount point: /data"), "{e}");
        assert!(collect(&[], &[], &[], &s(&[":ro"])).is_err());
    }
}
