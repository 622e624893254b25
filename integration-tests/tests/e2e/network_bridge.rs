//! Bridge networking end to end: the default bridge, user networks with DNS and aliases,
//! published ports, links, isolation, internal networks, connect/disconnect. Traffic goes
//! only to loopback, to the host's own address and to the engine's own bridges.
use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use berth_integration_tests::{eventually, stderr, unique, Engine};

/// Interfaces and nft rules of one engine instance, to prove a test left nothing.
#[derive(Debug, PartialEq, Eq)]
struct NetFootprint {
    links: Vec<String>,
    nft_rules: usize,
    netns: Vec<String>,
}

fn net_footprint(engine: &Engine) -> NetFootprint {
    let prefix = berth_common::config::link_prefix(&engine.instance);
    let mut links: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    links.sort();
    let table = berth_common::Config {
        instance: engine.instance.clone(),
        ..Default::default()
    }
    .nft_table();
    let out = std::process::Command::new("nft")
        .args(["list", "table", "ip", &table])
        .output()
        .unwrap();
    let nft_rules = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            let l = l.trim();
            !l.is_empty()
                && !l.starts_with("table")
                && !l.starts_with("chain")
                && !l.starts_with("type")
                && !l.starts_with("set")
                && !l.starts_with("elements")
                && !l.starts_with("policy")
                && l != "}"
        })
        .count();
    NetFootprint {
        links,
        nft_rules,
        netns: engine.footprint().netns,
    }
}

/// The footprint once it equals `expected`, or after 5 s: the kernel destroys a removed
/// container's links with its namespace, in the background (ADR 7).
fn settled_footprint(engine: &Engine, expected: &NetFootprint) -> NetFootprint {
    let mut now = net_footprint(engine);
    eventually(Duration::from_secs(5), || {
        now = net_footprint(engine);
        now == *expected
    });
    now
}

/// A container running busybox httpd on port 80 serving `body`.
fn web(engine: &Engine, name: &str, extra: &[&str]) {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    let script =
        format!("mkdir -p /www && echo {name} > /www/index.html && exec httpd -f -p 80 -h /www");
    args.extend_from_slice(&["busybox", "sh", "-c", &script]);
    engine.ok(&args);
    engine.wait_status(name, "running");
}

/// Kills the child it holds (by PID, ours) when dropped, on failure too.
struct ChildGuard(std::process::Child);

impl ChildGuard {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

fn host_address() -> Option<String> {
    // The address of the interface that holds the default route: the host's own address.
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "route", "get", "192.0.2.1"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "src" {
            return words.next().map(str::to_string);
        }
    }
    None
}

fn http_get(addr: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

#[test]
fn default_bridge_gives_an_address_and_containers_reach_each_other() {
    let engine = Engine::with_busybox();
    let before = net_footprint(&engine);
    let server = unique("br-web");
    web(&engine, &server, &[]);
    let ip = engine.inspect(&server, "{{.NetworkSettings.IPAddress}}");
    assert!(
        ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "no address: {ip:?}"
    );
    let got = engine.ok(&[
        "run",
        "--rm",
        "busybox",
        "wget",
        "-qO-",
        &format!("http://{ip}/"),
    ]);
    assert_eq!(got.trim(), server);
    let ifaces = engine.ok(&["run", "--rm", "busybox", "ls", "/sys/class/net"]);
    assert!(ifaces.contains("eth0"), "{ifaces}");
    engine.ok(&["rm", "-f", &server]);
    assert_eq!(settled_footprint(&engine, &before), before);
}

#[test]
fn user_network_resolves_names_and_aliases_round_robin() {
    let engine = Engine::with_busybox();
    let before = net_footprint(&engine);
    let net = unique("appnet");
    engine.ok(&["network", "create", &net]);
    let mut names = Vec::new();
    for i in 0..3 {
        let name = unique(&format!("api{i}"));
        web(&engine, &name, &["--net", &net, "--net-alias", "api"]);
        names.push(name);
    }
    // By name.
    let got = engine.ok(&[
        "run",
        "--rm",
        "--net",
        &net,
        "busybox",
        "wget",
        "-qO-",
        &format!("http://{}/", names[0]),
    ]);
    assert_eq!(got.trim(), names[0]);
    // The alias answers every address, shuffled per query: count which one comes first.
    let script = "for i in $(seq 200); do nslookup api | sed -n '/^Name:/{n;p;q}'; done";
    let out = engine.ok(&["run", "--rm", "--net", &net, "busybox", "sh", "-c", script]);
    let mut first: HashMap<String, usize> = HashMap::new();
    for line in out.lines().filter(|l| l.contains("Address")) {
        let addr = line
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_string();
        *first.entry(addr).or_default() += 1;
    }
    assert_eq!(first.len(), 3, "alias answered {first:?}");
    let total: usize = first.values().sum();
    assert!(total >= 190, "only {total} answers: {out}");
    for (addr, n) in &first {
        assert!(
            *n * 5 >= total,
            "{addr} came first only {n} of {total} times"
        );
    }
    for name in &names {
        engine.ok(&["rm", "-f", name]);
    }
    engine.ok(&["network", "rm", &net]);
    assert_eq!(settled_footprint(&engine, &before), before);
}

#[test]
fn published_tcp_and_udp_ports_reach_the_container_from_the_host() {
    let engine = Engine::with_busybox();
    let before = net_footprint(&engine);
    let name = unique("pub");
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let publish = format!("{port}:80");
    web(&engine, &name, &["-p", &publish, "-p", "127.0.0.1::80"]);
    // Loopback goes through the userland proxy.
    assert!(http_get(&format!("127.0.0.1:{port}"))
        .unwrap()
        .contains(&name));
    // The host's own address goes through DNAT.
    if let Some(addr) = host_address() {
        assert!(http_get(&format!("{addr}:{port}")).unwrap().contains(&name));
    }
    let ports = engine.ok(&["port", &name]);
    assert!(
        ports.contains(&format!("80/tcp -> 0.0.0.0:{port}")),
        "{ports}"
    );
    let ephemeral = ports
        .lines()
        .find(|l| l.contains("127.0.0.1:"))
        .and_then(|l| l.rsplit(':').next())
        .unwrap_or_else(|| panic!("no ephemeral binding in {ports}"))
        .trim()
        .to_string();
    assert!(http_get(&format!("127.0.0.1:{ephemeral}"))
        .unwrap()
        .contains(&name));

    // UDP: busybox has no UDP server, so an echo server runs in the container's own
    // network namespace (entered from the host); the datagram comes back through the port.
    let udp = unique("udp");
    let uport = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    engine.ok(&[
        "run",
        "-d",
        "--name",
        &udp,
        "-p",
        &format!("127.0.0.1:{uport}:5000/udp"),
        "busybox",
        "sleep",
        "1000",
    ]);
    engine.wait_status(&udp, "running");
    let pid = engine.inspect(&udp, "{{.State.Pid}}");
    let echo = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',5000))\nwhile True:\n d,a=s.recvfrom(2048)\n s.sendto(d.upper(),a)\n";
    let mut server = ChildGuard(
        std::process::Command::new("nsenter")
            .args([&format!("--net=/proc/{pid}/ns/net"), "python3", "-c", echo])
            .spawn()
            .expect("start the UDP echo server"),
    );
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let echoed = eventually(Duration::from_secs(10), || {
        sock.send_to(b"hello-udp", ("127.0.0.1", uport)).unwrap();
        let mut buf = [0u8; 64];
        matches!(sock.recv_from(&mut buf), Ok((n, _)) if &buf[..n] == b"HELLO-UDP")
    });
    assert!(echoed, "no UDP reply through the published port");
    server.stop();
    engine.ok(&["rm", "-f", &name, &udp]);
    assert_eq!(settled_footprint(&engine, &before), before);
    // The ports are free again.
    TcpListener::bind(("0.0.0.0", port)).expect("published port still held after rm");
}

#[test]
fn a_taken_port_fails_the_run_and_releases_the_others() {
    let engine = Engine::with_busybox();
    let before = net_footprint(&engine);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    drop(other);
    let name = unique("clash");
    let out = engine.berth(&[
        "run",
        "-d",
        "--name",
        &name,
        "-p",
        &format!("127.0.0.1:{other_port}:81"),
        "-p",
        &format!("127.0.0.1:{taken_port}:80"),
        "busybox",
        "sleep",
        "100",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "Bind for 127.0.0.1:{taken_port} failed: port is already allocated"
        )),
        "{}",
        stderr(&out)
    );
    let ps = engine.ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!ps.contains(&name), "half-created container left: {ps}");
    TcpListener::bind(("127.0.0.1", other_port)).expect("the other port was not released");
    drop(taken);
    assert_eq!(settled_footprint(&engine, &before), before);
}

#[test]
fn link_gives_hosts_entry_and_environment() {
    let engine = Engine::with_busybox();
    let db = unique("db");
    engine.ok(&[
        "run", "-d", "--name", &db, "--expose", "5432", "busybox", "sleep", "1000",
    ]);
    engine.wait_status(&db, "running");
    let ip = engine.inspect(&db, "{{.NetworkSettings.IPAddress}}");
    let out = engine.ok(&[
        "run", "--rm", "--link", &format!("{db}:database"), "busybox", "sh", "-c",
        "grep database /etc/hosts; echo port=$DATABASE_PORT; ping -c1 -W2 database >/dev/null && echo pong",
    ]);
    assert!(out.contains(&ip) && out.contains("database"), "{out}");
    assert!(out.contains(&format!("port=tcp://{ip}:5432")), "{out}");
    assert!(out.contains("pong"), "{out}");
    engine.ok(&["rm", "-f", &db]);
}

#[test]
fn bridges_are_isolated_and_internal_networks_have_no_way_out() {
    let engine = Engine::with_busybox();
    let before = net_footprint(&engine);
    let (net1, net2, internal) = (unique("iso1"), unique("iso2"), unique("int"));
    engine.ok(&["network", "create", &net1]);
    engine.ok(&["network", "create", &net2]);
    engine.ok(&["network", "create", "--internal", &internal]);
    let server = unique("iso-web");
    web(&engine, &server, &["--net", &net1]);
    let ip = engine.container_ip(&server, &net1);
    assert!(!ip.is_empty(), "no address on {net1}");
    let url = format!("http://{ip}/");
    // `--init`: as PID 1, wget would ignore timeout's SIGTERM and wait out TCP's retries.
    // Same network: reachable.
    let got = engine.ok(&[
        "run", "--rm", "--init", "--net", &net1, "busybox", "timeout", "5", "wget", "-qO-", &url,
    ]);
    assert_eq!(got.trim(), server);
    // Another bridge: dropped.
    let out = engine.berth(&[
        "run", "--rm", "--init", "--net", &net2, "busybox", "timeout", "5", "wget", "-qO-", &url,
    ]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "reached another bridge's container"
    );
    // Internal: no default route, and the other network is unreachable too.
    let routes = engine.ok(&["run", "--rm", "--net", &internal, "busybox", "ip", "route"]);
    assert!(!routes.contains("default"), "{routes}");
    let out = engine.berth(&[
        "run", "--rm", "--init", "--net", &internal, "busybox", "timeout", "5", "wget", "-qO-",
        &url,
    ]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "an internal network reached out"
    );
    engine.ok(&["rm", "-f", &server]);
    engine.ok(&["network", "rm", &net1, &net2, &internal]);
    assert_eq!(settled_footprint(&engine, &before), before);
}

#[test]
fn connect_and_disconnect_update_dns_and_hosts() {
    let engine = Engine::with_busybox();
    let (front, back) = (unique("front"), unique("back"));
    engine.ok(&["network", "create", &front]);
    engine.ok(&["network", "create", &back]);
    let target = unique("target");
    engine.ok(&[
        "run", "-d", "--name", &target, "--net", &back, "busybox", "sleep", "1000",
    ]);
    let client = unique("client");
    engine.ok(&[
        "run", "-d", "--name", &client, "--net", &front, "busybox", "sleep", "1000",
    ]);
    engine.wait_status(&client, "running");
    let lookup = |engine: &Engine| {
        engine
            .berth(&["exec", &client, "nslookup", &target])
            .status
            .success()
    };
    assert!(
        !lookup(&engine),
        "resolved a container on a network it is not on"
    );
    engine.ok(&["network", "connect", &back, &client]);
    assert!(lookup(&engine), "connect did not make the name resolvable");
    let ifaces = engine.ok(&["exec", &client, "ls", "/sys/class/net"]);
    assert!(ifaces.contains("eth1"), "{ifaces}");
    engine.ok(&["network", "disconnect", &back, &client]);
    assert!(!lookup(&engine), "disconnect left the name resolvable");
    let out = engine.berth(&["network", "rm", &front]);
    assert!(!out.status.success(), "removed a network in use");
    engine.ok(&["rm", "-f", &client, &target]);
    engine.ok(&["network", "rm", &front, &back]);
}

#[test]
fn endpoints_survive_a_kill_9_of_the_network_service() {
    let mut engine = Engine::with_busybox();
    let net = unique("survive");
    engine.ok(&["network", "create", &net]);
    let name = unique("kept");
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    web(
        &engine,
        &name,
        &["--net", &net, "-p", &format!("127.0.0.1:{port}:80")],
    );
    engine.restart_service("network", true);
    assert!(
        eventually(Duration::from_secs(10), || http_get(&format!(
            "127.0.0.1:{port}"
        ))
        .map(|b| b.contains(&name))
        .unwrap_or(false)),
        "published port dead after the network service restarted"
    );
    let got = engine.ok(&[
        "run",
        "--rm",
        "--net",
        &net,
        "busybox",
        "wget",
        "-qO-",
        &format!("http://{name}/"),
    ]);
    assert_eq!(got.trim(), name);
    // The restarted service knows the container is active: a stop still frees its port.
    engine.ok(&["stop", "-t", "1", &name]);
    TcpListener::bind(("127.0.0.1", port)).expect("port still held after stop");
    engine.ok(&["rm", "-f", &name]);
    engine.ok(&["network", "rm", &net]);
}

/// A free TCP port on every address.
fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `wget` of `http://<name>/` from a throwaway container on `net`: the page, or None.
fn fetch_by_name(engine: &Engine, net: &str, name: &str) -> Option<String> {
    let out = engine.berth(&[
        "run",
        "--rm",
        "--net",
        net,
        "busybox",
        "wget",
        "-O-",
        &format!("http://{name}/"),
    ]);
    if !out.status.success() {
        eprintln!("wget http://{name}/ on {net}: {}", stderr(&out));
        if std::env::var_os("DEBUG_NET").is_some() {
            eprintln!("{}", engine.service_logs());
        }
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn stop_releases_the_network_and_start_brings_it_back() {
    let engine = Engine::with_busybox();
    let net = unique("live");
    engine.ok(&["network", "create", &net]);
    let idle = net_footprint(&engine);
    let name = unique("web");
    let port = free_port();
    web(
        &engine,
        &name,
        &["--net", &net, "-p", &format!("{port}:80")],
    );
    let id = engine.inspect(&name, "{{.Id}}");
    let running = net_footprint(&engine);
    assert!(running.netns.contains(&id), "{running:?}");
    assert!(
        running.links.len() > idle.links.len(),
        "no veth: {running:?}"
    );
    assert!(
        running.nft_rules > idle.nft_rules,
        "no DNAT rule: {running:?}"
    );
    assert!(http_get(&format!("127.0.0.1:{port}"))
        .unwrap()
        .contains(&name));
    assert_eq!(
        fetch_by_name(&engine, &net, &name).as_deref(),
        Some(name.as_str())
    );

    // Stopped: veth, namespace, DNAT rules, proxy listener and DNS name are gone.
    engine.ok(&["stop", "-t", "1", &name]);
    assert_eq!(settled_footprint(&engine, &idle), idle);
    drop(TcpListener::bind(("0.0.0.0", port)).expect("published port still held after stop"));
    assert_eq!(
        fetch_by_name(&engine, &net, &name),
        None,
        "name still resolves"
    );
    let ports = engine.ok(&["port", &name]);
    assert!(
        ports.trim().is_empty(),
        "ports of a stopped container: {ports}"
    );

    // Started again: everything is back.
    engine.ok(&["start", &name]);
    engine.wait_status(&name, "running");
    assert!(
        eventually(Duration::from_secs(10), || http_get(&format!(
            "127.0.0.1:{port}"
        ))
        .map(|b| b.contains(&name))
        .unwrap_or(false)),
        "published port dead after start"
    );
    assert_eq!(
        fetch_by_name(&engine, &net, &name).as_deref(),
        Some(name.as_str())
    );
    assert_eq!(net_footprint(&engine).links.len(), running.links.len());

    engine.ok(&["rm", "-f", &name]);
    assert_eq!(settled_footprint(&engine, &idle), idle);
    engine.ok(&["network", "rm", &net]);
}

#[test]
fn a_restart_always_container_killed_from_outside_comes_back_reachable() {
    let engine = Engine::with_busybox();
    let before = net_footprint(&engine);
    let name = unique("phoenix");
    let port = free_port();
    web(
        &engine,
        &name,
        &["--restart", "always", "-p", &format!("127.0.0.1:{port}:80")],
    );
    assert!(http_get(&format!("127.0.0.1:{port}"))
        .unwrap()
        .contains(&name));
    let pid = engine.inspect(&name, "{{.State.Pid}}");
    // The container's process, which this test started through the engine.
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(
        eventually(Duration::from_secs(20), || {
            engine.inspect(&name, "{{.State.Pid}}") != pid
                && http_get(&format!("127.0.0.1:{port}"))
                    .map(|b| b.contains(&name))
                    .unwrap_or(false)
        }),
        "not reachable again after a policy restart"
    );
    engine.ok(&["rm", "-f", &name]);
    assert_eq!(settled_footprint(&engine, &before), before);
}

#[test]
fn the_same_port_twice_fails_the_second_run_and_leaves_nothing() {
    let engine = Engine::with_busybox();
    let before = net_footprint(&engine);
    let port = free_port();
    let publish = format!("{port}:80");
    let first = unique("owner");
    web(&engine, &first, &["-p", &publish]);
    let running = net_footprint(&engine);
    let second = unique("second");
    let out = engine.berth(&[
        "run", "-d", "--name", &second, "-p", &publish, "busybox", "sleep", "100",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "Bind for 0.0.0.0:{port} failed: port is already allocated"
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        net_footprint(&engine),
        running,
        "the failed start left something"
    );
    assert!(http_get(&format!("127.0.0.1:{port}"))
        .unwrap()
        .contains(&first));
    engine.ok(&["rm", "-f", &first]);
    let _ = engine.berth(&["rm", "-f", &second]);
    assert_eq!(settled_footprint(&engine, &before), before);
}

/// A DNS responder on loopback standing in for the host's resolvers: every A query gets
/// 192.0.2.77 (TEST-NET-1, never contacted). Prints its port first.
const FAKE_UPSTREAM: &str = r#"
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    d, a = s.recvfrom(512)
    end = 12 + d[12:].index(b"\x00") + 5
    question = d[12:end]
    qtype = struct.unpack(">H", question[-4:-2])[0]
    answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 77]) if qtype == 1 else b""
    header = d[:2] + b"\x81\x80" + struct.pack(">HHHH", 1, 1 if answer else 0, 0, 0)
    s.sendto(header + question + answer, a)
"#;

#[test]
fn unknown_names_are_forwarded_to_the_upstream_resolvers() {
    use std::io::BufRead;
    let mut child = std::process::Command::new("python3")
        .args(["-c", FAKE_UPSTREAM])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the loopback resolver");
    let mut port = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let _upstream = ChildGuard(child);
    let upstream = format!("127.0.0.1:{}", port.trim());
    let engine = Engine::start_with_env(&[("BERTH_DNS_UPSTREAMS", &upstream)]);
    engine.ok(&[
        "load",
        "-i",
        berth_integration_tests::busybox_image().to_str().unwrap(),
    ]);
    let net = unique("fwd");
    engine.ok(&["network", "create", &net]);
    let known = unique("known");
    engine.ok(&[
        "run", "-d", "--name", &known, "--net", &net, "busybox", "sleep", "1000",
    ]);
    let out = engine.ok(&[
        "run",
        "--rm",
        "--net",
        &net,
        "busybox",
        "sh",
        "-c",
        &format!("nslookup outside.example; nslookup {known}"),
    ]);
    assert!(out.contains("192.0.2.77"), "not forwarded: {out}");
    let ip = engine.container_ip(&known, &net);
    assert!(!ip.is_empty(), "no address on {net}");
    assert!(
        out.contains(&ip),
        "{known} ({ip}) not answered locally: {out}"
    );
    engine.ok(&["rm", "-f", &known]);
    engine.ok(&["network", "rm", &net]);
}
