//! ps, logs, stop, start, rm -f, prune.
use std::time::{Duration, Instant};

use berth_integration_tests::{stderr, stdout, unique, Engine};

#[test]
fn ps_shows_running_and_exited_containers() {
    let engine = Engine::with_busybox();
    let up = unique("up");
    let done = unique("done");
    engine.ok(&["run", "-d", "--name", &up, "busybox", "sleep", "1000"]);
    assert_eq!(
        engine
            .berth(&["run", "--name", &done, "busybox", "sh", "-c", "exit 3"])
            .status
            .code(),
        Some(3)
    );
    engine.wait_status(&up, "running");

    let ps = engine.ok(&["ps"]);
    assert!(ps.starts_with("CONTAINER ID"), "{ps}");
    let line = ps
        .lines()
        .find(|l| l.contains(&up))
        .expect("running container listed");
    assert!(line.contains("Up "), "{line}");
    assert!(
        !ps.contains(&done),
        "ps without -a lists an exited container: {ps}"
    );

    let all = engine.ok(&["ps", "-a"]);
    let line = all
        .lines()
        .find(|l| l.contains(&done))
        .expect("exited container listed with -a");
    assert!(line.contains("Exited (3)"), "{line}");

    let ids = engine.ok(&["ps", "-q"]);
    assert_eq!(ids.trim(), &engine.inspect(&up, "{{.Id}}")[..12]);
    engine.ok(&["rm", "-f", &up]);
}

#[test]
fn logs_keep_stdout_and_stderr_apart() {
    let engine = Engine::with_busybox();
    let name = unique("logs");
    engine.ok(&[
        "run",
        "--name",
        &name,
        "busybox",
        "sh",
        "-c",
        "echo out1; echo err1 >&2; sleep 0.1; echo out2",
    ]);
    let out = engine.berth(&["logs", &name]);
    assert_eq!(stdout(&out), "out1\nout2\n");
    assert_eq!(stderr(&out), "err1\n");

    let tail = engine.ok(&["logs", "--tail", "1", &name]);
    assert_eq!(tail, "out2\n");

    let stamped = engine.ok(&["logs", "-t", &name]);
    let first = stamped.lines().next().unwrap();
    let (stamp, text) = first.split_once(' ').unwrap();
    assert!(stamp.contains('T') && stamp.ends_with('Z'), "{first}");
    assert_eq!(text, "out1");

    // The json-file log is in Docker's format.
    let path = engine.inspect(&name, "{{.LogPath}}");
    let raw = std::fs::read_to_string(path).unwrap();
    let entry: serde_json::Value = serde_json::from_str(raw.lines().next().unwrap()).unwrap();
    assert_eq!(entry["log"], "out1\n");
    assert_eq!(entry["stream"], "stdout");
    assert!(entry["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn logs_follow_streams_until_the_container_stops() {
    let engine = Engine::with_busybox();
    let name = unique("follow");
    engine.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 0.2; done",
    ]);
    let out = engine.berth(&["logs", "-f", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "line1\nline2\nline3\n");
}

#[test]
fn stop_waits_for_the_timeout_then_kills() {
    let engine = Engine::with_busybox();
    let name = unique("stop");
    // PID 1 ignores SIGTERM without a handler, so stop has to fall back to SIGKILL.
    engine.ok(&["run", "-d", "--name", &name, "busybox", "sleep", "1000"]);
    engine.wait_status(&name, "running");
    let started = Instant::now();
    engine.ok(&["stop", "-t", "1", &name]);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "stop took {took:?}"
    );
    assert_eq!(engine.inspect(&name, "{{.State.Status}}"), "exited");
    assert_eq!(engine.inspect(&name, "{{.State.ExitCode}}"), "137");

    // A process that handles SIGTERM exits at once.
    let trap = unique("trap");
    engine.ok(&[
        "run",
        "-d",
        "--name",
        &trap,
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    engine.wait_status(&trap, "running");
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    engine.ok(&["stop", "-t", "5", &trap]);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(engine.inspect(&trap, "{{.State.ExitCode}}"), "0");

    // Start brings a stopped container back.
    engine.ok(&["start", &name]);
    engine.wait_status(&name, "running");
    engine.ok(&["rm", "-f", &name]);
}

#[test]
fn rm_refuses_a_running_container_unless_forced() {
    let engine = Engine::with_busybox();
    let name = unique("rmf");
    engine.ok(&["run", "-d", "--name", &name, "busybox", "sleep", "1000"]);
    engine.wait_status(&name, "running");
    let out = engine.berth(&["rm", &name]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("container is running"),
        "{}",
        stderr(&out)
    );
    engine.ok(&["rm", "-f", &name]);
    let out = engine.berth(&["inspect", &name]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("No such object: {name}")),
        "{}",
        stderr(&out)
    );
    let fp = engine.footprint();
    assert!(
        fp.bundles.is_empty()
            && fp.snapshots.is_empty()
            && fp.cgroups.is_empty()
            && fp.logs.is_empty(),
        "{fp:?}"
    );
}

#[test]
fn prune_removes_only_stopped_containers() {
    let engine = Engine::with_busybox();
    let running = unique("keep");
    let stopped = unique("gone");
    engine.ok(&["run", "-d", "--name", &running, "busybox", "sleep", "1000"]);
    engine.ok(&["run", "--name", &stopped, "busybox", "true"]);
    let stopped_id = engine.inspect(&stopped, "{{.Id}}");
    let running_id = engine.inspect(&running, "{{.Id}}");
    let out = engine.ok(&["container", "prune", "-f"]);
    assert!(out.contains(&stopped_id), "{out}");
    assert!(!out.contains(&running_id), "{out}");
    let all = engine.ok(&["ps", "-a"]);
    assert!(all.contains(&running) && !all.contains(&stopped), "{all}");
    engine.ok(&["rm", "-f", &running]);
}
