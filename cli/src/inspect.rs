//! `inspect` for containers, images, volumes and networks: Docker-shaped JSON, or a Go template.
use std::collections::BTreeMap;

use anyhow::{bail, Result};
use berth_proto::engine::v1::{ContainerDetails, ContainerRef};
use berth_proto::image::v1::{GetImageRequest, Image};
use berth_proto::network::v1::{Attachment, GetNetworkRequest, NetworkInfo};
use berth_proto::supervisor::v1::{NetworkSettings, Resources, ThrottleDevice};
use berth_proto::volume::v1::{GetVolumeRequest, Volume};
use serde::Serialize;
use serde_json::{json, Map, Value};
use tonic::Code;

use crate::args::{InspectArgs, TypedInspectArgs};
use crate::client::Engine;
use crate::container::status_name;
use crate::format::Template;

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn time_or_zero(s: &str) -> String {
    if s.is_empty() {
        ZERO_TIME.to_string()
    } else {
        s.to_string()
    }
}

fn sorted<K: Ord + Serialize, V: Serialize>(map: impl IntoIterator<Item = (K, V)>) -> Value {
    let m: BTreeMap<K, V> = map.into_iter().collect();
    json!(m)
}

fn list_or_null(v: &[String]) -> Value {
    if v.is_empty() {
        Value::Null
    } else {
        json!(v)
    }
}

/// A container as `docker inspect` shows it.
pub fn container_json(details: &ContainerDetails) -> Value {
    let c = details.container.clone().unwrap_or_default();
    let spec = c.spec.clone().unwrap_or_default();
    let state = c.state.clone().unwrap_or_default();
    let status = status_name(state.status);
    let command: Vec<String> = spec
        .entrypoint
        .iter()
        .chain(spec.cmd.iter())
        .cloned()
        .collect();
    let (path, args) = command
        .split_first()
        .map(|(p, a)| (p.clone(), a.to_vec()))
        .unwrap_or_default();
    let net = spec.network.clone().unwrap_or_default();
    let attachment = details.network.clone().unwrap_or_default();
    let mode = if !attachment.mode.is_empty() {
        attachment.mode.clone()
    } else if !net.mode.is_empty() {
        net.mode.clone()
    } else {
        "default".to_string()
    };
    let binds: Vec<String> = spec
        .mounts
        .iter()
        .filter(|m| {
            m.r#type == "bind"
                || (m.r#type == "volume" && !m.name.is_empty() && !is_anonymous(&m.name))
        })
        .map(|m| {
            let src = if m.r#type == "bind" {
                &m.source
            } else {
                &m.name
            };
            if m.read_only {
                format!("{src}:{}:ro", m.destination)
            } else {
                format!("{src}:{}", m.destination)
            }
        })
        .collect();
    let mounts: Vec<Value> = spec
        .mounts
        .iter()
        .map(|m| {
            let mut o = Map::new();
            o.insert("Type".into(), json!(m.r#type));
            if m.r#type == "volume" {
                o.insert("Name".into(), json!(m.name));
            }
            o.insert("Source".into(), json!(m.source));
            o.insert("Destination".into(), json!(m.destination));
            if m.r#type == "volume" {
                o.insert("Driver".into(), json!("local"));
            }
            o.insert("Mode".into(), json!(if m.read_only { "ro" } else { "" }));
            o.insert("RW".into(), json!(!m.read_only));
            o.insert(
                "Propagation".into(),
                json!(if m.r#type == "bind" { "rprivate" } else { "" }),
            );
            Value::Object(o)
        })
        .collect();
    let log = spec.log_config.clone().unwrap_or_default();
    let ips = if attachment.ip_addresses.is_empty() {
        net.ip_addresses.clone()
    } else {
        attachment.ip_addresses.clone()
    };
    let first_ip = ips.first().cloned().unwrap_or_default();
    let extra_hosts: Vec<String> = net
        .extra_hosts
        .iter()
        .map(|h| format!("{}:{}", h.hostname, h.ip))
        .collect();
    let mut out = json!({
        "Id": c.id,
        "Created": c.created,
        "Path": path,
        "Args": args,
        "State": {
            "Status": status,
            "Running": status == "running" || status == "paused",
            "Paused": status == "paused",
            "Restarting": status == "restarting",
            "OOMKilled": state.oom_killed,
            "Dead": status == "dead",
            "Pid": state.pid,
            "ExitCode": state.exit_code,
            "Error": state.error,
            "StartedAt": time_or_zero(&state.started_at),
            "FinishedAt": time_or_zero(&state.finished_at),
        },
        "Image": spec.image_id,
        "ResolvConfPath": format!("{}/resolv.conf", c.bundle_path),
        "HostnamePath": format!("{}/hostname", c.bundle_path),
        "HostsPath": format!("{}/hosts", c.bundle_path),
        "LogPath": details.log_path,
        "Name": format!("/{}", c.name.trim_start_matches('/')),
        "RestartCount": c.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "HostConfig": {
            "Binds": list_or_null(&binds),
            "LogConfig": {"Type": if log.driver.is_empty() { "json-file".to_string() } else { log.driver.clone() }, "Config": sorted(log.options.clone())},
            "NetworkMode": mode,
            "AutoRemove": spec.auto_remove,
            "ReadonlyRootfs": spec.read_only_rootfs,
            "Dns": net.dns_servers,
            "ExtraHosts": list_or_null(&extra_hosts),
            "Runtime": if spec.runtime.is_empty() { "berth".to_string() } else { spec.runtime.clone() },
            "RestartPolicy": {
                "Name": spec.restart_policy.as_ref().map_or("no", |p| if p.name.is_empty() { "no" } else { p.name.as_str() }),
                "MaximumRetryCount": spec.restart_policy.as_ref().map_or(0, |p| p.maximum_retry_count),
            },
            "Init": spec.init.then_some(true),
        },
        "Mounts": mounts,
        "Config": {
            // The hostname the container really has: the short ID unless one was given.
            "Hostname": if spec.hostname.is_empty() { c.id.chars().take(12).collect() } else { spec.hostname.clone() },
            "Domainname": spec.domainname,
            "User": spec.user,
            "AttachStdin": spec.open_stdin,
            "AttachStdout": true,
            "AttachStderr": true,
            "Tty": spec.tty,
            "OpenStdin": spec.open_stdin,
            "StdinOnce": spec.open_stdin,
            "Env": list_or_null(&spec.env),
            "Cmd": list_or_null(&spec.cmd),
            "Image": spec.image,
            "Volumes": Value::Null,
            "WorkingDir": spec.working_dir,
            "Entrypoint": list_or_null(&spec.entrypoint),
            "Labels": sorted(spec.labels.clone()),
            "StopSignal": if spec.stop_signal.is_empty() { "SIGTERM".to_string() } else { spec.stop_signal.clone() },
            "StopTimeout": spec.stop_timeout,
            "ExposedPorts": if spec.exposed_ports.is_empty() {
                Value::Null
            } else {
                sorted(spec.exposed_ports.iter().map(|p| (p.clone(), json!({}))))
            },
        },
        "NetworkSettings": network_settings(&attachment, &net, &mode, &first_ip, &ips, &spec.exposed_ports),
    });
    if let Some(Value::Object(host)) = out.get_mut("HostConfig") {
        host.extend(resources_json(&spec.resources.unwrap_or_default()));
    }
    out
}

/// The limits in `HostConfig`, with Docker's names and defaults (0, "", `null` for an
/// unset swappiness or pids limit, `[]` for no throttled device).
pub fn resources_json(r: &Resources) -> Map<String, Value> {
    let devices = |list: &[ThrottleDevice]| -> Value {
        list.iter()
            .map(|d| json!({"Path": d.path, "Rate": d.rate}))
            .collect()
    };
    let mut m = Map::new();
    m.insert("Memory".into(), json!(r.memory));
    m.insert("MemorySwap".into(), json!(r.memory_swap));
    m.insert("MemoryReservation".into(), json!(r.memory_reservation));
    m.insert("OomKillDisable".into(), json!(r.oom_kill_disable));
    m.insert("MemorySwappiness".into(), json!(r.memory_swappiness));
    m.insert("NanoCpus".into(), json!(r.nano_cpus));
    m.insert("CpuPeriod".into(), json!(r.cpu_period));
    m.insert("CpuQuota".into(), json!(r.cpu_quota));
    m.insert("CpuShares".into(), json!(r.cpu_shares));
    m.insert("CpusetCpus".into(), json!(r.cpuset_cpus));
    m.insert("CpusetMems".into(), json!(r.cpuset_mems));
    m.insert("BlkioWeight".into(), json!(r.blkio_weight));
    m.insert("BlkioDeviceReadBps".into(), devices(&r.device_read_bps));
    m.insert("BlkioDeviceWriteBps".into(), devices(&r.device_write_bps));
    m.insert("BlkioDeviceReadIOps".into(), devices(&r.device_read_iops));
    m.insert("BlkioDeviceWriteIOps".into(), devices(&r.device_write_iops));
    m.insert(
        "PidsLimit".into(),
        if r.pids_limit > 0 {
            json!(r.pids_limit)
        } else {
            Value::Null
        },
    );
    m
}

fn prefix_len(cidr: &str) -> u32 {
    cidr.split_once('/')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(0)
}

fn address(cidr: &str) -> &str {
    cidr.split('/').next().unwrap_or(cidr)
}

/// Docker's `NetworkSettings`: one entry per endpoint under `Networks`; the top-level
/// address fields describe the default bridge's endpoint only (empty on user networks).
fn network_settings(
    attachment: &Attachment,
    net: &NetworkSettings,
    mode: &str,
    first_ip: &str,
    ips: &[String],
    exposed: &[String],
) -> Value {
    let ports = if attachment.ports.is_empty() {
        net.ports.clone()
    } else {
        crate::ports::published(&attachment.ports)
    };
    let mut networks = Map::new();
    for e in &attachment.endpoints {
        let name = if e.network_name.is_empty() {
            e.network_id.clone()
        } else {
            e.network_name.clone()
        };
        networks.insert(
            name,
            json!({
                "Aliases": if e.aliases.is_empty() { Value::Null } else { json!(e.aliases) },
                "NetworkID": e.network_id,
                "Gateway": e.gateway,
                "IPAddress": address(&e.ipv4_address),
                "IPPrefixLen": prefix_len(&e.ipv4_address),
                "MacAddress": e.mac_address,
                "DriverOpts": Value::Null,
            }),
        );
    }
    if networks.is_empty() {
        // none, host, container:<id>: no endpoint of its own.
        networks.insert(
            mode.to_string(),
            json!({ "IPAddress": address(first_ip), "IPAddresses": ips }),
        );
    }
    let bridge = attachment
        .endpoints
        .iter()
        .find(|e| e.network_name == "bridge");
    json!({
        "SandboxKey": if attachment.netns_path.is_empty() { net.netns_path.clone() } else { attachment.netns_path.clone() },
        "Ports": crate::ports::inspect_map(&ports, &crate::ports::exposed_list(exposed)),
        "Gateway": bridge.map(|e| e.gateway.as_str()).unwrap_or_default(),
        "IPAddress": match bridge {
            Some(e) => address(&e.ipv4_address),
            None if attachment.endpoints.is_empty() => address(first_ip),
            None => "",
        },
        "IPPrefixLen": bridge.map(|e| prefix_len(&e.ipv4_address)).unwrap_or(0),
        "MacAddress": bridge.map(|e| e.mac_address.as_str()).unwrap_or_default(),
        "Networks": networks,
    })
}

/// A network as `docker network inspect` shows it.
pub fn network_json(n: &NetworkInfo) -> Value {
    let mut containers = Map::new();
    for c in &n.endpoints {
        let e = c.endpoint.clone().unwrap_or_default();
        let mut entry = json!({
            "Name": c.container_name,
            "EndpointID": "",
            "MacAddress": e.mac_address,
            "IPv4Address": e.ipv4_address,
            "IPv6Address": "",
        });
        if !c.node.is_empty() {
            entry["Node"] = json!(c.node);
        }
        containers.insert(c.container_id.clone(), entry);
    }
    let mut config = Map::new();
    for (key, value) in [
        ("Subnet", &n.subnet),
        ("IPRange", &n.ip_range),
        ("Gateway", &n.gateway),
    ] {
        if !value.is_empty() {
            config.insert(key.to_string(), json!(value));
        }
    }
    let mut out = json!({
        "Name": n.name,
        "Id": n.id,
        "Created": if n.created.is_empty() { ZERO_TIME } else { n.created.as_str() },
        "Scope": if n.scope.is_empty() { "local" } else { n.scope.as_str() },
        "Driver": n.driver,
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": {},
            "Config": if config.is_empty() { json!([]) } else { json!([config]) },
        },
        "Internal": n.internal,
        "Attachable": n.attachable,
        "Ingress": false,
        "ConfigOnly": false,
        "Containers": containers,
        "Options": sorted(n.options.clone()),
        "Labels": sorted(n.labels.clone()),
    });
    if n.driver == "overlay" {
        let peers: Vec<Value> = n
            .peers
            .iter()
            .map(|p| json!({"Name": p.name, "IP": p.ip}))
            .collect();
        out["Peers"] = json!(peers);
    }
    out
}

fn is_anonymous(name: &str) -> bool {
    name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit())
}

/// An image as `docker image inspect` shows it.
pub fn image_json(img: &Image) -> Value {
    let cfg = img.config.clone().unwrap_or_default();
    let ports: BTreeMap<String, Value> = cfg
        .exposed_ports
        .iter()
        .map(|p| (p.clone(), json!({})))
        .collect();
    let volumes: BTreeMap<String, Value> =
        cfg.volumes.iter().map(|p| (p.clone(), json!({}))).collect();
    json!({
        "Id": img.id,
        "RepoTags": img.repo_tags,
        "RepoDigests": img.repo_digests,
        "Parent": "",
        "Comment": img.comment,
        "Created": img.created,
        "Author": img.author,
        "Config": {
            "Hostname": "",
            "Domainname": "",
            "User": cfg.user,
            "AttachStdin": false,
            "AttachStdout": false,
            "AttachStderr": false,
            "ExposedPorts": if ports.is_empty() { Value::Null } else { json!(ports) },
            "Tty": false,
            "OpenStdin": false,
            "StdinOnce": false,
            "Env": list_or_null(&cfg.env),
            "Cmd": list_or_null(&cfg.cmd),
            "Image": "",
            "Volumes": if volumes.is_empty() { Value::Null } else { json!(volumes) },
            "WorkingDir": cfg.working_dir,
            "Entrypoint": list_or_null(&cfg.entrypoint),
            "OnBuild": Value::Null,
            "Labels": if cfg.labels.is_empty() { Value::Null } else { sorted(cfg.labels.clone()) },
            "StopSignal": cfg.stop_signal,
        },
        "Architecture": img.architecture,
        "Os": img.os,
        "Size": img.size,
        "RootFS": { "Type": "layers", "Layers": img.layers },
        "Metadata": { "LastTagTime": ZERO_TIME },
    })
}

/// A volume as `docker volume inspect` shows it.
pub fn volume_json(v: &Volume) -> Value {
    json!({
        "CreatedAt": v.created_at,
        "Driver": if v.driver.is_empty() { "local" } else { v.driver.as_str() },
        "Labels": sorted(v.labels.clone()),
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": sorted(v.options.clone()),
        "Scope": if v.scope.is_empty() { "local" } else { v.scope.as_str() },
    })
}

/// Prints the objects: a 4-space-indented JSON array (Docker's), or the template per object.
pub fn print(values: &[Value], format: Option<&str>) -> Result<()> {
    use std::io::Write;
    let mut out = Vec::new();
    match format {
        Some(f) if !f.is_empty() && f != "json" => {
            let tpl = Template::parse(f)?;
            for v in values {
                out.extend_from_slice(tpl.render(v)?.as_bytes());
                out.push(b'\n');
            }
        }
        _ => {
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
            values.serialize(&mut ser)?;
            out.push(b'\n');
        }
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()?;
    Ok(())
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Container,
    Image,
    Volume,
    Network,
}

async fn inspect_one(engine: &mut Engine, kind: Kind, name: &str) -> Result<Value, tonic::Status> {
    match kind {
        Kind::Container => {
            let d = engine
                .inspect_container(ContainerRef {
                    id: name.to_string(),
                })
                .await?
                .into_inner();
            Ok(container_json(&d))
        }
        Kind::Image => {
            let i = engine
                .inspect_image(GetImageRequest {
                    reference: name.to_string(),
                })
                .await?
                .into_inner();
            Ok(image_json(&i))
        }
        Kind::Volume => {
            let v = engine
                .inspect_volume(GetVolumeRequest {
                    name: name.to_string(),
                })
                .await?
                .into_inner();
            Ok(volume_json(&v))
        }
        Kind::Network => {
            let n = engine
                .inspect_network(GetNetworkRequest {
                    name: name.to_string(),
                })
                .await?
                .into_inner();
            Ok(network_json(&n))
        }
    }
}

async fn run(
    engine: &mut Engine,
    kinds: &[Kind],
    names: &[String],
    format: Option<&str>,
) -> Result<i32> {
    let mut values = Vec::new();
    let mut code = 0;
    for name in names {
        let mut found = None;
        let mut last_err = None;
        for &kind in kinds {
            match inspect_one(engine, kind, name).await {
                Ok(v) => {
                    found = Some(v);
                    break;
                }
                Err(st) if st.code() == Code::NotFound && kinds.len() > 1 => last_err = Some(st),
                Err(st) => return Err(st.into()),
            }
        }
        match found {
            Some(v) => values.push(v),
            None => {
                if let Some(st) = last_err {
                    if kinds.len() > 1 {
                        eprintln!("Error: No such object: {name}");
                    } else {
                        eprintln!("Error response from daemon: {}", st.message());
                    }
                }
                code = 125;
            }
        }
    }
    print(&values, format)?;
    Ok(code)
}

/// `berth inspect`: containers first, then images, then volumes (or `--type`).
pub async fn inspect(mut engine: Engine, args: InspectArgs) -> Result<i32> {
    let kinds: Vec<Kind> = match args.kind.as_deref() {
        None | Some("") => vec![Kind::Container, Kind::Image, Kind::Volume, Kind::Network],
        Some("container") => vec![Kind::Container],
        Some("image") => vec![Kind::Image],
        Some("volume") => vec![Kind::Volume],
        Some("network") => vec![Kind::Network],
        Some(other) => bail!("\"{other}\" is not a valid value for --type"),
    };
    run(&mut engine, &kinds, &args.names, args.format.as_deref()).await
}

pub async fn container(mut engine: Engine, args: TypedInspectArgs) -> Result<i32> {
    typed(&mut engine, Kind::Container, args).await
}

pub async fn image(mut engine: Engine, args: TypedInspectArgs) -> Result<i32> {
    typed(&mut engine, Kind::Image, args).await
}

pub async fn volume(mut engine: Engine, args: TypedInspectArgs) -> Result<i32> {
    typed(&mut engine, Kind::Volume, args).await
}

pub async fn network(mut engine: Engine, args: TypedInspectArgs) -> Result<i32> {
    typed(&mut engine, Kind::Network, args).await
}

async fn typed(engine: &mut Engine, kind: Kind, args: TypedInspectArgs) -> Result<i32> {
    let mut values = Vec::new();
    let mut first_err: Option<anyhow::Error> = None;
    for name in &args.names {
        match inspect_one(engine, kind, name).await {
            Ok(v) => values.push(v),
            Err(st) if st.code() == Code::NotFound => {
                eprintln!("Error response from daemon: {}", st.message());
                first_err.get_or_insert_with(|| anyhow::anyhow!("not found"));
            }
            Err(st) => return Err(st.into()),
        }
    }
    print(&values, args.format.as_deref())?;
    Ok(if first_err.is_some() { 125 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::supervisor::v1::{
        Container, ContainerSpec, ContainerState, ContainerStatus, Mount,
    };

    #[test]
    fn container_shape() {
        let d = ContainerDetails {
            container: Some(Container {
                id: "abc".into(),
                name: "web".into(),
                created: "2024-01-01T00:00:00.5Z".into(),
                spec: Some(ContainerSpec {
                    image: "busybox".into(),
                    image_id: "sha256:1234".into(),
                    entrypoint: vec!["sh".into()],
                    cmd: vec!["-c".into(), "true".into()],
                    mounts: vec![
                        Mount {
                            r#type: "bind".into(),
                            source: "/h".into(),
                            destination: "/c".into(),
                            read_only: true,
                            ..Default::default()
                        },
                        Mount {
                            r#type: "volume".into(),
                            source: "/v/data/_data".into(),
                            destination: "/d".into(),
                            name: "data".into(),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }),
                state: Some(ContainerState {
                    status: ContainerStatus::Running as i32,
                    pid: 42,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            log_path: "/var/log/x.json".into(),
            network: None,
        };
        let v = container_json(&d);
        assert_eq!(v["Name"], "/web");
        assert_eq!(v["Path"], "sh");
        assert_eq!(v["Args"], json!(["-c", "true"]));
        assert_eq!(v["State"]["Status"], "running");
        assert_eq!(v["State"]["Running"], true);
        assert_eq!(v["State"]["Pid"], 42);
        assert_eq!(v["State"]["FinishedAt"], ZERO_TIME);
        assert_eq!(v["Image"], "sha256:1234");
        assert_eq!(v["Config"]["Image"], "busybox");
        assert_eq!(v["LogPath"], "/var/log/x.json");
        assert_eq!(v["HostConfig"]["Binds"], json!(["/h:/c:ro", "data:/d"]));
        assert_eq!(v["HostConfig"]["LogConfig"]["Type"], "json-file");
        assert_eq!(v["Mounts"][1]["Name"], "data");
        assert_eq!(v["Mounts"][0]["RW"], false);
        assert_eq!(v["Config"]["Env"], Value::Null);
        let t = Template::parse("{{.State.Status}} {{json .Config.Entrypoint}}").unwrap();
        assert_eq!(t.render(&v).unwrap(), "running [\"sh\"]");
    }

    #[test]
    fn container_limits_and_oom_killed() {
        let bare = container_json(&ContainerDetails {
            container: Some(Container {
                id: "abc".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let h = &bare["HostConfig"];
        assert_eq!(h["Memory"], 0);
        assert_eq!(h["MemorySwap"], 0);
        assert_eq!(h["NanoCpus"], 0);
        assert_eq!(h["CpuShares"], 0);
        assert_eq!(h["CpusetCpus"], "");
        assert_eq!(h["OomKillDisable"], false);
        assert_eq!(h["MemorySwappiness"], Value::Null);
        assert_eq!(h["PidsLimit"], Value::Null);
        assert_eq!(h["BlkioDeviceReadBps"], json!([]));
        assert_eq!(bare["State"]["OOMKilled"], false);
        // The other HostConfig fields are still there.
        assert_eq!(h["AutoRemove"], false);

        let d = ContainerDetails {
            container: Some(Container {
                id: "abc".into(),
                spec: Some(ContainerSpec {
                    resources: Some(Resources {
                        memory: 64 << 20,
                        memory_swap: 128 << 20,
                        memory_reservation: 32 << 20,
                        oom_kill_disable: true,
                        memory_swappiness: Some(0),
                        nano_cpus: 500_000_000,
                        cpu_shares: 512,
                        cpuset_cpus: "0".into(),
                        cpuset_mems: "0".into(),
                        blkio_weight: 300,
                        device_write_bps: vec![ThrottleDevice {
                            path: "/dev/vda".into(),
                            major: 253,
                            minor: 0,
                            rate: 1 << 20,
                        }],
                        pids_limit: 64,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                state: Some(ContainerState {
                    status: ContainerStatus::Exited as i32,
                    exit_code: 137,
                    oom_killed: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let v = container_json(&d);
        let h = &v["HostConfig"];
        assert_eq!(h["Memory"], 67108864);
        assert_eq!(h["MemorySwap"], 134217728);
        assert_eq!(h["MemoryReservation"], 33554432);
        assert_eq!(h["OomKillDisable"], true);
        assert_eq!(h["MemorySwappiness"], 0);
        assert_eq!(h["NanoCpus"], 500000000);
        assert_eq!(h["CpuShares"], 512);
        assert_eq!(h["CpusetCpus"], "0");
        assert_eq!(h["CpusetMems"], "0");
        assert_eq!(h["BlkioWeight"], 300);
        assert_eq!(
            h["BlkioDeviceWriteBps"],
            json!([{"Path": "/dev/vda", "Rate": 1048576}])
        );
        assert_eq!(h["PidsLimit"], 64);
        assert_eq!(v["State"]["OOMKilled"], true);
        assert_eq!(v["State"]["ExitCode"], 137);
        let t = Template::parse("{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}").unwrap();
        assert_eq!(t.render(&v).unwrap(), "67108864 500000000");
    }

    #[test]
    fn container_network_settings() {
        use berth_proto::network::v1::{Endpoint, PortBinding};
        let d = ContainerDetails {
            container: Some(Container {
                id: "abc".into(),
                name: "web".into(),
                ..Default::default()
            }),
            log_path: String::new(),
            network: Some(Attachment {
                mode: "bridge".into(),
                endpoints: vec![
                    Endpoint {
                        network_id: "n1".into(),
                        network_name: "bridge".into(),
                        ipv4_address: "172.17.0.2/16".into(),
                        gateway: "172.17.0.1".into(),
                        mac_address: "02:42:ac:11:00:02".into(),
                        ..Default::default()
                    },
                    Endpoint {
                        network_id: "n2".into(),
                        network_name: "front".into(),
                        ipv4_address: "10.1.0.2/24".into(),
                        aliases: vec!["api".into()],
                        ..Default::default()
                    },
                ],
                ports: vec![PortBinding {
                    protocol: "tcp".into(),
                    container_port: 80,
                    host_ip: String::new(),
                    host_port: 8080,
                }],
                ..Default::default()
            }),
        };
        let v = &container_json(&d)["NetworkSettings"];
        assert_eq!(v["IPAddress"], "172.17.0.2");
        assert_eq!(v["IPPrefixLen"], 16);
        assert_eq!(v["Gateway"], "172.17.0.1");
        assert_eq!(v["MacAddress"], "02:42:ac:11:00:02");
        assert_eq!(
            v["Ports"],
            json!({"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]})
        );
        assert_eq!(v["Networks"]["bridge"]["NetworkID"], "n1");
        assert_eq!(v["Networks"]["front"]["IPAddress"], "10.1.0.2");
        assert_eq!(v["Networks"]["front"]["Aliases"], json!(["api"]));
        assert_eq!(v["Networks"]["bridge"]["Aliases"], Value::Null);
    }

    #[test]
    fn network_shape() {
        use berth_proto::network::v1::{ContainerEndpoint, Endpoint};
        let n = NetworkInfo {
            id: "f00d".into(),
            name: "front".into(),
            driver: "bridge".into(),
            created: "2024-01-01T00:00:00Z".into(),
            subnet: "10.1.0.0/24".into(),
            gateway: "10.1.0.1".into(),
            internal: true,
            labels: [("team".to_string(), "a".to_string())].into(),
            endpoints: vec![ContainerEndpoint {
                container_id: "abc".into(),
                container_name: "web".into(),
                endpoint: Some(Endpoint {
                    ipv4_address: "10.1.0.2/24".into(),
                    mac_address: "02:42:0a:01:00:02".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let v = network_json(&n);
        assert_eq!(v["Name"], "front");
        assert_eq!(v["Id"], "f00d");
        assert_eq!(v["Scope"], "local");
        assert_eq!(
            v["IPAM"]["Config"],
            json!([{"Subnet": "10.1.0.0/24", "Gateway": "10.1.0.1"}])
        );
        assert_eq!(v["Internal"], true);
        assert_eq!(v["Containers"]["abc"]["Name"], "web");
        assert_eq!(v["Containers"]["abc"]["IPv4Address"], "10.1.0.2/24");
        assert_eq!(v["Labels"]["team"], "a");
        assert_eq!(v["Options"], json!({}));
    }

    #[test]
    fn image_shape() {
        let img = Image {
            id: "sha256:ab".into(),
            repo_tags: vec!["busybox:latest".into()],
            layers: vec!["sha256:l1".into()],
            size: 4_000_000,
            ..Default::default()
        };
        let v = image_json(&img);
        assert_eq!(v["RootFS"]["Type"], "layers");
        assert_eq!(v["RootFS"]["Layers"], json!(["sha256:l1"]));
        assert_eq!(v["RepoTags"], json!(["busybox:latest"]));
        assert_eq!(v["Size"], 4_000_000);
    }

    #[test]
    fn volume_shape() {
        let v = volume_json(&Volume {
            name: "data".into(),
            mountpoint: "/m".into(),
            ..Default::default()
        });
        assert_eq!(v["Driver"], "local");
        assert_eq!(v["Scope"], "local");
        assert_eq!(v["Name"], "data");
    }
}
