//! The supervisor fixture shared by the test files: the real `berth-shim`
//! (target/debug/berth-shim, or $BERTH_SHIM), a busybox rootfs in a temp dir, a temp
//! BERTH_ROOT/BERTH_RUN, a unique instance name, and a Drop that kills what the test
//! started and removes its cgroups.
#![allow(dead_code)]
use std::{
    collections::HashMap,
    os::unix::net::{UnixListener, UnixStream},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use berth_common::Config;
use berth_proto::supervisor::v1::{ContainerSpec, RootFs};
use berth_supervisor::{store::Store, watch, Options, Supervisor};
use berth_wire::{kind, read_frame, write_frame, LogRecord};

pub static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn shim_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_SHIM") {
        return Some(PathBuf::from(p));
    }
    // target/debug/deps/<test> → target/debug/berth-shim
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("berth-shim");
    p.exists().then_some(p)
}

pub type Logs = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// A log router stand-in: answers RESUME 0 and ACKs every record.
pub fn fake_log_router(socket: &Path) -> Logs {
    let logs: Logs = Arc::default();
    let listener = UnixListener::bind(socket).unwrap();
    let l2 = logs.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let logs = l2.clone();
            std::thread::spawn(move || serve_log_conn(conn, logs));
        }
    });
    logs
}

pub fn serve_log_conn(mut conn: UnixStream, logs: Logs) {
    let mut id = String::new();
    while let Ok(Some(frame)) = read_frame(&mut conn) {
        let reply = match frame.kind {
            kind::HELLO => {
                id = String::from_utf8_lossy(&frame.payload).into_owned();
                Some((kind::RESUME, 0u64))
            }
            kind::LOG => {
                let Ok(rec) = LogRecord::decode(&frame.payload) else {
                    return;
                };
                logs.lock()
                    .unwrap()
                    .entry(id.clone())
                    .or_default()
                    .extend_from_slice(&rec.line);
                Some((kind::ACK, rec.seq))
            }
            kind::END => frame.as_u64().ok().map(|seq| (kind::ACK, seq)),
            _ => None,
        };
        if let Some((k, n)) = reply {
            if write_frame(&mut conn, k, &n.to_be_bytes()).is_err() {
                return;
            }
        }
    }
}

pub fn make_rootfs(dir: &Path) {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    for tool in [
        "sh", "echo", "cat", "sleep", "env", "id", "hostname", "ls", "true", "false",
    ] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(tool)).unwrap();
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .unwrap();
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub shim: PathBuf,
    pub sup: Option<Supervisor>,
    pub logs: Logs,
    pub n: AtomicUsize,
}

impl Env {
    /// None (test skipped) without root or without the shim binary.
    pub fn new(test: &str) -> Option<Env> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP {test}: needs root");
            return None;
        }
        let Some(shim) = shim_binary() else {
            eprintln!("SKIP {test}: no berth-shim (cargo build -p berth-shim, or set BERTH_SHIM)");
            return None;
        };
        Some(Env::with_shim(shim))
    }

    pub fn with_shim(shim: PathBuf) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("sv")
            .tempdir_in("/tmp")
            .unwrap();
        let config = Config {
            root: dir.path().join("root"),
            run_dir: dir.path().join("run"),
            instance: format!(
                "berth-svtest-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::SeqCst)
            ),
        };
        std::fs::create_dir_all(&config.run_dir).unwrap();
        make_rootfs(&dir.path().join("lower"));
        let logs = fake_log_router(&config.log_ingest_socket());
        let mut env = Env {
            dir,
            config,
            shim,
            sup: None,
            logs,
            n: AtomicUsize::new(0),
        };
        env.open();
        env
    }

    pub fn options(&self) -> Options {
        let mut opts = Options::from_config(self.config.clone());
        opts.shim_binary = self.shim.clone();
        // No network service here: the network steps of start and exit are skipped.
        opts.network = None;
        opts
    }

    pub fn open(&mut self) {
        self.sup = Some(Supervisor::open(self.options()).unwrap());
    }

    pub fn sup(&self) -> &Supervisor {
        self.sup.as_ref().unwrap()
    }

    /// Simulates a supervisor restart: drop all in-memory state and reconcile anew.
    pub async fn restart(&mut self) {
        if let Some(sup) = self.sup.take() {
            sup.shutdown();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.sup = Some(Supervisor::start_up(self.options()).await.unwrap());
    }

    pub fn spec(&self, cmd: &[&str]) -> ContainerSpec {
        let n = self.n.fetch_add(1, Ordering::SeqCst);
        let upper = self.dir.path().join(format!("c{n}/upper"));
        let work = self.dir.path().join(format!("c{n}/work"));
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        ContainerSpec {
            image: "busybox".into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            rootfs: Some(RootFs {
                lower_dirs: vec![self.dir.path().join("lower").display().to_string()],
                upper_dir: upper.display().to_string(),
                work_dir: work.display().to_string(),
            }),
            ..Default::default()
        }
    }

    pub fn cgroup_exists(&self, id: &str) -> bool {
        cgroup_dirs(&self.config.instance)
            .iter()
            .any(|d| d.join(id).exists())
    }

    pub fn logs_of(&self, id: &str) -> String {
        String::from_utf8_lossy(
            self.logs
                .lock()
                .unwrap()
                .get(id)
                .map(|v| v.as_slice())
                .unwrap_or(b""),
        )
        .into_owned()
    }
}

pub fn cgroup_dirs(instance: &str) -> Vec<PathBuf> {
    let mut out = vec![Path::new("/sys/fs/cgroup").join(instance)];
    if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            out.push(e.path().join(instance));
        }
    }
    out.into_iter().filter(|p| p.is_dir()).collect()
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(sup) = self.sup.take() {
            sup.shutdown();
        }
        // Thaw paused containers first: a frozen process does not die of SIGKILL (v1).
        for dir in cgroup_dirs(&self.config.instance) {
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten().filter(|e| e.path().is_dir()) {
                    let _ = std::fs::write(e.path().join("freezer.state"), "THAWED");
                    let _ = std::fs::write(e.path().join("cgroup.freeze"), "0");
                }
            }
        }
        // Kill only what this test started: the records' processes (start time checked)
        // and their shims (checked to be berth-shim).
        if let Ok(store) = Store::open(&self.config.root.join("supervisor/meta.db")) {
            for rec in store.list(true).unwrap_or_default() {
                if let Ok(Some(fd)) = watch::PidFd::open_verified(rec.pid, rec.pid_start_time) {
                    let _ = fd.send_signal(libc::SIGKILL);
                }
                let cmdline =
                    std::fs::read(format!("/proc/{}/cmdline", rec.shim_pid)).unwrap_or_default();
                if rec.shim_pid > 0 && String::from_utf8_lossy(&cmdline).contains(&rec.id) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(rec.shim_pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for dir in cgroup_dirs(&self.config.instance) {
            loop {
                if let Ok(rd) = std::fs::read_dir(&dir) {
                    for e in rd.flatten().filter(|e| e.path().is_dir()) {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
                if std::fs::remove_dir(&dir).is_ok() || !dir.exists() || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
