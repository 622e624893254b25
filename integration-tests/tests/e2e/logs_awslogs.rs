//! The awslogs log driver against moto's CloudWatch Logs (server mode on a loopback port,
//! killed by PID on drop). The log router gets dummy credentials in its environment, as
//! Docker's daemon would; moto does not check the signatures.
use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use berth_integration_tests::{
    busybox_image, eventually,
    moto::{free_port, Moto},
    stderr, stdout, unique, Engine,
};

fn engine() -> Engine {
    engine_with(&[
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_SESSION_TOKEN", "session"),
    ])
}

/// An engine with `env` (the region is never taken from the test's own environment).
fn engine_with(env: &[(&str, &str)]) -> Engine {
    let mut all = vec![("AWS_REGION", ""), ("AWS_DEFAULT_REGION", "")];
    all.extend_from_slice(env);
    let engine = Engine::start_with_env(&all);
    let image = busybox_image();
    engine.ok(&["load", "-i", image.to_str().unwrap()]);
    engine
}

/// The full ID of the container created last (each test has its own engine).
fn latest_id(engine: &Engine) -> String {
    let id = engine.ok(&["ps", "-aql", "--no-trunc"]).trim().to_string();
    assert_eq!(id.len(), 64, "{id:?}");
    id
}

fn group() -> String {
    unique("g")
}

/// `berth run` args with the awslogs driver and `opts`, then `cmd`.
fn run_args<'a>(name: &'a str, opts: &'a [String], cmd: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "--name", name, "--log-driver", "awslogs"];
    for o in opts {
        args.extend(["--log-opt", o.as_str()]);
    }
    args.push("busybox");
    args.extend(cmd);
    args
}

fn base_opts(endpoint: &str, group: &str) -> Vec<String> {
    vec![
        "awslogs-region=us-east-1".into(),
        format!("awslogs-group={group}"),
        "awslogs-create-group=true".into(),
        format!("awslogs-endpoint={endpoint}"),
    ]
}

/// Waits for `n` events in the stream.
fn wait_events(moto: &Moto, group: &str, stream: &str, n: usize) -> Vec<(i64, String)> {
    let mut got = Vec::new();
    let ok = eventually(Duration::from_secs(60), || {
        got = moto.events(group, stream);
        if got.len() < n {
            std::thread::sleep(Duration::from_millis(300));
        }
        got.len() >= n
    });
    assert!(
        ok,
        "wanted {n} events in {group}/{stream}, got {got:?} (streams: {:?})",
        moto.streams(group)
    );
    got
}

fn messages(events: &[(i64, String)]) -> Vec<String> {
    events.iter().map(|(_, m)| m.clone()).collect()
}

fn assert_out_err(events: &[(i64, String)]) {
    // Both pipes are read by the shim; the events are in timestamp order.
    assert!(
        events.windows(2).all(|w| w[0].0 <= w[1].0),
        "not in timestamp order: {events:?}"
    );
    let mut m = messages(events);
    m.sort();
    assert_eq!(m, ["err", "out"], "{events:?}");
}

#[test]
fn lines_reach_cloudwatch_under_the_container_id_and_logs_reads_the_cache() {
    let moto = Moto::start();
    let engine = engine();
    let g = group();
    let name = unique("aw");
    let mut opts = base_opts(&moto.endpoint(), &g);
    opts.push("awslogs-force-flush-interval-seconds=1".into());
    let out = engine.berth(&run_args(
        &name,
        &opts,
        &[
            "sh",
            "-c",
            "echo out; echo err >&2; echo; sleep 0.3; echo last",
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = latest_id(&engine);
    let events = wait_events(&moto, &g, &id, 3);
    // The empty line is skipped, as Docker does.
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[2].1, "last", "{events:?}");
    assert_out_err(&events[..2]);
    assert_eq!(moto.streams(&g), std::slice::from_ref(&id));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (now_ms - events[0].0).abs() < 120_000,
        "timestamps are the lines' times in ms: {events:?}"
    );
    // Dual logging: `logs` reads the local cache.
    let out = engine.berth(&["logs", &name]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        (stdout(&out), stderr(&out)),
        ("out\n\nlast\n".into(), "err\n".into())
    );
}

#[test]
fn tag_and_awslogs_stream_name_the_stream() {
    let moto = Moto::start();
    let engine = engine();
    let g = group();
    let name = unique("tg");
    let mut opts = base_opts(&moto.endpoint(), &g);
    opts.push("tag={{.Name}}/{{.ID}}".into());
    let out = engine.berth(&run_args(
        &name,
        &opts,
        &["sh", "-c", "echo out; echo err >&2"],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = latest_id(&engine);
    let stream = format!("{name}/{}", &id[..12]);
    assert_out_err(&wait_events(&moto, &g, &stream, 2));

    // awslogs-stream wins over the tag; the group exists already (create-group is fine).
    let name = unique("st");
    opts.push("awslogs-stream=fixed-stream".into());
    let out = engine.berth(&run_args(&name, &opts, &["echo", "fixed"]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let events = wait_events(&moto, &g, "fixed-stream", 1);
    assert_eq!(messages(&events), ["fixed"]);
    let mut streams = moto.streams(&g);
    streams.sort();
    assert_eq!(streams, ["fixed-stream".to_string(), stream]);
}

#[test]
fn multiline_pattern_gathers_lines_into_events() {
    let moto = Moto::start();
    let engine = engine();
    let g = group();
    let name = unique("ml");
    let mut opts = base_opts(&moto.endpoint(), &g);
    opts.push("awslogs-multiline-pattern=^[0-9]".into());
    opts.push("awslogs-force-flush-interval-seconds=2".into());
    let out = engine.berth(&run_args(
        &name,
        &opts,
        &[
            "sh",
            "-c",
            "echo '1 first'; echo '  at a'; echo '  at b'; echo '2 second'",
        ],
    ));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let id = latest_id(&engine);
    let events = wait_events(&moto, &g, &id, 2);
    assert_eq!(messages(&events), ["1 first\n  at a\n  at b", "2 second"]);
}

#[test]
fn bad_options_exit_125_naming_them() {
    let engine = engine();
    let endpoint = "awslogs-endpoint=http://127.0.0.1:9";
    for (opts, needle) in [
        (vec!["awslogs-region=us-east-1"], "awslogs-group"),
        (vec!["awslogs-group=g"], "awslogs-region"),
        (
            vec![
                "awslogs-region=us-east-1",
                "awslogs-group=g",
                "awslogs-nope=1",
            ],
            "awslogs-nope",
        ),
        (
            vec![
                "awslogs-region=us-east-1",
                "awslogs-group=g",
                "awslogs-create-group=maybe",
            ],
            "awslogs-create-group",
        ),
        (
            vec![
                "awslogs-region=us-east-1",
                "awslogs-group=g",
                "awslogs-multiline-pattern=^x",
                "awslogs-datetime-format=%Y",
            ],
            "at the same time",
        ),
        (
            vec![
                "awslogs-region=us-east-1",
                "awslogs-group=g",
                "awslogs-multiline-pattern=(x",
            ],
            "awslogs-multiline-pattern",
        ),
        (
            vec![
                "awslogs-region=us-east-1",
                "awslogs-group=g",
                "awslogs-credentials-endpoint=/creds",
            ],
            "awslogs-credentials-endpoint",
        ),
    ] {
        let mut args = vec![
            "run",
            "--rm",
            "--log-driver",
            "awslogs",
            "--log-opt",
            endpoint,
        ];
        for o in &opts {
            args.extend(["--log-opt", o]);
        }
        args.extend(["busybox", "true"]);
        let out = engine.berth(&args);
        assert_eq!(out.status.code(), Some(125), "{opts:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(needle),
            "{opts:?}: wanted {needle}: {}",
            stderr(&out)
        );
    }
    assert_eq!(engine.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn missing_credentials_are_a_clear_error() {
    let engine = engine_with(&[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")]);
    let out = engine.berth(&[
        "run",
        "--rm",
        "--log-driver",
        "awslogs",
        "--log-opt",
        "awslogs-region=us-east-1",
        "--log-opt",
        "awslogs-group=g",
        "--log-opt",
        "awslogs-endpoint=http://127.0.0.1:9",
        "busybox",
        "true",
    ]);
    assert_ne!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("AWS_ACCESS_KEY_ID"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn endpoint_down_does_not_block_run_and_lines_arrive_once_it_is_up() {
    let engine = engine();
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let g = group();
    let name = unique("dn");
    let mut opts = base_opts(&endpoint, &g);
    opts.push("awslogs-force-flush-interval-seconds=1".into());
    opts.push("mode=blocking".into());
    let start = Instant::now();
    let mut child = engine
        .berth_cmd(&run_args(
            &name,
            &opts,
            &["sh", "-c", "echo early; sleep 1; echo late"],
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run berth");
    let finished = eventually(Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !finished {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        finished,
        "berth run hung with the endpoint down ({:?})\n{}",
        start.elapsed(),
        engine.service_logs()
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "early\nlate\n");
    let id = latest_id(&engine);
    // The first attempt failed (the router says why), and it retries with backoff...
    let failed = eventually(Duration::from_secs(20), || {
        let log = std::fs::read_to_string(engine.log_path("log-router")).unwrap_or_default();
        log.contains("log delivery failed") && log.contains("cannot reach")
    });
    assert!(failed, "{}", engine.service_logs());
    // ...so the batch goes through once moto is up.
    let moto = Moto::start_on(port);
    let events = wait_events(&moto, &g, &id, 2);
    assert_eq!(messages(&events), ["early", "late"], "{events:?}");
    assert_eq!(moto.events(&g, &id).len(), 2, "no duplicates");
    let out = engine.berth(&["logs", &name]);
    assert_eq!(stdout(&out), "early\nlate\n", "{}", stderr(&out));
}
