//! Network modes none, host and container:<name>.
use berth_integration_tests::{unique, Engine};

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

#[test]
fn none_has_only_loopback_and_it_is_up() {
    let engine = Engine::with_busybox();
    assert_eq!(interfaces(&engine, &[]), vec!["lo"]);
    assert_eq!(interfaces(&engine, &["--net", "none"]), vec!["lo"]);
    let flags = engine.ok(&[
        "run",
        "--rm",
        "busybox",
        "cat",
        "/sys/class/net/lo/operstate",
    ]);
    assert_eq!(flags.trim(), "unknown", "lo is down: {flags}");
    assert!(engine.footprint().netns.is_empty(), "netns left behind");
}

#[test]
fn host_mode_sees_the_host_interfaces() {
    let engine = Engine::with_busybox();
    let mut host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    host.sort();
    assert_eq!(interfaces(&engine, &["--net", "host"]), host);
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
