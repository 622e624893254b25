//! Network modes (the default bridge, none, host, container:<name>), user-defined
//! networks, fixed addresses and macvlan. Traffic stays inside the engine's own bridges and
//! namespaces; the macvlan parent is one end of a veth pair this test makes.
use std::{process::Command, time::Duration};

use berth_integration_tests::{eventually, instance_links, stderr, unique, Engine};

fn interfaces(engine: &Engine, args: &[&str]) -> Vec<String> {
    let mut cmd = vec!["run", "--rm"];
    cmd.extend_from_slice(args);
    cmd.extend_from_slice(&["busybox", "ls", "/sys/class/net"]);
    let mut names: Vec<String> = engine
        .ok(&cmd)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// `network inspect NAME` as JSON.
fn network_json(engine: &Engine, name: &str) -> serde_json::Value {
    let out = engine.ok(&["network", "inspect", name]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("network inspect JSON");
    match v {
        serde_json::Value::Array(mut a) if !a.is_empty() => a.remove(0),
        other => other,
    }
}

#[test]
fn the_default_is_the_bridge_and_none_has_only_loopback() {
    let engine = Engine::with_busybox();
    let links_before = engine.links();
    assert_eq!(interfaces(&engine, &[]), vec!["eth0", "lo"]);
    assert_eq!(
        interfaces(&engine, &["--net", "bridge"]),
        vec!["eth0", "lo"]
    );
    assert_eq!(interfaces(&engine, &["--net", "none"]), vec!["lo"]);
    let flags = engine.ok(&[
        "run",
        "--rm",
        "--net",
        "none",
        "busybox",
        "cat",
        "/sys/class/net/lo/operstate",
    ]);
    assert_eq!(flags.trim(), "unknown", "lo is down: {flags}");
    let addr = engine.ok(&["run", "--rm", "busybox", "ip", "-4", "addr", "show", "eth0"]);
    let bridge = network_json(&engine, "bridge");
    let subnet = bridge["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap_or_default();
    let net_prefix = subnet.rsplit_once('.').map(|(p, _)| p).unwrap_or("?");
    assert!(
        addr.contains(&format!("inet {net_prefix}.")),
        "eth0 has no address in {subnet}: {addr}"
    );
    assert!(engine.footprint().netns.is_empty(), "netns left behind");
    // The kernel destroys a gone namespace's links in the background.
    assert!(
        eventually(Duration::from_secs(5), || engine.links() == links_before),
        "veths left behind: {:?}",
        engine.links()
    );
}

#[test]
fn containers_on_the_default_bridge_ping_each_other_by_ip() {
    let engine = Engine::with_busybox();
    let server = unique("pingee");
    engine.ok(&["run", "-d", "--name", &server, "busybox", "sleep", "60"]);
    engine.wait_status(&server, "running");
    let ip = engine.container_ip(&server, "bridge");
    assert!(
        ip.parse::<std::net::Ipv4Addr>().is_ok(),
        "no address: {ip:?}"
    );
    let out = engine.berth(&["run", "--rm", "busybox", "ping", "-c", "1", "-W", "3", &ip]);
    assert!(
        out.status.success(),
        "ping {ip} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    engine.ok(&["rm", "-f", &server]);
    assert!(engine.footprint().netns.is_empty());
}

#[test]
fn host_mode_sees_the_host_interfaces() {
    let engine = Engine::with_busybox();
    // Other tests add and remove links all the time: compare what is stable, and prove it
    // is the host's namespace by this engine's own bridge showing up.
    let bridge = format!("{}0", berth_common::config::link_prefix(&engine.instance));
    let seen = interfaces(&engine, &["--net", "host"]);
    assert!(seen.contains(&bridge), "{bridge} missing from {seen:?}");
    let host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n == "lo" || n.starts_with("eth"))
        .collect();
    for name in host {
        assert!(seen.contains(&name), "{name} missing from {seen:?}");
    }
}

#[test]
fn container_mode_shares_another_containers_namespace() {
    let engine = Engine::with_busybox();
    let server = unique("netowner");
    // The owner listens on loopback; a second container reaches it through the shared namespace.
    engine.ok(&[
        "run",
        "-d",
        "--name",
        &server,
        "busybox",
        "sh",
        "-c",
        "echo shared > /tmp/index.html; httpd -f -p 127.0.0.1:8080 -h /tmp",
    ]);
    engine.wait_status(&server, "running");
    let mode = format!("container:{server}");
    let got = (0..50)
        .find_map(|_| {
            let out = engine.berth(&[
                "run",
                "--rm",
                "--net",
                &mode,
                "busybox",
                "wget",
                "-qO-",
                "http://127.0.0.1:8080/",
            ]);
            if out.status.success() {
                Some(String::from_utf8_lossy(&out.stdout).to_string())
            } else {
                std::thread::sleep(std::time::Duration::from_millis(100));
                None
            }
        })
        .expect("the shared namespace never answered");
    assert_eq!(got, "shared\n");
    engine.ok(&["rm", "-f", &server]);
    assert!(engine.footprint().netns.is_empty());
}

#[test]
fn a_user_network_is_created_inspected_used_with_a_fixed_ip_and_removed() {
    let engine = Engine::with_busybox();
    let links_before = engine.links();
    engine.ok(&["network", "create", "--label", "team=a", "appnet"]);
    let dup = engine.berth(&["network", "create", "appnet"]);
    assert!(!dup.status.success());
    assert!(
        stderr(&dup).contains("network with name appnet already exists"),
        "{}",
        stderr(&dup)
    );
    let net = network_json(&engine, "appnet");
    assert_eq!(net["Driver"], "bridge");
    assert_eq!(net["Labels"]["team"], "a");
    let subnet = net["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .expect("a subnet")
        .to_string();
    assert!(
        subnet.starts_with("10.213."),
        "outside the test pool: {subnet}"
    );
    assert_eq!(
        engine.links().len(),
        links_before.len() + 1,
        "one new bridge"
    );

    // --ip: a fixed address inside the subnet; outside it the error names the value.
    let base = subnet.rsplit_once('.').map(|(p, _)| p).unwrap().to_string();
    let fixed = format!("{base}.77");
    let name = unique("fixed");
    engine.ok(&[
        "run", "-d", "--name", &name, "--net", "appnet", "--ip", &fixed, "busybox", "sleep", "60",
    ]);
    engine.wait_status(&name, "running");
    assert_eq!(engine.container_ip(&name, "appnet"), fixed);
    let bad = engine.berth(&[
        "run",
        "--rm",
        "--net",
        "appnet",
        "--ip",
        "192.0.2.9",
        "busybox",
        "true",
    ]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("192.0.2.9"), "{}", stderr(&bad));

    let busy = engine.berth(&["network", "rm", "appnet"]);
    assert!(!busy.status.success());
    assert!(
        stderr(&busy).contains("has active endpoints"),
        "{}",
        stderr(&busy)
    );
    engine.ok(&["rm", "-f", &name]);
    engine.ok(&["network", "rm", "appnet"]);
    assert!(!engine
        .berth(&["network", "inspect", "appnet"])
        .status
        .success());
    assert!(
        eventually(Duration::from_secs(5), || engine.links() == links_before),
        "{:?}",
        engine.links()
    );
    assert!(engine.footprint().netns.is_empty());
}

/// A veth pair made by the test, deleted on drop (on failure too).
struct TestVeth {
    a: String,
}

impl TestVeth {
    fn new() -> TestVeth {
        let tag = format!("{:05x}", std::process::id() & 0xfffff);
        let (a, b) = (format!("bmv{tag}a"), format!("bmv{tag}b"));
        let ok = Command::new("ip")
            .args(["link", "add", &a, "type", "veth", "peer", "name", &b])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "could not make the test veth pair {a}/{b}");
        for l in [&a, &b] {
            let _ = Command::new("ip").args(["link", "set", l, "up"]).status();
        }
        TestVeth { a }
    }
}

impl Drop for TestVeth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "delete", &self.a])
            .status();
    }
}

#[test]
fn macvlan_endpoints_sit_on_a_test_made_parent() {
    let engine = Engine::with_busybox();
    let links_before = instance_links(&engine.instance);
    let parent = TestVeth::new();
    let missing = engine.berth(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet",
        "10.213.254.0/24",
        "-o",
        "parent=bmvnosuch0",
        "mv",
    ]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("bmvnosuch0"),
        "{}",
        stderr(&missing)
    );
    let opt = format!("parent={}", parent.a);
    engine.ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet",
        "10.213.254.0/24",
        "--gateway",
        "10.213.254.1",
        "-o",
        &opt,
        "mv",
    ]);
    let first = unique("mv1");
    engine.ok(&[
        "run", "-d", "--name", &first, "--net", "mv", "busybox", "sleep", "60",
    ]);
    engine.wait_status(&first, "running");
    assert_eq!(engine.container_ip(&first, "mv"), "10.213.254.2");
    // A second macvlan endpoint on the same parent reaches the first (bridge mode).
    let out = engine.berth(&[
        "run",
        "--rm",
        "--net",
        "mv",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "3",
        "10.213.254.2",
    ]);
    assert!(
        out.status.success(),
        "ping over macvlan failed: {}",
        stderr(&out)
    );
    engine.ok(&["rm", "-f", &first]);
    engine.ok(&["network", "rm", "mv"]);
    assert!(
        eventually(Duration::from_secs(5), || instance_links(&engine.instance)
            == links_before),
        "{:?}",
        instance_links(&engine.instance)
    );
    drop(parent);
}

#[test]
fn a_namespace_exists_only_while_its_container_runs() {
    let engine = Engine::with_busybox();
    let owner = unique("nsowner");
    engine.ok(&[
        "run", "-d", "--name", &owner, "--net", "none", "busybox", "sleep", "1000",
    ]);
    engine.wait_status(&owner, "running");
    assert_eq!(engine.footprint().netns.len(), 1);
    engine.ok(&["stop", "-t", "1", &owner]);
    assert!(engine.footprint().netns.is_empty(), "netns kept after stop");
    // Docker's rule: no joining the network of a container that does not run.
    let mode = format!("container:{owner}");
    let out = engine.berth(&["run", "--rm", "--net", &mode, "busybox", "true"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot join network of a non running container"),
        "{}",
        stderr(&out)
    );
    engine.ok(&["start", &owner]);
    engine.wait_status(&owner, "running");
    assert_eq!(engine.footprint().netns.len(), 1);
    let seen = interfaces(&engine, &["--net", &mode]);
    assert_eq!(seen, vec!["lo"]);
    engine.ok(&["rm", "-f", &owner]);
    assert!(engine.footprint().netns.is_empty());
}
