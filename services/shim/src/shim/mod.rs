//! The shim: one poll loop that holds the container's stdio, feeds the log router and
//! attach clients, reaps the process and records how it ended.
pub mod attach;
pub mod exec;
pub mod exit_file;
pub mod logship;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_wire::{
    kind, AttachFlags, ExitRecord, LineSplitter, WinSize, STREAM_STDERR, STREAM_STDOUT,
};
use oci_spec::runtime::Spec;

use crate::args::Args;
use crate::error::{Context, Error, Result};
use crate::rfc3339::now_unix_nano;
use crate::runtime::{self, Started};
use crate::sys;
use attach::Client;
use logship::LogShip;

/// After the process ends: how long to wait for the router (and for stray holders of
/// the output pipes) before giving up.
const GIVE_UP: Duration = Duration::from_secs(60);
/// How long attach clients get to read their last output.
const CLIENT_LINGER: Duration = Duration::from_secs(5);
/// How long attach clients wait for the log router to confirm the last lines before they
/// are told the exit status, so `logs` right after `run` shows everything.
const EXIT_AFTER_LOGS: Duration = Duration::from_secs(2);
/// Stop reading attach STDIN while this much waits for the container.
const MAX_STDIN_BUFFER: usize = 1 << 20;
/// Quiet time after which the idle shim unmaps its code pages.
const IDLE_AFTER: Duration = Duration::from_secs(1);

/// The one-line JSON report the daemonizing parent prints.
pub fn report_ok(shim_pid: i32, pid: i32) -> String {
    serde_json::json!({"ok": true, "shim_pid": shim_pid, "pid": pid}).to_string()
}

pub fn report_err(exit_code: i32, error: &str) -> String {
    serde_json::json!({"ok": false, "exit_code": exit_code, "error": error}).to_string()
}

pub(crate) fn send_report(fd: &mut Option<OwnedFd>, line: &str) {
    if let Some(fd) = fd.take() {
        let _ = sys::write_all(fd.as_raw_fd(), format!("{line}\n").as_bytes());
    }
}

/// Reports how the start went. Without `wait_attach` the process is released first, so
/// a failing execve is reported too; with it, the first attach client releases it later.
/// On failure the attach socket is removed and `None` returned.
pub(crate) fn release_or_report(
    started: Result<runtime::Started, runtime::StartError>,
    wait_attach: bool,
    attach_socket: &Path,
    report: &mut Option<OwnedFd>,
) -> Option<runtime::Started> {
    let fail = |report: &mut Option<OwnedFd>, code: i32, msg: String| {
        let _ = std::fs::remove_file(attach_socket);
        send_report(report, &report_err(code, &msg));
        None
    };
    let mut started = match started {
        Ok(s) => s,
        Err(e) => return fail(report, e.error.exit_code(), e.error.to_string()),
    };
    if !wait_attach {
        started.go();
        if let Err(e) = started.exec_result() {
            let mut status = 0;
            unsafe { libc::waitpid(started.pid, &mut status, 0) };
            return fail(report, e.exit_code(), e.to_string());
        }
    }
    send_report(report, &report_ok(std::process::id() as i32, started.pid));
    Some(started)
}

/// Runs the shim to the end. `report` is the pipe to the daemonizing parent.
pub fn run(args: &Args, spec: Spec, report: OwnedFd) -> i32 {
    let mut report = Some(report);
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
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
    let cgroups_path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let started = runtime::start(&spec, &args.bundle);
    drop(spec);
    let started = release_or_report(started, args.wait_attach, &args.attach_socket, &mut report);
    // After the report, so that it never waits for a collector.
    let failed = started.is_none().then_some("the container did not start");
    crate::otlp::export_start(&args.id, failed);
    let Some(started) = started else {
        return 1;
    };
    // Setup allocated (the spec, JSON); give it back so the idle shim stays small.
    let config = Config {
        bundle: args.bundle.clone(),
        exit_name: "exit.json".into(),
        cgroups_path,
        log: LogShip::new(args.id.clone(), args.log_socket.clone()),
        wait_attach: args.wait_attach,
        exec_stdin: false,
    };
    let mut shim = Shim::new(config, started, listener, sigfd);
    unsafe { libc::malloc_trim(0) };
    shim.run();
    let _ = std::fs::remove_file(&args.attach_socket);
    0
}

pub(crate) fn block_sigchld() -> Result<OwnedFd> {
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(Error::io("signalfd", std::io::Error::last_os_error()));
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

pub(crate) fn listen(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ctx(|| format!("mkdir {}", dir.display()))?;
    }
    // A stale socket from an earlier shim of this container.
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).ctx(|| format!("listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .ctx(|| format!("chmod {}", path.display()))?;
    l.set_nonblocking(true)
        .ctx(|| format!("set {} non-blocking", path.display()))?;
    Ok(l)
}

struct Output {
    fd: Option<OwnedFd>,
    splitter: LineSplitter,
    stream: u8,
    frame: u8,
}

/// What differs between a container's shim and an exec's.
pub(crate) struct Config {
    pub bundle: PathBuf,
    /// The exit file in the bundle: `exit.json` or `exec-<exec id>.json`.
    pub exit_name: String,
    /// For the OOM check; empty: none.
    pub cgroups_path: String,
    pub log: LogShip,
    pub wait_attach: bool,
    /// Exec: stdin is a pipe that closes when the first client attaches without stdin.
    pub exec_stdin: bool,
}

pub(crate) struct Shim {
    bundle: PathBuf,
    exit_name: String,
    cgroups_path: String,
    exec_stdin: bool,
    attached_once: bool,
    started: Started,
    listener: UnixListener,
    sigfd: OwnedFd,
    clients: Vec<Client>,
    outputs: Vec<Output>,
    stdin: Option<OwnedFd>,
    stdin_buf: Vec<u8>,
    stdin_close: bool,
    pty: Option<RawFd>,
    log: LogShip,
    go_sent: bool,
    exit: Option<ExitRecord>,
    exited_at: Option<Instant>,
    finalized_at: Option<Instant>,
    /// EXIT has been sent to the attach clients.
    exit_announced: bool,
    buf: Vec<u8>,
    clean_code: sys::CleanCode,
    /// Code pages were touched since they were last unmapped.
    code_mapped: bool,
}

#[derive(Clone, Copy)]
enum Slot {
    Signal,
    Listener,
    Output(usize),
    Stdin,
    Log,
    Client(usize),
}

impl Shim {
    pub(crate) fn new(
        config: Config,
        mut started: Started,
        listener: UnixListener,
        sigfd: OwnedFd,
    ) -> Shim {
        let io = &mut started.stdio;
        let mut outputs = vec![Output {
            fd: sys::dup(&io.stdout).ok(),
            splitter: LineSplitter::default(),
            stream: STREAM_STDOUT,
            frame: kind::STDOUT,
        }];
        if let Some(e) = io.stderr.take() {
            outputs.push(Output {
                fd: Some(e),
                splitter: LineSplitter::default(),
                stream: STREAM_STDERR,
                frame: kind::STDERR,
            });
        }
        for o in &outputs {
            let _ = sys::set_nonblock(o.fd.as_ref().map_or(-1, |f| f.as_raw_fd()));
        }
        let stdin = io.stdin.take();
        if let Some(s) = &stdin {
            let _ = sys::set_nonblock(s.as_raw_fd());
        }
        let pty = io.pty.then(|| io.stdout.as_raw_fd());
        Shim {
            bundle: config.bundle,
            exit_name: config.exit_name,
            cgroups_path: config.cgroups_path,
            exec_stdin: config.exec_stdin,
            attached_once: false,
            go_sent: !config.wait_attach,
            started,
            listener,
            sigfd,
            clients: Vec::new(),
            outputs,
            stdin,
            stdin_buf: Vec::new(),
            stdin_close: false,
            pty,
            log: config.log,
            exit: None,
            exited_at: None,
            finalized_at: None,
            exit_announced: false,
            buf: vec![0u8; 32 << 10],
            clean_code: sys::CleanCode::find(),
            code_mapped: true,
        }
    }

    pub(crate) fn run(&mut self) {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut slots: Vec<Slot> = Vec::new();
        loop {
            let now = Instant::now();
            self.log.tick(now);
            for c in &mut self.clients {
                c.flush();
            }
            self.clients.retain(|c| !c.dead);
            if let Some(at) = self.exited_at {
                if self.finalized_at.is_none()
                    && (self.outputs.iter().all(|o| o.fd.is_none()) || now >= at + GIVE_UP)
                {
                    self.finalize(now);
                }
            }
            if let Some(at) = self.finalized_at {
                if !self.exit_announced && (self.log.end_acked() || now >= at + EXIT_AFTER_LOGS) {
                    self.announce_exit();
                }
                let log_done = self.log.end_acked() || now >= at + GIVE_UP;
                let clients_done =
                    self.clients.iter().all(|c| !c.wants_write()) || now >= at + CLIENT_LINGER;
                if log_done && clients_done {
                    return;
                }
            }

            fds.clear();
            slots.clear();
            let mut add = |fd: RawFd, events: i16, slot: Slot| {
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
                slots.push(slot);
            };
            add(self.sigfd.as_raw_fd(), libc::POLLIN, Slot::Signal);
            add(self.listener.as_raw_fd(), libc::POLLIN, Slot::Listener);
            // Blocking log mode: leave the container's output in the pipe while the
            // router is behind.
            if !self.log.over_limit() {
                for (i, o) in self.outputs.iter().enumerate() {
                    if let Some(fd) = &o.fd {
                        add(fd.as_raw_fd(), libc::POLLIN, Slot::Output(i));
                    }
                }
            }
            if let Some(s) = &self.stdin {
                if !self.stdin_buf.is_empty() {
                    add(s.as_raw_fd(), libc::POLLOUT, Slot::Stdin);
                }
            }
            if let Some((fd, ev)) = self.log.poll_fd() {
                add(fd, ev, Slot::Log);
            }
            let read_clients = self.stdin_buf.len() < MAX_STDIN_BUFFER;
            for (i, c) in self.clients.iter().enumerate() {
                let ev = if read_clients { libc::POLLIN } else { 0 }
                    | if c.wants_write() { libc::POLLOUT } else { 0 };
                add(c.fd(), ev, Slot::Client(i));
            }
            let mut timeout = self.log.timeout(now);
            if self.exited_at.is_some() {
                timeout = Some(timeout.map_or(Duration::from_millis(100), |t| {
                    t.min(Duration::from_millis(100))
                }));
            }
            // After activity, wait a second of quiet, then give the code pages back.
            if self.code_mapped && timeout.is_none() {
                timeout = Some(IDLE_AFTER);
            }
            let ms = timeout.map_or(-1, |t| {
                t.as_millis().min(60_000) as i32 + i32::from(t.subsec_nanos() % 1_000_000 != 0)
            });
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
            if n == 0 && self.code_mapped && timeout == Some(IDLE_AFTER) {
                self.clean_code.unmap();
                self.code_mapped = false;
            }
            if n <= 0 {
                continue;
            }
            self.code_mapped = true;
            let now = Instant::now();
            for (pfd, slot) in fds.iter().zip(slots.iter()) {
                if pfd.revents == 0 {
                    continue;
                }
                match *slot {
                    Slot::Signal => self.on_sigchld(now),
                    Slot::Listener => self.accept(),
                    Slot::Output(i) => self.read_output(i),
                    Slot::Stdin => self.write_stdin(),
                    Slot::Log => {
                        if pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                            self.log.on_readable(now);
                        }
                    }
                    Slot::Client(i) => {
                        if pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                            self.read_client(i);
                        }
                    }
                }
            }
        }
    }

    fn on_sigchld(&mut self, now: Instant) {
        let mut info = [0u8; 128];
        while sys::read(self.sigfd.as_raw_fd(), &mut info).is_ok_and(|n| n > 0) {}
        loop {
            let mut status = 0;
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid != self.started.pid {
                continue;
            }
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                continue;
            };
            let oom = code == 128 + libc::SIGKILL && exit_file::oom_killed(&self.cgroups_path);
            let exit = ExitRecord {
                exit_code: code,
                oom_killed: oom,
                finished_unix_nano: now_unix_nano(),
            };
            // Written at once, not after the output drained: the supervisor waits for it,
            // and a slow log router may hold up the drain.
            let _ = exit_file::write(
                &self.bundle,
                &self.exit_name,
                exit.exit_code,
                exit.oom_killed,
                exit.finished_unix_nano,
            );
            self.exit = Some(exit);
            self.exited_at = Some(now);
        }
    }

    fn accept(&mut self) {
        while let Ok((sock, _)) = self.listener.accept() {
            if let Ok(c) = Client::new(sock) {
                self.clients.push(c);
            }
        }
    }

    fn read_output(&mut self, i: usize) {
        let time = now_unix_nano();
        let Some(fd) = self.outputs[i].fd.as_ref().map(|f| f.as_raw_fd()) else {
            return;
        };
        match sys::read(fd, &mut self.buf) {
            Ok(0) => self.close_output(i, time),
            Ok(n) => {
                let (frame, stream) = (self.outputs[i].frame, self.outputs[i].stream);
                for c in &mut self.clients {
                    c.send(frame, &self.buf[..n]);
                }
                for line in self.outputs[i].splitter.push(&self.buf[..n]) {
                    self.log.push(stream, line, time);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // EIO: the pty's last slave closed. Anything else ends the stream too.
            Err(_) => self.close_output(i, time),
        }
    }

    fn close_output(&mut self, i: usize, time: i64) {
        let o = &mut self.outputs[i];
        o.fd = None;
        if let Some(rest) = o.splitter.finish() {
            self.log.push(o.stream, rest, time);
        }
    }

    fn write_stdin(&mut self) {
        let Some(fd) = self.stdin.as_ref().map(|f| f.as_raw_fd()) else {
            return;
        };
        match sys::write(fd, &self.stdin_buf) {
            Ok(n) => {
                self.stdin_buf.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // The container closed its stdin: drop what was typed.
            Err(_) => {
                self.stdin_buf.clear();
                self.stdin = None;
            }
        }
        self.maybe_close_stdin();
    }

    fn maybe_close_stdin(&mut self) {
        if self.stdin_close && self.stdin_buf.is_empty() {
            self.stdin_close = false;
            if let Some(fd) = self.pty {
                // A terminal has no half-close: send the EOF character instead.
                let _ = sys::write(fd, &[4]);
            } else {
                self.stdin = None;
            }
        }
    }

    fn read_client(&mut self, i: usize) {
        let frames = self.clients[i].read_frames();
        for f in frames {
            match f.kind {
                kind::ATTACH if self.clients[i].flags.is_none() => {
                    let flags = AttachFlags::decode(&f.payload);
                    self.clients[i].flags = Some(flags);
                    if self.exec_stdin && !self.attached_once && !flags.stdin && self.pty.is_none()
                    {
                        // Nobody will type: the exec'd process sees end of file.
                        self.stdin_close = true;
                        self.maybe_close_stdin();
                    }
                    self.attached_once = true;
                    if let Some(exit) = self.exit.filter(|_| self.exit_announced) {
                        self.clients[i].send(kind::EXIT, &exit.encode());
                    }
                    if !self.go_sent {
                        self.go_sent = true;
                        self.started.go();
                    }
                }
                kind::STDIN if self.stdin.is_some() => self.stdin_buf.extend_from_slice(&f.payload),
                kind::CLOSE_STDIN => {
                    self.stdin_close = true;
                    self.maybe_close_stdin();
                }
                kind::RESIZE => {
                    if let (Some(fd), Ok(ws)) = (self.pty, WinSize::decode(&f.payload)) {
                        let w = libc::winsize {
                            ws_row: ws.rows,
                            ws_col: ws.cols,
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        };
                        unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &w) };
                    }
                }
                _ => {}
            }
        }
        if !self.stdin_buf.is_empty() {
            self.write_stdin();
        }
    }

    fn finalize(&mut self, now: Instant) {
        let time = now_unix_nano();
        for i in 0..self.outputs.len() {
            if self.outputs[i].fd.is_some() {
                self.close_output(i, time);
            }
        }
        self.log.end();
        self.log.tick(now);
        self.finalized_at = Some(now);
    }

    fn announce_exit(&mut self) {
        let exit = self.exit.expect("announce after exit");
        for c in &mut self.clients {
            c.send(kind::EXIT, &exit.encode());
        }
        self.exit_announced = true;
    }
}
