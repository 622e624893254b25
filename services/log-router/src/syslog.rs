//! The `syslog` driver: each line as one syslog message to `syslog-address`.
//!
//! Wire formats follow Docker (moby's syslog driver on srslog): with no `syslog-format`
//! `<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG`; rfc3164 adds the hostname before TAG; rfc5424 is
//! `<PRI>1 TIMESTAMP HOST TAG PID TAG - MSG` (the tag is both APP-NAME and MSGID, as in
//! Docker) with second (rfc5424) or up-to-microsecond (rfc5424micro) timestamps.
//! Framing is Docker's too: every message ends in `\n` on every transport; Docker
//! octet-counts (RFC 5425) only on `tcp+tls://` (see [`crate::syslog_tls`]).
//! Timestamps are UTC (the log router does not read the host's zone database).
//!
//! Lines go through [`RemoteLogger`]: a peer that is down delays or drops lines (after
//! [`RETRY`]) but never fails ingest or a reopen of the log at startup.
use std::{
    collections::BTreeMap,
    future::Future,
    io::{self, Write},
    net::{TcpStream, UdpSocket},
    os::unix::net::{UnixDatagram, UnixStream},
    sync::Arc,
    time::Duration,
};

use rustls::ClientConfig;

use crate::{
    error::{Error, Result},
    logger::{LogConfig, Message, STDERR},
    remote::{Mode, RemoteLogger, Retry, Sink, DEFAULT_QUEUE_LIMIT},
    syslog_tls::{self, TlsFiles, TlsStream},
    tag,
};

pub const NAME: &str = "syslog";

const KNOWN_OPTIONS: &[&str] = &[
    "syslog-address",
    "syslog-facility",
    "syslog-format",
    "syslog-tls-ca-cert",
    "syslog-tls-cert",
    "syslog-tls-key",
    "syslog-tls-skip-verify",
    "tag",
    "labels",
    "labels-regex",
    "env",
    "env-regex",
];

/// RFC 5424 facility names in code order (Docker's list).
const FACILITIES: &[&str] = &[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "", "", "", "", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
    "local7",
];
const SEVERITY_ERR: u8 = 3;
const SEVERITY_INFO: u8 = 6;
/// Short: dialling runs on every retry of a peer that is down.
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// A peer that stops reading must not hang delivery forever.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Docker drops a line syslog refuses; berth retries a little first so a restarting
/// rsyslogd loses nothing.
pub const RETRY: Retry = Retry {
    initial: Duration::from_millis(250),
    max_wait: Duration::from_secs(4),
    max_retries: Some(5),
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Udp(String),
    Tcp(String),
    /// `tcp+tls://`: RFC 5425, TLS with octet-counted frames.
    TcpTls(String),
    Unix(String),
    Unixgram(String),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Udp(a) => write!(f, "udp://{a}"),
            Address::Tcp(a) => write!(f, "tcp://{a}"),
            Address::TcpTls(a) => write!(f, "tcp+tls://{a}"),
            Address::Unix(p) => write!(f, "unix://{p}"),
            Address::Unixgram(p) => write!(f, "unixgram://{p}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Docker's default (srslog's UnixFormatter): rfc3164 without the hostname.
    Unix,
    Rfc3164,
    Rfc5424,
    Rfc5424Micro,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub address: Address,
    pub facility: u8,
    pub format: Format,
    /// `syslog-tls-*`, used with `tcp+tls://` only (Docker ignores them otherwise).
    pub tls: TlsFiles,
}

impl Options {
    pub fn parse(opts: &BTreeMap<String, String>) -> Result<Options> {
        if let Some(key) = opts.keys().find(|k| !KNOWN_OPTIONS.contains(&k.as_str())) {
            return Err(Error::UnknownOption {
                key: key.clone(),
                driver: NAME.to_string(),
            });
        }
        let address = match opts.get("syslog-address").map(String::as_str) {
            None | Some("") => Address::Unixgram("/dev/log".to_string()),
            Some(a) => parse_address(a)?,
        };
        let facility = match opts.get("syslog-facility").map(String::as_str) {
            None | Some("") => 3,
            Some(f) => FACILITIES
                .iter()
                .position(|n| !n.is_empty() && *n == f)
                .and_then(|p| u8::try_from(p).ok())
                .ok_or_else(|| Error::InvalidArgument(format!("invalid syslog-facility: {f:?}")))?,
        };
        let format = match opts.get("syslog-format").map(String::as_str) {
            None | Some("") => Format::Unix,
            Some("rfc3164") => Format::Rfc3164,
            Some("rfc5424") => Format::Rfc5424,
            Some("rfc5424micro") => Format::Rfc5424Micro,
            Some(f) => {
                return Err(Error::InvalidArgument(format!(
                    "invalid syslog-format: {f:?} (rfc3164, rfc5424 or rfc5424micro)"
                )))
            }
        };
        let path = |key: &str| opts.get(key).filter(|v| !v.is_empty()).cloned();
        let tls = TlsFiles {
            ca_cert: path("syslog-tls-ca-cert"),
            cert: path("syslog-tls-cert"),
            key: path("syslog-tls-key"),
            skip_verify: match opts.get("syslog-tls-skip-verify").map(String::as_str) {
                None | Some("") | Some("false") | Some("0") => false,
                Some("true") | Some("1") => true,
                Some(v) => {
                    return Err(Error::InvalidArgument(format!(
                        "invalid syslog-tls-skip-verify: {v:?} (true or false)"
                    )))
                }
            },
        };
        if matches!(address, Address::TcpTls(_)) {
            // Reads the files: a missing or bad one fails create, naming it.
            syslog_tls::client_config(&tls)?;
        }
        Ok(Options {
            address,
            facility,
            format,
            tls,
        })
    }
}

fn parse_address(a: &str) -> Result<Address> {
    let bad = |why: &str| Error::InvalidArgument(format!("invalid syslog-address {a:?}: {why}"));
    let (scheme, rest) = a.split_once("://").ok_or_else(|| bad("no scheme"))?;
    match scheme {
        "udp" | "tcp" | "tcp+tls" => {
            if rest.is_empty() || rest.contains('/') {
                return Err(bad("expected host[:port]"));
            }
            // Docker adds the default port 514 when none is given.
            let hostport = if has_port(rest) {
                rest.to_string()
            } else {
                format!("{rest}:514")
            };
            let port = hostport.rsplit_once(':').map(|(_, p)| p).unwrap_or("");
            if port.parse::<u16>().is_err() {
                return Err(bad("invalid port"));
            }
            Ok(match scheme {
                "udp" => Address::Udp(hostport),
                "tcp" => Address::Tcp(hostport),
                _ => Address::TcpTls(hostport),
            })
        }
        "unix" | "unixgram" => {
            if !rest.starts_with('/') {
                return Err(bad("expected an absolute socket path"));
            }
            Ok(if scheme == "unix" {
                Address::Unix(rest.to_string())
            } else {
                Address::Unixgram(rest.to_string())
            })
        }
        _ => Err(bad("scheme must be udp, tcp, tcp+tls, unix or unixgram")),
    }
}

fn has_port(hostport: &str) -> bool {
    match hostport.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => hostport.matches(':').count() == 1,
    }
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
    Unix(UnixStream),
    Unixgram(UnixDatagram),
}

fn dial(addr: &Address, tls: Option<&Arc<ClientConfig>>) -> io::Result<Conn> {
    Ok(match addr {
        Address::Udp(a) => {
            let target = std::net::ToSocketAddrs::to_socket_addrs(a.as_str())?
                .next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
            let bind = if target.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let s = UdpSocket::bind(bind)?;
            s.connect(target)?;
            Conn::Udp(s)
        }
        Address::Tcp(a) | Address::TcpTls(a) => {
            let target = std::net::ToSocketAddrs::to_socket_addrs(a.as_str())?
                .next()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
            let s = TcpStream::connect_timeout(&target, DIAL_TIMEOUT)?;
            s.set_write_timeout(Some(WRITE_TIMEOUT))?;
            match (addr, tls) {
                (Address::TcpTls(a), Some(config)) => {
                    // The handshake has the same bound as writes.
                    s.set_read_timeout(Some(WRITE_TIMEOUT))?;
                    let host = a.rsplit_once(':').map_or(a.as_str(), |(h, _)| h);
                    Conn::Tls(Box::new(syslog_tls::connect(config, host, s)?))
                }
                (Address::TcpTls(_), None) => {
                    return Err(io::Error::other("tcp+tls without a TLS configuration"))
                }
                _ => Conn::Tcp(s),
            }
        }
        Address::Unix(p) => {
            let s = UnixStream::connect(p)?;
            s.set_write_timeout(Some(WRITE_TIMEOUT))?;
            Conn::Unix(s)
        }
        Address::Unixgram(p) => {
            let s = UnixDatagram::unbound()?;
            s.connect(p)?;
            Conn::Unixgram(s)
        }
    })
}

impl Conn {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        match self {
            Conn::Udp(s) => s.send(msg).map(|_| ()),
            Conn::Unixgram(s) => s.send(msg).map(|_| ()),
            Conn::Tcp(s) => s.write_all(msg),
            Conn::Tls(s) => s.write_all(msg),
            Conn::Unix(s) => s.write_all(msg),
        }
    }
}

/// Dials the peer once: Docker fails the container's create when a tcp/unix peer cannot
/// be reached (a udp "connect" only checks the address).
pub fn check_peer(config: &LogConfig, id: &str) -> Result<()> {
    let sink = SyslogSink::new(config, id)?;
    dial(&sink.opts.address, sink.tls.as_ref())
        .map(drop)
        .map_err(|e| {
            Error::InvalidArgument(format!(
                "failed to initialize logging driver: syslog-address {}: {e}",
                sink.opts.address
            ))
        })
}

/// Starts delivery of container `id`'s lines; nothing is dialled until the first line.
pub fn open(config: &LogConfig, id: &str, mode: Mode) -> Result<RemoteLogger> {
    RemoteLogger::spawn(
        SyslogSink::new(config, id)?,
        mode,
        RETRY,
        DEFAULT_QUEUE_LIMIT,
    )
}

/// Writes lines to the syslog peer, redialling as needed.
pub struct SyslogSink {
    opts: Options,
    tag: String,
    hostname: String,
    pid: u32,
    conn: Option<Conn>,
    /// Built once from the `syslog-tls-*` files for `tcp+tls://`.
    tls: Option<Arc<ClientConfig>>,
}

impl SyslogSink {
    pub fn new(config: &LogConfig, id: &str) -> Result<SyslogSink> {
        let opts = Options::parse(&config.options)?;
        let tag = tag::expand(config, id, "{{.ID}}")?;
        let tls = match opts.address {
            Address::TcpTls(_) => Some(syslog_tls::client_config(&opts.tls)?),
            _ => None,
        };
        let hostname = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "-".to_string());
        Ok(SyslogSink {
            opts,
            tag,
            hostname,
            pid: std::process::id(),
            conn: None,
            tls,
        })
    }

    /// The bytes put on the wire for `msg`, newline included.
    pub fn encode(&self, msg: &Message) -> Vec<u8> {
        let severity = if msg.stream == STDERR {
            SEVERITY_ERR
        } else {
            SEVERITY_INFO
        };
        let pri = u32::from(self.opts.facility) * 8 + u32::from(severity);
        let line = msg.line.strip_suffix(b"\n").unwrap_or(&msg.line);
        let text = String::from_utf8_lossy(line);
        let (secs, nanos) = split_time(msg.time_unix_nano);
        let body = match self.opts.format {
            Format::Unix => format!(
                "<{pri}>{} {}[{}]: {text}",
                stamp_3164(secs),
                self.tag,
                self.pid
            ),
            Format::Rfc3164 => format!(
                "<{pri}>{} {} {}[{}]: {text}",
                stamp_3164(secs),
                self.hostname,
                self.tag,
                self.pid
            ),
            Format::Rfc5424 | Format::Rfc5424Micro => {
                let micros = (self.opts.format == Format::Rfc5424Micro).then_some(nanos / 1000);
                format!(
                    "<{pri}>1 {} {} {tag} {} {tag} - {text}",
                    stamp_3339(secs, micros),
                    self.hostname,
                    self.pid,
                    tag = nil_if_empty(&self.tag),
                )
            }
        };
        let body = format!("{body}\n");
        match self.opts.address {
            // RFC 5425 octet counting, as Docker frames messages over TLS.
            Address::TcpTls(_) => format!("{} {body}", body.len()).into_bytes(),
            _ => body.into_bytes(),
        }
    }
}

fn nil_if_empty(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// Sends `frames`, dialling when there is no connection. A connection that fails is
/// redialled once straight away (a restarted peer is picked up without a backoff) and
/// the frames not yet written are sent again.
fn send_frames(
    addr: &Address,
    tls: Option<&Arc<ClientConfig>>,
    mut conn: Option<Conn>,
    frames: &[Vec<u8>],
) -> (Option<Conn>, io::Result<()>) {
    let mut next = 0;
    let mut redialled = false;
    loop {
        let fresh = conn.is_none();
        let mut c = match conn.take() {
            Some(c) => c,
            None => match dial(addr, tls) {
                Ok(c) => c,
                Err(e) => return (None, Err(e)),
            },
        };
        let mut failure = None;
        while let Some(f) = frames.get(next) {
            if let Err(e) = c.send(f) {
                failure = Some(e);
                break;
            }
            next += 1;
        }
        match failure {
            None => return (Some(c), Ok(())),
            Some(e) if fresh || redialled => return (None, Err(e)),
            Some(e) => {
                tracing::debug!(error = %e, "syslog send failed, redialling");
                redialled = true;
            }
        }
    }
}

impl Sink for SyslogSink {
    fn name(&self) -> &'static str {
        NAME
    }

    fn send<'a>(
        &'a mut self,
        batch: &'a [Message],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        let mut frames: Vec<Vec<u8>> = batch.iter().map(|m| self.encode(m)).collect();
        if self.tls.is_some() {
            // One write: TLS records of up to 16 KiB instead of one per line.
            frames = vec![frames.concat()];
        }
        let addr = self.opts.address.clone();
        let tls = self.tls.clone();
        let conn = self.conn.take();
        async move {
            // The sockets are blocking (with timeouts): off the async workers.
            let (conn, res) = tokio::task::spawn_blocking(move || {
                send_frames(&addr, tls.as_ref(), conn, &frames)
            })
            .await
            .map_err(io::Error::other)?;
            self.conn = conn;
            res
        }
    }
}

fn split_time(unix_nano: i64) -> (i64, u32) {
    let secs = unix_nano.div_euclid(1_000_000_000);
    let nanos = u32::try_from(unix_nano.rem_euclid(1_000_000_000)).unwrap_or(0);
    (secs, nanos)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn clock(secs: i64) -> (i64, u32, u32, i64, i64, i64) {
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    (y, m, d, s / 3600, s % 3600 / 60, s % 60)
}

/// Go's `time.Stamp` ("Jan _2 15:04:05"), which Docker's rfc3164 formatter uses.
fn stamp_3164(secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (_, m, d, hh, mm, ss) = clock(secs);
    let month = MONTHS[(m as usize).saturating_sub(1) % 12];
    format!("{month} {d:>2} {hh:02}:{mm:02}:{ss:02}")
}

fn stamp_3339(secs: i64, micros: Option<u32>) -> String {
    let (y, m, d, hh, mm, ss) = clock(secs);
    match micros {
        // Go's ".999999": trailing zeros (and an all-zero fraction) are dropped.
        Some(us) if us > 0 => {
            let frac = format!("{us:06}");
            let frac = frac.trim_end_matches('0');
            format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{frac}Z")
        }
        Some(_) | None => format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logger::{Logger, STDOUT};
    use std::io::Read;

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_are_validated_naming_the_culprit() {
        let o = Options::parse(&opts(&[("syslog-address", "udp://127.0.0.1")])).unwrap();
        assert_eq!(o.address, Address::Udp("127.0.0.1:514".into()));
        assert_eq!((o.facility, o.format), (3, Format::Unix));
        let o = Options::parse(&opts(&[
            ("syslog-address", "unixgram:///dev/log"),
            ("syslog-facility", "local7"),
            ("syslog-format", "rfc5424micro"),
        ]))
        .unwrap();
        assert_eq!((o.facility, o.format), (23, Format::Rfc5424Micro));
        for (k, v, needle) in [
            ("nosuch", "1", "nosuch"),
            ("syslog-format", "nope", "syslog-format"),
            ("syslog-facility", "nope", "syslog-facility"),
            ("syslog-address", "http://x", "syslog-address"),
            ("syslog-address", "tcp://h:notaport", "syslog-address"),
            ("syslog-address", "unix://relative", "syslog-address"),
        ] {
            let e = Options::parse(&opts(&[(k, v)])).unwrap_err().to_string();
            assert!(e.contains(needle), "{k}={v}: {e}");
        }
    }

    #[test]
    fn timestamps_match_go_layouts() {
        // 2024-02-29T07:05:09Z
        let t = 1_709_190_309;
        assert_eq!(stamp_3164(t), "Feb 29 07:05:09");
        assert_eq!(stamp_3164(t + 86_400), "Mar  1 07:05:09");
        assert_eq!(stamp_3339(t, None), "2024-02-29T07:05:09Z");
        assert_eq!(stamp_3339(t, Some(42)), "2024-02-29T07:05:09.000042Z");
        assert_eq!(stamp_3339(t, Some(120_000)), "2024-02-29T07:05:09.12Z");
        assert_eq!(stamp_3339(t, Some(0)), "2024-02-29T07:05:09Z");
    }

    /// Reads everything a peer connection sends until it is closed, on a thread.
    fn drain(peer: std::net::TcpStream) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut peer = peer;
            let mut got = String::new();
            peer.read_to_string(&mut got).unwrap();
            got
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tcp_lines_carry_severity_and_reconnect() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut config = LogConfig {
            driver: NAME.into(),
            options: opts(&[
                ("syslog-address", &format!("tcp://127.0.0.1:{port}")),
                ("syslog-format", "rfc5424"),
                ("tag", "{{.Name}}"),
            ]),
            name: "web".into(),
            ..Default::default()
        };
        let msg = |stream, line: &str| Message {
            stream,
            line: line.as_bytes().to_vec(),
            time_unix_nano: 1_709_190_309_000_000_000,
        };
        let mut logger = open(&config, "0123456789abcdef", Mode::Blocking).unwrap();
        logger.log(&msg(STDOUT, "out\n")).unwrap();
        logger.log(&msg(STDERR, "err\n")).unwrap();
        let (peer, _) = listener.accept().unwrap();
        let got = drain(peer);
        // Dropping closes: queued lines are delivered, then the connection.
        drop(logger);
        let got = got.join().unwrap();
        let host = &logger_host();
        let pid = std::process::id();
        assert_eq!(
            got,
            format!(
                "<30>1 2024-02-29T07:05:09Z {host} web {pid} web - out\n\
                 <27>1 2024-02-29T07:05:09Z {host} web {pid} web - err\n"
            )
        );

        // A broken connection is redialled.
        config
            .options
            .insert("syslog-format".into(), "rfc3164".into());
        let mut logger = open(&config, "0123456789abcdef", Mode::Blocking).unwrap();
        logger.log(&msg(STDOUT, "first\n")).unwrap();
        let (peer, _) = listener.accept().unwrap();
        drop(peer);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        listener.set_nonblocking(true).unwrap();
        let peer = loop {
            logger.log(&msg(STDOUT, "again\n")).unwrap();
            if let Ok((peer, _)) = listener.accept() {
                break peer;
            }
            assert!(std::time::Instant::now() < deadline, "no redial");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        peer.set_nonblocking(false).unwrap();
        let got = drain(peer);
        drop(logger);
        let got = got.join().unwrap();
        assert!(
            got.starts_with(&format!("<30>Feb 29 07:05:09 {host} web[")),
            "{got}"
        );
        assert!(got.ends_with(": again\n"), "{got}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_that_is_down_neither_fails_open_nor_blocks_lines() {
        let config = LogConfig {
            driver: NAME.into(),
            options: opts(&[("syslog-address", "unix:///nonexistent/berth.sock")]),
            ..Default::default()
        };
        let mut logger = open(
            &config,
            "abc",
            Mode::NonBlocking {
                max_buffer_bytes: 64,
            },
        )
        .unwrap();
        let line = Message {
            stream: STDOUT,
            line: b"0123456789abcdef\n".to_vec(),
            time_unix_nano: 0,
        };
        let start = std::time::Instant::now();
        for _ in 0..100 {
            logger.log(&line).unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(Logger::stats(&logger).unwrap().dropped_lines > 0);
    }

    fn logger_host() -> String {
        nix::unistd::gethostname().unwrap().into_string().unwrap()
    }

    #[test]
    fn unreachable_stream_peer_fails_at_open() {
        let config = LogConfig {
            driver: NAME.into(),
            options: opts(&[("syslog-address", "unix:///nonexistent/berth.sock")]),
            ..Default::default()
        };
        let e = check_peer(&config, "abc").unwrap_err().to_string();
        assert!(e.contains("syslog-address"), "{e}");
    }
}
