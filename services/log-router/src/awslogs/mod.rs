//! The `awslogs` driver: a container's lines as events of one CloudWatch Logs stream,
//! sent with `PutLogEvents` over the JSON 1.1 protocol, signed with SigV4.
//!
//! Options follow Docker's driver: `awslogs-region` (else `AWS_REGION` or
//! `AWS_DEFAULT_REGION` from the log router's environment), `awslogs-group` (required),
//! `awslogs-stream` (else the expanded `tag` when set, else the full container ID),
//! `awslogs-create-group` (default false), `awslogs-create-stream` (default true),
//! `awslogs-endpoint` (instead of `https://logs.<region>.amazonaws.com`),
//! `awslogs-force-flush-interval-seconds` (how long a partial batch waits, default 5) and
//! `awslogs-max-buffered-events` (default 4096; bounds the queue in blocking mode).
//! `awslogs-format` and `awslogs-credentials-endpoint` are Docker options berth does not
//! implement: they are refused by name rather than ignored.
//!
//! Multi-line events (`awslogs-multiline-pattern`, a regular expression, or
//! `awslogs-datetime-format`, a strftime pattern matched at the start of a line): a line
//! that matches starts a new event, the lines after it that do not are appended to it
//! (joined with `\n`), as in Docker. One difference: an event is never carried from one
//! batch to the next, so an event whose lines straddle the end of a batch (the force
//! flush interval after the batch's first line, or 10,000 lines / 1 MiB) is cut in two;
//! Docker cuts one when it is older than the flush interval at its publish tick.
//!
//! Credentials: like Docker, which reads them in the daemon's process, the driver takes
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN` from
//! the environment of the log router (not the container's). There is no shared-file,
//! instance-metadata or credentials-endpoint lookup.
//!
//! Batching follows CloudWatch's limits as Docker does: at most 10,000 events and
//! 1,048,576 bytes per request counting 26 bytes per event on top of its message,
//! events in timestamp order, a request spanning less than 24 hours; a line longer than
//! 262,118 bytes becomes several events; empty lines are skipped; the trailing newline
//! is not part of the message; invalid UTF-8 is replaced by U+FFFD.
pub mod sigv4;

use std::{
    collections::BTreeMap,
    hash::{Hash, Hasher},
    io,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client as HyperClient},
    rt::TokioExecutor,
};
use serde_json::{json, Value};

use crate::{
    error::{Error, Result},
    logger::{LogConfig, Message},
    remote::{BatchLimits, Mode, RemoteLogger, Retry, Sink},
    tag,
};

pub use sigv4::Credentials;

pub const NAME: &str = "awslogs";

const REGION: &str = "awslogs-region";
const GROUP: &str = "awslogs-group";
const STREAM: &str = "awslogs-stream";
const CREATE_GROUP: &str = "awslogs-create-group";
const CREATE_STREAM: &str = "awslogs-create-stream";
const ENDPOINT: &str = "awslogs-endpoint";
const FLUSH_INTERVAL: &str = "awslogs-force-flush-interval-seconds";
const MAX_BUFFERED_EVENTS: &str = "awslogs-max-buffered-events";
const DATETIME_FORMAT: &str = "awslogs-datetime-format";
const MULTILINE_PATTERN: &str = "awslogs-multiline-pattern";
const CREDENTIALS_ENDPOINT: &str = "awslogs-credentials-endpoint";
const FORMAT: &str = "awslogs-format";

const KNOWN_OPTIONS: &[&str] = &[
    REGION,
    GROUP,
    STREAM,
    CREATE_GROUP,
    CREATE_STREAM,
    ENDPOINT,
    FLUSH_INTERVAL,
    MAX_BUFFERED_EVENTS,
    DATETIME_FORMAT,
    MULTILINE_PATTERN,
    CREDENTIALS_ENDPOINT,
    FORMAT,
    "tag",
];

/// Docker options berth knows but does not implement, refused by name.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        CREDENTIALS_ENDPOINT,
        "not supported by berth: set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and \
         AWS_SESSION_TOKEN) in the log router's environment",
    ),
    (
        FORMAT,
        "not supported by berth (messages are sent as plain text)",
    ),
];

/// CloudWatch Logs counts this many bytes per event on top of its message.
pub const PER_EVENT_BYTES: usize = 26;
/// The most one `PutLogEvents` may carry, messages plus [`PER_EVENT_BYTES`] each.
pub const MAX_PUT_BYTES: usize = 1_048_576;
/// The most events one `PutLogEvents` may carry.
pub const MAX_PUT_EVENTS: usize = 10_000;
/// The longest message of one event; longer lines are split (as Docker does).
pub const MAX_EVENT_BYTES: usize = 262_144 - PER_EVENT_BYTES;
/// The events of one request must span less than this (milliseconds).
pub const MAX_PUT_SPAN_MS: i64 = 24 * 3600 * 1000;

const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_MAX_BUFFERED_EVENTS: usize = 4096;
/// Bytes of queue allowed per buffered event in blocking mode.
const QUEUE_BYTES_PER_EVENT: usize = 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The driver's parsed options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub region: String,
    pub group: String,
    /// `awslogs-stream` when given (else the tag or the container ID, chosen by [`open`]).
    pub stream: Option<String>,
    pub create_group: bool,
    pub create_stream: bool,
    pub endpoint: Endpoint,
    pub flush_interval: Duration,
    pub max_buffered_events: usize,
    /// The regular expression of a line that starts an event (multi-line mode).
    pub multiline: Option<String>,
}

/// The strftime codes of `awslogs-datetime-format` (Docker's list) as regular
/// expressions; the rest of the format is a regular expression as given.
const STRFTIME: &[(&str, &str)] = &[
    ("%a", "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"),
    (
        "%A",
        "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)",
    ),
    ("%w", "[0-6]"),
    ("%d", "(?:0[1-9]|[12][0-9]|3[01])"),
    ("%b", "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"),
    (
        "%B",
        "(?:January|February|March|April|May|June|July|August|September|October|November|December)",
    ),
    ("%m", "(?:0[1-9]|1[0-2])"),
    ("%Y", "\\d{4}"),
    ("%y", "\\d{2}"),
    ("%H", "(?:[01][0-9]|2[0-3])"),
    ("%I", "(?:0[0-9]|1[0-2])"),
    ("%p", "[AP]M"),
    ("%M", "[0-5][0-9]"),
    ("%S", "[0-5][0-9]"),
    ("%f", "\\d{6}"),
    ("%L", "\\.\\d{3}"),
    ("%z", "[+-]\\d{4}"),
    ("%Z", "[A-Z]{1,4}T"),
    (
        "%j",
        "(?:00[1-9]|0[1-9][0-9]|[12][0-9][0-9]|3[0-5][0-9]|36[0-6])",
    ),
];

/// The regular expression of `awslogs-datetime-format`: anchored at the line's start.
pub fn datetime_regex(format: &str) -> String {
    let mut out = String::from("^");
    let mut rest = format;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i..i + 2).unwrap_or(&rest[i..]);
        match STRFTIME.iter().find(|(c, _)| *c == code) {
            Some((_, re)) => {
                out.push_str(re);
                rest = &rest[i + code.len()..];
            }
            None => {
                out.push('%');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Where requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://logs.us-east-1.amazonaws.com/`
    pub url: String,
    /// The `Host` header (and signed host): the URL's authority.
    pub host: String,
}

impl Endpoint {
    /// The default endpoint of `region` (`.amazonaws.com.cn` in the China regions).
    pub fn for_region(region: &str) -> Endpoint {
        let suffix = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        let host = format!("logs.{region}.{suffix}");
        Endpoint {
            url: format!("https://{host}/"),
            host,
        }
    }

    /// `awslogs-endpoint`: `http(s)://host[:port][/]`, or `host[:port]` meaning https.
    pub fn parse(value: &str) -> Result<Endpoint> {
        let bad = |why: &str| {
            Error::InvalidArgument(format!("invalid log opt '{ENDPOINT}' {value:?}: {why}"))
        };
        let with_scheme = if value.contains("://") {
            value.to_string()
        } else {
            format!("https://{value}")
        };
        let uri: Uri = with_scheme.parse().map_err(|e| bad(&format!("{e}")))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(bad("the scheme must be http or https")),
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.host().is_empty() || authority.as_str().contains('@') {
            return Err(bad("expected a host[:port]"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("a path or query is not supported"));
        }
        let host = authority.as_str().to_string();
        Ok(Endpoint {
            url: format!("{}://{host}/", uri.scheme_str().unwrap_or("https")),
            host,
        })
    }
}

impl Options {
    /// Parses the driver's options, taking the region from `env` when not given.
    pub fn parse(
        opts: &BTreeMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Options> {
        if let Some(key) = opts.keys().find(|k| !KNOWN_OPTIONS.contains(&k.as_str())) {
            return Err(Error::UnknownOption {
                key: key.clone(),
                driver: NAME.to_string(),
            });
        }
        for (key, why) in UNSUPPORTED {
            if opts.contains_key(*key) {
                return Err(Error::InvalidArgument(format!(
                    "log opt '{key}' of the awslogs driver: {why}"
                )));
            }
        }
        let get = |k: &str| opts.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let region = match get(REGION) {
            Some(r) => r.to_string(),
            None => ["AWS_REGION", "AWS_DEFAULT_REGION"]
                .iter()
                .find_map(|k| env(k).filter(|v| !v.is_empty()))
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "log opt '{REGION}' is required by the awslogs driver (or set \
                         AWS_REGION in the log router's environment)"
                    ))
                })?,
        };
        if !region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(invalid(REGION, &region, "not a region name"));
        }
        let group = get(GROUP)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "log opt '{GROUP}' is required by the awslogs driver"
                ))
            })?
            .to_string();
        check_group(&group)?;
        let stream = get(STREAM).map(str::to_string);
        if let Some(s) = &stream {
            check_stream(STREAM, s)?;
        }
        let create_group = parse_bool(CREATE_GROUP, get(CREATE_GROUP), false)?;
        let create_stream = parse_bool(CREATE_STREAM, get(CREATE_STREAM), true)?;
        let endpoint = match get(ENDPOINT) {
            Some(e) => Endpoint::parse(e)?,
            None => Endpoint::for_region(&region),
        };
        let flush_interval = match get(FLUSH_INTERVAL) {
            None => DEFAULT_FLUSH_INTERVAL,
            Some(v) => Duration::from_secs(positive(FLUSH_INTERVAL, v)? as u64),
        };
        let max_buffered_events = match get(MAX_BUFFERED_EVENTS) {
            None => DEFAULT_MAX_BUFFERED_EVENTS,
            Some(v) => positive(MAX_BUFFERED_EVENTS, v)?,
        };
        let multiline = match (get(DATETIME_FORMAT), get(MULTILINE_PATTERN)) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidArgument(format!(
                    "you cannot configure log opt '{DATETIME_FORMAT}' and \
                     '{MULTILINE_PATTERN}' at the same time"
                )))
            }
            (Some(f), None) => Some((DATETIME_FORMAT, f, datetime_regex(f))),
            (None, Some(p)) => Some((MULTILINE_PATTERN, p, p.to_string())),
            (None, None) => None,
        };
        let multiline = match multiline {
            Some((key, value, re)) => {
                regex::Regex::new(&re)
                    .map_err(|e| invalid(key, value, &format!("bad regular expression: {e}")))?;
                Some(re)
            }
            None => None,
        };
        Ok(Options {
            region,
            group,
            stream,
            create_group,
            create_stream,
            endpoint,
            flush_interval,
            max_buffered_events,
            multiline,
        })
    }
}

fn invalid(key: &str, value: &str, why: &str) -> Error {
    Error::InvalidArgument(format!("invalid log opt '{key}' {value:?}: {why}"))
}

/// Go's `strconv.ParseBool`, as Docker parses these options.
fn parse_bool(key: &str, value: Option<&str>, default: bool) -> Result<bool> {
    match value {
        None => Ok(default),
        Some(v) => {
            crate::optvalue::parse_bool(v).ok_or_else(|| invalid(key, v, "expected true or false"))
        }
    }
}

fn positive(key: &str, value: &str) -> Result<usize> {
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid(key, value, "expected a positive integer")),
    }
}

/// CloudWatch's log group names: 1–512 of `[A-Za-z0-9_./#-]`.
fn check_group(group: &str) -> Result<()> {
    let ok = group.len() <= 512
        && group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./#".contains(c));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            GROUP,
            group,
            "a log group name is 1-512 characters of a-z, A-Z, 0-9, '_', '-', '.', '/', '#'",
        ))
    }
}

/// CloudWatch's log stream names: 1–512 characters, no ':' or '*'.
fn check_stream(key: &str, stream: &str) -> Result<()> {
    if stream.is_empty() || stream.chars().count() > 512 || stream.contains([':', '*']) {
        return Err(invalid(
            key,
            stream,
            "a log stream name is 1-512 characters without ':' or '*'",
        ));
    }
    Ok(())
}

/// Validates the driver's own options (`mode`, `max-buffer-size` and `cache-*` already
/// removed), refusing unknown keys and bad values by name.
pub fn validate(config: &LogConfig) -> Result<()> {
    Options::parse(&config.options, |k| std::env::var(k).ok())?;
    // A bad tag template is refused at create time too, as Docker does.
    tag::expand(config, "", "").map(|_| ())
}

/// The credentials in the log router's environment (as Docker reads the daemon's).
pub fn credentials_from_env(env: impl Fn(&str) -> Option<String>) -> Result<Credentials> {
    let get = |k: &str| env(k).filter(|v| !v.is_empty());
    match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
            access_key_id,
            secret_access_key,
            session_token: get("AWS_SESSION_TOKEN"),
        }),
        _ => Err(Error::InvalidArgument(
            "awslogs driver: no AWS credentials: set AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary credentials) in \
             the log router's environment"
                .to_string(),
        )),
    }
}

/// Starts delivery of container `id`'s lines (options as in [`validate`]).
pub fn open(config: &LogConfig, id: &str, mode: Mode) -> Result<RemoteLogger> {
    let env = |k: &str| std::env::var(k).ok();
    let opts = Options::parse(&config.options, env)?;
    let creds = credentials_from_env(env)?;
    let stream = stream_name(config, &opts, id)?;
    let queue_limit = opts
        .max_buffered_events
        .saturating_mul(QUEUE_BYTES_PER_EVENT)
        .max(MAX_EVENT_BYTES + PER_EVENT_BYTES);
    let sink = AwsLogsSink::new(opts, creds, stream)?;
    RemoteLogger::spawn(sink, mode, Retry::default(), queue_limit)
}

/// The stream name: `awslogs-stream`, else the expanded `tag`, else the container ID.
pub fn stream_name(config: &LogConfig, opts: &Options, id: &str) -> Result<String> {
    let stream = match &opts.stream {
        Some(s) => s.clone(),
        None => tag::expand(config, id, id)?,
    };
    check_stream("tag", &stream)?;
    Ok(stream)
}

/// One CloudWatch log event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub timestamp_ms: i64,
    pub message: String,
}

impl Event {
    /// What CloudWatch counts for this event against [`MAX_PUT_BYTES`].
    pub fn size(&self) -> usize {
        self.message.len() + PER_EVENT_BYTES
    }
}

/// The events of `batch`, in timestamp order (ties keep their order): each line without
/// its newline (or, with `multiline`, each run of lines from one that matches to the
/// next, joined with `\n`, at the first line's time), empty ones skipped, long ones
/// split into [`MAX_EVENT_BYTES`] pieces at character boundaries.
pub fn events(batch: &[Message], multiline: Option<&regex::Regex>) -> Vec<Event> {
    let lines = batch.iter().map(|msg| {
        let line = msg.line.strip_suffix(b"\n").unwrap_or(&msg.line);
        (
            msg.time_unix_nano.div_euclid(1_000_000),
            String::from_utf8_lossy(line).into_owned(),
        )
    });
    let records: Vec<(i64, String)> = match multiline {
        None => lines.collect(),
        Some(start) => {
            let mut out: Vec<(i64, String)> = Vec::new();
            for (t, line) in lines {
                match out.last_mut() {
                    // Leading empty lines make no event.
                    Some(last) if last.1.is_empty() => *last = (t, line),
                    // Docker also starts a new event when this one would get too long.
                    Some((_, event))
                        if !start.is_match(&line)
                            && event.len() + 1 + line.len() <= MAX_EVENT_BYTES =>
                    {
                        event.push('\n');
                        event.push_str(&line);
                    }
                    _ => out.push((t, line)),
                }
            }
            out
        }
    };
    let mut out = Vec::with_capacity(records.len());
    for (timestamp_ms, text) in records {
        let mut rest: &str = &text;
        while !rest.is_empty() {
            let mut cut = rest.len().min(MAX_EVENT_BYTES);
            while !rest.is_char_boundary(cut) {
                cut -= 1;
            }
            out.push(Event {
                timestamp_ms,
                message: rest[..cut].to_string(),
            });
            rest = &rest[cut..];
        }
    }
    // Stable: lines of the same millisecond stay in order.
    out.sort_by_key(|e| e.timestamp_ms);
    out
}

/// Splits sorted `events` into requests within CloudWatch's limits.
pub fn split_puts(events: Vec<Event>) -> Vec<Vec<Event>> {
    let mut puts = Vec::new();
    let mut cur: Vec<Event> = Vec::new();
    let mut bytes = 0;
    for e in events {
        let full = cur.len() >= MAX_PUT_EVENTS
            || bytes + e.size() > MAX_PUT_BYTES
            || cur
                .first()
                .is_some_and(|f| e.timestamp_ms - f.timestamp_ms >= MAX_PUT_SPAN_MS);
        if full && !cur.is_empty() {
            puts.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += e.size();
        cur.push(e);
    }
    if !cur.is_empty() {
        puts.push(cur);
    }
    puts
}

/// Identifies a batch, so that a retried batch skips the requests that already went
/// through.
fn fingerprint(batch: &[Message]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    batch.len().hash(&mut h);
    for m in batch {
        m.time_unix_nano.hash(&mut h);
        m.stream.hash(&mut h);
        m.line.hash(&mut h);
    }
    h.finish()
}

/// A CloudWatch Logs error (or a failure to reach it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The AWS error type (`ResourceNotFoundException`); empty for transport errors.
    pub kind: String,
    pub message: String,
    /// The response body, for errors carrying more (`expectedSequenceToken`).
    pub body: Value,
}

impl ApiError {
    fn transport(message: String) -> ApiError {
        ApiError {
            kind: String::new(),
            message,
            body: Value::Null,
        }
    }

    fn into_io(self, action: &str, target: &str) -> io::Error {
        let kind = if self.kind.is_empty() {
            io::ErrorKind::ConnectionRefused
        } else {
            io::ErrorKind::Other
        };
        let msg = if self.kind.is_empty() {
            format!("awslogs: {action}: {}", self.message)
        } else {
            format!(
                "awslogs: {action}: {} from {target}: {}",
                self.kind, self.message
            )
        };
        io::Error::new(kind, msg)
    }
}

type Http = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A small CloudWatch Logs client: signed JSON 1.1 calls to one endpoint.
pub struct Client {
    http: Http,
    endpoint: Endpoint,
    region: String,
    creds: Credentials,
}

impl Client {
    pub fn new(endpoint: Endpoint, region: String, creds: Credentials) -> Result<Client> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| Error::InvalidArgument(format!("awslogs: TLS setup: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(https);
        Ok(Client {
            http,
            endpoint,
            region,
            creds,
        })
    }

    /// Calls `Logs_20140328.<action>` with `body`, returning the response's JSON.
    pub async fn call(&self, action: &str, body: &Value) -> std::result::Result<Value, ApiError> {
        let payload = serde_json::to_vec(body).expect("JSON values serialize");
        let target = format!("Logs_20140328.{action}");
        let amz_date = sigv4::amz_date(SystemTime::now());
        let mut headers: Vec<(&str, &str)> = vec![
            ("content-type", "application/x-amz-json-1.1"),
            ("host", &self.endpoint.host),
            ("x-amz-date", &amz_date),
            ("x-amz-target", &target),
        ];
        if let Some(token) = &self.creds.session_token {
            headers.push(("x-amz-security-token", token));
        }
        let authorization = sigv4::authorization(
            &sigv4::Request {
                method: "POST",
                path: "/",
                query: "",
                headers: &headers,
                payload: &payload,
            },
            &self.creds,
            &self.region,
            "logs",
            &amz_date,
        );
        let mut req = Request::post(&self.endpoint.url);
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let req = req
            .header("authorization", authorization)
            .header("user-agent", "berth-awslogs/0.1")
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| ApiError::transport(format!("bad request: {e}")))?;
        let url = &self.endpoint.url;
        let exchange = async {
            let resp = self.http.request(req).await.map_err(|e| {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg = format!("{msg}: {s}");
                    src = s.source();
                }
                ApiError::transport(format!("cannot reach {url}: {msg}"))
            })?;
            let status = resp.status();
            let error_header = resp
                .headers()
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| ApiError::transport(format!("reading the answer of {url}: {e}")))?
                .to_bytes();
            Ok::<_, ApiError>((status, error_header, body))
        };
        let (status, error_header, body) =
            tokio::time::timeout(REQUEST_TIMEOUT, exchange)
                .await
                .map_err(|_| ApiError::transport(format!("{url} did not answer in time")))??;
        let json: Value = if body.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        };
        if status.is_success() {
            return Ok(json);
        }
        Err(api_error(status, error_header.as_deref(), json, &body))
    }
}

/// The error of a JSON 1.1 answer: `__type` (`com.amazonaws.logs#Foo` or `Foo`) or the
/// `x-amzn-ErrorType` header, and `message`.
fn api_error(status: http::StatusCode, header: Option<&str>, json: Value, raw: &[u8]) -> ApiError {
    let strip = |t: &str| {
        let t = t.split(':').next().unwrap_or(t);
        t.rsplit('#').next().unwrap_or(t).to_string()
    };
    let kind = json
        .get("__type")
        .and_then(Value::as_str)
        .map(strip)
        .or_else(|| header.map(strip))
        .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
    let message = json
        .get("message")
        .or_else(|| json.get("Message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(raw).trim().to_string();
            if text.is_empty() {
                status.to_string()
            } else {
                text.chars().take(512).collect()
            }
        });
    ApiError {
        kind,
        message,
        body: json,
    }
}

/// The [`Sink`] of one container's stream.
pub struct AwsLogsSink {
    client: Client,
    group: String,
    stream: String,
    create_group: bool,
    create_stream: bool,
    /// The group and stream were created (or creating them was not asked for).
    ready: bool,
    /// From the last answer; modern CloudWatch ignores it, older APIs want it.
    sequence_token: Option<String>,
    /// (fingerprint of a batch, requests of it already accepted).
    progress: Option<(u64, usize)>,
    limits: BatchLimits,
    multiline: Option<regex::Regex>,
}

impl AwsLogsSink {
    pub fn new(opts: Options, creds: Credentials, stream: String) -> Result<AwsLogsSink> {
        let multiline = match &opts.multiline {
            Some(re) => Some(regex::Regex::new(re).map_err(|e| {
                Error::InvalidArgument(format!("awslogs: bad multi-line pattern {re:?}: {e}"))
            })?),
            None => None,
        };
        let client = Client::new(opts.endpoint, opts.region, creds)?;
        Ok(AwsLogsSink {
            client,
            group: opts.group,
            stream,
            create_group: opts.create_group,
            create_stream: opts.create_stream,
            ready: !(opts.create_group || opts.create_stream),
            sequence_token: None,
            progress: None,
            limits: BatchLimits {
                max_lines: MAX_PUT_EVENTS,
                max_bytes: MAX_PUT_BYTES,
                linger: opts.flush_interval,
            },
            multiline,
        })
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Creates the group and the stream as asked (existing ones are fine).
    async fn prepare(&mut self) -> io::Result<()> {
        let names = json!({"logGroupName": self.group});
        if self.create_group {
            self.create("CreateLogGroup", &names).await?;
        }
        if self.create_stream {
            let body = json!({"logGroupName": self.group, "logStreamName": self.stream});
            self.create("CreateLogStream", &body).await?;
        }
        self.ready = true;
        Ok(())
    }

    async fn create(&self, action: &str, body: &Value) -> io::Result<()> {
        match self.client.call(action, body).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind == "ResourceAlreadyExistsException" => Ok(()),
            Err(e) => Err(e.into_io(action, &self.client.endpoint.url)),
        }
    }

    /// One `PutLogEvents`.
    async fn put(&mut self, events: &[Event]) -> io::Result<()> {
        let log_events: Vec<Value> = events
            .iter()
            .map(|e| json!({"timestamp": e.timestamp_ms, "message": e.message}))
            .collect();
        // One more try when an old-style API wants another sequence token.
        for _ in 0..2 {
            let mut body = json!({
                "logGroupName": self.group,
                "logStreamName": self.stream,
                "logEvents": log_events,
            });
            if let Some(token) = &self.sequence_token {
                body["sequenceToken"] = json!(token);
            }
            match self.client.call("PutLogEvents", &body).await {
                Ok(answer) => {
                    self.sequence_token = answer
                        .get("nextSequenceToken")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    if let Some(rejected) = answer.get("rejectedLogEventsInfo") {
                        tracing::warn!(
                            group = %self.group,
                            stream = %self.stream,
                            %rejected,
                            "awslogs: CloudWatch rejected some events (too old or too new)"
                        );
                    }
                    return Ok(());
                }
                Err(e) if e.kind == "DataAlreadyAcceptedException" => {
                    self.sequence_token = expected_token(&e);
                    return Ok(());
                }
                Err(e) if e.kind == "InvalidSequenceTokenException" => {
                    self.sequence_token = expected_token(&e);
                    continue;
                }
                Err(e) => {
                    if e.kind == "ResourceNotFoundException"
                        && (self.create_group || self.create_stream)
                    {
                        // Deleted meanwhile: create again before the retry.
                        self.ready = false;
                    }
                    return Err(e.into_io("PutLogEvents", &self.client.endpoint.url));
                }
            }
        }
        Err(io::Error::other(
            "awslogs: PutLogEvents: InvalidSequenceTokenException twice",
        ))
    }

    async fn send_batch(&mut self, batch: &[Message]) -> io::Result<()> {
        if !self.ready {
            self.prepare().await?;
        }
        let puts = split_puts(events(batch, self.multiline.as_ref()));
        let fp = fingerprint(batch);
        let done = match self.progress {
            Some((f, n)) if f == fp => n,
            _ => 0,
        };
        for (i, put) in puts.iter().enumerate().skip(done) {
            self.put(put).await?;
            self.progress = Some((fp, i + 1));
        }
        self.progress = None;
        Ok(())
    }
}

/// `expectedSequenceToken` of an error answer, or `null` (no token expected).
fn expected_token(e: &ApiError) -> Option<String> {
    e.body
        .get("expectedSequenceToken")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            // Older answers only name it in the message: "... is: 4959...".
            e.message
                .rsplit(' ')
                .next()
                .filter(|t| t.len() > 8 && t.chars().all(|c| c.is_ascii_digit()))
                .map(str::to_string)
        })
}

impl Sink for AwsLogsSink {
    fn name(&self) -> &'static str {
        NAME
    }

    fn send<'a>(
        &'a mut self,
        batch: &'a [Message],
    ) -> impl std::future::Future<Output = io::Result<()>> + Send + 'a {
        self.send_batch(batch)
    }

    fn batch_limits(&self) -> BatchLimits {
        self.limits
    }
}

#[cfg(test)]
mod tests;
