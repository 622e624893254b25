//! The fluentd driver through its public entry point: `fluentd::open` gives a
//! `RemoteLogger` whose lines reach a loopback Forward-protocol reader in order, in
//! batches; non-blocking mode drops (and counts) instead of waiting for a dead server.
use std::{
    collections::BTreeMap,
    io::{Cursor, Read},
    net::TcpListener,
    time::{Duration, Instant},
};

use berth_log_router::{
    fluentd,
    logger::{LogConfig, Logger, Message, STDOUT},
    remote::Mode,
};

/// The bytes of a msgpack `bin`.
struct Bin(Vec<u8>);

impl<'de> serde::Deserialize<'de> for Bin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Bin, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bin;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Bin, E> {
                Ok(Bin(v.to_vec()))
            }
        }
        d.deserialize_bytes(V)
    }
}

#[derive(serde::Deserialize)]
struct Frame(String, Bin, BTreeMap<String, u64>);

/// Every (tag, size option, [log]) in `bytes`, a stream of PackedForward messages.
fn decode_stream(bytes: &[u8]) -> Vec<(String, u64, Vec<String>)> {
    let mut c = Cursor::new(bytes);
    let mut out = Vec::new();
    while (c.position() as usize) < bytes.len() {
        let frame: Frame =
            serde::Deserialize::deserialize(&mut rmp_serde::Deserializer::new(&mut c)).unwrap();
        let mut e = Cursor::new(&frame.1 .0[..]);
        let mut logs = Vec::new();
        while (e.position() as usize) < frame.1 .0.len() {
            let (_time, record): (u64, BTreeMap<String, String>) =
                serde::Deserialize::deserialize(&mut rmp_serde::Deserializer::new(&mut e)).unwrap();
            logs.push(record["log"].clone());
        }
        out.push((frame.0, frame.2["size"], logs));
    }
    out
}

fn config(addr: &str) -> LogConfig {
    LogConfig {
        driver: fluentd::NAME.into(),
        options: [
            ("fluentd-address".to_string(), addr.to_string()),
            ("tag".to_string(), "t.{{.Name}}".to_string()),
            ("fluentd-retry-wait".to_string(), "50ms".to_string()),
        ]
        .into(),
        name: "/c".into(),
        ..Default::default()
    }
}

fn line(i: usize) -> Message {
    Message {
        stream: STDOUT,
        line: format!("line {i}\n").into_bytes(),
        time_unix_nano: 1_700_000_000_000_000_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_arrive_in_order_in_batches() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let reader = std::thread::spawn(move || {
        // The first connection is check_reachable's, which sends nothing.
        loop {
            let (mut peer, _) = listener.accept().unwrap();
            let mut all = Vec::new();
            peer.read_to_end(&mut all).unwrap();
            if !all.is_empty() {
                return all;
            }
        }
    });
    fluentd::validate(&config(&addr)).unwrap();
    fluentd::check_reachable(&config(&addr)).unwrap();
    let mut logger = fluentd::open(&config(&addr), "abcdef0123456789", Mode::Blocking).unwrap();
    let delivery = logger.delivery();
    const N: usize = 3000;
    let logger = tokio::task::spawn_blocking(move || {
        for i in 0..N {
            logger.log(&line(i)).unwrap();
        }
        logger
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while delivery.stats().delivered_lines < N as u64 {
        assert!(Instant::now() < deadline, "{:?}", delivery.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(logger);
    let bytes = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    let frames = decode_stream(&bytes);
    assert!(frames.len() >= 3, "{} frames", frames.len());
    let mut logs = Vec::new();
    for (tag, size, l) in frames {
        assert_eq!(tag, "t.c");
        assert_eq!(size as usize, l.len());
        assert!(l.len() <= 1024);
        logs.extend(l);
    }
    let want: Vec<String> = (0..N).map(|i| format!("line {i}")).collect();
    assert_eq!(logs, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_blocking_mode_drops_when_the_server_is_down() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut config = config(&addr);
    config.options.insert("fluentd-async".into(), "true".into());
    fluentd::check_reachable(&config).unwrap();
    let mut logger = fluentd::open(
        &config,
        "abcdef0123456789",
        Mode::NonBlocking {
            max_buffer_bytes: 1000,
        },
    )
    .unwrap();
    let started = Instant::now();
    for i in 0..1000 {
        logger.log(&line(i)).unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    let stats = logger.stats();
    assert!(stats.dropped_lines > 0, "{stats:?}");
    assert_eq!(stats.delivered_lines, 0, "{stats:?}");
}
