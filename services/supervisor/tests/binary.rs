//! The real `berth-supervisor` binary over gRPC on its Unix socket: containers survive a
//! kill -9 of the supervisor, and the restarted one still controls them. Skipped (with a
//! message) without root or without `berth-shim` next to the binary / in $BERTH_SHIM.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use berth_proto::supervisor::v1::{
    attach_output, exec_input, supervisor_client::SupervisorClient, ContainerSpec, ContainerStatus,
    CreateContainerRequest, ExecInput, ExecStart, GetContainerRequest, KillContainerRequest,
    ListContainersRequest, PauseContainerRequest, RemoveContainerRequest, RenameContainerRequest,
    RestartContainerRequest, RestartPolicy, RootFs, StartContainerRequest, StopContainerRequest,
    TopContainerRequest, UnpauseContainerRequest, WaitContainerRequest,
};
use tonic::{transport::Channel, Code};

fn shim_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BERTH_SHIM") {
        return Some(PathBuf::from(p));
    }
    let p = Path::new(env!("CARGO_BIN_EXE_berth-supervisor")).with_file_name("berth-shim");
    p.exists().then_some(p)
}

struct Daemon {
    dir: tempfile::TempDir,
    instance: String,
    shim: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/supervisor.sock")
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new(env!("CARGO_BIN_EXE_berth-supervisor"))
            .env("BERTH_ROOT", self.dir.path().join("root"))
            .env("BERTH_RUN", self.dir.path().join("run"))
            .env("BERTH_INSTANCE", &self.instance)
            .env("BERTH_SHIM", &self.shim)
            .env(
                "BERTH_LOG_INGEST_SOCKET",
                self.dir.path().join("no-router.sock"),
            )
            .env_remove("BERTH_SUPERVISOR_SOCKET")
            .stdin(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("supervisor.log"))
                    .unwrap(),
            ))
            .spawn()
            .expect("spawn berth-supervisor");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        // Connect, not just look for the file: it exists a moment before the listen.
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            assert!(
                Instant::now() < deadline,
                "supervisor socket never answered"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn client(&self) -> SupervisorClient<Channel> {
        SupervisorClient::new(berth_common::client::unix_channel(self.socket()))
    }
}

fn spec_in(dir: &Path, name: &str, cmd: &[&str]) -> ContainerSpec {
    let upper = dir.join(format!("{name}/upper"));
    let work = dir.join(format!("{name}/work"));
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    ContainerSpec {
        image: "busybox".into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        rootfs: Some(RootFs {
            lower_dirs: vec![dir.join("lower").display().to_string()],
            upper_dir: upper.display().to_string(),
            work_dir: work.display().to_string(),
        }),
        ..Default::default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("supervisor.log")).unwrap_or_default();
            eprintln!("--- supervisor log ---\n{log}");
        }
        // Processes and shims of this test only: they are in our instance's cgroups.
        let mut dirs = vec![];
        if let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") {
            for e in rd.flatten() {
                dirs.push(e.path().join(&self.instance));
            }
        }
        for parent in dirs.iter().filter(|d| d.is_dir()) {
            for c in std::fs::read_dir(parent).into_iter().flatten().flatten() {
                let procs =
                    std::fs::read_to_string(c.path().join("cgroup.procs")).unwrap_or_default();
                for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        // Shims whose command line names this test's run dir.
        let run = self.dir.path().display().to_string();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cmdline.contains("berth-shim") && cmdline.contains(&run) {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for parent in dirs.iter().filter(|d| d.is_dir()) {
            loop {
                for c in std::fs::read_dir(parent).into_iter().flatten().flatten() {
                    if c.path().is_dir() {
                        let _ = std::fs::remove_dir(c.path());
                    }
                }
                if std::fs::remove_dir(parent).is_ok() || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn make_rootfs(dir: &Path) {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    for tool in ["sh", "sleep", "echo"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(tool)).unwrap();
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
}

async fn status(client: &mut SupervisorClient<Channel>, id: &str) -> (ContainerStatus, i32, i32) {
    let c = client
        .get_container(GetContainerRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner();
    let s = c.state.unwrap();
    (
        ContainerStatus::try_from(s.status).unwrap(),
        s.pid,
        s.exit_code,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_survive_kill_9_of_the_supervisor() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: needs root");
        return;
    }
    let Some(shim) = shim_binary() else {
        eprintln!("SKIP: no berth-shim (cargo build -p berth-shim, or set BERTH_SHIM)");
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("svb")
        .tempdir_in("/tmp")
        .unwrap();
    make_rootfs(&dir.path().join("lower"));
    let instance = format!("berth-svtest-{}-bin", std::process::id());
    let mut d = Daemon {
        dir,
        instance,
        shim,
        child: None,
    };
    d.spawn();
    let mut client = d.client();

    let dir = d.dir.path().to_path_buf();
    let create = |name: &str, cmd: &[&str]| CreateContainerRequest {
        id: String::new(),
        name: name.into(),
        spec: Some(spec_in(&dir, name, cmd)),
    };
    let a = client
        .create_container(create("long", &["sleep", "1000"]))
        .await
        .unwrap()
        .into_inner();
    let b = client
        .create_container(create("short", &["sh", "-c", "sleep 1; exit 5"]))
        .await
        .unwrap()
        .into_inner();
    let err = client
        .create_container(create("long", &["true"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = client
        .create_container(create("bad/name", &["true"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .get_container(GetContainerRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::NotFound, "no such container: nope")
    );

    let started = client
        .start_container(StartContainerRequest { id: "long".into() })
        .await
        .unwrap()
        .into_inner();
    let pid = started.state.unwrap().pid;
    client
        .start_container(StartContainerRequest { id: b.id.clone() })
        .await
        .unwrap();
    let err = client
        .kill_container(KillContainerRequest {
            id: "long".into(),
            signal: "NOPE".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "invalid signal: NOPE")
    );
    let err = client
        .remove_container(RemoveContainerRequest {
            id: "long".into(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    // kill -9 the supervisor; `short` exits while it is down.
    d.kill9();
    tokio::time::sleep(Duration::from_millis(1800)).await;
    d.spawn();
    let mut client = d.client();

    assert_eq!(
        status(&mut client, "long").await,
        (ContainerStatus::Running, pid, 0)
    );
    let exit = tokio::time::timeout(
        Duration::from_secs(10),
        client.wait_container(WaitContainerRequest { id: "short".into() }),
    )
    .await
    .unwrap()
    .unwrap()
    .into_inner();
    assert_eq!(exit.exit_code, 5);
    let running = client
        .list_containers(ListContainersRequest { all: false })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(running.containers.len(), 1);
    assert_eq!(running.containers[0].id, a.id);

    // The restarted supervisor still controls it.
    let stopped = client
        .stop_container(StopContainerRequest {
            id: a.id.clone(),
            timeout_seconds: Some(1),
            signal: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stopped.state.unwrap().exit_code, 137);
    assert_eq!(status(&mut client, "long").await.0, ContainerStatus::Exited);

    // A start failure carries the exit code for the CLI.
    client
        .create_container(create("missing", &["/no/such/thing"]))
        .await
        .unwrap();
    let err = client
        .start_container(StartContainerRequest {
            id: "missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        berth_common::status::exit_code_of(&err),
        Some(127),
        "{}",
        err.message()
    );

    for id in ["long", "short", "missing"] {
        client
            .remove_container(RemoveContainerRequest {
                id: id.into(),
                force: true,
            })
            .await
            .unwrap();
    }
    let all = client
        .list_containers(ListContainersRequest { all: true })
        .await
        .unwrap()
        .into_inner();
    assert!(all.containers.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_pause_top_rename_restart_over_grpc() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP: needs root");
        return;
    }
    let Some(shim) = shim_binary() else {
        eprintln!("SKIP: no berth-shim (cargo build -p berth-shim, or set BERTH_SHIM)");
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("svb")
        .tempdir_in("/tmp")
        .unwrap();
    make_rootfs(&dir.path().join("lower"));
    let instance = format!("berth-svtest-{}-bin2", std::process::id());
    let mut d = Daemon {
        dir,
        instance,
        shim,
        child: None,
    };
    d.spawn();
    let mut client = d.client();
    let dir = d.dir.path().to_path_buf();

    let mut spec = spec_in(&dir, "svc", &["sleep", "1000"]);
    spec.restart_policy = Some(RestartPolicy {
        name: "nope".into(),
        maximum_retry_count: 0,
    });
    let err = client
        .create_container(CreateContainerRequest {
            id: String::new(),
            name: "svc".into(),
            spec: Some(spec.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "invalid restart policy: nope")
    );
    spec.restart_policy = None;
    let c = client
        .create_container(CreateContainerRequest {
            id: String::new(),
            name: "svc".into(),
            spec: Some(spec),
        })
        .await
        .unwrap()
        .into_inner();
    let err = client
        .pause_container(PauseContainerRequest { id: "svc".into() })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message().to_string()),
        (
            Code::FailedPrecondition,
            format!("container {} is not running", c.id)
        )
    );
    client
        .start_container(StartContainerRequest { id: "svc".into() })
        .await
        .unwrap();

    // Exec over the bidi stream.
    let first = ExecInput {
        input: Some(exec_input::Input::Start(ExecStart {
            id: "svc".into(),
            args: vec!["sh".into(), "-c".into(), "echo hi; exit 7".into()],
            ..Default::default()
        })),
    };
    let mut out = client
        .exec(tokio_stream::iter(vec![first]))
        .await
        .unwrap()
        .into_inner();
    let (mut stdout, mut exit) = (Vec::new(), None);
    while let Some(msg) = out.message().await.unwrap() {
        match msg.output {
            Some(attach_output::Output::Stdout(b)) => stdout.extend(b),
            Some(attach_output::Output::Exit(e)) => exit = Some(e.exit_code),
            _ => {}
        }
    }
    assert_eq!((stdout.as_slice(), exit), (&b"hi\n"[..], Some(7)));

    let top = client
        .top_container(TopContainerRequest { id: "svc".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        top.titles,
        ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    );
    assert!(top.processes.iter().any(|p| p.fields[7] == "sleep 1000"));

    let paused = client
        .pause_container(PauseContainerRequest { id: "svc".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paused.state.unwrap().status, ContainerStatus::Paused as i32);
    client
        .unpause_container(UnpauseContainerRequest { id: "svc".into() })
        .await
        .unwrap();
    let err = client
        .unpause_container(UnpauseContainerRequest { id: "svc".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);

    let renamed = client
        .rename_container(RenameContainerRequest {
            id: "svc".into(),
            new_name: "svc2".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (renamed.id.as_str(), renamed.name.as_str()),
        (c.id.as_str(), "svc2")
    );
    let restarted = client
        .restart_container(RestartContainerRequest {
            id: "svc2".into(),
            timeout_seconds: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        restarted.state.unwrap().status,
        ContainerStatus::Running as i32
    );
    client
        .remove_container(RemoveContainerRequest {
            id: "svc2".into(),
            force: true,
        })
        .await
        .unwrap();
}
