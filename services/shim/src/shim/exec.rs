//! `berth-shim exec`: the shim of one exec'd process. Same report and attach protocol as
//! a container's shim; the output goes to attach clients only (Docker does not log exec
//! output) and the exit status to `<bundle>/exec-<exec id>.json`.
use std::os::fd::OwnedFd;

use oci_spec::runtime::Process;

use super::logship::LogShip;
use super::{block_sigchld, listen, release_or_report, report_err, send_report, Config, Shim};
use crate::args::ExecArgs;
use crate::runtime;

fn load_process(args: &ExecArgs) -> Result<Process, String> {
    let text = std::fs::read_to_string(&args.process)
        .map_err(|e| format!("read {}: {e}", args.process.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("parse {}: {e}", args.process.display()))
}

/// Runs the exec to the end. `report` is the pipe to the daemonizing parent.
pub fn run(args: &ExecArgs, report: OwnedFd) -> i32 {
    let mut report = Some(report);
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let process = match load_process(args) {
        Ok(p) => p,
        Err(e) => {
            send_report(&mut report, &report_err(125, &e));
            return 1;
        }
    };
    let sigfd = match block_sigchld() {
        Ok(fd) => fd,
        Err(e) => {
            send_report(&mut report, &report_err(e.exit_code(), &e.to_string()));
            return 1;
        }
    };
    let listener = match listen(&args.attach_socket) {
        Ok(l) => l,
        Err(e) => {
            send_report(&mut report, &report_err(e.exit_code(), &e.to_string()));
            return 1;
        }
    };
    let started = runtime::exec::exec(args.pid, &process, &args.user);
    drop(process);
    let started = release_or_report(started, args.wait_attach, &args.attach_socket, &mut report);
    // After the report, so that it never waits for a collector.
    let failed = started.is_none().then_some("the exec did not start");
    crate::otlp::export_exec(&args.id, &args.exec_id, failed);
    let Some(started) = started else {
        return 1;
    };
    let config = Config {
        bundle: args.bundle.clone(),
        exit_name: format!("exec-{}.json", args.exec_id),
        cgroups_path: String::new(),
        log: LogShip::disabled(),
        wait_attach: args.wait_attach,
        exec_stdin: true,
    };
    let mut shim = Shim::new(config, started, listener, sigfd);
    unsafe { libc::malloc_trim(0) };
    shim.run();
    let _ = std::fs::remove_file(&args.attach_socket);
    0
}
