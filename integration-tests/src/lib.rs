//! Test harness: starts berth's six real services on a private state root, run directory
//! and instance name, drives them through the real `berth` CLI, and on drop stops them and
//! removes every kernel object the instance made (processes in its cgroups, its cgroups,
//! its mounts), on failure too.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

pub mod etcd;
pub mod fluentbit;
pub mod moto;
pub mod multihost;
pub mod rotel;
pub mod skopeo;

pub const SERVICES: [&str; 6] = [
    "image-store",
    "supervisor",
    "network",
    "volume",
    "log-router",
    "engine",
];

/// The process that runs all six services ([`Engine::start_one_process`]); it serves the
/// same six sockets.
pub const ONE_PROCESS: &str = "berthd";

/// Directory holding the built binaries (`cargo build --workspace --bins`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target"));
    target.join("debug")
}

/// The offline busybox OCI image tarball; built by the project's script when missing.
pub fn busybox_image() -> PathBuf {
    if let Some(path) = std::env::var_os("BERTH_TEST_IMAGE") {
        let path = PathBuf::from(path);
        if path.exists() {
            return path;
        }
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = manifest.join("../target/berth-images/busybox.tar");
    if !out.exists() {
        // Build under a unique name and rename, so parallel test binaries never see half a file.
        let tmp = out.with_extension(format!("tmp{}", std::process::id()));
        let status = Command::new(manifest.join("../deploy/images/build-busybox-image.sh"))
            .arg(&tmp)
            .stdout(Stdio::null())
            .status()
            .expect("run build-busybox-image.sh");
        assert!(status.success(), "building the busybox test image failed");
        std::fs::rename(&tmp, &out).expect("rename test image");
    }
    out
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The address pool of every test engine (`BERTH_ADDRESS_POOL`): /24s in 10.213.0.0/16.
pub const TEST_ADDRESS_POOL: &str = "10.213.0.0/16/24";

/// One berth engine: six service processes with their own root, sockets and instance name.
pub struct Engine {
    pub root: PathBuf,
    pub run_dir: PathBuf,
    pub instance: String,
    dir: tempfile::TempDir,
    services: BTreeMap<&'static str, Child>,
    /// Extra environment for the services (and the CLI), set by [`Engine::start_with_env`].
    extra_env: Vec<(String, String)>,
    /// The network namespace the services run in ([`Engine::start_in_netns`]); None: the
    /// test's own.
    netns: Option<PathBuf>,
    /// The processes that serve the engine: the six services, or [`ONE_PROCESS`].
    processes: &'static [&'static str],
}

impl Engine {
    /// Starts all six services and waits until the engine answers.
    pub fn start() -> Engine {
        Engine::start_with_env(&[])
    }

    /// Like [`Engine::start`], with extra environment for every service (overriding the
    /// harness's own settings, e.g. `BERTH_DNS_UPSTREAMS`).
    pub fn start_with_env(extra_env: &[(&str, &str)]) -> Engine {
        Engine::start_processes(None, extra_env, &SERVICES)
    }

    /// Like [`Engine::start_with_env`], with every service (also when restarted) inside the
    /// network namespace `netns` (a namespace file such as `/run/netns/NAME`), as on another
    /// host. The CLI stays in the test's namespace and reaches the services over their Unix
    /// sockets; the namespace needs `lo` up (services use 127.0.0.1).
    pub fn start_in_netns(netns: &Path, extra_env: &[(&str, &str)]) -> Engine {
        Engine::start_processes(Some(netns), extra_env, &SERVICES)
    }

    /// Like [`Engine::with_busybox`], with all six services in one process, `berthd`
    /// (restart it with `restart_service(ONE_PROCESS, …)`).
    pub fn one_process_with_busybox() -> Engine {
        Engine::start_processes(None, &[], &[ONE_PROCESS]).with_busybox_loaded()
    }

    /// [`Engine::start_in_netns`] plus the busybox test image as `busybox:latest`.
    pub fn with_busybox_in_netns(netns: &Path, extra_env: &[(&str, &str)]) -> Engine {
        Engine::start_in_netns(netns, extra_env).with_busybox_loaded()
    }

    fn start_processes(
        netns: Option<&Path>,
        extra_env: &[(&str, &str)],
        processes: &'static [&'static str],
    ) -> Engine {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        // Short paths: Unix socket paths are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("bt")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let root = dir.path().join("root");
        let run_dir = dir.path().join("run");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&run_dir).unwrap();
        let instance = format!("berth-t{}-{n}", std::process::id());
        let mut engine = Engine {
            root,
            run_dir,
            instance,
            dir,
            services: BTreeMap::new(),
            extra_env: extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            netns: netns.map(Path::to_path_buf),
            processes,
        };
        for process in processes {
            engine.spawn(process);
        }
        engine.wait_ready();
        engine
    }

    /// Starts an engine and loads the busybox test image as `busybox:latest`.
    pub fn with_busybox() -> Engine {
        Engine::with_busybox_and_env(&[])
    }

    /// [`Engine::start_with_env`] plus the busybox test image as `busybox:latest`.
    pub fn with_busybox_and_env(extra_env: &[(&str, &str)]) -> Engine {
        Engine::start_with_env(extra_env).with_busybox_loaded()
    }

    /// Loads the busybox test image as `busybox:latest`.
    fn with_busybox_loaded(self) -> Engine {
        let image = busybox_image();
        self.ok(&["load", "-i", image.to_str().unwrap()]);
        self
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("BERTH_ROOT", &self.root)
            .env("BERTH_RUN", &self.run_dir)
            .env("BERTH_INSTANCE", &self.instance)
            .env("BERTH_ENGINE_SOCKET", self.run_dir.join("engine.sock"))
            // Registry credentials: never the user's own (tests override it per command).
            .env("BERTH_CONFIG", self.dir.path().join("config"))
            .env_remove("BERTH_HOST")
            // Small subnets for test engines: IPAM skips the ones other engines hold.
            .env("BERTH_ADDRESS_POOL", TEST_ADDRESS_POOL)
            // Names the embedded DNS does not know go to a closed loopback port (answered
            // SERVFAIL at once), never to a resolver outside this machine.
            .env("BERTH_DNS_UPSTREAMS", "127.0.0.1:9")
            .env("RUST_LOG", "info")
            // An empty configuration file: never the machine's /etc/berth/berth.toml (tests
            // that want one pass BERTH_CONFIG_FILE in their extra environment).
            .env("BERTH_CONFIG_FILE", "/dev/null");
        for (key, value) in &self.extra_env {
            cmd.env(key, value);
        }
    }

    fn spawn(&mut self, service: &'static str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(service))
            .unwrap();
        let binary = match service {
            ONE_PROCESS => ONE_PROCESS.to_string(),
            service => format!("berth-{service}"),
        };
        let mut cmd = Command::new(bin_dir().join(&binary));
        self.env(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // Opened close-on-exec: the child joins the namespace before exec and the fd is
        // gone after it; the parent's copy closes when `ns` drops, after the spawn.
        let ns = self.netns.as_ref().map(|path| {
            std::fs::File::open(path)
                .unwrap_or_else(|e| panic!("open network namespace {}: {e}", path.display()))
        });
        if let Some(ns) = &ns {
            use std::os::unix::{io::AsRawFd, process::CommandExt};
            let fd = ns.as_raw_fd();
            // SAFETY: only the async-signal-safe setns syscall runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setns(fd, libc::CLONE_NEWNET) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("start {binary}: {e} (run `cargo build --workspace --bins` first)")
        });
        drop(ns);
        self.services.insert(service, child);
    }

    /// The network namespace the services run in, when not the test's own.
    pub fn netns(&self) -> Option<&Path> {
        self.netns.as_deref()
    }

    pub fn log_path(&self, service: &str) -> PathBuf {
        self.dir.path().join(format!("{service}.log"))
    }

    /// The service logs, for failure messages.
    pub fn service_logs(&self) -> String {
        self.processes
            .iter()
            .map(|s| {
                format!(
                    "--- {s} ---\n{}",
                    std::fs::read_to_string(self.log_path(s)).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn wait_socket(&self, service: &str) {
        let socket = self.run_dir.join(format!("{service}.sock"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!("berth-{service} did not come up\n{}", self.service_logs());
    }

    fn wait_ready(&self) {
        for service in SERVICES {
            self.wait_socket(service);
        }
        let out = self.berth(&["version"]);
        assert!(
            out.status.success(),
            "engine not ready: {}\n{}",
            stderr(&out),
            self.service_logs()
        );
    }

    /// Stops a service (SIGKILL when `kill9`, else SIGTERM) and starts it again.
    pub fn restart_service(&mut self, service: &'static str, kill9: bool) {
        self.stop_service(service, kill9);
        self.start_service(service);
    }

    pub fn stop_service(&mut self, service: &'static str, kill9: bool) {
        if let Some(mut child) = self.services.remove(service) {
            let signal = if kill9 { libc::SIGKILL } else { libc::SIGTERM };
            unsafe { libc::kill(child.id() as i32, signal) };
            let _ = child.wait();
        }
    }

    pub fn start_service(&mut self, service: &'static str) {
        self.spawn(service);
        if service == ONE_PROCESS {
            SERVICES.iter().for_each(|s| self.wait_socket(s));
        } else {
            self.wait_socket(service);
        }
    }

    /// SIGKILLs every service at once, as when the host dies (containers and their shims
    /// keep running, as after a crash of the services; drop still removes them).
    pub fn kill_all(&mut self) {
        for process in self.processes.iter().rev() {
            self.stop_service(process, true);
        }
    }

    /// Starts every service that is not running (after [`Engine::kill_all`]) and waits until
    /// the engine answers.
    pub fn start_all(&mut self) {
        for process in self.processes {
            if !self.services.contains_key(process) {
                self.spawn(process);
            }
        }
        self.wait_ready();
    }

    /// Runs the CLI against this engine.
    pub fn berth(&self, args: &[&str]) -> Output {
        self.berth_cmd(args).output().expect("run berth")
    }

    pub fn berth_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin_dir().join("berth"));
        self.env(&mut cmd);
        cmd.args(args);
        cmd
    }

    /// Runs the CLI with `stdin` as its input.
    pub fn berth_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .berth_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run berth");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs the CLI, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed with {:?}\nstdout: {}\nstderr: {}\n{}",
            out.status.code(),
            stdout(&out),
            stderr(&out),
            self.service_logs()
        );
        stdout(&out)
    }

    /// The actions (with their `height`/`width` on `resize`) of `container`'s own events
    /// from `since` (a [`now_arg`]) until now, in order, from `berth events`.
    pub fn container_events(&self, since: &str, container: &str) -> Vec<String> {
        self.ok(&[
            "events",
            "--since",
            since,
            "--until",
            &now_arg(),
            "--filter",
            &format!("container={container}"),
            "--format",
            "{{json .}}",
        ])
        .lines()
        .map(|line| {
            let event: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("event {line}: {e}"));
            let action = event["Action"].as_str().unwrap_or_default();
            let attrs = &event["Actor"]["Attributes"];
            match (attrs["height"].as_str(), attrs["width"].as_str()) {
                (Some(h), Some(w)) => format!("{action} {h}x{w}"),
                _ => action.to_string(),
            }
        })
        .collect()
    }

    /// `berth inspect --format`.
    pub fn inspect(&self, name: &str, format: &str) -> String {
        self.ok(&["inspect", "--format", format, name])
            .trim()
            .to_string()
    }

    /// The container's address on `network` (empty when it has none there).
    pub fn container_ip(&self, name: &str, network: &str) -> String {
        let networks: serde_json::Value =
            serde_json::from_str(&self.inspect(name, "{{json .NetworkSettings.Networks}}"))
                .expect("inspect JSON");
        networks[network]["IPAddress"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until `inspect` of `name` shows `status`.
    pub fn wait_status(&self, name: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.inspect(name, "{{.State.Status}}");
            if now == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} stayed {now}, wanted {status}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the instance has in the kernel and on disk, to prove a failure left nothing.
    pub fn footprint(&self) -> Footprint {
        Footprint {
            mounts: self.mounts(),
            cgroups: self.cgroup_dirs(),
            bundles: list(&self.root.join("supervisor/containers")),
            snapshots: list(&self.root.join("image-store/snapshots/active")),
            netns: list(&self.run_dir.join("netns")),
            logs: list(&self.root.join("log-router/containers")),
            volumes: list(&self.root.join("volume/volumes")),
        }
    }

    fn mounts(&self) -> Vec<String> {
        let root = self.dir.path().to_string_lossy().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&root))
            .map(str::to_string)
            .collect()
    }

    /// Container cgroup directories of this instance in every hierarchy.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for hierarchy in cgroup_hierarchies() {
            out.extend(
                list_paths(&hierarchy.join(&self.instance))
                    .into_iter()
                    .filter(|p| p.is_dir()),
            );
        }
        out.sort();
        out
    }

    fn kill_instance_processes(&self) {
        // Processes in this instance's cgroups are containers this test started.
        for _ in 0..50 {
            let mut pids = Vec::new();
            for dir in self.cgroup_dirs() {
                if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                    pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
                }
            }
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn shim_pids(&self) -> Vec<i32> {
        // Shims of this engine are the berth-shim processes whose bundle lies under our root.
        let root = self.root.to_string_lossy().to_string();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).to_string())
                .collect();
            if args.first().is_some_and(|a| a.ends_with("berth-shim"))
                && args.iter().any(|a| a.starts_with(&root))
            {
                pids.push(pid);
            }
        }
        pids
    }

    fn cleanup(&mut self) {
        self.kill_instance_processes();
        // Give shims a moment to flush to the still-running log router and exit.
        let deadline = Instant::now() + Duration::from_secs(3);
        while !self.shim_pids().is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        for process in self.processes.iter().rev() {
            self.stop_service(process, false);
        }
        for pid in self.shim_pids() {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        self.kill_instance_processes();
        for mount in self.mounts().into_iter().rev() {
            let c = std::ffi::CString::new(mount).unwrap();
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        self.remove_network_objects();
        for hierarchy in cgroup_hierarchies() {
            let parent = hierarchy.join(&self.instance);
            for dir in list_paths(&parent) {
                if dir.is_dir() {
                    remove_cgroup(&dir);
                }
            }
            if parent.exists() {
                remove_cgroup(&parent);
            }
        }
    }
}

impl Engine {
    /// Network interfaces of this instance (bridges, veths), by its link prefix.
    pub fn links(&self) -> Vec<String> {
        match &self.netns {
            None => instance_links(&self.instance),
            Some(netns) => netns_instance_links(netns, &self.instance),
        }
    }

    /// A command run in the services' network namespace (the test's own when none).
    fn in_netns(&self, program: &str) -> Command {
        match &self.netns {
            None => Command::new(program),
            Some(netns) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net={}", netns.display())).arg(program);
                cmd
            }
        }
    }

    /// Deletes every link and the nft table of this instance; the services are stopped
    /// first, so nothing recreates them.
    fn remove_network_objects(&self) {
        for link in self.links() {
            // A veth's peer goes with it: "Cannot find device" then is fine.
            let _ = self
                .in_netns("ip")
                .args(["link", "delete", &link])
                .stderr(Stdio::null())
                .status();
        }
        let table = berth_common::Config {
            instance: self.instance.clone(),
            ..Default::default()
        }
        .nft_table();
        // "No such file or directory" when the instance never made its table.
        let _ = self
            .in_netns("nft")
            .args(["delete", "table", "ip", &table])
            .stderr(Stdio::null())
            .status();
    }
}

/// Links whose name starts with the instance's link prefix.
pub fn instance_links(instance: &str) -> Vec<String> {
    let prefix = berth_common::config::link_prefix(instance);
    let mut links: Vec<String> = list(Path::new("/sys/class/net"))
        .into_iter()
        .filter(|l| l.starts_with(&prefix))
        .collect();
    links.sort();
    links
}

/// Links in the network namespace `netns` whose name starts with the instance's link prefix
/// (read with `ip`: sysfs shows the namespace of whoever mounted it).
pub fn netns_instance_links(netns: &Path, instance: &str) -> Vec<String> {
    let prefix = berth_common::config::link_prefix(instance);
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["ip", "-o", "link", "show"])
        .stderr(Stdio::null())
        .output();
    let Ok(out) = out else {
        return Vec::new();
    };
    // "7: name@if6: <BROADCAST,…> …"
    let mut links: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    links.sort();
    links.dedup();
    links
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn remove_cgroup(dir: &Path) {
    for _ in 0..50 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Mount points of every cgroup hierarchy (v1 controllers and the v2 unified one).
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            let mountpoint = pre.split(' ').nth(4)?;
            (fstype == "cgroup" || fstype == "cgroup2").then(|| PathBuf::from(mountpoint))
        })
        .collect()
}

/// Everything an engine instance holds for its containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footprint {
    pub mounts: Vec<String>,
    pub cgroups: Vec<PathBuf>,
    pub bundles: Vec<String>,
    pub snapshots: Vec<String>,
    pub netns: Vec<String>,
    pub logs: Vec<String>,
    pub volumes: Vec<String>,
}

fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

fn list_paths(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Now as Unix seconds with nanoseconds, a value `events --since/--until` take.
pub fn now_arg() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
}

/// A unique container name for this test process.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// A private tmux server driving a real terminal, for interactive tests. Its socket lives in
/// a temp dir; dropping it kills that server only.
pub struct Terminal {
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Terminal {
    /// A 100×30 terminal whose shell sees this engine's environment.
    pub fn new(engine: &Engine) -> Terminal {
        let dir = tempfile::Builder::new()
            .prefix("btt")
            .tempdir_in("/tmp")
            .unwrap();
        let socket = dir.path().join("tmux");
        let mut cmd = Command::new("tmux");
        engine.env(&mut cmd);
        let path = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let status = cmd
            .env("PATH", path)
            .env("PS1", "$ ")
            .args(["-S"])
            .arg(&socket)
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "100",
                "-y",
                "30",
                "sh",
            ])
            .status()
            .expect("tmux is installed by deploy/install-deps.sh");
        assert!(status.success());
        Terminal { socket, _dir: dir }
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap()
    }

    /// Types `text` (tmux key names allowed: "Enter", "C-p", "C-c").
    pub fn send(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "0"];
        args.extend_from_slice(keys);
        assert!(self.tmux(&args).status.success());
    }

    /// Types a line and Enter.
    pub fn line(&self, text: &str) {
        self.send(&["-l", text]);
        self.send(&["Enter"]);
    }

    pub fn screen(&self) -> String {
        stdout(&self.tmux(&["capture-pane", "-p", "-t", "0"]))
    }

    /// Waits until the screen shows `text`; panics with the screen if it never does.
    pub fn wait_for(&self, text: &str) {
        if !eventually(Duration::from_secs(10), || self.screen().contains(text)) {
            panic!("terminal never showed {text:?}; screen:\n{}", self.screen());
        }
    }

    pub fn resize(&self, cols: u16, rows: u16) {
        assert!(self
            .tmux(&[
                "resize-window",
                "-t",
                "0",
                "-x",
                &cols.to_string(),
                "-y",
                &rows.to_string()
            ])
            .status
            .success());
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// A real OCI registry (Debian's `docker-registry`) on a free loopback port with its own
/// storage, optionally behind htpasswd basic auth; killed (by its PID) on drop.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl Registry {
    /// A registry without auth.
    pub fn start() -> Registry {
        Registry::start_with(None)
    }

    /// A registry that accepts only `user`/`password`.
    pub fn with_auth(user: &str, password: &str) -> Registry {
        Registry::start_with(Some((user, password)))
    }

    fn start_with(auth: Option<(&str, &str)>) -> Registry {
        let bin = Path::new("/usr/bin/docker-registry");
        assert!(
            bin.exists(),
            "{} is missing: run deploy/install-deps.sh (apt-get install docker-registry apache2-utils)",
            bin.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("breg")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let auth_section = match auth {
            None => String::new(),
            Some((user, password)) => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("run htpasswd (apache2-utils)");
                assert!(out.status.success(), "htpasswd failed: {}", stderr(&out));
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, &out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                    file.display()
                )
            }
        };
        let log = dir.path().join("registry.log");
        // The port is free when we look; another process may take it before the registry
        // binds, so try a few.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("bind a free port")
                .port();
            let addr = format!("127.0.0.1:{port}");
            let config = format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  \
                 delete:\n    enabled: true\nhttp:\n  addr: {addr}\n  secret: berth-test-{port}\n{auth_section}",
                dir.path().join("data").display()
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let logfile = std::fs::File::create(&log).unwrap();
            let child = Command::new(bin)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(logfile.try_clone().unwrap())
                .stderr(logfile)
                .spawn()
                .expect("start docker-registry");
            let mut child = child;
            if registry_ready(&addr, &mut child) {
                return Registry { addr, dir, child };
            }
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not come up:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// The registry's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    fn kill(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Waits until the registry at `addr` answers `GET /v2/` (200, or 401 behind auth); false
/// when it exits or does not answer in time.
fn registry_ready(addr: &str, child: &mut Child) -> bool {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let req = format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            let mut resp = String::new();
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_to_string(&mut resp).is_ok()
                && (resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.1 401"))
            {
                return true;
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}
