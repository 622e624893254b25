//! Published-port throughput on loopback: `127.0.0.1:P` → nftables DNAT → a server in a test
//! network namespace, against docker-proxy (and berth's own proxy) to the same server.
//!
//! Ignored (a benchmark, and it needs root and `nft`); run it with
//! `cargo test --release -p berth-network --test published_port_throughput -- --ignored --nocapture`.
//!
//! Everything it makes — a namespace with one end of a veth pair (the other end plays the
//! bridge), an nft table, docker-proxy processes — is removed by guards on drop, and traffic
//! only goes to loopback and into that namespace.
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use berth_network::firewall::{
    FirewallDriver, FirewallNetwork, FirewallState, Nftables, PublishedPort,
};
use berth_network::proxy::{PortProxy, Protocol, ProxyRequest};

/// Bytes per single-stream run (split evenly over the streams of a multi-stream run).
const TOTAL: usize = 2 << 30;
const STREAMS: usize = 4;
const CHUNK: usize = 256 * 1024;
const PING_SIZE: usize = 64;
const PING_ROUNDS: usize = 40_000;
/// Each measurement is repeated and the median reported; paths are interleaved per round.
const REPS: usize = 5;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes the namespace (and with it the veth pair) on drop.
struct NetnsGuard(String);
impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Deletes the benchmark's nft table on drop.
struct TableGuard(Nftables);
impl Drop for TableGuard {
    fn drop(&mut self) {
        let _ = self.0.remove_all();
    }
}

/// A process this test started; killed by its PID on drop.
struct ChildGuard(Child);
impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Binds a listener inside namespace `ns` (a thread joins it just long enough).
fn bind_in_netns(ns: &str, addr: SocketAddrV4) -> TcpListener {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        TcpListener::bind(addr).expect("bind in netns")
    })
    .join()
    .expect("netns thread")
}

/// Reads and discards each connection to EOF, then closes it (the FIN clients wait for).
fn serve_sink(l: TcpListener, received: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let received = received.clone();
            std::thread::spawn(move || {
                let mut c = c;
                let mut buf = vec![0u8; CHUNK];
                loop {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            received.fetch_add(n as u64, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
}

/// Echoes fixed-size messages back until EOF.
fn serve_echo(l: TcpListener) {
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut c = c;
                let _ = c.set_nodelay(true);
                let mut buf = [0u8; PING_SIZE];
                while c.read_exact(&mut buf).is_ok() {
                    if c.write_all(&buf).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

/// `streams` connections to `addr` push `TOTAL` bytes between them at once; aggregate
/// MB/s (10^6 bytes) until every client has seen the server's FIN.
fn push(addr: SocketAddr, streams: usize, received: &AtomicU64) -> f64 {
    let before = received.load(Ordering::Relaxed);
    let each = TOTAL / streams;
    let conns: Vec<TcpStream> = (0..streams)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let go = Arc::new(Barrier::new(streams + 1));
    let workers: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            let go = go.clone();
            std::thread::spawn(move || {
                let chunk = vec![0x5au8; CHUNK];
                go.wait();
                let mut sent = 0;
                while sent < each {
                    c.write_all(&chunk).expect("write");
                    sent += CHUNK;
                }
                c.shutdown(std::net::Shutdown::Write).expect("shutdown");
                let mut rest = Vec::new();
                c.read_to_end(&mut rest).expect("read to EOF");
                sent
            })
        })
        .collect();
    go.wait();
    let start = Instant::now();
    let sent: usize = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(
        received.load(Ordering::Relaxed) - before,
        sent as u64,
        "bytes lost via {addr}"
    );
    sent as f64 / secs / 1e6
}

/// Round trips per second of 64-byte messages on one connection.
fn ping_pong(addr: SocketAddr) -> f64 {
    let mut c = TcpStream::connect(addr).expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let msg = [0x42u8; PING_SIZE];
    let mut buf = [0u8; PING_SIZE];
    for _ in 0..100 {
        c.write_all(&msg).expect("write");
        c.read_exact(&mut buf).expect("read");
    }
    let start = Instant::now();
    for _ in 0..PING_ROUNDS {
        c.write_all(&msg).expect("write");
        c.read_exact(&mut buf).expect("read");
    }
    assert_eq!(buf, msg);
    PING_ROUNDS as f64 / start.elapsed().as_secs_f64()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Starts docker-proxy for 127.0.0.1:<free port> → `target` and waits until it listens.
fn docker_proxy(bin: &str, target: SocketAddrV4) -> (ChildGuard, SocketAddr) {
    let port = free_port();
    // docker-proxy reports readiness on fd 3 and then closes it; without an fd 3 it would
    // close its own listener. `exec` keeps the PID we later kill.
    let child = Command::new("sh")
        .args(["-c", "exec \"$0\" \"$@\" 3>/dev/null"])
        .arg(bin)
        .args(["-proto", "tcp", "-host-ip", "127.0.0.1", "-host-port"])
        .arg(port.to_string())
        .args(["-container-ip"])
        .arg(target.ip().to_string())
        .arg("-container-port")
        .arg(target.port().to_string())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn docker-proxy");
    let guard = ChildGuard(child);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    for _ in 0..500 {
        // Listening once the port cannot be bound any more.
        if TcpListener::bind(addr).is_err() {
            return (guard, addr);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("docker-proxy did not listen on {addr}");
}

/// CPU seconds (user + system, all threads) `pid` has used so far; softirq work is charged
/// to whichever task it interrupted, so the test process and the proxies together account
/// for (nearly) all the work of moving the bytes.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("stat comm") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Path {
    name: &'static str,
    sink: SocketAddr,
    echo: SocketAddr,
    one: Vec<f64>,
    many: Vec<f64>,
    rtt: Vec<f64>,
    /// CPU seconds per GB pushed, single stream.
    cpu: Vec<f64>,
}

#[test]
#[ignore = "benchmark: cargo test --release -p berth-network --test published_port_throughput -- --ignored --nocapture"]
fn published_port_throughput_vs_docker_proxy() {
    let root = nix::unistd::geteuid().is_root();
    let nft_ok = Command::new("nft")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !(root && nft_ok) {
        eprintln!("skipping: needs root and the nft binary");
        return;
    }

    // The "container": a namespace behind a veth whose host end plays the bridge.
    let pid = std::process::id();
    let ns = NetnsGuard(format!("berth_fwbench_{pid}"));
    let (host_if, ctr_if) = (format!("bfb{pid}h"), format!("bfb{pid}c"));
    let octet = (pid % 250) as u8;
    let host_ip = Ipv4Addr::new(198, 19, octet, 1);
    let ctr_ip = Ipv4Addr::new(198, 19, octet, 2);
    ip(&["netns", "add", &ns.0]);
    ip(&[
        "link", "add", &host_if, "type", "veth", "peer", "name", &ctr_if, "netns", &ns.0,
    ]);
    ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]);
    ip(&["link", "set", &host_if, "up"]);
    for args in [
        vec!["addr", "add", &format!("{ctr_ip}/30"), "dev", &ctr_if],
        vec!["link", "set", &ctr_if, "up"],
        vec!["link", "set", "lo", "up"],
    ] {
        let mut v = vec!["netns", "exec", &ns.0, "ip"];
        v.extend(args.iter().copied());
        ip(&v);
    }

    let received = Arc::new(AtomicU64::new(0));
    let sink = bind_in_netns(&ns.0, SocketAddrV4::new(ctr_ip, 0));
    let echo = bind_in_netns(&ns.0, SocketAddrV4::new(ctr_ip, 0));
    let sink_target = match sink.local_addr().expect("addr") {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!(),
    };
    let echo_target = match echo.local_addr().expect("addr") {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!(),
    };
    serve_sink(sink, received.clone());
    serve_echo(echo);

    // Published ports for both servers. Like berth, something holds each host port (here a
    // listener that never accepts, standing in for the proxy); DNAT must take every
    // connection before it reaches that socket.
    let holders: Vec<TcpListener> = (0..2)
        .map(|_| TcpListener::bind("0.0.0.0:0").expect("hold port"))
        .collect();
    let held: Vec<u16> = holders
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect();
    let table = TableGuard(Nftables::new(format!("berth_fwbench_{pid}")));
    let published = |host_port, target: SocketAddrV4| PublishedPort {
        protocol: Protocol::Tcp,
        host_ip: None,
        host_port,
        container_ip: *target.ip(),
        container_port: target.port(),
    };
    table
        .0
        .apply(&FirewallState {
            networks: vec![FirewallNetwork {
                bridge: host_if.clone(),
                subnet: ctr_ip,
                prefix_len: 30,
                internal: false,
            }],
            ports: vec![
                published(held[0], sink_target),
                published(held[1], echo_target),
            ],
        })
        .expect("apply firewall");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let proxy = PortProxy::new();
    let berth_proxy: Vec<SocketAddr> = rt
        .block_on(proxy.open(
            "bench",
            &[sink_target, echo_target].map(|target| ProxyRequest {
                protocol: Protocol::Tcp,
                host: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
                target,
            }),
        ))
        .expect("berth proxy")
        .iter()
        .map(|b| SocketAddr::V4(b.host))
        .collect();

    let lo = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut paths = vec![
        Path {
            name: "direct to container IP (no NAT)",
            sink: SocketAddr::V4(sink_target),
            echo: SocketAddr::V4(echo_target),
            one: vec![],
            many: vec![],
            rtt: vec![],
            cpu: vec![],
        },
        Path {
            name: "127.0.0.1 -> DNAT (berth)",
            sink: lo(held[0]),
            echo: lo(held[1]),
            one: vec![],
            many: vec![],
            rtt: vec![],
            cpu: vec![],
        },
        Path {
            name: "127.0.0.1 -> berth proxy (splice)",
            sink: berth_proxy[0],
            echo: berth_proxy[1],
            one: vec![],
            many: vec![],
            rtt: vec![],
            cpu: vec![],
        },
    ];
    let bin = "/usr/sbin/docker-proxy";
    let mut _docker = Vec::new();
    if std::path::Path::new(bin).exists() {
        let (g1, sink_addr) = docker_proxy(bin, sink_target);
        let (g2, echo_addr) = docker_proxy(bin, echo_target);
        _docker.extend([g1, g2]);
        paths.push(Path {
            name: "127.0.0.1 -> docker-proxy",
            sink: sink_addr,
            echo: echo_addr,
            one: vec![],
            many: vec![],
            rtt: vec![],
            cpu: vec![],
        });
    } else {
        eprintln!("{bin} not installed; no comparison");
    }

    let pids: Vec<String> = std::iter::once("self".to_string())
        .chain(_docker.iter().map(|g| g.0.id().to_string()))
        .collect();
    let cpu = || pids.iter().map(|p| cpu_secs(p)).sum::<f64>();
    for _ in 0..REPS {
        for p in paths.iter_mut() {
            let before = cpu();
            p.one.push(push(p.sink, 1, &received));
            p.cpu.push((cpu() - before) / (TOTAL as f64 / 1e9));
            p.many.push(push(p.sink, STREAMS, &received));
            p.rtt.push(ping_pong(p.echo));
        }
    }

    // Nothing reached the sockets holding the DNATed ports.
    for l in &holders {
        l.set_nonblocking(true).expect("nonblocking");
        let r = l.accept();
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a connection bypassed DNAT: {r:?}"
        );
    }

    eprintln!(
        "median of {REPS}; {} MiB per run; {STREAMS} streams share it; {PING_SIZE}-byte ping-pong x{PING_ROUNDS}",
        TOTAL >> 20
    );
    eprintln!(
        "{:<36} {:>12} {:>14} {:>14} {:>9} {:>14}",
        "path", "1 stream", "4 streams", "ping-pong", "RTT", "CPU (1 stream)"
    );
    let mut med = Vec::new();
    for p in &paths {
        let (one, many, rtt, cpu) = (
            median(p.one.clone()),
            median(p.many.clone()),
            median(p.rtt.clone()),
            median(p.cpu.clone()),
        );
        let spread = |v: &[f64]| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(0.0, f64::max);
            format!("{lo:.0}-{hi:.0}")
        };
        eprintln!(
            "{:<36} {:>7.0} MB/s {:>9.0} MB/s {:>9.0} rt/s {:>6.1} µs {:>7.2} s/GB",
            p.name,
            one,
            many,
            rtt,
            1e6 / rtt,
            cpu
        );
        eprintln!(
            "{:<36} {:>12} {:>14} {:>14}   (min-max)",
            "",
            spread(&p.one),
            spread(&p.many),
            spread(&p.rtt)
        );
        med.push((p.name, one, many, rtt, cpu));
    }
    if let (Some(dnat), Some(docker)) = (
        med.iter().find(|m| m.0.contains("DNAT")),
        med.iter().find(|m| m.0.contains("docker-proxy")),
    ) {
        eprintln!(
            "DNAT / docker-proxy: 1 stream {:.2}x, {STREAMS} streams {:.2}x, ping-pong {:.2}x; CPU per GB {:.2}x",
            dnat.1 / docker.1,
            dnat.2 / docker.2,
            dnat.3 / docker.3,
            dnat.4 / docker.4
        );
    }
    proxy.close("bench");
}
