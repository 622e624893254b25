//! Pure rules that turn an image, the user's request and what the other services returned
//! into the supervisor's container spec (Docker's merge rules).
use std::collections::HashMap;

use berth_proto::{
    engine::v1::{CreateContainerRequest, StringList},
    image::v1::{Image, ImageConfig, SnapshotMounts},
    network::v1::Attachment,
    supervisor::v1::{ContainerSpec, LogConfig, Mount, RestartPolicy, RootFs},
    volume::v1::{MountSpec, MountType, ResolvedMount},
};
use tonic::Status;

/// Checks a container name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`, or empty for a generated one)
/// and returns it without Docker's optional leading `/`.
pub fn validate_name(name: &str) -> Result<&str, Status> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if name.is_empty() {
        return Ok("");
    }
    let mut bytes = bare.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(bare)
    } else {
        Err(Status::invalid_argument(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )))
    }
}

/// Checks and normalizes the requested restart policy (Docker's rules): a known name
/// (`no`, `on-failure`, `always`, `unless-stopped`; empty is `no`), a retry count only with
/// `on-failure` and never negative, and no policy other than `no` together with `--rm`.
pub fn restart_policy(req: &CreateContainerRequest) -> Result<RestartPolicy, Status> {
    let policy = req.restart_policy.clone().unwrap_or_default();
    let name = if policy.name.is_empty() {
        "no"
    } else {
        policy.name.as_str()
    };
    match name {
        "no" | "always" | "unless-stopped" if policy.maximum_retry_count != 0 => {
            return Err(Status::invalid_argument(format!(
                "maximum retry count cannot be used with restart policy '{name}'"
            )))
        }
        "no" | "always" | "unless-stopped" | "on-failure" => {}
        other => {
            return Err(Status::invalid_argument(format!(
                "invalid restart policy '{other}'"
            )))
        }
    }
    if policy.maximum_retry_count < 0 {
        return Err(Status::invalid_argument(
            "maximum retry count cannot be negative",
        ));
    }
    if req.auto_remove && name != "no" {
        return Err(Status::invalid_argument(
            "Conflicting options: --restart and --rm",
        ));
    }
    Ok(RestartPolicy {
        name: name.to_string(),
        maximum_retry_count: policy.maximum_retry_count,
    })
}

/// Docker's rules: a request entrypoint replaces the image's (and, unless a cmd is given
/// too, clears the image's cmd); a request cmd replaces the image's. Both empty is an error.
pub fn command(
    image: &ImageConfig,
    entrypoint: Option<&StringList>,
    cmd: Option<&StringList>,
) -> Result<(Vec<String>, Vec<String>), Status> {
    let entry = match entrypoint {
        Some(e) => e.values.clone(),
        None => image.entrypoint.clone(),
    };
    let cmd = match (cmd, entrypoint) {
        (Some(c), _) => c.values.clone(),
        (None, Some(_)) => Vec::new(),
        (None, None) => image.cmd.clone(),
    };
    if entry.is_empty() && cmd.is_empty() {
        return Err(Status::invalid_argument("no command specified"));
    }
    Ok((entry, cmd))
}

/// The image's environment with the request's `KEY=value` entries replacing those of the
/// same key in place, new keys appended in order. A bare `KEY` (left unresolved by the
/// client) is dropped, as Docker's CLI drops unset variables.
pub fn merge_env(image: &[String], request: &[String]) -> Vec<String> {
    fn key(entry: &str) -> &str {
        entry.split_once('=').map_or(entry, |(k, _)| k)
    }
    let mut out: Vec<String> = image.to_vec();
    for entry in request.iter().filter(|e| e.contains('=')) {
        match out.iter_mut().find(|e| key(e) == key(entry)) {
            Some(existing) => existing.clone_from(entry),
            None => out.push(entry.clone()),
        }
    }
    out
}

/// The image's labels, overridden per key by the request's.
pub fn merge_labels(
    image: &HashMap<String, String>,
    request: &HashMap<String, String>,
) -> HashMap<String, String> {
    let mut out = image.clone();
    out.extend(request.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// The request's mounts plus an anonymous volume for each image `VOLUME` no mount covers
/// (Docker does the same).
pub fn mounts_with_image_volumes(image: &ImageConfig, request: &[MountSpec]) -> Vec<MountSpec> {
    let clean = |p: &str| p.trim_end_matches('/').to_string();
    let mut out = request.to_vec();
    for dest in &image.volumes {
        if !request.iter().any(|m| clean(&m.destination) == clean(dest)) {
            out.push(MountSpec {
                r#type: MountType::Volume as i32,
                destination: dest.clone(),
                ..Default::default()
            });
        }
    }
    out
}

/// Splits `NAME[:ro|:rw]` of `--volumes-from`; `None`: keep each mount's own mode.
pub fn parse_volumes_from(value: &str) -> Result<(&str, Option<bool>), Status> {
    let (name, mode) = match value.split_once(':') {
        Some((n, m)) => (n, Some(m)),
        None => (value, None),
    };
    if name.is_empty() {
        return Err(Status::invalid_argument(format!(
            "invalid --volumes-from {value:?}: no container named"
        )));
    }
    let read_only = match mode {
        None => None,
        Some("ro") => Some(true),
        Some("rw") => Some(false),
        Some(other) => {
            return Err(Status::invalid_argument(format!(
                "invalid mode for volumes-from: {other} (in {value:?})"
            )))
        }
    };
    Ok((name, read_only))
}

/// A container's volumes and binds as mount specs for another container (tmpfs mounts
/// are its own, as in Docker). Volumes keep their content: never copied up again.
pub fn inherited_mounts(mounts: &[Mount], read_only: Option<bool>) -> Vec<MountSpec> {
    mounts
        .iter()
        .filter_map(|m| {
            let (kind, source, options) = match m.r#type.as_str() {
                "volume" => (MountType::Volume, &m.name, vec!["nocopy".to_string()]),
                "bind" => (MountType::Bind, &m.source, m.options.clone()),
                _ => return None,
            };
            Some(MountSpec {
                r#type: kind as i32,
                source: source.clone(),
                destination: m.destination.clone(),
                read_only: read_only.unwrap_or(m.read_only),
                options,
                ..Default::default()
            })
        })
        .collect()
}

/// The explicit mounts, then each inherited one whose path none before it takes.
pub fn merge_mounts(explicit: Vec<MountSpec>, inherited: Vec<MountSpec>) -> Vec<MountSpec> {
    let clean = |p: &str| p.trim_end_matches('/').to_string();
    let mut out = explicit;
    for m in inherited {
        if !out
            .iter()
            .any(|o| clean(&o.destination) == clean(&m.destination))
        {
            out.push(m);
        }
    }
    out
}

pub fn mount_type_name(t: i32) -> &'static str {
    match MountType::try_from(t) {
        Ok(MountType::Bind) => "bind",
        Ok(MountType::Volume) => "volume",
        Ok(MountType::Tmpfs) => "tmpfs",
        _ => "",
    }
}

fn mount(m: &ResolvedMount) -> Mount {
    Mount {
        r#type: mount_type_name(m.r#type).to_string(),
        source: m.source.clone(),
        destination: m.destination.clone(),
        read_only: m.read_only,
        name: m.volume_name.clone(),
        options: m.options.clone(),
    }
}

fn or_image(request: &str, image: &str) -> String {
    if request.is_empty() { image } else { request }.to_string()
}

/// Everything the saga resolved, merged into the supervisor's spec.
pub fn build(
    req: &CreateContainerRequest,
    image: &Image,
    snapshot: &SnapshotMounts,
    mounts: &[ResolvedMount],
    attachment: &Attachment,
    link_env: &[String],
) -> Result<ContainerSpec, Status> {
    let config = image.config.clone().unwrap_or_default();
    let (entrypoint, cmd) = command(&config, req.entrypoint.as_ref(), req.cmd.as_ref())?;
    Ok(ContainerSpec {
        image: req.image.clone(),
        image_id: image.id.clone(),
        entrypoint,
        cmd,
        // Link variables sit between the image's and the user's, as in Docker.
        env: merge_env(&merge_env(&config.env, link_env), &req.env),
        working_dir: or_image(&req.working_dir, &config.working_dir),
        user: or_image(&req.user, &config.user),
        hostname: req.hostname.clone(),
        domainname: req.domainname.clone(),
        tty: req.tty,
        open_stdin: req.open_stdin,
        labels: merge_labels(&config.labels, &req.labels),
        stop_signal: or_image(&req.stop_signal, &config.stop_signal),
        stop_timeout: req.stop_timeout,
        rootfs: Some(RootFs {
            lower_dirs: snapshot.lower_dirs.clone(),
            upper_dir: snapshot.upper_dir.clone(),
            work_dir: snapshot.work_dir.clone(),
        }),
        mounts: mounts.iter().map(mount).collect(),
        network: Some(crate::netsettings::initial(req, attachment)),
        log_config: Some(req.log_config.clone().unwrap_or_else(|| LogConfig {
            driver: "json-file".into(),
            options: HashMap::new(),
        })),
        auto_remove: req.auto_remove,
        read_only_rootfs: req.read_only_rootfs,
        runtime: req.runtime.clone(),
        restart_policy: Some(restart_policy(req)?),
        init: req.init,
        exposed_ports: crate::ports::exposed(&config, &req.exposed_ports, &req.ports)
            .map_err(|e| Status::invalid_argument(e.to_string()))?
            .iter()
            .map(|p| format!("{}/{}", p.port, p.proto))
            .collect(),
        resources: req.resources.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> StringList {
        StringList {
            values: v.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn image(entry: &[&str], cmd: &[&str]) -> ImageConfig {
        ImageConfig {
            entrypoint: strings(entry),
            cmd: strings(cmd),
            ..Default::default()
        }
    }

    #[test]
    fn command_follows_dockers_rules() {
        let img = image(&["/entry"], &["default"]);
        // Nothing given: the image's both.
        assert_eq!(
            command(&img, None, None).unwrap(),
            (strings(&["/entry"]), strings(&["default"]))
        );
        // cmd given: replaces the image's cmd, keeps its entrypoint.
        assert_eq!(
            command(&img, None, Some(&list(&["x"]))).unwrap(),
            (strings(&["/entry"]), strings(&["x"]))
        );
        // entrypoint given: clears the image's cmd.
        assert_eq!(
            command(&img, Some(&list(&["echo"])), None).unwrap(),
            (strings(&["echo"]), vec![])
        );
        // both given.
        assert_eq!(
            command(&img, Some(&list(&["echo"])), Some(&list(&["a", "b"]))).unwrap(),
            (strings(&["echo"]), strings(&["a", "b"]))
        );
        // empty entrypoint clears it; the image's cmd is cleared too unless cmd is given.
        let busybox = image(&[], &["sh"]);
        assert_eq!(
            command(&busybox, Some(&list(&[])), Some(&list(&["ls"]))).unwrap(),
            (vec![], strings(&["ls"]))
        );
        let e = command(&busybox, Some(&list(&[])), None).unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (tonic::Code::InvalidArgument, "no command specified")
        );
        assert!(command(&image(&[], &[]), None, None).is_err());
        assert!(command(&busybox, None, Some(&list(&[]))).is_err());
    }

    #[test]
    fn env_overrides_per_key_in_place() {
        let img = strings(&["PATH=/usr/bin:/bin", "HOME=/root", "A=1"]);
        let req = strings(&["A=2", "PATH=/bin", "NEW=x=y", "BARE", "EMPTY="]);
        assert_eq!(
            merge_env(&img, &req),
            strings(&["PATH=/bin", "HOME=/root", "A=2", "NEW=x=y", "EMPTY="])
        );
        assert_eq!(merge_env(&img, &[]), img);
    }

    #[test]
    fn labels_merge_with_request_winning() {
        let img: HashMap<_, _> =
            [("a".to_string(), "1".to_string()), ("b".into(), "2".into())].into();
        let req: HashMap<_, _> =
            [("b".to_string(), "3".to_string()), ("c".into(), "4".into())].into();
        let out = merge_labels(&img, &req);
        assert_eq!(out.len(), 3);
        assert_eq!(
            (out["a"].as_str(), out["b"].as_str(), out["c"].as_str()),
            ("1", "3", "4")
        );
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(validate_name("").unwrap(), "");
        assert_eq!(validate_name("web-1.a_b").unwrap(), "web-1.a_b");
        assert_eq!(validate_name("/web").unwrap(), "web");
        for bad in ["-x", "_x", ".x", "a b", "a/b", "/", "é"] {
            let e = validate_name(bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
            assert!(e.message().contains(bad), "{}", e.message());
        }
    }

    #[test]
    fn image_volumes_become_anonymous_mounts_unless_covered() {
        let img = ImageConfig {
            volumes: strings(&["/data", "/logs/"]),
            ..Default::default()
        };
        let req = vec![MountSpec {
            r#type: MountType::Bind as i32,
            source: "/h".into(),
            destination: "/logs".into(),
            ..Default::default()
        }];
        let out = mounts_with_image_volumes(&img, &req);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].destination, "/data");
        assert_eq!(out[1].r#type, MountType::Volume as i32);
        assert!(out[1].source.is_empty());
    }

    #[test]
    fn volumes_from_takes_volumes_and_binds_at_their_paths() {
        assert_eq!(parse_volumes_from("store").unwrap(), ("store", None));
        assert_eq!(
            parse_volumes_from("store:ro").unwrap(),
            ("store", Some(true))
        );
        assert_eq!(
            parse_volumes_from("store:rw").unwrap(),
            ("store", Some(false))
        );
        let e = parse_volumes_from("store:rx").unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("rx"), "{}", e.message());
        assert!(parse_volumes_from(":ro").is_err());
        let source = vec![
            Mount {
                r#type: "volume".into(),
                source: "/var/lib/berth/volume/volumes/v/_data".into(),
                destination: "/data".into(),
                name: "v".into(),
                ..Default::default()
            },
            Mount {
                r#type: "bind".into(),
                source: "/srv".into(),
                destination: "/srv".into(),
                read_only: true,
                options: strings(&["rslave"]),
                ..Default::default()
            },
            Mount {
                r#type: "tmpfs".into(),
                destination: "/t".into(),
                ..Default::default()
            },
        ];
        let got = inherited_mounts(&source, None);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].r#type, got[0].source.as_str(), got[0].read_only),
            (MountType::Volume as i32, "v", false)
        );
        assert_eq!((got[1].source.as_str(), got[1].read_only), ("/srv", true));
        assert_eq!(got[1].options, strings(&["rslave"]));
        assert!(inherited_mounts(&source, Some(true))
            .iter()
            .all(|m| m.read_only));
        let explicit = vec![MountSpec {
            r#type: MountType::Volume as i32,
            destination: "/data/".into(),
            ..Default::default()
        }];
        let merged = merge_mounts(explicit, got);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[1].destination, "/srv");
    }

    #[test]
    fn spec_merges_image_request_and_services() {
        let image = Image {
            id: "sha256:abc".into(),
            config: Some(ImageConfig {
                env: strings(&["PATH=/bin", "X=1"]),
                cmd: strings(&["sh"]),
                working_dir: "/img".into(),
                user: "app".into(),
                stop_signal: "SIGQUIT".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = CreateContainerRequest {
            image: "busybox".into(),
            cmd: Some(list(&["echo", "hi"])),
            env: strings(&["X=2"]),
            user: "nobody".into(),
            auto_remove: true,
            ..Default::default()
        };
        let snap = SnapshotMounts {
            lower_dirs: strings(&["/l2", "/l1"]),
            upper_dir: "/u".into(),
            work_dir: "/w".into(),
            ..Default::default()
        };
        let mounts = vec![ResolvedMount {
            r#type: MountType::Volume as i32,
            source: "/v/_data".into(),
            destination: "/data".into(),
            volume_name: "vol".into(),
            ..Default::default()
        }];
        let att = Attachment {
            mode: "none".into(),
            netns_path: "/run/netns/x".into(),
            ..Default::default()
        };
        let spec = build(&req, &image, &snap, &mounts, &att, &[]).unwrap();
        assert_eq!(
            (spec.image.as_str(), spec.image_id.as_str()),
            ("busybox", "sha256:abc")
        );
        assert_eq!(spec.cmd, strings(&["echo", "hi"]));
        assert_eq!(spec.env, strings(&["PATH=/bin", "X=2"]));
        assert_eq!(
            (
                spec.working_dir.as_str(),
                spec.user.as_str(),
                spec.stop_signal.as_str()
            ),
            ("/img", "nobody", "SIGQUIT")
        );
        assert_eq!(spec.rootfs.unwrap().lower_dirs, strings(&["/l2", "/l1"]));
        assert_eq!(spec.mounts[0].r#type, "volume");
        assert_eq!(spec.mounts[0].name, "vol");
        let net = spec.network.unwrap();
        assert_eq!(
            (net.mode.as_str(), net.netns_path.as_str()),
            ("none", "/run/netns/x")
        );
        assert_eq!(spec.log_config.unwrap().driver, "json-file");
        assert!(spec.auto_remove);
        assert_eq!(spec.restart_policy.unwrap().name, "no");
        assert!(!spec.init);
        assert!(spec.exposed_ports.is_empty());

        // Link variables go between the image's environment and the user's.
        let linked = build(
            &req,
            &image,
            &snap,
            &mounts,
            &att,
            &strings(&["DB_NAME=/web/db"]),
        )
        .unwrap();
        assert_eq!(
            linked.env,
            strings(&["PATH=/bin", "X=2", "DB_NAME=/web/db"])
        );

        let req = CreateContainerRequest {
            image: "busybox".into(),
            cmd: Some(list(&["sh"])),
            restart_policy: Some(RestartPolicy {
                name: "on-failure".into(),
                maximum_retry_count: 3,
            }),
            init: true,
            ..Default::default()
        };
        let spec = build(&req, &image, &snap, &mounts, &att, &[]).unwrap();
        assert_eq!(
            spec.restart_policy,
            Some(RestartPolicy {
                name: "on-failure".into(),
                maximum_retry_count: 3
            })
        );
        assert!(spec.init);
    }

    fn policy(name: &str, count: i32, auto_remove: bool) -> Result<RestartPolicy, Status> {
        restart_policy(&CreateContainerRequest {
            restart_policy: Some(RestartPolicy {
                name: name.into(),
                maximum_retry_count: count,
            }),
            auto_remove,
            ..Default::default()
        })
    }

    #[test]
    fn restart_policies_follow_dockers_rules() {
        // Unset and empty mean "no".
        let unset = restart_policy(&CreateContainerRequest::default()).unwrap();
        assert_eq!((unset.name.as_str(), unset.maximum_retry_count), ("no", 0));
        assert_eq!(policy("", 0, true).unwrap().name, "no");
        assert_eq!(policy("no", 0, true).unwrap().name, "no");
        for name in ["always", "unless-stopped", "on-failure"] {
            assert_eq!(policy(name, 0, false).unwrap().name, name);
        }
        assert_eq!(
            policy("on-failure", 5, false).unwrap().maximum_retry_count,
            5
        );
        let msg = |r: Result<RestartPolicy, Status>| {
            let e = r.unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            e.message().to_string()
        };
        assert_eq!(
            msg(policy("always", 0, true)),
            "Conflicting options: --restart and --rm"
        );
        assert_eq!(
            msg(policy("on-failure", 2, true)),
            "Conflicting options: --restart and --rm"
        );
        assert!(msg(policy("sometimes", 0, false)).contains("sometimes"));
        assert!(msg(policy("always", 2, false)).contains("'always'"));
        assert!(msg(policy("on-failure", -1, false)).contains("negative"));
    }
}
