//! Lifecycle against the real `berth-shim` (target/debug/berth-shim, or $BERTH_SHIM), a
//! busybox rootfs in a temp dir, a temp BERTH_ROOT/BERTH_RUN and a unique instance name.
//! Tests needing the shim are skipped (with a message) when it or root is missing.
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use berth_proto::supervisor::v1::{
    attach_input, attach_output, exec_input, AttachInput, AttachStart, ContainerSpec,
    ContainerStatus, ExecInput, ExecStart, HostEntry, NetworkSettings, RestartPolicy,
};
use berth_supervisor::{attach, exec, watch, Error, Supervisor};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

mod common;
use common::*;

/// Collected output of an attach.
#[derive(Debug, Default)]
struct Attached {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exit: Option<i32>,
    detached: bool,
}

async fn collect(
    mut rx: mpsc::Receiver<Result<berth_proto::supervisor::v1::AttachOutput, tonic::Status>>,
) -> Attached {
    let mut out = Attached::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        match msg.expect("attach output").output {
            Some(attach_output::Output::Stdout(b)) => out.stdout.extend(b),
            Some(attach_output::Output::Stderr(b)) => out.stderr.extend(b),
            Some(attach_output::Output::Exit(e)) => out.exit = Some(e.exit_code),
            Some(attach_output::Output::Detached(d)) => out.detached = d,
            None => {}
        }
    }
    out
}

type Input = Result<AttachInput, tonic::Status>;

fn input_channel() -> (mpsc::Sender<Input>, ReceiverStream<Input>) {
    let (tx, rx) = mpsc::channel(16);
    (tx, ReceiverStream::new(rx))
}

fn stdin(b: &[u8]) -> Result<AttachInput, tonic::Status> {
    Ok(AttachInput {
        input: Some(attach_input::Input::Stdin(b.to_vec())),
    })
}

async fn status_of(sup: &Supervisor, id: &str) -> ContainerStatus {
    ContainerStatus::try_from(sup.get(id).unwrap().state.unwrap().status).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_attach_start_collects_output_exit_and_logs() {
    let Some(env) = Env::new("run_with_attach_start") else {
        return;
    };
    let sup = env.sup();
    let c = sup
        .create(
            "",
            "hello",
            Some(env.spec(&["sh", "-c", "echo hello; echo oops >&2; hostname; exit 3"])),
        )
        .await
        .unwrap();
    assert_eq!(c.name, "hello");
    assert!(Path::new(&c.bundle_path).join("config.json").exists());
    let (_tx, input) = input_channel();
    let start = AttachStart {
        id: "hello".into(),
        stdout: true,
        stderr: true,
        start: true,
        ..Default::default()
    };
    let out = collect(attach::attach(sup, start, input).await.unwrap()).await;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("hello\n{}\n", &c.id[..12])
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    assert_eq!(out.exit, Some(3));
    assert_eq!(
        status_of(sup, &c.id).await,
        ContainerStatus::Exited,
        "recorded before the exit is reported"
    );

    let exit = tokio::time::timeout(Duration::from_secs(10), sup.wait(&c.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, 3);
    assert!(!exit.finished_at.is_empty());
    let got = sup.get(&c.id[..10]).unwrap();
    let state = got.state.unwrap();
    assert_eq!(
        ContainerStatus::try_from(state.status).unwrap(),
        ContainerStatus::Exited
    );
    assert_eq!((state.exit_code, state.pid), (3, 0));
    assert!(!state.started_at.is_empty());
    assert!(!env.cgroup_exists(&c.id), "cgroup deleted after exit");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !env.logs_of(&c.id).contains("oops") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        env.logs_of(&c.id).contains("hello\n"),
        "logs: {:?}",
        env.logs_of(&c.id)
    );

    // Run it again with a plain start: same record, new run.
    let again = sup.start(&c.id).await.unwrap();
    assert_eq!(
        ContainerStatus::try_from(again.state.unwrap().status).unwrap(),
        ContainerStatus::Running
    );
    assert_eq!(sup.wait(&c.id).await.unwrap().exit_code, 3);

    let removed = sup.remove("/hello", false).await.unwrap();
    assert_eq!(removed.id, c.id);
    assert!(!Path::new(&c.bundle_path).exists());
    assert!(matches!(sup.get(&c.id), Err(Error::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_failure_reports_127_and_stays_created() {
    let Some(env) = Env::new("start_failure") else {
        return;
    };
    let sup = env.sup();
    let c = sup
        .create("", "", Some(env.spec(&["nosuch-binary"])))
        .await
        .unwrap();
    let err = sup.start(&c.id).await.unwrap_err();
    let Error::StartFailed { exit_code, message } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*exit_code, 127, "{message}");
    let status: tonic::Status = err.into();
    assert_eq!(berth_common::status::exit_code_of(&status), Some(127));
    let state = sup.get(&c.id).unwrap().state.unwrap();
    assert_eq!(
        ContainerStatus::try_from(state.status).unwrap(),
        ContainerStatus::Created
    );
    assert!(!state.error.is_empty());
    assert!(!env.cgroup_exists(&c.id));
    assert_eq!(sup.wait(&c.id).await.unwrap().exit_code, 127);
    sup.remove(&c.id, false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_kill_and_remove() {
    let Some(env) = Env::new("stop_kill_and_remove") else {
        return;
    };
    let sup = env.sup();
    // Ignores SIGTERM (pid 1 without a handler): stop must fall back to SIGKILL.
    let c = sup
        .create("", "sleeper", Some(env.spec(&["sleep", "300"])))
        .await
        .unwrap();
    let running = sup.start("sleeper").await.unwrap();
    let pid = running.state.unwrap().pid;
    assert!(pid > 0);
    assert!(env.cgroup_exists(&c.id));
    assert_eq!(
        sup.start("sleeper").await.unwrap().state.unwrap().pid,
        pid,
        "start is a no-op when running"
    );
    assert_eq!(sup.list(false).unwrap().len(), 1);
    assert_eq!(sup.list(true).unwrap().len(), 1);

    let err = sup.kill("sleeper", "FOO").await.unwrap_err();
    assert_eq!(err.to_string(), "invalid signal: FOO");
    let err = sup.remove("sleeper", false).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot remove container \"/sleeper\": container is running: stop the container before removing or force remove"
    );

    let t = Instant::now();
    let stopped = sup.stop("sleeper", Some(1), "").await.unwrap();
    let state = stopped.state.unwrap();
    assert_eq!(
        ContainerStatus::try_from(state.status).unwrap(),
        ContainerStatus::Exited
    );
    assert_eq!(state.exit_code, 137);
    assert!(
        t.elapsed() >= Duration::from_millis(900) && t.elapsed() < Duration::from_secs(10),
        "{:?}",
        t.elapsed()
    );
    assert!(
        sup.list(false).unwrap().is_empty(),
        "only running ones without all"
    );
    assert_eq!(sup.list(true).unwrap().len(), 1);
    // Stopping a stopped container is fine; killing one is not.
    sup.stop("sleeper", Some(1), "").await.unwrap();
    let err = sup.kill("sleeper", "KILL").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("container {} is not running", c.id)
    );

    // A graceful stop with a shell that handles SIGTERM.
    let g = sup
        .create(
            "",
            "graceful",
            Some(env.spec(&["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"])),
        )
        .await
        .unwrap();
    sup.start(&g.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    let stopped = sup.stop(&g.id, Some(20), "").await.unwrap();
    assert_eq!(stopped.state.unwrap().exit_code, 0);
    assert!(t.elapsed() < Duration::from_secs(10));

    // Kill with a signal name, then force-remove a running one.
    sup.start("sleeper").await.unwrap();
    sup.kill("sleeper", "SIGKILL").await.unwrap();
    assert_eq!(sup.wait("sleeper").await.unwrap().exit_code, 137);
    sup.start("sleeper").await.unwrap();
    let removed = sup.remove("sleeper", true).await.unwrap();
    assert_eq!(
        ContainerStatus::try_from(removed.state.unwrap().status).unwrap(),
        ContainerStatus::Exited
    );
    assert!(!env.cgroup_exists(&c.id));
    sup.remove(&g.id, false).await.unwrap();
    assert!(sup.list(true).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_stdin_detach_and_reattach() {
    let Some(env) = Env::new("attach_stdin") else {
        return;
    };
    let sup = env.sup();
    let mut spec = env.spec(&["cat"]);
    spec.open_stdin = true;
    let c = sup.create("", "catter", Some(spec)).await.unwrap();

    // First attach starts it; detach with ctrl-p ctrl-q.
    let (tx, input) = input_channel();
    let start = AttachStart {
        id: c.id.clone(),
        stdin: true,
        stdout: true,
        stderr: true,
        start: true,
        ..Default::default()
    };
    let mut rx = attach::attach(sup, start, input).await.unwrap();
    tx.send(stdin(b"ping\n")).await.unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"ping\n") {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
            .output
        {
            Some(attach_output::Output::Stdout(b)) => got.extend(b),
            other => panic!("unexpected {other:?}"),
        }
    }
    tx.send(stdin(&[16, 17])).await.unwrap();
    let out = collect(rx).await;
    assert!(out.detached, "{out:?}");
    assert_eq!(status_of(sup, &c.id).await, ContainerStatus::Running);

    // Reattach to the running container; closing stdin ends cat.
    let (tx, input) = input_channel();
    let start = AttachStart {
        id: "catter".into(),
        stdin: true,
        stdout: true,
        ..Default::default()
    };
    let rx = attach::attach(sup, start, input).await.unwrap();
    tx.send(stdin(b"pong\n")).await.unwrap();
    tx.send(Ok(AttachInput {
        input: Some(attach_input::Input::CloseStdin(true)),
    }))
    .await
    .unwrap();
    let out = collect(rx).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pong\n");
    assert_eq!(out.exit, Some(0));

    // Attaching to a stopped container without start is refused.
    sup.wait(&c.id).await.unwrap();
    let (_tx, input) = input_channel();
    let err = attach::attach(
        sup,
        AttachStart {
            id: c.id.clone(),
            stdout: true,
            ..Default::default()
        },
        input,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("container {} is not running", c.id)
    );
    sup.remove(&c.id, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_survive_a_supervisor_restart() {
    let Some(mut env) = Env::new("restart") else {
        return;
    };
    let long = env
        .sup()
        .create("", "long", Some(env.spec(&["sleep", "300"])))
        .await
        .unwrap();
    let short = env
        .sup()
        .create(
            "",
            "short",
            Some(env.spec(&["sh", "-c", "sleep 1; exit 5"])),
        )
        .await
        .unwrap();
    let pid = env.sup().start("long").await.unwrap().state.unwrap().pid;
    env.sup().start("short").await.unwrap();

    // The supervisor "dies" (its watchers with it) while both run; one exits meanwhile.
    env.sup.take().unwrap().shutdown();
    tokio::time::sleep(Duration::from_millis(1800)).await;
    env.restart().await;
    let sup = env.sup();

    let state = sup.get("long").unwrap().state.unwrap();
    assert_eq!(
        ContainerStatus::try_from(state.status).unwrap(),
        ContainerStatus::Running
    );
    assert_eq!(state.pid, pid);
    let exit = tokio::time::timeout(Duration::from_secs(10), sup.wait("short"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, 5);

    let stopped = sup.stop(&long.id, Some(1), "").await.unwrap();
    assert_eq!(stopped.state.unwrap().exit_code, 137);
    assert!(!env.cgroup_exists(&long.id));
    sup.remove(&long.id, false).await.unwrap();
    sup.remove(&short.id, false).await.unwrap();
}

/// Needs no shim: records, names and lookups.
#[tokio::test]
async fn create_validates_names_and_resolves_references() {
    let env = Env::with_shim(PathBuf::from("/nonexistent/berth-shim"));
    let sup = env.sup();
    let spec = env.spec(&["true"]);
    let a = sup.create("", "web", Some(spec.clone())).await.unwrap();
    assert_eq!(a.id.len(), 64);
    let err = sup
        .create("", "/web", Some(spec.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Conflict. The container name \"/web\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.", a.id)
    );
    assert!(matches!(
        tonic::Status::from(err).code(),
        tonic::Code::AlreadyExists
    ));
    let err = sup
        .create("", "bad name", Some(spec.clone()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("(bad name)"), "{err}");

    // Idempotent for the same ID.
    let id = "ab".repeat(32);
    let b = sup.create(&id, "db", Some(spec.clone())).await.unwrap();
    let b2 = sup.create(&id, "db", Some(spec.clone())).await.unwrap();
    assert_eq!(
        (b.id.as_str(), b.created.as_str()),
        (b2.id.as_str(), b2.created.as_str())
    );
    let generated = sup.create("", "", Some(spec.clone())).await.unwrap();
    assert_eq!(generated.name.split('_').count(), 2, "{}", generated.name);
    assert!(sup.create("xyz", "", Some(spec.clone())).await.is_err());
    assert!(matches!(
        sup.create("", "", None).await,
        Err(Error::InvalidArgument(_))
    ));

    // A failed create leaves nothing: an invalid mount type fails after validation.
    let mut bad = spec.clone();
    bad.mounts.push(berth_proto::supervisor::v1::Mount {
        r#type: "nfs".into(),
        destination: "/x".into(),
        ..Default::default()
    });
    assert!(sup.create("", "broken", Some(bad)).await.is_err());
    assert!(matches!(sup.get("broken"), Err(Error::NotFound(_))));
    let dirs: Vec<_> = std::fs::read_dir(env.config.root.join("supervisor/containers"))
        .unwrap()
        .collect();
    assert_eq!(
        dirs.len(),
        3,
        "bundles of web, db and the generated one only"
    );

    assert_eq!(sup.get("/web").unwrap().id, a.id);
    assert_eq!(sup.get("abab").unwrap().id, id);
    let twin = format!("aba{}", "c".repeat(61));
    sup.create(&twin, "twin", Some(spec.clone())).await.unwrap();
    let err = sup.get("aba").unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert_eq!(
        tonic::Status::from(err).code(),
        tonic::Code::InvalidArgument
    );
    sup.remove("twin", false).await.unwrap();
    assert_eq!(sup.get(&a.id[..12]).unwrap().id, a.id);
    assert!(matches!(sup.get("nope"), Err(Error::NotFound(_))));
    assert_eq!(
        sup.get("nope").unwrap_err().to_string(),
        "no such container: nope"
    );
    assert!(sup.list(false).unwrap().is_empty(), "none running");
    let names: Vec<String> = sup
        .list(true)
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(
        names,
        vec![generated.name.clone(), "db".into(), "web".into()],
        "newest first"
    );

    // Kill/attach on a created container; start with a missing shim fails cleanly.
    assert!(matches!(
        sup.kill("web", "").await,
        Err(Error::NotRunning(_))
    ));
    assert!(sup.start("web").await.is_err());
    assert_eq!(status_of(sup, "web").await, ContainerStatus::Created);
    let exit = tokio::time::timeout(Duration::from_secs(5), sup.wait("web"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, 128, "a failed start ends the wait");
    // A never-started container is waited for.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), sup.wait("db"))
            .await
            .is_err()
    );
    assert!(!env.cgroup_exists(&a.id));
    let removed = sup.remove("web", false).await.unwrap();
    assert_eq!(removed.name, "web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_interrupted_by_a_restart_is_rolled_back() {
    let Some(mut env) = Env::new("interrupted_start") else {
        return;
    };
    let c = env
        .sup()
        .create("", "half", Some(env.spec(&["sleep", "300"])))
        .await
        .unwrap();
    // What start does up to the shim's report, without recording it (the supervisor "dies").
    berth_supervisor::cgroup::create(&env.config.instance, &c.id).unwrap();
    let args = berth_supervisor::shim::Args {
        id: c.id.clone(),
        bundle: PathBuf::from(&c.bundle_path),
        attach_socket: env.config.shim_dir().join(format!("{}.sock", c.id)),
        log_socket: env.config.log_ingest_socket(),
        wait_attach: false,
    };
    std::fs::create_dir_all(env.config.shim_dir()).unwrap();
    let report = berth_supervisor::shim::spawn(&env.shim, &args)
        .await
        .unwrap();
    let berth_supervisor::shim::Report::Started { pid, shim_pid } = report else {
        panic!("{report:?}")
    };
    assert!(watch::alive(pid) && watch::alive(shim_pid));

    env.restart().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while (watch::alive(pid) || watch::alive(shim_pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!watch::alive(pid), "container process killed");
    assert!(!watch::alive(shim_pid), "shim killed");
    assert!(!env.cgroup_exists(&c.id));
    let state = env.sup().get("half").unwrap().state.unwrap();
    assert_eq!(
        ContainerStatus::try_from(state.status).unwrap(),
        ContainerStatus::Created
    );
    assert_eq!(state.error, "start interrupted by a supervisor restart");
    let exit = tokio::time::timeout(Duration::from_secs(5), env.sup().wait("half"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.exit_code, 128);
    // And it can be started normally afterwards.
    env.sup().start("half").await.unwrap();
    env.sup().remove("half", true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_sessions_get_resizes_and_input() {
    let Some(env) = Env::new("tty") else { return };
    let sup = env.sup();
    let mut spec = env.spec(&["sh"]);
    spec.tty = true;
    spec.open_stdin = true;
    let c = sup.create("", "term", Some(spec)).await.unwrap();
    let (tx, input) = input_channel();
    let start = AttachStart {
        id: c.id.clone(),
        stdin: true,
        stdout: true,
        stderr: true,
        start: true,
        ..Default::default()
    };
    let mut rx = attach::attach(sup, start, input).await.unwrap();
    let resize = berth_proto::supervisor::v1::Resize {
        rows: 31,
        cols: 101,
    };
    tx.send(Ok(AttachInput {
        input: Some(attach_input::Input::Resize(resize)),
    }))
    .await
    .unwrap();
    tx.send(stdin(b"stty size; echo TERM=$TERM\n"))
        .await
        .unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains("TERM=xterm") {
        let msg = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("tty output")
            .unwrap()
            .unwrap();
        match msg.output {
            Some(attach_output::Output::Stdout(b)) => got.extend(b),
            other => panic!(
                "unexpected {other:?} after {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    assert!(
        String::from_utf8_lossy(&got).contains("31 101"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    tx.send(stdin(b"exit 4\n")).await.unwrap();
    let out = collect(rx).await;
    assert_eq!(out.exit, Some(4));
    sup.remove(&c.id, false).await.unwrap();
}

fn upper_of(spec: &ContainerSpec) -> PathBuf {
    PathBuf::from(&spec.rootfs.as_ref().unwrap().upper_dir)
}

fn exec_start(id: &str, args: &[&str]) -> ExecStart {
    ExecStart {
        id: id.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

type ExecIn = Result<ExecInput, tonic::Status>;

fn exec_channel() -> (mpsc::Sender<ExecIn>, ReceiverStream<ExecIn>) {
    let (tx, rx) = mpsc::channel(16);
    (tx, ReceiverStream::new(rx))
}

fn exec_files(bundle: &Path) -> Vec<String> {
    std::fs::read_dir(bundle)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("exec-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_processes_in_a_running_container() {
    let Some(env) = Env::new("exec") else {
        return;
    };
    let sup = env.sup();
    let mut spec = env.spec(&["sleep", "300"]);
    spec.env = vec!["FOO=container".into(), "KEEP=1".into()];
    let upper = upper_of(&spec);
    let c = sup.create("", "ex", Some(spec)).await.unwrap();

    // Not running yet.
    let (_tx, input) = exec_channel();
    let err = exec::exec(sup, exec_start("ex", &["true"]), input)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("container {} is not running", c.id)
    );
    assert_eq!(
        tonic::Status::from(err).code(),
        tonic::Code::FailedPrecondition
    );
    sup.start("ex").await.unwrap();
    let (_tx, input) = exec_channel();
    let err = exec::exec(sup, exec_start("ex", &[]), input)
        .await
        .unwrap_err();
    assert_eq!(
        tonic::Status::from(err).code(),
        tonic::Code::InvalidArgument
    );

    // Output, exit code, env override, working dir.
    let mut start = exec_start(
        "ex",
        &[
            "sh",
            "-c",
            "echo out; echo err >&2; echo $FOO $KEEP; pwd; exit 5",
        ],
    );
    start.env = vec!["FOO=exec".into()];
    start.working_dir = "/tmp".into();
    let (_tx, input) = exec_channel();
    let out = collect(exec::exec(sup, start, input).await.unwrap()).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\nexec 1\n/tmp\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(out.exit, Some(5));

    // Stdin.
    let mut start = exec_start("ex", &["cat"]);
    start.stdin = true;
    let (tx, input) = exec_channel();
    let rx = exec::exec(sup, start, input).await.unwrap();
    tx.send(Ok(ExecInput {
        input: Some(exec_input::Input::Stdin(b"piped\n".to_vec())),
    }))
    .await
    .unwrap();
    tx.send(Ok(ExecInput {
        input: Some(exec_input::Input::CloseStdin(true)),
    }))
    .await
    .unwrap();
    let out = collect(rx).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped\n");
    assert_eq!(out.exit, Some(0));

    // A tty: the process gets its own pty and TERM.
    let mut start = exec_start("ex", &["sh", "-c", "tty; echo $TERM"]);
    start.tty = true;
    let (_tx, input) = exec_channel();
    let out = collect(exec::exec(sup, start, input).await.unwrap()).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(text.contains("xterm"), "{text:?}");
    assert_eq!(out.exit, Some(0));

    // A missing command is 127.
    let (_tx, input) = exec_channel();
    let err = exec::exec(sup, exec_start("ex", &["nosuch-binary"]), input)
        .await
        .unwrap_err();
    let status = tonic::Status::from(err);
    assert_eq!(
        berth_common::status::exit_code_of(&status),
        Some(127),
        "{status:?}"
    );

    // Detached: the stream ends at once, the process runs on.
    let mut start = exec_start("ex", &["sh", "-c", "sleep 0.2; echo done > /tmp/detached"]);
    start.detach = true;
    let (_tx, input) = exec_channel();
    let out = collect(exec::exec(sup, start, input).await.unwrap()).await;
    assert_eq!((out.exit, out.stdout.len()), (None, 0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !upper.join("tmp/detached").exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        std::fs::read_to_string(upper.join("tmp/detached")).unwrap(),
        "done\n"
    );
    // The exec files go once the execs are over.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !exec_files(Path::new(&c.bundle_path)).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(exec_files(Path::new(&c.bundle_path)), Vec::<String>::new());
    assert_eq!(status_of(sup, &c.id).await, ContainerStatus::Running);
    sup.remove("ex", true).await.unwrap();
}

fn read_counter(upper: &Path) -> u64 {
    std::fs::read_to_string(upper.join("tmp/c"))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_freezes_and_unpause_resumes() {
    let Some(env) = Env::new("pause") else {
        return;
    };
    let sup = env.sup();
    let spec = env.spec(&[
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/c; sleep 0.1; done",
    ]);
    let upper = upper_of(&spec);
    let c = sup.create("", "counter", Some(spec)).await.unwrap();
    let err = sup.pause("counter").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("container {} is not running", c.id)
    );
    sup.start("counter").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_counter(&upper) < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = sup.unpause("counter").await.unwrap_err();
    assert_eq!(err.to_string(), format!("container {} is not paused", c.id));
    assert_eq!(
        tonic::Status::from(err).code(),
        tonic::Code::FailedPrecondition
    );

    let paused = sup.pause("counter").await.unwrap();
    let state = paused.state.unwrap();
    assert_eq!(state.status, ContainerStatus::Paused as i32);
    assert!(state.pid > 0);
    assert_eq!(
        sup.list(false).unwrap().len(),
        1,
        "paused counts as running"
    );
    let frozen_at = read_counter(&upper);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(read_counter(&upper), frozen_at, "no progress while paused");
    // Persisted: a supervisor restart still sees it paused.
    let mut env = env;
    env.restart().await;
    let sup = env.sup();
    assert_eq!(status_of(sup, &c.id).await, ContainerStatus::Paused);
    let (_tx, input) = exec_channel();
    assert!(exec::exec(sup, exec_start("counter", &["true"]), input)
        .await
        .is_err());

    sup.unpause("counter").await.unwrap();
    assert_eq!(status_of(sup, &c.id).await, ContainerStatus::Running);
    let deadline = Instant::now() + Duration::from_secs(10);
    while read_counter(&upper) < frozen_at + 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(read_counter(&upper) >= frozen_at + 3, "resumed");

    // Stop and force-remove work on paused containers.
    sup.pause("counter").await.unwrap();
    let stopped = sup.stop("counter", Some(1), "").await.unwrap();
    assert_eq!(
        stopped.state.unwrap().status,
        ContainerStatus::Exited as i32
    );
    sup.start("counter").await.unwrap();
    sup.pause("counter").await.unwrap();
    sup.kill("counter", "KILL").await.unwrap();
    assert_eq!(sup.wait("counter").await.unwrap().exit_code, 137);
    sup.start("counter").await.unwrap();
    sup.pause("counter").await.unwrap();
    sup.remove("counter", true).await.unwrap();
    assert!(!env.cgroup_exists(&c.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_lists_the_container_processes() {
    let Some(env) = Env::new("top") else {
        return;
    };
    let sup = env.sup();
    let c = sup
        .create(
            "",
            "topper",
            Some(env.spec(&["sh", "-c", "sleep 300 & wait"])),
        )
        .await
        .unwrap();
    assert!(matches!(sup.top("topper").await, Err(Error::NotRunning(_))));
    let pid = sup.start("topper").await.unwrap().state.unwrap().pid;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut rows: Vec<Vec<String>> = Vec::new();
    // Until the child has exec'd sleep (right after the fork it is still `sh`).
    while !rows.iter().any(|r| r[7] == "sleep 300") && Instant::now() < deadline {
        rows = sup.top("topper").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.len() == 8));
    let first = rows
        .iter()
        .find(|r| r[1] == pid.to_string())
        .expect("pid 1 listed");
    assert_eq!(first[7], "sh -c sleep 300 & wait");
    assert_eq!(first[0], "root");
    let child = rows
        .iter()
        .find(|r| r[7] == "sleep 300")
        .expect("sleep listed");
    assert_eq!(child[2], pid.to_string(), "ppid");
    assert_eq!(child[5], "?");
    sup.remove(&c.id, true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_restart() {
    let Some(mut env) = Env::new("rename_restart") else {
        return;
    };
    let sup = env.sup();
    let a = sup
        .create("", "alpha", Some(env.spec(&["sleep", "300"])))
        .await
        .unwrap();
    sup.create("", "beta", Some(env.spec(&["true"])))
        .await
        .unwrap();
    let renamed = sup.rename("alpha", "/gamma").await.unwrap();
    assert_eq!(
        (renamed.id.as_str(), renamed.name.as_str()),
        (a.id.as_str(), "gamma")
    );
    let err = sup.rename("gamma", "beta").await.unwrap_err();
    assert_eq!(tonic::Status::from(err).code(), tonic::Code::AlreadyExists);
    let err = sup.rename("gamma", "beta").await.unwrap_err();
    assert!(err
        .to_string()
        .starts_with("Conflict. The container name \"/beta\" is already in use"));
    assert!(matches!(
        sup.rename("gamma", "bad name!").await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        sup.rename("alpha", "x").await,
        Err(Error::NotFound(_))
    ));
    env.restart().await;
    let sup = env.sup();
    assert_eq!(sup.get("gamma").unwrap().id, a.id, "persisted");

    // Restart: a stopped one is started, a running one gets a new process.
    let first = sup.restart("gamma", Some(1)).await.unwrap();
    let pid1 = first.state.unwrap().pid;
    assert!(pid1 > 0);
    let second = sup.restart("gamma", Some(1)).await.unwrap();
    let state = second.state.unwrap();
    assert_eq!(state.status, ContainerStatus::Running as i32);
    assert!(state.pid > 0 && state.pid != pid1);
    sup.remove("gamma", true).await.unwrap();
}

fn with_policy(mut spec: ContainerSpec, name: &str, max: i32) -> ContainerSpec {
    spec.restart_policy = Some(RestartPolicy {
        name: name.into(),
        maximum_retry_count: max,
    });
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policies() {
    let Some(mut env) = Env::new("restart_policies") else {
        return;
    };
    let sup = env.sup();
    let err = sup
        .create(
            "",
            "",
            Some(with_policy(env.spec(&["true"]), "sometimes", 0)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "invalid restart policy: sometimes");
    assert!(sup
        .create("", "", Some(with_policy(env.spec(&["true"]), "always", 3)))
        .await
        .is_err());

    // on-failure:2 with exit 1: two restarts, then exited; the wait sees only the end.
    let c = sup
        .create(
            "",
            "flaky",
            Some(with_policy(
                env.spec(&["sh", "-c", "exit 1"]),
                "on-failure",
                2,
            )),
        )
        .await
        .unwrap();
    let t0 = Instant::now();
    sup.start("flaky").await.unwrap();
    let waiter = {
        let sup = sup.clone();
        tokio::spawn(async move { sup.wait("flaky").await })
    };
    let mut seen: Vec<(i32, Instant)> = vec![(0, t0)];
    let mut statuses = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = sup.get(&c.id).unwrap();
        statuses.insert(got.state.as_ref().unwrap().status);
        if got.restart_count != seen.last().unwrap().0 {
            seen.push((got.restart_count, Instant::now()));
        }
        if waiter.is_finished() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let exit = waiter.await.unwrap().unwrap();
    assert_eq!(exit.exit_code, 1);
    let got = sup.get(&c.id).unwrap();
    assert_eq!(got.restart_count, 2);
    assert_eq!(got.state.unwrap().status, ContainerStatus::Exited as i32);
    assert!(
        statuses.contains(&(ContainerStatus::Restarting as i32)),
        "{statuses:?}"
    );
    let counts: Vec<i32> = seen.iter().map(|s| s.0).collect();
    assert_eq!(counts, vec![0, 1, 2]);
    let gap = seen[2].1 - seen[1].1;
    assert!(
        gap >= Duration::from_millis(200),
        "backoff doubles: {gap:?}"
    );
    assert!(gap < Duration::from_secs(5), "{gap:?}");

    // always with exit 0 restarts; a stop keeps it stopped, also across a restart of the
    // supervisor.
    let a = sup
        .create(
            "",
            "forever",
            Some(with_policy(
                env.spec(&["sh", "-c", "sleep 0.3; exit 0"]),
                "always",
                0,
            )),
        )
        .await
        .unwrap();
    sup.start("forever").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sup.get(&a.id).unwrap().restart_count < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sup.get(&a.id).unwrap().restart_count >= 2);
    // Survives a supervisor restart.
    env.restart().await;
    let sup = env.sup();
    let before = sup.get(&a.id).unwrap().restart_count;
    let deadline = Instant::now() + Duration::from_secs(20);
    while sup.get(&a.id).unwrap().restart_count < before + 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        sup.get(&a.id).unwrap().restart_count >= before + 2,
        "restarts go on"
    );
    let stopped = sup.stop("forever", Some(1), "").await.unwrap();
    assert_eq!(
        stopped.state.unwrap().status,
        ContainerStatus::Exited as i32
    );
    let count = sup.get(&a.id).unwrap().restart_count;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let got = sup.get(&a.id).unwrap();
    assert_eq!(
        got.state.unwrap().status,
        ContainerStatus::Exited as i32,
        "stays stopped"
    );
    assert_eq!(got.restart_count, count);
    env.restart().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sup = env.sup();
    assert_eq!(status_of(sup, &a.id).await, ContainerStatus::Exited);
    // A start clears the stop: it restarts again.
    sup.start("forever").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sup.get(&a.id).unwrap().restart_count < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sup.get(&a.id).unwrap().restart_count >= 1);
    sup.remove("forever", true).await.unwrap();
    sup.remove("flaky", false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_network_rewrites_hosts_and_resolv_conf_of_a_running_container() {
    let Some(env) = Env::new("update_network") else {
        return;
    };
    let sup = env.sup();
    let mut spec = env.spec(&["sleep", "300"]);
    let net = NetworkSettings {
        mode: "host".into(),
        dns_servers: vec!["10.9.0.1".into()],
        ..Default::default()
    };
    spec.network = Some(net.clone());
    sup.create("", "netup", Some(spec)).await.unwrap();
    sup.start("netup").await.unwrap();

    let mut changed = net.clone();
    changed.network_hosts = vec![HostEntry {
        ip: "10.9.0.7".into(),
        hostname: "database db".into(),
    }];
    changed.dns_servers = vec!["10.9.0.2".into()];
    let c = sup.update_network("netup", Some(changed)).await.unwrap();
    let stored = c.spec.unwrap().network.unwrap();
    assert_eq!(stored.dns_servers, vec!["10.9.0.2".to_string()]);

    let (_tx, input) = exec_channel();
    let start = exec_start("netup", &["cat", "/etc/hosts", "/etc/resolv.conf"]);
    let out = collect(exec::exec(sup, start, input).await.unwrap()).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("10.9.0.7\tdatabase db\n"), "{text}");
    assert!(text.contains("nameserver 10.9.0.2\n"), "{text}");
    assert!(!text.contains("10.9.0.1"), "{text}");

    let mut other_mode = net;
    other_mode.mode = "none".into();
    let err = sup
        .update_network("netup", Some(other_mode))
        .await
        .unwrap_err();
    assert_eq!(
        tonic::Status::from(err).code(),
        tonic::Code::InvalidArgument
    );
    let err = sup.update_network("nosuch", None).await.unwrap_err();
    assert_eq!(
        tonic::Status::from(err).code(),
        tonic::Code::InvalidArgument
    );
    sup.remove("netup", true).await.unwrap();
}

/// A network service that records Activate/Deactivate calls; activation of a container
/// named in `refuse` fails as a taken port does.
mod fake_network {
    use std::sync::{Arc, Mutex};

    use berth_proto::network::v1::{network_server::Network, *};
    use tonic::{Request, Response, Status};

    #[derive(Clone, Default)]
    pub struct Fake {
        pub calls: Arc<Mutex<Vec<String>>>,
        pub refuse: Arc<Mutex<Vec<String>>>,
    }

    impl Fake {
        pub fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    fn no<T>() -> Result<Response<T>, Status> {
        Err(Status::unimplemented("not in the fake"))
    }

    #[tonic::async_trait]
    impl Network for Fake {
        async fn activate_container(
            &self,
            r: Request<ActivateContainerRequest>,
        ) -> Result<Response<Attachment>, Status> {
            let id = r.into_inner().container_id;
            self.calls.lock().unwrap().push(format!("activate {id}"));
            if self.refuse.lock().unwrap().contains(&id) {
                return Err(Status::failed_precondition(
                    "Bind for 0.0.0.0:8080 failed: port is already allocated",
                ));
            }
            Ok(Response::new(Attachment {
                container_id: id,
                netns_path: String::new(),
                dns_servers: vec!["10.9.0.1".into()],
                endpoints: vec![Endpoint {
                    ipv4_address: "10.9.0.2/24".into(),
                    ..Default::default()
                }],
                ports: vec![PortBinding {
                    protocol: "tcp".into(),
                    container_port: 80,
                    host_ip: "0.0.0.0".into(),
                    host_port: 8080,
                }],
                extra_hosts: vec!["10.9.0.3\tdb".into()],
                ..Default::default()
            }))
        }
        async fn deactivate_container(
            &self,
            r: Request<DeactivateContainerRequest>,
        ) -> Result<Response<DeactivateContainerResponse>, Status> {
            let id = r.into_inner().container_id;
            self.calls.lock().unwrap().push(format!("deactivate {id}"));
            Ok(Response::new(DeactivateContainerResponse {}))
        }
        async fn attach_container(
            &self,
            _: Request<AttachContainerRequest>,
        ) -> Result<Response<Attachment>, Status> {
            no()
        }
        async fn detach_container(
            &self,
            _: Request<DetachContainerRequest>,
        ) -> Result<Response<DetachContainerResponse>, Status> {
            no()
        }
        async fn get_attachment(
            &self,
            _: Request<GetAttachmentRequest>,
        ) -> Result<Response<Attachment>, Status> {
            no()
        }
        async fn list_networks(
            &self,
            _: Request<ListNetworksRequest>,
        ) -> Result<Response<ListNetworksResponse>, Status> {
            no()
        }
        async fn get_network(
            &self,
            _: Request<GetNetworkRequest>,
        ) -> Result<Response<NetworkInfo>, Status> {
            no()
        }
        async fn create_network(
            &self,
            _: Request<CreateNetworkRequest>,
        ) -> Result<Response<NetworkInfo>, Status> {
            no()
        }
        async fn remove_network(
            &self,
            _: Request<RemoveNetworkRequest>,
        ) -> Result<Response<RemoveNetworkResponse>, Status> {
            no()
        }
        async fn prune_networks(
            &self,
            _: Request<PruneNetworksRequest>,
        ) -> Result<Response<PruneNetworksResponse>, Status> {
            no()
        }
        async fn connect_container(
            &self,
            _: Request<ConnectContainerRequest>,
        ) -> Result<Response<Attachment>, Status> {
            no()
        }
        async fn disconnect_container(
            &self,
            _: Request<DisconnectContainerRequest>,
        ) -> Result<Response<Attachment>, Status> {
            no()
        }
    }

    /// Serves `fake` on `socket` until the test's runtime ends.
    pub fn serve(fake: Fake, socket: &std::path::Path) {
        let listener = tokio::net::UnixListener::bind(socket).unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(network_server::NetworkServer::new(fake))
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener)),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_is_activated_before_each_run_and_deactivated_after_it() {
    let Some(mut env) = Env::new("network_activation") else {
        return;
    };
    let fake = fake_network::Fake::default();
    let socket = env.dir.path().join("fake-network.sock");
    fake_network::serve(fake.clone(), &socket);
    let mut opts = env.options();
    opts.network = Some(
        berth_proto::network::v1::network_client::NetworkClient::new(berth_common::client::traced(
            berth_common::client::unix_channel(&socket),
        )),
    );
    env.sup = Some(Supervisor::open(opts).unwrap());
    let sup = env.sup();

    // Host network mode: no namespace to join, still activated (cheap) like the others.
    let mut spec = with_policy(
        env.spec(&["sh", "-c", "cat /etc/hosts; sleep 0.3; exit 3"]),
        "on-failure",
        1,
    );
    spec.network = Some(NetworkSettings {
        mode: "host".into(),
        dns_servers: vec!["9.9.9.9".into()],
        ..Default::default()
    });
    let c = sup.create("", "netrun", Some(spec.clone())).await.unwrap();
    let started = sup.start("netrun").await.unwrap();
    let net = started.spec.unwrap().network.unwrap();
    assert_eq!(net.ip_addresses, vec!["10.9.0.2/24"]);
    assert_eq!(net.ports[0].host_port, 8080);
    assert_eq!(net.dns_servers, vec!["9.9.9.9"], "the user's --dns wins");
    let hosts = std::fs::read_to_string(Path::new(&started.bundle_path).join("hosts")).unwrap();
    assert!(
        hosts.contains("10.9.0.3\tdb") && hosts.contains("10.9.0.2\t"),
        "{hosts}"
    );
    // on-failure:1: run, deactivate, activate again, run, deactivate.
    let exit = sup.wait("netrun").await.unwrap();
    assert_eq!(exit.exit_code, 3);
    let id = c.id.clone();
    assert_eq!(
        fake.calls(),
        vec![
            format!("activate {id}"),
            format!("deactivate {id}"),
            format!("activate {id}"),
            format!("deactivate {id}"),
        ]
    );
    let stopped = sup.get("netrun").unwrap().spec.unwrap().network.unwrap();
    assert!(stopped.ip_addresses.is_empty() && stopped.ports.is_empty());

    // A refused activation fails the start with the network's code and message, and no
    // process, cgroup or network is left.
    let other = sup.create("", "refused", Some(spec)).await.unwrap();
    fake.refuse.lock().unwrap().push(other.id.clone());
    let err = sup.start("refused").await.unwrap_err();
    let status: tonic::Status = err.into();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        "Bind for 0.0.0.0:8080 failed: port is already allocated"
    );
    let rec = sup.get("refused").unwrap();
    assert_eq!(rec.state.unwrap().status, ContainerStatus::Created as i32);
    assert!(fake.calls().ends_with(&[
        format!("activate {}", other.id),
        format!("deactivate {}", other.id)
    ]));
    sup.remove("netrun", true).await.unwrap();
    sup.remove("refused", true).await.unwrap();
}
