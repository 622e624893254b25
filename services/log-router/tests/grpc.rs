//! The real binary over its sockets: gRPC (OpenLog, ReadLogs with follow, CloseLog) and
//! the ingest socket.
use std::{
    io::Write,
    os::unix::net::UnixStream,
    path::Path,
    time::{Duration, Instant},
};

use berth_proto::logs::v1::{self as pb, log_router_client::LogRouterClient};
use berth_wire::{encode_into, kind, read_frame, LogRecord, STREAM_STDERR, STREAM_STDOUT};

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    // Connect, not just look for the file: it exists a moment before the listen.
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        assert!(
            Instant::now() < deadline,
            "{} did not answer",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, kind, payload);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_follow_and_close_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let (root, run) = (dir.path().join("root"), dir.path().join("run"));
    let _child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_berth-log-router"))
            .env("BERTH_ROOT", &root)
            .env("BERTH_RUN", &run)
            .env_remove("BERTH_LOG_INGEST_SOCKET")
            .env_remove("BERTH_LOG_ROUTER_SOCKET")
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let sock = run.join("log-router.sock");
    let ingest = run.join("log-router.ingest.sock");
    wait_for(&sock);
    wait_for(&ingest);
    let mut client = LogRouterClient::new(berth_common::client::unix_channel(&sock));

    let open = |driver: &str, opts: &[(&str, &str)]| pb::OpenLogRequest {
        container_id: "c1".into(),
        container_name: "web".into(),
        driver: driver.into(),
        options: opts
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    let err = client.open_log(open("nosuch", &[])).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(err.message(), "unknown log driver: nosuch");
    let err = client
        .open_log(open("json-file", &[("max-siz", "1m")]))
        .await
        .unwrap_err();
    assert_eq!(
        err.message(),
        "unknown log opt 'max-siz' for json-file log driver"
    );
    let path = client
        .open_log(open("", &[("max-size", "1m")]))
        .await
        .unwrap()
        .into_inner()
        .log_path;
    assert_eq!(
        Path::new(&path),
        root.join("log-router/containers/c1/c1-json.log")
    );

    // A shim connects; a follower then sees old and new lines until END.
    let mut shim = UnixStream::connect(&ingest).unwrap();
    shim.write_all(&frame(kind::HELLO, b"c1")).unwrap();
    let resume = read_frame(&mut shim).unwrap().unwrap();
    assert_eq!((resume.kind, resume.as_u64().unwrap()), (kind::RESUME, 0));
    let rec = |seq: u64, stream: u8, line: &str| {
        frame(
            kind::LOG,
            &LogRecord {
                seq,
                time_unix_nano: 1_000 + seq as i64,
                stream,
                line: line.into(),
            }
            .encode(),
        )
    };
    shim.write_all(&rec(0, STREAM_STDOUT, "one\n")).unwrap();
    let ack = read_frame(&mut shim).unwrap().unwrap();
    assert_eq!((ack.kind, ack.as_u64().unwrap()), (kind::ACK, 0));

    let mut follow = client
        .read_logs(pb::ReadLogsRequest {
            container_id: "c1".into(),
            follow: true,
            tail: -1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = follow.message().await.unwrap().unwrap();
    assert_eq!(
        (first.line.as_slice(), first.time_unix_nano),
        (&b"one\n"[..], 1_000)
    );
    shim.write_all(
        &[
            rec(1, STREAM_STDERR, "two\n"),
            rec(0, STREAM_STDOUT, "one\n"),
        ]
        .concat(),
    )
    .unwrap();
    let second = follow.message().await.unwrap().unwrap();
    assert_eq!(second.line, b"two\n");
    assert_eq!(second.stream, pb::LogStream::Stderr as i32);
    shim.write_all(&frame(kind::END, &2u64.to_be_bytes()))
        .unwrap();
    loop {
        let ack = read_frame(&mut shim).unwrap().unwrap();
        if ack.as_u64().unwrap() >= 2 {
            break;
        }
    }
    let end = tokio::time::timeout(Duration::from_secs(5), follow.message())
        .await
        .unwrap();
    assert!(end.unwrap().is_none(), "follow ends after END");

    // tail 1, stderr only.
    let mut tail = client
        .read_logs(pb::ReadLogsRequest {
            container_id: "c1".into(),
            tail: 1,
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        tail.message().await.unwrap().is_none(),
        "the last line is on stderr"
    );

    client
        .close_log(pb::CloseLogRequest {
            container_id: "c1".into(),
        })
        .await
        .unwrap();
    client
        .close_log(pb::CloseLogRequest {
            container_id: "c1".into(),
        })
        .await
        .unwrap();
    let err = client
        .read_logs(pb::ReadLogsRequest {
            container_id: "c1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (tonic::Code::NotFound, "no such container: c1")
    );
    assert!(!root.join("log-router/containers/c1").exists());
}
