//! No line is lost or duplicated across a router restart: a fake shim (speaking the wire
//! protocol with resend-after-reconnect) writes while the router's ingest server is
//! stopped and started again — and, separately, while the real binary is killed with
//! SIGKILL.
use std::{
    collections::VecDeque,
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use berth_log_router::{
    ingest,
    router::{ReadRequest, Router},
};
use berth_wire::{encode_into, kind, read_frame, LogRecord, STREAM_STDOUT};

/// A blocking fake shim: keeps unacknowledged records and resends them from RESUME.
struct FakeShim {
    id: String,
    socket: PathBuf,
    unacked: VecDeque<LogRecord>,
    next_seq: u64,
    numbered: bool,
    conn: Option<UnixStream>,
}

impl FakeShim {
    fn new(id: &str, socket: &Path) -> FakeShim {
        FakeShim {
            id: id.to_string(),
            socket: socket.to_path_buf(),
            unacked: VecDeque::new(),
            next_seq: 0,
            numbered: false,
            conn: None,
        }
    }

    /// Connects (HELLO/RESUME) and resends what the router lacks; false if the router
    /// is not there.
    fn connect(&mut self) -> bool {
        let Ok(mut s) = UnixStream::connect(&self.socket) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = Vec::new();
        encode_into(&mut out, kind::HELLO, self.id.as_bytes());
        if s.write_all(&out).is_err() {
            return false;
        }
        let Ok(Some(f)) = read_frame(&mut s) else {
            return false;
        };
        assert_eq!(f.kind, kind::RESUME);
        let resume = f.as_u64().unwrap();
        if !self.numbered {
            // Like the real shim: the first RESUME numbers what was queued before it.
            self.numbered = true;
            let first = self.unacked.front().map_or(self.next_seq, |r| r.seq);
            for r in self.unacked.iter_mut() {
                r.seq = r.seq - first + resume;
            }
            self.next_seq = self.next_seq - first + resume;
        }
        while self.unacked.front().is_some_and(|r| r.seq < resume) {
            self.unacked.pop_front();
        }
        let mut out = Vec::new();
        for r in &self.unacked {
            encode_into(&mut out, kind::LOG, &r.encode());
        }
        if s.write_all(&out).is_err() {
            return false;
        }
        self.conn = Some(s);
        true
    }

    fn ensure_connected(&mut self, deadline: Instant) {
        while self.conn.is_none() {
            if self.connect() {
                return;
            }
            assert!(Instant::now() < deadline, "router did not come back");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, line: String) {
        let rec = LogRecord {
            seq: self.next_seq,
            time_unix_nano: 1_700_000_000_000_000_000 + self.next_seq as i64,
            stream: STREAM_STDOUT,
            line: line.into_bytes(),
        };
        self.next_seq += 1;
        let mut out = Vec::new();
        encode_into(&mut out, kind::LOG, &rec.encode());
        self.unacked.push_back(rec);
        if let Some(s) = self.conn.as_mut() {
            if s.write_all(&out).is_err() {
                self.conn = None;
            }
        }
    }

    /// Reads the ACKs that are there without waiting.
    fn poll_acks(&mut self) {
        let Some(s) = self.conn.as_mut() else { return };
        s.set_nonblocking(true).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let gone = loop {
            match s.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        s.set_nonblocking(false).unwrap();
        self.apply_acks(&buf);
        if gone {
            self.conn = None;
        }
    }

    fn apply_acks(&mut self, mut bytes: &[u8]) {
        while let Ok(Some(f)) = read_frame(&mut bytes) {
            if f.kind == kind::ACK {
                let n = f.as_u64().unwrap();
                while self.unacked.front().is_some_and(|r| r.seq <= n) {
                    self.unacked.pop_front();
                }
            }
        }
    }

    /// Sends END and waits for everything to be acknowledged, reconnecting as needed.
    fn finish(&mut self, deadline: Instant) {
        let end = self.next_seq;
        loop {
            self.ensure_connected(deadline);
            let s = self.conn.as_mut().unwrap();
            let mut out = Vec::new();
            encode_into(&mut out, kind::END, &end.to_be_bytes());
            if s.write_all(&out).is_err() {
                self.conn = None;
                continue;
            }
            loop {
                match read_frame(s) {
                    Ok(Some(f)) if f.kind == kind::ACK => {
                        let n = f.as_u64().unwrap();
                        while self.unacked.front().is_some_and(|r| r.seq <= n) {
                            self.unacked.pop_front();
                        }
                        if n >= end {
                            assert!(self.unacked.is_empty());
                            return;
                        }
                    }
                    Ok(Some(_)) => {}
                    _ => {
                        self.conn = None;
                        break;
                    }
                }
            }
        }
    }
}

fn lines_in(state: &Path, id: &str) -> Vec<String> {
    let path = state
        .join("containers")
        .join(id)
        .join(format!("{id}-json.log"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["log"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Compares without printing thousands of lines.
fn assert_lines(got: Vec<String>, want: Vec<String>) {
    if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        panic!(
            "{} lines, want {}; first difference at {i}: {:?} != {:?}",
            got.len(),
            want.len(),
            got.get(i),
            want.get(i)
        );
    }
}

fn expected(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("line {i}\n")).collect()
}

/// Runs the ingest server on its own runtime in a thread; dropping the handle shuts the
/// runtime down (every task, every connection) like a crash of the process would.
struct IngestServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IngestServer {
    fn start(state: &Path, socket: &Path) -> IngestServer {
        let router = Arc::new(Router::open(state).unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let socket = socket.to_path_buf();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = berth_common::serve::bind_unix(&socket).unwrap();
                ready_tx.send(()).unwrap();
                tokio::select! {
                    r = ingest::serve(router, listener) => r.unwrap(),
                    _ = rx => {}
                }
            });
            // Wait for the workers to stop: no task of this "process" runs on after it.
            rt.shutdown_timeout(Duration::from_secs(10));
        });
        ready_rx.recv().unwrap();
        IngestServer {
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for IngestServer {
    fn drop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = self.thread.take().unwrap().join();
    }
}

#[test]
fn no_line_lost_across_ingest_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let socket = dir.path().join("ingest.sock");
    let id = "c0ffee";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut server = Some(IngestServer::start(&state, &socket));
    let mut shim = FakeShim::new(id, &socket);
    let n = 5000;
    for i in 0..n {
        if i % 1000 == 500 {
            // Stop the router mid-stream, keep "writing" while it is down, restart it.
            drop(server.take());
            shim.poll_acks();
        }
        if i % 1000 == 700 {
            server = Some(IngestServer::start(&state, &socket));
        }
        if server.is_some() {
            shim.ensure_connected(deadline);
        }
        shim.send(format!("line {i}\n"));
        if i % 50 == 0 {
            shim.poll_acks();
        }
    }
    if server.is_none() {
        server = Some(IngestServer::start(&state, &socket));
    }
    shim.finish(deadline);
    drop(server);
    assert_lines(lines_in(&state, id), expected(n));

    // A restarted container (new shim) continues the same file.
    let _server = IngestServer::start(&state, &socket);
    let mut shim = FakeShim::new(id, &socket);
    shim.ensure_connected(deadline);
    shim.send("after restart\n".to_string());
    shim.finish(deadline);
    let mut want = expected(n);
    want.push("after restart\n".to_string());
    assert_lines(lines_in(&state, id), want);
}

/// Kills the real binary with SIGKILL while the fake shim writes.
#[test]
fn no_line_lost_across_kill_9_of_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let run = dir.path().join("run");
    let socket = run.join("log-router.ingest.sock");
    let spawn = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_berth-log-router"))
            .env("BERTH_ROOT", &root)
            .env("BERTH_RUN", &run)
            .env("BERTH_INSTANCE", format!("t{}", std::process::id()))
            .env_remove("BERTH_LOG_INGEST_SOCKET")
            .env_remove("BERTH_LOG_ROUTER_SOCKET")
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap()
    };
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let id = "deadbeef";
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut child = Kill(spawn());
    let mut shim = FakeShim::new(id, &socket);
    let n = 20_000;
    for i in 0..n {
        if i % 5000 == 2500 {
            // SIGKILL by PID, then a new process on the same state.
            drop(child);
            let _ = std::fs::remove_file(&socket);
            child = Kill(spawn());
            shim.conn = None;
        }
        shim.ensure_connected(deadline);
        shim.send(format!("line {i}\n"));
        if i % 100 == 0 {
            shim.poll_acks();
        }
    }
    shim.finish(deadline);
    drop(child);
    assert_lines(lines_in(&root.join("log-router"), id), expected(n));
}

#[tokio::test]
async fn follow_streams_new_lines_and_ends_with_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let router = Arc::new(Router::open(&state).unwrap());
    router.open_log("c1", Default::default()).unwrap();
    let log = router.ingest_log("c1").unwrap();
    let rec = |seq: u64, line: &str| LogRecord {
        seq,
        time_unix_nano: seq as i64 + 1,
        stream: STREAM_STDOUT,
        line: line.as_bytes().to_vec(),
    };
    log.write_batch(&[rec(0, "a\n"), rec(1, "b\n")]).unwrap();
    // Not live: follow ends after the existing lines.
    let mut rx = router
        .read_logs(
            "c1",
            ReadRequest {
                follow: true,
                tail: None,
                ..Default::default()
            },
        )
        .unwrap();
    let mut got = Vec::new();
    while let Some(m) = rx.recv().await {
        got.push(m.unwrap().line);
    }
    assert_eq!(got, [b"a\n".to_vec(), b"b\n".to_vec()]);

    // Live: follow streams new lines until END.
    let mut guard = log.connect();
    let mut rx = router
        .read_logs(
            "c1",
            ReadRequest {
                follow: true,
                tail: Some(1),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(rx.recv().await.unwrap().unwrap().line, b"b\n");
    log.write_batch(&[rec(1, "b\n"), rec(2, "c\n")]).unwrap();
    assert_eq!(rx.recv().await.unwrap().unwrap().line, b"c\n");
    log.write_batch(&[rec(3, "d\n")]).unwrap();
    guard.end();
    assert_eq!(rx.recv().await.unwrap().unwrap().line, b"d\n");
    assert!(tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .is_none());

    // since/until and stream selection.
    let mut rx = router
        .read_logs(
            "c1",
            ReadRequest {
                since: 2,
                until: 3,
                tail: None,
                ..Default::default()
            },
        )
        .unwrap();
    let mut got = Vec::new();
    while let Some(m) = rx.recv().await {
        got.push(m.unwrap().line);
    }
    assert_eq!(got, [b"b\n".to_vec(), b"c\n".to_vec()]);
    let mut rx = router
        .read_logs(
            "c1",
            ReadRequest {
                stderr: true,
                tail: None,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(rx.recv().await.is_none());

    // CloseLog removes it; idempotent; reading then is NotFound.
    router.close_log("c1").unwrap();
    router.close_log("c1").unwrap();
    assert!(matches!(
        router.read_logs("c1", ReadRequest::default()),
        Err(berth_log_router::Error::NotFound(_))
    ));
    assert!(!state.join("containers/c1").exists());
}

#[test]
fn open_log_validates_and_is_idempotent() {
    use berth_log_router::logger::LogConfig;
    let dir = tempfile::tempdir().unwrap();
    let router = Router::open(dir.path()).unwrap();
    let cfg = |driver: &str, opts: &[(&str, &str)]| LogConfig {
        driver: driver.to_string(),
        options: opts
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    let p1 = router.open_log("c1", cfg("", &[])).unwrap();
    let p2 = router
        .open_log("c1", cfg("json-file", &[("max-size", "1m")]))
        .unwrap();
    assert_eq!(p1, p2);
    assert!(p1.ends_with("containers/c1/c1-json.log"));
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("containers/c1/meta.json")).unwrap())
            .unwrap();
    assert_eq!(meta["driver"], "json-file");
    assert_eq!(meta["options"]["max-size"], "1m");
    assert_eq!(
        router
            .open_log("c2", cfg("nosuch", &[]))
            .unwrap_err()
            .to_string(),
        "unknown log driver: nosuch"
    );
    assert_eq!(
        router
            .open_log("c2", cfg("", &[("x", "1")]))
            .unwrap_err()
            .to_string(),
        "unknown log opt 'x' for json-file log driver"
    );
    assert!(router.open_log("../x", cfg("", &[])).is_err());
}
