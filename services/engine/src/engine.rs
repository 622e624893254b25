//! The engine's operations: the create, run and remove sagas, resolution of names, and
//! the watchers that remove detached `--rm` containers when they exit.
use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use berth_common::{config::LogsConfig, ids, status::context, Config};
use berth_proto::{
    engine::v1::{run_input, run_output, CreateContainerRequest, RunInput, RunOutput, RunStart},
    image::v1::{GetImageRequest, PrepareSnapshotRequest, RemoveSnapshotRequest},
    logs::v1::{CloseLogRequest, InspectLogRequest, OpenLogRequest},
    network::v1::{AttachContainerRequest, DetachContainerRequest, EndpointConfig},
    supervisor::v1::{
        attach_input, attach_output, AttachInput, AttachStart, Container, ContainerStatus,
        CreateContainerRequest as SupervisorCreate, GetContainerRequest, ListContainersRequest,
        LogConfig, RemoveContainerRequest as SupervisorRemove, StartContainerRequest,
        WaitContainerRequest,
    },
    volume::v1::{MountSpec, PrepareMountsRequest, ReleaseMountsRequest, RemoveVolumeRequest},
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};
use tracing::Instrument;

use crate::{
    clients::Clients,
    ports,
    resources::{self, Host},
    saga::{Failures, UndoStack},
    spec,
};

/// Keeps a user-facing status as it is (the CLI prints its message); adds which step
/// failed to the others (unavailable services, internal errors). Code and metadata stay.
pub fn upstream(what: &'static str) -> impl Fn(Status) -> Status {
    move |status| match status.code() {
        Code::NotFound
        | Code::AlreadyExists
        | Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::Cancelled => status,
        Code::Unavailable => context(status, &format!("{what}: service unavailable")),
        _ => context(status, what),
    }
}

#[derive(Clone)]
pub struct Engine {
    pub clients: Clients,
    /// Containers with a waiter that removes them on exit (detached `--rm`).
    watched: Arc<Mutex<HashSet<String>>>,
    /// The configuration file's `[logs]`: driver and options for containers naming none.
    log_defaults: Arc<LogsConfig>,
}

impl Engine {
    pub fn new(config: &Config) -> Engine {
        Engine::with_clients(Clients::new(config))
    }

    pub fn with_clients(clients: Clients) -> Engine {
        Engine {
            clients,
            watched: Arc::default(),
            log_defaults: Arc::default(),
        }
    }

    /// Containers naming no log driver get these (Docker's daemon `log-driver`/`log-opts`).
    pub fn with_log_defaults(mut self, logs: LogsConfig) -> Engine {
        self.log_defaults = Arc::new(logs);
        self
    }

    /// A container by name, full ID or unique ID prefix.
    pub async fn resolve(&self, reference: &str) -> Result<Container, Status> {
        let mut supervisor = self.clients.supervisor.clone();
        Ok(supervisor
            .get_container(GetContainerRequest {
                id: reference.to_string(),
            })
            .await
            .map_err(upstream("look up container"))?
            .into_inner())
    }

    /// The create saga: image → name check → network → snapshot → volumes → log → record.
    /// A failure undoes the steps taken, in reverse, and leaves nothing.
    #[tracing::instrument(skip_all, fields(name = %req.name, image = %req.image, id = tracing::field::Empty))]
    pub async fn create(&self, mut req: CreateContainerRequest) -> Result<Container, Status> {
        let c = self.clients.clone();
        req.name = spec::validate_name(&req.name)?.to_string();
        spec::restart_policy(&req)?;
        // The limits first: a refused value leaves nothing behind.
        let warnings = match req.resources.as_mut() {
            Some(r) => resources::check_create(r, &Host::current(), &resources::block_device)?,
            None => Vec::new(),
        };
        if req.image.is_empty() {
            return Err(Status::invalid_argument("no image specified"));
        }
        let image = c
            .images
            .clone()
            .get_image(GetImageRequest {
                reference: req.image.clone(),
            })
            .await
            .map_err(upstream("resolve image"))?
            .into_inner();
        let config = image.config.clone().unwrap_or_default();
        let own_log = req.log_config.clone().unwrap_or_default();
        let (driver, options) = self
            .log_defaults
            .effective(&own_log.driver, &own_log.options);
        req.log_config = Some(LogConfig { driver, options });
        // Fail early on a bad command, before anything is made.
        spec::command(&config, req.entrypoint.as_ref(), req.cmd.as_ref())?;
        if !req.name.is_empty() {
            match c
                .supervisor
                .clone()
                .get_container(GetContainerRequest {
                    id: req.name.clone(),
                })
                .await
            {
                Ok(existing) if existing.get_ref().name == req.name => {
                    let id = &existing.get_ref().id;
                    return Err(Status::already_exists(format!(
                        "Conflict. The container name \"/{}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.",
                        req.name
                    )));
                }
                Ok(_) => {}
                Err(s) if s.code() == Code::NotFound => {}
                Err(s) => return Err(upstream("check the container name")(s)),
            }
        }
        let id = ids::random_id();
        tracing::Span::current().record("id", id.as_str());
        let mode = match req.network.strip_prefix("container:") {
            Some(target) => {
                let owner = self.resolve(target).await?;
                format!("container:{}", owner.id)
            }
            None => req.network.clone(),
        };
        let ports =
            ports::bindings(&req, &config).map_err(|e| Status::invalid_argument(e.to_string()))?;
        // The supervisor names an unnamed container only when it records it: link
        // variables then use the short ID where Docker has the generated name.
        let own_name = if req.name.is_empty() {
            id.get(..12).unwrap_or(&id)
        } else {
            req.name.as_str()
        };
        let links = self.resolve_links(&req.links, own_name, &mode).await?;
        let mounts = self.expand_volumes_from(&req.mounts).await?;

        let mut undo = UndoStack::new();
        // Registered first: the attach may have happened even when its reply is lost.
        undo_network(&mut undo, &c, &id);
        let attachment = match c
            .network
            .clone()
            .attach_container(AttachContainerRequest {
                container_id: id.clone(),
                mode,
                hostname: req.hostname.clone(),
                container_name: req.name.clone(),
                endpoint: Some(EndpointConfig {
                    aliases: req.network_aliases.clone(),
                    ipv4_address: req.ipv4_address.clone(),
                    mac_address: req.mac_address.clone(),
                }),
                ports,
                links: links.links,
            })
            .await
        {
            Ok(a) => a.into_inner(),
            Err(s) => return Err(undo.fail(upstream("attach network")(s)).await),
        };

        let snaps = c.clone();
        let snap_id = id.clone();
        undo.push("remove snapshot", move || async move {
            snaps
                .images
                .clone()
                .remove_snapshot(RemoveSnapshotRequest { key: snap_id })
                .await
                .map(drop)
        });
        let snapshot = match c
            .images
            .clone()
            .prepare_snapshot(PrepareSnapshotRequest {
                key: id.clone(),
                image: image.id.clone(),
            })
            .await
        {
            Ok(s) => s.into_inner(),
            Err(s) => return Err(undo.fail(upstream("prepare snapshot")(s)).await),
        };

        // After the snapshot: the volume service reads the image's layers for copy-up.
        let specs = spec::mounts_with_image_volumes(&config, &mounts);
        undo_mounts(&mut undo, &c, &id);
        let resolved = match c
            .volumes
            .clone()
            .prepare_mounts(PrepareMountsRequest {
                container_id: id.clone(),
                mounts: specs,
                image_lower_dirs: snapshot.lower_dirs.clone(),
            })
            .await
        {
            Ok(r) => r.into_inner().mounts,
            Err(s) => return Err(undo.fail(upstream("prepare mounts")(s)).await),
        };

        let log_config = req.log_config.clone().unwrap_or_default();
        let logs = c.clone();
        let log_id = id.clone();
        undo.push("close log", move || async move {
            logs.logs
                .clone()
                .close_log(CloseLogRequest {
                    container_id: log_id,
                })
                .await
                .map(drop)
        });
        if let Err(s) = c
            .logs
            .clone()
            .open_log(OpenLogRequest {
                container_id: id.clone(),
                container_name: req.name.clone(),
                image: req.image.clone(),
                image_id: image.id.clone(),
                driver: log_config.driver.clone(),
                options: log_config.options.clone(),
                labels: spec::merge_labels(&config.labels, &req.labels),
                env: spec::merge_env(&spec::merge_env(&config.env, &links.env), &req.env),
            })
            .await
        {
            return Err(undo.fail(upstream("open log")(s)).await);
        }

        let spec = match spec::build(&req, &image, &snapshot, &resolved, &attachment, &links.env) {
            Ok(spec) => spec,
            Err(s) => return Err(undo.fail(s).await),
        };
        let sup = c.clone();
        let sup_id = id.clone();
        undo.push("remove record", move || async move {
            match sup
                .supervisor
                .clone()
                .remove_container(SupervisorRemove {
                    id: sup_id,
                    force: true,
                })
                .await
            {
                Ok(_) => Ok(()),
                Err(s) if s.code() == Code::NotFound => Ok(()),
                Err(s) => Err(s),
            }
        });
        match c
            .supervisor
            .clone()
            .create_container(SupervisorCreate {
                id: id.clone(),
                name: req.name.clone(),
                spec: Some(spec),
            })
            .await
        {
            Ok(container) => {
                undo.commit();
                let mut container = container.into_inner();
                // The engine's warnings first, then the supervisor's (limits the kernel
                // cannot apply).
                container.warnings.splice(0..0, warnings);
                tracing::info!(id = %container.id, name = %container.name, "created");
                Ok(container)
            }
            Err(s) => Err(undo.fail(upstream("create container record")(s)).await),
        }
    }

    /// The request's mounts with each `--volumes-from` entry replaced by that container's
    /// volumes and binds at the same paths; the request's own mounts win a shared path.
    async fn expand_volumes_from(&self, mounts: &[MountSpec]) -> Result<Vec<MountSpec>, Status> {
        let (from, explicit): (Vec<&MountSpec>, Vec<&MountSpec>) =
            mounts.iter().partition(|m| !m.volumes_from.is_empty());
        let mut inherited = Vec::new();
        for m in from {
            let (name, read_only) = spec::parse_volumes_from(&m.volumes_from)?;
            let source = self.resolve(name).await?;
            let source_mounts = source.spec.map(|s| s.mounts).unwrap_or_default();
            inherited.extend(spec::inherited_mounts(&source_mounts, read_only));
        }
        Ok(spec::merge_mounts(
            explicit.into_iter().cloned().collect(),
            inherited,
        ))
    }

    /// The remove saga: record (refused while running unless `force`) → snapshot → log →
    /// network → volumes (anonymous ones removed with `volumes`). After the record is gone
    /// the teardown goes on through failures and reports all of them.
    #[tracing::instrument(skip(self))]
    pub async fn remove(&self, id: &str, force: bool, volumes: bool) -> Result<(), Status> {
        let c = self.clients.clone();
        match c
            .supervisor
            .clone()
            .remove_container(SupervisorRemove {
                id: id.to_string(),
                force,
            })
            .await
        {
            Ok(_) => {}
            // Already gone (a retry, or a race with another remover): finish the teardown.
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => return Err(upstream("remove container record")(s)),
        }
        let mut failures = Failures::default();
        let r = c
            .images
            .clone()
            .remove_snapshot(RemoveSnapshotRequest {
                key: id.to_string(),
            })
            .await;
        failures.check("remove snapshot", r);
        let r = c
            .logs
            .clone()
            .close_log(CloseLogRequest {
                container_id: id.to_string(),
            })
            .await;
        failures.check("close log", r);
        let r = c
            .network
            .clone()
            .detach_container(DetachContainerRequest {
                container_id: id.to_string(),
            })
            .await;
        failures.check("detach network", r);
        let released = c
            .volumes
            .clone()
            .release_mounts(ReleaseMountsRequest {
                container_id: id.to_string(),
            })
            .await;
        if let Some(released) = failures.check("release mounts", released) {
            if volumes {
                for name in released.into_inner().anonymous_volumes {
                    let r = c
                        .volumes
                        .clone()
                        .remove_volume(RemoveVolumeRequest {
                            name: name.clone(),
                            force: false,
                        })
                        .await;
                    failures.check(&format!("remove volume {name}"), r);
                }
            }
        }
        tracing::info!(id, failures = failures.len(), "removed");
        failures.into_result()
    }

    /// The file `logs` reads, as the log router reports it; empty when the driver keeps
    /// nothing locally or the router has no log for the container.
    pub async fn log_path(&self, container: &Container) -> Result<String, Status> {
        match self
            .clients
            .logs
            .clone()
            .inspect_log(InspectLogRequest {
                container_id: container.id.clone(),
            })
            .await
        {
            Ok(r) => Ok(r.into_inner().log_path),
            Err(s) if s.code() == Code::NotFound => Ok(String::new()),
            Err(s) => Err(upstream("log path")(s)),
        }
    }

    /// Removes `id` (and its anonymous volumes) when it exits; one waiter per container.
    /// If the engine restarts meanwhile, [`Engine::rescan_auto_remove`] takes over.
    pub fn watch_auto_remove(&self, id: String) {
        if !self
            .watched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone())
        {
            return;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                let r = engine
                    .clients
                    .supervisor
                    .clone()
                    .wait_container(WaitContainerRequest { id: id.clone() })
                    .await;
                match r {
                    Ok(_) => {
                        // Restarted meanwhile (`berth restart`) or paused: it is not over,
                        // wait again (backing off in case the wait returns at once).
                        let again = engine.resolve(&id).await.ok().and_then(|c| c.state);
                        if again.is_some_and(|s| {
                            [
                                ContainerStatus::Running,
                                ContainerStatus::Paused,
                                ContainerStatus::Restarting,
                            ]
                            .map(|st| st as i32)
                            .contains(&s.status)
                        }) {
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(1));
                            continue;
                        }
                        // No request is behind it: the removal is a trace of its own.
                        let span =
                            tracing::info_span!(parent: None, "auto-remove", container_id = %id);
                        let removed = engine.remove(&id, true, true).instrument(span).await;
                        if let Err(e) = removed {
                            tracing::warn!(%id, error = %e.message(), "auto-remove failed");
                        }
                        break;
                    }
                    Err(s) if s.code() == Code::NotFound => break,
                    Err(s) => {
                        // The supervisor is restarting: wait for it again.
                        tracing::debug!(%id, error = %s.message(), "waiting for the container again");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(5));
                    }
                }
            }
            engine
                .watched
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        });
    }

    /// At start-up: removes exited `--rm` containers and watches running ones, so an engine
    /// restart loses no auto-remove. Retries while the supervisor is not up yet.
    pub async fn rescan_auto_remove(&self) {
        let mut delay = Duration::from_millis(100);
        let containers = loop {
            match self
                .clients
                .supervisor
                .clone()
                .list_containers(ListContainersRequest { all: true })
                .await
            {
                Ok(r) => break r.into_inner().containers,
                Err(s) if delay < Duration::from_secs(30) => {
                    tracing::debug!(error = %s.message(), "supervisor not ready for the auto-remove scan");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(s) => {
                    tracing::warn!(error = %s.message(), "auto-remove scan gave up");
                    return;
                }
            }
        };
        for container in containers {
            if !container.spec.as_ref().is_some_and(|s| s.auto_remove) {
                continue;
            }
            let status = container.state.as_ref().map_or(0, |s| s.status);
            if status == ContainerStatus::Running as i32
                || status == ContainerStatus::Restarting as i32
                || status == ContainerStatus::Paused as i32
            {
                self.watch_auto_remove(container.id);
            } else if status == ContainerStatus::Exited as i32
                || status == ContainerStatus::Dead as i32
            {
                if let Err(e) = self.remove(&container.id, true, true).await {
                    tracing::warn!(id = %container.id, error = %e.message(), "auto-remove failed");
                }
            }
        }
    }

    /// Every container the supervisor records, running or not.
    pub async fn all_containers(&self) -> Result<Vec<Container>, Status> {
        Ok(self
            .clients
            .supervisor
            .clone()
            .list_containers(ListContainersRequest { all: true })
            .await
            .map_err(upstream("list containers"))?
            .into_inner()
            .containers)
    }

    /// Removes every stopped container (exited, created, dead).
    pub async fn prune(&self) -> Result<Vec<String>, Status> {
        let containers = self.all_containers().await?;
        let stopped = [
            ContainerStatus::Exited,
            ContainerStatus::Created,
            ContainerStatus::Dead,
        ]
        .map(|s| s as i32);
        let mut deleted = Vec::new();
        let mut failures = Failures::default();
        for c in containers {
            if stopped.contains(&c.state.as_ref().map_or(0, |s| s.status)) {
                match self.remove(&c.id, false, false).await {
                    Ok(()) => deleted.push(c.id),
                    // Started meanwhile: not stopped any more, not an error.
                    Err(s) if s.code() == Code::FailedPrecondition => {}
                    Err(s) => failures.push(format!("remove {}", c.id), s),
                }
            }
        }
        if deleted.is_empty() {
            failures.into_result()?;
        } else if !failures.is_empty() {
            tracing::warn!(?failures, "prune: some containers were not removed");
        }
        Ok(deleted)
    }

    /// The run saga, driving one RunContainer call: reads the client's inputs from
    /// `inbound`, sends the outputs to `out`. Errors end the stream as its status.
    #[tracing::instrument(skip_all, fields(id = tracing::field::Empty))]
    pub async fn run(
        &self,
        mut inbound: Streaming<RunInput>,
        out: mpsc::Sender<Result<RunOutput, Status>>,
    ) {
        let start = match inbound.message().await {
            Ok(Some(RunInput {
                input: Some(run_input::Input::Start(start)),
            })) => start,
            Ok(_) => {
                let _ = out
                    .send(Err(Status::invalid_argument(
                        "the first message of a run must be its start",
                    )))
                    .await;
                return;
            }
            Err(s) => {
                let _ = out.send(Err(s)).await;
                return;
            }
        };
        if let Err(status) = self.run_started(start, inbound, &out).await {
            let _ = out.send(Err(status)).await;
        }
    }

    async fn run_started(
        &self,
        start: RunStart,
        inbound: Streaming<RunInput>,
        out: &mpsc::Sender<Result<RunOutput, Status>>,
    ) -> Result<(), Status> {
        let create = start.create.unwrap_or_default();
        let auto_remove = create.auto_remove;
        let container = self.create(create).await?;
        let id = container.id.clone();
        tracing::Span::current().record("id", id.as_str());
        send(out, run_output::Output::ContainerId(id.clone())).await;
        for w in &container.warnings {
            send(out, run_output::Output::Warning(w.clone())).await;
        }

        if start.detach {
            match self
                .clients
                .supervisor
                .clone()
                .start_container(StartContainerRequest { id: id.clone() })
                .await
            {
                Ok(started) => {
                    for w in started.into_inner().warnings {
                        if !container.warnings.contains(&w) {
                            send(out, run_output::Output::Warning(w)).await;
                        }
                    }
                }
                Err(status) => return Err(self.remove_after_failed_start(&id, status).await),
            }
            if auto_remove {
                self.watch_auto_remove(id.clone());
            }
            send(out, run_output::Output::Detached(true)).await;
            return Ok(());
        }

        // Attached: the supervisor starts the container once the attach is in place.
        let (atx, arx) = mpsc::channel::<AttachInput>(16);
        let first = AttachInput {
            input: Some(attach_input::Input::Start(AttachStart {
                id: id.clone(),
                stdin: start.attach_stdin,
                stdout: true,
                stderr: true,
                start: true,
                detach_keys: start.detach_keys,
            })),
        };
        let _ = atx.send(first).await;
        let forwarder = tokio::spawn(forward_run_input(inbound, atx));
        let result = self.relay_run(&id, auto_remove, arx, out).await;
        forwarder.abort();
        result
    }

    async fn relay_run(
        &self,
        id: &str,
        auto_remove: bool,
        inputs: mpsc::Receiver<AttachInput>,
        out: &mpsc::Sender<Result<RunOutput, Status>>,
    ) -> Result<(), Status> {
        let mut stream = match self
            .clients
            .supervisor
            .clone()
            .attach(ReceiverStream::new(inputs))
            .await
        {
            Ok(s) => s.into_inner(),
            Err(status) => return Err(self.remove_after_failed_start(id, status).await),
        };
        loop {
            let msg = match stream.message().await {
                Ok(Some(msg)) => msg,
                Ok(None) => {
                    if auto_remove {
                        self.watch_auto_remove(id.to_string());
                    }
                    return Err(Status::unavailable(
                        "the supervisor ended the attach without an exit status",
                    ));
                }
                Err(status) => return Err(self.remove_after_failed_start(id, status).await),
            };
            let output = match msg.output {
                Some(attach_output::Output::Stdout(b)) => run_output::Output::Stdout(b),
                Some(attach_output::Output::Stderr(b)) => run_output::Output::Stderr(b),
                Some(attach_output::Output::Exit(exit)) => {
                    // The supervisor sends the exit only once it is recorded, so `ps` and
                    // `inspect` right after the run already show it exited.
                    if auto_remove {
                        // Gone before the client learns the exit status.
                        if let Err(e) = self.remove(id, true, true).await {
                            tracing::warn!(id, error = %e.message(), "auto-remove failed");
                            let _ = out
                                .send(Ok(RunOutput {
                                    output: Some(run_output::Output::Warning(format!(
                                        "removing the container failed: {}",
                                        e.message()
                                    ))),
                                }))
                                .await;
                        }
                    }
                    send(out, run_output::Output::Exit(exit)).await;
                    return Ok(());
                }
                Some(attach_output::Output::Detached(d)) => {
                    if auto_remove {
                        self.watch_auto_remove(id.to_string());
                    }
                    send(out, run_output::Output::Detached(d)).await;
                    return Ok(());
                }
                None => continue,
            };
            if out
                .send(Ok(RunOutput {
                    output: Some(output),
                }))
                .await
                .is_err()
            {
                // The client went away: the container runs on; --rm still applies.
                if auto_remove {
                    self.watch_auto_remove(id.to_string());
                }
                return Ok(());
            }
        }
    }

    /// After an error from start or attach: a container that never ran (start failed,
    /// 126/127) is removed with everything create made; the status is returned unchanged.
    async fn remove_after_failed_start(&self, id: &str, status: Status) -> Status {
        let never_ran = match self.resolve(id).await {
            Ok(c) => c.state.as_ref().is_none_or(|s| {
                s.status == ContainerStatus::Created as i32 && s.started_at.is_empty()
            }),
            Err(s) => s.code() == Code::NotFound,
        };
        if never_ran || berth_common::status::exit_code_of(&status).is_some() {
            if let Err(e) = self.remove(id, true, true).await {
                tracing::warn!(id, error = %e.message(), "removing a container that failed to start");
            }
        } else {
            tracing::warn!(id, error = %status.message(), "attach failed after the container started");
        }
        status
    }
}

async fn send(out: &mpsc::Sender<Result<RunOutput, Status>>, output: run_output::Output) {
    let _ = out
        .send(Ok(RunOutput {
            output: Some(output),
        }))
        .await;
}

/// Relays the client's stdin, resizes and close-stdin to the supervisor's attach; keeps the
/// attach input open after the client's stream ends (aborted when the run is over).
async fn forward_run_input(mut inbound: Streaming<RunInput>, atx: mpsc::Sender<AttachInput>) {
    while let Ok(Some(msg)) = inbound.message().await {
        let input = match msg.input {
            Some(run_input::Input::Stdin(b)) => attach_input::Input::Stdin(b),
            Some(run_input::Input::Resize(r)) => attach_input::Input::Resize(r),
            Some(run_input::Input::CloseStdin(c)) => attach_input::Input::CloseStdin(c),
            Some(run_input::Input::Start(_)) | None => continue,
        };
        if atx.send(AttachInput { input: Some(input) }).await.is_err() {
            return;
        }
    }
    atx.closed().await;
}

fn undo_network(undo: &mut UndoStack, c: &Clients, id: &str) {
    let net = c.clone();
    let id = id.to_string();
    undo.push("detach network", move || async move {
        net.network
            .clone()
            .detach_container(DetachContainerRequest { container_id: id })
            .await
            .map(drop)
    });
}

/// Release the container's mounts and remove the anonymous volumes it made.
fn undo_mounts(undo: &mut UndoStack, c: &Clients, id: &str) {
    let vols = c.clone();
    let id = id.to_string();
    undo.push("release mounts", move || async move {
        let mut v = vols.volumes.clone();
        let released = v
            .release_mounts(ReleaseMountsRequest { container_id: id })
            .await?
            .into_inner();
        let mut failures = Failures::default();
        for name in released.anonymous_volumes {
            let r = v
                .remove_volume(RemoveVolumeRequest {
                    name: name.clone(),
                    force: false,
                })
                .await;
            failures.check(&format!("remove volume {name}"), r);
        }
        failures.into_result()
    });
}
