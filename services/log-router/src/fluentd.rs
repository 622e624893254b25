//! The `fluentd` driver: a container's lines as Fluentd Forward Protocol v1 events.
//!
//! Each event is the record Docker's fluentd driver sends (`container_id`,
//! `container_name` with its leading '/', `source`, `log` without the newline, plus the
//! `labels`/`env` attributes) under the `tag` option. Delivery runs on a
//! [`RemoteLogger`]: every batch goes out as one PackedForward message
//! `[tag, bin(entries), {"size": n}]` over TCP or a Unix socket; with
//! `fluentd-request-ack=true` the option map also carries a unique `"chunk"` id and the
//! batch only counts as sent once the server answered `{"ack": id}`. Time is integer
//! seconds, or an EventTime (ext type 0) with `fluentd-sub-second-precision=true`.
//!
//! `fluentd-async=false` (the default) means, as in Docker, that a container does not
//! start when the server cannot be dialled: see [`check_reachable`]. Delivery itself is
//! always asynchronous (the remote queue); `fluentd-buffer-limit` bounds it.
use std::{
    collections::BTreeMap,
    future::Future,
    io,
    os::fd::AsRawFd,
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UnixStream},
};

use crate::{
    error::{Error, Result},
    logger::{LogConfig, Message, STDERR},
    optvalue,
    remote::{BatchLimits, Mode, RemoteLogger, Retry, Sink},
    tag,
};

pub const NAME: &str = "fluentd";

const KNOWN_OPTIONS: &[&str] = &[
    "fluentd-address",
    "fluentd-async",
    "fluentd-async-connect",
    "fluentd-buffer-limit",
    "fluentd-retry-wait",
    "fluentd-max-retries",
    "fluentd-sub-second-precision",
    "fluentd-request-ack",
    "fluentd-write-timeout",
    "tag",
    "labels",
    "labels-regex",
    "env",
    "env-regex",
];

pub const DEFAULT_HOST: &str = "127.0.0.1";
pub const DEFAULT_PORT: u16 = 24224;
/// Docker's default `fluentd-buffer-limit` (events).
pub const DEFAULT_BUFFER_LIMIT: usize = 1 << 20;
const DEFAULT_RETRY_WAIT: Duration = Duration::from_secs(1);
/// The longest wait between retries (fluent-logger-golang's cap).
const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);
/// `fluentd-buffer-limit` counts events while the remote queue counts bytes: one event is
/// taken to be this long on average.
const EVENT_BYTES_ESTIMATE: usize = 128;
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long [`check_reachable`] tries to connect.
const REACHABLE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an ack may take when `fluentd-write-timeout` is not set.
const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the Fluentd server listens (`fluentd-address`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Address::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Address::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

impl Address {
    /// Go's words for a dial, as in Docker's errors: "dial tcp 127.0.0.1:24224".
    fn dial_context(&self) -> String {
        match self {
            Address::Tcp { host, port } if host.contains(':') => {
                format!("dial tcp [{host}]:{port}")
            }
            Address::Tcp { host, port } => format!("dial tcp {host}:{port}"),
            Address::Unix(p) => format!("dial unix {}", p.display()),
        }
    }
}

/// The driver's options, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub address: Address,
    /// `fluentd-async` (or the deprecated `fluentd-async-connect`): start the container
    /// even when the server cannot be reached.
    pub async_connect: bool,
    /// `fluentd-buffer-limit`: events queued in memory.
    pub buffer_limit: usize,
    pub retry_wait: Duration,
    /// `None`: retry forever (Docker's default 4294967295 and above).
    pub max_retries: Option<u32>,
    pub sub_second_precision: bool,
    pub request_ack: bool,
    /// `None`: writes may take as long as the server needs (Docker's default).
    pub write_timeout: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            address: Address::Tcp {
                host: DEFAULT_HOST.to_string(),
                port: DEFAULT_PORT,
            },
            async_connect: false,
            buffer_limit: DEFAULT_BUFFER_LIMIT,
            retry_wait: DEFAULT_RETRY_WAIT,
            max_retries: None,
            sub_second_precision: false,
            request_ack: false,
            write_timeout: None,
        }
    }
}

impl Options {
    /// Parses the driver's own options, refusing unknown keys and bad values by name.
    pub fn parse(opts: &BTreeMap<String, String>) -> Result<Options> {
        if let Some(key) = opts.keys().find(|k| !KNOWN_OPTIONS.contains(&k.as_str())) {
            return Err(Error::UnknownOption {
                key: key.clone(),
                driver: NAME.to_string(),
            });
        }
        let get = |key: &str| opts.get(key).map(String::as_str).filter(|v| !v.is_empty());
        let mut o = Options::default();
        if let Some(a) = get("fluentd-address") {
            o.address = parse_address(a)?;
        }
        match (get("fluentd-async"), get("fluentd-async-connect")) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidArgument(
                    "conflicting log opts: cannot specify both 'fluentd-async' and \
                     'fluentd-async-connect'"
                        .to_string(),
                ))
            }
            (Some(v), None) => o.async_connect = parse_bool("fluentd-async", v)?,
            (None, Some(v)) => o.async_connect = parse_bool("fluentd-async-connect", v)?,
            (None, None) => {}
        }
        if let Some(v) = get("fluentd-buffer-limit") {
            // `units.RAMInBytes`, as Docker reads it; 0 is accepted too.
            let n = match v.trim() {
                "0" => 0,
                _ => optvalue::parse_size(v).ok_or_else(|| bad("fluentd-buffer-limit", v))?,
            };
            // 0 leaves the default, as in fluent-logger-golang.
            if n > 0 {
                o.buffer_limit = usize::try_from(n).unwrap_or(usize::MAX);
            }
        }
        if let Some(v) = get("fluentd-retry-wait") {
            o.retry_wait = parse_go_duration(v).ok_or_else(|| bad("fluentd-retry-wait", v))?;
        }
        if let Some(v) = get("fluentd-max-retries") {
            let n: u64 = v.parse().map_err(|_| bad("fluentd-max-retries", v))?;
            o.max_retries = u32::try_from(n).ok().filter(|n| *n != u32::MAX);
        }
        if let Some(v) = get("fluentd-sub-second-precision") {
            o.sub_second_precision = parse_bool("fluentd-sub-second-precision", v)?;
        }
        if let Some(v) = get("fluentd-request-ack") {
            o.request_ack = parse_bool("fluentd-request-ack", v)?;
        }
        if let Some(v) = get("fluentd-write-timeout") {
            let d = parse_go_duration(v).ok_or_else(|| bad("fluentd-write-timeout", v))?;
            // 0 means no timeout, as in Docker.
            o.write_timeout = (!d.is_zero()).then_some(d);
        }
        Ok(o)
    }

    /// The delivery task's retry policy: `fluentd-retry-wait` doubling up to a minute.
    pub fn retry(&self) -> Retry {
        // A zero wait would spin against a dead server.
        let initial = self.retry_wait.max(Duration::from_millis(1));
        Retry {
            initial,
            max_wait: MAX_RETRY_WAIT.max(initial),
            max_retries: self.max_retries,
        }
    }

    /// The remote queue's bound for blocking mode, from `fluentd-buffer-limit` (events).
    pub fn queue_limit_bytes(&self) -> usize {
        self.buffer_limit.saturating_mul(EVENT_BYTES_ESTIMATE)
    }
}

fn bad(key: &str, value: &str) -> Error {
    Error::InvalidArgument(format!("invalid value for log opt '{key}': {value:?}"))
}

/// Go's `strconv.ParseBool`, which Docker uses for boolean options.
fn parse_bool(key: &str, v: &str) -> Result<bool> {
    optvalue::parse_bool(v).ok_or_else(|| bad(key, v))
}

/// Go's `time.ParseDuration` for non-negative values: `1s`, `500ms`, `1m30s`, `1.5s`,
/// `250us`, and a bare `0`.
pub fn parse_go_duration(v: &str) -> Option<Duration> {
    if v == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = v.strip_prefix('+').unwrap_or(v);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_end];
        if num.is_empty() || num == "." {
            return None;
        }
        let value: f64 = num.parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per = match &rest[..unit_end] {
            "ns" => 1e0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += value * nanos_per;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return None;
    }
    Some(Duration::from_nanos(total.round() as u64))
}

/// Parses `fluentd-address` as Docker does: `host`, `host:port`, `tcp://host:port`
/// (missing parts take 127.0.0.1 and 24224) or `unix:///path`.
pub fn parse_address(a: &str) -> Result<Address> {
    let fail = |why: &str| {
        Error::InvalidArgument(format!(
            "invalid value for log opt 'fluentd-address': {a:?}: {why}"
        ))
    };
    let (scheme, rest) = a.split_once("://").unwrap_or(("tcp", a));
    match scheme {
        "unix" => {
            if rest.trim_start_matches('/').is_empty() {
                return Err(fail("path is empty"));
            }
            if !rest.starts_with('/') {
                return Err(fail("expected an absolute socket path"));
            }
            Ok(Address::Unix(PathBuf::from(rest)))
        }
        "tcp" => {
            if rest.contains('/') {
                return Err(fail("should not contain a path element"));
            }
            let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
                let (host, after) = v6
                    .split_once(']')
                    .ok_or_else(|| fail("missing ']' in host"))?;
                match after {
                    "" => (host, None),
                    _ => (
                        host,
                        Some(
                            after
                                .strip_prefix(':')
                                .ok_or_else(|| fail("invalid port"))?,
                        ),
                    ),
                }
            } else {
                match rest.split_once(':') {
                    Some((_, p)) if p.contains(':') => {
                        return Err(fail("IPv6 hosts must be in brackets"))
                    }
                    Some((h, p)) => (h, Some(p)),
                    None => (rest, None),
                }
            };
            let port = match port {
                None | Some("") => DEFAULT_PORT,
                Some(p) => p.parse::<u16>().map_err(|_| fail("invalid port"))?,
            };
            let host = if host.is_empty() { DEFAULT_HOST } else { host };
            Ok(Address::Tcp {
                host: host.to_string(),
                port,
            })
        }
        "tls" => Err(fail("TLS is not supported by berth's fluentd driver yet")),
        other => Err(fail(&format!("unsupported scheme: '{other}'"))),
    }
}

/// Validates the driver's own options (`mode`, `max-buffer-size` and `cache-*` already
/// removed), refusing unknown keys and bad values by name. No side effects.
pub fn validate(config: &LogConfig) -> Result<()> {
    Options::parse(&config.options)?;
    // A bad tag template or attribute regex is refused at create time, as Docker does.
    tag::expand(config, "", "{{.ID}}")?;
    extras(config)?;
    Ok(())
}

/// Docker's start-time dial: unless `fluentd-async` (or `fluentd-async-connect`) is
/// true, fails when the server cannot be connected to within two seconds. Reads only the
/// address and async options, so it may be given the whole log config (after
/// [`crate::logger::validate`]); meant for a log being created, not one being reopened.
pub fn check_reachable(config: &LogConfig) -> Result<()> {
    let get = |key: &str| {
        config
            .options
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let async_opt = get("fluentd-async")
        .map(|v| parse_bool("fluentd-async", v))
        .or_else(|| get("fluentd-async-connect").map(|v| parse_bool("fluentd-async-connect", v)))
        .transpose()?
        .unwrap_or(false);
    if async_opt {
        return Ok(());
    }
    let address = match get("fluentd-address") {
        Some(a) => parse_address(a)?,
        None => Options::default().address,
    };
    dial_blocking(&address, REACHABLE_TIMEOUT).map_err(|e| {
        Error::InvalidArgument(format!(
            "failed to initialize logging driver: {}: {}",
            address.dial_context(),
            describe(&e)
        ))
    })
}

fn dial_blocking(address: &Address, timeout: Duration) -> io::Result<()> {
    match address {
        Address::Tcp { host, port } => {
            let mut last = None;
            for target in std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), *port))? {
                match std::net::TcpStream::connect_timeout(&target, timeout) {
                    Ok(_) => return Ok(()),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host")))
        }
        Address::Unix(path) => std::os::unix::net::UnixStream::connect(path).map(|_| ()),
    }
}

/// Go-like wording for the common dial errors ("connect: connection refused").
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        io::ErrorKind::NotFound => format!("connect: no such file or directory ({e})"),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "i/o timeout".to_string(),
        _ => e.to_string(),
    }
}

/// Starts delivery of container `id`'s lines (options as in [`validate`]).
pub fn open(config: &LogConfig, id: &str, mode: Mode) -> Result<RemoteLogger> {
    let opts = Options::parse(&config.options)?;
    let sink = FluentdSink::new(config, id, &opts)?;
    RemoteLogger::spawn(sink, mode, opts.retry(), opts.queue_limit_bytes())
}

/// The `labels`, `labels-regex`, `env` and `env-regex` attributes, as Docker's
/// `ExtraAttributes`.
fn extras(config: &LogConfig) -> Result<BTreeMap<String, String>> {
    crate::attrs::extra_attrs(config)
}

/// A connection to the server.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    async fn dial(address: &Address) -> io::Result<Conn> {
        let connect = async {
            Ok(match address {
                Address::Tcp { host, port } => {
                    let s = TcpStream::connect((host.as_str(), *port)).await?;
                    s.set_nodelay(true)?;
                    Conn::Tcp(s)
                }
                Address::Unix(path) => Conn::Unix(UnixStream::connect(path).await?),
            })
        };
        match tokio::time::timeout(DIAL_TIMEOUT, connect).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "dial timed out")),
        }
    }

    /// False when the server closed the connection (or sent something unasked), so a
    /// batch is not written into a connection that is already gone.
    fn is_alive(&self) -> bool {
        let fd = match self {
            Conn::Tcp(s) => s.as_raw_fd(),
            Conn::Unix(s) => s.as_raw_fd(),
        };
        let mut byte = [0u8; 1];
        let flags = nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT;
        matches!(
            nix::sys::socket::recv(fd, &mut byte, flags),
            Err(nix::errno::Errno::EAGAIN)
        )
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(buf).await,
            Conn::Unix(s) => s.write_all(buf).await,
        }
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf).await,
            Conn::Unix(s) => s.read(buf).await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.shutdown().await,
            Conn::Unix(s) => s.shutdown().await,
        }
    }
}

/// Sends a container's batches to one Fluentd server.
pub struct FluentdSink {
    address: Address,
    tag: String,
    sub_second_precision: bool,
    request_ack: bool,
    write_timeout: Option<Duration>,
    /// The fields every record shares (container id and name, extra attributes),
    /// msgpack-encoded once.
    fixed: Vec<u8>,
    fixed_len: usize,
    /// Whether `source` / `log` come from the line (an extra attribute of that name wins,
    /// as in Docker).
    line_source: bool,
    line_log: bool,
    conn: Option<Conn>,
}

impl FluentdSink {
    /// A sink for container `id`; connects on the first batch.
    pub fn new(config: &LogConfig, id: &str, opts: &Options) -> Result<FluentdSink> {
        let tag = tag::expand(config, id, "{{.ID}}")?;
        let name = if config.name.is_empty() || config.name.starts_with('/') {
            config.name.clone()
        } else {
            format!("/{}", config.name)
        };
        let mut fields = BTreeMap::new();
        fields.insert("container_id".to_string(), id.to_string());
        fields.insert("container_name".to_string(), name);
        fields.extend(extras(config)?);
        let mut fixed = Vec::new();
        for (k, v) in &fields {
            put_str(&mut fixed, k.as_bytes());
            put_str(&mut fixed, v.as_bytes());
        }
        Ok(FluentdSink {
            address: opts.address.clone(),
            tag,
            sub_second_precision: opts.sub_second_precision,
            request_ack: opts.request_ack,
            write_timeout: opts.write_timeout,
            line_source: !fields.contains_key("source"),
            line_log: !fields.contains_key("log"),
            fixed_len: fields.len(),
            fixed,
            conn: None,
        })
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The PackedForward message for `batch`, with `chunk` as the ack id when given.
    pub fn encode(&self, batch: &[Message], chunk: Option<&str>) -> Vec<u8> {
        let mut entries = Vec::with_capacity(
            batch
                .iter()
                .map(|m| m.line.len() + self.fixed.len() + 40)
                .sum(),
        );
        for msg in batch {
            put_array_len(&mut entries, 2);
            let secs = msg.time_unix_nano.div_euclid(1_000_000_000);
            if self.sub_second_precision {
                let nanos = msg.time_unix_nano.rem_euclid(1_000_000_000) as u32;
                let secs = u32::try_from(secs.max(0)).unwrap_or(u32::MAX);
                entries.extend_from_slice(&[0xd7, 0x00]);
                entries.extend_from_slice(&secs.to_be_bytes());
                entries.extend_from_slice(&nanos.to_be_bytes());
            } else {
                put_int(&mut entries, secs);
            }
            let n = self.fixed_len + usize::from(self.line_source) + usize::from(self.line_log);
            put_map_len(&mut entries, n);
            entries.extend_from_slice(&self.fixed);
            if self.line_source {
                put_str(&mut entries, b"source");
                let source: &[u8] = if msg.stream == STDERR {
                    b"stderr"
                } else {
                    b"stdout"
                };
                put_str(&mut entries, source);
            }
            if self.line_log {
                put_str(&mut entries, b"log");
                // Docker sends the line's bytes as a string as they are.
                put_str(
                    &mut entries,
                    msg.line.strip_suffix(b"\n").unwrap_or(&msg.line),
                );
            }
        }
        let mut out = Vec::with_capacity(entries.len() + self.tag.len() + 64);
        put_array_len(&mut out, 3);
        put_str(&mut out, self.tag.as_bytes());
        put_bin(&mut out, &entries);
        put_map_len(&mut out, if chunk.is_some() { 2 } else { 1 });
        put_str(&mut out, b"size");
        put_int(&mut out, batch.len() as i64);
        if let Some(chunk) = chunk {
            put_str(&mut out, b"chunk");
            put_str(&mut out, chunk.as_bytes());
        }
        out
    }

    async fn deliver(&self, conn: &mut Conn, frame: &[u8], chunk: Option<&str>) -> io::Result<()> {
        with_timeout(self.write_timeout, "write", conn.write_all(frame)).await?;
        if let Some(chunk) = chunk {
            let wait = self.write_timeout.unwrap_or(DEFAULT_ACK_TIMEOUT);
            let got = with_timeout(Some(wait), "waiting for ack", read_ack(conn)).await?;
            if got != chunk {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("ack {got:?} does not match chunk {chunk:?}"),
                ));
            }
        }
        Ok(())
    }

    async fn send_batch(&mut self, batch: &[Message]) -> io::Result<()> {
        let chunk = self.request_ack.then(chunk_id);
        let frame = self.encode(batch, chunk.as_deref());
        // A connection the server has closed since the last batch is redialled at once; a
        // write that fails on an older connection is tried once more on a new one.
        for attempt in 0..2 {
            let (mut conn, reused) = match self.conn.take() {
                Some(c) if c.is_alive() => (c, true),
                _ => (self.dial().await?, false),
            };
            match self.deliver(&mut conn, &frame, chunk.as_deref()).await {
                Ok(()) => {
                    self.conn = Some(conn);
                    return Ok(());
                }
                Err(e) if reused && attempt == 0 => {
                    tracing::debug!(address = %self.address, "fluentd send failed, redialling: {e}");
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("fluentd {}: {e}", self.address),
                    ))
                }
            }
        }
        unreachable!("the second attempt returns")
    }

    async fn dial(&self) -> io::Result<Conn> {
        Conn::dial(&self.address).await.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: {}", self.address.dial_context(), describe(&e)),
            )
        })
    }
}

impl Sink for FluentdSink {
    fn name(&self) -> &'static str {
        NAME
    }

    fn send<'a>(
        &'a mut self,
        batch: &'a [Message],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        self.send_batch(batch)
    }

    fn batch_limits(&self) -> BatchLimits {
        // Well below the servers' message limits (Fluent Bit's in_forward: 6 MiB).
        BatchLimits {
            max_lines: 1024,
            max_bytes: 1 << 20,
            linger: Duration::ZERO,
        }
    }

    fn close(&mut self) -> impl Future<Output = ()> + Send {
        let conn = self.conn.take();
        async move {
            if let Some(mut conn) = conn {
                let _ = tokio::time::timeout(Duration::from_secs(1), conn.shutdown()).await;
            }
        }
    }
}

async fn with_timeout<T>(
    limit: Option<Duration>,
    what: &str,
    fut: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match limit {
        None => fut.await,
        Some(limit) => match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what} timed out after {limit:?}"),
            )),
        },
    }
}

/// Reads the server's `{"ack": id}` answer.
async fn read_ack(conn: &mut Conn) -> io::Result<String> {
    #[derive(serde::Deserialize)]
    struct Ack {
        ack: String,
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the ack",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        match rmp_serde::from_slice::<Ack>(&buf) {
            Ok(ack) => return Ok(ack.ack),
            Err(e) if is_incomplete(&e) && buf.len() < 4096 => continue,
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad ack from server: {e}"),
                ))
            }
        }
    }
}

fn is_incomplete(e: &rmp_serde::decode::Error) -> bool {
    use rmp_serde::decode::Error as E;
    match e {
        E::InvalidMarkerRead(io) | E::InvalidDataRead(io) => {
            io.kind() == io::ErrorKind::UnexpectedEof
        }
        _ => false,
    }
}

/// A fresh ack id: 16 bytes (process, time, counter, per-process randomness) in base64.
fn chunk_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    h.write_u64(now);
    h.write_u32(std::process::id());
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&h.finish().to_be_bytes());
    raw[8..].copy_from_slice(&(now ^ n.rotate_left(48)).to_be_bytes());
    base64(&raw)
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for group in data.chunks(3) {
        let b = [
            group[0],
            group.get(1).copied().unwrap_or(0),
            group.get(2).copied().unwrap_or(0),
        ];
        let v = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// MessagePack encoding of the few types the protocol needs.

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n < 1 << 8 {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n < 1 << 16 {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

fn put_bin(out: &mut Vec<u8>, b: &[u8]) {
    let n = b.len();
    if n < 1 << 8 {
        out.extend_from_slice(&[0xc4, n as u8]);
    } else if n < 1 << 16 {
        out.push(0xc5);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xc6);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
}

fn put_array_len(out: &mut Vec<u8>, n: usize) {
    if n < 16 {
        out.push(0x90 | n as u8);
    } else if n < 1 << 16 {
        out.push(0xdc);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn put_map_len(out: &mut Vec<u8>, n: usize) {
    if n < 16 {
        out.push(0x80 | n as u8);
    } else if n < 1 << 16 {
        out.push(0xde);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdf);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn put_int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 {
        let v = v as u64;
        if v < 128 {
            out.push(v as u8);
        } else if v < 1 << 8 {
            out.extend_from_slice(&[0xcc, v as u8]);
        } else if v < 1 << 16 {
            out.push(0xcd);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        } else if v < 1 << 32 {
            out.push(0xce);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&v.to_be_bytes());
        }
    } else if v >= -32 {
        out.push(v as i8 as u8);
    } else {
        out.push(0xd3);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logger::STDOUT;
    use std::io::Cursor;
    use tokio::net::{TcpListener, UnixListener};

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn config(kv: &[(&str, &str)]) -> LogConfig {
        LogConfig {
            driver: NAME.into(),
            options: opts(kv),
            name: "web".into(),
            image: "busybox:latest".into(),
            ..Default::default()
        }
    }

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    // 2024-02-29T07:05:09.123456789Z
    const T: i64 = 1_709_190_309_123_456_789;

    fn msg(stream: u8, line: &str) -> Message {
        Message {
            stream,
            line: line.as_bytes().to_vec(),
            time_unix_nano: T,
        }
    }

    #[test]
    fn defaults_and_every_option() {
        assert_eq!(Options::parse(&opts(&[])).unwrap(), Options::default());
        let d = Options::default();
        assert_eq!(
            d.address,
            Address::Tcp {
                host: "127.0.0.1".into(),
                port: 24224
            }
        );
        assert_eq!(
            (d.async_connect, d.buffer_limit, d.max_retries),
            (false, 1 << 20, None)
        );
        assert_eq!(
            d.retry(),
            Retry {
                initial: Duration::from_secs(1),
                max_wait: Duration::from_secs(60),
                max_retries: None
            }
        );
        let o = Options::parse(&opts(&[
            ("fluentd-address", "unix:///run/fluent.sock"),
            ("fluentd-async", "true"),
            ("fluentd-buffer-limit", "64k"),
            ("fluentd-retry-wait", "1m30s"),
            ("fluentd-max-retries", "3"),
            ("fluentd-sub-second-precision", "1"),
            ("fluentd-request-ack", "True"),
            ("fluentd-write-timeout", "1.5s"),
            ("tag", "x"),
            ("labels", "a"),
            ("labels-regex", "^a"),
            ("env", "A"),
            ("env-regex", "^A"),
        ]))
        .unwrap();
        assert_eq!(
            o,
            Options {
                address: Address::Unix("/run/fluent.sock".into()),
                async_connect: true,
                buffer_limit: 65536,
                retry_wait: Duration::from_secs(90),
                max_retries: Some(3),
                sub_second_precision: true,
                request_ack: true,
                write_timeout: Some(Duration::from_millis(1500)),
            }
        );
        assert_eq!(o.retry().max_wait, Duration::from_secs(90));
        assert_eq!(o.queue_limit_bytes(), 65536 * EVENT_BYTES_ESTIMATE);
        // The deprecated spelling, "forever", and zeroes meaning "default".
        let o = Options::parse(&opts(&[
            ("fluentd-async-connect", "t"),
            ("fluentd-max-retries", "4294967295"),
            ("fluentd-buffer-limit", "0"),
            ("fluentd-write-timeout", "0"),
            ("fluentd-retry-wait", "500ms"),
        ]))
        .unwrap();
        assert!(o.async_connect);
        assert_eq!(o.max_retries, None);
        assert_eq!(o.buffer_limit, DEFAULT_BUFFER_LIMIT);
        assert_eq!(o.write_timeout, None);
        assert_eq!(o.retry_wait, Duration::from_millis(500));
        let o = Options::parse(&opts(&[("fluentd-max-retries", "99999999999")])).unwrap();
        assert_eq!(o.max_retries, None);
    }

    #[test]
    fn bad_values_and_unknown_keys_are_refused_by_name() {
        for (k, v) in [
            ("fluentd-address", "http://x"),
            ("fluentd-address", "tcp://h:notaport"),
            ("fluentd-address", "tcp://h:70000"),
            ("fluentd-address", "tcp://h:1/path"),
            ("fluentd-address", "unix://"),
            ("fluentd-address", "unix://relative.sock"),
            ("fluentd-address", "tls://h:1"),
            ("fluentd-async", "yes"),
            ("fluentd-async-connect", "2"),
            ("fluentd-buffer-limit", "lots"),
            ("fluentd-buffer-limit", "-1"),
            ("fluentd-buffer-limit", "1x"),
            ("fluentd-retry-wait", "1"),
            ("fluentd-retry-wait", "-1s"),
            ("fluentd-retry-wait", "1sec"),
            ("fluentd-max-retries", "-1"),
            ("fluentd-max-retries", "many"),
            ("fluentd-sub-second-precision", "yes"),
            ("fluentd-request-ack", "nope"),
            ("fluentd-write-timeout", "soon"),
        ] {
            let e = Options::parse(&opts(&[(k, v)])).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{k}={v}: {e:?}");
            let e = e.to_string();
            assert!(e.contains(k) && e.contains(v), "{k}={v}: {e}");
        }
        let e = Options::parse(&opts(&[
            ("fluentd-async", "1"),
            ("fluentd-async-connect", "1"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("fluentd-async-connect"), "{e}");
        match Options::parse(&opts(&[("fluentd-nosuch", "1")])).unwrap_err() {
            Error::UnknownOption { key, driver } => {
                assert_eq!((key.as_str(), driver.as_str()), ("fluentd-nosuch", NAME))
            }
            e => panic!("{e:?}"),
        }
        // validate also checks the tag template and the attribute regexes.
        assert!(validate(&config(&[("tag", "{{.Nope}}")])).is_err());
        let e = validate(&config(&[("labels-regex", "(")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("labels-regex"), "{e}");
        validate(&config(&[("tag", "app.{{.Name}}"), ("env-regex", "^A")])).unwrap();
    }

    #[test]
    fn addresses_parse_as_docker_reads_them() {
        let tcp = |h: &str, p| Address::Tcp {
            host: h.into(),
            port: p,
        };
        for (a, want) in [
            ("127.0.0.1:24225", tcp("127.0.0.1", 24225)),
            ("tcp://10.0.0.1:5", tcp("10.0.0.1", 5)),
            ("fluent.example", tcp("fluent.example", 24224)),
            ("tcp://fluent.example", tcp("fluent.example", 24224)),
            ("tcp://:7", tcp("127.0.0.1", 7)),
            ("[::1]:9", tcp("::1", 9)),
            ("tcp://[::1]", tcp("::1", 24224)),
            (
                "unix:///var/run/fluent.sock",
                Address::Unix("/var/run/fluent.sock".into()),
            ),
        ] {
            assert_eq!(parse_address(a).unwrap(), want, "{a}");
        }
        assert_eq!(tcp("::1", 9).to_string(), "tcp://[::1]:9");
        assert_eq!(tcp("h", 9).dial_context(), "dial tcp h:9");
        assert!(parse_address("::1").is_err());
    }

    #[test]
    fn go_durations() {
        for (v, ms) in [
            ("0", 0),
            ("1s", 1000),
            ("500ms", 500),
            ("1m30s", 90_000),
            ("1.5s", 1500),
            ("2h", 7_200_000),
            ("1500us", 1),
        ] {
            assert_eq!(parse_go_duration(v).unwrap().as_millis(), ms, "{v}");
        }
        for v in ["", "1", "s", "1x", "-1s", "1s2"] {
            assert_eq!(parse_go_duration(v), None, "{v}");
        }
    }

    #[test]
    fn chunk_ids_are_unique_base64() {
        assert_eq!(base64(b"hello"), "aGVsbG8=");
        assert_eq!(base64(b"hell"), "aGVsbA==");
        assert_eq!(base64(b"hel"), "aGVs");
        let a = chunk_id();
        let b = chunk_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
    }

    /// The bytes of a msgpack `bin`, which rmp-serde hands to a bytes visitor.
    #[derive(Debug)]
    struct Bin(Vec<u8>);

    impl<'de> serde::Deserialize<'de> for Bin {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Bin, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Bin;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> std::result::Result<Bin, E> {
                    Ok(Bin(v.to_vec()))
                }
            }
            d.deserialize_bytes(V)
        }
    }

    #[derive(Debug, serde::Deserialize, PartialEq, Eq)]
    #[serde(untagged)]
    enum Opt {
        N(u64),
        S(String),
    }

    #[derive(Debug, serde::Deserialize)]
    struct Frame(String, Bin, BTreeMap<String, Opt>);

    #[derive(Debug, PartialEq, Eq)]
    enum Time {
        Secs(u64),
        Event(u32, u32),
    }

    /// Decodes one PackedForward message: tag, entries and options.
    fn decode(frame: &Frame) -> Vec<(Time, BTreeMap<String, String>)> {
        let data = &frame.1 .0;
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < data.len() {
            assert_eq!(data[pos], 0x92, "entry is a 2-array");
            pos += 1;
            let time = if data[pos] == 0xd7 {
                assert_eq!(data[pos + 1], 0, "EventTime is ext type 0");
                let b = &data[pos + 2..pos + 10];
                pos += 10;
                Time::Event(
                    u32::from_be_bytes(b[..4].try_into().unwrap()),
                    u32::from_be_bytes(b[4..].try_into().unwrap()),
                )
            } else {
                let mut c = Cursor::new(&data[pos..]);
                let secs: u64 =
                    serde::Deserialize::deserialize(&mut rmp_serde::Deserializer::new(&mut c))
                        .unwrap();
                pos += c.position() as usize;
                Time::Secs(secs)
            };
            let mut c = Cursor::new(&data[pos..]);
            let record: BTreeMap<String, String> =
                serde::Deserialize::deserialize(&mut rmp_serde::Deserializer::new(&mut c)).unwrap();
            pos += c.position() as usize;
            out.push((time, record));
        }
        out
    }

    /// Reads one whole frame from `stream`.
    async fn read_frame(stream: &mut (impl AsyncReadExt + Unpin)) -> Frame {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Ok(f) = rmp_serde::from_slice::<Frame>(&buf) {
                return f;
            }
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
                .await
                .expect("frame in time")
                .unwrap();
            assert!(
                n > 0,
                "connection closed mid-frame after {} bytes",
                buf.len()
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn listener() -> (TcpListener, String) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap().to_string();
        (l, a)
    }

    fn sink(kv: &[(&str, &str)]) -> FluentdSink {
        let c = config(kv);
        FluentdSink::new(&c, ID, &Options::parse(&c.options).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn batches_arrive_as_packed_forward_with_docker_fields() {
        let (l, addr) = listener().await;
        let mut s = sink(&[("fluentd-address", &addr), ("tag", "app.{{.Name}}")]);
        assert_eq!(s.name(), NAME);
        s.send(&[msg(STDOUT, "out\n"), msg(STDERR, "err")])
            .await
            .unwrap();
        let (mut peer, _) = l.accept().await.unwrap();
        let frame = read_frame(&mut peer).await;
        assert_eq!(frame.0, "app.web");
        assert_eq!(frame.2, BTreeMap::from([("size".to_string(), Opt::N(2))]));
        let entries = decode(&frame);
        let record = |source: &str, log: &str| {
            BTreeMap::from([
                ("container_id".to_string(), ID.to_string()),
                ("container_name".to_string(), "/web".to_string()),
                ("source".to_string(), source.to_string()),
                ("log".to_string(), log.to_string()),
            ])
        };
        assert_eq!(
            entries,
            vec![
                (Time::Secs(1_709_190_309), record("stdout", "out")),
                (Time::Secs(1_709_190_309), record("stderr", "err")),
            ]
        );
        // The next batch goes over the same connection.
        s.send(&[msg(STDOUT, "again\n")]).await.unwrap();
        let frame = read_frame(&mut peer).await;
        assert_eq!(decode(&frame)[0].1["log"], "again");
        s.close().await;
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn sub_second_precision_sends_event_time_and_default_tag_is_short_id() {
        let (l, addr) = listener().await;
        let mut s = sink(&[
            ("fluentd-address", &addr),
            ("fluentd-sub-second-precision", "true"),
        ]);
        assert_eq!(s.tag(), &ID[..12]);
        s.send(&[msg(STDOUT, "x\n")]).await.unwrap();
        let (mut peer, _) = l.accept().await.unwrap();
        let frame = read_frame(&mut peer).await;
        assert_eq!(frame.0, &ID[..12]);
        assert_eq!(decode(&frame)[0].0, Time::Event(1_709_190_309, 123_456_789));
        // The raw bytes: fixext8, type 0, seconds and nanoseconds big-endian.
        let mut want = vec![0x92, 0xd7, 0x00];
        want.extend_from_slice(&1_709_190_309u32.to_be_bytes());
        want.extend_from_slice(&123_456_789u32.to_be_bytes());
        assert!(frame.1 .0.starts_with(&want));
    }

    #[tokio::test]
    async fn extra_attributes_and_long_lines() {
        let (l, addr) = listener().await;
        let mut c = config(&[
            ("fluentd-address", &addr),
            ("labels", "team,missing"),
            ("env-regex", "^APP_"),
        ]);
        c.name = "/already".into();
        c.labels = BTreeMap::from([
            ("team".to_string(), "infra".to_string()),
            ("other".to_string(), "x".to_string()),
        ]);
        c.env = vec![
            "APP_MODE=prod".into(),
            "PATH=/bin".into(),
            "APP_X=a=b".into(),
        ];
        let mut s = FluentdSink::new(&c, ID, &Options::parse(&c.options).unwrap()).unwrap();
        let long = "y".repeat(70_000);
        let batch: Vec<Message> = (0..20)
            .map(|i| msg(STDOUT, &format!("{i}{long}\n")))
            .collect();
        s.send(&batch).await.unwrap();
        let (mut peer, _) = l.accept().await.unwrap();
        let frame = read_frame(&mut peer).await;
        assert_eq!(frame.2["size"], Opt::N(20));
        let entries = decode(&frame);
        assert_eq!(entries.len(), 20);
        let r = &entries[19].1;
        assert_eq!(r["container_name"], "/already");
        assert_eq!(r["team"], "infra");
        assert_eq!(r["APP_MODE"], "prod");
        assert_eq!(r["APP_X"], "a=b");
        assert!(!r.contains_key("other") && !r.contains_key("PATH") && !r.contains_key("missing"));
        assert_eq!(r["log"], format!("19{long}"));
    }

    #[tokio::test]
    async fn acks_are_awaited_and_checked() {
        let (l, addr) = listener().await;
        let mut s = sink(&[
            ("fluentd-address", &addr),
            ("fluentd-request-ack", "true"),
            ("fluentd-write-timeout", "500ms"),
        ]);
        let server = tokio::spawn(async move {
            let (mut peer, _) = l.accept().await.unwrap();
            // First batch: acked properly (split across two writes).
            let frame = read_frame(&mut peer).await;
            let Opt::S(chunk) = &frame.2["chunk"] else {
                panic!("{frame:?}")
            };
            assert_eq!(frame.2["size"], Opt::N(1));
            let mut ack = Vec::new();
            put_map_len(&mut ack, 1);
            put_str(&mut ack, b"ack");
            put_str(&mut ack, chunk.as_bytes());
            peer.write_all(&ack[..3]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
            peer.write_all(&ack[3..]).await.unwrap();
            // Second: never acked.
            let second = read_frame(&mut peer).await;
            // Third (after the timeout, on a new connection): a wrong ack.
            let (mut peer2, _) = l.accept().await.unwrap();
            let third = read_frame(&mut peer2).await;
            assert_eq!(
                second.2["chunk"], third.2["chunk"],
                "a resend keeps its chunk id"
            );
            let mut ack = Vec::new();
            put_map_len(&mut ack, 1);
            put_str(&mut ack, b"ack");
            put_str(&mut ack, b"not-the-chunk");
            peer2.write_all(&ack).await.unwrap();
            (peer, peer2)
        });
        s.send(&[msg(STDOUT, "one\n")]).await.unwrap();
        let start = std::time::Instant::now();
        // No ack within the write timeout: the old connection is given up and the batch
        // is tried once more on a new one, which acks wrongly.
        let e = s.send(&[msg(STDOUT, "two\n")]).await.unwrap_err();
        assert!(
            e.kind() == io::ErrorKind::InvalidData && e.to_string().contains("not-the-chunk"),
            "{e}"
        );
        assert!(start.elapsed() >= Duration::from_millis(500));
        let _ = server.await.unwrap();
    }

    #[tokio::test]
    async fn missing_ack_times_out() {
        let (l, addr) = listener().await;
        let mut s = sink(&[
            ("fluentd-address", &addr),
            ("fluentd-request-ack", "true"),
            ("fluentd-write-timeout", "200ms"),
        ]);
        let server = tokio::spawn(async move {
            let (mut peer, _) = l.accept().await.unwrap();
            read_frame(&mut peer).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        });
        let e = s.send(&[msg(STDOUT, "one\n")]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("ack"), "{e}");
        server.abort();
    }

    #[tokio::test]
    async fn a_closed_connection_is_redialled_and_a_dead_server_reported() {
        let (l, addr) = listener().await;
        let mut s = sink(&[("fluentd-address", &addr)]);
        s.send(&[msg(STDOUT, "first\n")]).await.unwrap();
        let (mut peer, _) = l.accept().await.unwrap();
        read_frame(&mut peer).await;
        drop(peer);
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.send(&[msg(STDOUT, "second\n")]).await.unwrap();
        let (mut peer, _) = l.accept().await.unwrap();
        let frame = read_frame(&mut peer).await;
        assert_eq!(decode(&frame)[0].1["log"], "second");
        drop(peer);
        drop(l);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let e = s.send(&[msg(STDOUT, "third\n")]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
        assert!(e.to_string().contains(&format!("dial tcp {addr}")), "{e}");
    }

    #[tokio::test]
    async fn unix_socket_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fluent.sock");
        let l = UnixListener::bind(&path).unwrap();
        let addr = format!("unix://{}", path.display());
        let mut s = sink(&[("fluentd-address", &addr), ("tag", "u")]);
        s.send(&[msg(STDERR, "over unix\n")]).await.unwrap();
        let (mut peer, _) = l.accept().await.unwrap();
        let frame = read_frame(&mut peer).await;
        assert_eq!(frame.0, "u");
        assert_eq!(decode(&frame)[0].1["log"], "over unix");
        assert_eq!(decode(&frame)[0].1["source"], "stderr");
    }

    #[test]
    fn reachability_is_checked_unless_async() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let e = check_reachable(&config(&[("fluentd-address", &addr)]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "failed to initialize logging driver: dial tcp 127.0.0.1:{port}: connect: \
                 connection refused"
            )
        );
        for key in ["fluentd-async", "fluentd-async-connect"] {
            check_reachable(&config(&[("fluentd-address", &addr), (key, "true")])).unwrap();
        }
        // Other options (mode, cache-*) are not its business.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        check_reachable(&config(&[
            ("fluentd-address", &addr),
            ("mode", "non-blocking"),
        ]))
        .unwrap();
        let e = check_reachable(&config(&[(
            "fluentd-address",
            "unix:///nonexistent/f.sock",
        )]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("dial unix /nonexistent/f.sock"), "{e}");
    }
}
