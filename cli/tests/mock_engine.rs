//! Drives the `berth` binary against a small in-process mock of the engine's gRPC API:
//! output streaming, exit codes, error mapping, tables, inspect, logs and uploads.
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use berth_proto::engine::v1::engine_server::{Engine, EngineServer};
use berth_proto::engine::v1::*;
use berth_proto::image::v1 as img;
use berth_proto::logs::v1::{LogEntry, LogStream};
use berth_proto::network::v1 as net;
use berth_proto::supervisor::v1 as sup;
use berth_proto::volume::v1 as vol;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

static KILLS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Default)]
struct Mock {
    uploaded: Arc<AtomicUsize>,
}

fn container() -> sup::Container {
    sup::Container {
        id: "4a7f7eebae0f63178aff7eb0aa39cd3f0627a203ab2df258c1a00b456cf20063".into(),
        name: "web".into(),
        created: "2020-01-01T00:00:00Z".into(),
        spec: Some(sup::ContainerSpec {
            image: "busybox".into(),
            image_id: "sha256:beef".into(),
            cmd: vec!["sleep".into(), "1000".into()],
            ..Default::default()
        }),
        state: Some(sup::ContainerState {
            status: sup::ContainerStatus::Running as i32,
            pid: 99,
            started_at: "2020-01-01T00:00:01Z".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn unimpl<T>() -> Result<T, Status> {
    Err(Status::unimplemented("not in the mock"))
}

#[tonic::async_trait]
impl Engine for Mock {
    async fn version(
        &self,
        _: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: "9.9.9".into(),
            api_version: "1".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            kernel_version: "6.1".into(),
        }))
    }
    async fn create_container(
        &self,
        r: Request<CreateContainerRequest>,
    ) -> Result<Response<sup::Container>, Status> {
        let r = r.into_inner();
        if r.name == "taken" {
            return Err(Status::already_exists(
                "the container name \"taken\" is already in use",
            ));
        }
        Ok(Response::new(sup::Container {
            id: format!("id-of-{}", r.image),
            ..Default::default()
        }))
    }
    type RunContainerStream = Out<RunOutput>;
    async fn run_container(
        &self,
        r: Request<Streaming<RunInput>>,
    ) -> Result<Response<Self::RunContainerStream>, Status> {
        let mut input = r.into_inner();
        let Some(Ok(RunInput {
            input: Some(run_input::Input::Start(start)),
        })) = input.next().await
        else {
            return Err(Status::invalid_argument("first message must be start"));
        };
        let create = start.create.unwrap_or_default();
        if create.image == "nosuch" {
            return Err(berth_common::status::with_exit_code(
                "exec: \"nosuch\": executable file not found in $PATH",
                127,
            ));
        }
        if create.image == "missing" {
            return Err(Status::not_found("no such image: missing"));
        }
        let (tx, rx) = mpsc::channel(16);
        let id = "c0ffee".to_string();
        tokio::spawn(async move {
            let out = |o| Ok(RunOutput { output: Some(o) });
            let _ = tx.send(out(run_output::Output::ContainerId(id))).await;
            if start.detach {
                let _ = tx.send(out(run_output::Output::Detached(true))).await;
                return;
            }
            let cmd = create.cmd.map(|c| c.values).unwrap_or_default();
            match cmd.first().map(String::as_str) {
                Some("cat") => {
                    while let Some(Ok(msg)) = input.next().await {
                        match msg.input {
                            Some(run_input::Input::Stdin(b)) => {
                                let _ = tx.send(out(run_output::Output::Stdout(b))).await;
                            }
                            Some(run_input::Input::CloseStdin(_)) => break,
                            _ => {}
                        }
                    }
                }
                Some("wait-signal") => {
                    let _ = tx
                        .send(out(run_output::Output::Stdout(b"ready\n".to_vec())))
                        .await;
                    let mut waited = 0;
                    let sig = loop {
                        if let Some(sig) = KILLS.lock().unwrap().pop() {
                            break sig;
                        }
                        waited += 1;
                        if waited > 1000 {
                            break "no signal within 10s".to_string();
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    };
                    let _ = tx
                        .send(out(run_output::Output::Stdout(
                            format!("got {sig}\n").into_bytes(),
                        )))
                        .await;
                    let _ = tx
                        .send(out(run_output::Output::Exit(sup::ExitStatus {
                            exit_code: 130,
                            ..Default::default()
                        })))
                        .await;
                    return;
                }
                Some("env") => {
                    for e in create.env {
                        let _ = tx
                            .send(out(run_output::Output::Stdout(
                                format!("{e}\n").into_bytes(),
                            )))
                            .await;
                    }
                }
                _ => {
                    let _ = tx
                        .send(out(run_output::Output::Stdout(b"hello\n".to_vec())))
                        .await;
                    let _ = tx
                        .send(out(run_output::Output::Stderr(b"oops\n".to_vec())))
                        .await;
                }
            }
            let code = if cmd.first().map(String::as_str) == Some("exit") {
                cmd[1].parse().unwrap()
            } else {
                0
            };
            let _ = tx
                .send(out(run_output::Output::Exit(sup::ExitStatus {
                    exit_code: code,
                    ..Default::default()
                })))
                .await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
    async fn start_container(
        &self,
        _: Request<ContainerRef>,
    ) -> Result<Response<sup::Container>, Status> {
        unimpl()
    }
    type AttachContainerStream = Out<sup::AttachOutput>;
    async fn attach_container(
        &self,
        _: Request<Streaming<sup::AttachInput>>,
    ) -> Result<Response<Self::AttachContainerStream>, Status> {
        unimpl()
    }
    async fn stop_container(
        &self,
        r: Request<sup::StopContainerRequest>,
    ) -> Result<Response<sup::Container>, Status> {
        let r = r.into_inner();
        if r.id == "nosuch" {
            return Err(Status::not_found("no such container: nosuch"));
        }
        Ok(Response::new(container()))
    }
    async fn kill_container(
        &self,
        r: Request<sup::KillContainerRequest>,
    ) -> Result<Response<sup::Container>, Status> {
        let r = r.into_inner();
        KILLS.lock().unwrap().push(format!("{} {}", r.id, r.signal));
        Ok(Response::new(container()))
    }
    async fn wait_container(
        &self,
        _: Request<ContainerRef>,
    ) -> Result<Response<sup::ExitStatus>, Status> {
        Ok(Response::new(sup::ExitStatus {
            exit_code: 3,
            ..Default::default()
        }))
    }
    async fn remove_container(
        &self,
        _: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        unimpl()
    }
    async fn list_containers(
        &self,
        _: Request<sup::ListContainersRequest>,
    ) -> Result<Response<sup::ListContainersResponse>, Status> {
        Ok(Response::new(sup::ListContainersResponse {
            containers: vec![container()],
        }))
    }
    async fn inspect_container(
        &self,
        r: Request<ContainerRef>,
    ) -> Result<Response<ContainerDetails>, Status> {
        if r.into_inner().id != "web" {
            return Err(Status::not_found("no such container: nosuch"));
        }
        Ok(Response::new(ContainerDetails {
            container: Some(container()),
            log_path: "/x.log".into(),
            network: None,
        }))
    }
    async fn prune_containers(
        &self,
        _: Request<PruneContainersRequest>,
    ) -> Result<Response<PruneContainersResponse>, Status> {
        Ok(Response::new(PruneContainersResponse {
            deleted: vec!["aaa".into()],
        }))
    }
    type ContainerLogsStream = Out<LogEntry>;
    async fn container_logs(
        &self,
        r: Request<ContainerLogsRequest>,
    ) -> Result<Response<Self::ContainerLogsStream>, Status> {
        let r = r.into_inner();
        let entries = vec![
            Ok(LogEntry {
                stream: LogStream::Stdout as i32,
                line: format!("tail={}\n", r.tail).into_bytes(),
                time_unix_nano: 1_700_000_000_000_000_001,
            }),
            Ok(LogEntry {
                stream: LogStream::Stderr as i32,
                line: b"err line\n".to_vec(),
                time_unix_nano: 1_700_000_000_000_000_002,
            }),
        ];
        Ok(Response::new(Box::pin(tokio_stream::iter(entries))))
    }
    async fn list_images(
        &self,
        _: Request<img::ListImagesRequest>,
    ) -> Result<Response<img::ListImagesResponse>, Status> {
        Ok(Response::new(img::ListImagesResponse {
            images: vec![img::Image {
                id: "sha256:0123456789abcdef".into(),
                repo_tags: vec!["busybox:latest".into()],
                created: "2020-01-01T00:00:00Z".into(),
                size: 4_261_234,
                ..Default::default()
            }],
        }))
    }
    async fn inspect_image(
        &self,
        _: Request<img::GetImageRequest>,
    ) -> Result<Response<img::Image>, Status> {
        unimpl()
    }
    async fn import_image(
        &self,
        _: Request<Streaming<img::UploadChunk>>,
    ) -> Result<Response<img::ImportImageResponse>, Status> {
        unimpl()
    }
    async fn load_images(
        &self,
        r: Request<Streaming<img::UploadChunk>>,
    ) -> Result<Response<img::LoadImagesResponse>, Status> {
        let mut s = r.into_inner();
        let mut total = 0;
        let mut chunks = 0;
        while let Some(c) = s.next().await {
            if let Some(img::upload_chunk::Part::Data(d)) = c?.part {
                assert!(d.len() <= 64 * 1024);
                total += d.len();
                chunks += 1;
            }
        }
        self.uploaded.store(total, Ordering::SeqCst);
        Ok(Response::new(img::LoadImagesResponse {
            images: vec![
                img::Image {
                    id: "sha256:aa".into(),
                    repo_tags: vec![format!("loaded:{total}-{chunks}")],
                    ..Default::default()
                },
                img::Image {
                    id: "sha256:bb".into(),
                    ..Default::default()
                },
            ],
        }))
    }
    async fn tag_image(
        &self,
        _: Request<img::TagImageRequest>,
    ) -> Result<Response<img::TagImageResponse>, Status> {
        unimpl()
    }
    async fn remove_image(
        &self,
        _: Request<img::RemoveImageRequest>,
    ) -> Result<Response<img::RemoveImageResponse>, Status> {
        unimpl()
    }
    async fn create_volume(
        &self,
        _: Request<vol::CreateVolumeRequest>,
    ) -> Result<Response<vol::Volume>, Status> {
        unimpl()
    }
    async fn inspect_volume(
        &self,
        _: Request<vol::GetVolumeRequest>,
    ) -> Result<Response<vol::Volume>, Status> {
        unimpl()
    }
    async fn list_volumes(
        &self,
        _: Request<vol::ListVolumesRequest>,
    ) -> Result<Response<vol::ListVolumesResponse>, Status> {
        Ok(Response::new(vol::ListVolumesResponse {
            volumes: vec![vol::Volume {
                name: "data".into(),
                driver: "local".into(),
                ..Default::default()
            }],
        }))
    }
    async fn remove_volume(
        &self,
        _: Request<vol::RemoveVolumeRequest>,
    ) -> Result<Response<vol::RemoveVolumeResponse>, Status> {
        unimpl()
    }
    async fn list_networks(
        &self,
        _: Request<net::ListNetworksRequest>,
    ) -> Result<Response<net::ListNetworksResponse>, Status> {
        unimpl()
    }
}

fn socket() -> &'static Path {
    static SOCKET: OnceLock<PathBuf> = OnceLock::new();
    SOCKET.get_or_init(|| {
        // Inside the build directory, which cargo owns: a static never drops to clean up.
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("berth-cli-mock-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::UnixListener::from_std(listener).unwrap();
                tonic::transport::Server::builder()
                    .add_service(EngineServer::new(Mock::default()))
                    .serve_with_incoming(UnixListenerStream::new(listener))
                    .await
                    .unwrap();
            });
        });
        path
    })
}

fn berth_with(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(args)
        .env_remove("BERTH_HOST")
        .env("BERTH_ENGINE_SOCKET", socket())
        .env("FROM_ENV", "yes")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.map(<[u8]>::to_vec);
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        if let Some(d) = data {
            let _ = input.write_all(&d);
        }
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn berth(args: &[&str]) -> Output {
    berth_with(args, None)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn run_streams_output_and_exit_code() {
    let out = berth(&["run", "--rm", "busybox", "true"]);
    assert_eq!(text(&out.stdout), "hello\n");
    assert_eq!(text(&out.stderr), "oops\n");
    assert_eq!(out.status.code(), Some(0));
    let out = berth(&["run", "busybox", "exit", "42"]);
    assert_eq!(out.status.code(), Some(42));
}

#[test]
fn run_detached_prints_the_id() {
    let out = berth(&["run", "-d", "busybox"]);
    assert_eq!(text(&out.stdout), "c0ffee\n");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn run_forwards_stdin() {
    let out = berth_with(&["run", "-i", "busybox", "cat"], Some(b"piped input\n"));
    assert_eq!(text(&out.stdout), "piped input\n");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn run_resolves_env() {
    let out = berth(&[
        "run",
        "-e",
        "A=1",
        "-e",
        "FROM_ENV",
        "-e",
        "UNSET_VAR_X",
        "busybox",
        "env",
    ]);
    assert_eq!(text(&out.stdout), "A=1\nFROM_ENV=yes\n");
}

#[test]
fn run_errors_map_to_exit_codes() {
    let out = berth(&["run", "nosuch"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        text(&out.stderr).starts_with("berth: Error response from daemon: exec: \"nosuch\""),
        "{}",
        text(&out.stderr)
    );
    let out = berth(&["run", "missing"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        text(&out.stderr),
        "berth: Error response from daemon: no such image: missing\n"
    );
    let out = berth(&["create", "--name", "taken", "busybox"]);
    assert_eq!(out.status.code(), Some(125));
    let out = berth(&["run", "--nosuchflag", "busybox"]);
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn unreachable_engine() {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["-H", "unix:///nonexistent/engine.sock", "ps"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr)
        .starts_with("Cannot connect to the berth engine at unix:///nonexistent/engine.sock."));
}

#[test]
fn ps_table() {
    let out = berth(&["ps"]);
    let s = text(&out.stdout);
    let lines: Vec<&str> = s.lines().collect();
    assert!(
        lines[0].starts_with("CONTAINER ID   IMAGE     COMMAND        CREATED"),
        "{s}"
    );
    assert!(
        lines[1].starts_with("4a7f7eebae0f   busybox   \"sleep 1000\"   "),
        "{s}"
    );
    assert!(
        lines[1].contains(" years ago ") && lines[1].contains("Up ") && lines[1].ends_with("web"),
        "{s}"
    );
    let out = berth(&["ps", "-q", "--no-trunc"]);
    assert_eq!(
        text(&out.stdout),
        "4a7f7eebae0f63178aff7eb0aa39cd3f0627a203ab2df258c1a00b456cf20063\n"
    );
    let out = berth(&["container", "ls", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(text(&out.stdout), "web running\n");
}

#[test]
fn inspect_json_and_template() {
    let out = berth(&["inspect", "web"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["Name"], "/web");
    assert_eq!(v[0]["State"]["Pid"], 99);
    let out = berth(&["inspect", "-f", "{{.State.Status}} {{json .Args}}", "web"]);
    assert_eq!(text(&out.stdout), "running [\"1000\"]\n");
    let out = berth(&["container", "inspect", "nosuch"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(text(&out.stdout), "[]\n");
    assert!(text(&out.stderr).contains("no such container"));
}

#[test]
fn logs_split_streams_and_timestamps() {
    let out = berth(&["logs", "-t", "--tail", "5", "web"]);
    assert_eq!(text(&out.stdout), "2023-11-14T22:13:20.000000001Z tail=5\n");
    assert_eq!(
        text(&out.stderr),
        "2023-11-14T22:13:20.000000002Z err line\n"
    );
    let out = berth(&["logs", "web"]);
    assert_eq!(text(&out.stdout), "tail=-1\n");
}

#[test]
fn load_streams_chunks() {
    let data = vec![1u8; 200_000];
    let out = berth_with(&["load"], Some(&data));
    assert_eq!(
        text(&out.stdout),
        "Loaded image: loaded:200000-4\nLoaded image ID: sha256:bb\n"
    );
}

#[test]
fn stop_wait_and_prune() {
    let out = berth(&["stop", "web", "nosuch"]);
    assert_eq!(text(&out.stdout), "web\n");
    assert_eq!(
        text(&out.stderr),
        "Error response from daemon: no such container: nosuch\n"
    );
    assert_eq!(out.status.code(), Some(125));
    let out = berth(&["wait", "web"]);
    assert_eq!(text(&out.stdout), "3\n");
    let out = berth(&["container", "prune", "-f"]);
    assert_eq!(
        text(&out.stdout),
        "Deleted Containers:\naaa\n\nTotal reclaimed space: 0B\n"
    );
    let out = berth_with(&["container", "prune"], Some(b"n\n"));
    assert!(text(&out.stdout).starts_with("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] "));
    assert!(!text(&out.stdout).contains("Deleted"));
}

#[test]
fn images_and_volumes() {
    let out = berth(&["images"]);
    let s = text(&out.stdout);
    assert!(s.starts_with("REPOSITORY   TAG       IMAGE ID       CREATED       SIZE\nbusybox      latest    0123456789ab   "), "{s}");
    assert!(s.trim_end().ends_with("4.26MB"), "{s}");
    let out = berth(&["volume", "ls"]);
    assert_eq!(text(&out.stdout), "DRIVER    VOLUME NAME\nlocal     data\n");
    let out = berth(&["version"]);
    assert!(text(&out.stdout).contains("Version:          9.9.9"));
}

#[test]
fn run_proxies_signals() {
    use std::io::{BufRead, BufReader, Read};
    socket();
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["run", "busybox", "wait-signal"])
        .env("BERTH_ENGINE_SOCKET", socket())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got c0ffee SIGINT\n");
    assert_eq!(child.wait().unwrap().code(), Some(130));
}

#[test]
fn local_input_errors_name_the_input() {
    let out = berth(&["import", "/nonexistent/rootfs.tar"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("/nonexistent/rootfs.tar"),
        "{}",
        text(&out.stderr)
    );
    let file = std::env::temp_dir().join(format!("berth-cli-{}.env", std::process::id()));
    std::fs::write(&file, "# ok\nA=1\nBAD KEY=2\n").unwrap();
    let out = berth(&[
        "run",
        "--env-file",
        file.to_str().unwrap(),
        "busybox",
        "env",
    ]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(
        err.starts_with(&format!("berth: {}:3: ", file.display())),
        "{err}"
    );
    let out = berth(&["ps", "--filter", "color=red"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(text(&out.stderr), "invalid filter 'color'\n");
}
