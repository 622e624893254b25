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
/// Calls of the lifecycle RPCs as "<rpc> <args>", for the argument-mapping tests.
static CALLS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn called(call: &str) -> bool {
    CALLS.lock().unwrap().iter().any(|c| c == call)
}

fn not_found_unless(id: &str) -> Result<(), Status> {
    if id == "nosuch" {
        return Err(Status::not_found("no such container: nosuch"));
    }
    Ok(())
}

/// Echoes stdin chunks until close-stdin (when `echo`), then `ends`.
fn echo_then<I, F>(
    mut input: Streaming<I>,
    echo: bool,
    stdin_of: F,
    first: Vec<u8>,
    ends: sup::attach_output::Output,
) -> Out<sup::AttachOutput>
where
    I: Send + 'static,
    F: Fn(I) -> Option<Option<Vec<u8>>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let out = |o| Ok(sup::AttachOutput { output: Some(o) });
        let _ = tx
            .send(out(sup::attach_output::Output::Stdout(first)))
            .await;
        if echo {
            while let Some(Ok(msg)) = input.next().await {
                match stdin_of(msg) {
                    Some(Some(b)) => {
                        let _ = tx.send(out(sup::attach_output::Output::Stdout(b))).await;
                    }
                    Some(None) => break,
                    None => {}
                }
            }
        }
        let _ = tx.send(out(ends)).await;
    });
    Box::pin(ReceiverStream::new(rx))
}

/// The limits a call got, for the argument-mapping tests.
fn limits_call(r: &sup::Resources) -> String {
    let devices = |l: &[sup::ThrottleDevice]| {
        l.iter()
            .map(|d| format!("{}:{}", d.path, d.rate))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "mem={} swap={} res={} oom={} swappiness={:?} nano={} period={} quota={} shares={} cpus={} mems={} weight={} rbps={} wbps={} riops={} wiops={} pids={}",
        r.memory,
        r.memory_swap,
        r.memory_reservation,
        r.oom_kill_disable,
        r.memory_swappiness,
        r.nano_cpus,
        r.cpu_period,
        r.cpu_quota,
        r.cpu_shares,
        r.cpuset_cpus,
        r.cpuset_mems,
        r.blkio_weight,
        devices(&r.device_read_bps),
        devices(&r.device_write_bps),
        devices(&r.device_read_iops),
        devices(&r.device_write_iops),
        r.pids_limit
    )
}

/// What a kernel without the blkio weight controller says.
fn limit_warnings(r: Option<&sup::Resources>) -> Vec<String> {
    if r.is_some_and(|r| r.blkio_weight > 0) {
        vec!["Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.".into()]
    } else {
        Vec::new()
    }
}

fn exit(code: i32) -> sup::attach_output::Output {
    sup::attach_output::Output::Exit(sup::ExitStatus {
        exit_code: code,
        ..Default::default()
    })
}

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

fn front_network() -> net::NetworkInfo {
    net::NetworkInfo {
        id: "f1f2f3f4f5f6f7f8f9f0a1a2a3a4a5a6".into(),
        name: "front".into(),
        driver: "bridge".into(),
        scope: "local".into(),
        created: "2024-01-01T00:00:00Z".into(),
        subnet: "10.89.0.0/24".into(),
        gateway: "10.89.0.1".into(),
        ..Default::default()
    }
}

fn bridge_network() -> net::NetworkInfo {
    net::NetworkInfo {
        id: "b1b2b3b4b5b6b7b8b9b0".into(),
        name: "bridge".into(),
        driver: "bridge".into(),
        scope: "local".into(),
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
        let policy = r.restart_policy.unwrap_or_default();
        CALLS.lock().unwrap().push(format!(
            "create {} restart={}:{} init={}",
            r.name, policy.name, policy.maximum_retry_count, r.init
        ));
        if let Some(limits) = &r.resources {
            CALLS
                .lock()
                .unwrap()
                .push(format!("create limits {}", limits_call(limits)));
        }
        Ok(Response::new(sup::Container {
            id: format!("id-of-{}", r.image),
            warnings: limit_warnings(r.resources.as_ref()),
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
        CALLS
            .lock()
            .unwrap()
            .push(format!("run {} keys={}", create.image, start.detach_keys));
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
            for w in limit_warnings(create.resources.as_ref()) {
                let _ = tx.send(out(run_output::Output::Warning(w))).await;
            }
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
    /// Says how it was called, echoes stdin when attached to it, then exits 5; detach keys
    /// "ctrl-x" make it report a detach instead.
    async fn attach_container(
        &self,
        r: Request<Streaming<sup::AttachInput>>,
    ) -> Result<Response<Self::AttachContainerStream>, Status> {
        let mut input = r.into_inner();
        let Some(Ok(sup::AttachInput {
            input: Some(sup::attach_input::Input::Start(start)),
        })) = input.next().await
        else {
            return Err(Status::invalid_argument("first message must be start"));
        };
        let first = format!(
            "attach {} start={} stdin={} keys={}\n",
            start.id, start.start, start.stdin, start.detach_keys
        );
        let ends = if start.detach_keys == "ctrl-x" {
            sup::attach_output::Output::Detached(true)
        } else {
            exit(5)
        };
        Ok(Response::new(echo_then(
            input,
            start.stdin,
            |m: sup::AttachInput| match m.input {
                Some(sup::attach_input::Input::Stdin(b)) => Some(Some(b)),
                Some(sup::attach_input::Input::CloseStdin(_)) => Some(None),
                _ => None,
            },
            first.into_bytes(),
            ends,
        )))
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
        let name = r.into_inner().id;
        let mut c = container();
        let state = c.state.as_mut().unwrap();
        match name.as_str() {
            "web" => {}
            // -i: keeps stdin open.
            "iweb" => c.spec.as_mut().unwrap().open_stdin = true,
            "paused" => state.status = sup::ContainerStatus::Paused as i32,
            "stopped" => state.status = sup::ContainerStatus::Exited as i32,
            "restarting" => {
                state.status = sup::ContainerStatus::Restarting as i32;
                state.exit_code = 1;
                c.restart_count = 2;
                let spec = c.spec.as_mut().unwrap();
                spec.restart_policy = Some(sup::RestartPolicy {
                    name: "on-failure".into(),
                    maximum_retry_count: 5,
                });
                spec.init = true;
            }
            "ported" => {}
            _ => return Err(Status::not_found("no such container: nosuch")),
        }
        let network = (name == "ported").then(|| net::Attachment {
            mode: "bridge".into(),
            ports: vec![
                net::PortBinding {
                    protocol: "tcp".into(),
                    container_port: 80,
                    host_ip: String::new(),
                    host_port: 8080,
                },
                net::PortBinding {
                    protocol: "udp".into(),
                    container_port: 53,
                    host_ip: "127.0.0.1".into(),
                    host_port: 5353,
                },
            ],
            ..Default::default()
        });
        if name != "web" {
            c.name = name.clone();
            c.id = format!("id-of-{name}");
        }
        Ok(Response::new(ContainerDetails {
            container: Some(c),
            log_path: "/x.log".into(),
            network,
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
    /// Images named `pullme…` are not here (so `run` pulls them); the rest are.
    async fn inspect_image(
        &self,
        r: Request<img::GetImageRequest>,
    ) -> Result<Response<img::Image>, Status> {
        let reference = r.into_inner().reference;
        CALLS
            .lock()
            .unwrap()
            .push(format!("inspect_image {reference}"));
        if reference.starts_with("pullme") {
            return Err(Status::not_found(format!("no such image: {reference}")));
        }
        Ok(Response::new(img::Image {
            id: "sha256:0123456789abcdef".into(),
            ..Default::default()
        }))
    }
    type PullImageStream = Out<img::PullProgress>;
    /// Two layers; `pullme-nowhere` is not in the registry. Records the credentials sent.
    async fn pull_image(
        &self,
        r: Request<img::PullImageRequest>,
    ) -> Result<Response<Self::PullImageStream>, Status> {
        let r = r.into_inner();
        let auth = r.auth.map(|a| format!("{}:{}", a.username, a.password));
        CALLS.lock().unwrap().push(format!(
            "pull_image {} auth={} platform={}",
            r.reference,
            auth.unwrap_or_default(),
            r.platform
        ));
        if r.reference.contains("nowhere") {
            return Err(Status::not_found(format!(
                "manifest for {} not found: manifest unknown",
                r.reference
            )));
        }
        let p = |id: &str, status: &str, current: i64, total: i64| {
            Ok(img::PullProgress {
                id: id.into(),
                status: status.into(),
                current,
                total,
                image: None,
            })
        };
        let msgs = vec![
            p("aaa", "Pulling fs layer", 0, 0),
            p("bbb", "Pulling fs layer", 0, 0),
            p("aaa", "Downloading", 100, 1000),
            p("aaa", "Downloading", 900, 1000),
            p("aaa", "Pull complete", 0, 0),
            p("bbb", "Already exists", 0, 0),
            p("", "Digest: sha256:feed", 0, 0),
            p(
                "",
                "Status: Downloaded newer image for busybox:latest",
                0,
                0,
            ),
        ];
        Ok(Response::new(Box::pin(tokio_stream::iter(msgs))))
    }
    type PushImageStream = Out<img::PushProgress>;
    async fn push_image(
        &self,
        r: Request<img::PushImageRequest>,
    ) -> Result<Response<Self::PushImageStream>, Status> {
        let r = r.into_inner();
        CALLS
            .lock()
            .unwrap()
            .push(format!("push_image {}", r.reference));
        let p = |id: &str, status: &str, digest: &str| {
            Ok(img::PushProgress {
                id: id.into(),
                status: status.into(),
                current: 0,
                total: 0,
                digest: digest.into(),
            })
        };
        let msgs = vec![
            p("aaa", "Preparing", ""),
            p("aaa", "Pushing", ""),
            p("aaa", "Pushed", ""),
            p("", "1: digest: sha256:feed size: 527", "sha256:feed"),
        ];
        Ok(Response::new(Box::pin(tokio_stream::iter(msgs))))
    }
    /// Accepts user `u` with password `right`.
    async fn login(
        &self,
        r: Request<img::CheckRegistryAuthRequest>,
    ) -> Result<Response<img::CheckRegistryAuthResponse>, Status> {
        let r = r.into_inner();
        let auth = r.auth.unwrap_or_default();
        CALLS
            .lock()
            .unwrap()
            .push(format!("login {} {}", r.registry, auth.username));
        if auth.username == "u" && auth.password == "right" {
            Ok(Response::new(img::CheckRegistryAuthResponse {
                status: "Login Succeeded".into(),
            }))
        } else {
            Err(Status::unauthenticated(format!(
                "login attempt to {} failed with status: 401 Unauthorized",
                r.registry
            )))
        }
    }
    type SaveImagesStream = Out<img::SaveChunk>;
    async fn save_images(
        &self,
        r: Request<img::SaveImagesRequest>,
    ) -> Result<Response<Self::SaveImagesStream>, Status> {
        let refs = r.into_inner().references;
        if refs.iter().any(|r| r == "nosuch") {
            return Err(Status::not_found("No such image: nosuch:latest"));
        }
        let chunks = vec![
            Ok(img::SaveChunk {
                data: refs.join(",").into_bytes(),
            }),
            Ok(img::SaveChunk {
                data: b"-tar".to_vec(),
            }),
        ];
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
    async fn image_history(
        &self,
        r: Request<img::GetImageRequest>,
    ) -> Result<Response<img::ImageHistoryResponse>, Status> {
        CALLS
            .lock()
            .unwrap()
            .push(format!("image_history {}", r.into_inner().reference));
        let e = |id: &str, by: &str, size: i64, comment: &str| img::HistoryEntry {
            id: id.into(),
            created: "2020-01-01T00:00:00Z".into(),
            created_by: by.into(),
            size,
            comment: comment.into(),
            empty_layer: false,
        };
        Ok(Response::new(img::ImageHistoryResponse {
            entries: vec![
                e(
                    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                    "/bin/sh -c #(nop)\tCMD [\"sh\"] and a long tail to be cut off",
                    0,
                    "",
                ),
                e("<missing>", "berth import", 4_260_000, "Imported from -"),
            ],
        }))
    }
    async fn prune_images(
        &self,
        r: Request<img::PruneImagesRequest>,
    ) -> Result<Response<img::PruneImagesResponse>, Status> {
        let all = r.into_inner().all;
        CALLS.lock().unwrap().push(format!("prune_images {all}"));
        Ok(Response::new(img::PruneImagesResponse {
            untagged: if all { vec!["a:1".into()] } else { vec![] },
            deleted: vec!["sha256:aa".into(), "sha256:l1".into()],
            space_reclaimed: 1_234_567,
        }))
    }
    async fn commit_container(
        &self,
        r: Request<CommitContainerRequest>,
    ) -> Result<Response<img::Image>, Status> {
        let r = r.into_inner();
        CALLS.lock().unwrap().push(format!(
            "commit {} {} {:?} {} {} {}",
            r.container, r.reference, r.changes, r.message, r.author, r.pause
        ));
        Ok(Response::new(img::Image {
            id: "sha256:c0".into(),
            ..Default::default()
        }))
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
    async fn prune_volumes(
        &self,
        _: Request<vol::PruneVolumesRequest>,
    ) -> Result<Response<vol::PruneVolumesResponse>, Status> {
        unimpl()
    }
    type ExecContainerStream = Out<sup::AttachOutput>;
    /// Says how it was called; `cat` echoes stdin, `exit N` exits N, `nosuch` is not found
    /// (127); `-d` ends the stream at once.
    async fn exec_container(
        &self,
        r: Request<Streaming<sup::ExecInput>>,
    ) -> Result<Response<Self::ExecContainerStream>, Status> {
        let mut input = r.into_inner();
        let Some(Ok(sup::ExecInput {
            input: Some(sup::exec_input::Input::Start(start)),
        })) = input.next().await
        else {
            return Err(Status::invalid_argument("first message must be start"));
        };
        not_found_unless(&start.id)?;
        if start.args[0] == "nosuch" {
            return Err(berth_common::status::with_exit_code(
                "exec: \"nosuch\": executable file not found in $PATH",
                127,
            ));
        }
        let first = format!(
            "exec {} [{}] tty={} stdin={} env={} user={} wd={} keys={}\n",
            start.id,
            start.args.join(" "),
            start.tty,
            start.stdin,
            start.env.join(","),
            start.user,
            start.working_dir,
            start.detach_keys
        );
        if start.detach {
            CALLS.lock().unwrap().push(first.trim_end().to_string());
            return Ok(Response::new(Box::pin(tokio_stream::empty())));
        }
        let code = match start.args.as_slice() {
            [e, n] if e == "exit" => n.parse().unwrap(),
            _ => 0,
        };
        Ok(Response::new(echo_then(
            input,
            start.args[0] == "cat",
            |m: sup::ExecInput| match m.input {
                Some(sup::exec_input::Input::Stdin(b)) => Some(Some(b)),
                Some(sup::exec_input::Input::CloseStdin(_)) => Some(None),
                _ => None,
            },
            first.into_bytes(),
            exit(code),
        )))
    }
    async fn pause_container(
        &self,
        r: Request<ContainerRef>,
    ) -> Result<Response<sup::Container>, Status> {
        let id = r.into_inner().id;
        not_found_unless(&id)?;
        CALLS.lock().unwrap().push(format!("pause {id}"));
        Ok(Response::new(container()))
    }
    async fn unpause_container(
        &self,
        r: Request<ContainerRef>,
    ) -> Result<Response<sup::Container>, Status> {
        let id = r.into_inner().id;
        not_found_unless(&id)?;
        CALLS.lock().unwrap().push(format!("unpause {id}"));
        Ok(Response::new(container()))
    }
    async fn top_container(
        &self,
        r: Request<sup::TopContainerRequest>,
    ) -> Result<Response<sup::TopContainerResponse>, Status> {
        not_found_unless(&r.into_inner().id)?;
        let row = |f: &[&str]| sup::TopProcess {
            fields: f.iter().map(|s| s.to_string()).collect(),
        };
        Ok(Response::new(sup::TopContainerResponse {
            titles: vec!["UID".into(), "PID".into(), "CMD".into()],
            processes: vec![
                row(&["root", "4242", "sleep 1000"]),
                row(&["root", "4250", "sh"]),
            ],
        }))
    }
    async fn rename_container(
        &self,
        r: Request<sup::RenameContainerRequest>,
    ) -> Result<Response<sup::Container>, Status> {
        let r = r.into_inner();
        not_found_unless(&r.id)?;
        if r.new_name == "taken" {
            return Err(Status::already_exists(
                "Conflict. The container name \"/taken\" is already in use",
            ));
        }
        CALLS
            .lock()
            .unwrap()
            .push(format!("rename {} {}", r.id, r.new_name));
        Ok(Response::new(container()))
    }
    async fn restart_container(
        &self,
        r: Request<sup::RestartContainerRequest>,
    ) -> Result<Response<sup::Container>, Status> {
        let r = r.into_inner();
        not_found_unless(&r.id)?;
        CALLS
            .lock()
            .unwrap()
            .push(format!("restart {} {:?}", r.id, r.timeout_seconds));
        Ok(Response::new(container()))
    }
    async fn list_networks(
        &self,
        r: Request<net::ListNetworksRequest>,
    ) -> Result<Response<net::ListNetworksResponse>, Status> {
        let mut filters: Vec<String> = r
            .into_inner()
            .filters
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        filters.sort();
        CALLS
            .lock()
            .unwrap()
            .push(format!("network ls {}", filters.join(",")));
        Ok(Response::new(net::ListNetworksResponse {
            networks: vec![front_network(), bridge_network()],
        }))
    }
    async fn inspect_network(
        &self,
        r: Request<net::GetNetworkRequest>,
    ) -> Result<Response<net::NetworkInfo>, Status> {
        match r.into_inner().name.as_str() {
            "front" => Ok(Response::new(front_network())),
            other => Err(Status::not_found(format!("network {other} not found"))),
        }
    }
    async fn create_network(
        &self,
        r: Request<net::CreateNetworkRequest>,
    ) -> Result<Response<net::NetworkInfo>, Status> {
        let r = r.into_inner();
        CALLS.lock().unwrap().push(format!(
            "network create {} {} {} internal={} parent={}",
            r.name,
            r.driver,
            r.subnet,
            r.internal,
            r.options.get("parent").cloned().unwrap_or_default()
        ));
        Ok(Response::new(front_network()))
    }
    async fn remove_network(
        &self,
        _: Request<net::RemoveNetworkRequest>,
    ) -> Result<Response<net::RemoveNetworkResponse>, Status> {
        unimpl()
    }
    async fn prune_networks(
        &self,
        _: Request<net::PruneNetworksRequest>,
    ) -> Result<Response<net::PruneNetworksResponse>, Status> {
        unimpl()
    }
    async fn connect_network(
        &self,
        _: Request<net::ConnectContainerRequest>,
    ) -> Result<Response<net::Attachment>, Status> {
        unimpl()
    }
    async fn disconnect_network(
        &self,
        _: Request<net::DisconnectContainerRequest>,
    ) -> Result<Response<net::Attachment>, Status> {
        unimpl()
    }
    async fn update_container(
        &self,
        r: Request<sup::UpdateResourcesRequest>,
    ) -> Result<Response<sup::Container>, Status> {
        let r = r.into_inner();
        not_found_unless(&r.id)?;
        let limits = r.resources.unwrap_or_default();
        if limits.memory != 0 && limits.memory < 6 << 20 {
            return Err(Status::invalid_argument(
                "Minimum memory limit allowed is 6MB (--memory 1MiB)",
            ));
        }
        CALLS
            .lock()
            .unwrap()
            .push(format!("update {} {}", r.id, limits_call(&limits)));
        Ok(Response::new(sup::Container {
            warnings: limit_warnings(Some(&limits)),
            ..container()
        }))
    }
    type ContainerStatsStream = Out<sup::ContainerStatsSample>;
    /// Two rounds at once for every container asked for (all: "web"), then silence (the
    /// CLI must stop by itself with --no-stream); "ending" ends the stream instead.
    async fn container_stats(
        &self,
        r: Request<sup::ContainerStatsRequest>,
    ) -> Result<Response<Self::ContainerStatsStream>, Status> {
        let r = r.into_inner();
        for id in &r.ids {
            not_found_unless(id)?;
        }
        CALLS
            .lock()
            .unwrap()
            .push(format!("stats {:?} stream={}", r.ids, r.stream));
        let names = if r.ids.is_empty() {
            vec!["web".to_string()]
        } else {
            r.ids.clone()
        };
        let ending = names.iter().any(|n| n == "ending");
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            for round in 0..2u64 {
                for (i, name) in names.iter().enumerate() {
                    let sample = sup::ContainerStatsSample {
                        id: format!("{:0>64}", format!("{name}{i}")),
                        name: name.clone(),
                        cpu_usage_nanos: round * 500_000_000,
                        system_cpu_nanos: 1_000_000_000_000 + round * 2_000_000_000,
                        online_cpus: 2,
                        memory_usage: 3 << 19,
                        memory_limit: 64 << 20,
                        net_rx_bytes: 1234,
                        net_tx_bytes: 648,
                        block_read_bytes: 4_260_000,
                        pids: 3,
                        ..Default::default()
                    };
                    let _ = tx.send(Ok(sample)).await;
                }
            }
            if !ending {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
    async fn system_info(
        &self,
        _: Request<SystemInfoRequest>,
    ) -> Result<Response<SystemInfoResponse>, Status> {
        unimpl()
    }
    async fn disk_usage(
        &self,
        _: Request<DiskUsageRequest>,
    ) -> Result<Response<DiskUsageResponse>, Status> {
        unimpl()
    }
    type EventsStream = Out<EventMessage>;
    async fn events(
        &self,
        _: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
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

#[test]
fn attach_relays_and_returns_the_exit_code() {
    let out = berth(&["attach", "web"]);
    assert_eq!(
        text(&out.stdout),
        "attach 4a7f7eebae0f63178aff7eb0aa39cd3f0627a203ab2df258c1a00b456cf20063 start=false stdin=false keys=\n"
    );
    assert_eq!(out.status.code(), Some(5));
    // stdin only when the container keeps it open, and not with --no-stdin.
    let out = berth_with(&["container", "attach", "iweb"], Some(b"typed\n"));
    assert_eq!(
        text(&out.stdout),
        "attach id-of-iweb start=false stdin=true keys=\ntyped\n"
    );
    assert_eq!(out.status.code(), Some(5));
    let out = berth_with(&["attach", "--no-stdin", "iweb"], Some(b"typed\n"));
    assert_eq!(
        text(&out.stdout),
        "attach id-of-iweb start=false stdin=false keys=\n"
    );
    // Detaching: Docker's message, exit 0.
    let out = berth(&["attach", "--detach-keys", "ctrl-x", "web"]);
    assert_eq!(text(&out.stderr), "read escape sequence\n");
    assert_eq!(out.status.code(), Some(0));
    let out = berth(&["attach", "--detach-keys", "", "web"]);
    assert!(
        text(&out.stdout).ends_with("keys=none\n"),
        "{}",
        text(&out.stdout)
    );
    // Refusals.
    let out = berth(&["attach", "--detach-keys", "bogus", "web"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(text(&out.stderr), "invalid detach keys (bogus)\n");
    let out = berth(&["attach", "stopped"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        text(&out.stderr),
        "You cannot attach to a stopped container, start it first\n"
    );
    let out = berth(&["attach", "paused"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("unpause it first"));
    let out = berth(&["attach", "nosuch"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        text(&out.stderr),
        "Error response from daemon: no such container: nosuch\n"
    );
}

#[test]
fn start_attached_starts_through_the_attach() {
    let out = berth(&["start", "-a", "web"]);
    assert_eq!(
        text(&out.stdout),
        "attach 4a7f7eebae0f63178aff7eb0aa39cd3f0627a203ab2df258c1a00b456cf20063 start=true stdin=false keys=\n"
    );
    assert_eq!(out.status.code(), Some(5));
    let out = berth_with(
        &["start", "-ai", "--detach-keys", "ctrl-p,ctrl-q", "iweb"],
        Some(b"in\n"),
    );
    assert_eq!(
        text(&out.stdout),
        "attach id-of-iweb start=true stdin=true keys=ctrl-p,ctrl-q\nin\n"
    );
    let out = berth(&["start", "-a", "--detach-keys", "ctrl-x", "web"]);
    assert_eq!(text(&out.stderr), "read escape sequence\n");
    assert_eq!(out.status.code(), Some(0));
    let out = berth(&["start", "-a", "web", "iweb"]);
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn exec_maps_flags_and_exit_codes() {
    let out = berth(&[
        "exec", "-e", "A=1", "-e", "FROM_ENV", "-u", "nobody", "-w", "/tmp", "web", "exit", "3",
    ]);
    assert_eq!(
        text(&out.stdout),
        "exec web [exit 3] tty=false stdin=false env=A=1,FROM_ENV=yes user=nobody wd=/tmp keys=\n"
    );
    assert_eq!(out.status.code(), Some(3));
    let out = berth_with(&["container", "exec", "-i", "web", "cat"], Some(b"piped\n"));
    assert_eq!(
        text(&out.stdout),
        "exec web [cat] tty=false stdin=true env= user= wd= keys=\npiped\n"
    );
    assert_eq!(out.status.code(), Some(0));
    // -d: nothing printed, 0.
    let out = berth(&[
        "exec",
        "-d",
        "--detach-keys",
        "ctrl-a,x",
        "web",
        "sleep",
        "9",
    ]);
    assert_eq!(text(&out.stdout), "");
    assert_eq!(out.status.code(), Some(0));
    assert!(called(
        "exec web [sleep 9] tty=false stdin=false env= user= wd= keys=ctrl-a,x"
    ));
    // 126/127 from the status, 125 for other errors.
    let out = berth(&["exec", "web", "nosuch"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out.stderr).contains("executable file not found"));
    let out = berth(&["exec", "nosuch", "ls"]);
    assert_eq!(out.status.code(), Some(125));
    let out = berth(&["exec", "--detach-keys", "ctrl-", "web", "ls"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(text(&out.stderr), "invalid detach keys (ctrl-)\n");
    // -it without a terminal: Docker's refusal.
    let out = berth(&["exec", "-it", "web", "sh"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(text(&out.stderr), "the input device is not a TTY\n");
    let out = berth(&["exec", "web"]);
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn pause_unpause_restart_rename_top() {
    let out = berth(&["pause", "web", "nosuch", "db"]);
    assert_eq!(text(&out.stdout), "web\ndb\n");
    assert_eq!(
        text(&out.stderr),
        "Error response from daemon: no such container: nosuch\n"
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(called("pause web") && called("pause db"));
    let out = berth(&["container", "unpause", "web"]);
    assert_eq!(
        (text(&out.stdout).as_str(), out.status.code()),
        ("web\n", Some(0))
    );
    assert!(called("unpause web"));
    let out = berth(&["restart", "-t", "3", "web"]);
    assert_eq!(
        (text(&out.stdout).as_str(), out.status.code()),
        ("web\n", Some(0))
    );
    assert!(called("restart web Some(3)"));
    let out = berth(&["container", "restart", "web2"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(called("restart web2 None"));
    let out = berth(&["rename", "web", "web-new"]);
    assert_eq!(
        (text(&out.stdout).as_str(), out.status.code()),
        ("", Some(0))
    );
    assert!(called("rename web web-new"));
    let out = berth(&["rename", "web", "taken"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).starts_with("Error response from daemon: Conflict."));
    let out = berth(&["top", "web"]);
    let pad = |s: &str| format!("{s}{}", " ".repeat(20 - s.len()));
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}{}CMD\n{}{}sleep 1000\n{}{}sh\n",
            pad("UID"),
            pad("PID"),
            pad("root"),
            pad("4242"),
            pad("root"),
            pad("4250")
        )
    );
    let out = berth(&["container", "top", "nosuch"]);
    assert_eq!(out.status.code(), Some(125));
}

#[test]
fn restart_policy_init_and_detach_keys_flags() {
    let out = berth(&[
        "create",
        "--name",
        "rp1",
        "--restart",
        "on-failure:4",
        "--init",
        "busybox",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(called("create rp1 restart=on-failure:4 init=true"));
    let out = berth(&["create", "--name", "rp2", "busybox"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(called("create rp2 restart=:0 init=false"));
    let out = berth(&["run", "--restart", "bogus", "busybox"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).starts_with("berth: invalid restart policy 'bogus'"),
        "{}",
        text(&out.stderr)
    );
    let out = berth(&["run", "--rm", "--restart", "on-failure:2", "busybox"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        text(&out.stderr),
        "berth: Conflicting options: --restart and --rm\n"
    );
    let out = berth(&["run", "--detach-keys", "ctrl-", "busybox"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(text(&out.stderr), "berth: invalid detach keys (ctrl-)\n");
    let out = berth(&["run", "--detach-keys", "", "keysimage"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(called("run keysimage keys=none"));
}

#[test]
fn inspect_and_ps_show_restart_state() {
    let out = berth(&["inspect", "restarting"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["State"]["Restarting"], true);
    assert_eq!(v[0]["State"]["Paused"], false);
    assert_eq!(v[0]["RestartCount"], 2);
    assert_eq!(
        v[0]["HostConfig"]["RestartPolicy"],
        serde_json::json!({"Name": "on-failure", "MaximumRetryCount": 5})
    );
    assert_eq!(v[0]["HostConfig"]["Init"], true);
    let out = berth(&["inspect", "paused"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["State"]["Paused"], true);
    assert_eq!(v[0]["State"]["Running"], true);
    assert_eq!(
        v[0]["HostConfig"]["RestartPolicy"],
        serde_json::json!({"Name": "no", "MaximumRetryCount": 0})
    );
    assert_eq!(v[0]["HostConfig"]["Init"], serde_json::Value::Null);
}

/// `exec -it` on a pseudo-terminal: the terminal goes raw while the session runs and is
/// restored when it ends, normally or by SIGTERM.
#[test]
fn raw_terminal_is_always_restored() {
    use nix::sys::termios::{tcgetattr, LocalFlags};
    use std::os::fd::OwnedFd;
    let pty = nix::pty::openpty(None, None).unwrap();
    let slave = pty.slave;
    let canonical = |fd: &OwnedFd| {
        tcgetattr(fd)
            .unwrap()
            .local_flags
            .contains(LocalFlags::ICANON)
    };
    assert!(canonical(&slave));
    let spawn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .env("BERTH_ENGINE_SOCKET", socket())
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Ends by itself.
    let out = spawn(&["exec", "-it", "web", "exit", "3"])
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(canonical(&slave));
    // Killed while raw.
    let mut child = spawn(&["exec", "-it", "web", "cat"]);
    let mut raw = false;
    for _ in 0..500 {
        if !canonical(&slave) {
            raw = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(raw, "the terminal never went raw");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(143));
    assert!(canonical(&slave));
    drop(pty.master);
}

fn berth_config(args: &[&str], config: &Path, stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_berth"));
    cmd.args(args)
        .env_remove("BERTH_HOST")
        .env("BERTH_ENGINE_SOCKET", socket())
        .env("BERTH_CONFIG", config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(d) = stdin {
        use std::io::Write;
        input.write_all(d).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

#[test]
fn pull_prints_status_changes_then_the_reference() {
    let out = berth(&["pull", "busybox"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "aaa: Pulling fs layer\nbbb: Pulling fs layer\naaa: Downloading\naaa: Pull complete\n\
         bbb: Already exists\nDigest: sha256:feed\n\
         Status: Downloaded newer image for busybox:latest\ndocker.io/library/busybox:latest\n"
    );
    let out = berth(&[
        "pull",
        "-q",
        "--platform",
        "linux/arm64",
        "127.0.0.1:5000/bb",
    ]);
    assert_eq!(text(&out.stdout), "127.0.0.1:5000/bb:latest\n");
    assert!(called(
        "pull_image 127.0.0.1:5000/bb auth= platform=linux/arm64"
    ));
    let out = berth(&["pull", "127.0.0.1:5000/nowhere:9"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("127.0.0.1:5000/nowhere:9"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn push_prints_the_digest_line() {
    let out = berth(&["push", "127.0.0.1:5000/bb:1"]);
    assert_eq!(
        text(&out.stdout),
        "aaa: Preparing\naaa: Pushing\naaa: Pushed\n1: digest: sha256:feed size: 527\n"
    );
}

#[test]
fn run_and_create_pull_missing_images() {
    let out = berth(&["run", "--rm", "pullme-img", "true"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");
    let err = text(&out.stderr);
    assert!(
        err.starts_with("Unable to find image 'pullme-img:latest' locally\n"),
        "{err}"
    );
    assert!(err.contains("Digest: sha256:feed\n"), "{err}");
    assert!(called("pull_image pullme-img auth= platform="));
    // Present: no pull.
    let out = berth(&[
        "create", "--name", "pulltest", "--pull", "missing", "busybox",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("Unable to find"));
    // Missing and not in the registry: the pull's error.
    let out = berth(&["run", "--rm", "pullme-nowhere", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr)
        .contains("berth: Error response from daemon: manifest for pullme-nowhere"));
    // never: no inspect, no pull.
    let out = berth(&["create", "--pull", "never", "pullme-never"]);
    assert!(!called("inspect_image pullme-never"));
    assert!(!text(&out.stderr).contains("Unable to find"));
    let out = berth(&["run", "--pull", "sometimes", "busybox"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("invalid pull option"));
}

#[test]
fn login_stores_and_logout_removes_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cfg");
    let file = config.join("config.json");
    let out = berth_config(
        &["login", "-u", "u", "-p", "wrong", "reg:5000"],
        &config,
        None,
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("401 Unauthorized"),
        "{}",
        text(&out.stderr)
    );
    assert!(!file.exists());
    let out = berth_config(
        &["login", "-u", "u", "--password-stdin", "reg:5000"],
        &config,
        Some(b"right\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Login Succeeded\n");
    assert!(!text(&out.stderr).contains("--password via the CLI"));
    let out = berth_config(
        &["login", "-u", "u", "-p", "right", "docker.io"],
        &config,
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stderr)
        .contains("WARNING! Using --password via the CLI is insecure. Use --password-stdin."));
    assert!(called("login  u"));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(json["auths"]["reg:5000"]["auth"], "dTpyaWdodA==");
    assert_eq!(
        json["auths"]["https://index.docker.io/v1/"]["auth"],
        "dTpyaWdodA=="
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Pulls send the stored credentials for the reference's registry.
    let out = berth_config(&["pull", "-q", "reg:5000/app:2"], &config, None);
    assert_eq!(out.status.code(), Some(0));
    assert!(called("pull_image reg:5000/app:2 auth=u:right platform="));
    let out = berth_config(&["logout", "reg:5000"], &config, None);
    assert_eq!(
        text(&out.stdout),
        "Removing login credentials for reg:5000\n"
    );
    let out = berth_config(&["logout", "reg:5000"], &config, None);
    assert_eq!(text(&out.stdout), "Not logged in to reg:5000\n");
    let out = berth_config(&["logout"], &config, None);
    assert_eq!(
        text(&out.stdout),
        "Removing login credentials for https://index.docker.io/v1/\n"
    );
    let out = berth_config(&["login", "-u", "u", "reg:5000"], &config, None);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("Cannot perform an interactive login from a non TTY device"));
}

#[test]
fn save_to_a_file_or_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.tar");
    let out = berth(&["save", "-o", file.to_str().unwrap(), "a", "b:1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&file).unwrap(), b"a,b:1-tar");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let out = berth(&["image", "save", "x"]);
    assert_eq!(out.stdout, b"x-tar");
    let out = berth(&["save", "-o", file.to_str().unwrap(), "nosuch"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("No such image: nosuch:latest"));
    // The earlier file is untouched.
    assert_eq!(std::fs::read(&file).unwrap(), b"a,b:1-tar");
}

#[test]
fn history_table_like_docker() {
    let out = berth(&["history", "busybox"]);
    let t = text(&out.stdout);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(
        lines[0],
        "IMAGE          CREATED       CREATED BY                                      SIZE      COMMENT"
    );
    assert!(lines[1].starts_with("0123456789ab   "), "{t}");
    assert!(lines[1].contains(" years ago "), "{t}");
    assert!(
        lines[1].contains("/bin/sh -c #(nop) CMD [\"sh\"] and a long tail…   0B"),
        "{t}"
    );
    assert!(lines[2].starts_with("<missing>      "), "{t}");
    assert!(
        lines[2]
            .ends_with("berth import                                    4.26MB    Imported from -"),
        "{t}"
    );
    let out = berth(&["image", "history", "-q", "busybox"]);
    assert_eq!(text(&out.stdout), "0123456789ab\n<missing>\n");
    let out = berth(&["history", "--no-trunc", "--human=false", "busybox"]);
    let t = text(&out.stdout);
    assert!(t.contains("sha256:0123456789abcdef"), "{t}");
    assert!(t.contains("2020-01-01T00:00:00Z"), "{t}");
    assert!(t.contains("to be cut off"), "{t}");
    assert!(t.contains(" 4260000 "), "{t}");
}

#[test]
fn image_prune_prompts_and_reports() {
    let out = berth_with(&["image", "prune"], Some(b"n\n"));
    assert_eq!(
        text(&out.stdout),
        "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] "
    );
    let out = berth(&["image", "prune", "-f"]);
    assert_eq!(
        text(&out.stdout),
        "Deleted Images:\ndeleted: sha256:aa\ndeleted: sha256:l1\n\nTotal reclaimed space: 1.235MB\n"
    );
    let out = berth_with(&["image", "prune", "-a"], Some(b"y\n"));
    let t = text(&out.stdout);
    assert!(t.starts_with("WARNING! This will remove all images without at least one container associated to them.\n"), "{t}");
    assert!(
        t.contains("Deleted Images:\nuntagged: a:1\ndeleted: sha256:aa\n"),
        "{t}"
    );
    assert!(called("prune_images true"));
}

#[test]
fn commit_prints_the_id() {
    let out = berth(&[
        "commit",
        "-a",
        "me",
        "-m",
        "msg",
        "-c",
        "CMD [\"x\"]",
        "--pause=false",
        "web",
        "snap:1",
    ]);
    assert_eq!(text(&out.stdout), "sha256:c0\n");
    assert!(called(
        "commit web snap:1 [\"CMD [\\\"x\\\"]\"] msg me false"
    ));
    let out = berth(&["container", "commit", "web"]);
    assert_eq!(text(&out.stdout), "sha256:c0\n");
    assert!(called("commit web  [] msg  true") || called("commit web  []   true"));
}

#[test]
fn port_lists_published_ports() {
    let out = berth(&["port", "ported"]);
    assert_eq!(
        text(&out.stdout),
        "53/udp -> 127.0.0.1:5353\n80/tcp -> 0.0.0.0:8080\n"
    );
    let out = berth(&["container", "port", "ported", "80/tcp"]);
    assert_eq!(text(&out.stdout), "0.0.0.0:8080\n");
    let out = berth(&["port", "ported", "81"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("No public port '81/tcp' published for ported"));
}

#[test]
fn network_ls_create_and_inspect() {
    let out = berth(&["network", "ls", "-f", "driver=bridge"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(|l| l.to_string()).collect();
    assert!(lines[0].starts_with("NETWORK ID"), "{lines:?}");
    assert!(lines[0].contains("NAME") && lines[0].contains("DRIVER") && lines[0].contains("SCOPE"));
    assert!(
        lines[1].starts_with("b1b2b3b4b5b6 ") && lines[1].contains("bridge"),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with("f1f2f3f4f5f6 ") && lines[2].contains("front"),
        "{lines:?}"
    );
    assert!(called("network ls driver=bridge"));
    let out = berth(&["network", "ls", "-q", "--no-trunc"]);
    assert_eq!(
        text(&out.stdout),
        "b1b2b3b4b5b6b7b8b9b0\nf1f2f3f4f5f6f7f8f9f0a1a2a3a4a5a6\n"
    );

    let out = berth(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet",
        "10.89.0.0/24",
        "--internal",
        "-o",
        "parent=veth9",
        "front",
    ]);
    assert_eq!(text(&out.stdout), "f1f2f3f4f5f6f7f8f9f0a1a2a3a4a5a6\n");
    assert!(called(
        "network create front macvlan 10.89.0.0/24 internal=true parent=veth9"
    ));

    let out = berth(&["network", "inspect", "front"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["Name"], "front");
    assert_eq!(v[0]["IPAM"]["Config"][0]["Subnet"], "10.89.0.0/24");
    let out = berth(&["network", "inspect", "nosuch"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("network nosuch not found"));
}

#[test]
fn bad_publish_values_exit_125() {
    let out = berth(&["run", "-p", "8080:http", "busybox"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("invalid argument \"8080:http\" for \"-p, --publish\" flag"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn limit_flags_reach_the_engine_in_base_units() {
    let out = berth(&[
        "create",
        "--name",
        "limited",
        "-m",
        "64m",
        "--memory-swap",
        "128M",
        "--memory-reservation",
        "32mb",
        "--oom-kill-disable",
        "--memory-swappiness",
        "0",
        "--cpus",
        "0.5",
        "-c",
        "512",
        "--cpuset-cpus",
        "0",
        "--cpuset-mems",
        "0",
        "--blkio-weight",
        "300",
        "--device-read-bps",
        "/dev/vda:512kb",
        "--device-write-bps",
        "/dev/vda:1mb",
        "--device-read-iops",
        "/dev/vda:100",
        "--device-write-iops",
        "/dev/vda:50",
        "--pids-limit",
        "64",
        "busybox",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(called(
        "create limits mem=67108864 swap=134217728 res=33554432 oom=true swappiness=Some(0) nano=500000000 period=0 quota=0 shares=512 cpus=0 mems=0 weight=300 rbps=/dev/vda:524288 wbps=/dev/vda:1048576 riops=/dev/vda:100 wiops=/dev/vda:50 pids=64"
    ));
    // The kernel's warning on stderr, the ID alone on stdout.
    assert_eq!(text(&out.stdout), "id-of-busybox\n");
    assert_eq!(
        text(&out.stderr),
        "WARNING: Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.\n"
    );
    let out = berth(&[
        "create",
        "--name",
        "quota",
        "--cpu-period",
        "100000",
        "--cpu-quota",
        "25000",
        "--memory-swap=-1",
        "-m",
        "1g",
        "--pids-limit",
        "-1",
        "busybox",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(called(
        "create limits mem=1073741824 swap=-1 res=0 oom=false swappiness=None nano=0 period=100000 quota=25000 shares=0 cpus= mems= weight=0 rbps= wbps= riops= wiops= pids=0"
    ));
}

#[test]
fn run_prints_the_warnings() {
    let out = berth(&["run", "--blkio-weight", "300", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "hello\n");
    assert!(
        text(&out.stderr).starts_with(
            "WARNING: Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.\n"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_limit_values_exit_125_naming_the_value() {
    for (args, message) in [
        (
            &["run", "-m", "lots", "busybox"][..],
            "berth: invalid argument \"lots\" for \"-m, --memory\" flag: invalid size: 'lots'\n",
        ),
        (
            &["create", "--memory-swap", "1x", "busybox"][..],
            "berth: invalid argument \"1x\" for \"--memory-swap\" flag: invalid size: '1x'\n",
        ),
        (
            &["run", "--cpus", "half", "busybox"][..],
            "berth: invalid argument \"half\" for \"--cpus\" flag: failed to parse half as a rational number\n",
        ),
        (
            &["run", "--cpu-shares", "x", "busybox"][..],
            "berth: invalid argument \"x\" for \"-c, --cpu-shares\" flag: strconv.ParseInt: parsing \"x\": invalid syntax\n",
        ),
        (
            &["run", "--device-write-bps", "vda", "busybox"][..],
            "berth: invalid argument \"vda\" for \"--device-write-bps\" flag: bad format: vda\n",
        ),
        (
            &["run", "--device-read-iops", "/dev/vda:fast", "busybox"][..],
            "berth: invalid argument \"/dev/vda:fast\" for \"--device-read-iops\" flag: invalid rate for device: /dev/vda:fast. The correct format is <device-path>:<number>. Number must be a positive integer\n",
        ),
        (
            &["run", "--blkio-weight", "-5", "busybox"][..],
            "berth: invalid argument \"-5\" for \"--blkio-weight\" flag: strconv.ParseUint: parsing \"-5\": invalid syntax\n",
        ),
    ] {
        let out = berth(args);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        assert_eq!(text(&out.stderr), message, "{args:?}");
    }
}

#[test]
fn update_prints_names_and_fails_per_container() {
    let out = berth(&[
        "update",
        "--cpus",
        "1",
        "-m",
        "128m",
        "--pids-limit",
        "0",
        "web",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "web\n");
    assert!(called(
        "update web mem=134217728 swap=0 res=0 oom=false swappiness=None nano=1000000000 period=0 quota=0 shares=0 cpus= mems= weight=0 rbps= wbps= riops= wiops= pids=-1"
    ));
    // One bad container: the others are still updated, the exit is 1.
    let out = berth(&["container", "update", "-c", "512", "web", "nosuch", "db"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "web\ndb\n");
    assert_eq!(
        text(&out.stderr),
        "Error response from daemon: no such container: nosuch\n"
    );
    // The engine's refusal.
    let out = berth(&["update", "-m", "1m", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("Minimum memory limit allowed is 6MB"));
    // Warnings on stderr.
    let out = berth(&["update", "--blkio-weight", "300", "web"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "web\n");
    assert!(text(&out.stderr).starts_with("WARNING: Your kernel does not support Block I/O"));
    // Nothing to change; a bad value.
    let out = berth(&["update", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "You must provide one or more flags when using this command.\n"
    );
    let out = berth(&["update", "--cpus", "x", "web"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(text(&out.stderr).contains("invalid argument \"x\" for \"--cpus\" flag"));
}

#[test]
fn stats_no_stream_stops_after_two_rounds() {
    let started = std::time::Instant::now();
    let out = berth(&["stats", "--no-stream"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert!(called("stats [] stream=true"));
    assert_eq!(
        text(&out.stdout),
        "CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %     NET I/O         BLOCK I/O     PIDS\n\
         000000000000   web       50.00%    1.5MiB / 64MiB      2.34%     1.23kB / 648B   4.26MB / 0B   3\n"
    );
    let out = berth(&[
        "stats",
        "--no-stream",
        "--no-trunc",
        "--format",
        "json",
        "web",
        "db",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(called("stats [\"web\", \"db\"] stream=true"));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["Container"], "db");
    assert_eq!(lines[1]["Name"], "db");
    assert_eq!(lines[1]["ID"].as_str().unwrap().len(), 64);
    assert_eq!(lines[1]["CPUPerc"], "50.00%");
    assert_eq!(lines[1]["PIDs"], "3");
    let out = berth(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}}",
        "web",
    ]);
    assert_eq!(text(&out.stdout), "web 1.5MiB / 64MiB\n");
    let out = berth(&["stats", "--no-stream", "nosuch"]);
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        text(&out.stderr),
        "Error response from daemon: no such container: nosuch\n"
    );
}

#[test]
fn stats_streams_until_the_stream_ends() {
    let out = berth(&["stats", "--format", "{{.Name}} {{.CPUPerc}}", "ending"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Not a terminal: no screen clearing; the last draw has the CPU of the two rounds.
    assert!(!text(&out.stdout).contains('\x1b'));
    assert!(
        text(&out.stdout).ends_with("ending 50.00%\n"),
        "{}",
        text(&out.stdout)
    );
}
