//! rotel, a real OpenTelemetry collector (PyPI `rotel`, which ships the `rotel-agent`
//! binary; `deploy/install-deps.sh` installs it), as the OTLP receiver of the tracing
//! tests: gRPC and HTTP receivers on free loopback ports, a blackhole exporter, and its
//! detailed debug log of received spans on stdout, which [`Rotel::spans`] parses. The
//! collector is killed by its PID on drop.
use std::{
    collections::BTreeMap,
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{eventually, moto::free_port};

pub struct Rotel {
    child: Child,
    dir: tempfile::TempDir,
    pub grpc_port: u16,
    pub http_port: u16,
}

/// One received span.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_id: String,
    /// The resource's `service.name`.
    pub service: String,
    pub name: String,
    /// Attribute values as rotel prints them inside `Str(…)`, `Int(…)`, ….
    pub attributes: BTreeMap<String, String>,
}

/// The collector binary: `$BERTH_ROTEL`, `rotel` or `rotel-agent` on the PATH, else the
/// one inside the installed Python package.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_ROTEL").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    for name in ["rotel", "rotel-agent"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|p| !p.is_empty());
        if let Some(p) = found {
            return PathBuf::from(p);
        }
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ])
        .output()
        .expect("run python3 to find rotel");
    assert!(
        out.status.success(),
        "rotel is not installed (deploy/install-deps.sh installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

impl Rotel {
    /// Starts the collector and waits until both receivers accept connections.
    pub fn start() -> Rotel {
        let dir = tempfile::tempdir().expect("temp dir");
        let (grpc_port, http_port) = loop {
            let (g, h) = (free_port(), free_port());
            if g != h {
                break (g, h);
            }
        };
        let out = std::fs::File::create(dir.path().join("rotel.out")).expect("rotel log");
        let err = std::fs::File::create(dir.path().join("rotel.err")).expect("rotel log");
        let child = Command::new(binary())
            .arg("start")
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc_port}")])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http_port}")])
            .args(["--exporter", "blackhole"])
            .args(["--debug-log", "traces"])
            .args(["--debug-log-verbosity", "detailed"])
            .args(["--batch-timeout", "50ms"])
            .arg("--pid-file")
            .arg(dir.path().join("rotel.pid"))
            .arg("--log-file")
            .arg(dir.path().join("rotel.log"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start rotel (deploy/install-deps.sh installs it)");
        let mut rotel = Rotel {
            child,
            dir,
            grpc_port,
            http_port,
        };
        let up = eventually(Duration::from_secs(30), || {
            if let Ok(Some(status)) = rotel.child.try_wait() {
                panic!("rotel exited at start: {status}: {}", rotel.output());
            }
            TcpStream::connect(("127.0.0.1", grpc_port)).is_ok()
                && TcpStream::connect(("127.0.0.1", http_port)).is_ok()
        });
        assert!(up, "rotel did not come up: {}", rotel.output());
        rotel
    }

    /// `http://127.0.0.1:P`, the OTLP/gRPC receiver (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// `http://127.0.0.1:Q`, the OTLP/HTTP receiver (`BERTH_OTLP_HTTP_ENDPOINT`).
    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// What the collector printed so far (its debug log of spans, then its stderr).
    pub fn output(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name));
        format!(
            "{}{}",
            read("rotel.out").unwrap_or_default(),
            read("rotel.err").unwrap_or_default()
        )
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        parse(&std::fs::read_to_string(self.dir.path().join("rotel.out")).unwrap_or_default())
    }

    /// The spans once `done` holds for them (or after `timeout`, as they are then).
    pub fn wait_for(&self, timeout: Duration, mut done: impl FnMut(&[Span]) -> bool) -> Vec<Span> {
        let mut spans = Vec::new();
        eventually(timeout, || {
            spans = self.spans();
            done(&spans)
        });
        spans
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `key: Type(value)` → (key, value).
fn attribute(line: &str) -> Option<(String, String)> {
    let (key, value) = line.trim().strip_prefix("-> ")?.split_once(": ")?;
    let value = match value.split_once('(') {
        Some((_, v)) => v.strip_suffix(')').unwrap_or(v),
        None => value,
    };
    Some((key.to_string(), value.to_string()))
}

/// Parses rotel's detailed debug log (`ResourceSpans #n`, `Span #n` blocks).
pub fn parse(text: &str) -> Vec<Span> {
    #[derive(PartialEq)]
    enum In {
        Other,
        Resource,
        Span,
        SpanAttributes,
    }
    let mut spans: Vec<Span> = Vec::new();
    let mut service = String::new();
    let mut state = In::Other;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("ResourceSpans #") {
            service.clear();
            state = In::Other;
        } else if trimmed == "Resource attributes:" {
            state = In::Resource;
        } else if trimmed.starts_with("ScopeSpans #") {
            state = In::Other;
        } else if trimmed.starts_with("Span #") {
            spans.push(Span {
                service: service.clone(),
                ..Span::default()
            });
            state = In::Span;
        } else if trimmed == "Attributes:" && state == In::Span {
            state = In::SpanAttributes;
        } else if let Some((key, value)) = attribute(trimmed) {
            match state {
                In::Resource if key == "service.name" => service = value,
                In::SpanAttributes => {
                    if let Some(span) = spans.last_mut() {
                        span.attributes.insert(key, value);
                    }
                }
                _ => {}
            }
        } else if state == In::Span {
            let Some((key, value)) = trimmed.split_once(':') else {
                continue;
            };
            let value = value.trim().to_string();
            let Some(span) = spans.last_mut() else {
                continue;
            };
            match key.trim() {
                "Trace ID" => span.trace_id = value,
                "Parent ID" => span.parent_id = value,
                "ID" => span.span_id = value,
                "Name" => span.name = value,
                _ => {}
            }
        } else if state == In::SpanAttributes && !trimmed.starts_with("->") {
            // Events or links follow the attributes.
            state = In::Other;
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_the_debug_log() {
        let text = "\x1b[2m2026\x1b[0m INFO Starting Rotel.
ResourceSpans #0
Resource SchemaURL: 
Resource attributes:
     -> service.name: Str(berth-shim)
ScopeSpans #0
ScopeSpans SchemaURL: 
InstrumentationScope berth-shim 
Span #0
    Trace ID       : 0af7651916cd43dd8448eb211c80319c
    Parent ID      : 00f067aa0ba902b7
    ID             : b7ad6b7169203331
    Name           : shim start
    Kind           : SPAN_KIND_INTERNAL
Start time: 1700000000000000000
End time: 1700000000100000000
    Status code    : STATUS_CODE_UNSET
    Status message : 
Attributes:
     -> container_id: Str(abc123)
     -> busy_ns: Int(42)
Span #1
    Trace ID       : 0af7651916cd43dd8448eb211c80319c
    Parent ID      : 
    ID             : 00f067aa0ba902b7
    Name           : berth run
";
        let spans = super::parse(text);
        assert_eq!(spans.len(), 2, "{spans:?}");
        assert_eq!(spans[0].service, "berth-shim");
        assert_eq!(spans[0].trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(spans[0].parent_id, "00f067aa0ba902b7");
        assert_eq!(spans[0].span_id, "b7ad6b7169203331");
        assert_eq!(spans[0].name, "shim start");
        assert_eq!(spans[0].attributes["container_id"], "abc123");
        assert_eq!(spans[0].attributes["busy_ns"], "42");
        assert_eq!(spans[1].parent_id, "");
        assert_eq!(spans[1].service, "berth-shim");
        assert_eq!(spans[1].name, "berth run");
    }
}
