//! The overlay benchmark (`BENCH_ONLY=overlay deploy/bench/run.sh`, ignored in `just
//! test`): two hosts of the netns lab (as in tests/e2e/overlay.rs), TCP throughput and round
//! trips between containers on the two hosts over the overlay, against the same between
//! the two hosts' own namespaces over the underlay; and the time from `run -d` on host B
//! until its name resolves on host C. The traffic is made by this process from threads
//! that enter the namespaces, so the figures are the kernel path's, not a tool's.
//! Writes a Markdown section to `$BERTH_BENCH_OUT` (else stdout).
use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use berth_integration_tests::{etcd::EtcdPeer, eventually, multihost::Underlay, Engine};

const BYTES: usize = 512 << 20;
const ROUND_TRIPS: usize = 2000;
/// Underlay and overlay measured in turn this many times (median, min–max).
const ROUNDS: usize = 5;
const PORT: u16 = 5001;

/// Runs `f` on a thread inside the network namespace at `netns`.
fn in_netns<T: Send + 'static>(netns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let file = std::fs::File::open(netns).expect("open netns");
    std::thread::spawn(move || {
        use std::os::unix::io::AsRawFd;
        // SAFETY: setns on this thread only; the file outlives the call.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("netns thread")
}

/// A sink on `bind_ip:PORT` in `netns` reading what it receives, and a TCP echo on
/// PORT+1; each serves `ROUNDS` connections in turn, on its own thread.
fn start_servers(netns: &Path, bind_ip: Ipv4Addr) -> Vec<std::thread::JoinHandle<()>> {
    let listeners = in_netns(netns, move || {
        (
            TcpListener::bind((bind_ip, PORT)).expect("bind sink"),
            TcpListener::bind((bind_ip, PORT + 1)).expect("bind echo"),
        )
    });
    let (sink, echo) = listeners;
    vec![
        std::thread::spawn(move || {
            for _ in 0..ROUNDS {
                let (mut s, _) = sink.accept().unwrap();
                let mut buf = vec![0u8; 256 << 10];
                while s.read(&mut buf).unwrap_or(0) > 0 {}
                let _ = s.write_all(b"k");
            }
        }),
        std::thread::spawn(move || {
            for _ in 0..ROUNDS {
                let (mut s, _) = echo.accept().unwrap();
                s.set_nodelay(true).unwrap();
                let mut b = [0u8; 1];
                while s.read_exact(&mut b).is_ok() {
                    if s.write_all(&b).is_err() {
                        break;
                    }
                }
            }
        }),
    ]
}

/// (throughput in Gbit/s, median round trip in µs) from `netns` to `to`.
fn measure(netns: &Path, to: Ipv4Addr) -> (f64, f64) {
    in_netns(netns, move || {
        let mut s = TcpStream::connect(SocketAddr::from((to, PORT))).expect("connect sink");
        let buf = vec![7u8; 256 << 10];
        let start = Instant::now();
        let mut sent = 0;
        while sent < BYTES {
            s.write_all(&buf).unwrap();
            sent += buf.len();
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut ack = [0u8; 1];
        s.read_exact(&mut ack).unwrap();
        let gbits = (sent as f64 * 8.0) / start.elapsed().as_secs_f64() / 1e9;

        let mut e = TcpStream::connect(SocketAddr::from((to, PORT + 1))).expect("connect echo");
        e.set_nodelay(true).unwrap();
        let mut rtts = Vec::with_capacity(ROUND_TRIPS);
        let mut b = [1u8; 1];
        for _ in 0..ROUND_TRIPS {
            let t = Instant::now();
            e.write_all(&b).unwrap();
            e.read_exact(&mut b).unwrap();
            rtts.push(t.elapsed().as_secs_f64() * 1e6);
        }
        rtts.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (gbits, rtts[rtts.len() / 2])
    })
}

/// A DNS A query for `name` (id 1, recursion desired).
fn dns_query(name: &str) -> Vec<u8> {
    let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

fn container_netns(engine: &Engine, name: &str) -> PathBuf {
    let id = engine.inspect(name, "{{.Id}}");
    engine.run_dir.join("netns").join(id.trim())
}

#[test]
#[ignore = "benchmark: BENCH_ONLY=overlay deploy/bench/run.sh"]
fn overlay_bench() {
    let underlay = Underlay::new(3);
    let etcd = EtcdPeer::start_in_netns(&underlay.underlay_netns(), Underlay::underlay_ip());
    let hosts: Vec<Engine> = (0..3)
        .map(|i| {
            let ip = underlay.host_ip(i).to_string();
            let node = format!("bench-{i}");
            Engine::with_busybox_in_netns(
                &underlay.netns_path(i),
                &[
                    ("BERTH_CLUSTER_STORE", &etcd.endpoint()),
                    ("BERTH_ADVERTISE_ADDR", &ip),
                    ("BERTH_NODE_NAME", &node),
                    ("BERTH_CLUSTER_PREFIX", "/bench"),
                    ("RUST_LOG", "warn"),
                ],
            )
        })
        .collect();
    let (a, b, c) = (&hosts[0], &hosts[1], &hosts[2]);
    a.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.96.0.0/24",
        "benchnet",
    ]);
    assert!(eventually(Duration::from_secs(10), || {
        [b, c].iter().all(|h| {
            h.berth(&["network", "inspect", "benchnet"])
                .status
                .success()
        })
    }));

    // Underlay (host namespace A to host namespace B) and overlay (a container on A to a
    // container on B), in turn, so both see the same machine load.
    for (h, name) in [(a, "src"), (b, "dst")] {
        h.ok(&[
            "run", "-d", "--net", "benchnet", "--name", name, "busybox", "sleep", "600",
        ]);
    }
    let dst_ip: Ipv4Addr = b.container_ip("dst", "benchnet").parse().unwrap();
    let under_servers = start_servers(&underlay.netns_path(1), underlay.host_ip(1));
    let over_servers = start_servers(&container_netns(b, "dst"), dst_ip);
    let (mut under, mut over) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        under.push(measure(&underlay.netns_path(0), underlay.host_ip(1)));
        over.push(measure(&container_netns(a, "src"), dst_ip));
    }
    under_servers
        .into_iter()
        .chain(over_servers)
        .for_each(|t| t.join().unwrap());
    let spread = |v: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| {
        let mut x: Vec<f64> = v.iter().map(pick).collect();
        x.sort_by(|p, q| p.partial_cmp(q).unwrap());
        (x[x.len() / 2], x[0], x[x.len() - 1])
    };
    let (under_gbit, ug_min, ug_max) = spread(&under, |m| m.0);
    let (under_rtt, _, _) = spread(&under, |m| m.1);
    let (over_gbit, og_min, og_max) = spread(&over, |m| m.0);
    let (over_rtt, _, _) = spread(&over, |m| m.1);

    // Name propagation: `run -d` on B, until C's embedded DNS answers for the name.
    c.ok(&[
        "run", "-d", "--net", "benchnet", "--name", "probe", "busybox", "sleep", "600",
    ]);
    let probe = container_netns(c, "probe");
    let mut visible = Vec::new();
    let mut returned = Vec::new();
    for round in 0..5 {
        let name = format!("svc{round}");
        let query = dns_query(&name);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let poller = {
            let probe = probe.clone();
            std::thread::spawn(move || {
                in_netns(&probe, move || {
                    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
                    sock.set_read_timeout(Some(Duration::from_millis(2)))
                        .unwrap();
                    rx.recv().unwrap();
                    let deadline = Instant::now() + Duration::from_secs(10);
                    let mut buf = [0u8; 512];
                    while Instant::now() < deadline {
                        sock.send_to(&query, "10.96.0.1:53").unwrap();
                        if let Ok(n) = sock.recv(&mut buf) {
                            // Answer count > 0.
                            if n > 7 && (buf[6] != 0 || buf[7] != 0) {
                                return Some(SystemTime::now());
                            }
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    None
                })
            })
        };
        let start = SystemTime::now();
        tx.send(()).unwrap();
        b.ok(&[
            "run", "-d", "--net", "benchnet", "--name", &name, "busybox", "sleep", "600",
        ]);
        returned.push(start.elapsed().unwrap().as_secs_f64() * 1000.0);
        let seen = poller.join().unwrap().expect("name never resolved on C");
        visible.push(seen.duration_since(start).unwrap().as_secs_f64() * 1000.0);
    }
    visible.sort_by(|x, y| x.partial_cmp(y).unwrap());
    returned.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let med = |v: &[f64]| v[v.len() / 2];

    let section = format!(
        "## Overlay across hosts\n\n\
         Written by `just bench` (or `BENCH_ONLY=overlay deploy/bench/run.sh`) on {date} ({cores} cores): the netns lab of \
         `deploy/multihost` (three hosts, each a network namespace with its own berth services, \
         etcd on the underlay; veth links, MTU 1500). Traffic is made by the benchmark itself from \
         threads inside the namespaces: 512 MiB over one TCP connection, then {rt} one-byte \
         round trips (median); underlay and overlay in turn, {rounds} rounds, median (min–max). \
         Docker needs swarm mode for overlay networks, so it is not compared here.\n\n\
         | Path | Throughput | Round trip |\n|---|---|---|\n\
         | underlay: host A → host B | {ug:.2} Gbit/s ({ugmin:.2}–{ugmax:.2}) | {ur:.0} µs |\n\
         | overlay: container on A → container on B (VXLAN) | {og:.2} Gbit/s ({ogmin:.2}–{ogmax:.2}), {pct:.0}% of the underlay | {or:.0} µs |\n\n\
         Name visible on another host: from `berth run -d` on host B to host C's embedded DNS \
         answering for the new name, median {vis:.0} ms (min {vmin:.0}, max {vmax:.0}) over 5 runs; \
         `run -d` itself returned after a median {ret:.0} ms. Targets: overlay ≥ 80% of the \
         underlay, name visible ≤ 200 ms.\n",
        date = humantime::format_rfc3339_seconds(SystemTime::now()),
        cores = std::thread::available_parallelism().map_or(0, |n| n.get()),
        rt = ROUND_TRIPS,
        rounds = ROUNDS,
        ugmin = ug_min,
        ugmax = ug_max,
        ogmin = og_min,
        ogmax = og_max,
        ug = under_gbit,
        ur = under_rtt,
        og = over_gbit,
        pct = 100.0 * over_gbit / under_gbit,
        or = over_rtt,
        vis = med(&visible),
        vmin = visible[0],
        vmax = visible[visible.len() - 1],
        ret = med(&returned),
    );
    match std::env::var_os("BERTH_BENCH_OUT") {
        Some(path) => std::fs::write(path, &section).unwrap(),
        None => println!("{section}"),
    }
    for h in &hosts {
        let ids = h.ok(&["ps", "-aq"]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            h.ok(&args);
        }
    }
    drop(hosts);
    drop(etcd);
}
