//! The engine's sagas against in-process fakes of the image store, supervisor, volume
//! service and log router (and the real network service in `host` mode), all served on
//! Unix sockets: the order of the steps, the compensations of a failed create, the removal
//! after a failed start and `--rm`.
use std::{
    collections::HashMap,
    path::Path,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use berth_common::{Config, Service};
use berth_proto::{
    engine::v1::{
        engine_client::EngineClient, engine_server::EngineServer, run_input, run_output,
        CreateContainerRequest, RunInput, RunStart, StringList,
    },
    image::v1::{
        self as img, image_store_server::ImageStore, image_store_server::ImageStoreServer,
    },
    logs::v1::{self as logs, log_router_server::LogRouter, log_router_server::LogRouterServer},
    network::v1::network_server::NetworkServer,
    supervisor::v1::{
        self as sup, supervisor_server::Supervisor, supervisor_server::SupervisorServer,
    },
    volume::v1::{self as vol, volumes_server::Volumes, volumes_server::VolumesServer},
};
use tokio_stream::{wrappers::UnixListenerStream, Stream, StreamExt};
use tonic::{transport::Server, Code, Request, Response, Status, Streaming};

type Calls = Arc<Mutex<Vec<String>>>;
type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn log(calls: &Calls, call: impl Into<String>) {
    calls.lock().unwrap().push(call.into());
}

fn short(id: &str) -> &str {
    &id[..id.len().min(6)]
}

// ---- image store ----
struct Images(Calls);

#[tonic::async_trait]
impl ImageStore for Images {
    async fn import_image(
        &self,
        _: Request<Streaming<img::UploadChunk>>,
    ) -> Result<Response<img::ImportImageResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn load_images(
        &self,
        _: Request<Streaming<img::UploadChunk>>,
    ) -> Result<Response<img::LoadImagesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn get_image(
        &self,
        r: Request<img::GetImageRequest>,
    ) -> Result<Response<img::Image>, Status> {
        let reference = r.into_inner().reference;
        log(&self.0, format!("GetImage {reference}"));
        if reference != "busybox" {
            return Err(Status::not_found(format!(
                "no such image: {reference}:latest"
            )));
        }
        Ok(Response::new(img::Image {
            id: "sha256:b0x".into(),
            config: Some(img::ImageConfig {
                env: vec!["PATH=/bin".into(), "A=1".into()],
                cmd: vec!["sh".into()],
                volumes: vec!["/data".into()],
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
    async fn list_images(
        &self,
        _: Request<img::ListImagesRequest>,
    ) -> Result<Response<img::ListImagesResponse>, Status> {
        Ok(Response::new(Default::default()))
    }
    async fn tag_image(
        &self,
        _: Request<img::TagImageRequest>,
    ) -> Result<Response<img::TagImageResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn remove_image(
        &self,
        _: Request<img::RemoveImageRequest>,
    ) -> Result<Response<img::RemoveImageResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn prepare_snapshot(
        &self,
        r: Request<img::PrepareSnapshotRequest>,
    ) -> Result<Response<img::SnapshotMounts>, Status> {
        let r = r.into_inner();
        log(
            &self.0,
            format!("PrepareSnapshot {} {}", short(&r.key), r.image),
        );
        Ok(Response::new(img::SnapshotMounts {
            key: r.key,
            image_id: r.image,
            lower_dirs: vec!["/l1".into()],
            upper_dir: "/up".into(),
            work_dir: "/work".into(),
        }))
    }
    async fn get_snapshot_mounts(
        &self,
        _: Request<img::GetSnapshotMountsRequest>,
    ) -> Result<Response<img::SnapshotMounts>, Status> {
        Err(Status::unimplemented("fake"))
    }
    type PullImageStream = BoxStream<img::PullProgress>;
    async fn pull_image(
        &self,
        r: Request<img::PullImageRequest>,
    ) -> Result<Response<Self::PullImageStream>, Status> {
        let r = r.into_inner();
        let auth = r.auth.unwrap_or_default();
        log(
            &self.0,
            format!(
                "PullImage {} {}:{}",
                r.reference, auth.username, auth.password
            ),
        );
        if r.reference == "nosuch" {
            return Err(Status::not_found("manifest unknown: nosuch"));
        }
        let msgs = vec![
            Ok(img::PullProgress {
                id: "aaa".into(),
                status: "Downloading".into(),
                current: 1,
                total: 2,
                image: None,
            }),
            Ok(img::PullProgress {
                status: "Status: Downloaded newer image for busybox:latest".into(),
                image: Some(img::Image {
                    id: "sha256:0001".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        ];
        Ok(Response::new(Box::pin(tokio_stream::iter(msgs))))
    }
    type PushImageStream = BoxStream<img::PushProgress>;
    async fn push_image(
        &self,
        r: Request<img::PushImageRequest>,
    ) -> Result<Response<Self::PushImageStream>, Status> {
        log(&self.0, format!("PushImage {}", r.into_inner().reference));
        let msgs = vec![Ok(img::PushProgress {
            status: "1: digest: sha256:feed size: 5".into(),
            digest: "sha256:feed".into(),
            ..Default::default()
        })];
        Ok(Response::new(Box::pin(tokio_stream::iter(msgs))))
    }
    async fn check_registry_auth(
        &self,
        r: Request<img::CheckRegistryAuthRequest>,
    ) -> Result<Response<img::CheckRegistryAuthResponse>, Status> {
        let r = r.into_inner();
        let auth = r.auth.unwrap_or_default();
        log(
            &self.0,
            format!("CheckRegistryAuth {} {}", r.registry, auth.username),
        );
        if auth.password != "right" {
            return Err(Status::unauthenticated("401 Unauthorized"));
        }
        Ok(Response::new(img::CheckRegistryAuthResponse {
            status: "Login Succeeded".into(),
        }))
    }
    type SaveImagesStream = BoxStream<img::SaveChunk>;
    async fn save_images(
        &self,
        r: Request<img::SaveImagesRequest>,
    ) -> Result<Response<Self::SaveImagesStream>, Status> {
        log(
            &self.0,
            format!("SaveImages {}", r.into_inner().references.join(",")),
        );
        let chunks = vec![
            Ok(img::SaveChunk {
                data: b"ab".to_vec(),
            }),
            Ok(img::SaveChunk {
                data: b"c".to_vec(),
            }),
        ];
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
    async fn image_history(
        &self,
        r: Request<img::GetImageRequest>,
    ) -> Result<Response<img::ImageHistoryResponse>, Status> {
        log(
            &self.0,
            format!("ImageHistory {}", r.into_inner().reference),
        );
        Ok(Response::new(img::ImageHistoryResponse {
            entries: vec![img::HistoryEntry {
                id: "sha256:b0x".into(),
                ..Default::default()
            }],
        }))
    }
    async fn prune_images(
        &self,
        r: Request<img::PruneImagesRequest>,
    ) -> Result<Response<img::PruneImagesResponse>, Status> {
        log(&self.0, format!("PruneImages all={}", r.into_inner().all));
        Ok(Response::new(img::PruneImagesResponse {
            space_reclaimed: 5,
            ..Default::default()
        }))
    }
    async fn commit_snapshot(
        &self,
        r: Request<img::CommitSnapshotRequest>,
    ) -> Result<Response<img::Image>, Status> {
        let r = r.into_inner();
        let c = r.config.unwrap_or_default();
        log(
            &self.0,
            format!(
                "CommitSnapshot {} {} cmd={} env={} changes={} msg={} author={}",
                short(&r.key),
                r.reference,
                c.cmd.join(" "),
                c.env.join(","),
                r.changes.join(";"),
                r.message,
                r.author
            ),
        );
        Ok(Response::new(img::Image {
            id: "sha256:c0mmit".into(),
            ..Default::default()
        }))
    }
    async fn remove_snapshot(
        &self,
        r: Request<img::RemoveSnapshotRequest>,
    ) -> Result<Response<img::RemoveSnapshotResponse>, Status> {
        log(
            &self.0,
            format!("RemoveSnapshot {}", short(&r.into_inner().key)),
        );
        Ok(Response::new(Default::default()))
    }
}

// ---- supervisor ----
#[derive(Clone, Default)]
struct SupervisorState {
    containers: Arc<Mutex<HashMap<String, sup::Container>>>,
    /// Fail CreateContainer with Internal.
    fail_create: Arc<Mutex<bool>>,
    /// Starting fails with this exit code (127: not found).
    fail_start: Arc<Mutex<Option<i32>>>,
}

struct Super(Calls, SupervisorState);

impl Super {
    fn find(&self, reference: &str) -> Result<sup::Container, Status> {
        let all = self.1.containers.lock().unwrap();
        all.values()
            .find(|c| c.id == reference || c.name == reference)
            .or_else(|| {
                all.values()
                    .find(|c| !reference.is_empty() && c.id.starts_with(reference))
            })
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no such container: {reference}")))
    }

    fn set_status(&self, id: &str, status: sup::ContainerStatus) {
        if let Some(c) = self.1.containers.lock().unwrap().get_mut(id) {
            c.state.get_or_insert_with(Default::default).status = status as i32;
            if status == sup::ContainerStatus::Running {
                c.state.as_mut().unwrap().started_at = "now".into();
            }
        }
    }

    fn start(&self, id: &str) -> Result<(), Status> {
        if let Some(code) = *self.1.fail_start.lock().unwrap() {
            return Err(berth_common::status::with_exit_code(
                "exec: \"nosuch\": executable file not found in $PATH",
                code,
            ));
        }
        self.set_status(id, sup::ContainerStatus::Running);
        Ok(())
    }
}

#[tonic::async_trait]
impl Supervisor for Super {
    async fn create_container(
        &self,
        r: Request<sup::CreateContainerRequest>,
    ) -> Result<Response<sup::Container>, Status> {
        let r = r.into_inner();
        log(&self.0, format!("CreateContainer {}", short(&r.id)));
        if *self.1.fail_create.lock().unwrap() {
            return Err(Status::internal("disk full"));
        }
        let c = sup::Container {
            id: r.id.clone(),
            name: if r.name.is_empty() {
                "gen_name".into()
            } else {
                r.name
            },
            spec: r.spec,
            state: Some(sup::ContainerState {
                status: sup::ContainerStatus::Created as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        self.1.containers.lock().unwrap().insert(r.id, c.clone());
        Ok(Response::new(c))
    }
    async fn start_container(
        &self,
        r: Request<sup::StartContainerRequest>,
    ) -> Result<Response<sup::Container>, Status> {
        let id = r.into_inner().id;
        log(&self.0, format!("StartContainer {}", short(&id)));
        self.start(&id)?;
        Ok(Response::new(self.find(&id)?))
    }
    type AttachStream = BoxStream<sup::AttachOutput>;
    async fn attach(
        &self,
        r: Request<Streaming<sup::AttachInput>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let mut inbound = r.into_inner();
        let Some(sup::AttachInput {
            input: Some(sup::attach_input::Input::Start(start)),
        }) = inbound.message().await?
        else {
            return Err(Status::invalid_argument("no start"));
        };
        log(
            &self.0,
            format!("Attach {} start={}", short(&start.id), start.start),
        );
        self.find(&start.id)?;
        if start.start {
            self.start(&start.id)?;
        }
        self.set_status(&start.id, sup::ContainerStatus::Exited);
        let out = |o| Ok(sup::AttachOutput { output: Some(o) });
        Ok(Response::new(Box::pin(tokio_stream::iter(vec![
            out(sup::attach_output::Output::Stdout(b"hi\n".to_vec())),
            out(sup::attach_output::Output::Exit(sup::ExitStatus {
                exit_code: 3,
                ..Default::default()
            })),
        ]))))
    }
    async fn stop_container(
        &self,
        _: Request<sup::StopContainerRequest>,
    ) -> Result<Response<sup::Container>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn kill_container(
        &self,
        _: Request<sup::KillContainerRequest>,
    ) -> Result<Response<sup::Container>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn wait_container(
        &self,
        r: Request<sup::WaitContainerRequest>,
    ) -> Result<Response<sup::ExitStatus>, Status> {
        let id = r.into_inner().id;
        log(&self.0, format!("WaitContainer {}", short(&id)));
        self.find(&id)?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.set_status(&id, sup::ContainerStatus::Exited);
        Ok(Response::new(sup::ExitStatus::default()))
    }
    async fn remove_container(
        &self,
        r: Request<sup::RemoveContainerRequest>,
    ) -> Result<Response<sup::RemoveContainerResponse>, Status> {
        let r = r.into_inner();
        log(
            &self.0,
            format!("RemoveContainer {} force={}", short(&r.id), r.force),
        );
        let c = self.find(&r.id)?;
        if c.state.as_ref().unwrap().status == sup::ContainerStatus::Running as i32 && !r.force {
            return Err(Status::failed_precondition("container is running"));
        }
        self.1.containers.lock().unwrap().remove(&c.id);
        Ok(Response::new(sup::RemoveContainerResponse {
            container: Some(c),
        }))
    }
    async fn get_container(
        &self,
        r: Request<sup::GetContainerRequest>,
    ) -> Result<Response<sup::Container>, Status> {
        Ok(Response::new(self.find(&r.into_inner().id)?))
    }
    async fn list_containers(
        &self,
        _: Request<sup::ListContainersRequest>,
    ) -> Result<Response<sup::ListContainersResponse>, Status> {
        let containers = self
            .1
            .containers
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect();
        Ok(Response::new(sup::ListContainersResponse { containers }))
    }
    type ExecStream = BoxStream<sup::AttachOutput>;
    /// Echoes the exec's id and args, then every stdin chunk, and exits with 7.
    async fn exec(
        &self,
        r: Request<Streaming<sup::ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let mut inbound = r.into_inner();
        let Some(sup::ExecInput {
            input: Some(sup::exec_input::Input::Start(start)),
        }) = inbound.message().await?
        else {
            return Err(Status::invalid_argument("no start"));
        };
        log(
            &self.0,
            format!(
                "Exec {} {} tty={} stdin={} env={} user={} wd={}",
                short(&start.id),
                start.args.join(" "),
                start.tty,
                start.stdin,
                start.env.join(","),
                start.user,
                start.working_dir
            ),
        );
        self.find(&start.id)?;
        let first = sup::AttachOutput {
            output: Some(sup::attach_output::Output::Stdout(
                format!("{}\n", start.args.join(" ")).into_bytes(),
            )),
        };
        Ok(Response::new(Box::pin(
            tokio_stream::once(Ok(first)).chain(echo_then_exit(inbound)),
        )))
    }
    async fn pause_container(
        &self,
        r: Request<sup::PauseContainerRequest>,
    ) -> Result<Response<sup::Container>, Status> {
        let id = r.into_inner().id;
        log(&self.0, format!("PauseContainer {}", short(&id)));
        self.set_status(&id, sup::ContainerStatus::Paused);
        Ok(Response::new(self.find(&id)?))
    }
    async fn unpause_container(
        &self,
        r: Request<sup::UnpauseContainerRequest>,
    ) -> Result<Response<sup::Container>, Status> {
        let id = r.into_inner().id;
        log(&self.0, format!("UnpauseContainer {}", short(&id)));
        self.set_status(&id, sup::ContainerStatus::Running);
        Ok(Response::new(self.find(&id)?))
    }
    async fn top_container(
        &self,
        r: Request<sup::TopContainerRequest>,
    ) -> Result<Response<sup::TopContainerResponse>, Status> {
        let id = r.into_inner().id;
        log(&self.0, format!("TopContainer {}", short(&id)));
        self.find(&id)?;
        Ok(Response::new(sup::TopContainerResponse {
            titles: vec!["PID".into(), "CMD".into()],
            processes: vec![sup::TopProcess {
                fields: vec!["1".into(), "sh".into()],
            }],
        }))
    }
    async fn rename_container(
        &self,
        r: Request<sup::RenameContainerRequest>,
    ) -> Result<Response<sup::Container>, Status> {
        let r = r.into_inner();
        log(
            &self.0,
            format!("RenameContainer {} {}", short(&r.id), r.new_name),
        );
        let mut all = self.1.containers.lock().unwrap();
        let c = all
            .get_mut(&r.id)
            .ok_or_else(|| Status::not_found("no such container"))?;
        c.name = r.new_name;
        Ok(Response::new(c.clone()))
    }
    async fn restart_container(
        &self,
        r: Request<sup::RestartContainerRequest>,
    ) -> Result<Response<sup::Container>, Status> {
        let r = r.into_inner();
        log(
            &self.0,
            format!("RestartContainer {} {:?}", short(&r.id), r.timeout_seconds),
        );
        self.set_status(&r.id, sup::ContainerStatus::Running);
        Ok(Response::new(self.find(&r.id)?))
    }
    /// Records the change (as the engine sent it) and stores its set fields.
    async fn update_resources(
        &self,
        r: Request<sup::UpdateResourcesRequest>,
    ) -> Result<Response<sup::Container>, Status> {
        let r = r.into_inner();
        let change = r.resources.unwrap_or_default();
        log(
            &self.0,
            format!(
                "UpdateResources {} mem={} swap={} nano={} pids={}",
                short(&r.id),
                change.memory,
                change.memory_swap,
                change.nano_cpus,
                change.pids_limit
            ),
        );
        let mut all = self.1.containers.lock().unwrap();
        let c = all
            .get_mut(&r.id)
            .ok_or_else(|| Status::not_found(format!("no such container: {}", r.id)))?;
        let spec = c.spec.get_or_insert_with(Default::default);
        let limits = spec.resources.get_or_insert_with(Default::default);
        if change.memory != 0 {
            limits.memory = change.memory;
        }
        if change.memory_swap != 0 {
            limits.memory_swap = change.memory_swap;
        }
        if change.nano_cpus != 0 {
            limits.nano_cpus = change.nano_cpus;
        }
        let mut out = c.clone();
        out.warnings = vec!["from the supervisor".into()];
        Ok(Response::new(out))
    }
    type ContainerStatsStream = BoxStream<sup::ContainerStatsSample>;
    /// One sample per ID asked for (one for "all" when none).
    async fn container_stats(
        &self,
        r: Request<sup::ContainerStatsRequest>,
    ) -> Result<Response<Self::ContainerStatsStream>, Status> {
        let r = r.into_inner();
        log(
            &self.0,
            format!(
                "ContainerStats {:?} stream={}",
                r.ids
                    .iter()
                    .map(|i| short(i).to_string())
                    .collect::<Vec<_>>(),
                r.stream
            ),
        );
        let ids = if r.ids.is_empty() {
            vec!["all".to_string()]
        } else {
            r.ids
        };
        let samples: Vec<Result<sup::ContainerStatsSample, Status>> = ids
            .into_iter()
            .map(|id| {
                Ok(sup::ContainerStatsSample {
                    id,
                    pids: 1,
                    ..Default::default()
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(samples))))
    }
    async fn update_network(
        &self,
        r: Request<sup::UpdateNetworkRequest>,
    ) -> Result<Response<sup::Container>, Status> {
        let r = r.into_inner();
        log(&self.0, format!("UpdateNetwork {}", short(&r.id)));
        let mut all = self.1.containers.lock().unwrap();
        let c = all
            .get_mut(&r.id)
            .ok_or_else(|| Status::not_found("no such container"))?;
        if let Some(spec) = c.spec.as_mut() {
            spec.network = r.network;
        }
        Ok(Response::new(c.clone()))
    }
}

/// The exec fake's output after its first line: each stdin chunk echoed, then exit 7.
fn echo_then_exit(
    inbound: Streaming<sup::ExecInput>,
) -> impl Stream<Item = Result<sup::AttachOutput, Status>> + Send {
    let out = |o| Ok(sup::AttachOutput { output: Some(o) });
    inbound
        .map_while(Result::ok)
        .take_while(|i| !matches!(i.input, Some(sup::exec_input::Input::CloseStdin(_))))
        .filter_map(move |i| match i.input {
            Some(sup::exec_input::Input::Stdin(b)) => {
                Some(out(sup::attach_output::Output::Stdout(b)))
            }
            _ => None,
        })
        .chain(tokio_stream::once(out(sup::attach_output::Output::Exit(
            sup::ExitStatus {
                exit_code: 7,
                ..Default::default()
            },
        ))))
}

// ---- volumes ----
struct Vols(Calls);

#[tonic::async_trait]
impl Volumes for Vols {
    async fn create_volume(
        &self,
        _: Request<vol::CreateVolumeRequest>,
    ) -> Result<Response<vol::Volume>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn get_volume(
        &self,
        _: Request<vol::GetVolumeRequest>,
    ) -> Result<Response<vol::Volume>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_volumes(
        &self,
        _: Request<vol::ListVolumesRequest>,
    ) -> Result<Response<vol::ListVolumesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn remove_volume(
        &self,
        r: Request<vol::RemoveVolumeRequest>,
    ) -> Result<Response<vol::RemoveVolumeResponse>, Status> {
        log(&self.0, format!("RemoveVolume {}", r.into_inner().name));
        Ok(Response::new(Default::default()))
    }
    async fn prune_volumes(
        &self,
        _: Request<vol::PruneVolumesRequest>,
    ) -> Result<Response<vol::PruneVolumesResponse>, Status> {
        log(&self.0, "PruneVolumes".to_string());
        Ok(Response::new(Default::default()))
    }
    async fn prepare_mounts(
        &self,
        r: Request<vol::PrepareMountsRequest>,
    ) -> Result<Response<vol::PrepareMountsResponse>, Status> {
        let r = r.into_inner();
        log(
            &self.0,
            format!(
                "PrepareMounts {} {}",
                short(&r.container_id),
                r.mounts.len()
            ),
        );
        let mounts = r
            .mounts
            .iter()
            .map(|m| vol::ResolvedMount {
                r#type: m.r#type,
                source: format!("/vols/anon-{}/_data", short(&r.container_id)),
                destination: m.destination.clone(),
                volume_name: format!("anon-{}", short(&r.container_id)),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(vol::PrepareMountsResponse { mounts }))
    }
    async fn release_mounts(
        &self,
        r: Request<vol::ReleaseMountsRequest>,
    ) -> Result<Response<vol::ReleaseMountsResponse>, Status> {
        let id = r.into_inner().container_id;
        log(&self.0, format!("ReleaseMounts {}", short(&id)));
        Ok(Response::new(vol::ReleaseMountsResponse {
            anonymous_volumes: vec![format!("anon-{}", short(&id))],
        }))
    }
}

// ---- log router ----
struct Logs(Calls);

#[tonic::async_trait]
impl LogRouter for Logs {
    async fn open_log(
        &self,
        r: Request<logs::OpenLogRequest>,
    ) -> Result<Response<logs::OpenLogResponse>, Status> {
        let r = r.into_inner();
        log(&self.0, format!("OpenLog {}", short(&r.container_id)));
        if r.driver == "bogus" {
            return Err(Status::invalid_argument("unknown log driver: bogus"));
        }
        Ok(Response::new(logs::OpenLogResponse {
            log_path: format!("/logs/{}-json.log", r.container_id),
        }))
    }
    type ReadLogsStream = BoxStream<logs::LogEntry>;
    async fn read_logs(
        &self,
        _: Request<logs::ReadLogsRequest>,
    ) -> Result<Response<Self::ReadLogsStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn close_log(
        &self,
        r: Request<logs::CloseLogRequest>,
    ) -> Result<Response<logs::CloseLogResponse>, Status> {
        log(
            &self.0,
            format!("CloseLog {}", short(&r.into_inner().container_id)),
        );
        Ok(Response::new(Default::default()))
    }
    async fn inspect_log(
        &self,
        r: Request<logs::InspectLogRequest>,
    ) -> Result<Response<logs::InspectLogResponse>, Status> {
        let id = r.into_inner().container_id;
        Ok(Response::new(logs::InspectLogResponse {
            driver: "json-file".into(),
            log_path: format!("/logs/{id}-json.log"),
            ..Default::default()
        }))
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    calls: Calls,
    state: SupervisorState,
    client: EngineClient<berth_common::client::Traced>,
    network: berth_network::NetworkService,
    nft_table: String,
}

fn serve(socket: &Path, router: tonic::transport::server::Router) {
    let listener = berth_common::serve::bind_unix(socket).unwrap();
    tokio::spawn(router.serve_with_incoming(UnixListenerStream::new(listener)));
}

impl Fixture {
    async fn new() -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("be")
            .tempdir_in("/tmp")
            .unwrap();
        let config = Config {
            root: dir.path().join("root"),
            run_dir: dir.path().join("run"),
            // One instance per fixture: the network service makes a default bridge and an
            // nftables table named after it, removed again in Drop.
            instance: format!(
                "et{:04x}",
                (std::process::id() as usize * 16 + FIXTURES.fetch_add(1, Ordering::SeqCst))
                    & 0xffff
            ),
        };
        let calls: Calls = Arc::default();
        let state = SupervisorState::default();
        let network = berth_network::NetworkService::open(&config).await.unwrap();
        let s = |service| config.socket(service);
        serve(
            &s(Service::ImageStore),
            Server::builder().add_service(ImageStoreServer::new(Images(calls.clone()))),
        );
        serve(
            &s(Service::Supervisor),
            Server::builder()
                .add_service(SupervisorServer::new(Super(calls.clone(), state.clone()))),
        );
        serve(
            &s(Service::Volume),
            Server::builder().add_service(VolumesServer::new(Vols(calls.clone()))),
        );
        serve(
            &s(Service::LogRouter),
            Server::builder().add_service(LogRouterServer::new(Logs(calls.clone()))),
        );
        serve(
            &s(Service::Network),
            Server::builder().add_service(NetworkServer::new(network.clone())),
        );
        serve(
            &s(Service::Engine),
            Server::builder().add_service(EngineServer::new(berth_engine::Engine::new(&config))),
        );
        let client = EngineClient::new(berth_common::client::channel(&config, Service::Engine));
        Fixture {
            _dir: dir,
            calls,
            state,
            client,
            network,
            nft_table: config.nft_table(),
        }
    }

    fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

static FIXTURES: AtomicUsize = AtomicUsize::new(0);

impl Drop for Fixture {
    /// Removes the kernel objects of this fixture's instance (its default bridge and its
    /// nftables table), so that runs do not use up the address pools.
    fn drop(&mut self) {
        let prefix = self.network.link_prefix().to_string();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &format!("{prefix}0")])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "ip", &self.nft_table])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn request(name: &str) -> CreateContainerRequest {
    CreateContainerRequest {
        name: name.into(),
        image: "busybox".into(),
        cmd: Some(StringList {
            values: vec!["echo".into(), "hi".into()],
        }),
        env: vec!["A=2".into()],
        network: "host".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn create_runs_every_step_in_order_and_merges_the_spec() {
    let mut f = Fixture::new().await;
    let c = f
        .client
        .create_container(request("web"))
        .await
        .unwrap()
        .into_inner();
    let id = short(&c.id).to_string();
    assert_eq!(
        f.take_calls(),
        vec![
            "GetImage busybox".to_string(),
            // The snapshot before the mounts: copy-up reads the image's layers.
            format!("PrepareSnapshot {id} sha256:b0x"),
            format!("PrepareMounts {id} 1"),
            format!("OpenLog {id}"),
            format!("CreateContainer {id}"),
        ]
    );
    let spec = c.spec.unwrap();
    assert_eq!(spec.cmd, vec!["echo", "hi"]);
    assert_eq!(spec.env, vec!["PATH=/bin", "A=2"]);
    assert_eq!(spec.network.unwrap().mode, "host");
    assert_eq!(spec.mounts[0].r#type, "volume");
    assert_eq!(spec.rootfs.unwrap().upper_dir, "/up");
    assert!(f.network.get_attachment(&c.id).unwrap().is_some());

    // The same name again: Docker's conflict, and nothing is made.
    let e = f.client.create_container(request("web")).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(
        e.message().contains(&format!(
            "\"/web\" is already in use by container \"{}\"",
            c.id
        )),
        "{}",
        e.message()
    );
    assert_eq!(f.take_calls(), vec!["GetImage busybox"]);

    // Inspect gets the log path and the attachment.
    let d = f
        .client
        .inspect_container(berth_proto::engine::v1::ContainerRef { id: "web".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.log_path, format!("/logs/{}-json.log", c.id));
    assert_eq!(d.network.unwrap().mode, "host");
    f.take_calls();

    // rm -v: the whole teardown, anonymous volumes too.
    f.client
        .remove_container(berth_proto::engine::v1::RemoveContainerRequest {
            id: "web".into(),
            force: false,
            volumes: true,
        })
        .await
        .unwrap();
    assert_eq!(
        f.take_calls(),
        vec![
            format!("RemoveContainer {id} force=false"),
            format!("RemoveSnapshot {id}"),
            format!("CloseLog {id}"),
            format!("ReleaseMounts {id}"),
            format!("RemoveVolume anon-{id}"),
        ]
    );
    assert!(f.network.get_attachment(&c.id).unwrap().is_none());
}

#[tokio::test]
async fn a_failed_create_undoes_every_step_in_reverse() {
    let mut f = Fixture::new().await;
    *f.state.fail_create.lock().unwrap() = true;
    let e = f.client.create_container(request("")).await.unwrap_err();
    assert_eq!(e.code(), Code::Internal);
    assert!(e.message().contains("disk full"), "{}", e.message());
    let calls = f.take_calls();
    let id = calls[1].split(' ').nth(1).unwrap().to_string();
    assert_eq!(
        calls[4..],
        [
            format!("CreateContainer {id}"),
            format!("RemoveContainer {id} force=true"),
            format!("CloseLog {id}"),
            format!("ReleaseMounts {id}"),
            format!("RemoveVolume anon-{id}"),
            format!("RemoveSnapshot {id}"),
        ]
    );
    assert!(f
        .network
        .list_networks()
        .unwrap()
        .iter()
        .all(|n| n.containers.is_empty()));

    // A refused log driver: the steps before it are undone, the store's message kept.
    *f.state.fail_create.lock().unwrap() = false;
    let mut req = request("");
    req.log_config = Some(berth_proto::supervisor::v1::LogConfig {
        driver: "bogus".into(),
        options: Default::default(),
    });
    let e = f.client.create_container(req).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "unknown log driver: bogus")
    );
    let calls = f.take_calls();
    assert!(
        calls[calls.len() - 2].starts_with("RemoveVolume anon-")
            && calls.last().unwrap().starts_with("RemoveSnapshot "),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| c.starts_with("CreateContainer")),
        "{calls:?}"
    );

    // Unknown image and bad input: the store's message passes through, nothing is made.
    let mut req = request("x");
    req.image = "nosuch".into();
    let e = f.client.create_container(req).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::NotFound, "no such image: nosuch:latest")
    );
    let mut req = request("x");
    req.network = "foo".into();
    let e = f.client.create_container(req).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::NotFound, "network foo not found")
    );
    let e = f
        .client
        .create_container(request("-bad"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(f.state.containers.lock().unwrap().is_empty());
}

async fn run(
    f: &mut Fixture,
    create: CreateContainerRequest,
    detach: bool,
) -> (Vec<run_output::Output>, Option<Status>) {
    let start = RunInput {
        input: Some(run_input::Input::Start(RunStart {
            create: Some(create),
            detach,
            ..Default::default()
        })),
    };
    let mut stream = match f
        .client
        .run_container(tokio_stream::iter(vec![start]))
        .await
    {
        Ok(s) => s.into_inner(),
        Err(s) => return (vec![], Some(s)),
    };
    let mut out = Vec::new();
    loop {
        match stream.next().await {
            Some(Ok(msg)) => {
                let o = msg.output.unwrap();
                if matches!(o, run_output::Output::Exit(_)) {
                    // --rm: the container is gone before the client sees the exit.
                    if f.state.containers.lock().unwrap().is_empty() {
                        log(&f.calls, "client saw exit after removal");
                    }
                }
                out.push(o);
            }
            Some(Err(s)) => return (out, Some(s)),
            None => return (out, None),
        }
    }
}

#[tokio::test]
async fn run_streams_output_and_removes_before_the_exit_with_rm() {
    let mut f = Fixture::new().await;
    let mut req = request("r1");
    req.auto_remove = true;
    let (out, err) = run(&mut f, req, false).await;
    assert!(err.is_none(), "{err:?}");
    assert!(matches!(&out[0], run_output::Output::ContainerId(id) if id.len() == 64));
    assert_eq!(out[1], run_output::Output::Stdout(b"hi\n".to_vec()));
    assert!(matches!(&out[2], run_output::Output::Exit(e) if e.exit_code == 3));
    let calls = f.take_calls();
    assert_eq!(
        calls.last().unwrap(),
        "client saw exit after removal",
        "{calls:?}"
    );
    assert!(
        calls.iter().any(|c| c.starts_with("RemoveVolume")),
        "{calls:?}"
    );

    // Without --rm the container stays.
    let (out, _) = run(&mut f, request("r2"), false).await;
    assert!(matches!(&out[2], run_output::Output::Exit(_)));
    assert_eq!(f.state.containers.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failed_start_removes_everything_and_keeps_the_exit_code() {
    let mut f = Fixture::new().await;
    *f.state.fail_start.lock().unwrap() = Some(127);
    for detach in [false, true] {
        let (out, err) = run(&mut f, request(""), detach).await;
        let err = err.expect("the run fails");
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert_eq!(
            berth_common::status::exit_code_of(&err),
            Some(127),
            "{err:?}"
        );
        assert!(err.message().contains("nosuch"));
        assert!(matches!(&out[0], run_output::Output::ContainerId(_)));
        assert!(f.state.containers.lock().unwrap().is_empty());
        let calls = f.take_calls();
        for step in [
            "RemoveContainer",
            "RemoveSnapshot",
            "CloseLog",
            "ReleaseMounts",
            "RemoveVolume",
        ] {
            assert!(
                calls.iter().any(|c| c.starts_with(step)),
                "{step} missing: {calls:?}"
            );
        }
        assert!(f
            .network
            .list_networks()
            .unwrap()
            .iter()
            .all(|n| n.containers.is_empty()));
    }
}

#[tokio::test]
async fn a_detached_rm_container_is_removed_when_it_exits() {
    let mut f = Fixture::new().await;
    let mut req = request("d1");
    req.auto_remove = true;
    let (out, err) = run(&mut f, req, true).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(out.last().unwrap(), &run_output::Output::Detached(true));
    for _ in 0..100 {
        if f.state.containers.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        f.state.containers.lock().unwrap().is_empty(),
        "not removed: {:?}",
        f.take_calls()
    );
    for _ in 0..50 {
        if f.calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.starts_with("RemoveVolume"))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("anonymous volume not removed: {:?}", f.take_calls());
}

#[tokio::test]
async fn exec_resolves_the_container_and_relays_both_ways() {
    let mut f = Fixture::new().await;
    let c = f
        .client
        .create_container(request("ex"))
        .await
        .unwrap()
        .into_inner();
    f.take_calls();
    let inputs = vec![
        sup::ExecInput {
            input: Some(sup::exec_input::Input::Start(sup::ExecStart {
                id: c.id[..8].to_string(),
                args: vec!["cat".into()],
                env: vec!["A=1".into()],
                user: "nobody".into(),
                working_dir: "/tmp".into(),
                tty: true,
                stdin: true,
                ..Default::default()
            })),
        },
        sup::ExecInput {
            input: Some(sup::exec_input::Input::Stdin(b"ping\n".to_vec())),
        },
        sup::ExecInput {
            input: Some(sup::exec_input::Input::CloseStdin(true)),
        },
    ];
    let mut stream = f
        .client
        .exec_container(tokio_stream::iter(inputs))
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(msg) = stream.next().await {
        out.push(msg.unwrap().output.unwrap());
    }
    assert_eq!(
        out,
        vec![
            sup::attach_output::Output::Stdout(b"cat\n".to_vec()),
            sup::attach_output::Output::Stdout(b"ping\n".to_vec()),
            sup::attach_output::Output::Exit(sup::ExitStatus {
                exit_code: 7,
                ..Default::default()
            }),
        ]
    );
    assert_eq!(
        f.take_calls(),
        vec![format!(
            "Exec {} cat tty=true stdin=true env=A=1 user=nobody wd=/tmp",
            short(&c.id)
        )]
    );

    // An unknown container, a missing start, no command: refused before the supervisor.
    let start = |id: &str, args: Vec<String>| sup::ExecInput {
        input: Some(sup::exec_input::Input::Start(sup::ExecStart {
            id: id.into(),
            args,
            ..Default::default()
        })),
    };
    let e = f
        .client
        .exec_container(tokio_stream::iter(vec![start("nosuch", vec!["ls".into()])]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = f
        .client
        .exec_container(tokio_stream::iter(vec![start("ex", vec![])]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = f
        .client
        .exec_container(tokio_stream::iter(vec![sup::ExecInput {
            input: Some(sup::exec_input::Input::Stdin(b"x".to_vec())),
        }]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(f.take_calls().iter().all(|c| !c.starts_with("Exec")));
}

#[tokio::test]
async fn lifecycle_calls_resolve_names_and_pass_through() {
    use berth_proto::engine::v1::ContainerRef;
    let mut f = Fixture::new().await;
    let c = f
        .client
        .create_container(request("life"))
        .await
        .unwrap()
        .into_inner();
    let id = short(&c.id).to_string();
    f.take_calls();
    let r = || ContainerRef { id: "life".into() };
    let paused = f.client.pause_container(r()).await.unwrap().into_inner();
    assert_eq!(
        paused.state.unwrap().status,
        sup::ContainerStatus::Paused as i32
    );
    f.client.unpause_container(r()).await.unwrap();
    let top = f
        .client
        .top_container(sup::TopContainerRequest {
            id: c.id[..5].into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(top.titles, vec!["PID", "CMD"]);
    f.client
        .restart_container(sup::RestartContainerRequest {
            id: "life".into(),
            timeout_seconds: Some(3),
        })
        .await
        .unwrap();
    let renamed = f
        .client
        .rename_container(sup::RenameContainerRequest {
            id: "life".into(),
            new_name: "/moved".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.name, "moved");
    assert_eq!(
        f.take_calls(),
        vec![
            format!("PauseContainer {id}"),
            format!("UnpauseContainer {id}"),
            format!("TopContainer {id}"),
            format!("RestartContainer {id} Some(3)"),
            format!("RenameContainer {id} moved"),
        ]
    );

    // Bad names and unknown containers never reach the supervisor.
    for new_name in ["", "-bad"] {
        let e = f
            .client
            .rename_container(sup::RenameContainerRequest {
                id: "moved".into(),
                new_name: new_name.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{new_name}");
    }
    let e = f
        .client
        .pause_container(ContainerRef { id: "life".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(f.take_calls().is_empty());
}

#[tokio::test]
async fn restart_policy_and_init_reach_the_spec_and_conflict_with_rm() {
    let mut f = Fixture::new().await;
    let mut req = request("rp");
    req.restart_policy = Some(sup::RestartPolicy {
        name: "on-failure".into(),
        maximum_retry_count: 2,
    });
    req.init = true;
    let c = f.client.create_container(req).await.unwrap().into_inner();
    let spec = c.spec.unwrap();
    assert_eq!(
        spec.restart_policy,
        Some(sup::RestartPolicy {
            name: "on-failure".into(),
            maximum_retry_count: 2
        })
    );
    assert!(spec.init);
    f.take_calls();

    let mut req = request("rp2");
    req.restart_policy = Some(sup::RestartPolicy {
        name: "always".into(),
        maximum_retry_count: 0,
    });
    req.auto_remove = true;
    let e = f.client.create_container(req).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            Code::InvalidArgument,
            "Conflicting options: --restart and --rm"
        )
    );
    // Refused before anything was made.
    assert!(f.take_calls().is_empty());
}

#[tokio::test]
async fn registry_calls_pass_through_to_the_image_store() {
    let mut f = Fixture::new().await;
    let auth = || {
        Some(img::RegistryAuth {
            username: "u".into(),
            password: "right".into(),
            identity_token: String::new(),
        })
    };
    let progress: Vec<_> = f
        .client
        .pull_image(img::PullImageRequest {
            reference: "reg:5000/bb:1".into(),
            auth: auth(),
            platform: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(progress.len(), 2);
    assert_eq!(progress[0].id, "aaa");
    assert_eq!(progress[1].image.as_ref().unwrap().id, "sha256:0001");
    let err = f
        .client
        .pull_image(img::PullImageRequest {
            reference: "nosuch".into(),
            ..Default::default()
        })
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "manifest unknown: nosuch");
    let pushed: Vec<_> = f
        .client
        .push_image(img::PushImageRequest {
            reference: "reg:5000/bb:1".into(),
            auth: auth(),
        })
        .await
        .unwrap()
        .into_inner()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(pushed[0].digest, "sha256:feed");
    f.client
        .login(img::CheckRegistryAuthRequest {
            registry: "reg:5000".into(),
            auth: auth(),
        })
        .await
        .unwrap();
    let err = f
        .client
        .login(img::CheckRegistryAuthRequest {
            registry: "reg:5000".into(),
            auth: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(err.message(), "401 Unauthorized");
    assert_eq!(
        f.take_calls(),
        vec![
            "PullImage reg:5000/bb:1 u:right",
            "PullImage nosuch :",
            "PushImage reg:5000/bb:1",
            "CheckRegistryAuth reg:5000 u",
            "CheckRegistryAuth reg:5000 ",
        ]
    );
}

#[tokio::test]
async fn image_calls_pass_through_and_commit_pauses_a_running_container() {
    use berth_proto::engine::v1::{CommitContainerRequest, ContainerRef};
    let mut f = Fixture::new().await;
    let c = f
        .client
        .create_container(request("cm"))
        .await
        .unwrap()
        .into_inner();
    let id = short(&c.id).to_string();
    f.take_calls();
    let commit = |pause| CommitContainerRequest {
        container: "cm".into(),
        reference: "snap:1".into(),
        changes: vec!["CMD [\"x\"]".into()],
        message: "m".into(),
        author: "me".into(),
        pause,
    };
    // Not running: no pause.
    let image = f.client.commit_container(commit(true)).await.unwrap();
    assert_eq!(image.into_inner().id, "sha256:c0mmit");
    assert_eq!(
        f.take_calls(),
        vec![format!(
            "CommitSnapshot {id} snap:1 cmd=echo hi env=PATH=/bin,A=2 changes=CMD [\"x\"] msg=m author=me"
        )]
    );
    // Running: paused around the commit, unless told not to.
    f.client
        .unpause_container(ContainerRef { id: "cm".into() })
        .await
        .unwrap();
    f.take_calls();
    f.client.commit_container(commit(true)).await.unwrap();
    let calls = f.take_calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[0], format!("PauseContainer {id}"));
    assert!(calls[1].starts_with("CommitSnapshot"));
    assert_eq!(calls[2], format!("UnpauseContainer {id}"));
    f.client.commit_container(commit(false)).await.unwrap();
    let calls = f.take_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let e = f
        .client
        .commit_container(CommitContainerRequest {
            container: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    let mut stream = f
        .client
        .save_images(img::SaveImagesRequest {
            references: vec!["busybox".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let mut data = Vec::new();
    while let Some(c) = stream.message().await.unwrap() {
        data.extend(c.data);
    }
    assert_eq!(data, b"abc");
    let h = f
        .client
        .image_history(img::GetImageRequest {
            reference: "busybox".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.entries[0].id, "sha256:b0x");
    let p = f
        .client
        .prune_images(img::PruneImagesRequest { all: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.space_reclaimed, 5);
    assert_eq!(
        f.take_calls(),
        vec![
            "SaveImages busybox".to_string(),
            "ImageHistory busybox".into(),
            "PruneImages all=true".into(),
        ]
    );
}

const MB: i64 = 1 << 20;

#[tokio::test]
async fn refused_limits_make_nothing() {
    let mut f = Fixture::new().await;
    for (resources, message) in [
        (
            sup::Resources {
                memory: 4 * MB,
                ..Default::default()
            },
            "Minimum memory limit allowed is 6MB",
        ),
        (
            sup::Resources {
                memory_swap: 64 * MB,
                ..Default::default()
            },
            "You should always set the Memory limit when using Memoryswap limit",
        ),
        (
            sup::Resources {
                nano_cpus: 10_000 * 1_000_000_000,
                ..Default::default()
            },
            "Range of CPUs is from 0.01 to",
        ),
        (
            sup::Resources {
                cpuset_cpus: "0-4095".into(),
                ..Default::default()
            },
            "Requested CPUs are not available - requested 0-4095, available: ",
        ),
        (
            sup::Resources {
                device_write_bps: vec![sup::ThrottleDevice {
                    path: "/dev/null".into(),
                    rate: 1,
                    ..Default::default()
                }],
                ..Default::default()
            },
            "Invalid device /dev/null for --device-write-bps: not a block device",
        ),
    ] {
        let mut req = request("limited");
        req.resources = Some(resources);
        let e = f.client.create_container(req.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().starts_with(message), "{}", e.message());
        assert_eq!(f.take_calls(), Vec::<String>::new(), "{message}");
        // Through run too: the status ends the stream, nothing was made.
        let (out, err) = run(&mut f, req, true).await;
        assert!(out.is_empty());
        assert_eq!(err.unwrap().code(), Code::InvalidArgument);
        assert_eq!(f.take_calls(), Vec::<String>::new(), "{message}");
    }
    assert!(f.state.containers.lock().unwrap().is_empty());
}

#[tokio::test]
async fn limits_are_normalized_and_warnings_reach_create_and_run() {
    let mut f = Fixture::new().await;
    let mut req = request("limited");
    req.resources = Some(sup::Resources {
        memory: 64 * MB,
        pids_limit: -1,
        memory_swappiness: Some(-1),
        ..Default::default()
    });
    let c = f.client.create_container(req).await.unwrap().into_inner();
    let r = c.spec.unwrap().resources.unwrap();
    assert_eq!(
        r.memory_swap,
        128 * MB,
        "Docker's default: twice the memory"
    );
    assert_eq!(r.pids_limit, 0);
    assert_eq!(r.memory_swappiness, None);
    assert!(c.warnings.is_empty());

    let mut req = request("unbounded");
    req.resources = Some(sup::Resources {
        oom_kill_disable: true,
        ..Default::default()
    });
    let (out, err) = run(&mut f, req, true).await;
    assert!(err.is_none(), "{err:?}");
    assert!(matches!(&out[0], run_output::Output::ContainerId(_)));
    assert!(
        matches!(&out[1], run_output::Output::Warning(w) if w.starts_with("OOM killer is disabled for the container, but no memory limit is set")),
        "{out:?}"
    );
    assert_eq!(out[2], run_output::Output::Detached(true));
}

#[tokio::test]
async fn update_resolves_checks_the_merged_limits_and_passes_the_change() {
    let mut f = Fixture::new().await;
    let mut req = request("web");
    req.resources = Some(sup::Resources {
        memory: 64 * MB,
        nano_cpus: 500_000_000,
        ..Default::default()
    });
    let c = f.client.create_container(req).await.unwrap().into_inner();
    let id = short(&c.id).to_string();
    f.take_calls();
    let update = |resources: sup::Resources| sup::UpdateResourcesRequest {
        id: "web".into(),
        resources: Some(resources),
    };
    let updated = f
        .client
        .update_container(update(sup::Resources {
            memory: 100 * MB,
            nano_cpus: 1_000_000_000,
            pids_limit: -1,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        f.take_calls(),
        vec![format!(
            "UpdateResources {id} mem={} swap=0 nano=1000000000 pids=-1",
            100 * MB
        )]
    );
    assert_eq!(updated.warnings, vec!["from the supervisor"]);
    assert_eq!(updated.spec.unwrap().resources.unwrap().memory, 100 * MB);

    // Past the swap limit set at create (128 MiB) without a new one: Docker's refusal.
    let e = f
        .client
        .update_container(update(sup::Resources {
            memory: 256 * MB,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message()
            .starts_with("Memory limit should be smaller than already set memoryswap limit"),
        "{}",
        e.message()
    );
    // --cpu-quota over --cpus.
    let e = f
        .client
        .update_container(update(sup::Resources {
            cpu_quota: 50_000,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(
        e.message(),
        "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
    );
    let e = f
        .client
        .update_container(update(sup::Resources::default()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = f
        .client
        .update_container(sup::UpdateResourcesRequest {
            id: "nosuch".into(),
            resources: Some(sup::Resources {
                cpu_shares: 512,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Only the lookups: no refused change reached the supervisor.
    assert!(
        f.take_calls()
            .iter()
            .all(|c| !c.starts_with("UpdateResources")),
        "refused updates were sent"
    );
}

#[tokio::test]
async fn stats_resolve_names_and_relay_the_stream() {
    let mut f = Fixture::new().await;
    let a = f
        .client
        .create_container(request("a"))
        .await
        .unwrap()
        .into_inner();
    let b = f
        .client
        .create_container(request("b"))
        .await
        .unwrap()
        .into_inner();
    f.take_calls();
    let stream = f
        .client
        .container_stats(sup::ContainerStatsRequest {
            ids: vec!["b".into(), a.id[..12].to_string(), "b".into()],
            stream: true,
        })
        .await
        .unwrap()
        .into_inner();
    let samples: Vec<_> = stream.map(|s| s.unwrap().id).collect().await;
    assert_eq!(samples, vec![b.id.clone(), a.id.clone()]);
    assert_eq!(
        f.take_calls(),
        vec![format!(
            "ContainerStats [{:?}, {:?}] stream=true",
            short(&b.id),
            short(&a.id)
        )]
    );
    // All running ones: no names to resolve.
    let stream = f
        .client
        .container_stats(sup::ContainerStatsRequest {
            ids: vec![],
            stream: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.collect::<Vec<_>>().await.len(), 1);
    let e = f
        .client
        .container_stats(sup::ContainerStatsRequest {
            ids: vec!["a".into(), "nosuch".into()],
            stream: true,
        })
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Code::NotFound);
}
