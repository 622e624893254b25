//! Remote delivery seen from the router: a peer that is down neither fails a reload at
//! startup, nor keeps `close_log`/reconfiguring waiting on a writer blocked on the full
//! queue, nor stalls other containers' ingest; InspectLog reports driver, file and counters.
use std::{
    collections::BTreeMap,
    io::Write,
    net::TcpListener,
    os::unix::net::UnixStream,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use berth_log_router::{ingest, logger::LogConfig, router::Router, Error};
use berth_wire::{encode_into, kind, read_frame, LogRecord, STREAM_STDOUT};

fn config(driver: &str, opts: &[(&str, &str)]) -> LogConfig {
    LogConfig {
        driver: driver.into(),
        options: opts
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        ..Default::default()
    }
}

fn record(seq: u64, len: usize) -> LogRecord {
    let mut line = vec![b'x'; len - 1];
    line.push(b'\n');
    LogRecord {
        seq,
        time_unix_nano: 1_700_000_000_000_000_000 + seq as i64,
        stream: STREAM_STDOUT,
        line,
    }
}

/// A syslog-over-tcp config whose peer is reachable at open and dead afterwards.
fn dead_syslog(extra: &[(&str, &str)]) -> (LogConfig, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("tcp://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let mut opts = vec![("syslog-address", addr.as_str())];
    opts.extend_from_slice(extra);
    (config("syslog", &opts), listener)
}

async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts a writer thread that fills the log's remote queue until it blocks (3 MiB of
/// lines against the 1 MiB queue); returns it once it is seen blocked.
async fn blocked_writer(
    router: &Arc<Router>,
    id: &str,
) -> std::thread::JoinHandle<std::io::Result<Option<u64>>> {
    let log = router.ingest_log(id).unwrap();
    let writer = std::thread::spawn(move || {
        let records: Vec<_> = (0..3072).map(|i| record(i, 1024)).collect();
        log.write_batch(&records)
    });
    let r = router.clone();
    let id = id.to_string();
    until("a full queue", || {
        r.inspect_log(&id).unwrap().stats.unwrap().pending_lines > 1000
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!writer.is_finished(), "the writer waits on the full queue");
    writer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_log_returns_at_once_and_releases_a_blocked_writer() {
    let dir = tempfile::tempdir().unwrap();
    let router = Arc::new(Router::open(dir.path()).unwrap());
    let (cfg, listener) = dead_syslog(&[("cache-disabled", "true")]);
    router.open_log("c1", cfg).unwrap();
    drop(listener);
    let writer = blocked_writer(&router, "c1").await;
    let start = Instant::now();
    router.close_log("c1").unwrap();
    assert!(
        start.elapsed() < Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    until("the writer released", || writer.is_finished()).await;
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(
        writer.join().unwrap().is_err(),
        "the shim resends the refused line"
    );
    assert!(matches!(router.inspect_log("c1"), Err(Error::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfiguring_releases_a_blocked_writer_and_lines_go_to_the_new_driver() {
    let dir = tempfile::tempdir().unwrap();
    let router = Arc::new(Router::open(dir.path()).unwrap());
    let (cfg, listener) = dead_syslog(&[("cache-disabled", "true")]);
    router.open_log("c1", cfg).unwrap();
    drop(listener);
    let writer = blocked_writer(&router, "c1").await;
    let start = Instant::now();
    let path = router.open_log("c1", config("json-file", &[])).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(writer.join().unwrap().is_err());
    // The shim resends from RESUME; those lines land in the new json-file log.
    let log = router.ingest_log("c1").unwrap();
    let next = log.next_seq();
    assert!(next > 0 && next < 3072, "{next}");
    let last = log
        .write_batch(&[record(next, 8), record(next + 1, 8)])
        .unwrap();
    assert_eq!(last, Some(next + 1));
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    let info = router.inspect_log("c1").unwrap();
    assert_eq!((info.driver.as_str(), info.stats), ("json-file", None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_peer_fails_create_but_not_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::open(dir.path()).unwrap();
    let (cfg, listener) = dead_syslog(&[]);
    router.open_log("c1", cfg.clone()).unwrap();
    drop(listener);
    // Same config again: nothing is redialled.
    router.open_log("c1", cfg.clone()).unwrap();
    // A new container with that peer is refused, as Docker refuses `run`.
    let e = router.open_log("c2", cfg.clone()).unwrap_err().to_string();
    assert!(e.contains("syslog-address"), "{e}");
    assert!(!dir.path().join("containers/c2").exists());
    drop(router);

    let router = Router::open(dir.path()).unwrap();
    let info = router.inspect_log("c1").unwrap();
    assert_eq!(info.driver, "syslog");
    assert_eq!(
        info.log_path.as_deref(),
        Some(dir.path().join("containers/c1/c1-local.log").as_path())
    );
    // Lines are accepted (and cached for `logs`) while the peer is away.
    let log = router.ingest_log("c1").unwrap();
    let last = tokio::task::spawn_blocking(move || log.write_batch(&[record(0, 8)]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last, Some(0));
    assert_eq!(
        router
            .inspect_log("c1")
            .unwrap()
            .stats
            .unwrap()
            .pending_lines,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_log_reports_driver_file_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    let router = Router::open(dir.path()).unwrap();
    let c = |id: &str, name: &str| dir.path().join("containers").join(id).join(name);
    router.open_log("j", config("", &[])).unwrap();
    router.open_log("l", config("local", &[])).unwrap();
    router.open_log("n", config("none", &[])).unwrap();
    let (cfg, _listener) = dead_syslog(&[]);
    router.open_log("s", cfg).unwrap();
    let (cfg, listener) = dead_syslog(&[
        ("cache-disabled", "true"),
        ("mode", "non-blocking"),
        ("max-buffer-size", "4k"),
    ]);
    router.open_log("d", cfg).unwrap();
    drop(listener);
    for (id, driver, path) in [
        ("j", "json-file", Some(c("j", "j-json.log"))),
        ("l", "local", Some(c("l", "l-local.log"))),
        ("n", "none", None),
        ("s", "syslog", Some(c("s", "s-local.log"))),
        ("d", "syslog", None),
    ] {
        let info = router.inspect_log(id).unwrap();
        assert_eq!(
            (info.driver.as_str(), info.log_path),
            (driver, path),
            "{id}"
        );
        assert_eq!(info.stats.is_some(), driver == "syslog", "{id}");
    }
    // Non-blocking with the peer down: what does not fit is dropped, never waited for.
    let log = router.ingest_log("d").unwrap();
    let start = Instant::now();
    let records: Vec<_> = (0..100).map(|i| record(i, 1024)).collect();
    let last = tokio::task::spawn_blocking(move || log.write_batch(&records))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(last, Some(99));
    assert!(start.elapsed() < Duration::from_secs(1));
    let stats = router.inspect_log("d").unwrap().stats.unwrap();
    assert!(stats.dropped_lines >= 90, "{stats:?}");
    assert!(matches!(
        router.inspect_log("nope"),
        Err(Error::NotFound(_))
    ));
}

/// Connects a shim for `id`, sends `records` and returns the last ACK seen within
/// `wait` (None if there was none).
fn shim_send(socket: &Path, id: &str, records: &[LogRecord], wait: Duration) -> Option<u64> {
    let mut s = UnixStream::connect(socket).unwrap();
    let mut out = Vec::new();
    encode_into(&mut out, kind::HELLO, id.as_bytes());
    s.write_all(&out).unwrap();
    let f = read_frame(&mut s).unwrap().unwrap();
    assert_eq!(f.kind, kind::RESUME);
    let mut out = Vec::new();
    for r in records {
        encode_into(&mut out, kind::LOG, &r.encode());
    }
    if s.write_all(&out).is_err() {
        // The router closed the connection before taking everything.
        return None;
    }
    s.set_read_timeout(Some(wait)).unwrap();
    let want = records.last().map(|r| r.seq);
    let mut last = None;
    while last < want {
        match read_frame(&mut s) {
            Ok(Some(f)) if f.kind == kind::ACK => last = Some(f.as_u64().unwrap()),
            _ => break,
        }
    }
    last
}

/// On a single-threaded runtime, a container blocked on its remote queue must not stop
/// another container's lines from being written and acknowledged.
#[test]
fn a_blocked_remote_log_does_not_stall_other_containers() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("ingest.sock");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Delivery tasks start on the runtime current at open.
    let (router, listener) = rt.block_on(async {
        let router = Arc::new(Router::open(&dir.path().join("state")).unwrap());
        let (cfg, peer) = dead_syslog(&[("cache-disabled", "true")]);
        router.open_log("slow", cfg).unwrap();
        router.open_log("fast", config("", &[])).unwrap();
        drop(peer);
        (router, berth_common::serve::bind_unix(&socket).unwrap())
    });
    let server = {
        let router = router.clone();
        std::thread::spawn(move || {
            rt.block_on(async move {
                tokio::select! {
                    _ = ingest::serve(router, listener) => {}
                    _ = tokio::time::sleep(Duration::from_secs(20)) => {}
                }
            })
        })
    };
    let slow: Vec<_> = (0..3072).map(|i| record(i, 1024)).collect();
    let blocked = {
        let socket = socket.clone();
        std::thread::spawn(move || shim_send(&socket, "slow", &slow, Duration::from_secs(30)))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while router
        .inspect_log("slow")
        .unwrap()
        .stats
        .unwrap()
        .pending_lines
        < 1000
    {
        assert!(Instant::now() < deadline, "slow log never filled");
        std::thread::sleep(Duration::from_millis(10));
    }
    let fast: Vec<_> = (0..10).map(|i| record(i, 16)).collect();
    assert_eq!(
        shim_send(&socket, "fast", &fast, Duration::from_secs(2)),
        Some(9)
    );
    assert!(!blocked.is_finished(), "slow is still blocked");
    // Closing releases it: the connection fails before everything was acknowledged.
    router.close_log("slow").unwrap();
    assert_ne!(blocked.join().unwrap(), Some(3071));
    drop(server);
}
