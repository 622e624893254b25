//! `berth-shim`: daemonizes, starts the container (or, with `exec`, one more process in
//! it) through the built-in runtime, prints one JSON report line, then serves the
//! process until it ends.
use std::io::Write;
use std::os::fd::AsRawFd;

use berth_shim::args::Command;
use berth_shim::shim::{exec, report_err, run};
use berth_shim::sys;
use oci_spec::runtime::Spec;

fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", line.trim_end());
    let _ = out.flush();
}

fn main() {
    berth_shim::otlp::mark_start();
    // Nothing of the caller's (sockets, pipes) must leak into a container.
    sys::close_from_3();
    sys::ensure_std_fds();
    let command = match Command::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            print_line(&report_err(125, &e));
            std::process::exit(2);
        }
    };
    // A container's spec is loaded before daemonizing, so a bad bundle is reported at once.
    let spec = match &command {
        Command::Start(args) => {
            let config = args.bundle.join("config.json");
            match Spec::load(&config) {
                Ok(s) => Some(s),
                Err(e) => {
                    print_line(&report_err(125, &format!("load {}: {e}", config.display())));
                    return;
                }
            }
        }
        Command::Exec(_) => None,
    };
    let (report_r, report_w) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => {
            print_line(&report_err(125, &format!("create report pipe: {e}")));
            return;
        }
    };
    // SAFETY: single-threaded here.
    match unsafe { libc::fork() } {
        -1 => print_line(&report_err(
            125,
            &format!("fork shim: {}", std::io::Error::last_os_error()),
        )),
        0 => {
            drop(report_r);
            unsafe { libc::setsid() };
            detach_stdio();
            let code = match (&command, spec) {
                (Command::Start(args), Some(spec)) => run(args, spec, report_w),
                (Command::Exec(args), _) => exec::run(args, report_w),
                (Command::Start(_), None) => 1,
            };
            std::process::exit(code);
        }
        _ => {
            drop(report_w);
            let mut line = Vec::new();
            let mut b = [0u8; 512];
            while !line.contains(&b'\n') {
                match sys::read(report_r.as_raw_fd(), &mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => line.extend_from_slice(&b[..n]),
                }
            }
            let text = String::from_utf8_lossy(&line);
            match text.lines().next().filter(|l| !l.is_empty()) {
                Some(l) => print_line(l),
                None => print_line(&report_err(125, "shim exited before reporting")),
            }
        }
    }
}

/// The shim outlives its caller's stdio.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            let _ = sys::dup2(null.as_raw_fd(), fd);
        }
    }
}
