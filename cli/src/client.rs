//! Connecting to the engine, and turning errors into messages and exit codes.
use std::path::PathBuf;

use anyhow::{bail, Result};
use berth_common::{Config, Service};
use berth_proto::engine::v1::engine_client::EngineClient;
use tonic::{Code, Status};

/// The engine's client; its channel carries the trace context of the command's span.
pub type Engine = EngineClient<berth_common::client::Traced>;

/// Where the engine is: `-H/--host` (or `BERTH_HOST`) as `unix:///path` or a path, or
/// `tcp://host:port` (kept as is, reached with mutual TLS by [`connect`]), else the
/// configured engine socket (`BERTH_ENGINE_SOCKET`, `BERTH_RUN`).
pub fn engine_socket(host: Option<&str>) -> Result<PathBuf> {
    match host.filter(|h| !h.is_empty()) {
        None => Ok(Config::from_env().socket(Service::Engine)),
        Some(h) => {
            if let Some(path) = h.strip_prefix("unix://") {
                if path.is_empty() {
                    bail!("invalid host {h:?}: the socket path is empty");
                }
                Ok(PathBuf::from(path))
            } else if h.starts_with('/') {
                Ok(PathBuf::from(h))
            } else if h.starts_with("tcp://") {
                if let Err(e) = berth_common::config::parse_tcp_url(h) {
                    bail!("invalid host {h:?}: {e}");
                }
                Ok(PathBuf::from(h))
            } else {
                bail!("invalid host {h:?}: use unix:///path or tcp://host:port")
            }
        }
    }
}

/// A lazy client: the connection is made by the first call. `tcp://host:port` (from
/// [`engine_socket`]) is reached with mutual TLS: `ca.pem`, `client.pem` and
/// `client-key.pem` from the TLS directory (`BERTH_TLS_DIR`, else berth.toml's
/// `[tls] dir`, else /etc/berth/tls), each overridden by `BERTH_TLS_CACERT`,
/// `BERTH_TLS_CERT` and `BERTH_TLS_KEY`.
pub fn connect(socket: &std::path::Path) -> Engine {
    let channel = match tcp_host(socket) {
        None => berth_common::client::unix_channel(socket),
        Some(url) => berth_common::tls::remote_channel(url, &client_files())
            .unwrap_or_else(|e| berth_common::client::failing_channel(format!("{e:#}"))),
    };
    EngineClient::new(berth_common::client::traced(channel)).max_decoding_message_size(64 << 20)
}

/// The `tcp://` address [`engine_socket`] returned, if it is one.
fn tcp_host(socket: &std::path::Path) -> Option<&str> {
    socket.to_str().filter(|s| s.starts_with("tcp://"))
}

/// The CLI's TLS files: see [`connect`].
fn client_files() -> berth_common::tls::ClientFiles {
    let file = berth_common::config::FileConfig::load().unwrap_or_default();
    let mut files = berth_common::tls::ClientFiles::in_dir(&file.tls_dir());
    for (var, path) in [
        ("BERTH_TLS_CACERT", &mut files.ca),
        ("BERTH_TLS_CERT", &mut files.cert),
        ("BERTH_TLS_KEY", &mut files.key),
    ] {
        if let Some(value) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            *path = PathBuf::from(value);
        }
    }
    files
}

/// True when `status` is the client failing to reach the engine (the channel's connect
/// error, which carries its cause), not a status the engine sent.
pub fn is_connect_error(status: &Status) -> bool {
    use std::error::Error;
    status.code() == Code::Unavailable && status.source().is_some()
}

/// How the command failed, for the message and exit code.
pub struct Failure {
    pub message: String,
    pub code: i32,
}

/// Maps an error to what the user sees. `prefix` is "berth: " for run/create (as Docker
/// prints `docker: Error response from daemon: ...`), empty otherwise.
pub fn failure(err: &anyhow::Error, socket: &std::path::Path, prefix: &str) -> Failure {
    if let Some(status) = err.downcast_ref::<Status>() {
        // Over TCP a refused certificate shows only once the first call is made (TLS 1.3
        // ends the handshake before the server checks the client), as a transport error:
        // any status with a source is the connection's, never one the engine sent.
        let tcp = tcp_host(socket).filter(|_| std::error::Error::source(status).is_some());
        if let Some(url) = tcp {
            // The cause (refused, TLS, certificate) is what the user needs.
            let mut cause = String::new();
            let mut source = std::error::Error::source(status);
            while let Some(e) = source {
                let text = e.to_string();
                if !cause.contains(&text) {
                    cause.push_str(": ");
                    cause.push_str(&text);
                }
                source = e.source();
            }
            return Failure {
                message: format!("Cannot connect to the berth engine at {url}{cause}"),
                code: 125,
            };
        }
        if is_connect_error(status) {
            return Failure {
                message: format!(
                    "Cannot connect to the berth engine at unix://{}. Is the engine running? \
                     (start it with: just up)",
                    socket.display()
                ),
                code: 125,
            };
        }
        let code = berth_common::status::exit_code_of(status).unwrap_or(125);
        let mut message = status.message().to_string();
        if message.is_empty() {
            message = format!("{:?}", status.code());
        }
        // Context added by the CLI (e.g. "stopping web") goes before the daemon's words.
        let text = if err.chain().count() > 1 {
            format!("{prefix}{err}: Error response from daemon: {message}")
        } else {
            format!("{prefix}Error response from daemon: {message}")
        };
        return Failure {
            message: text,
            code,
        };
    }
    Failure {
        message: format!("{prefix}{err:#}"),
        code: 125,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(
            engine_socket(Some("unix:///tmp/e.sock")).unwrap(),
            PathBuf::from("/tmp/e.sock")
        );
        assert_eq!(
            engine_socket(Some("/tmp/e.sock")).unwrap(),
            PathBuf::from("/tmp/e.sock")
        );
        assert_eq!(
            engine_socket(Some("tcp://1.2.3.4:2376")).unwrap(),
            PathBuf::from("tcp://1.2.3.4:2376")
        );
        let err = engine_socket(Some("tcp://1.2.3.4"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tcp://1.2.3.4"), "{err}");
        let err = engine_socket(Some("http://1.2.3.4:2375"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("http://1.2.3.4:2375"), "{err}");
        assert!(engine_socket(Some("unix://")).is_err());
    }

    #[test]
    fn failures() {
        let sock = std::path::Path::new("/run/berth/engine.sock");
        let f = failure(
            &Status::not_found("no such container: web").into(),
            sock,
            "",
        );
        assert_eq!(
            f.message,
            "Error response from daemon: no such container: web"
        );
        assert_eq!(f.code, 125);
        let st = berth_common::status::with_exit_code(
            "exec: \"nosuch\": executable file not found",
            127,
        );
        let f = failure(&st.into(), sock, "berth: ");
        assert!(
            f.message
                .starts_with("berth: Error response from daemon: exec"),
            "{}",
            f.message
        );
        assert_eq!(f.code, 127);
        let f = failure(
            &anyhow::anyhow!("invalid volume specification: 'x'"),
            sock,
            "",
        );
        assert_eq!(f.message, "invalid volume specification: 'x'");
        assert_eq!(f.code, 125);
        // Over TCP, a transport error (a refused certificate shows as one) names the host
        // and its cause; a status the engine sent is its message as over Unix.
        let tcp = std::path::Path::new("tcp://10.0.0.1:7070");
        let refused = Status::from_error(Box::new(std::io::Error::other(
            "received fatal alert: CertificateRequired",
        )));
        let f = failure(&refused.into(), tcp, "");
        assert_eq!(f.code, 125);
        assert!(
            f.message
                .starts_with("Cannot connect to the berth engine at tcp://10.0.0.1:7070: ")
                && f.message.contains("CertificateRequired"),
            "{}",
            f.message
        );
        let f = failure(&Status::not_found("no such container: web").into(), tcp, "");
        assert_eq!(
            f.message,
            "Error response from daemon: no such container: web"
        );
        // A status the engine sent has no source: not a connect error.
        assert!(!is_connect_error(&Status::unavailable(
            "supervisor is down"
        )));
    }
}
