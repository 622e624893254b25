//! The engine's sagas against in-process fakes of the image store, supervisor, volume
//! service and log router (and the real network service in `host` mode), all served on
//! Unix sockets: the order of the steps, the compensations of a failed create, the removal
//! after a failed start and `--rm`.
use std::{
    collections::HashMap,
    path::Path,
    pin::Pin,
    sync::{Arc, Mutex},
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
}

struct Fixture {
    _dir: tempfile::TempDir,
    calls: Calls,
    state: SupervisorState,
    client: EngineClient<tonic::transport::Channel>,
    network: berth_network::NetworkService,
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
            instance: "berth-et".into(),
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
        }
    }

    fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
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
            format!("PrepareMounts {id} 1"),
            format!("OpenLog {id}"),
            format!("PrepareSnapshot {id} sha256:b0x"),
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
            format!("RemoveSnapshot {id}"),
            format!("CloseLog {id}"),
            format!("ReleaseMounts {id}"),
            format!("RemoveVolume anon-{id}"),
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
        calls.last().unwrap().starts_with("RemoveVolume anon-"),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| c.starts_with("PrepareSnapshot")),
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
        (Code::InvalidArgument, "network foo not found")
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
