//! Where each service keeps its state and its socket, and the engine configuration file.
//!
//! Defaults work with no configuration: state under `/var/lib/berth/<service>/`, sockets
//! at `/run/berth/<service>.sock`, kernel objects named after the instance `berth`.
//! The file `/etc/berth/berth.toml` (`BERTH_CONFIG_FILE` names another) may set `root`,
//! `run`, `instance` and a `[registries]` section ([`FileConfig`]); a missing file means
//! defaults, a malformed one is an error naming the file, line and key.
//! Environment overrides win over the file: `BERTH_ROOT`, `BERTH_RUN`, `BERTH_INSTANCE`,
//! and `BERTH_<SERVICE>_SOCKET` (e.g. `BERTH_ENGINE_SOCKET`) for one socket;
//! `BERTH_INSECURE_REGISTRIES` (comma-separated) adds to the file's insecure registries.
//!
//! Services on several hosts: `[listen]` gives a service a TCP address served with mutual
//! TLS next to its Unix socket, `[remote]` the `tcp://host:port` endpoint of a service
//! that runs elsewhere, and `[tls]` the directory of the certificates (`BERTH_TLS_DIR`
//! overrides); see [`crate::tls`].
use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use serde::Deserialize;

/// The six services, each its own binary, socket and state directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Engine,
    ImageStore,
    Supervisor,
    Network,
    Volume,
    LogRouter,
}

impl Service {
    pub const ALL: [Service; 6] = [
        Service::Engine,
        Service::ImageStore,
        Service::Supervisor,
        Service::Network,
        Service::Volume,
        Service::LogRouter,
    ];

    /// Short name used for directories, sockets and binaries (`berth-<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Service::Engine => "engine",
            Service::ImageStore => "image-store",
            Service::Supervisor => "supervisor",
            Service::Network => "network",
            Service::Volume => "volume",
            Service::LogRouter => "log-router",
        }
    }

    /// The service named `name` ([`Service::name`]).
    pub fn from_name(name: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|s| s.name() == name)
    }

    fn env_prefix(self) -> String {
        format!("BERTH_{}", self.name().replace('-', "_").to_uppercase())
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Root of all durable state; each service uses `<root>/<service>/`.
    pub root: PathBuf,
    /// Sockets, shim sockets and network namespace files.
    pub run_dir: PathBuf,
    /// Prefix of every kernel object this engine makes (cgroups, links, nft tables).
    pub instance: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("/var/lib/berth"),
            run_dir: PathBuf::from("/run/berth"),
            instance: "berth".to_string(),
        }
    }
}

impl Config {
    /// The configuration file (if any) with the `BERTH_*` environment overrides applied.
    /// Daemons should call this: a malformed file stops them with an error naming it.
    pub fn load() -> Result<Config, ConfigError> {
        Ok(Config::from_file(&FileConfig::load()?))
    }

    /// Like [`Config::load`], for callers that cannot fail (the CLI finding a socket): a
    /// malformed file is reported on stderr and ignored (defaults plus environment).
    pub fn from_env() -> Config {
        match FileConfig::load() {
            Ok(file) => Config::from_file(&file),
            Err(e) => {
                eprintln!("berth: ignoring the configuration file: {e}");
                Config::from_file(&FileConfig::default())
            }
        }
    }

    /// The file's settings, then the environment overrides.
    pub fn from_file(file: &FileConfig) -> Config {
        let mut config = Config::default();
        if let Some(root) = &file.root {
            config.root = root.clone();
        }
        if let Some(run) = &file.run {
            config.run_dir = run.clone();
        }
        if let Some(instance) = file.instance.as_ref().filter(|i| !i.is_empty()) {
            config.instance = instance.clone();
        }
        if let Some(root) = env_path("BERTH_ROOT") {
            config.root = root;
        }
        if let Some(run) = env_path("BERTH_RUN") {
            config.run_dir = run;
        }
        if let Ok(instance) = std::env::var("BERTH_INSTANCE") {
            if !instance.is_empty() {
                config.instance = instance;
            }
        }
        config
    }

    pub fn state_dir(&self, service: Service) -> PathBuf {
        self.root.join(service.name())
    }

    pub fn socket(&self, service: Service) -> PathBuf {
        env_path(&format!("{}_SOCKET", service.env_prefix()))
            .unwrap_or_else(|| self.run_dir.join(format!("{}.sock", service.name())))
    }

    /// Plain Unix socket on which shims deliver container output to the log router.
    pub fn log_ingest_socket(&self) -> PathBuf {
        env_path("BERTH_LOG_INGEST_SOCKET")
            .unwrap_or_else(|| self.run_dir.join("log-router.ingest.sock"))
    }

    /// Directory of the shims' attach sockets.
    pub fn shim_dir(&self) -> PathBuf {
        self.run_dir.join("shim")
    }

    /// Directory where the network service bind-mounts container network namespaces.
    pub fn netns_dir(&self) -> PathBuf {
        self.run_dir.join("netns")
    }

    /// Parent cgroup of every container of this instance.
    pub fn cgroup_parent(&self) -> &str {
        &self.instance
    }

    /// Prefix of every network interface this instance makes (bridges, veths, macvlans).
    /// Interface names have at most 15 bytes, so a long instance name is replaced by `b`
    /// and six hex digits of its hash; a short one (≤ 6 bytes, e.g. `berth`) is used as is.
    pub fn link_prefix(&self) -> String {
        link_prefix(&self.instance)
    }

    /// Name of the nftables table (family `ip`) that holds every rule of this instance.
    pub fn nft_table(&self) -> String {
        self.instance
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_")
    }
}

/// See [`Config::link_prefix`].
pub fn link_prefix(instance: &str) -> String {
    let short = instance.len() <= 6 && instance.bytes().all(|b| b.is_ascii_alphanumeric());
    if short && !instance.is_empty() {
        return instance.to_string();
    }
    // FNV-1a: stable across releases, unlike std's hasher.
    let mut hash: u32 = 0x811c_9dc5;
    for b in instance.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    format!("b{:06x}", hash & 0x00ff_ffff)
}

#[cfg(test)]
mod link_prefix_tests {
    #[test]
    fn short_names_stay_and_long_ones_hash_to_seven_bytes() {
        assert_eq!(super::link_prefix("berth"), "berth");
        let long = super::link_prefix("berth-t1234-5");
        assert_eq!(long.len(), 7);
        assert!(long.starts_with('b'));
        assert_eq!(long, super::link_prefix("berth-t1234-5"));
        assert_ne!(long, super::link_prefix("berth-t1234-6"));
    }
}

/// Default path of the engine configuration file.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/berth.toml";

/// The registry the `mirrors` list applies to, like Docker's `registry-mirrors`.
pub const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid configuration file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The engine configuration file (`/etc/berth/berth.toml`). Unknown keys are errors, so a
/// typo is reported rather than silently ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// State root (`BERTH_ROOT` overrides).
    pub root: Option<PathBuf>,
    /// Sockets and runtime files (`BERTH_RUN` overrides).
    pub run: Option<PathBuf>,
    /// Instance name (`BERTH_INSTANCE` overrides).
    pub instance: Option<String>,
    #[serde(default)]
    pub registries: RegistriesConfig,
    #[serde(default)]
    pub logs: LogsConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    /// `[listen]`: service name → TCP address (`0.0.0.0:7070`) served with mutual TLS
    /// next to the Unix socket. Absent: the Unix socket only.
    #[serde(default)]
    pub listen: BTreeMap<String, SocketAddr>,
    /// `[remote]`: service name → `tcp://host:port` of a service on another host, reached
    /// with mutual TLS. Absent: the local Unix socket.
    #[serde(default)]
    pub remote: BTreeMap<String, String>,
    /// `[cluster]`: the etcd store for overlay networks; see [`crate::cluster`].
    #[serde(default)]
    pub cluster: crate::cluster::ClusterFile,
    /// `[metrics]`: service name → TCP address (`127.0.0.1:9323`) of a plain HTTP
    /// listener serving Prometheus text at `GET /metrics`; see [`crate::metrics`].
    #[serde(default)]
    pub metrics: BTreeMap<String, SocketAddr>,
}

/// Default directory of the TLS material (`[tls] dir`, `BERTH_TLS_DIR`).
pub const DEFAULT_TLS_DIR: &str = "/etc/berth/tls";

/// `[tls]`: where the CA and the certificates are. The directory holds `ca.pem`, one
/// `<service>.pem`/`<service>-key.pem` per service that listens on TCP, and
/// `client.pem`/`client-key.pem`, the identity of clients (the CLI, services calling
/// remote services). `deploy/certs.sh` makes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Default [`DEFAULT_TLS_DIR`]; `BERTH_TLS_DIR` overrides.
    pub dir: Option<PathBuf>,
}

impl FileConfig {
    /// The TLS directory: `BERTH_TLS_DIR`, else `[tls] dir`, else [`DEFAULT_TLS_DIR`].
    pub fn tls_dir(&self) -> PathBuf {
        env_path("BERTH_TLS_DIR")
            .or_else(|| self.tls.dir.clone())
            .unwrap_or_else(|| DEFAULT_TLS_DIR.into())
    }

    /// The TCP address `service` listens on besides its Unix socket, if any.
    pub fn listen_addr(&self, service: Service) -> Option<SocketAddr> {
        self.listen.get(service.name()).copied()
    }

    /// The address of `service`'s Prometheus `/metrics` listener, if any.
    pub fn metrics_addr(&self, service: Service) -> Option<SocketAddr> {
        self.metrics.get(service.name()).copied()
    }

    /// The `tcp://host:port` endpoint of `service` when it runs on another host.
    pub fn remote(&self, service: Service) -> Option<&str> {
        self.remote.get(service.name()).map(String::as_str)
    }
}

/// `[logs]`: the log driver and options of containers that name none (Docker's
/// `log-driver` and `log-opts` in daemon.json). The log router checks them at create.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// Empty: json-file.
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl LogsConfig {
    /// A container's effective log configuration, as Docker merges it: no driver means
    /// the default driver; the default options fill the keys a container leaves unset
    /// when it uses the default driver.
    pub fn effective(
        &self,
        driver: &str,
        options: &std::collections::HashMap<String, String>,
    ) -> (String, std::collections::HashMap<String, String>) {
        let default_driver = if self.driver.is_empty() {
            "json-file"
        } else {
            self.driver.as_str()
        };
        let driver = if driver.is_empty() {
            default_driver
        } else {
            driver
        };
        let mut out = options.clone();
        if driver == default_driver {
            for (k, v) in &self.options {
                out.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        (driver.to_string(), out)
    }
}

/// `[registries]`: which registries may be reached over plain HTTP, and pull mirrors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    /// `host`, `host:port` or a CIDR (`10.0.0.0/8`), like Docker's `insecure-registries`.
    /// Loopback registries are always allowed over HTTP.
    #[serde(default)]
    pub insecure: Vec<String>,
    /// Pull mirrors of Docker Hub (`http://host:port`), tried in order before it.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Pull mirrors of other registries: `"host:port" = ["https://mirror"]`.
    #[serde(default)]
    pub mirror: BTreeMap<String, Vec<String>>,
}

impl FileConfig {
    /// Reads `BERTH_CONFIG_FILE` or [`DEFAULT_CONFIG_FILE`]; a missing file is the
    /// defaults. `BERTH_INSECURE_REGISTRIES` is added to `registries.insecure`.
    pub fn load() -> Result<FileConfig, ConfigError> {
        let path = env_path("BERTH_CONFIG_FILE").unwrap_or_else(|| DEFAULT_CONFIG_FILE.into());
        let mut file = match std::fs::read_to_string(&path) {
            Ok(text) => FileConfig::parse(&text, &path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileConfig::default(),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        let env = std::env::var("BERTH_INSECURE_REGISTRIES").unwrap_or_default();
        for entry in env.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            validate_insecure(entry).map_err(|m| ConfigError::Invalid {
                path: "BERTH_INSECURE_REGISTRIES".into(),
                message: m,
            })?;
            if !file.registries.insecure.iter().any(|i| i == entry) {
                file.registries.insecure.push(entry.to_string());
            }
        }
        Ok(file)
    }

    /// Parses and checks the file's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let at = |span: Option<std::ops::Range<usize>>| {
            span.map(|s| {
                let before = &text[..s.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {col}: ")
            })
            .unwrap_or_default()
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            // Type errors ("expected a sequence") do not name the key: add it.
            let key = e
                .span()
                .and_then(|s| key_at(text, s.start))
                .filter(|k| {
                    let last = k.rsplit('.').next().unwrap_or(k);
                    !e.message().contains(&format!("`{last}`"))
                })
                .map(|k| format!(" (key {k})"))
                .unwrap_or_default();
            invalid(format!("{}{}{key}", at(e.span()), e.message().trim_end()))
        })?;
        let r = raw.registries.unwrap_or_default();
        for entry in &r.insecure {
            validate_insecure(entry.get_ref()).map_err(|m| {
                invalid(format!(
                    "{}registries.insecure: {m}",
                    at(Some(entry.span()))
                ))
            })?;
        }
        for entry in &r.mirrors {
            validate_mirror(entry.get_ref()).map_err(|m| {
                invalid(format!("{}registries.mirrors: {m}", at(Some(entry.span()))))
            })?;
        }
        for (registry, list) in &r.mirror {
            for entry in list {
                validate_mirror(entry.get_ref()).map_err(|m| {
                    invalid(format!(
                        "{}registries.mirror.\"{registry}\": {m}",
                        at(Some(entry.span()))
                    ))
                })?;
            }
        }
        let service_addrs =
            |section: &str, raw: Option<BTreeMap<String, toml::Spanned<String>>>, example: &str| {
                let mut out = BTreeMap::new();
                for (service, addr) in raw.unwrap_or_default() {
                    let where_ = at(Some(addr.span()));
                    if Service::from_name(&service).is_none() {
                        return Err(invalid(format!(
                            "{where_}{section}.{service}: {}",
                            unknown_service(&service)
                        )));
                    }
                    let parsed: SocketAddr = addr.get_ref().parse().map_err(|_| {
                        invalid(format!(
                            "{where_}{section}.{service}: {:?} is not an address ip:port \
                         (e.g. \"{example}\")",
                            addr.get_ref()
                        ))
                    })?;
                    out.insert(service, parsed);
                }
                Ok(out)
            };
        let listen = service_addrs("listen", raw.listen, "0.0.0.0:7070")?;
        let metrics = service_addrs("metrics", raw.metrics, "127.0.0.1:9323")?;
        let mut remote = BTreeMap::new();
        for (service, url) in raw.remote.unwrap_or_default() {
            let where_ = at(Some(url.span()));
            if Service::from_name(&service).is_none() {
                return Err(invalid(format!(
                    "{where_}remote.{service}: {}",
                    unknown_service(&service)
                )));
            }
            parse_tcp_url(url.get_ref())
                .map_err(|m| invalid(format!("{where_}remote.{service}: {m}")))?;
            remote.insert(service, url.into_inner());
        }
        let plain = |v: Vec<toml::Spanned<String>>| v.into_iter().map(|s| s.into_inner()).collect();
        Ok(FileConfig {
            root: raw.root,
            run: raw.run,
            instance: raw.instance,
            registries: RegistriesConfig {
                insecure: plain(r.insecure),
                mirrors: plain(r.mirrors),
                mirror: r.mirror.into_iter().map(|(k, v)| (k, plain(v))).collect(),
            },
            logs: raw.logs.unwrap_or_default(),
            tls: raw.tls.unwrap_or_default(),
            listen,
            remote,
            cluster: raw.cluster.unwrap_or_default(),
            metrics,
        })
    }
}

impl RegistriesConfig {
    /// Whether `domain` (`host[:port]` as a reference names it) may be reached over plain
    /// HTTP: listed as is or without its port, or an IP address inside a listed CIDR.
    /// Hostnames are not resolved to match CIDRs (Docker resolves them).
    pub fn is_insecure(&self, domain: &str) -> bool {
        let host = host_of(domain);
        let ip = host.parse::<IpAddr>().ok();
        self.insecure.iter().any(|entry| {
            if entry == domain || entry == host {
                return true;
            }
            match (ip, parse_cidr(entry)) {
                (Some(ip), Some((net, bits))) => in_cidr(ip, net, bits),
                _ => false,
            }
        })
    }

    /// The pull mirrors of `registry` (`docker.io` or `host[:port]`), in order.
    pub fn mirrors_of(&self, registry: &str) -> Vec<String> {
        let mut out = Vec::new();
        if registry == DOCKER_HUB {
            out.extend(self.mirrors.iter().cloned());
        }
        if let Some(list) = self.mirror.get(registry) {
            out.extend(
                list.iter()
                    .filter(|m| !out.contains(m))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
        }
        out
    }
}

/// What the file holds, with positions for checking values.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    root: Option<PathBuf>,
    run: Option<PathBuf>,
    instance: Option<String>,
    registries: Option<RawRegistries>,
    logs: Option<LogsConfig>,
    tls: Option<TlsConfig>,
    listen: Option<BTreeMap<String, toml::Spanned<String>>>,
    remote: Option<BTreeMap<String, toml::Spanned<String>>>,
    cluster: Option<crate::cluster::ClusterFile>,
    metrics: Option<BTreeMap<String, toml::Spanned<String>>>,
}

fn unknown_service(name: &str) -> String {
    let names: Vec<_> = Service::ALL.iter().map(|s| s.name()).collect();
    format!("no service named {name:?} (one of {})", names.join(", "))
}

/// Splits `tcp://host:port` (`tcp://[::1]:7070` for IPv6) into the host, without
/// brackets, and the port.
pub fn parse_tcp_url(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("tcp://")
        .ok_or_else(|| format!("{url:?} must be tcp://host:port"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, port) = v6
            .split_once("]:")
            .ok_or_else(|| format!("{url:?} must be tcp://[ipv6]:port"))?;
        (host, port)
    } else {
        rest.rsplit_once(':')
            .ok_or_else(|| format!("{url:?} has no port (tcp://host:port)"))?
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{url:?} has an invalid port {port:?}"))?;
    if host.is_empty()
        || host.contains(|c: char| c.is_whitespace() || c == '/' || c == '@')
        || (host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err())
    {
        return Err(format!("{url:?} has an invalid host {host:?}"));
    }
    Ok((host.to_string(), port))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistries {
    #[serde(default)]
    insecure: Vec<toml::Spanned<String>>,
    #[serde(default)]
    mirrors: Vec<toml::Spanned<String>>,
    #[serde(default)]
    mirror: BTreeMap<String, Vec<toml::Spanned<String>>>,
}

/// The dotted key whose `key = value` line holds `offset` (`registries.insecure`), by the
/// last `[table]` header above it; for error messages only.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    if key.is_empty() || key.starts_with('[') {
        return None;
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

fn validate_insecure(entry: &str) -> Result<(), String> {
    if entry.contains("://") {
        return Err(format!(
            "{entry:?} must not contain \"://\" (write host[:port] or a CIDR)"
        ));
    }
    if entry.contains('/') && parse_cidr(entry).is_none() {
        return Err(format!("{entry:?} is not a valid CIDR"));
    }
    if entry.is_empty() || entry.contains(char::is_whitespace) {
        return Err(format!("{entry:?} is not a host[:port] or a CIDR"));
    }
    Ok(())
}

/// A mirror is `http://` or `https://` then `host[:port]`, with no path.
fn validate_mirror(entry: &str) -> Result<(), String> {
    let rest = entry
        .strip_prefix("http://")
        .or_else(|| entry.strip_prefix("https://"))
        .ok_or_else(|| format!("{entry:?} must start with http:// or https://"))?;
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
        return Err(format!(
            "{entry:?} must be scheme://host[:port], without a path"
        ));
    }
    Ok(())
}

/// The host without a port (`[::1]:5000` → `::1`, `reg:5000` → `reg`).
fn host_of(domain: &str) -> &str {
    if let Some(rest) = domain.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match domain.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => domain,
    }
}

fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, bits) = s.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((addr, bits))
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (ip, net, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u128::from(u32::from(a)), u128::from(u32::from(n)), 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n), 128),
        _ => return false,
    };
    if bits == 0 {
        return true;
    }
    let shift = width - u32::from(bits);
    (ip >> shift) == (net >> shift)
}

#[cfg(test)]
mod file_tests {
    use super::*;

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        FileConfig::parse(text, Path::new("/etc/berth/berth.toml"))
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), FileConfig::default());
        let c = Config::from_file(&FileConfig::default());
        assert_eq!(c.instance, "berth");
    }

    #[test]
    fn logs_section_sets_default_driver_and_options() {
        let f = parse(
            "[logs]\ndriver = \"local\"\noptions = { max-size = \"5m\", compress = \"false\" }\n",
        )
        .unwrap();
        let none = std::collections::HashMap::new();
        let (driver, opts) = f.logs.effective("", &none);
        assert_eq!(driver, "local");
        assert_eq!(opts["max-size"], "5m");
        // The container's own value wins over the default for the same key.
        let own = std::collections::HashMap::from([("max-size".to_string(), "1m".to_string())]);
        assert_eq!(f.logs.effective("local", &own).1["max-size"], "1m");
        assert_eq!(f.logs.effective("local", &own).1["compress"], "false");
        // Another driver gets none of the default driver's options (Docker's rule).
        let (driver, opts) = f.logs.effective("syslog", &none);
        assert_eq!(driver, "syslog");
        assert!(opts.is_empty());
        // No [logs]: json-file with no options.
        let d = LogsConfig::default().effective("", &none);
        assert_eq!(d, ("json-file".to_string(), none.clone()));
        let err = parse("[logs]\ndriverr = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("driverr"), "{err}");
    }

    #[test]
    fn reads_paths_and_registries() {
        let f = parse(
            r#"
root = "/srv/berth"
instance = "b2"

[registries]
insecure = ["reg.lan:5000", "10.0.0.0/8", "fd00::/8"]
mirrors = ["http://127.0.0.1:5001", "https://mirror.example.com/"]

[registries.mirror]
"quay.io" = ["http://127.0.0.1:5002"]
"#,
        )
        .unwrap();
        assert_eq!(f.root.as_deref(), Some(Path::new("/srv/berth")));
        assert_eq!(f.instance.as_deref(), Some("b2"));
        let r = &f.registries;
        assert!(r.is_insecure("reg.lan:5000"));
        assert!(!r.is_insecure("reg.lan:5001"));
        assert!(r.is_insecure("10.1.2.3:5000"));
        assert!(r.is_insecure("10.1.2.3"));
        assert!(!r.is_insecure("11.1.2.3:5000"));
        assert!(r.is_insecure("[fd12::1]:5000"));
        assert!(!r.is_insecure("example.com"));
        assert_eq!(
            r.mirrors_of("docker.io"),
            vec!["http://127.0.0.1:5001", "https://mirror.example.com/"]
        );
        assert_eq!(r.mirrors_of("quay.io"), vec!["http://127.0.0.1:5002"]);
        assert!(r.mirrors_of("ghcr.io").is_empty());
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let err = parse("[registries]\ninsecure = []\ninsecur = [\"x\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("/etc/berth/berth.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("insecur"), "{err}");
        assert!(!err.contains("(key"), "the message names it already: {err}");

        let err = parse("[registries]\nmirrors = [\n  \"127.0.0.1:5001\",\n]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("registries.mirrors"), "{err}");
        assert!(err.contains("http://"), "{err}");

        let err = parse("[registries]\ninsecure = [\"http://reg:5000\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("registries.insecure"),
            "{err}"
        );

        let err = parse("[registries]\ninsecure = [\"10.0.0.0/33\"]\n").unwrap_err();
        assert!(err.to_string().contains("CIDR"), "{err}");
        let err = parse("root = 1\n").unwrap_err().to_string();
        assert!(
            err.contains("line 1") && err.contains("(key root)"),
            "{err}"
        );
        let err = parse("[registries]\ninsecure = \"10.0.0.0/8\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("(key registries.insecure)"),
            "{err}"
        );
        let err = parse("[registry]\n").unwrap_err().to_string();
        assert!(err.contains("registry"), "{err}");
    }

    #[test]
    fn metrics_section() {
        let f =
            parse("[metrics]\nengine = \"127.0.0.1:9323\"\nlog-router = \"[::1]:9324\"\n").unwrap();
        assert_eq!(
            f.metrics_addr(Service::Engine),
            Some("127.0.0.1:9323".parse().unwrap())
        );
        assert_eq!(
            f.metrics_addr(Service::LogRouter),
            Some("[::1]:9324".parse().unwrap())
        );
        assert_eq!(f.metrics_addr(Service::Volume), None);
        let err = parse("[metrics]\nengine = \"9323\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("metrics.engine"),
            "{err}"
        );
        let err = parse("[metrics]\nengin = \"127.0.0.1:9323\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("metrics.engin") && err.contains("log-router"),
            "{err}"
        );
    }

    #[test]
    fn tls_listen_and_remote_sections() {
        let f = parse(
            r#"
[tls]
dir = "/srv/tls"

[listen]
engine = "0.0.0.0:7070"
image-store = "[::]:7071"

[remote]
image-store = "tcp://hosta:7071"
volume = "tcp://[fd00::1]:7074"
"#,
        )
        .unwrap();
        assert_eq!(f.tls.dir.as_deref(), Some(Path::new("/srv/tls")));
        assert_eq!(
            f.listen_addr(Service::Engine),
            Some("0.0.0.0:7070".parse().unwrap())
        );
        assert_eq!(
            f.listen_addr(Service::ImageStore),
            Some("[::]:7071".parse().unwrap())
        );
        assert_eq!(f.listen_addr(Service::Volume), None);
        assert_eq!(f.remote(Service::ImageStore), Some("tcp://hosta:7071"));
        assert_eq!(f.remote(Service::Engine), None);
        assert_eq!(
            parse_tcp_url(f.remote(Service::Volume).unwrap()).unwrap(),
            ("fd00::1".to_string(), 7074)
        );

        let err = parse("[listen]\nengine = \"7070\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("listen.engine"),
            "{err}"
        );
        let err = parse("[listen]\nengin = \"0.0.0.0:7070\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 2") && err.contains("listen.engin") && err.contains("image-store"),
            "{err}"
        );
        let err = parse("\n[remote]\nnetwork = \"http://h:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 3") && err.contains("remote.network") && err.contains("tcp://"),
            "{err}"
        );
        let err = parse("[tls]\ndirr = \"/x\"\n").unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("dirr"), "{err}");
        assert!(parse_tcp_url("tcp://h").is_err());
        assert!(parse_tcp_url("tcp://:7070").is_err());
        assert!(parse_tcp_url("tcp://h:0").is_err());
        assert!(parse_tcp_url("tcp://a:b:7070").is_err());
        assert_eq!(
            parse_tcp_url("tcp://127.0.0.1:7070").unwrap(),
            ("127.0.0.1".to_string(), 7070)
        );
    }

    #[test]
    fn cidrs() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_cidr(ip("192.168.1.7"), ip("192.168.0.0"), 16));
        assert!(!in_cidr(ip("192.169.1.7"), ip("192.168.0.0"), 16));
        assert!(in_cidr(ip("8.8.8.8"), ip("0.0.0.0"), 0));
        assert!(in_cidr(ip("10.0.0.1"), ip("10.0.0.1"), 32));
        assert!(!in_cidr(ip("10.0.0.1"), ip("::"), 0));
        assert_eq!(parse_cidr("10.0.0.0/8"), Some((ip("10.0.0.0"), 8)));
        assert_eq!(parse_cidr("10.0.0.0"), None);
    }
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Creates `dir` (and parents) with mode 0700 if missing.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}
