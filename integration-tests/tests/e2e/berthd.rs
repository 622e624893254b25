//! `berthd`: the six services in one process, on the same six sockets. A container's whole
//! path works through it (a user network with DNS and a published port, a named volume,
//! logs, exec, events), every service answers on its own socket, containers keep running
//! across a `kill -9` of the process, and a service that cannot start stops the process
//! with that service's name.
use std::{
    io::{Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::Duration,
};

use berth_integration_tests::{
    bin_dir, eventually, fluentbit::free_port, now_arg, stderr, unique, Engine, ONE_PROCESS,
    SERVICES,
};

/// The body of `GET /<path>` on 127.0.0.1:`port`, or None.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(stream, "GET /{path} HTTP/1.0\r\n\r\n").ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

#[test]
fn one_process_serves_every_service_and_containers_outlive_a_kill_9() {
    let mut engine = Engine::one_process_with_busybox();
    let before = engine.footprint();
    let since = now_arg();
    let (net, web, vol) = (unique("one"), unique("web"), unique("vol"));
    let port = free_port();
    engine.ok(&["network", "create", &net]);
    engine.ok(&[
        "run",
        "-d",
        "--name",
        &web,
        "--net",
        &net,
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "-v",
        &format!("{vol}:/data"),
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f; echo started; exec httpd -f -p 80 -h /data",
    ]);

    // Every service's socket answers, all served by the one process.
    for service in SERVICES {
        let socket = engine.run_dir.join(format!("{service}.sock"));
        assert!(
            std::os::unix::net::UnixStream::connect(&socket).is_ok(),
            "{service} does not answer on {}",
            socket.display()
        );
    }
    // Network (DNS on the user network, the published port), volume, logs, exec.
    assert!(
        eventually(Duration::from_secs(5), || {
            http_get(port, "f").as_deref() == Some("kept\n")
        }),
        "the published port does not serve the volume's file"
    );
    let by_name = engine.ok(&[
        "run",
        "--rm",
        "--net",
        &net,
        "busybox",
        "wget",
        "-qO-",
        &format!("http://{web}/f"),
    ]);
    assert_eq!(by_name, "kept\n");
    assert_eq!(engine.ok(&["logs", &web]), "started\n");
    assert_eq!(engine.ok(&["exec", &web, "cat", "/data/f"]), "kept\n");
    let events = engine.ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &now_arg(),
        "--format",
        "{{.Type}} {{.Action}}",
    ]);
    // Merged from the supervisor's, the network service's and the volume service's logs.
    for expected in [
        "container create",
        "network connect",
        "volume mount",
        "container start",
    ] {
        assert!(events.contains(expected), "no '{expected}' in:\n{events}");
    }

    // A kill -9 of the process: the container keeps serving; a new berthd picks it up.
    engine.restart_service(ONE_PROCESS, true);
    assert_eq!(http_get(port, "f").as_deref(), Some("kept\n"));
    assert_eq!(engine.inspect(&web, "{{.State.Status}}"), "running");
    assert_eq!(engine.ok(&["exec", &web, "cat", "/data/f"]), "kept\n");
    engine.ok(&["stop", "-t", "1", &web]);
    assert_eq!(engine.inspect(&web, "{{.State.Status}}"), "exited");

    engine.ok(&["rm", "-f", &web]);
    engine.ok(&["network", "rm", &net]);
    engine.ok(&["volume", "rm", &vol]);
    assert_eq!(engine.footprint(), before);
}

#[test]
fn a_service_that_cannot_start_stops_berthd_with_its_name() {
    let dir = tempfile::Builder::new()
        .prefix("bt")
        .tempdir_in("/tmp")
        .unwrap();
    let run = dir.path().join("run");
    // A directory where the volume service's socket goes: it cannot bind there.
    std::fs::create_dir_all(run.join("volume.sock/in-the-way")).unwrap();
    let instance = InstanceObjects(format!("berth-t{}-{}", std::process::id(), unique("bad")));
    let out = Command::new(bin_dir().join(ONE_PROCESS))
        .env("BERTH_ROOT", dir.path().join("root"))
        .env("BERTH_RUN", &run)
        .env("BERTH_INSTANCE", &instance.0)
        .env("BERTH_CONFIG_FILE", "/dev/null")
        .env(
            "BERTH_ADDRESS_POOL",
            berth_integration_tests::TEST_ADDRESS_POOL,
        )
        .env_remove("BERTH_HOST")
        .stdin(Stdio::null())
        .output()
        .expect("run berthd");
    let err = stderr(&out);
    assert!(!out.status.success(), "berthd kept going: {err}");
    assert!(err.contains("the volume service"), "{err}");
    assert!(err.contains("volume.sock"), "{err}");
    // The process is gone, so are the other five services it had started.
    for service in SERVICES.iter().filter(|s| **s != "volume") {
        let socket = run.join(format!("{service}.sock"));
        assert!(
            std::os::unix::net::UnixStream::connect(&socket).is_err(),
            "{service} still answers"
        );
    }
}

/// An instance name whose bridge, nftables table and cgroups (made by the network and
/// supervisor services before berthd stopped) are removed on drop, on failure too.
struct InstanceObjects(String);

impl Drop for InstanceObjects {
    fn drop(&mut self) {
        for link in berth_integration_tests::instance_links(&self.0) {
            let _ = Command::new("ip").args(["link", "del", &link]).status();
        }
        let table = berth_common::Config {
            instance: self.0.clone(),
            ..Default::default()
        }
        .nft_table();
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &table])
            .stderr(Stdio::null())
            .status();
        for hierarchy in berth_integration_tests::cgroup_hierarchies() {
            let _ = std::fs::remove_dir(hierarchy.join(&self.0));
        }
    }
}
