//! The multi-host lab itself: three host namespaces on an underlay bridge, etcd in the
//! underlay namespace, full berth engines inside host namespaces; and nothing left after.
use std::time::Duration;

use berth_integration_tests::{
    etcd::EtcdPeer, eventually, instance_links, multihost::Underlay, netns_instance_links, stderr,
    stdout, Engine,
};

#[test]
fn three_hosts_reach_each_other_and_etcd_and_run_berth() {
    let prefix;
    {
        let underlay = Underlay::new(3);
        prefix = underlay.prefix().to_string();
        assert_eq!(Underlay::existing(&prefix).len(), 4, "underlay + 3 hosts");

        for host in 0..3 {
            assert!(
                underlay.ping(host, Underlay::underlay_ip()),
                "host {host} cannot reach the underlay bridge"
            );
            for other in (0..3).filter(|o| *o != host) {
                assert!(
                    underlay.ping(host, underlay.host_ip(other)),
                    "host {host} cannot reach host {other}"
                );
            }
        }

        // A host taken off the underlay is unreachable until its link is back.
        underlay.cut_link(2);
        assert!(
            !underlay.ping(0, underlay.host_ip(2)),
            "cut link still pings"
        );
        underlay.restore_link(2);
        assert!(
            eventually(Duration::from_secs(10), || underlay
                .ping(0, underlay.host_ip(2))),
            "restored link does not ping"
        );

        // etcd in the underlay namespace, reached from every host over the underlay.
        let etcd = EtcdPeer::start_in_netns(&underlay.underlay_netns(), Underlay::underlay_ip());
        assert_eq!(etcd.endpoint(), "http://192.0.2.1:2379");
        for host in 0..3 {
            let out = underlay.exec(
                host,
                "/bin/busybox",
                &["wget", "-qO-", "http://192.0.2.1:2379/version"],
            );
            assert!(
                out.status.success() && stdout(&out).contains("etcdserver"),
                "etcd from host {host}: {} {}",
                stdout(&out),
                stderr(&out)
            );
        }

        // Full engines inside two host namespaces, side by side.
        let a = Engine::with_busybox_in_netns(&underlay.netns_path(0), &[]);
        let b = Engine::with_busybox_in_netns(&underlay.netns_path(1), &[]);
        for engine in [&a, &b] {
            engine.ok(&["run", "--rm", "--net", "none", "busybox", "true"]);
            let addrs = engine.ok(&[
                "run", "--rm", "--net", "bridge", "busybox", "ip", "-4", "addr",
            ]);
            assert!(
                addrs.contains("inet 10.213."),
                "no bridge address in the container: {addrs}"
            );
            // The engine's links live in its host namespace, none in the test's own.
            assert!(
                !engine.links().is_empty(),
                "no links of {} in its namespace",
                engine.instance
            );
            assert!(instance_links(&engine.instance).is_empty());
        }
        // The containers reach the underlay through their host (NAT on the host's eth0).
        let out = a.ok(&[
            "run",
            "--rm",
            "--net",
            "bridge",
            "busybox",
            "wget",
            "-qO-",
            "http://192.0.2.1:2379/version",
        ]);
        assert!(out.contains("etcdserver"), "etcd from a container: {out}");

        // Restarted services come back inside the namespace.
        let mut a = a;
        a.restart_service("network", false);
        let addrs = a.ok(&[
            "run", "--rm", "--net", "bridge", "busybox", "ip", "-4", "addr",
        ]);
        assert!(addrs.contains("inet 10.213."), "after restart: {addrs}");

        // Dropping an engine removes its links and nft table from its namespace.
        let (ns, instance) = (underlay.netns_path(0), a.instance.clone());
        drop(a);
        assert!(netns_instance_links(&ns, &instance).is_empty());
        drop(b);
        drop(etcd);
    }
    assert!(
        Underlay::existing(&prefix).is_empty(),
        "namespaces left: {:?}",
        Underlay::existing(&prefix)
    );
}

#[test]
fn namespaces_of_dead_test_processes_are_removed() {
    // A pid above pid_max never runs: its namespaces are a crashed run's leftovers.
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stale = format!("bu{}x0ul", pid_max + 1);
    let status = std::process::Command::new("ip")
        .args(["netns", "add", &stale])
        .status()
        .unwrap();
    assert!(status.success());
    let underlay = Underlay::new(1);
    let left = std::path::Path::new("/run/netns").join(&stale).exists();
    if left {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &stale])
            .status();
    }
    assert!(!left, "stale namespace {stale} kept");
    // Our own, live, namespaces are untouched.
    assert!(underlay.netns_path(0).exists());
    assert!(underlay.ping(0, Underlay::underlay_ip()));
}
