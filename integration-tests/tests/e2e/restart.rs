//! Services restart (even after kill -9) without losing containers or log lines.
use std::time::Duration;

use berth_integration_tests::{eventually, unique, Engine};

#[test]
fn containers_survive_a_supervisor_kill_9() {
    let mut engine = Engine::with_busybox();
    let a = unique("survive");
    let b = unique("survive");
    engine.ok(&["run", "-d", "--name", &a, "busybox", "sleep", "1000"]);
    engine.ok(&[
        "run",
        "-d",
        "--name",
        &b,
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 5",
    ]);
    engine.wait_status(&a, "running");
    let pid = engine.inspect(&a, "{{.State.Pid}}");

    engine.stop_service("supervisor", true);
    // b exits while the supervisor is down; a keeps running.
    std::thread::sleep(Duration::from_millis(1500));
    engine.start_service("supervisor");

    assert_eq!(engine.inspect(&a, "{{.State.Status}}"), "running");
    assert_eq!(engine.inspect(&a, "{{.State.Pid}}"), pid);
    assert!(engine.ok(&["ps"]).contains(&a));
    engine.wait_status(&b, "exited");
    assert_eq!(engine.inspect(&b, "{{.State.ExitCode}}"), "5");

    // The restarted supervisor still controls the container.
    engine.ok(&["stop", "-t", "1", &a]);
    assert_eq!(engine.inspect(&a, "{{.State.Status}}"), "exited");
}

#[test]
fn no_log_line_is_lost_when_the_log_router_restarts() {
    let mut engine = Engine::with_busybox();
    let name = unique("chatty");
    engine.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo line$i; sleep 0.01; done",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    engine.stop_service("log-router", true);
    std::thread::sleep(Duration::from_millis(700));
    engine.start_service("log-router");
    engine.wait_status(&name, "exited");

    let expected: Vec<String> = (1..=300).map(|i| format!("line{i}")).collect();
    let complete = eventually(Duration::from_secs(10), || {
        let logs = engine.ok(&["logs", &name]);
        logs.lines().map(str::to_string).collect::<Vec<_>>() == expected
    });
    let logs = engine.ok(&["logs", &name]);
    assert!(
        complete,
        "lines lost or repeated: got {} lines\n{logs}",
        logs.lines().count()
    );
}

#[test]
fn a_running_container_survives_a_restart_of_every_service() {
    let mut engine = Engine::with_busybox();
    let name = unique("steady");
    engine.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "busybox",
        "sh",
        "-c",
        "echo before; sleep 1000",
    ]);
    engine.wait_status(&name, "running");
    let pid = engine.inspect(&name, "{{.State.Pid}}");
    for service in berth_integration_tests::SERVICES {
        engine.restart_service(service, false);
    }
    for service in berth_integration_tests::SERVICES {
        engine.restart_service(service, true);
    }
    assert_eq!(engine.inspect(&name, "{{.State.Status}}"), "running");
    assert_eq!(engine.inspect(&name, "{{.State.Pid}}"), pid);
    assert_eq!(engine.ok(&["logs", &name]), "before\n");
    assert_eq!(
        engine.ok(&["run", "--rm", "busybox", "echo", "still serving"]),
        "still serving\n"
    );
    engine.ok(&["stop", "-t", "1", &name]);
    engine.ok(&["rm", &name]);
    let fp = engine.footprint();
    assert!(
        fp.bundles.is_empty()
            && fp.snapshots.is_empty()
            && fp.netns.is_empty()
            && fp.cgroups.is_empty(),
        "{fp:?}"
    );
}
