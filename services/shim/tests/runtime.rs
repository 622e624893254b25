//! Privileged end-to-end tests: a busybox rootfs, the real `berth-shim` binary, a fake
//! log router and attach clients. Run as root.
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_wire::{kind, read_frame, write_frame, AttachFlags, ExitRecord, LogRecord};
use serde_json::{json, Value};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// What the fake log router received.
#[derive(Default)]
struct Received {
    records: Vec<LogRecord>,
    ended: bool,
}

/// A test container: temp dirs, the fake router and whatever the shim started.
struct Fixture {
    dir: tempfile::TempDir,
    received: Arc<Mutex<Received>>,
    /// Container pid to SIGKILL if the test fails before it exits.
    pid: Option<i32>,
    cgroup: Option<PathBuf>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            if !self.dir.path().join("bundle/exit.json").exists() {
                unsafe { libc::kill(pid, libc::SIGKILL) };
                self.wait_exit_file(Duration::from_secs(10));
            }
        }
        if let Some(cg) = &self.cgroup {
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::fs::remove_dir(cg).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let lower = root.join("lower");
        std::fs::create_dir_all(lower.join("bin")).unwrap();
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::create_dir_all(lower.join("tmp")).unwrap();
        std::fs::copy("/bin/busybox", lower.join("bin/busybox")).unwrap();
        for tool in [
            "sh", "echo", "cat", "sleep", "id", "ls", "hostname", "stty", "tty", "ps", "true",
            "tr", "grep",
        ] {
            std::os::unix::fs::symlink("busybox", lower.join("bin").join(tool)).unwrap();
        }
        std::fs::write(
            lower.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .unwrap();
        std::fs::write(lower.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
        for d in ["upper", "work", "bundle/rootfs"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("bundle/hostname"), "testhost\n").unwrap();
        let f = Fixture {
            dir,
            received: Arc::default(),
            pid: None,
            cgroup: None,
        };
        f.start_router(0);
        f
    }

    /// A fixture whose log router is not there yet.
    fn without_router() -> Fixture {
        let f = Fixture::new();
        std::fs::remove_file(f.path("router.sock")).unwrap();
        f
    }

    /// Starts the fake router; its first `drop_first` connections are cut after two LOG
    /// frames, unacknowledged, as if the router crashed.
    fn start_router(&self, drop_first: usize) {
        let _ = std::fs::remove_file(self.path("router.sock"));
        let listener = UnixListener::bind(self.path("router.sock")).unwrap();
        let r = self.received.clone();
        std::thread::spawn(move || fake_router(listener, r, drop_first));
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn spec(&self, args: &[&str]) -> Value {
        let root = self.dir.path();
        json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": false,
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "cwd": "/",
                "capabilities": {"bounding": CAPS, "effective": CAPS, "permitted": CAPS},
                "noNewPrivileges": true
            },
            "root": {"path": "rootfs"},
            "hostname": "testhost",
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
                {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
                {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
                {"destination": "/etc/hostname", "type": "bind", "source": root.join("bundle/hostname"), "options": ["rbind", "ro"]}
            ],
            "annotations": {
                "io.berth.rootfs.lowerdirs": root.join("lower"),
                "io.berth.rootfs.upperdir": root.join("upper"),
                "io.berth.rootfs.workdir": root.join("work")
            },
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
                "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/acpi", "/sys/firmware"],
                "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger", "/proc/bus"]
            }
        })
    }

    /// Writes the spec and runs the shim; returns its JSON report.
    fn run(&mut self, spec: &Value, wait_attach: bool) -> Value {
        std::fs::write(
            self.path("bundle/config.json"),
            serde_json::to_vec_pretty(spec).unwrap(),
        )
        .unwrap();
        // BERTH_SHIM_BIN measures another build (e.g. release) with the same tests.
        let bin = std::env::var("BERTH_SHIM_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_berth-shim").to_string());
        let mut cmd = Command::new(bin);
        cmd.arg("--id")
            .arg(format!("c{}", COUNTER.fetch_add(1, Ordering::SeqCst)));
        cmd.arg("--bundle").arg(self.path("bundle"));
        cmd.arg("--attach-socket").arg(self.path("attach.sock"));
        cmd.arg("--log-socket").arg(self.path("router.sock"));
        if wait_attach {
            cmd.arg("--wait-attach");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "shim failed: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.lines().count(), 1, "one report line: {text:?}");
        let report: Value = serde_json::from_str(&text).unwrap();
        self.pid = report["pid"].as_i64().map(|p| p as i32);
        report
    }

    fn wait_exit_file(&self, limit: Duration) -> Option<Value> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(text) = std::fs::read_to_string(self.path("bundle/exit.json")) {
                return Some(serde_json::from_str(&text).unwrap());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn exit_code(&self) -> i64 {
        let exit = self
            .wait_exit_file(Duration::from_secs(20))
            .expect("exit.json written");
        assert_eq!(exit["oom_killed"], false);
        let at = exit["finished_at"].as_str().unwrap();
        assert!(at.ends_with('Z') && at.len() == 30, "rfc3339 nano: {at}");
        exit["exit_code"].as_i64().unwrap()
    }

    /// The stdout/stderr lines the router got, once END arrived.
    fn logs(&self) -> Vec<(u8, String)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            {
                let r = self.received.lock().unwrap();
                if r.ended {
                    for (i, rec) in r.records.iter().enumerate() {
                        assert_eq!(rec.seq, i as u64, "sequence numbers are contiguous");
                    }
                    return r
                        .records
                        .iter()
                        .map(|r| (r.stream, String::from_utf8_lossy(&r.line).into_owned()))
                        .collect();
                }
            }
            assert!(Instant::now() < deadline, "router never got END");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The shim removes its attach socket when it is done.
    fn wait_shim_gone(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.path("attach.sock").exists() {
            assert!(Instant::now() < deadline, "attach socket left behind");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Speaks the ingest protocol: RESUME 0, then ACK every LOG and the END.
fn fake_router(listener: UnixListener, received: Arc<Mutex<Received>>, mut drop_first: usize) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { return };
        let received = received.clone();
        if drop_first > 0 {
            drop_first -= 1;
            let _ = read_frame(&mut conn);
            let _ = write_frame(&mut conn, kind::RESUME, &0u64.to_be_bytes());
            let _ = read_frame(&mut conn);
            let _ = read_frame(&mut conn);
            continue;
        }
        std::thread::spawn(move || {
            let Ok(Some(hello)) = read_frame(&mut conn) else {
                return;
            };
            assert_eq!(hello.kind, kind::HELLO);
            let next = received.lock().unwrap().records.len() as u64;
            write_frame(&mut conn, kind::RESUME, &next.to_be_bytes()).unwrap();
            while let Ok(Some(f)) = read_frame(&mut conn) {
                match f.kind {
                    kind::LOG => {
                        let rec = LogRecord::decode(&f.payload).unwrap();
                        let seq = rec.seq;
                        received.lock().unwrap().records.push(rec);
                        let _ = write_frame(&mut conn, kind::ACK, &seq.to_be_bytes());
                    }
                    kind::END => {
                        received.lock().unwrap().ended = true;
                        let _ = write_frame(&mut conn, kind::ACK, &f.payload);
                    }
                    _ => {}
                }
            }
        });
    }
}

#[test]
fn output_reaches_router_and_rootfs_is_isolated() {
    let mut f = Fixture::new();
    let script = "echo hello; echo oops >&2; hostname; cat /proc/self/status; echo data > /written.txt; ls /dev; cat /etc/hostname";
    let report = f.run(&f.spec(&["sh", "-c", script]), false);
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["shim_pid"].as_i64().unwrap() > 0);
    assert_eq!(f.exit_code(), 0);
    let logs = f.logs();
    let stdout: String = logs
        .iter()
        .filter(|l| l.0 == 1)
        .map(|l| l.1.as_str())
        .collect();
    assert!(logs.contains(&(1, "hello\n".to_string())), "{logs:?}");
    assert!(logs.contains(&(2, "oops\n".to_string())), "{logs:?}");
    assert!(
        logs.iter().filter(|l| l.1 == "testhost\n").count() == 2,
        "hostname and /etc/hostname: {stdout}"
    );
    // /proc is the container's: cat runs as a child of pid 1.
    assert!(stdout.contains("Name:\tcat"), "{stdout}");
    assert!(stdout.contains("\nPPid:\t1\n"), "{stdout}");
    for dev in [
        "null", "zero", "urandom", "pts", "shm", "mqueue", "ptmx", "fd",
    ] {
        assert!(
            stdout.lines().any(|l| l == dev),
            "/dev/{dev} missing: {stdout}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(f.path("upper/written.txt")).unwrap(),
        "data\n"
    );
    assert!(!f.path("lower/written.txt").exists());
    f.wait_shim_gone();
}

#[test]
fn exit_status_is_recorded() {
    let mut f = Fixture::new();
    let report = f.run(&f.spec(&["sh", "-c", "exit 3"]), false);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(f.exit_code(), 3);
    assert!(f.logs().is_empty());
}

#[test]
fn missing_command_is_127_in_the_report() {
    let mut f = Fixture::new();
    let report = f.run(&f.spec(&["nosuch"]), false);
    assert_eq!(
        report,
        json!({"ok": false, "exit_code": 127, "error": "exec: \"nosuch\": executable file not found in $PATH"})
    );
    assert!(!f.path("attach.sock").exists());
    let report = f.run(&f.spec(&["/etc/passwd"]), false);
    assert_eq!(report["exit_code"], 126, "{report}");
}

#[test]
fn bad_user_and_workdir_are_126() {
    let mut f = Fixture::new();
    let mut spec = f.spec(&["id"]);
    spec["annotations"]["io.berth.user"] = json!("nosuch");
    let report = f.run(&spec, false);
    assert_eq!(
        report,
        json!({"ok": false, "exit_code": 126, "error": "unable to find user nosuch: no matching entries in passwd file"})
    );
    let mut spec = f.spec(&["id"]);
    spec["process"]["cwd"] = json!("/etc/passwd");
    let report = f.run(&spec, false);
    assert_eq!(report["exit_code"], 126, "{report}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("is not a directory"),
        "{report}"
    );
}

#[test]
fn nobody_runs_as_65534_in_a_created_workdir() {
    let mut f = Fixture::new();
    let mut spec = f.spec(&["sh", "-c", "id -u; id -g; echo $HOME; pwd"]);
    spec["annotations"]["io.berth.user"] = json!("nobody");
    spec["process"]["cwd"] = json!("/work/dir");
    let report = f.run(&spec, false);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(f.exit_code(), 0);
    let lines: Vec<String> = f.logs().into_iter().map(|l| l.1).collect();
    assert_eq!(
        lines,
        vec!["65534\n", "65534\n", "/nonexistent\n", "/work/dir\n"]
    );
}

#[test]
fn sigkill_gives_137_and_the_cgroup_is_joined() {
    let mut f = Fixture::new();
    let name = format!(
        "berth-shimtest-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let cg = PathBuf::from("/sys/fs/cgroup/pids").join(&name);
    std::fs::create_dir(&cg).unwrap();
    f.cgroup = Some(cg.clone());
    let mut spec = f.spec(&["sleep", "100"]);
    spec["linux"]["cgroupsPath"] = json!(format!("/{name}"));
    let report = f.run(&spec, false);
    assert_eq!(report["ok"], true, "{report}");
    let pid = report["pid"].as_i64().unwrap() as i32;
    let procs = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == pid.to_string()),
        "pid {pid} not in {procs}"
    );
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(f.exit_code(), 137);
    f.wait_shim_gone();
}

#[test]
fn attach_with_wait_attach_sees_all_output_and_exit() {
    let mut f = Fixture::new();
    let report = f.run(
        &f.spec(&["sh", "-c", "echo attached; echo e >&2; exit 5"]),
        true,
    );
    assert_eq!(report["ok"], true, "{report}");
    let mut sock = UnixStream::connect(f.path("attach.sock")).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write_frame(
        &mut sock,
        kind::ATTACH,
        &AttachFlags {
            stdin: false,
            stdout: true,
            stderr: true,
        }
        .encode(),
    )
    .unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let exit = loop {
        let frame = read_frame(&mut sock)
            .unwrap()
            .expect("EXIT before end of stream");
        match frame.kind {
            kind::STDOUT => out.extend_from_slice(&frame.payload),
            kind::STDERR => err.extend_from_slice(&frame.payload),
            kind::EXIT => break ExitRecord::decode(&frame.payload).unwrap(),
            k => panic!("unexpected frame {k}"),
        }
    };
    assert_eq!(out, b"attached\n");
    assert_eq!(err, b"e\n");
    assert_eq!(exit.exit_code, 5);
    assert_eq!(f.exit_code(), 5);
    f.wait_shim_gone();
}

#[test]
fn attach_stdin_reaches_the_container() {
    let mut f = Fixture::new();
    let mut spec = f.spec(&["cat"]);
    spec["annotations"]["io.berth.stdin"] = json!("true");
    let report = f.run(&spec, true);
    assert_eq!(report["ok"], true, "{report}");
    let mut sock = UnixStream::connect(f.path("attach.sock")).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write_frame(
        &mut sock,
        kind::ATTACH,
        &AttachFlags {
            stdin: true,
            stdout: true,
            stderr: true,
        }
        .encode(),
    )
    .unwrap();
    write_frame(&mut sock, kind::STDIN, b"ping\n").unwrap();
    write_frame(&mut sock, kind::CLOSE_STDIN, b"").unwrap();
    sock.flush().unwrap();
    let mut out = Vec::new();
    loop {
        let frame = read_frame(&mut sock).unwrap().expect("EXIT");
        match frame.kind {
            kind::STDOUT => out.extend_from_slice(&frame.payload),
            kind::EXIT => break,
            _ => {}
        }
    }
    assert_eq!(out, b"ping\n");
    assert_eq!(f.exit_code(), 0);
    let mut rest = Vec::new();
    let _ = sock.read_to_end(&mut rest);
}

#[test]
fn idle_shim_private_memory_is_under_1_mib() {
    let mut f = Fixture::new();
    let report = f.run(&f.spec(&["sleep", "100"]), false);
    assert_eq!(report["ok"], true, "{report}");
    let shim = report["shim_pid"].as_i64().unwrap();
    // The shim unmaps its code pages after a second of quiet.
    std::thread::sleep(Duration::from_millis(1500));
    let rollup = std::fs::read_to_string(format!("/proc/{shim}/smaps_rollup")).unwrap();
    let private_kib: u64 = rollup
        .lines()
        .filter(|l| l.starts_with("Private_"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    eprintln!("idle shim private memory: {private_kib} KiB");
    if std::env::var_os("SHIM_SMAPS").is_some() {
        eprintln!(
            "{}",
            std::fs::read_to_string(format!("/proc/{shim}/smaps")).unwrap()
        );
    }
    // An unoptimized build's code is several times larger and its clean code pages vary
    // run to run (300-900 KiB); there only the dirty part is held to the limit.
    let dirty_kib: u64 = rollup
        .lines()
        .filter(|l| l.starts_with("Private_Dirty"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    let optimized = std::env::var_os("BERTH_SHIM_BIN").is_some() || !cfg!(debug_assertions);
    let measured = if optimized { private_kib } else { dirty_kib };
    assert!(measured < 1024, "{private_kib} KiB private:\n{rollup}");
    unsafe { libc::kill(report["pid"].as_i64().unwrap() as i32, libc::SIGKILL) };
    assert_eq!(f.exit_code(), 137);
}

#[test]
fn logs_wait_for_a_late_router_and_survive_a_dropped_connection() {
    let mut f = Fixture::without_router();
    let report = f.run(
        &f.spec(&[
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do echo line$i; done; echo -n partial",
        ]),
        false,
    );
    assert_eq!(report["ok"], true, "{report}");
    // exit.json does not wait for the router.
    assert_eq!(f.exit_code(), 0);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        f.path("attach.sock").exists(),
        "the shim waits for the router"
    );
    f.start_router(1);
    let lines: Vec<String> = f.logs().into_iter().map(|l| l.1).collect();
    assert_eq!(
        lines,
        vec!["line1\n", "line2\n", "line3\n", "line4\n", "line5\n", "partial"]
    );
    f.wait_shim_gone();
}

#[test]
fn terminal_gives_the_container_a_tty() {
    let mut f = Fixture::new();
    let mut spec = f.spec(&["sh", "-c", "[ -t 0 ] && [ -t 1 ] && echo is-a-tty; tty"]);
    spec["process"]["terminal"] = json!(true);
    let report = f.run(&spec, false);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(f.exit_code(), 0);
    let lines: Vec<String> = f.logs().into_iter().map(|l| l.1).collect();
    // The pty is the container's own (its devpts instance), not the host's.
    assert_eq!(lines, vec!["is-a-tty\r\n", "/dev/pts/0\r\n"]);
}

#[test]
fn readonly_rootfs_and_readonly_binds() {
    let mut f = Fixture::new();
    let data = f.path("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in"), "host file\n").unwrap();
    let script = "cat /data/in; echo x > /data/out || echo data-ro; echo x > /f || echo root-ro; echo ok > /dev/shm/s && cat /dev/shm/s; echo x > /proc/sysrq-trigger || echo proc-ro";
    let mut spec = f.spec(&["sh", "-c", script]);
    spec["root"]["readonly"] = json!(true);
    spec["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "ro"]}),
    );
    let report = f.run(&spec, false);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(f.exit_code(), 0);
    let out: Vec<String> = f
        .logs()
        .into_iter()
        .filter(|l| l.0 == 1)
        .map(|l| l.1)
        .collect();
    assert_eq!(
        out,
        vec!["host file\n", "data-ro\n", "root-ro\n", "ok\n", "proc-ro\n"]
    );
    assert!(!data.join("out").exists());
}

#[test]
fn unacknowledged_output_blocks_the_container_until_the_router_comes() {
    let mut f = Fixture::without_router();
    let line = "x".repeat(100);
    let script = format!("i=0; while [ $i -lt 5000 ]; do echo ${{i}}{line}; i=$((i+1)); done");
    let report = f.run(&f.spec(&["sh", "-c", &script]), false);
    assert_eq!(report["ok"], true, "{report}");
    // ~1024 records held plus a full pipe: the container cannot finish yet.
    let early = f.wait_exit_file(Duration::from_millis(1500));
    assert!(early.is_none(), "container was not held back: {early:?}");
    f.start_router(0);
    assert_eq!(f.exit_code(), 0);
    let logs = f.logs();
    assert_eq!(logs.len(), 5000);
    for (i, (_, l)) in logs.iter().enumerate() {
        assert_eq!(*l, format!("{i}{line}\n"));
    }
    f.wait_shim_gone();
}

#[test]
fn resize_reaches_the_terminal() {
    let mut f = Fixture::new();
    let mut spec = f.spec(&["sh", "-c", "sleep 0.3; stty size"]);
    spec["process"]["terminal"] = json!(true);
    spec["annotations"]["io.berth.stdin"] = json!("true");
    let report = f.run(&spec, true);
    assert_eq!(report["ok"], true, "{report}");
    let mut sock = UnixStream::connect(f.path("attach.sock")).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write_frame(
        &mut sock,
        kind::ATTACH,
        &AttachFlags {
            stdin: true,
            stdout: true,
            stderr: true,
        }
        .encode(),
    )
    .unwrap();
    write_frame(
        &mut sock,
        kind::RESIZE,
        &berth_wire::WinSize {
            rows: 30,
            cols: 100,
        }
        .encode(),
    )
    .unwrap();
    let mut out = Vec::new();
    let exit = loop {
        let frame = read_frame(&mut sock).unwrap().expect("EXIT");
        match frame.kind {
            kind::STDOUT => out.extend_from_slice(&frame.payload),
            kind::EXIT => break ExitRecord::decode(&frame.payload).unwrap(),
            _ => {}
        }
    };
    assert_eq!(String::from_utf8_lossy(&out), "30 100\r\n");
    assert_eq!(exit.exit_code, 0);
}

/// Unmounts a persistent network namespace file made by the test.
struct NetnsFile(PathBuf);

impl Drop for NetnsFile {
    fn drop(&mut self) {
        let c = std::ffi::CString::new(self.0.to_str().unwrap()).unwrap();
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

#[test]
fn joins_the_network_namespace_from_the_spec() {
    let mut f = Fixture::new();
    let ns = f.path("netns");
    std::fs::write(&ns, "").unwrap();
    let made = Command::new("unshare")
        .arg(format!("--net={}", ns.display()))
        .arg("true")
        .status()
        .unwrap();
    assert!(made.success());
    let _guard = NetnsFile(ns.clone());
    let mut spec = f.spec(&["cat", "/proc/net/dev"]);
    spec["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "network", "path": ns}));
    let report = f.run(&spec, false);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(f.exit_code(), 0);
    let ifaces: Vec<String> = f
        .logs()
        .into_iter()
        .filter_map(|l| l.1.split_once(':').map(|(name, _)| name.trim().to_string()))
        .filter(|n| !n.contains('|'))
        .collect();
    assert_eq!(ifaces, vec!["lo"]);
}

impl Fixture {
    /// Runs `berth-shim exec` for `args` in the running container; returns the report.
    fn exec(&self, eid: &str, process: &Value, user: &str, wait_attach: bool) -> Value {
        let pid = self.pid.expect("container started");
        self.exec_pid(eid, process, user, wait_attach, pid)
    }

    fn exec_pid(&self, eid: &str, process: &Value, user: &str, wait: bool, pid: i32) -> Value {
        let pfile = self.path(&format!("process-{eid}.json"));
        std::fs::write(&pfile, serde_json::to_vec(process).unwrap()).unwrap();
        let bin = std::env::var("BERTH_SHIM_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_berth-shim").to_string());
        let mut cmd = Command::new(bin);
        cmd.arg("exec")
            .args(["--id", "c", "--exec-id", eid, "--pid", &pid.to_string()])
            .arg("--bundle")
            .arg(self.path("bundle"))
            .arg("--process")
            .arg(&pfile)
            .args(["--user", user])
            .arg("--attach-socket")
            .arg(self.path(&format!("exec-{eid}.sock")));
        if wait {
            cmd.arg("--wait-attach");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "shim exec failed: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.lines().count(), 1, "one report line: {text:?}");
        serde_json::from_str(&text).unwrap()
    }

    fn exec_exit_code(&self, eid: &str) -> i64 {
        let path = self.path(&format!("bundle/exec-{eid}.json"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                let v: Value = serde_json::from_str(&text).unwrap();
                return v["exit_code"].as_i64().unwrap();
            }
            assert!(Instant::now() < deadline, "{} not written", path.display());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Attaches to an exec (stdout+stderr, no stdin) and collects output until EXIT.
    fn attach_exec(&self, eid: &str) -> (String, String, i32) {
        let mut sock = UnixStream::connect(self.path(&format!("exec-{eid}.sock"))).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let flags = AttachFlags {
            stdin: false,
            stdout: true,
            stderr: true,
        };
        write_frame(&mut sock, kind::ATTACH, &flags.encode()).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let exit = loop {
            let frame = read_frame(&mut sock).unwrap().expect("EXIT");
            match frame.kind {
                kind::STDOUT => out.extend_from_slice(&frame.payload),
                kind::STDERR => err.extend_from_slice(&frame.payload),
                kind::EXIT => break ExitRecord::decode(&frame.payload).unwrap(),
                _ => {}
            }
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.path(&format!("exec-{eid}.sock")).exists() {
            assert!(Instant::now() < deadline, "exec socket left behind");
            std::thread::sleep(Duration::from_millis(20));
        }
        (
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
            exit.exit_code,
        )
    }
}

fn exec_process(args: &[&str]) -> Value {
    json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": args,
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "cwd": "/",
        "capabilities": {"bounding": CAPS, "effective": CAPS, "permitted": CAPS},
        "noNewPrivileges": true
    })
}

#[test]
fn exec_runs_inside_the_container() {
    let mut f = Fixture::new();
    let name = format!(
        "berth-shimtest-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let cg = PathBuf::from("/sys/fs/cgroup/pids").join(&name);
    std::fs::create_dir(&cg).unwrap();
    f.cgroup = Some(cg.clone());
    let mut spec = f.spec(&["sleep", "100"]);
    spec["linux"]["cgroupsPath"] = json!(format!("/{name}"));
    let report = f.run(&spec, false);
    assert_eq!(report["ok"], true, "{report}");
    let script = "cat /proc/self/cgroup; hostname; ls /proc; echo err >&2";
    let report = f.exec("e1", &exec_process(&["sh", "-c", script]), "", true);
    assert_eq!(report["ok"], true, "{report}");
    let exec_pid = report["pid"].as_i64().unwrap();
    assert!(report["shim_pid"].as_i64().unwrap() > 0);
    // On the host: the exec'd process is in the container's cgroup.
    let procs = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l == exec_pid.to_string()),
        "exec pid {exec_pid} not in {procs}"
    );
    let (out, err, code) = f.attach_exec("e1");
    assert_eq!((code, err.as_str()), (0, "err\n"));
    // Inside: the container's cgroup namespace (its cgroup is "/"), UTS and PID spaces.
    assert!(out.lines().any(|l| l.ends_with(":pids:/")), "cgroup: {out}");
    assert!(out.lines().any(|l| l == "testhost"), "{out}");
    let pids: Vec<u32> = out.lines().filter_map(|l| l.parse().ok()).collect();
    assert!(
        pids.contains(&1) && pids.len() <= 4,
        "container pids: {out}"
    );
    assert_eq!(f.exec_exit_code("e1"), 0);
    // Exec output is not logged.
    unsafe { libc::kill(f.pid.unwrap(), libc::SIGKILL) };
    assert_eq!(f.exit_code(), 137);
    assert!(f.logs().is_empty());
}

#[test]
fn exec_exit_codes_user_and_workdir() {
    let mut f = Fixture::new();
    let report = f.run(&f.spec(&["sleep", "100"]), false);
    assert_eq!(report["ok"], true, "{report}");
    let report = f.exec("ok", &exec_process(&["true"]), "", false);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(f.exec_exit_code("ok"), 0);
    let report = f.exec("three", &exec_process(&["sh", "-c", "exit 3"]), "", false);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(f.exec_exit_code("three"), 3);
    let report = f.exec("missing", &exec_process(&["nosuch"]), "", false);
    assert_eq!(
        report,
        json!({"ok": false, "exit_code": 127, "error": "exec: \"nosuch\": executable file not found in $PATH"})
    );
    assert!(!f.path("exec-missing.sock").exists());
    let report = f.exec(
        "user",
        &exec_process(&["sh", "-c", "id -u; id -g"]),
        "nobody",
        true,
    );
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        f.attach_exec("user"),
        ("65534\n65534\n".into(), String::new(), 0)
    );
    // Docker's exec does not create a missing working directory.
    let mut p = exec_process(&["true"]);
    p["cwd"] = json!("/nope");
    let report = f.exec("cwd", &p, "", false);
    assert_eq!(report["exit_code"], 126, "{report}");
    assert!(
        report["error"].as_str().unwrap().contains("/nope"),
        "{report}"
    );
    let report = f.exec("baduser", &exec_process(&["true"]), "nosuch", false);
    assert_eq!(report["exit_code"], 126, "{report}");
}

#[test]
fn exec_with_terminal_gets_a_tty_in_the_container() {
    let mut f = Fixture::new();
    let report = f.run(&f.spec(&["sleep", "100"]), false);
    assert_eq!(report["ok"], true, "{report}");
    let mut p = exec_process(&["tty"]);
    p["terminal"] = json!(true);
    let report = f.exec("t", &p, "", true);
    assert_eq!(report["ok"], true, "{report}");
    let (out, _, code) = f.attach_exec("t");
    assert_eq!((out.as_str(), code), ("/dev/pts/0\r\n", 0));
}

#[test]
fn exec_into_a_gone_process_is_125() {
    let f = Fixture::new();
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    let report = f.exec_pid("gone", &exec_process(&["true"]), "", false, pid);
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["exit_code"], 125, "{report}");
    let err = report["error"].as_str().unwrap();
    assert!(err.contains(&format!("container process {pid} ")), "{err}");
    assert!(!f.path("exec-gone.sock").exists());
}

#[test]
fn exec_stdin_closes_when_the_client_does_not_send_it() {
    let mut f = Fixture::new();
    let report = f.run(&f.spec(&["sleep", "100"]), false);
    assert_eq!(report["ok"], true, "{report}");
    let report = f.exec("cat", &exec_process(&["cat"]), "", true);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(f.attach_exec("cat"), (String::new(), String::new(), 0));
}

fn init_spec(f: &Fixture, args: &[&str]) -> Value {
    let mut spec = f.spec(args);
    spec["annotations"]["io.berth.init"] = json!("true");
    spec
}

#[test]
fn init_is_pid_1_and_the_command_pid_2() {
    let mut f = Fixture::new();
    let script = "cat /proc/1/comm; echo $$; tr -d '\\0' < /proc/1/cmdline; echo; tr '\\0' ' ' < /proc/2/cmdline; echo";
    let report = f.run(&init_spec(&f, &["sh", "-c", script]), false);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(f.exit_code(), 0);
    let lines: Vec<String> = f.logs().into_iter().map(|l| l.1).collect();
    assert_eq!(
        lines,
        vec![
            "berth-init\n".to_string(),
            "2\n".to_string(),
            "berth-init\n".to_string(),
            format!("sh -c {script} \n")
        ]
    );
}

#[test]
fn init_exits_with_the_command_and_reaps_its_orphans() {
    let mut f = Fixture::new();
    let report = f.run(&init_spec(&f, &["sh", "-c", "sleep 100 & exit 3"]), false);
    assert_eq!(report["ok"], true, "{report}");
    let start = Instant::now();
    assert_eq!(f.exit_code(), 3);
    assert!(start.elapsed() < Duration::from_secs(10));
    let report = f.run(&init_spec(&f, &["nosuch"]), false);
    assert_eq!(report["exit_code"], 127, "{report}");
}

#[test]
fn init_forwards_sigterm_to_the_command() {
    let mut f = Fixture::new();
    let report = f.run(&init_spec(&f, &["sleep", "1000"]), false);
    assert_eq!(report["ok"], true, "{report}");
    let pid = report["pid"].as_i64().unwrap() as i32;
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(f.exit_code(), 143);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn init_with_a_terminal_puts_the_command_in_the_foreground() {
    let mut f = Fixture::new();
    // /proc/2/stat: pid (comm) state ppid pgrp session tty_nr tpgid: its own group, and
    // the terminal's foreground one.
    let script = "tty; set -- $(cat /proc/2/stat); echo $5 $8";
    let mut spec = init_spec(&f, &["sh", "-c", script]);
    spec["process"]["terminal"] = json!(true);
    let report = f.run(&spec, false);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(f.exit_code(), 0);
    let lines: Vec<String> = f.logs().into_iter().map(|l| l.1).collect();
    assert_eq!(lines, vec!["/dev/pts/0\r\n", "2 2\r\n"]);
}
