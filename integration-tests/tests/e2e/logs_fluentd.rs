//! The fluentd log driver against a real Fluent Bit (v1.8, forward input on a loopback
//! port, file output), started by the test and killed by PID on drop.
use std::time::{Duration, Instant};

use berth_integration_tests::{
    fluentbit::{free_port, Event, FluentBit},
    stderr, stdout, unique, Engine,
};

const WAIT: Duration = Duration::from_secs(20);

/// `berth run` with the fluentd driver and `opts`; returns the output.
fn run(
    engine: &Engine,
    name: &str,
    opts: &[&str],
    extra: &[&str],
    cmd: &str,
) -> std::process::Output {
    let mut args = vec!["run", "--name", name, "--log-driver", "fluentd"];
    for o in opts {
        args.extend(["--log-opt", o]);
    }
    args.extend_from_slice(extra);
    args.extend(["busybox", "sh", "-c", cmd]);
    engine.berth(&args)
}

fn field<'a>(e: &'a Event, key: &str) -> &'a str {
    e.record[key].as_str().unwrap_or_default()
}

/// (source, log) pairs, sorted.
fn source_log(events: &[Event]) -> Vec<(String, String)> {
    let mut v: Vec<_> = events
        .iter()
        .map(|e| (field(e, "source").to_string(), field(e, "log").to_string()))
        .collect();
    v.sort();
    v
}

fn out_err() -> Vec<(String, String)> {
    vec![
        ("stderr".into(), "err".into()),
        ("stdout".into(), "out".into()),
    ]
}

#[test]
fn records_carry_docker_fields_tag_and_attributes() {
    let fb = FluentBit::start();
    let engine = Engine::with_busybox();
    let name = unique("fl");
    let addr = format!("fluentd-address=127.0.0.1:{}", fb.port);
    let out = run(
        &engine,
        &name,
        &[&addr, "tag=app.{{.Name}}", "labels=team", "env=APP_MODE"],
        &[
            "--label",
            "team=infra",
            "-e",
            "APP_MODE=prod",
            "-e",
            "OTHER=x",
        ],
        "echo out; echo err >&2",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = engine.inspect(&name, "{{.Id}}");
    let tag = format!("app.{name}");
    let events = fb.wait_for(2, WAIT, |e| e.tag == tag);
    assert_eq!(source_log(&events), out_err(), "{events:#?}");
    for e in &events {
        assert_eq!(field(e, "container_id"), id, "{e:?}");
        assert_eq!(field(e, "container_name"), format!("/{name}"), "{e:?}");
        assert_eq!(field(e, "team"), "infra", "{e:?}");
        assert_eq!(field(e, "APP_MODE"), "prod", "{e:?}");
        assert!(e.record.get("OTHER").is_none(), "{e:?}");
        // Whole seconds unless fluentd-sub-second-precision is set.
        assert_eq!(e.nanos, 0, "{e:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(e.secs <= now && e.secs + 120 > now, "{e:?}");
    }
    // Dual logging: `logs` reads the local cache.
    let out = engine.berth(&["logs", &name]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        (stdout(&out), stderr(&out)),
        ("out\n".into(), "err\n".into())
    );
}

#[test]
fn default_tag_sub_second_precision_and_acks() {
    let fb = FluentBit::start();
    let engine = Engine::with_busybox();
    let name = unique("fs");
    let addr = format!("fluentd-address=tcp://127.0.0.1:{}", fb.port);
    let out = run(
        &engine,
        &name,
        &[
            &addr,
            "fluentd-sub-second-precision=true",
            "fluentd-request-ack=true",
            "fluentd-write-timeout=5s",
        ],
        &[],
        "for i in 1 2 3 4 5; do echo line$i; done",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = engine.inspect(&name, "{{.Id}}");
    // The default tag is the short ID.
    let events = fb.wait_for(5, WAIT, |e| e.tag == id[..12]);
    let logs: Vec<&str> = events.iter().map(|e| field(e, "log")).collect();
    assert_eq!(logs, ["line1", "line2", "line3", "line4", "line5"]);
    // Nanoseconds survive (all five being whole seconds is a 1e-45 chance).
    assert!(events.iter().any(|e| e.nanos != 0), "{events:#?}");
}

#[test]
fn async_peer_down_at_start_gets_every_line_once_it_is_up() {
    let port = free_port();
    let engine = Engine::with_busybox();
    let name = unique("fa");
    let addr = format!("fluentd-address=127.0.0.1:{port}");
    let started = Instant::now();
    let out = run(
        &engine,
        &name,
        &[
            &addr,
            "fluentd-async=true",
            "fluentd-retry-wait=100ms",
            "tag=late",
        ],
        &[],
        "for i in 1 2 3 4 5 6 7 8; do echo late$i; done",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 8, "{}", stdout(&out));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "run took {:?} with the server down",
        started.elapsed()
    );
    std::thread::sleep(Duration::from_secs(1));
    let fb = FluentBit::start_on(port);
    let events = fb.wait_for(8, Duration::from_secs(30), |e| e.tag == "late");
    let logs: Vec<&str> = events.iter().map(|e| field(e, "log")).collect();
    assert_eq!(
        logs,
        ["late1", "late2", "late3", "late4", "late5", "late6", "late7", "late8"],
        "blocking mode loses nothing and keeps the order"
    );
}

#[test]
fn server_restart_mid_run_loses_nothing() {
    let fb = FluentBit::start();
    let port = fb.port;
    let engine = Engine::with_busybox();
    let name = unique("fr");
    let addr = format!("fluentd-address=127.0.0.1:{port}");
    let out = run(
        &engine,
        &name,
        &[&addr, "fluentd-retry-wait=100ms", "tag=restart"],
        &["-d"],
        "echo first; sleep 3; for i in 1 2 3 4 5; do echo later$i; sleep 0.2; done",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    fb.wait_for(1, WAIT, |e| e.tag == "restart");
    drop(fb);
    let fb = FluentBit::start_on(port);
    let events = fb.wait_for(5, WAIT, |e| e.tag == "restart");
    let logs: Vec<&str> = events.iter().map(|e| field(e, "log")).collect();
    assert_eq!(logs, ["later1", "later2", "later3", "later4", "later5"]);
    engine.wait_status(&name, "exited");
}

#[test]
fn unreachable_server_without_async_fails_run_and_leaves_nothing() {
    let engine = Engine::with_busybox();
    let before = engine.footprint();
    let port = free_port();
    let name = unique("fd");
    let addr = format!("fluentd-address=127.0.0.1:{port}");
    let out = run(&engine, &name, &[&addr], &[], "echo never");
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("failed to initialize logging driver")
            && err.contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert_eq!(engine.ok(&["ps", "-aq"]).trim(), "");
    assert_eq!(engine.footprint(), before);
}

#[test]
fn bad_options_exit_125_naming_them_and_create_nothing() {
    let engine = Engine::with_busybox();
    let before = engine.footprint();
    for (opt, needle) in [
        ("fluentd-nosuch=1", "fluentd-nosuch"),
        ("fluentd-async=maybe", "fluentd-async"),
        ("fluentd-retry-wait=soon", "fluentd-retry-wait"),
        ("fluentd-max-retries=-1", "fluentd-max-retries"),
        ("fluentd-address=http://x", "fluentd-address"),
        ("tag={{.Nope}}", ".Nope"),
    ] {
        let out = engine.berth(&[
            "run",
            "--log-driver",
            "fluentd",
            "--log-opt",
            opt,
            "busybox",
            "true",
        ]);
        assert_eq!(out.status.code(), Some(125), "{opt}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "{opt}: {}", stderr(&out));
    }
    let out = engine.berth(&[
        "create",
        "--log-driver",
        "fluentd",
        "--log-opt",
        "fluentd-nosuch=1",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("unknown log opt 'fluentd-nosuch' for fluentd log driver"),
        "{}",
        stderr(&out)
    );
    assert_eq!(engine.ok(&["ps", "-aq"]).trim(), "");
    assert_eq!(engine.footprint(), before);
}
