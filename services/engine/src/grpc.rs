//! The gRPC skin over [`Engine`]: each RPC resolves names and translates; the sagas are in
//! [`crate::engine`].
use std::pin::Pin;

use berth_proto::{
    engine::v1::{
        engine_server::Engine as EngineApi, CommitContainerRequest, ContainerDetails,
        ContainerLogsRequest, ContainerRef, CreateContainerRequest, DiskUsageRequest,
        DiskUsageResponse, EventMessage, EventsRequest, PruneContainersRequest,
        PruneContainersResponse, RemoveContainerRequest, RemoveContainerResponse, RunInput,
        RunOutput, SystemInfoRequest, SystemInfoResponse, VersionRequest, VersionResponse,
    },
    image::v1::{
        CheckRegistryAuthRequest, CheckRegistryAuthResponse, CommitSnapshotRequest,
        GetImageRequest, Image, ImageConfig, ImageHistoryResponse, ImportImageResponse,
        ListImagesRequest, ListImagesResponse, LoadImagesResponse, PruneImagesRequest,
        PruneImagesResponse, PullImageRequest, PullProgress, PushImageRequest, PushProgress,
        RemoveImageRequest, RemoveImageResponse, SaveChunk, SaveImagesRequest, TagImageRequest,
        TagImageResponse, UploadChunk,
    },
    logs::v1::{LogEntry, ReadLogsRequest},
    network::v1::{
        Attachment, ConnectContainerRequest, CreateNetworkRequest, DisconnectContainerRequest,
        GetAttachmentRequest, GetNetworkRequest, ListNetworksRequest, ListNetworksResponse,
        NetworkInfo, PruneNetworksRequest, PruneNetworksResponse, RemoveNetworkRequest,
        RemoveNetworkResponse,
    },
    supervisor::v1::{
        attach_input, exec_input, AttachInput, AttachOutput, Container, ContainerStatsRequest,
        ContainerStatsSample, ContainerStatus, ExecInput, ExitStatus, KillContainerRequest,
        ListContainersRequest, ListContainersResponse, PauseContainerRequest,
        RenameContainerRequest, Resources, RestartContainerRequest, StartContainerRequest,
        StopContainerRequest, TopContainerRequest, TopContainerResponse, UnpauseContainerRequest,
        UpdateResourcesRequest, WaitContainerRequest,
    },
    volume::v1::{
        CreateVolumeRequest, GetVolumeRequest, ListVolumesRequest, ListVolumesResponse,
        PruneVolumesRequest, PruneVolumesResponse, RemoveVolumeRequest, RemoveVolumeResponse,
        Volume,
    },
};
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};
use tonic::{Code, Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::{
    engine::{upstream, Engine},
    resources, spec,
};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The client's upload chunks, ending at the first transport error.
fn chunks(inbound: Streaming<UploadChunk>) -> impl Stream<Item = UploadChunk> + Send + 'static {
    inbound.map_while(Result::ok)
}

/// Docker's architecture names.
fn docker_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        other => other,
    }
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[tonic::async_trait]
impl EngineApi for Engine {
    #[tracing::instrument(skip_all)]
    async fn version(
        &self,
        _request: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            api_version: "1.0".to_string(),
            os: std::env::consts::OS.to_string(),
            arch: docker_arch().to_string(),
            kernel_version: kernel_version(),
        }))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name, image = %request.get_ref().image))]
    async fn create_container(
        &self,
        request: Request<CreateContainerRequest>,
    ) -> Result<Response<Container>, Status> {
        Ok(Response::new(self.create(request.into_inner()).await?))
    }

    type RunContainerStream = BoxStream<RunOutput>;

    #[tracing::instrument(skip_all)]
    async fn run_container(
        &self,
        request: Request<Streaming<RunInput>>,
    ) -> Result<Response<Self::RunContainerStream>, Status> {
        let (tx, rx) = mpsc::channel(64);
        let engine = self.clone();
        let inbound = request.into_inner();
        // The run outlives this call: keep it in the caller's trace.
        tokio::spawn(
            async move { engine.run(inbound, tx).await }.instrument(tracing::Span::current()),
        );
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn start_container(
        &self,
        request: Request<ContainerRef>,
    ) -> Result<Response<Container>, Status> {
        let container = self.resolve(&request.into_inner().id).await?;
        let started = self
            .clients
            .supervisor
            .clone()
            .start_container(StartContainerRequest {
                id: container.id.clone(),
            })
            .await
            .map_err(upstream("start container"))?;
        if container.spec.as_ref().is_some_and(|s| s.auto_remove) {
            self.watch_auto_remove(container.id);
        }
        Ok(started)
    }

    type AttachContainerStream = BoxStream<AttachOutput>;

    #[tracing::instrument(skip_all, fields(container_id = tracing::field::Empty))]
    async fn attach_container(
        &self,
        request: Request<Streaming<AttachInput>>,
    ) -> Result<Response<Self::AttachContainerStream>, Status> {
        let mut inbound = request.into_inner();
        let mut start = match inbound.message().await? {
            Some(AttachInput {
                input: Some(attach_input::Input::Start(start)),
            }) => start,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of an attach must be its start",
                ))
            }
        };
        let container = self.resolve(&start.id).await?;
        tracing::Span::current().record("container_id", container.id.as_str());
        start.id = container.id.clone();
        let starts = start.start;
        let first = AttachInput {
            input: Some(attach_input::Input::Start(start)),
        };
        let rest = inbound.map_while(Result::ok);
        let output = self
            .clients
            .supervisor
            .clone()
            .attach(tokio_stream::once(first).chain(rest))
            .await
            .map_err(upstream("attach"))?
            .into_inner();
        if starts && container.spec.as_ref().is_some_and(|s| s.auto_remove) {
            self.watch_auto_remove(container.id);
        }
        Ok(Response::new(Box::pin(output)))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn stop_container(
        &self,
        request: Request<StopContainerRequest>,
    ) -> Result<Response<Container>, Status> {
        let mut req = request.into_inner();
        req.id = self.resolve(&req.id).await?.id;
        self.clients
            .supervisor
            .clone()
            .stop_container(req)
            .await
            .map_err(upstream("stop container"))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn kill_container(
        &self,
        request: Request<KillContainerRequest>,
    ) -> Result<Response<Container>, Status> {
        let mut req = request.into_inner();
        req.id = self.resolve(&req.id).await?.id;
        self.clients
            .supervisor
            .clone()
            .kill_container(req)
            .await
            .map_err(upstream("kill container"))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn wait_container(
        &self,
        request: Request<ContainerRef>,
    ) -> Result<Response<ExitStatus>, Status> {
        let id = self.resolve(&request.into_inner().id).await?.id;
        self.clients
            .supervisor
            .clone()
            .wait_container(WaitContainerRequest { id })
            .await
            .map_err(upstream("wait container"))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn remove_container(
        &self,
        request: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        let req = request.into_inner();
        let container = self.resolve(&req.id).await?;
        let volumes = req.volumes || container.spec.as_ref().is_some_and(|s| s.auto_remove);
        self.remove(&container.id, req.force, volumes).await?;
        Ok(Response::new(RemoveContainerResponse { id: container.id }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_containers(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        self.clients
            .supervisor
            .clone()
            .list_containers(request.into_inner())
            .await
            .map_err(upstream("list containers"))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn inspect_container(
        &self,
        request: Request<ContainerRef>,
    ) -> Result<Response<ContainerDetails>, Status> {
        let container = self.resolve(&request.into_inner().id).await?;
        let log_path = self.log_path(&container).await?;
        let network = match self
            .clients
            .network
            .clone()
            .get_attachment(GetAttachmentRequest {
                container_id: container.id.clone(),
            })
            .await
        {
            Ok(a) => Some(a.into_inner()),
            Err(s) if s.code() == Code::NotFound => None,
            Err(s) => return Err(upstream("network attachment")(s)),
        };
        Ok(Response::new(ContainerDetails {
            container: Some(container),
            log_path,
            network,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn prune_containers(
        &self,
        _request: Request<PruneContainersRequest>,
    ) -> Result<Response<PruneContainersResponse>, Status> {
        Ok(Response::new(PruneContainersResponse {
            deleted: self.prune().await?,
        }))
    }

    type ContainerLogsStream = BoxStream<LogEntry>;

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn container_logs(
        &self,
        request: Request<ContainerLogsRequest>,
    ) -> Result<Response<Self::ContainerLogsStream>, Status> {
        let req = request.into_inner();
        let id = self.resolve(&req.id).await?.id;
        let stream = self
            .clients
            .logs
            .clone()
            .read_logs(ReadLogsRequest {
                container_id: id,
                follow: req.follow,
                tail: req.tail,
                since_unix_nano: req.since_unix_nano,
                until_unix_nano: req.until_unix_nano,
                stdout: true,
                stderr: true,
            })
            .await
            .map_err(upstream("read logs"))?
            .into_inner();
        Ok(Response::new(Box::pin(stream)))
    }

    type ExecContainerStream = BoxStream<AttachOutput>;

    /// Resolves the container, then relays both directions to the supervisor's Exec.
    #[tracing::instrument(skip_all, fields(container_id = tracing::field::Empty))]
    async fn exec_container(
        &self,
        request: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Self::ExecContainerStream>, Status> {
        let mut inbound = request.into_inner();
        let mut start = match inbound.message().await? {
            Some(ExecInput {
                input: Some(exec_input::Input::Start(start)),
            }) => start,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of an exec must be its start",
                ))
            }
        };
        if start.args.is_empty() {
            return Err(Status::invalid_argument("No exec command specified"));
        }
        let container = self.resolve(&start.id).await?;
        tracing::Span::current().record("container_id", container.id.as_str());
        start.id = container.id;
        let first = ExecInput {
            input: Some(exec_input::Input::Start(start)),
        };
        let rest = inbound.map_while(Result::ok);
        let output = self
            .clients
            .supervisor
            .clone()
            .exec(tokio_stream::once(first).chain(rest))
            .await
            .map_err(upstream("exec"))?
            .into_inner();
        Ok(Response::new(Box::pin(output)))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn pause_container(
        &self,
        request: Request<ContainerRef>,
    ) -> Result<Response<Container>, Status> {
        let id = self.resolve(&request.into_inner().id).await?.id;
        self.clients
            .supervisor
            .clone()
            .pause_container(PauseContainerRequest { id })
            .await
            .map_err(upstream("pause container"))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn unpause_container(
        &self,
        request: Request<ContainerRef>,
    ) -> Result<Response<Container>, Status> {
        let id = self.resolve(&request.into_inner().id).await?.id;
        self.clients
            .supervisor
            .clone()
            .unpause_container(UnpauseContainerRequest { id })
            .await
            .map_err(upstream("unpause container"))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn top_container(
        &self,
        request: Request<TopContainerRequest>,
    ) -> Result<Response<TopContainerResponse>, Status> {
        let mut req = request.into_inner();
        req.id = self.resolve(&req.id).await?.id;
        self.clients
            .supervisor
            .clone()
            .top_container(req)
            .await
            .map_err(upstream("top container"))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id, new_name = %request.get_ref().new_name))]
    async fn rename_container(
        &self,
        request: Request<RenameContainerRequest>,
    ) -> Result<Response<Container>, Status> {
        let mut req = request.into_inner();
        if req.id.is_empty() || req.new_name.trim_start_matches('/').is_empty() {
            return Err(Status::invalid_argument(
                "Neither old nor new names may be empty",
            ));
        }
        req.new_name = spec::validate_name(&req.new_name)?.to_string();
        req.id = self.resolve(&req.id).await?.id;
        self.clients
            .supervisor
            .clone()
            .rename_container(req)
            .await
            .map_err(upstream("rename container"))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn restart_container(
        &self,
        request: Request<RestartContainerRequest>,
    ) -> Result<Response<Container>, Status> {
        let mut req = request.into_inner();
        let container = self.resolve(&req.id).await?;
        req.id = container.id.clone();
        let restarted = self
            .clients
            .supervisor
            .clone()
            .restart_container(req)
            .await
            .map_err(upstream("restart container"))?;
        if container.spec.as_ref().is_some_and(|s| s.auto_remove) {
            self.watch_auto_remove(container.id);
        }
        Ok(restarted)
    }

    #[tracing::instrument(skip_all)]
    async fn list_images(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        self.clients
            .images
            .clone()
            .list_images(request.into_inner())
            .await
            .map_err(upstream("list images"))
    }

    #[tracing::instrument(skip_all, fields(image = %request.get_ref().reference))]
    async fn inspect_image(
        &self,
        request: Request<GetImageRequest>,
    ) -> Result<Response<Image>, Status> {
        self.clients
            .images
            .clone()
            .get_image(request.into_inner())
            .await
            .map_err(upstream("inspect image"))
    }

    #[tracing::instrument(skip_all)]
    async fn import_image(
        &self,
        request: Request<Streaming<UploadChunk>>,
    ) -> Result<Response<ImportImageResponse>, Status> {
        self.clients
            .images
            .clone()
            .import_image(chunks(request.into_inner()))
            .await
            .map_err(upstream("import image"))
    }

    #[tracing::instrument(skip_all)]
    async fn load_images(
        &self,
        request: Request<Streaming<UploadChunk>>,
    ) -> Result<Response<LoadImagesResponse>, Status> {
        self.clients
            .images
            .clone()
            .load_images(chunks(request.into_inner()))
            .await
            .map_err(upstream("load images"))
    }

    #[tracing::instrument(skip_all, fields(source = %request.get_ref().source, target = %request.get_ref().target))]
    async fn tag_image(
        &self,
        request: Request<TagImageRequest>,
    ) -> Result<Response<TagImageResponse>, Status> {
        self.clients
            .images
            .clone()
            .tag_image(request.into_inner())
            .await
            .map_err(upstream("tag image"))
    }

    /// The image store enforces "in use" against its snapshots.
    #[tracing::instrument(skip_all, fields(image = %request.get_ref().reference))]
    async fn remove_image(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        self.clients
            .images
            .clone()
            .remove_image(request.into_inner())
            .await
            .map_err(upstream("remove image"))
    }

    type PullImageStream = BoxStream<PullProgress>;

    /// Relays the image store's pull progress; the credentials pass through untouched.
    #[tracing::instrument(skip_all, fields(image = %request.get_ref().reference))]
    async fn pull_image(
        &self,
        request: Request<PullImageRequest>,
    ) -> Result<Response<Self::PullImageStream>, Status> {
        let stream = self
            .clients
            .images
            .clone()
            .pull_image(request.into_inner())
            .await
            .map_err(upstream("pull image"))?
            .into_inner();
        Ok(Response::new(Box::pin(stream)))
    }

    type PushImageStream = BoxStream<PushProgress>;

    #[tracing::instrument(skip_all, fields(image = %request.get_ref().reference))]
    async fn push_image(
        &self,
        request: Request<PushImageRequest>,
    ) -> Result<Response<Self::PushImageStream>, Status> {
        let stream = self
            .clients
            .images
            .clone()
            .push_image(request.into_inner())
            .await
            .map_err(upstream("push image"))?
            .into_inner();
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(skip_all, fields(registry = %request.get_ref().registry))]
    async fn login(
        &self,
        request: Request<CheckRegistryAuthRequest>,
    ) -> Result<Response<CheckRegistryAuthResponse>, Status> {
        self.clients
            .images
            .clone()
            .check_registry_auth(request.into_inner())
            .await
            .map_err(upstream("login"))
    }

    type SaveImagesStream = BoxStream<SaveChunk>;

    #[tracing::instrument(skip_all)]
    async fn save_images(
        &self,
        request: Request<SaveImagesRequest>,
    ) -> Result<Response<Self::SaveImagesStream>, Status> {
        let stream = self
            .clients
            .images
            .clone()
            .save_images(request.into_inner())
            .await
            .map_err(upstream("save images"))?
            .into_inner();
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(skip_all, fields(image = %request.get_ref().reference))]
    async fn image_history(
        &self,
        request: Request<GetImageRequest>,
    ) -> Result<Response<ImageHistoryResponse>, Status> {
        self.clients
            .images
            .clone()
            .image_history(request.into_inner())
            .await
            .map_err(upstream("image history"))
    }

    #[tracing::instrument(skip_all, fields(all = request.get_ref().all))]
    async fn prune_images(
        &self,
        request: Request<PruneImagesRequest>,
    ) -> Result<Response<PruneImagesResponse>, Status> {
        self.clients
            .images
            .clone()
            .prune_images(request.into_inner())
            .await
            .map_err(upstream("prune images"))
    }

    /// Resolves the container, pauses it if asked and running, and commits its writable
    /// layer with the configuration from its spec.
    #[tracing::instrument(skip_all, fields(container = %request.get_ref().container))]
    async fn commit_container(
        &self,
        request: Request<CommitContainerRequest>,
    ) -> Result<Response<Image>, Status> {
        let req = request.into_inner();
        let container = self.resolve(&req.container).await?;
        let spec = container.spec.clone().unwrap_or_default();
        let running = container
            .state
            .as_ref()
            .is_some_and(|s| s.status == ContainerStatus::Running as i32);
        let pause = req.pause && running;
        let mut supervisor = self.clients.supervisor.clone();
        if pause {
            supervisor
                .pause_container(PauseContainerRequest {
                    id: container.id.clone(),
                })
                .await
                .map_err(upstream("pause container"))?;
        }
        let commit = CommitSnapshotRequest {
            key: container.id.clone(),
            reference: req.reference,
            changes: req.changes,
            message: req.message,
            author: req.author,
            config: Some(ImageConfig {
                env: spec.env,
                cmd: spec.cmd,
                entrypoint: spec.entrypoint,
                working_dir: spec.working_dir,
                user: spec.user,
                labels: spec.labels,
                ..Default::default()
            }),
        };
        let result = self
            .clients
            .images
            .clone()
            .commit_snapshot(commit)
            .await
            .map_err(upstream("commit container"));
        if pause {
            let unpaused = supervisor
                .unpause_container(UnpauseContainerRequest {
                    id: container.id.clone(),
                })
                .await
                .map_err(upstream("unpause container"));
            if let (Ok(_), Err(e)) = (&result, unpaused) {
                return Err(e);
            }
        }
        result
    }

    #[tracing::instrument(skip_all, fields(volume = %request.get_ref().name))]
    async fn create_volume(
        &self,
        request: Request<CreateVolumeRequest>,
    ) -> Result<Response<Volume>, Status> {
        self.clients
            .volumes
            .clone()
            .create_volume(request.into_inner())
            .await
            .map_err(upstream("create volume"))
    }

    #[tracing::instrument(skip_all, fields(volume = %request.get_ref().name))]
    async fn inspect_volume(
        &self,
        request: Request<GetVolumeRequest>,
    ) -> Result<Response<Volume>, Status> {
        self.clients
            .volumes
            .clone()
            .get_volume(request.into_inner())
            .await
            .map_err(upstream("inspect volume"))
    }

    #[tracing::instrument(skip_all)]
    async fn list_volumes(
        &self,
        request: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        self.clients
            .volumes
            .clone()
            .list_volumes(request.into_inner())
            .await
            .map_err(upstream("list volumes"))
    }

    #[tracing::instrument(skip_all, fields(volume = %request.get_ref().name))]
    async fn remove_volume(
        &self,
        request: Request<RemoveVolumeRequest>,
    ) -> Result<Response<RemoveVolumeResponse>, Status> {
        let name = request.get_ref().name.clone();
        match self
            .clients
            .volumes
            .clone()
            .remove_volume(request.into_inner())
            .await
        {
            // The volume service knows its users by ID; add their names for the person.
            Err(s) if s.code() == Code::FailedPrecondition => {
                Err(self.name_volume_users(&name, s).await)
            }
            r => r.map_err(upstream("remove volume")),
        }
    }

    #[tracing::instrument(skip_all, fields(all = request.get_ref().all))]
    async fn prune_volumes(
        &self,
        request: Request<PruneVolumesRequest>,
    ) -> Result<Response<PruneVolumesResponse>, Status> {
        self.clients
            .volumes
            .clone()
            .prune_volumes(request.into_inner())
            .await
            .map_err(upstream("prune volumes"))
    }

    #[tracing::instrument(skip_all, fields(filters = ?request.get_ref().filters))]
    async fn list_networks(
        &self,
        request: Request<ListNetworksRequest>,
    ) -> Result<Response<ListNetworksResponse>, Status> {
        self.clients
            .network
            .clone()
            .list_networks(request.into_inner())
            .await
            .map_err(upstream("list networks"))
    }

    #[tracing::instrument(skip_all, fields(network = %request.get_ref().name))]
    async fn inspect_network(
        &self,
        request: Request<GetNetworkRequest>,
    ) -> Result<Response<NetworkInfo>, Status> {
        self.clients
            .network
            .clone()
            .get_network(request.into_inner())
            .await
            .map_err(upstream("inspect network"))
    }

    #[tracing::instrument(skip_all, fields(network = %request.get_ref().name, driver = %request.get_ref().driver))]
    async fn create_network(
        &self,
        request: Request<CreateNetworkRequest>,
    ) -> Result<Response<NetworkInfo>, Status> {
        self.clients
            .network
            .clone()
            .create_network(request.into_inner())
            .await
            .map_err(upstream("create network"))
    }

    #[tracing::instrument(skip_all, fields(network = %request.get_ref().name))]
    async fn remove_network(
        &self,
        request: Request<RemoveNetworkRequest>,
    ) -> Result<Response<RemoveNetworkResponse>, Status> {
        self.clients
            .network
            .clone()
            .remove_network(request.into_inner())
            .await
            .map_err(upstream("remove network"))
    }

    #[tracing::instrument(skip_all, fields(filters = ?request.get_ref().filters))]
    async fn prune_networks(
        &self,
        request: Request<PruneNetworksRequest>,
    ) -> Result<Response<PruneNetworksResponse>, Status> {
        self.clients
            .network
            .clone()
            .prune_networks(request.into_inner())
            .await
            .map_err(upstream("prune networks"))
    }

    // The span is in Engine::connect_network.
    async fn connect_network(
        &self,
        request: Request<ConnectContainerRequest>,
    ) -> Result<Response<Attachment>, Status> {
        Ok(Response::new(
            Engine::connect_network(self, request.into_inner()).await?,
        ))
    }

    // The span is in Engine::disconnect_network.
    async fn disconnect_network(
        &self,
        request: Request<DisconnectContainerRequest>,
    ) -> Result<Response<Attachment>, Status> {
        Ok(Response::new(
            Engine::disconnect_network(self, request.into_inner()).await?,
        ))
    }

    /// Resolves the container, checks the change against its current limits (Docker's
    /// rules on the merged result), then has the supervisor apply it, live when it runs.
    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn update_container(
        &self,
        request: Request<UpdateResourcesRequest>,
    ) -> Result<Response<Container>, Status> {
        let req = request.into_inner();
        let mut change = req.resources.unwrap_or_default();
        if change == Resources::default() {
            return Err(Status::invalid_argument(
                "You must provide one or more flags when using this command.",
            ));
        }
        let container = self.resolve(&req.id).await?;
        let current = container
            .spec
            .as_ref()
            .and_then(|s| s.resources.clone())
            .unwrap_or_default();
        let warnings = resources::check_update(
            &current,
            &mut change,
            &resources::Host::current(),
            &resources::block_device,
        )?;
        let mut updated = self
            .clients
            .supervisor
            .clone()
            .update_resources(UpdateResourcesRequest {
                id: container.id,
                resources: Some(change),
            })
            .await
            .map_err(upstream("update container"))?
            .into_inner();
        updated.warnings.splice(0..0, warnings);
        tracing::info!(id = %updated.id, "resources updated");
        Ok(Response::new(updated))
    }

    type ContainerStatsStream = BoxStream<ContainerStatsSample>;

    /// Resolves the names to IDs (an unknown one fails the call before anything streams)
    /// and relays the supervisor's samples: one stream for all the containers.
    #[tracing::instrument(skip_all, fields(stream = request.get_ref().stream, containers = request.get_ref().ids.len()))]
    async fn container_stats(
        &self,
        request: Request<ContainerStatsRequest>,
    ) -> Result<Response<Self::ContainerStatsStream>, Status> {
        let mut req = request.into_inner();
        let mut ids = Vec::with_capacity(req.ids.len());
        for reference in &req.ids {
            let id = self.resolve(reference).await?.id;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        req.ids = ids;
        let stream = self
            .clients
            .supervisor
            .clone()
            .container_stats(req)
            .await
            .map_err(upstream("container stats"))?
            .into_inner()
            .map(|r| r.map_err(upstream("container stats")));
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(skip_all)]
    async fn system_info(
        &self,
        _request: Request<SystemInfoRequest>,
    ) -> Result<Response<SystemInfoResponse>, Status> {
        let version = self
            .version(Request::new(VersionRequest {}))
            .await?
            .into_inner();
        Ok(Response::new(self.info_facts(version).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn disk_usage(
        &self,
        _request: Request<DiskUsageRequest>,
    ) -> Result<Response<DiskUsageResponse>, Status> {
        Ok(Response::new(self.measure_disk_usage().await?))
    }

    type EventsStream = BoxStream<EventMessage>;

    #[tracing::instrument(skip_all, fields(since = request.get_ref().since_time_nano, until = request.get_ref().until_time_nano))]
    async fn events(
        &self,
        request: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        let stream = crate::events::stream(self.clients.events.clone(), request.get_ref())?;
        Ok(Response::new(Box::pin(stream)))
    }
}

impl Engine {
    /// `status` (a refused volume removal) with the names of the volume's users appended;
    /// unchanged when they cannot be looked up.
    async fn name_volume_users(&self, volume: &str, status: Status) -> Status {
        let Ok(v) = self
            .clients
            .volumes
            .clone()
            .get_volume(GetVolumeRequest {
                name: volume.to_string(),
            })
            .await
        else {
            return status;
        };
        let mut names = Vec::new();
        for id in &v.get_ref().used_by {
            match self.resolve(id).await {
                Ok(c) if !c.name.is_empty() => names.push(c.name),
                _ => names.push(id.get(..12).unwrap_or(id).to_string()),
            }
        }
        if names.is_empty() {
            return status;
        }
        Status::with_details_and_metadata(
            status.code(),
            format!("{} (containers: {})", status.message(), names.join(", ")),
            status.details().to_vec().into(),
            status.metadata().clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_facts() {
        assert!(!docker_arch().is_empty());
        assert!(!kernel_version().is_empty());
    }
}
