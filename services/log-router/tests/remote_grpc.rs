//! InspectLog over gRPC on the real binary, and a syslog log whose peer is down surviving
//! a restart of the binary.
use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use berth_proto::logs::v1::{self as pb, log_router_client::LogRouterClient};
use tonic::transport::Channel;

/// The binary, killed (by its own handle) when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start(root: &Path, run: &Path) -> (Child, LogRouterClient<Channel>) {
    let sock: PathBuf = run.join("log-router.sock");
    let _ = std::fs::remove_file(&sock);
    let child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_berth-log-router"))
            .env("BERTH_ROOT", root)
            .env("BERTH_RUN", run)
            .env_remove("BERTH_LOG_INGEST_SOCKET")
            .env_remove("BERTH_LOG_ROUTER_SOCKET")
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    // Connect, not just look for the file: it exists a moment before the listen.
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(
            Instant::now() < deadline,
            "{} did not answer",
            sock.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = LogRouterClient::new(berth_common::client::unix_channel(&sock));
    (child, client)
}

fn open(id: &str, driver: &str, opts: &[(&str, &str)]) -> pb::OpenLogRequest {
    pb::OpenLogRequest {
        container_id: id.into(),
        driver: driver.into(),
        options: opts
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

async fn inspect(client: &mut LogRouterClient<Channel>, id: &str) -> pb::InspectLogResponse {
    client
        .inspect_log(pb::InspectLogRequest {
            container_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_log_and_a_dead_syslog_peer_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (root, run) = (dir.path().join("root"), dir.path().join("run"));
    let (child, mut client) = start(&root, &run).await;
    let containers = root.join("log-router/containers");

    client.open_log(open("j", "", &[])).await.unwrap();
    let info = inspect(&mut client, "j").await;
    assert_eq!(info.driver, "json-file");
    assert_eq!(Path::new(&info.log_path), containers.join("j/j-json.log"));
    assert_eq!((info.pending_lines, info.dropped_lines), (0, 0));

    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("tcp://127.0.0.1:{}", peer.local_addr().unwrap().port());
    let syslog = open("s", "syslog", &[("syslog-address", &addr)]);
    client.open_log(syslog.clone()).await.unwrap();
    let info = inspect(&mut client, "s").await;
    assert_eq!(info.driver, "syslog");
    assert_eq!(Path::new(&info.log_path), containers.join("s/s-local.log"));
    drop(peer);

    let err = client
        .inspect_log(pb::InspectLogRequest {
            container_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // A new container cannot use the dead peer; the existing one survives a restart.
    let err = client
        .open_log(open("s2", "syslog", &[("syslog-address", &addr)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("syslog-address"),
        "{}",
        err.message()
    );
    drop(child);
    let (_child, mut client) = start(&root, &run).await;
    let info = inspect(&mut client, "s").await;
    assert_eq!(info.driver, "syslog");
    client.open_log(syslog).await.unwrap();
}
