//! Exec: one more process in a running container. The process is described by an OCI
//! `Process` derived from the container's (`<bundle>/exec-<eid>.process.json`), run by
//! `berth-shim exec`, and relayed exactly like an attach. The `exec-<eid>.*` files and
//! the socket are removed once the exec's shim has gone.
use std::{path::Path, time::Duration};

use berth_common::ids;
use berth_proto::supervisor::v1::{attach_input, exec_input, AttachInput, ExecInput, ExecStart};
use berth_wire::AttachFlags;
use oci_spec::runtime::{Process, Spec};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use crate::{
    attach::{self, ExitSource, Output},
    error::{Error, IoContext, Result},
    lifecycle::Supervisor,
    shim, spec,
    watch::PidFd,
};

/// How long the exec's files are kept after its shim has gone (for a late reader of
/// `exec-<eid>.json`).
const CLEANUP_DELAY: Duration = Duration::from_secs(2);

/// The container's environment with `overrides` replacing same-named variables (and
/// appended otherwise); `TERM=xterm` with a tty unless set.
pub fn merge_env(base: &[String], overrides: &[String], tty: bool) -> Vec<String> {
    let key = |kv: &str| kv.split_once('=').map(|(k, _)| k).unwrap_or(kv).to_string();
    let mut out: Vec<String> = base.to_vec();
    for kv in overrides {
        let k = key(kv);
        match out.iter_mut().find(|e| key(e) == k) {
            Some(slot) => *slot = kv.clone(),
            None => out.push(kv.clone()),
        }
    }
    if tty && !out.iter().any(|e| key(e) == "TERM") {
        out.push("TERM=xterm".into());
    }
    out
}

/// The exec's OCI process, from the container's.
pub fn exec_process(container: &Process, start: &ExecStart) -> Process {
    let mut p = container.clone();
    p.set_args(Some(start.args.clone()));
    let base = container.env().clone().unwrap_or_default();
    p.set_env(Some(merge_env(&base, &start.env, start.tty)));
    if !start.working_dir.is_empty() {
        p.set_cwd(start.working_dir.clone().into());
    }
    p.set_terminal(Some(start.tty));
    p.set_console_size(None);
    if !start.user.is_empty() {
        let (uid, gid) = spec::numeric_user(&start.user);
        let mut user = p.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        user.set_additional_gids(None);
        p.set_user(user);
    }
    p
}

fn to_attach_input(m: ExecInput) -> AttachInput {
    AttachInput {
        input: m.input.and_then(|i| match i {
            exec_input::Input::Stdin(b) => Some(attach_input::Input::Stdin(b)),
            exec_input::Input::Resize(r) => Some(attach_input::Input::Resize(r)),
            exec_input::Input::CloseStdin(c) => Some(attach_input::Input::CloseStdin(c)),
            exec_input::Input::Start(_) => None,
        }),
    }
}

fn remove_files(bundle: &Path, eid: &str, socket: &Path) {
    for suffix in ["process.json", "json"] {
        let _ = std::fs::remove_file(bundle.join(format!("exec-{eid}.{suffix}")));
    }
    let _ = std::fs::remove_file(socket);
}

/// Starts the exec described by `start`; the returned stream carries its output and
/// exit (or ends right away when detached).
pub async fn exec<S>(sup: &Supervisor, start: ExecStart, input: S) -> Result<mpsc::Receiver<Output>>
where
    S: Stream<Item = Result<ExecInput, Status>> + Send + Unpin + 'static,
{
    if start.args.is_empty() {
        return Err(Error::InvalidArgument("No exec command specified".into()));
    }
    let detach_keys = attach::parse_detach_keys(&start.detach_keys)?;
    let rec = sup.resolve(&start.id)?;
    let id = rec.id.clone();
    if rec.is_paused() {
        return Err(Error::FailedPrecondition(format!(
            "container {id} is paused, unpause the container before exec"
        )));
    }
    if !rec.is_running() {
        return Err(Error::NotRunning(id));
    }
    let bundle = sup.bundle_path(&id);
    let config = bundle.join("config.json");
    let oci = Spec::load(&config)
        .map_err(|e| Error::Internal(format!("read {}: {e}", config.display())))?;
    let container_process = oci
        .process()
        .clone()
        .ok_or_else(|| Error::Internal(format!("{}: no process", config.display())))?;
    let eid = ids::random_id();
    let process = exec_process(&container_process, &start);
    let process_path = bundle.join(format!("exec-{eid}.process.json"));
    let json = serde_json::to_vec_pretty(&process)
        .map_err(|e| Error::Internal(format!("encode exec process: {e}")))?;
    std::fs::write(&process_path, json).ctx(|| format!("write {}", process_path.display()))?;
    let socket = sup.attach_socket_path(&eid);
    let user = if start.user.is_empty() {
        rec.spec.user.clone()
    } else {
        start.user.clone()
    };
    let args = shim::ExecArgs {
        id: id.clone(),
        exec_id: eid.clone(),
        bundle: bundle.clone(),
        pid: rec.pid,
        process: process_path,
        user,
        attach_socket: socket.clone(),
        wait_attach: !start.detach,
    };
    tracing::info!(id = %id, exec_id = %eid, args = ?start.args, "exec");
    let report = shim::spawn_with(&sup.options().shim_binary, &bundle, args.to_vec()).await;
    let (shim_pid, pid) = match report {
        Ok(shim::Report::Started { shim_pid, pid }) => (shim_pid, pid),
        Ok(shim::Report::Failed { exit_code, error }) => {
            remove_files(&bundle, &eid, &socket);
            return Err(Error::StartFailed {
                message: error,
                exit_code,
            });
        }
        Err(e) => {
            remove_files(&bundle, &eid, &socket);
            return Err(e);
        }
    };
    // Docker's names: the action carries the command line.
    let command = start.args.join(" ");
    let exec_attrs = [("execID", eid.clone())];
    sup.publish(&rec, &format!("exec_create: {command}"), &exec_attrs);
    sup.publish(&rec, &format!("exec_start: {command}"), &exec_attrs);
    // Clean up once the exec's shim has gone (it outlives the process briefly).
    {
        let (bundle, eid, socket) = (bundle.clone(), eid.clone(), socket.clone());
        let (sup, rec) = (sup.clone(), rec.clone());
        let shim_fd = PidFd::open(shim_pid).ok();
        tokio::spawn(async move {
            let waited = match shim_fd {
                Some(fd) => fd.exited().await.is_ok(),
                None => false,
            };
            if !waited {
                while crate::watch::alive(shim_pid) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            let status_file = bundle.join(format!("exec-{eid}.json"));
            let exit = crate::watch::read_exit_file(&status_file, shim_pid, CLEANUP_DELAY).await;
            sup.publish(
                &rec,
                "exec_die",
                &[
                    ("execID", eid.clone()),
                    ("exitCode", exit.exit_code.to_string()),
                ],
            );
            tokio::time::sleep(CLEANUP_DELAY).await;
            remove_files(&bundle, &eid, &socket);
        });
    }
    if start.detach {
        let (_tx, rx) = mpsc::channel(1);
        return Ok(rx);
    }
    let flags = AttachFlags {
        stdin: start.stdin,
        stdout: true,
        stderr: true,
    };
    let stream = match attach::connect(&socket, flags).await {
        Ok(s) => s,
        Err(e) => {
            // The process waits for an attach that will never come: end it.
            if let Ok(fd) = PidFd::open(pid) {
                let _ = fd.send_signal(libc::SIGKILL);
            }
            return Err(Error::Internal(format!(
                "attach to exec {eid} at {}: {e}",
                socket.display()
            )));
        }
    };
    let source = ExitSource::Exec {
        status_file: bundle.join(format!("exec-{eid}.json")),
        shim_pid,
    };
    let input = input.map(|r| r.map(to_attach_input));
    Ok(attach::relay(
        sup,
        source,
        stream,
        start.stdin,
        detach_keys,
        Box::pin(input),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_per_key() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        assert_eq!(
            merge_env(&base, &["A=2".into(), "B=3".into()], false),
            vec!["PATH=/bin", "A=2", "B=3"]
        );
        assert_eq!(
            merge_env(&base, &[], true),
            vec!["PATH=/bin", "A=1", "TERM=xterm"]
        );
    }

    #[test]
    fn process_follows_the_container_and_the_request() {
        let mut base = Process::default();
        base.set_env(Some(vec!["PATH=/bin".into(), "X=1".into()]));
        base.set_cwd("/srv".into());
        base.set_no_new_privileges(Some(true));
        let start = ExecStart {
            args: vec!["ls".into(), "-l".into()],
            env: vec!["X=2".into()],
            tty: true,
            user: "1000:1000".into(),
            ..Default::default()
        };
        let p = exec_process(&base, &start);
        assert_eq!(p.args().as_ref().unwrap(), &vec!["ls", "-l"]);
        assert_eq!(
            p.env().as_ref().unwrap(),
            &vec!["PATH=/bin", "X=2", "TERM=xterm"]
        );
        assert_eq!(p.cwd().to_str(), Some("/srv"));
        assert_eq!(p.terminal(), Some(true));
        assert_eq!(p.no_new_privileges(), Some(true));
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
        let p = exec_process(
            &base,
            &ExecStart {
                args: vec!["pwd".into()],
                working_dir: "/tmp".into(),
                ..Default::default()
            },
        );
        assert_eq!(p.cwd().to_str(), Some("/tmp"));
        assert_eq!(p.terminal(), Some(false));
    }
}
