//! The shim's own span, sent without an OpenTelemetry SDK: one small OTLP/HTTP request
//! (`POST /v1/traces`, the protobuf-JSON encoding of an ExportTraceServiceRequest) over a
//! plain `TcpStream`, only when the OTLP variables are set.
//!
//! The span (`shim start`: from the shim's start to its report, i.e. the container
//! created and, unless it waits for an attach, its process exec'd) is a child of the
//! supervisor's span given in `TRACEPARENT`. Where it goes, first match:
//! 1. `BERTH_OTLP_HTTP_ENDPOINT` (`http://host:port`, berth's own): `<it>/v1/traces`;
//! 2. `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as is, when the traces protocol
//!    (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`) is
//!    `http/json` or `http/protobuf`;
//! 3. the host of the gRPC endpoint the services use (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//!    else `OTEL_EXPORTER_OTLP_ENDPOINT`) with port 4318, OTLP/HTTP's standard port, and
//!    path `/v1/traces`: a collector normally listens on both 4317 and 4318.
//!
//! Only `http://` is spoken. Nothing may hold the container: connecting and each write or
//! read give up after a fraction of a second, and every error is ignored.
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::Duration;

use crate::rfc3339::now_unix_nano;

const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
const IO_TIMEOUT: Duration = Duration::from_millis(300);
/// OTLP/HTTP's standard port.
const HTTP_PORT: u16 = 4318;

static START: OnceLock<i64> = OnceLock::new();

/// Notes when the shim started (call first thing in `main`).
pub fn mark_start() {
    START.get_or_init(now_unix_nano);
}

/// Where spans go: `(host, port, path)`, or `None` when nothing is to be exported.
pub fn endpoint(env: impl Fn(&str) -> Option<String>) -> Option<(String, u16, String)> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    let traces = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let grpc = traces
        .clone()
        .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"));
    // Nothing is exported unless the services export too.
    grpc.as_ref()?;
    if let Some(base) = var("BERTH_OTLP_HTTP_ENDPOINT") {
        let (host, port, _) = split_url(&base)?;
        return Some((host, port, "/v1/traces".into()));
    }
    let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_default();
    if let (Some(url), true) = (&traces, protocol.trim().starts_with("http/")) {
        let (host, port, path) = split_url(url)?;
        let path = if path == "/" {
            "/v1/traces".into()
        } else {
            path
        };
        return Some((host, port, path));
    }
    let (host, _, _) = split_url(&grpc?)?;
    Some((host, HTTP_PORT, "/v1/traces".into()))
}

/// `http://host[:port][/path]` → (host, port, path); IPv6 hosts keep their brackets.
fn split_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.trim().strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = if let Some(end) = authority.find(']') {
        let host = &authority[..=end];
        let port = authority[end + 1..].strip_prefix(':');
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 80,
    };
    Some((host.to_string(), port, path))
}

/// `TRACEPARENT` (`00-<trace id>-<parent span id>-<flags>`) → (trace id, parent id).
fn parse_traceparent(value: &str) -> Option<(String, String)> {
    let mut parts = value.trim().split('-');
    let (_version, trace, parent) = (parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(trace, 32) && hex(parent, 16) && trace.bytes().any(|b| b != b'0'))
        .then(|| (trace.to_ascii_lowercase(), parent.to_ascii_lowercase()))
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), bytes, 0) };
    if n != bytes as isize {
        // Never zero (an invalid id): time and pid will do.
        let seed = ((now_unix_nano() as u64) ^ (u64::from(std::process::id()) << 32)) | 1;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (seed.rotate_left(i as u32 * 8) & 0xff) as u8 | 1;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The ExportTraceServiceRequest (protobuf JSON) of one span.
pub fn request_body(
    service_name: &str,
    name: &str,
    traceparent: Option<&str>,
    start_nanos: i64,
    end_nanos: i64,
    attributes: &[(&str, &str)],
    error: Option<&str>,
) -> String {
    let (trace_id, parent) = match traceparent.and_then(parse_traceparent) {
        Some((trace, parent)) => (trace, parent),
        None => (random_hex(16), String::new()),
    };
    let attributes: Vec<_> = attributes
        .iter()
        .map(|(k, v)| serde_json::json!({"key": k, "value": {"stringValue": v}}))
        .collect();
    let status = match error {
        Some(message) => serde_json::json!({"code": 2, "message": message}),
        None => serde_json::json!({}),
    };
    serde_json::json!({
        "resourceSpans": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": service_name}}
            ]},
            "scopeSpans": [{
                "scope": {"name": "berth-shim"},
                "spans": [{
                    "traceId": trace_id,
                    "spanId": random_hex(8),
                    "parentSpanId": parent,
                    "name": name,
                    "kind": 1,
                    "startTimeUnixNano": start_nanos.max(0).to_string(),
                    "endTimeUnixNano": end_nanos.max(0).to_string(),
                    "attributes": attributes,
                    "status": status,
                }]
            }]
        }]
    })
    .to_string()
}

/// Sends the `shim start` span of container `id`, ending now, if export is configured.
pub fn export_start(id: &str, error: Option<&str>) {
    export("shim start", &[("container_id", id)], error);
}

/// Sends the `shim exec` span of exec `exec_id` in container `id`, ending now.
pub fn export_exec(id: &str, exec_id: &str, error: Option<&str>) {
    export(
        "shim exec",
        &[("container_id", id), ("exec_id", exec_id)],
        error,
    );
}

/// Sends one span named `name` from the shim's start until now, if export is configured.
fn export(name: &str, attributes: &[(&str, &str)], error: Option<&str>) {
    let env = |name: &str| std::env::var(name).ok();
    let Some((host, port, path)) = endpoint(env) else {
        return;
    };
    let service = env("OTEL_SERVICE_NAME")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "berth-shim".into());
    let end = now_unix_nano();
    let start = START.get().copied().unwrap_or(end);
    let body = request_body(
        &service,
        name,
        env("TRACEPARENT").as_deref(),
        start,
        end,
        attributes,
        error,
    );
    let _ = post(&host, port, &path, &body);
}

/// One `POST` with `Connection: close`; the answer's status line is read and dropped.
fn post(host: &str, port: u16, path: &str, body: &str) -> std::io::Result<()> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addr = (bare, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut answer = [0u8; 64];
    let _ = stream.read(&mut answer)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn endpoints() {
        assert_eq!(endpoint(env_of(&[])), None);
        let grpc = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://10.1.2.3:4317")];
        assert_eq!(
            endpoint(env_of(&grpc)),
            Some(("10.1.2.3".into(), 4318, "/v1/traces".into()))
        );
        let disabled = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://10.1.2.3:4317"),
            ("OTEL_SDK_DISABLED", "true"),
        ];
        assert_eq!(endpoint(env_of(&disabled)), None);
        let http = [
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://[::1]:9999/x/traces",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
        ];
        assert_eq!(
            endpoint(env_of(&http)),
            Some(("[::1]".into(), 9999, "/x/traces".into()))
        );
        let berth = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
            ("BERTH_OTLP_HTTP_ENDPOINT", "http://127.0.0.1:5555"),
        ];
        assert_eq!(
            endpoint(env_of(&berth)),
            Some(("127.0.0.1".into(), 5555, "/v1/traces".into()))
        );
    }

    #[test]
    fn body_carries_the_parent() {
        let body = request_body(
            "berth-shim",
            "shim start",
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            1,
            2,
            &[("container_id", "abc")],
            None,
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(span["parentSpanId"], "b7ad6b7169203331");
        assert_eq!(span["spanId"].as_str().unwrap().len(), 16);
        assert_eq!(span["attributes"][0]["value"]["stringValue"], "abc");
        assert_eq!(
            v["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
            "berth-shim"
        );
        // No (or a bad) parent: a new trace.
        let body = request_body("s", "n", Some("garbage"), 1, 2, &[], Some("failed"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let span = &v["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"].as_str().unwrap().len(), 32);
        assert_eq!(span["parentSpanId"], "");
        assert_eq!(span["status"]["code"], 2);
    }

    #[test]
    fn a_collector_that_is_down_costs_nothing() {
        // A closed loopback port: refused at once, error ignored.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let t = std::time::Instant::now();
        assert!(post("127.0.0.1", port, "/v1/traces", "{}").is_err());
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
