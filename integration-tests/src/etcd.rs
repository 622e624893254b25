//! A real etcd (Debian's `etcd-server`, /usr/bin/etcd) for tests: one single-member cluster
//! with its own data directory, on free loopback ports or inside a network namespace. It can
//! be stopped and started again on the same data and ports (an etcd restart keeps the data);
//! on drop it is killed by its PID and its directory removed.
use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    net::Ipv4Addr,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant},
};

const ETCD: &str = "/usr/bin/etcd";
/// Log lines etcd prints once it accepts clients (3.4 prints the second with the zap logger).
const READY: [&str; 2] = ["ready to serve client requests", "serving client traffic"];

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct EtcdPeer {
    name: String,
    dir: tempfile::TempDir,
    host: String,
    client_port: u16,
    peer_port: u16,
    /// The network namespace etcd runs in, when not the test's own.
    netns: Option<PathBuf>,
    /// A `deploy/certs.sh` directory: etcd then serves https with `network.pem` and asks
    /// every client for a certificate signed by its `ca.pem`.
    tls: Option<PathBuf>,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

impl EtcdPeer {
    /// An etcd on free loopback ports, ready to serve.
    pub fn start() -> EtcdPeer {
        EtcdPeer::start_with(None)
    }

    /// [`EtcdPeer::start`] over https with client certificates, from the `deploy/certs.sh`
    /// directory `tls` (whose server certificates name 127.0.0.1).
    pub fn start_tls(tls: &Path) -> EtcdPeer {
        EtcdPeer::start_with(Some(tls))
    }

    fn start_with(tls: Option<&Path>) -> EtcdPeer {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: run deploy/install-deps.sh (apt-get install etcd-server)"
        );
        let mut last_log = String::new();
        // The ports are free when we look; another process may take one before etcd binds.
        for _ in 0..5 {
            let mut peer = EtcdPeer::new("127.0.0.1".into(), free_port(), free_port(), None);
            peer.tls = tls.map(Path::to_path_buf);
            if peer.spawn() {
                return peer;
            }
            last_log = peer.log();
        }
        panic!("etcd did not come up:\n{last_log}");
    }

    /// An etcd inside the network namespace at `netns_path` (e.g. /run/netns/X), listening
    /// on `ip:2379` (clients) and `ip:2380` (peers); `ip` must be an address of that
    /// namespace.
    pub fn start_in_netns(netns_path: &Path, ip: Ipv4Addr) -> EtcdPeer {
        EtcdPeer::start_in_netns_with(netns_path, ip, None)
    }

    /// [`EtcdPeer::start_in_netns`] over https with client certificates (see
    /// [`EtcdPeer::start_tls`]; the certificates must name `ip`).
    pub fn start_in_netns_with(netns_path: &Path, ip: Ipv4Addr, tls: Option<&Path>) -> EtcdPeer {
        let mut peer = EtcdPeer::new(ip.to_string(), 2379, 2380, Some(netns_path.to_path_buf()));
        peer.tls = tls.map(Path::to_path_buf);
        if !peer.spawn() {
            panic!(
                "etcd in {} on {ip} did not come up:\n{}",
                netns_path.display(),
                peer.log()
            );
        }
        peer
    }

    fn new(host: String, client_port: u16, peer_port: u16, netns: Option<PathBuf>) -> EtcdPeer {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = tempfile::Builder::new()
            .prefix("betcd")
            .tempdir_in("/tmp")
            .expect("temp dir");
        EtcdPeer {
            name: format!("berth-test-{}-{n}", std::process::id()),
            dir,
            host,
            client_port,
            peer_port,
            netns,
            tls: None,
            child: None,
        }
    }

    /// `http://HOST:PORT` (`https://` with TLS) of the client URL.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.client_port)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// etcd's log (every run of it), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The data directory (kept across [`EtcdPeer::stop`] and [`EtcdPeer::start_again`]).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts etcd and waits until it logs that it serves clients; false when it exits or
    /// does not get there in time (then it is killed).
    fn spawn(&mut self) -> bool {
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("etcd log file");
        // Only what this run logs counts.
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let peer_url = format!("http://{}:{}", self.host, self.peer_port);
        let mut cmd = Command::new(ETCD);
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen-client-urls")
            .arg(self.endpoint())
            .arg("--advertise-client-urls")
            .arg(self.endpoint())
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("{}={peer_url}", self.name))
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--initial-cluster-token")
            .arg(&self.name)
            // Keep test runs quick: elect the single member fast.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .env_remove("ETCDCTL_API")
            .args(self.tls_args())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // Opened before the fork; setns on it in the child, before exec.
        let netns_file = self.netns.as_ref().map(|path| {
            File::open(path).unwrap_or_else(|e| panic!("open netns {}: {e}", path.display()))
        });
        if let Some(file) = &netns_file {
            use std::os::fd::AsRawFd;
            let fd = file.as_raw_fd();
            // SAFETY: setns is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("start etcd");
        drop(netns_file);
        self.child = Some(child);
        if self.wait_ready(log_start) {
            return true;
        }
        self.kill();
        false
    }

    fn tls_args(&self) -> Vec<String> {
        let Some(dir) = &self.tls else {
            return Vec::new();
        };
        let file = |name: &str| dir.join(name).display().to_string();
        vec![
            "--cert-file".into(),
            file("network.pem"),
            "--key-file".into(),
            file("network-key.pem"),
            "--trusted-ca-file".into(),
            file("ca.pem"),
            "--client-cert-auth".into(),
        ]
    }

    fn wait_ready(&mut self, log_start: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = String::new();
        let mut offset = log_start;
        while Instant::now() < deadline {
            if let Ok(mut file) = File::open(self.log_path()) {
                if file.seek(SeekFrom::Start(offset)).is_ok() {
                    let mut more = String::new();
                    if let Ok(n) = file.read_to_string(&mut more) {
                        offset += n as u64;
                        seen.push_str(&more);
                    }
                }
            }
            if READY.iter().any(|r| seen.contains(r)) {
                return true;
            }
            if let Some(child) = &mut self.child {
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Stops etcd (SIGTERM, SIGKILL after 10 s) and waits for it; the data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }

    /// Starts etcd again on the same data directory and ports (after [`EtcdPeer::stop`]).
    pub fn start_again(&mut self) {
        self.stop();
        // The old listening sockets may take a moment to be released.
        for _ in 0..5 {
            if self.spawn() {
                return;
            }
            thread::sleep(Duration::from_millis(200));
        }
        panic!("etcd did not come up again:\n{}", self.log());
    }

    /// True while the etcd process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdPeer {
    fn drop(&mut self) {
        self.kill();
    }
}
