//! ContainerSpec → OCI runtime spec (`config.json`) and the bundle's generated files
//! (`hostname`, `hosts`, `resolv.conf`). Everything here is pure; [`write_bundle`] does the I/O.
use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
};

use berth_proto::{
    network::v1::Attachment,
    supervisor::v1::{ContainerSpec, NetworkSettings},
};
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder,
    UserBuilder,
};

use berth_common::netsettings;

use crate::error::{Error, IoContext, Result};

pub const ANN_LOWERDIRS: &str = "io.berth.rootfs.lowerdirs";
pub const ANN_UPPERDIR: &str = "io.berth.rootfs.upperdir";
pub const ANN_WORKDIR: &str = "io.berth.rootfs.workdir";
pub const ANN_USER: &str = "io.berth.user";
pub const ANN_STDIN: &str = "io.berth.stdin";
/// Run a tiny init as PID 1 (`--init`); implemented by the shim.
pub const ANN_INIT: &str = "io.berth.init";

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capabilities with their numbers (for the bounding-set check).
pub const DEFAULT_CAPS: &[(&str, u32)] = &[
    ("CHOWN", 0),
    ("DAC_OVERRIDE", 1),
    ("FSETID", 4),
    ("FOWNER", 3),
    ("MKNOD", 27),
    ("NET_RAW", 13),
    ("SETGID", 6),
    ("SETUID", 7),
    ("SETFCAP", 31),
    ("SETPCAP", 8),
    ("NET_BIND_SERVICE", 10),
    ("SYS_CHROOT", 18),
    ("KILL", 5),
    ("AUDIT_WRITE", 29),
];

pub const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// What the spec needs besides the ContainerSpec.
#[derive(Debug, Clone)]
pub struct Context {
    /// Instance name: the cgroup parent.
    pub instance: String,
    /// The bundle directory (absolute), for the binds of hostname/hosts/resolv.conf.
    pub bundle: PathBuf,
    /// The capability bounding set of this process (`CapBnd` of /proc/self/status).
    pub cap_bounding: u64,
    /// A unified (v2) cgroup host: /sys/fs/cgroup is mounted as `cgroup2` (read-only).
    /// On v1 hosts no cgroup mount is made (the built-in runtime has no emulation of
    /// runc's per-hierarchy cgroup mount).
    pub cgroup_v2: bool,
}

/// The container's hostname: the spec's, else the 12-character ID.
pub fn hostname(spec: &ContainerSpec, id: &str) -> String {
    if spec.hostname.is_empty() {
        berth_common::ids::short_id(id).to_string()
    } else {
        spec.hostname.clone()
    }
}

/// The process environment: PATH (default if absent), HOSTNAME, TERM=xterm with a tty,
/// then the spec's variables, later ones replacing earlier ones with the same key.
pub fn environment(spec: &ContainerSpec, hostname: &str) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let set = |env: &mut Vec<String>, kv: String| {
        let key = kv.split('=').next().unwrap_or("").to_string();
        match env
            .iter_mut()
            .find(|e| e.split('=').next() == Some(key.as_str()))
        {
            Some(slot) => *slot = kv,
            None => env.push(kv),
        }
    };
    set(&mut env, format!("PATH={DEFAULT_PATH}"));
    set(&mut env, format!("HOSTNAME={hostname}"));
    if spec.tty {
        set(&mut env, "TERM=xterm".to_string());
    }
    for kv in &spec.env {
        if kv.is_empty() || kv.starts_with('=') {
            continue;
        }
        // `KEY` without a value is kept as given.
        set(&mut env, kv.clone());
    }
    env
}

/// Docker's default capabilities present in `bounding`.
pub fn capabilities(bounding: u64) -> Result<HashSet<Capability>> {
    DEFAULT_CAPS
        .iter()
        .filter(|(_, bit)| bounding & (1u64 << bit) != 0)
        .map(|(name, _)| {
            name.parse::<Capability>()
                .map_err(|e| Error::Internal(format!("capability {name}: {e}")))
        })
        .collect()
}

/// The capability bounding set of the current process.
pub fn current_bounding_set() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

fn default_mounts(cgroup_v2: bool) -> Result<Vec<Mount>> {
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
    ];
    if cgroup_v2 {
        mounts.push(mount(
            "/sys/fs/cgroup",
            "cgroup2",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?);
    }
    Ok(mounts)
}

/// True on a unified (cgroup v2 only) host.
pub fn host_is_cgroup_v2() -> bool {
    cgroups_rs::fs::hierarchies::is_cgroup2_unified_mode()
}

fn clean_dest(dest: &str) -> String {
    let trimmed = dest.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}

fn user_mounts(spec: &ContainerSpec) -> Result<Vec<Mount>> {
    let mut out = Vec::new();
    for m in &spec.mounts {
        if !m.destination.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "invalid mount destination {:?}: not an absolute path",
                m.destination
            )));
        }
        let dest = clean_dest(&m.destination);
        let built = match m.r#type.as_str() {
            "bind" | "volume" | "" => {
                if m.source.is_empty() {
                    return Err(Error::InvalidArgument(format!(
                        "mount on {dest}: empty source"
                    )));
                }
                let mut opts = vec![
                    "rbind".to_string(),
                    if m.read_only { "ro" } else { "rw" }.to_string(),
                ];
                opts.extend(m.options.iter().cloned());
                MountBuilder::default()
                    .destination(dest.as_str())
                    .typ("bind")
                    .source(m.source.as_str())
                    .options(opts)
                    .build()?
            }
            "tmpfs" => {
                let mut opts = vec![
                    "nosuid".to_string(),
                    "nodev".to_string(),
                    "noexec".to_string(),
                ];
                if m.read_only {
                    opts.push("ro".to_string());
                }
                opts.extend(m.options.iter().cloned());
                MountBuilder::default()
                    .destination(dest.as_str())
                    .typ("tmpfs")
                    .source("tmpfs")
                    .options(opts)
                    .build()?
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "invalid mount type {other:?} for {dest}"
                )));
            }
        };
        out.push(built);
    }
    // Parents before children, as Docker does.
    out.sort_by_key(|m| m.destination().components().count());
    Ok(out)
}

fn namespaces(net: Option<&NetworkSettings>) -> Result<Vec<LinuxNamespace>> {
    let mut out = Vec::new();
    for typ in [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
    ] {
        out.push(LinuxNamespaceBuilder::default().typ(typ).build()?);
    }
    if let Some(path) = net.map(|n| n.netns_path.as_str()).filter(|p| !p.is_empty()) {
        out.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(path)
                .build()?,
        );
    }
    Ok(out)
}

/// uid/gid for `process.user` when the user is numeric; names are resolved by the runtime
/// (annotation `io.berth.user`).
pub(crate) fn numeric_user(user: &str) -> (u32, u32) {
    let mut parts = user.splitn(2, ':');
    let uid = parts.next().and_then(|u| u.parse().ok()).unwrap_or(0);
    let gid = parts.next().and_then(|g| g.parse().ok()).unwrap_or(0);
    (uid, gid)
}

/// The OCI runtime spec for container `id`.
pub fn build(spec: &ContainerSpec, id: &str, ctx: &Context) -> Result<Spec> {
    // Only the built-in runtime (berth-shim) is wired up so far.
    if !matches!(spec.runtime.as_str(), "" | "berth") {
        return Err(Error::InvalidArgument(format!(
            "unknown or invalid runtime name: {}",
            spec.runtime
        )));
    }
    let hostname = hostname(spec, id);
    let mut args: Vec<String> = spec
        .entrypoint
        .iter()
        .chain(spec.cmd.iter())
        .cloned()
        .collect();
    if args.is_empty() {
        return Err(Error::InvalidArgument("no command specified".to_string()));
    }
    // An entrypoint of [""] means "no entrypoint" in Docker.
    if args.first().is_some_and(|a| a.is_empty())
        && spec.entrypoint.first().is_some_and(|a| a.is_empty())
    {
        args.remove(0);
        if args.is_empty() {
            return Err(Error::InvalidArgument("no command specified".to_string()));
        }
    }
    let caps = capabilities(ctx.cap_bounding)?;
    let (uid, gid) = numeric_user(&spec.user);
    let process = ProcessBuilder::default()
        .terminal(spec.tty)
        .user(UserBuilder::default().uid(uid).gid(gid).build()?)
        .args(args)
        .env(environment(spec, &hostname))
        .cwd(if spec.working_dir.is_empty() {
            "/"
        } else {
            spec.working_dir.as_str()
        })
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .build()?,
        )
        .no_new_privileges(true)
        .build()?;

    let user = user_mounts(spec)?;
    let user_dests: HashSet<PathBuf> = user.iter().map(|m| m.destination().clone()).collect();
    let mut mounts: Vec<Mount> = default_mounts(ctx.cgroup_v2)?
        .into_iter()
        .filter(|m| !user_dests.contains(m.destination()))
        .collect();
    for file in ["hostname", "hosts", "resolv.conf"] {
        let dest = format!("/etc/{file}");
        if user_dests.contains(Path::new(&dest)) {
            continue;
        }
        let source = ctx.bundle.join(file);
        mounts.push(
            MountBuilder::default()
                .destination(dest)
                .typ("bind")
                .source(source)
                .options(vec!["rbind".to_string(), "rprivate".to_string()])
                .build()?,
        );
    }
    mounts.extend(user);

    let rootfs = spec.rootfs.clone().unwrap_or_default();
    let mut annotations = HashMap::new();
    annotations.insert(ANN_LOWERDIRS.to_string(), rootfs.lower_dirs.join(":"));
    annotations.insert(ANN_UPPERDIR.to_string(), rootfs.upper_dir.clone());
    annotations.insert(ANN_WORKDIR.to_string(), rootfs.work_dir.clone());
    annotations.insert(ANN_USER.to_string(), spec.user.clone());
    annotations.insert(ANN_STDIN.to_string(), spec.open_stdin.to_string());
    if spec.init {
        annotations.insert(ANN_INIT.to_string(), "true".to_string());
    }

    let linux = LinuxBuilder::default()
        .cgroups_path(PathBuf::from(format!("{}/{}", ctx.instance, id)))
        .namespaces(namespaces(spec.network.as_ref())?)
        .masked_paths(
            MASKED_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .readonly_paths(
            READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .build()?;

    let mut builder = SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(spec.read_only_rootfs)
                .build()?,
        )
        .mounts(mounts)
        .process(process)
        .hostname(hostname)
        .annotations(annotations)
        .linux(linux);
    if !spec.domainname.is_empty() {
        builder = builder.domainname(spec.domainname.clone());
    }
    Ok(builder.build()?)
}

impl From<oci_spec::OciSpecError> for Error {
    fn from(e: oci_spec::OciSpecError) -> Error {
        Error::Internal(format!("OCI spec: {e}"))
    }
}

/// `/etc/hostname` of the container.
pub fn hostname_file(hostname: &str) -> String {
    format!("{hostname}\n")
}

/// `/etc/hosts` of the container, as Docker writes it.
pub fn hosts_file(spec: &ContainerSpec, hostname: &str) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    let net = spec.network.clone().unwrap_or_default();
    for h in net.extra_hosts.iter().chain(&net.network_hosts) {
        out.push_str(&format!("{}\t{}\n", h.ip, h.hostname));
    }
    let names = if spec.domainname.is_empty() {
        hostname.to_string()
    } else {
        format!("{hostname}.{} {hostname}", spec.domainname)
    };
    for ip in &net.ip_addresses {
        let ip = ip.split('/').next().unwrap_or(ip);
        if !ip.is_empty() {
            out.push_str(&format!("{ip}\t{names}\n"));
        }
    }
    out
}

fn is_localhost_ns(addr: &str) -> bool {
    let addr = addr.split('%').next().unwrap_or(addr);
    addr.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// `/etc/resolv.conf` of the container: the given DNS settings, else the host's file with
/// localhost nameservers removed (kept on the host's network, where they are reachable);
/// Google's public servers when none is left, as Docker does.
pub fn resolv_conf(host: &str, net: &NetworkSettings) -> String {
    let host_network = net.netns_path.is_empty();
    let mut nameservers = Vec::new();
    let mut search: Option<String> = None;
    let mut options: Option<String> = None;
    let mut other = Vec::new();
    for line in host.lines() {
        let trimmed = line.trim();
        let mut words = trimmed.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(addr) = words.next() {
                    if host_network || !is_localhost_ns(addr) {
                        nameservers.push(addr.to_string());
                    }
                }
            }
            Some("search") | Some("domain") => search = Some(words.collect::<Vec<_>>().join(" ")),
            Some("options") => options = Some(words.collect::<Vec<_>>().join(" ")),
            _ if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') => {}
            _ => other.push(trimmed.to_string()),
        }
    }
    if !net.dns_servers.is_empty() {
        nameservers = net.dns_servers.clone();
    }
    if !net.dns_search.is_empty() {
        search = Some(net.dns_search.join(" "));
    }
    if !net.dns_options.is_empty() {
        options = Some(net.dns_options.join(" "));
    }
    if nameservers.is_empty() {
        nameservers = vec!["8.8.8.8".to_string(), "8.8.4.4".to_string()];
    }
    let mut out = String::new();
    if let Some(s) = search.filter(|s| !s.is_empty() && s != ".") {
        out.push_str(&format!("search {s}\n"));
    }
    for ns in nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if let Some(o) = options.filter(|o| !o.is_empty()) {
        out.push_str(&format!("options {o}\n"));
    }
    for line in other {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).ctx(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).ctx(|| format!("rename {}", path.display()))
}

/// Rewrites a file through its existing inode (open, truncate, write). The shim bind-mounts
/// `hosts` and `resolv.conf` by inode, so a rename would leave the container reading the
/// old file.
pub fn write_in_place(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .ctx(|| format!("open {}", path.display()))?;
    f.write_all(contents)
        .ctx(|| format!("write {}", path.display()))
}

/// Checks that `new` keeps the mode and namespace of `old`: the container's namespaces
/// are fixed once it exists, only names, addresses and DNS settings can follow a
/// connect/disconnect.
pub fn check_network_update(old: &NetworkSettings, new: &NetworkSettings) -> Result<()> {
    if old.mode != new.mode {
        return Err(Error::InvalidArgument(format!(
            "network mode cannot change (from {:?} to {:?})",
            old.mode, new.mode
        )));
    }
    if old.netns_path != new.netns_path {
        return Err(Error::InvalidArgument(format!(
            "network namespace cannot change (from {:?} to {:?})",
            old.netns_path, new.netns_path
        )));
    }
    Ok(())
}

/// The settings of a container whose network was just activated: its addresses, bound
/// ports and link entries from the network service. DNS lists the record already has are
/// the user's (--dns) or ones the engine keeps in step with the network on connect and
/// disconnect, so they stay; empty ones take the network's. Mode and namespace are fixed.
pub fn activated_network(old: &NetworkSettings, a: &Attachment) -> NetworkSettings {
    NetworkSettings {
        mode: old.mode.clone(),
        netns_path: old.netns_path.clone(),
        extra_hosts: old.extra_hosts.clone(),
        dns_servers: netsettings::user_or(&old.dns_servers, &a.dns_servers),
        dns_search: netsettings::user_or(&old.dns_search, &a.dns_search),
        dns_options: netsettings::user_or(&old.dns_options, &a.dns_options),
        ip_addresses: netsettings::ip_addresses(a),
        network_hosts: netsettings::network_hosts(&a.extra_hosts),
        ports: netsettings::published(&a.ports),
    }
}

/// The settings of a container whose network is gone (it stopped): no address, no
/// published port, as Docker shows a stopped container.
pub fn deactivated_network(old: &NetworkSettings) -> NetworkSettings {
    NetworkSettings {
        ip_addresses: Vec::new(),
        ports: Vec::new(),
        ..old.clone()
    }
}

/// Rewrites `hosts` and `resolv.conf` of an existing bundle in place for `spec`.
pub fn rewrite_network_files(
    dir: &Path,
    spec: &ContainerSpec,
    id: &str,
    host_resolv: &str,
) -> Result<()> {
    let hostname = hostname(spec, id);
    write_in_place(&dir.join("hosts"), hosts_file(spec, &hostname).as_bytes())?;
    let net = spec.network.clone().unwrap_or_default();
    write_in_place(
        &dir.join("resolv.conf"),
        resolv_conf(host_resolv, &net).as_bytes(),
    )
}

/// Writes `config.json`, `hostname`, `hosts`, `resolv.conf` and the empty `rootfs/` into `dir`.
pub fn write_bundle(
    dir: &Path,
    spec: &ContainerSpec,
    id: &str,
    ctx: &Context,
    host_resolv: &str,
) -> Result<()> {
    let oci = build(spec, id, ctx)?;
    let hostname = hostname(spec, id);
    std::fs::create_dir_all(dir.join("rootfs"))
        .ctx(|| format!("create {}/rootfs", dir.display()))?;
    write_atomic(&dir.join("hostname"), hostname_file(&hostname).as_bytes())?;
    write_atomic(&dir.join("hosts"), hosts_file(spec, &hostname).as_bytes())?;
    let net = spec.network.clone().unwrap_or_default();
    write_atomic(
        &dir.join("resolv.conf"),
        resolv_conf(host_resolv, &net).as_bytes(),
    )?;
    let json = serde_json::to_vec_pretty(&oci)
        .map_err(|e| Error::Internal(format!("serialize config.json: {e}")))?;
    write_atomic(&dir.join("config.json"), &json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::network::v1::{Endpoint, PortBinding};
    use berth_proto::supervisor::v1::{HostEntry, Mount as SpecMount, RootFs};

    #[test]
    fn activation_fills_addresses_ports_and_links_and_keeps_the_users_dns() {
        let old = NetworkSettings {
            mode: "front".into(),
            netns_path: "/run/berth/netns/x".into(),
            dns_servers: vec!["9.9.9.9".into()],
            ..Default::default()
        };
        let a = Attachment {
            netns_path: "/run/berth/netns/x".into(),
            dns_servers: vec!["10.1.0.1".into()],
            dns_search: vec!["corp".into()],
            endpoints: vec![Endpoint {
                ipv4_address: "10.1.0.2/24".into(),
                ..Default::default()
            }],
            ports: vec![PortBinding {
                protocol: "tcp".into(),
                container_port: 80,
                host_ip: "0.0.0.0".into(),
                host_port: 8080,
            }],
            extra_hosts: vec!["10.1.0.3\tdb 1a2b".into()],
            ..Default::default()
        };
        let n = activated_network(&old, &a);
        assert_eq!(n.dns_servers, vec!["9.9.9.9"]);
        assert_eq!(n.dns_search, vec!["corp"]);
        assert_eq!(n.ip_addresses, vec!["10.1.0.2/24"]);
        assert_eq!(n.ports[0].host_port, 8080);
        assert_eq!(
            n.network_hosts,
            vec![HostEntry {
                hostname: "db 1a2b".into(),
                ip: "10.1.0.3".into()
            }]
        );
        assert_eq!(
            (n.mode.as_str(), n.netns_path.as_str()),
            ("front", "/run/berth/netns/x")
        );
        let d = deactivated_network(&n);
        assert!(d.ip_addresses.is_empty() && d.ports.is_empty());
        assert_eq!(d.dns_servers, n.dns_servers);
    }

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn ctx() -> Context {
        Context {
            instance: "berth-t".into(),
            bundle: PathBuf::from("/b"),
            cap_bounding: u64::MAX,
            cgroup_v2: false,
        }
    }

    fn base() -> ContainerSpec {
        ContainerSpec {
            image: "busybox".into(),
            entrypoint: vec!["/bin/sh".into(), "-c".into()],
            cmd: vec!["echo hi".into()],
            rootfs: Some(RootFs {
                lower_dirs: vec!["/l1".into(), "/l2".into()],
                upper_dir: "/u".into(),
                work_dir: "/w".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn process_args_env_cwd_and_terminal() {
        let mut s = base();
        s.env = vec!["FOO=bar".into(), "PATH=/custom".into()];
        s.tty = true;
        let oci = build(&s, ID, &ctx()).unwrap();
        let p = oci.process().as_ref().unwrap();
        assert_eq!(
            p.args().as_ref().unwrap(),
            &vec!["/bin/sh", "-c", "echo hi"]
        );
        let env = p.env().as_ref().unwrap();
        assert_eq!(
            env,
            &vec![
                "PATH=/custom",
                "HOSTNAME=0123456789ab",
                "TERM=xterm",
                "FOO=bar"
            ]
        );
        assert_eq!(p.cwd(), Path::new("/"));
        assert_eq!(p.terminal(), Some(true));
        assert_eq!(p.no_new_privileges(), Some(true));
        assert_eq!(oci.hostname().as_deref(), Some("0123456789ab"));

        let mut s = base();
        s.working_dir = "/app".into();
        s.hostname = "web".into();
        let oci = build(&s, ID, &ctx()).unwrap();
        let p = oci.process().as_ref().unwrap();
        assert_eq!(p.cwd(), Path::new("/app"));
        assert_eq!(
            p.env().as_ref().unwrap(),
            &vec![format!("PATH={DEFAULT_PATH}"), "HOSTNAME=web".to_string()]
        );
        assert_eq!(p.terminal(), Some(false));
        assert_eq!(oci.hostname().as_deref(), Some("web"));
    }

    #[test]
    fn only_the_built_in_runtime_is_accepted() {
        let mut s = base();
        s.runtime = "berth".into();
        assert!(build(&s, ID, &ctx()).is_ok());
        s.runtime = "runc".into();
        assert_eq!(
            build(&s, ID, &ctx()).unwrap_err().to_string(),
            "unknown or invalid runtime name: runc"
        );
    }

    #[test]
    fn empty_command_is_refused() {
        let mut s = base();
        s.entrypoint.clear();
        s.cmd.clear();
        assert!(matches!(
            build(&s, ID, &ctx()),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn annotations_root_and_cgroup() {
        let mut s = base();
        s.user = "nobody".into();
        s.open_stdin = true;
        s.read_only_rootfs = true;
        let oci = build(&s, ID, &ctx()).unwrap();
        let a = oci.annotations().as_ref().unwrap();
        assert_eq!(a[ANN_LOWERDIRS], "/l1:/l2");
        assert_eq!(a[ANN_UPPERDIR], "/u");
        assert_eq!(a[ANN_WORKDIR], "/w");
        assert_eq!(a[ANN_USER], "nobody");
        assert_eq!(a[ANN_STDIN], "true");
        assert!(!a.contains_key(ANN_INIT), "no init unless asked");
        s.init = true;
        let oci = build(&s, ID, &ctx()).unwrap();
        assert_eq!(oci.annotations().as_ref().unwrap()[ANN_INIT], "true");
        let root = oci.root().as_ref().unwrap();
        assert_eq!(root.path(), Path::new("rootfs"));
        assert_eq!(root.readonly(), Some(true));
        let linux = oci.linux().as_ref().unwrap();
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new(&format!("berth-t/{ID}")))
        );
        assert_eq!(
            linux.masked_paths().as_ref().unwrap().len(),
            MASKED_PATHS.len()
        );
        assert_eq!(
            linux.readonly_paths().as_ref().unwrap(),
            &READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn numeric_user_fills_process_user() {
        let mut s = base();
        s.user = "1000:50".into();
        let oci = build(&s, ID, &ctx()).unwrap();
        let u = oci.process().as_ref().unwrap().user();
        assert_eq!((u.uid(), u.gid()), (1000, 50));
    }

    #[test]
    fn namespaces_join_netns_or_use_host_network() {
        let mut s = base();
        let types = |oci: &Spec| -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
            oci.linux()
                .as_ref()
                .unwrap()
                .namespaces()
                .as_ref()
                .unwrap()
                .iter()
                .map(|n| (n.typ(), n.path().clone()))
                .collect()
        };
        let host = types(&build(&s, ID, &ctx()).unwrap());
        assert_eq!(host.len(), 5);
        assert!(host.iter().all(|(t, _)| *t != LinuxNamespaceType::Network));
        assert!(host.iter().any(|(t, _)| *t == LinuxNamespaceType::Uts));
        s.network = Some(NetworkSettings {
            netns_path: "/run/b/netns/x".into(),
            ..Default::default()
        });
        let joined = types(&build(&s, ID, &ctx()).unwrap());
        assert!(joined.contains(&(
            LinuxNamespaceType::Network,
            Some(PathBuf::from("/run/b/netns/x"))
        )));
    }

    #[test]
    fn mounts_defaults_user_and_etc_binds() {
        let mut s = base();
        s.mounts = vec![
            SpecMount {
                r#type: "bind".into(),
                source: "/host/data".into(),
                destination: "/data/".into(),
                read_only: true,
                ..Default::default()
            },
            SpecMount {
                r#type: "tmpfs".into(),
                destination: "/dev/shm".into(),
                options: vec!["size=1m".into()],
                ..Default::default()
            },
            SpecMount {
                r#type: "volume".into(),
                source: "/vol/x".into(),
                destination: "/data/sub".into(),
                ..Default::default()
            },
        ];
        let oci = build(&s, ID, &ctx()).unwrap();
        let mounts = oci.mounts().as_ref().unwrap();
        let dests: Vec<String> = mounts
            .iter()
            .map(|m| m.destination().display().to_string())
            .collect();
        assert_eq!(
            dests,
            vec![
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/mqueue",
                "/sys",
                "/etc/hostname",
                "/etc/hosts",
                "/etc/resolv.conf",
                "/data",
                "/dev/shm",
                "/data/sub"
            ]
        );
        let find = |d: &str| {
            mounts
                .iter()
                .find(|m| m.destination() == Path::new(d))
                .unwrap()
        };
        assert_eq!(
            find("/data").options().as_ref().unwrap(),
            &vec!["rbind", "ro"]
        );
        assert_eq!(find("/data").typ().as_deref(), Some("bind"));
        assert_eq!(
            find("/data/sub").options().as_ref().unwrap(),
            &vec!["rbind", "rw"]
        );
        assert_eq!(find("/dev/shm").typ().as_deref(), Some("tmpfs"));
        assert!(find("/dev/shm")
            .options()
            .as_ref()
            .unwrap()
            .contains(&"size=1m".to_string()));
        assert_eq!(
            find("/etc/hosts").source().as_deref(),
            Some(Path::new("/b/hosts"))
        );
        assert!(find("/dev/pts")
            .options()
            .as_ref()
            .unwrap()
            .contains(&"ptmxmode=0666".to_string()));
        assert!(find("/sys")
            .options()
            .as_ref()
            .unwrap()
            .contains(&"ro".to_string()));
        let v2 = build(
            &s,
            ID,
            &Context {
                cgroup_v2: true,
                ..ctx()
            },
        )
        .unwrap();
        let cg = v2
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == Path::new("/sys/fs/cgroup"))
            .unwrap();
        assert_eq!(cg.typ().as_deref(), Some("cgroup2"));
        assert!(cg.options().as_ref().unwrap().contains(&"ro".to_string()));

        let mut s = base();
        s.mounts = vec![SpecMount {
            r#type: "nfs".into(),
            destination: "/x".into(),
            ..Default::default()
        }];
        let err = build(&s, ID, &ctx()).unwrap_err().to_string();
        assert!(err.contains("\"nfs\""), "{err}");
    }

    #[test]
    fn capabilities_are_intersected_with_the_bounding_set() {
        let all = capabilities(u64::MAX).unwrap();
        assert_eq!(all.len(), DEFAULT_CAPS.len());
        assert!(all.contains(&Capability::NetBindService));
        let some = capabilities((1 << 0) | (1 << 5) | (1 << 21)).unwrap();
        assert_eq!(some, HashSet::from([Capability::Chown, Capability::Kill]));
        let oci = build(
            &base(),
            ID,
            &Context {
                cap_bounding: 1 << 5,
                ..ctx()
            },
        )
        .unwrap();
        let caps = oci
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        assert_eq!(
            caps.bounding().as_ref().unwrap(),
            &HashSet::from([Capability::Kill])
        );
        assert_eq!(caps.effective(), caps.permitted());
    }

    #[test]
    fn config_json_uses_oci_field_names() {
        let json = serde_json::to_value(build(&base(), ID, &ctx()).unwrap()).unwrap();
        assert_eq!(json["root"]["path"], "rootfs");
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(json["linux"]["cgroupsPath"], format!("berth-t/{ID}"));
        assert!(json["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .contains(&"CAP_CHOWN".into()));
    }

    #[test]
    fn hosts_file_lists_localhost_extra_hosts_and_addresses() {
        let mut s = base();
        s.network = Some(NetworkSettings {
            ip_addresses: vec!["172.18.0.2/16".into()],
            extra_hosts: vec![HostEntry {
                hostname: "db".into(),
                ip: "10.0.0.5".into(),
            }],
            ..Default::default()
        });
        let hosts = hosts_file(&s, "web");
        assert!(
            hosts.starts_with("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        );
        assert!(hosts.contains("10.0.0.5\tdb\n"));
        assert!(hosts.ends_with("172.18.0.2\tweb\n"));
        s.domainname = "example.org".into();
        assert!(hosts_file(&s, "web").ends_with("172.18.0.2\tweb.example.org web\n"));
    }

    #[test]
    fn resolv_conf_filters_localhost_and_falls_back_to_google() {
        let own_netns = NetworkSettings {
            netns_path: "/n".into(),
            ..Default::default()
        };
        let host = "# generated\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.1.1.1\nsearch corp.example\noptions edns0 trust-ad\n";
        assert_eq!(
            resolv_conf(host, &own_netns),
            "search corp.example\nnameserver 10.1.1.1\noptions edns0 trust-ad\n"
        );
        assert_eq!(
            resolv_conf("nameserver 127.0.0.53\n", &own_netns),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        // On the host's network, localhost resolvers are reachable and kept.
        assert_eq!(
            resolv_conf("nameserver 127.0.0.53\n", &NetworkSettings::default()),
            "nameserver 127.0.0.53\n"
        );
        let given = NetworkSettings {
            netns_path: "/n".into(),
            dns_servers: vec!["1.1.1.1".into()],
            dns_search: vec!["a.example".into(), "b.example".into()],
            dns_options: vec!["ndots:2".into()],
            ..Default::default()
        };
        assert_eq!(
            resolv_conf(host, &given),
            "search a.example b.example\nnameserver 1.1.1.1\noptions ndots:2\n"
        );
    }

    #[test]
    fn network_hosts_follow_extra_hosts() {
        let mut s = base();
        s.network = Some(NetworkSettings {
            extra_hosts: vec![HostEntry {
                hostname: "added".into(),
                ip: "10.0.0.9".into(),
            }],
            network_hosts: vec![HostEntry {
                hostname: "database db".into(),
                ip: "172.17.0.2".into(),
            }],
            ip_addresses: vec!["172.17.0.3/16".into()],
            ..Default::default()
        });
        let hosts = hosts_file(&s, "web");
        let added = hosts.find("10.0.0.9\tadded\n").unwrap();
        let linked = hosts.find("172.17.0.2\tdatabase db\n").unwrap();
        let own = hosts.find("172.17.0.3\tweb\n").unwrap();
        assert!(added < linked && linked < own, "{hosts}");
    }

    #[test]
    fn network_update_keeps_mode_and_namespace() {
        let old = NetworkSettings {
            mode: "bridge".into(),
            netns_path: "/run/netns/a".into(),
            ..Default::default()
        };
        let mut new = old.clone();
        new.dns_servers = vec!["1.1.1.1".into()];
        assert!(check_network_update(&old, &new).is_ok());
        new.mode = "host".into();
        assert!(matches!(
            check_network_update(&old, &new),
            Err(Error::InvalidArgument(_))
        ));
        new.mode = old.mode.clone();
        new.netns_path = "/run/netns/b".into();
        assert!(matches!(
            check_network_update(&old, &new),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn network_files_are_rewritten_through_the_same_inode() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let c = Context {
            bundle: dir.path().to_path_buf(),
            ..ctx()
        };
        let mut s = base();
        s.network = Some(NetworkSettings {
            netns_path: "/run/netns/x".into(),
            ..Default::default()
        });
        write_bundle(dir.path(), &s, ID, &c, "nameserver 10.0.0.1\n").unwrap();
        let ino = |f: &str| std::fs::metadata(dir.path().join(f)).unwrap().ino();
        let (hosts_ino, resolv_ino) = (ino("hosts"), ino("resolv.conf"));
        if let Some(net) = s.network.as_mut() {
            net.network_hosts = vec![HostEntry {
                hostname: "db".into(),
                ip: "10.1.0.2".into(),
            }];
            net.dns_servers = vec!["10.1.0.1".into()];
            net.dns_search = vec!["example.org".into()];
        }
        rewrite_network_files(dir.path(), &s, ID, "nameserver 10.0.0.1\n").unwrap();
        assert_eq!((ino("hosts"), ino("resolv.conf")), (hosts_ino, resolv_ino));
        let hosts = std::fs::read_to_string(dir.path().join("hosts")).unwrap();
        assert!(hosts.contains("10.1.0.2\tdb\n"), "{hosts}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("resolv.conf")).unwrap(),
            "search example.org\nnameserver 10.1.0.1\n"
        );
        // Shorter contents leave nothing of the old file behind.
        if let Some(net) = s.network.as_mut() {
            net.network_hosts.clear();
        }
        rewrite_network_files(dir.path(), &s, ID, "").unwrap();
        let hosts = std::fs::read_to_string(dir.path().join("hosts")).unwrap();
        assert!(!hosts.contains("10.1.0.2"), "{hosts}");
    }

    #[test]
    fn bundle_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let c = Context {
            bundle: dir.path().to_path_buf(),
            ..ctx()
        };
        write_bundle(dir.path(), &base(), ID, &c, "nameserver 10.0.0.1\n").unwrap();
        for f in ["config.json", "hostname", "hosts", "resolv.conf", "rootfs"] {
            assert!(dir.path().join(f).exists(), "{f}");
        }
        assert_eq!(
            std::fs::read_to_string(dir.path().join("hostname")).unwrap(),
            "0123456789ab\n"
        );
        let loaded = Spec::load(dir.path().join("config.json")).unwrap();
        assert_eq!(loaded.hostname().as_deref(), Some("0123456789ab"));
    }
}
