//! pause/unpause, rename, top, restart, restart policies, --init, kill -s.
use std::time::{Duration, Instant};

use berth_integration_tests::{eventually, now_arg, stderr, unique, Engine};

fn counter(engine: &Engine, name: &str) -> u64 {
    engine
        .ok(&["exec", name, "cat", "/tmp/c"])
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn pause_freezes_the_container_and_unpause_resumes_it() {
    let engine = Engine::with_busybox();
    let name = unique("pause");
    engine.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/c; sleep 0.05; done",
    ]);
    engine.wait_status(&name, "running");
    std::thread::sleep(Duration::from_millis(300));
    engine.ok(&["pause", &name]);
    assert_eq!(engine.inspect(&name, "{{.State.Status}}"), "paused");
    assert!(engine.ok(&["ps"]).contains("(Paused)"));
    let upper = engine
        .root
        .join("image-store/snapshots/active")
        .join(engine.inspect(&name, "{{.Id}}"))
        .join("upper/tmp/c");
    let frozen = std::fs::read_to_string(&upper).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        std::fs::read_to_string(&upper).unwrap(),
        frozen,
        "the counter advanced while paused"
    );
    let out = engine.berth(&["unpause", "nosuch-ctr"]);
    assert_eq!(out.status.code(), Some(125));
    engine.ok(&["unpause", &name]);
    assert_eq!(engine.inspect(&name, "{{.State.Status}}"), "running");
    let before = counter(&engine, &name);
    assert!(eventually(Duration::from_secs(5), || counter(
        &engine, &name
    ) > before));
    let out = engine.berth(&["unpause", &name]);
    assert!(stderr(&out).contains("is not paused"), "{}", stderr(&out));
    // A paused container can be removed by force.
    engine.ok(&["pause", &name]);
    engine.ok(&["rm", "-f", &name]);
}

#[test]
fn rename_keeps_the_id_and_top_lists_processes() {
    let engine = Engine::with_busybox();
    let old = unique("old");
    let new = unique("new");
    engine.ok(&["run", "-d", "--name", &old, "busybox", "sleep", "1000"]);
    let id = engine.inspect(&old, "{{.Id}}");
    engine.ok(&["rename", &old, &new]);
    assert_eq!(engine.inspect(&new, "{{.Id}}"), id);
    assert!(!engine.berth(&["inspect", &old]).status.success());
    let since = now_arg();
    let top = engine.ok(&["top", &new]);
    assert!(top.lines().next().unwrap().contains("PID"), "{top}");
    assert!(top.contains("sleep 1000"), "{top}");
    assert_eq!(engine.container_events(&since, &new), ["top"]);
    let other = unique("other");
    engine.ok(&["create", "--name", &other, "busybox", "true"]);
    let out = engine.berth(&["rename", &new, &other]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("is already in use"),
        "{}",
        stderr(&out)
    );
    engine.ok(&["rm", "-f", &new]);
}

#[test]
fn restart_runs_the_container_again() {
    let engine = Engine::with_busybox();
    let name = unique("restart");
    engine.ok(&["run", "-d", "--name", &name, "busybox", "sleep", "1000"]);
    engine.wait_status(&name, "running");
    let pid = engine.inspect(&name, "{{.State.Pid}}");
    engine.ok(&["restart", "-t", "1", &name]);
    engine.wait_status(&name, "running");
    assert_ne!(engine.inspect(&name, "{{.State.Pid}}"), pid);
    engine.ok(&["kill", "-s", "KILL", &name]);
    engine.wait_status(&name, "exited");
}

#[test]
fn on_failure_restarts_up_to_the_limit() {
    let engine = Engine::with_busybox();
    let name = unique("onfail");
    engine.ok(&[
        "run",
        "-d",
        "--restart",
        "on-failure:2",
        "--name",
        &name,
        "busybox",
        "sh",
        "-c",
        "echo try; exit 1",
    ]);
    assert!(eventually(Duration::from_secs(15), || {
        engine.inspect(&name, "{{.RestartCount}}") == "2"
            && engine.inspect(&name, "{{.State.Status}}") == "exited"
    }));
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(engine.inspect(&name, "{{.RestartCount}}"), "2");
    assert_eq!(engine.ok(&["logs", &name]), "try\ntry\ntry\n");
    assert_eq!(engine.ok(&["wait", &name]).trim(), "1");
}

#[test]
fn always_restarts_until_the_user_stops_it() {
    let engine = Engine::with_busybox();
    let name = unique("always");
    let started = Instant::now();
    engine.ok(&[
        "run",
        "-d",
        "--restart",
        "always",
        "--name",
        &name,
        "busybox",
        "true",
    ]);
    assert!(eventually(Duration::from_secs(15), || engine
        .inspect(&name, "{{.RestartCount}}")
        .parse::<u32>()
        .unwrap_or(0)
        >= 3));
    // Backoff: 100 ms, 200 ms, 400 ms … between restarts.
    assert!(started.elapsed() >= Duration::from_millis(300));
    engine.ok(&["stop", "-t", "1", &name]);
    let count = engine.inspect(&name, "{{.RestartCount}}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(engine.inspect(&name, "{{.State.Status}}"), "exited");
    assert_eq!(engine.inspect(&name, "{{.RestartCount}}"), count);

    let out = engine.berth(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let out = engine.berth(&["run", "--restart", "sometimes", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("sometimes"), "{}", stderr(&out));
}

#[test]
fn init_is_pid_1_and_forwards_signals() {
    let engine = Engine::with_busybox();
    let comm = engine.ok(&[
        "run",
        "--rm",
        "--init",
        "busybox",
        "sh",
        "-c",
        "cat /proc/1/comm; echo $$",
    ]);
    let mut lines = comm.lines();
    assert_ne!(lines.next().unwrap(), "sh");
    assert_ne!(lines.next().unwrap(), "1");
    let name = unique("init");
    engine.ok(&[
        "run", "-d", "--init", "--name", &name, "busybox", "sleep", "1000",
    ]);
    engine.wait_status(&name, "running");
    let started = Instant::now();
    engine.ok(&["stop", "-t", "10", &name]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "SIGTERM did not reach the command"
    );
    assert_eq!(engine.inspect(&name, "{{.State.ExitCode}}"), "143");
}

#[test]
fn create_then_start_attached_prints_the_output() {
    let engine = Engine::with_busybox();
    let name = unique("created");
    engine.ok(&["create", "--name", &name, "busybox", "echo", "hi"]);
    assert_eq!(engine.inspect(&name, "{{.State.Status}}"), "created");
    assert_eq!(engine.ok(&["start", "-a", &name]), "hi\n");
    let out = engine.berth(&["start", "-a", &name]);
    assert_eq!(berth_integration_tests::stdout(&out), "hi\n");
    assert_eq!(engine.berth(&["wait", &name]).status.code(), Some(0));
}

#[test]
fn unless_stopped_restarts_until_stopped() {
    let engine = Engine::with_busybox();
    let name = unique("unless");
    engine.ok(&[
        "run",
        "-d",
        "--restart",
        "unless-stopped",
        "--name",
        &name,
        "busybox",
        "sh",
        "-c",
        "sleep 0.2; exit 2",
    ]);
    assert!(eventually(Duration::from_secs(10), || engine
        .inspect(&name, "{{.RestartCount}}")
        .parse::<u32>()
        .unwrap_or(0)
        >= 1));
    engine.ok(&["stop", "-t", "1", &name]);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(engine.inspect(&name, "{{.State.Status}}"), "exited");
    assert_eq!(
        engine.inspect(&name, "{{.HostConfig.RestartPolicy.Name}}"),
        "unless-stopped"
    );
}

#[test]
fn stop_uses_the_stop_signal_and_kill_sends_the_named_one() {
    let engine = Engine::with_busybox();
    let name = unique("stopsig");
    engine.ok(&[
        "run",
        "-d",
        "--stop-signal",
        "USR1",
        "--name",
        &name,
        "busybox",
        "sh",
        "-c",
        "trap 'exit 9' USR1; trap 'echo hup' HUP; echo ready; while true; do sleep 0.1; done",
    ]);
    assert!(eventually(Duration::from_secs(5), || engine
        .ok(&["logs", &name])
        .contains("ready")));
    engine.ok(&["kill", "-s", "HUP", &name]);
    assert!(eventually(Duration::from_secs(5), || engine
        .ok(&["logs", &name])
        .contains("hup")));
    assert_eq!(engine.inspect(&name, "{{.State.Status}}"), "running");
    let started = Instant::now();
    engine.ok(&["stop", "-t", "10", &name]);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(engine.inspect(&name, "{{.State.ExitCode}}"), "9");
}
