//! A real registry (Debian's `docker-registry`) on a free loopback port, and push/pull
//! drivers that collect the progress messages, for the registry tests.
use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use berth_image_store::{
    registry::{
        client::Credentials,
        pull::{pull, PullRequest},
        push::push,
        Inflight,
    },
    store::{ImageInfo, Store},
    Error,
};
use berth_proto::image::v1 as pb;

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A registry process, killed (by its PID) when dropped.
pub struct TestRegistry {
    child: Child,
    pub host: String,
    _dir: tempfile::TempDir,
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a registry with its own config and storage; with `users`, htpasswd (bcrypt)
/// basic auth. None (the test skips) when the binary is missing.
pub fn start_registry(users: &[(&str, &str)]) -> Option<TestRegistry> {
    if !Path::new(REGISTRY_BIN).exists() {
        eprintln!("skipping: {REGISTRY_BIN} is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let host = format!("127.0.0.1:{}", free_port());
    let mut auth = String::new();
    if !users.is_empty() {
        let mut lines = String::new();
        for (u, p) in users {
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .expect("htpasswd");
            assert!(out.status.success());
            lines.push_str(String::from_utf8_lossy(&out.stdout).trim());
            lines.push('\n');
        }
        let path = dir.path().join("htpasswd");
        std::fs::write(&path, lines).unwrap();
        auth = format!(
            "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
            path.display()
        );
    }
    let config = format!(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {host}\n{auth}",
        dir.path().join("data").display()
    );
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, config).unwrap();
    let child = Command::new(REGISTRY_BIN)
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start docker-registry");
    let reg = TestRegistry {
        child,
        host: host.clone(),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(&host).is_err() {
        assert!(
            Instant::now() < deadline,
            "registry did not start on {host}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(reg)
}

/// Pushes `reference` and returns the result with every progress message.
pub async fn push_collect(
    store: &Arc<Store>,
    reference: &str,
    creds: Credentials,
) -> (Result<String, Error>, Vec<pb::PushProgress>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let task = tokio::spawn(push(
        store.clone(),
        reference.to_string(),
        creds,
        Default::default(),
        tx,
    ));
    let mut msgs = Vec::new();
    while let Some(m) = rx.recv().await {
        msgs.push(m);
    }
    (task.await.unwrap(), msgs)
}

/// Runs `request` and returns the result with every progress message.
pub async fn pull_collect(
    store: &Arc<Store>,
    inflight: Arc<Inflight>,
    request: PullRequest,
) -> (Result<ImageInfo, Error>, Vec<pb::PullProgress>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let task = tokio::spawn(pull(store.clone(), inflight, request, tx));
    let mut msgs = Vec::new();
    while let Some(m) = rx.recv().await {
        msgs.push(m);
    }
    (task.await.unwrap(), msgs)
}
