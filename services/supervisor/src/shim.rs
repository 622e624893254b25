//! Spawning `berth-shim` and reading its one-line JSON report.
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::error::{Error, Result};

/// How long a shim may take to set the container up and report.
const REPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// The shim binary: `$BERTH_SHIM`, else `berth-shim` next to the current executable.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("BERTH_SHIM").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .map(|exe| exe.with_file_name("berth-shim"))
        .unwrap_or_else(|_| PathBuf::from("berth-shim"))
}

#[derive(Debug, Clone)]
pub struct Args {
    pub id: String,
    pub bundle: PathBuf,
    pub attach_socket: PathBuf,
    pub log_socket: PathBuf,
    pub wait_attach: bool,
}

impl Args {
    pub fn to_vec(&self) -> Vec<std::ffi::OsString> {
        let mut v: Vec<std::ffi::OsString> = vec![
            "--id".into(),
            self.id.clone().into(),
            "--bundle".into(),
            self.bundle.clone().into(),
            "--attach-socket".into(),
            self.attach_socket.clone().into(),
            "--log-socket".into(),
            self.log_socket.clone().into(),
        ];
        if self.wait_attach {
            v.push("--wait-attach".into());
        }
        v
    }
}

/// `berth-shim exec …`: one more process in a running container.
#[derive(Debug, Clone)]
pub struct ExecArgs {
    pub id: String,
    pub exec_id: String,
    pub bundle: PathBuf,
    /// Host PID of the container's first process.
    pub pid: i32,
    pub process: PathBuf,
    pub user: String,
    pub attach_socket: PathBuf,
    pub wait_attach: bool,
}

impl ExecArgs {
    pub fn to_vec(&self) -> Vec<std::ffi::OsString> {
        let mut v: Vec<std::ffi::OsString> = vec![
            "exec".into(),
            "--id".into(),
            self.id.clone().into(),
            "--exec-id".into(),
            self.exec_id.clone().into(),
            "--bundle".into(),
            self.bundle.clone().into(),
            "--pid".into(),
            self.pid.to_string().into(),
            "--process".into(),
            self.process.clone().into(),
            "--user".into(),
            self.user.clone().into(),
            "--attach-socket".into(),
            self.attach_socket.clone().into(),
        ];
        if self.wait_attach {
            v.push("--wait-attach".into());
        }
        v
    }
}

/// The shim's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Started { shim_pid: i32, pid: i32 },
    Failed { exit_code: i32, error: String },
}

#[derive(Deserialize)]
struct Raw {
    ok: bool,
    #[serde(default)]
    shim_pid: Option<i32>,
    #[serde(default)]
    pid: Option<i32>,
    #[serde(default)]
    exit_code: Option<i32>,
    #[serde(default)]
    error: Option<String>,
}

pub fn parse_report(line: &str) -> Result<Report> {
    let bad = |why: String| {
        Error::Internal(format!(
            "bad report from berth-shim ({why}): {}",
            line.trim()
        ))
    };
    let raw: Raw = serde_json::from_str(line.trim()).map_err(|e| bad(e.to_string()))?;
    if raw.ok {
        match (raw.shim_pid, raw.pid) {
            (Some(shim_pid), Some(pid)) if shim_pid > 0 && pid > 0 => {
                Ok(Report::Started { shim_pid, pid })
            }
            _ => Err(bad("missing shim_pid or pid".into())),
        }
    } else {
        Ok(Report::Failed {
            exit_code: raw.exit_code.unwrap_or(126),
            error: raw
                .error
                .unwrap_or_else(|| "the shim failed without a message".into()),
        })
    }
}

/// Runs the shim (which daemonizes) and returns its report. The shim's stderr goes to
/// `<bundle>/shim.log`: it outlives the supervisor, so it must not hold the supervisor's
/// stderr.
pub async fn spawn(binary: &Path, args: &Args) -> Result<Report> {
    spawn_with(binary, &args.bundle, args.to_vec()).await
}

/// Runs the shim with `args` (its log in `<bundle>/shim.log`) and returns its report.
pub async fn spawn_with(
    binary: &Path,
    bundle: &Path,
    args: Vec<std::ffi::OsString>,
) -> Result<Report> {
    let log_path = bundle.join("shim.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io(format!("open {}", log_path.display()), e))?;
    let mut command = tokio::process::Command::new(binary);
    // The shim reports its own span, a child of the caller's, when spans are exported.
    command.env_remove("TRACEPARENT");
    if let Some(traceparent) = berth_common::telemetry::traceparent() {
        command.env("TRACEPARENT", traceparent);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| Error::Internal(format!("run {}: {e}", binary.display())))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Internal("shim stdout".into()))?;
    let mut line = String::new();
    let read =
        tokio::time::timeout(REPORT_TIMEOUT, BufReader::new(stdout).read_line(&mut line)).await;
    let report = match read {
        Ok(Ok(n)) if n > 0 => parse_report(&line),
        Ok(Ok(_)) => Err(Error::Internal("berth-shim exited without a report".into())),
        Ok(Err(e)) => Err(Error::Internal(format!("read berth-shim report: {e}"))),
        Err(_) => {
            let _ = child.start_kill();
            Err(Error::Internal(format!(
                "berth-shim did not report within {REPORT_TIMEOUT:?}"
            )))
        }
    };
    // The parent exits right after printing; reap it.
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(Ok(status)) if !status.success() && report.is_err() => {
            return Err(Error::Internal(format!(
                "berth-shim failed ({status}) without a report"
            )));
        }
        Ok(_) => {}
        Err(_) => tracing::warn!("berth-shim parent did not exit after reporting"),
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_and_failed_reports_parse() {
        assert_eq!(
            parse_report("{\"ok\":true,\"shim_pid\":1234,\"pid\":1240}\n").unwrap(),
            Report::Started {
                shim_pid: 1234,
                pid: 1240
            }
        );
        assert_eq!(
            parse_report(r#"{"ok":false,"exit_code":127,"error":"exec: \"nosuch\": executable file not found in $PATH"}"#).unwrap(),
            Report::Failed { exit_code: 127, error: "exec: \"nosuch\": executable file not found in $PATH".into() }
        );
        assert_eq!(
            parse_report(r#"{"ok":false}"#).unwrap(),
            Report::Failed {
                exit_code: 126,
                error: "the shim failed without a message".into()
            }
        );
    }

    #[test]
    fn malformed_reports_are_errors() {
        assert!(parse_report("").is_err());
        assert!(parse_report("hello").is_err());
        assert!(parse_report(r#"{"ok":true,"pid":3}"#).is_err());
    }

    #[test]
    fn args_follow_the_contract() {
        let a = Args {
            id: "abc".into(),
            bundle: "/b".into(),
            attach_socket: "/r/shim/abc.sock".into(),
            log_socket: "/r/log-router.ingest.sock".into(),
            wait_attach: true,
        };
        let v: Vec<String> = a
            .to_vec()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            v,
            [
                "--id",
                "abc",
                "--bundle",
                "/b",
                "--attach-socket",
                "/r/shim/abc.sock",
                "--log-socket",
                "/r/log-router.ingest.sock",
                "--wait-attach"
            ]
        );
    }
}
