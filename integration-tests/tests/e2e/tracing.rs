//! Tracing and metrics end to end: with a real OTLP collector (rotel) each CLI command is
//! one trace holding the spans of every service it touches, the shim's included; with no
//! OTEL variable nothing is exported; `[metrics]` serves Prometheus text at `/metrics`.
use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read, Write},
    time::Duration,
};

use berth_integration_tests::{
    busybox_image, moto::free_port, rotel::Rotel, rotel::Span, unique, Engine, Registry,
};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The environment of an exporting engine and CLI.
fn otel_env(rotel: &Rotel) -> Vec<(String, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), rotel.grpc_endpoint()),
        // The shim's OTLP/HTTP endpoint (rotel's is on a free port, not 4318).
        ("BERTH_OTLP_HTTP_ENDPOINT".into(), rotel.http_endpoint()),
        // Services export every 100 ms, not every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ]
}

fn start_engine(env: &[(String, String)]) -> Engine {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Engine::start_with_env(&env)
}

/// The trace of the CLI's root span `name` (the newest one), once it holds a span of
/// every service in `services`: (trace id, its spans).
fn trace_of(rotel: &Rotel, name: &str, services: &[&str]) -> (String, Vec<Span>) {
    let want: BTreeSet<&str> = services.iter().copied().collect();
    let mut trace = String::new();
    let spans = rotel.wait_for(TIMEOUT, |spans| {
        let Some(root) = spans
            .iter()
            .rev()
            .find(|s| s.service == "berth-cli" && s.name == name)
        else {
            return false;
        };
        trace = root.trace_id.clone();
        let have: BTreeSet<&str> = spans
            .iter()
            .filter(|s| s.trace_id == trace)
            .map(|s| s.service.as_str())
            .collect();
        want.is_subset(&have)
    });
    assert!(
        !trace.is_empty(),
        "no `{name}` span from the CLI:\n{}",
        rotel.output()
    );
    let spans: Vec<Span> = spans.into_iter().filter(|s| s.trace_id == trace).collect();
    let have: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    let missing: Vec<_> = services.iter().filter(|s| !have.contains(*s)).collect();
    assert!(
        missing.is_empty(),
        "trace {trace} of `{name}` lacks spans of {missing:?}; it has:\n{}\n\nall:\n{}",
        describe(&spans),
        rotel.output()
    );
    (trace, spans)
}

fn describe(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} {} {} <- {} {:?}",
                s.service, s.name, s.span_id, s.parent_id, s.attributes
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One root (the CLI's) and every other span's parent in the trace: a single tree.
fn assert_one_tree(spans: &[Span]) {
    let ids: BTreeSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let roots: Vec<&Span> = spans.iter().filter(|s| s.parent_id.is_empty()).collect();
    assert_eq!(roots.len(), 1, "roots: {roots:?}\n{}", describe(spans));
    assert_eq!(roots[0].service, "berth-cli");
    // Spans end (and are exported) in any order; give late ones a moment is done by the
    // caller: here every parent must be known.
    for s in spans {
        assert!(
            s.parent_id.is_empty() || ids.contains(s.parent_id.as_str()),
            "parent of {s:?} is not in the trace:\n{}",
            describe(spans)
        );
    }
}

/// Waits until every parent of the trace's spans has arrived, then checks the tree.
fn settled_tree(rotel: &Rotel, trace: &str) -> Vec<Span> {
    let spans = rotel.wait_for(TIMEOUT, |spans| {
        let in_trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == trace).collect();
        let ids: BTreeSet<&str> = in_trace.iter().map(|s| s.span_id.as_str()).collect();
        in_trace
            .iter()
            .all(|s| s.parent_id.is_empty() || ids.contains(s.parent_id.as_str()))
    });
    let spans: Vec<Span> = spans.into_iter().filter(|s| s.trace_id == trace).collect();
    assert_one_tree(&spans);
    spans
}

#[test]
fn each_command_is_one_trace_across_the_services() {
    let rotel = Rotel::start();
    let env = otel_env(&rotel);
    let engine = start_engine(&env);
    // The exporter's thread exists only when exporting (see the no-export test).
    assert!(
        service_threads(&engine)
            .values()
            .all(|threads| threads.iter().any(|t| t.starts_with("OpenTelemetry"))),
        "{:?}",
        service_threads(&engine)
    );
    engine.ok(&["load", "-i", busybox_image().to_str().unwrap()]);

    // run --rm: the CLI, the engine and every service the run touches, the shim too.
    let name = unique("trace-run");
    let out = engine.berth(&["run", "--rm", "--name", &name, "busybox", "true"]);
    assert!(out.status.success(), "{}", engine.service_logs());
    let (trace, _) = trace_of(
        &rotel,
        "berth run",
        &[
            "berth-cli",
            "berth-engine",
            "berth-image-store",
            "berth-volume",
            "berth-network",
            "berth-supervisor",
            "berth-shim",
            "berth-log-router",
        ],
    );
    let spans = settled_tree(&rotel, &trace);
    let root = spans.iter().find(|s| s.parent_id.is_empty()).unwrap();
    assert_eq!(
        root.attributes.get("image").map(String::as_str),
        Some("busybox")
    );
    assert_eq!(
        root.attributes.get("container").map(String::as_str),
        Some(name.as_str())
    );
    let id = root
        .attributes
        .get("container_id")
        .cloned()
        .unwrap_or_else(|| panic!("no container_id on {root:?}"));
    assert_eq!(id.len(), 64, "{id}");
    // The services' spans carry the container's ID.
    for service in [
        "berth-supervisor",
        "berth-shim",
        "berth-network",
        "berth-log-router",
    ] {
        assert!(
            spans
                .iter()
                .any(|s| s.service == service && s.attributes.values().any(|v| *v == id)),
            "no {service} span with container id {id}:\n{}",
            describe(&spans)
        );
    }
    // The shim's span is the child of a supervisor span.
    let shim = spans.iter().find(|s| s.service == "berth-shim").unwrap();
    assert_eq!(shim.name, "shim start");
    let parent = spans.iter().find(|s| s.span_id == shim.parent_id).unwrap();
    assert_eq!(parent.service, "berth-supervisor", "{}", describe(&spans));
    // Server spans are named after their method.
    assert!(
        spans.iter().any(|s| s.service == "berth-engine"
            && s.name == "berth.engine.v1.Engine/RunContainer"),
        "{}",
        describe(&spans)
    );

    // exec: the exec's shim reports its own span under the supervisor's.
    let sleeper = unique("trace-exec");
    engine.ok(&["run", "-d", "--name", &sleeper, "busybox", "sleep", "100"]);
    engine.ok(&["exec", &sleeper, "true"]);
    let (trace, _) = trace_of(
        &rotel,
        "berth exec",
        &[
            "berth-cli",
            "berth-engine",
            "berth-supervisor",
            "berth-shim",
        ],
    );
    let spans = settled_tree(&rotel, &trace);
    let shim = spans.iter().find(|s| s.service == "berth-shim").unwrap();
    assert_eq!(shim.name, "shim exec", "{}", describe(&spans));
    assert_eq!(shim.attributes.get("exec_id").map(String::len), Some(64));
    let parent = spans.iter().find(|s| s.span_id == shim.parent_id).unwrap();
    assert_eq!(parent.service, "berth-supervisor", "{}", describe(&spans));
    engine.ok(&["rm", "-f", &sleeper]);

    // network create and volume create.
    let net = unique("trace-net");
    engine.ok(&["network", "create", &net]);
    let (trace, _) = trace_of(
        &rotel,
        "berth network create",
        &["berth-cli", "berth-engine", "berth-network"],
    );
    let spans = settled_tree(&rotel, &trace);
    assert!(
        spans
            .iter()
            .any(|s| s.service == "berth-network" && s.attributes.get("network") == Some(&net)),
        "{}",
        describe(&spans)
    );
    let vol = unique("trace-vol");
    engine.ok(&["volume", "create", &vol]);
    let (trace, _) = trace_of(
        &rotel,
        "berth volume create",
        &["berth-cli", "berth-engine", "berth-volume"],
    );
    let spans = settled_tree(&rotel, &trace);
    assert!(
        spans
            .iter()
            .any(|s| s.service == "berth-volume" && s.attributes.get("volume") == Some(&vol)),
        "{}",
        describe(&spans)
    );
    engine.ok(&["network", "rm", &net]);
    engine.ok(&["volume", "rm", &vol]);
}

/// The spans of the trace whose root is `service`'s span `name` about `container_id`,
/// once it holds a span of every service in `services`.
fn background_trace(
    rotel: &Rotel,
    service: &str,
    name: &str,
    container_id: &str,
    services: &[&str],
) -> Vec<Span> {
    let want: BTreeSet<&str> = services.iter().copied().collect();
    let is_root = |s: &Span| {
        s.service == service
            && s.name == name
            && s.parent_id.is_empty()
            && s.attributes.get("container_id").map(String::as_str) == Some(container_id)
    };
    let spans = rotel.wait_for(TIMEOUT, |spans| {
        let Some(root) = spans.iter().find(|s| is_root(s)) else {
            return false;
        };
        let have: BTreeSet<&str> = spans
            .iter()
            .filter(|s| s.trace_id == root.trace_id)
            .map(|s| s.service.as_str())
            .collect();
        want.is_subset(&have)
    });
    let root = spans
        .iter()
        .find(|s| is_root(s))
        .unwrap_or_else(|| panic!("no `{name}` root span from {service}:\n{}", rotel.output()));
    let trace: Vec<Span> = spans
        .iter()
        .filter(|s| s.trace_id == root.trace_id)
        .cloned()
        .collect();
    let have: BTreeSet<&str> = trace.iter().map(|s| s.service.as_str()).collect();
    assert!(want.is_subset(&have), "{}", describe(&trace));
    trace
}

#[test]
fn work_without_a_request_is_traced_too() {
    let rotel = Rotel::start();
    let env = otel_env(&rotel);
    let engine = start_engine(&env);
    engine.ok(&["load", "-i", busybox_image().to_str().unwrap()]);

    // A restart policy restarts the container: a trace rooted in the supervisor.
    let failing = unique("trace-restart");
    engine.ok(&[
        "run",
        "-d",
        "--name",
        &failing,
        "--restart",
        "on-failure:1",
        "busybox",
        "false",
    ]);
    let id = engine.inspect(&failing, "{{.Id}}");
    let spans = background_trace(
        &rotel,
        "berth-supervisor",
        "policy restart",
        &id,
        &["berth-supervisor", "berth-network", "berth-shim"],
    );
    assert!(
        spans.iter().any(|s| s.name == "shim start"),
        "{}",
        describe(&spans)
    );
    engine.ok(&["rm", "-f", &failing]);

    // A detached --rm container is removed by the engine when it exits.
    let short = unique("trace-rm");
    let id = engine.ok(&["run", "-d", "--rm", "--name", &short, "busybox", "true"]);
    background_trace(
        &rotel,
        "berth-engine",
        "auto-remove",
        id.trim(),
        &[
            "berth-engine",
            "berth-supervisor",
            "berth-network",
            "berth-volume",
        ],
    );
}

#[test]
fn pull_is_one_trace() {
    let rotel = Rotel::start();
    let registry = Registry::start();
    let env = otel_env(&rotel);
    let engine = start_engine(&env);
    engine.ok(&["load", "-i", busybox_image().to_str().unwrap()]);
    let image = format!("{}/traced:1", registry.addr);
    engine.ok(&["tag", "busybox", &image]);
    engine.ok(&["push", &image]);
    engine.ok(&["rmi", &image]);
    engine.ok(&["pull", &image]);
    let (trace, _) = trace_of(
        &rotel,
        "berth pull",
        &["berth-cli", "berth-engine", "berth-image-store"],
    );
    let spans = settled_tree(&rotel, &trace);
    assert!(
        spans
            .iter()
            .any(|s| s.service == "berth-image-store" && s.attributes.get("image") == Some(&image)),
        "{}",
        describe(&spans)
    );
}

/// Thread names of each service process of `engine` (found by its instance in their
/// environment).
fn service_threads(engine: &Engine) -> BTreeMap<u32, Vec<String>> {
    let marker = format!("BERTH_INSTANCE={}", engine.instance);
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !comm.starts_with("berth-") || comm.starts_with("berth-shim") {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if !environ.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()) {
            continue;
        }
        let mut threads = Vec::new();
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                threads.push(name.trim().to_string());
            }
        }
        out.insert(pid, threads);
    }
    assert_eq!(out.len(), 6, "six service processes: {out:?}");
    out
}

#[test]
fn nothing_is_exported_without_otel_variables() {
    // A collector is listening, but nobody tells the services about it.
    let rotel = Rotel::start();
    let engine = Engine::with_busybox();
    let name = unique("notrace");
    engine.ok(&["run", "--rm", "--name", &name, "busybox", "true"]);
    engine.ok(&["ps", "-a"]);
    for (pid, threads) in service_threads(&engine) {
        assert!(
            !threads.iter().any(|t| t.starts_with("OpenTelemetry")),
            "service {pid} runs an exporter thread: {threads:?}"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(rotel.spans().is_empty(), "{}", rotel.output());
}

/// `GET /metrics` from `port`: (status line, body).
fn get_metrics(port: u16) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The value of the sample `prefix…` (a full series up to the value), 0 when absent.
fn sample(body: &str, series: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn metrics_endpoint_counts_calls() {
    let dir = tempfile::tempdir().unwrap();
    let (engine_port, supervisor_port) = (free_port(), free_port());
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[metrics]\nengine = \"127.0.0.1:{engine_port}\"\nsupervisor = \"127.0.0.1:{supervisor_port}\"\n"
        ),
    )
    .unwrap();
    let engine = Engine::start_with_env(&[("BERTH_CONFIG_FILE", config.to_str().unwrap())]);
    let list = "berth_grpc_requests_total{service=\"engine\",method=\"berth.engine.v1.Engine/ListContainers\",code=\"OK\"}";
    let (status, before) = get_metrics(engine_port);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        before.contains("# TYPE berth_grpc_requests_total counter")
            && before.contains("# TYPE berth_grpc_request_duration_seconds histogram")
            && before.contains("process_resident_memory_bytes "),
        "{before}"
    );
    let n = sample(&before, list);
    engine.ok(&["ps"]);
    engine.ok(&["ps", "-a"]);
    let (_, after) = get_metrics(engine_port);
    assert_eq!(sample(&after, list), n + 2, "{after}");
    let count = "berth_grpc_request_duration_seconds_count{service=\"engine\",method=\"berth.engine.v1.Engine/ListContainers\"}";
    assert_eq!(sample(&after, count), n + 2, "{after}");
    let inf = "berth_grpc_request_duration_seconds_bucket{service=\"engine\",method=\"berth.engine.v1.Engine/ListContainers\",le=\"+Inf\"}";
    assert_eq!(sample(&after, inf), n + 2, "{after}");
    // An error is counted by its code.
    let missing = engine.berth(&["inspect", "--type", "container", &unique("nosuch")]);
    assert!(!missing.status.success());
    let (_, after) = get_metrics(engine_port);
    assert!(
        after.contains("method=\"berth.engine.v1.Engine/InspectContainer\",code=\"NotFound\"}"),
        "{after}"
    );
    // The engine's calls to the supervisor are counted there.
    let (_, sup) = get_metrics(supervisor_port);
    assert!(
        sup.contains("berth_grpc_requests_total{service=\"supervisor\",method=\"berth.supervisor.v1.Supervisor/ListContainers\",code=\"OK\"}"),
        "{sup}"
    );
    // Anything but /metrics is 404.
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", engine_port)).unwrap();
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
}
