//! The gRPC skin over [`Store`]: it only translates requests, spools uploads to a temp
//! file, and runs the blocking store work off the async runtime.
use std::{path::PathBuf, sync::Arc};

use berth_common::{
    config::RegistriesConfig,
    events::{Event, EventLog},
};
use berth_proto::image::v1::{
    self as pb, image_store_server::ImageStore, upload_chunk::Part, UploadChunk, UploadHeader,
};
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use crate::{
    error::Error,
    registry::{self, client::Credentials, pull::PullRequest, Inflight},
    store::{CommitOptions, ImageInfo, ImportOptions, Mounts, Store},
};

#[derive(Clone)]
pub struct ImageStoreService {
    store: Arc<Store>,
    inflight: Arc<Inflight>,
    registries: Arc<RegistriesConfig>,
    /// `image` events (ADR 16), published after each change is committed.
    events: EventLog,
}

/// An `image` event with Docker's `name` attribute.
fn image_event(action: &str, actor_id: &str, name: &str) -> Event {
    Event::new("image", action, actor_id).attr("name", name)
}

/// `busybox` → `busybox:latest`; a reference that does not parse is kept as given.
fn familiar(reference: &str) -> String {
    crate::reference::normalize(reference).unwrap_or_else(|_| reference.to_string())
}

fn creds(a: Option<pb::RegistryAuth>) -> Credentials {
    let a = a.unwrap_or_default();
    Credentials {
        username: a.username,
        password: a.password,
        identity_token: a.identity_token,
    }
}

impl ImageStoreService {
    pub fn new(store: Arc<Store>) -> Self {
        ImageStoreService {
            store,
            inflight: Arc::default(),
            registries: Arc::default(),
            events: EventLog::memory("image-store"),
        }
    }

    /// Publishes into `events` (the service's persisted log) instead of memory.
    pub fn with_events(mut self, events: EventLog) -> Self {
        self.events = events;
        self
    }

    pub fn events(&self) -> &EventLog {
        &self.events
    }

    /// Insecure registries and mirrors (the configuration file's `[registries]`); none by
    /// default.
    pub fn with_registries(mut self, registries: RegistriesConfig) -> Self {
        self.registries = Arc::new(registries);
        self
    }

    pub fn into_server(self) -> pb::image_store_server::ImageStoreServer<Self> {
        pb::image_store_server::ImageStoreServer::new(self)
            .max_decoding_message_size(64 * 1024 * 1024)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| Status::internal(format!("internal: {e}")))?
            .map_err(Status::from)
    }

    /// Writes the upload to a temp file under the state dir (removed when dropped).
    async fn spool(
        &self,
        mut stream: Streaming<UploadChunk>,
    ) -> Result<(UploadHeader, Spool), Status> {
        let spool = Spool(self.store.temp_path("upload"));
        let mut file = tokio::fs::File::create(&spool.0)
            .await
            .map_err(|e| Status::internal(format!("create {}: {e}", spool.0.display())))?;
        let mut header = None;
        let mut first = true;
        while let Some(chunk) = stream.message().await? {
            match chunk.part {
                Some(Part::Header(h)) if first => header = Some(h),
                Some(Part::Header(_)) => {
                    return Err(Status::invalid_argument(
                        "the upload header must be the first message",
                    ))
                }
                Some(Part::Data(bytes)) => file
                    .write_all(&bytes)
                    .await
                    .map_err(|e| Status::internal(format!("write {}: {e}", spool.0.display())))?,
                None => {}
            }
            first = false;
        }
        file.sync_all()
            .await
            .map_err(|e| Status::internal(format!("sync {}: {e}", spool.0.display())))?;
        Ok((header.unwrap_or_default(), spool))
    }
}

pub type ProgressStream<T> =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tonic::async_trait]
impl ImageStore for ImageStoreService {
    #[tracing::instrument(skip_all, fields(reference))]
    async fn import_image(
        &self,
        request: Request<Streaming<UploadChunk>>,
    ) -> Result<Response<pb::ImportImageResponse>, Status> {
        let (header, spool) = self.spool(request.into_inner()).await?;
        tracing::Span::current().record("reference", header.reference.as_str());
        let opts = ImportOptions {
            reference: header.reference,
            changes: header.changes,
            message: header.message,
        };
        let image = self
            .blocking(move |s| {
                let r = s.import_image(&spool.0, &opts);
                drop(spool);
                r
            })
            .await?;
        let name = image.repo_tags.first().cloned().unwrap_or_default();
        self.events.publish(image_event("import", &image.id, &name));
        Ok(Response::new(pb::ImportImageResponse {
            image: Some(image_to_pb(image)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn load_images(
        &self,
        request: Request<Streaming<UploadChunk>>,
    ) -> Result<Response<pb::LoadImagesResponse>, Status> {
        let (_, spool) = self.spool(request.into_inner()).await?;
        let images = self
            .blocking(move |s| {
                let r = s.load_images(&spool.0);
                drop(spool);
                r
            })
            .await?;
        for image in &images {
            let name = image.repo_tags.first().cloned().unwrap_or_default();
            self.events.publish(image_event("load", &image.id, &name));
        }
        Ok(Response::new(pb::LoadImagesResponse {
            images: images.into_iter().map(image_to_pb).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(image = %request.get_ref().reference))]
    async fn get_image(
        &self,
        request: Request<pb::GetImageRequest>,
    ) -> Result<Response<pb::Image>, Status> {
        let reference = request.into_inner().reference;
        let image = self.blocking(move |s| s.get_image(&reference)).await?;
        Ok(Response::new(image_to_pb(image)))
    }

    #[tracing::instrument(skip_all, fields(all = request.get_ref().all))]
    async fn list_images(
        &self,
        request: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        let all = request.into_inner().all;
        let images = self.blocking(move |s| s.list_images(all)).await?;
        Ok(Response::new(pb::ListImagesResponse {
            images: images.into_iter().map(image_to_pb).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(source = %request.get_ref().source, target = %request.get_ref().target))]
    async fn tag_image(
        &self,
        request: Request<pb::TagImageRequest>,
    ) -> Result<Response<pb::TagImageResponse>, Status> {
        let r = request.into_inner();
        let target = r.target.clone();
        let id = self
            .blocking(move |s| s.tag_image(&r.source, &r.target))
            .await?;
        self.events
            .publish(image_event("tag", &id, &familiar(&target)));
        Ok(Response::new(pb::TagImageResponse {}))
    }

    #[tracing::instrument(skip_all, fields(image = %request.get_ref().reference, force = request.get_ref().force))]
    async fn remove_image(
        &self,
        request: Request<pb::RemoveImageRequest>,
    ) -> Result<Response<pb::RemoveImageResponse>, Status> {
        let r = request.into_inner();
        let removed = self
            .blocking(move |s| s.remove_image(&r.reference, r.force))
            .await?;
        for tag in &removed.untagged {
            self.events
                .publish(image_event("untag", &removed.image_id, tag));
        }
        for deleted in &removed.deleted {
            self.events.publish(image_event("delete", deleted, ""));
        }
        Ok(Response::new(pb::RemoveImageResponse {
            untagged: removed.untagged,
            deleted: removed.deleted,
        }))
    }

    #[tracing::instrument(skip_all, fields(key = %request.get_ref().key, image = %request.get_ref().image))]
    async fn prepare_snapshot(
        &self,
        request: Request<pb::PrepareSnapshotRequest>,
    ) -> Result<Response<pb::SnapshotMounts>, Status> {
        let r = request.into_inner();
        let mounts = self
            .blocking(move |s| s.prepare_snapshot(&r.key, &r.image))
            .await?;
        Ok(Response::new(mounts_to_pb(mounts)))
    }

    #[tracing::instrument(skip_all, fields(key = %request.get_ref().key))]
    async fn get_snapshot_mounts(
        &self,
        request: Request<pb::GetSnapshotMountsRequest>,
    ) -> Result<Response<pb::SnapshotMounts>, Status> {
        let key = request.into_inner().key;
        let mounts = self.blocking(move |s| s.snapshot_mounts(&key)).await?;
        Ok(Response::new(mounts_to_pb(mounts)))
    }

    #[tracing::instrument(skip_all, fields(key = %request.get_ref().key))]
    async fn remove_snapshot(
        &self,
        request: Request<pb::RemoveSnapshotRequest>,
    ) -> Result<Response<pb::RemoveSnapshotResponse>, Status> {
        let key = request.into_inner().key;
        self.blocking(move |s| s.remove_snapshot(&key)).await?;
        Ok(Response::new(pb::RemoveSnapshotResponse {}))
    }

    type PullImageStream = ProgressStream<pb::PullProgress>;
    type PushImageStream = ProgressStream<pb::PushProgress>;

    #[tracing::instrument(skip_all, fields(image = %request.get_ref().reference))]
    async fn pull_image(
        &self,
        request: Request<pb::PullImageRequest>,
    ) -> Result<Response<Self::PullImageStream>, Status> {
        let r = request.into_inner();
        let req = PullRequest {
            reference: r.reference,
            creds: creds(r.auth),
            platform: r.platform,
            registries: self.registries.clone(),
        };
        let (ptx, mut prx) = tokio::sync::mpsc::channel::<pb::PullProgress>(64);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::PullProgress, Status>>(64);
        let store = self.store.clone();
        let inflight = self.inflight.clone();
        let (events, pulled) = (self.events.clone(), familiar(&req.reference));
        let work = tokio::spawn(async move {
            let info = registry::pull::pull(store, inflight, req, ptx).await?;
            let name = pulled.rsplit_once(':').map_or(pulled.as_str(), |(n, _)| n);
            // Docker's actor is the reference pulled; `name` is its repository.
            let name = if pulled.contains('@') { "" } else { name };
            events.publish(image_event("pull", &pulled, name));
            Ok::<_, Error>(info)
        });
        tokio::spawn(async move {
            while let Some(m) = prx.recv().await {
                let _ = tx.send(Ok(m)).await;
            }
            let last = match work.await {
                Ok(Ok(info)) => Ok(pb::PullProgress {
                    image: Some(image_to_pb(info)),
                    ..Default::default()
                }),
                Ok(Err(e)) => Err(Status::from(e)),
                Err(e) => Err(Status::internal(format!("internal: {e}"))),
            };
            let _ = tx.send(last).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    #[tracing::instrument(skip_all, fields(image = %request.get_ref().reference))]
    async fn push_image(
        &self,
        request: Request<pb::PushImageRequest>,
    ) -> Result<Response<Self::PushImageStream>, Status> {
        let r = request.into_inner();
        let (ptx, mut prx) = tokio::sync::mpsc::channel::<pb::PushProgress>(64);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::PushProgress, Status>>(64);
        let store = self.store.clone();
        let registries = self.registries.clone();
        let events = self.events.clone();
        let work = tokio::spawn(async move {
            let pushed = familiar(&r.reference);
            let done =
                registry::push::push(store, r.reference, creds(r.auth), registries, ptx).await?;
            events.publish(image_event("push", &pushed, ""));
            Ok::<_, Error>(done)
        });
        tokio::spawn(async move {
            while let Some(m) = prx.recv().await {
                let _ = tx.send(Ok(m)).await;
            }
            match work.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    let _ = tx.send(Err(Status::from(e))).await;
                }
                Err(e) => {
                    let _ = tx
                        .send(Err(Status::internal(format!("internal: {e}"))))
                        .await;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    #[tracing::instrument(skip_all, fields(registry = %request.get_ref().registry))]
    async fn check_registry_auth(
        &self,
        request: Request<pb::CheckRegistryAuthRequest>,
    ) -> Result<Response<pb::CheckRegistryAuthResponse>, Status> {
        let r = request.into_inner();
        let status =
            registry::push::check_auth(&r.registry, creds(r.auth), &self.registries).await?;
        Ok(Response::new(pb::CheckRegistryAuthResponse { status }))
    }

    type SaveImagesStream = ProgressStream<pb::SaveChunk>;

    /// Writes the archive to a temp file, then streams it in 64 KiB chunks.
    #[tracing::instrument(skip_all)]
    async fn save_images(
        &self,
        request: Request<pb::SaveImagesRequest>,
    ) -> Result<Response<Self::SaveImagesStream>, Status> {
        let refs = request.into_inner().references;
        let spool = Spool(self.store.temp_path("save"));
        let path = spool.0.clone();
        let saved = refs.clone();
        self.blocking(move |s| s.save_images(&refs, &path)).await?;
        for reference in &saved {
            self.events.publish(image_event("save", reference, ""));
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::SaveChunk, Status>>(8);
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut file = match tokio::fs::File::open(&spool.0).await {
                Ok(f) => f,
                Err(e) => {
                    let _ = tx
                        .send(Err(Status::internal(format!(
                            "open {}: {e}",
                            spool.0.display()
                        ))))
                        .await;
                    return;
                }
            };
            loop {
                let mut buf = vec![0u8; 64 * 1024];
                let mut n = 0;
                while n < buf.len() {
                    match file.read(&mut buf[n..]).await {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) => {
                            let _ = tx
                                .send(Err(Status::internal(format!("read archive: {e}"))))
                                .await;
                            return;
                        }
                    }
                }
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                if tx.send(Ok(pb::SaveChunk { data: buf })).await.is_err() {
                    break;
                }
            }
            drop(spool);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    #[tracing::instrument(skip_all, fields(image = %request.get_ref().reference))]
    async fn image_history(
        &self,
        request: Request<pb::GetImageRequest>,
    ) -> Result<Response<pb::ImageHistoryResponse>, Status> {
        let reference = request.into_inner().reference;
        let rows = self.blocking(move |s| s.image_history(&reference)).await?;
        Ok(Response::new(pb::ImageHistoryResponse {
            entries: rows
                .into_iter()
                .map(|r| pb::HistoryEntry {
                    id: r.id,
                    created: r.created,
                    created_by: r.created_by,
                    size: r.size,
                    comment: r.comment,
                    empty_layer: r.empty_layer,
                })
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(all = request.get_ref().all))]
    async fn prune_images(
        &self,
        request: Request<pb::PruneImagesRequest>,
    ) -> Result<Response<pb::PruneImagesResponse>, Status> {
        let all = request.into_inner().all;
        let p = self.blocking(move |s| s.prune_images(all)).await?;
        for tag in &p.untagged {
            self.events.publish(image_event("untag", tag, tag));
        }
        for deleted in &p.deleted {
            self.events.publish(image_event("delete", deleted, ""));
        }
        self.events
            .publish(Event::prune("image", p.space_reclaimed));
        Ok(Response::new(pb::PruneImagesResponse {
            untagged: p.untagged,
            deleted: p.deleted,
            space_reclaimed: p.space_reclaimed,
        }))
    }

    #[tracing::instrument(skip_all, fields(key = %request.get_ref().key))]
    async fn commit_snapshot(
        &self,
        request: Request<pb::CommitSnapshotRequest>,
    ) -> Result<Response<pb::Image>, Status> {
        let r = request.into_inner();
        let opts = CommitOptions {
            reference: r.reference,
            changes: r.changes,
            message: r.message,
            author: r.author,
            config: run_config_json(r.config.unwrap_or_default()),
        };
        let key = r.key;
        let image = self
            .blocking(move |s| s.commit_snapshot(&key, &opts))
            .await?;
        Ok(Response::new(image_to_pb(image)))
    }
}

pub fn image_to_pb(i: ImageInfo) -> pb::Image {
    let rc = i.config.config.clone().unwrap_or_default();
    let keys = |m: Option<std::collections::BTreeMap<String, serde_json::Value>>| {
        m.map(|m| m.into_keys().collect()).unwrap_or_default()
    };
    pb::Image {
        id: i.id,
        repo_tags: i.repo_tags,
        repo_digests: i.repo_digests,
        created: i.created,
        size: i.size,
        config: Some(pb::ImageConfig {
            env: rc.env.unwrap_or_default(),
            cmd: rc.cmd.unwrap_or_default(),
            entrypoint: rc.entrypoint.unwrap_or_default(),
            working_dir: rc.working_dir.unwrap_or_default(),
            user: rc.user.unwrap_or_default(),
            exposed_ports: keys(rc.exposed_ports),
            volumes: keys(rc.volumes),
            labels: rc.labels.unwrap_or_default().into_iter().collect(),
            stop_signal: rc.stop_signal.unwrap_or_default(),
        }),
        layers: i.layers,
        architecture: i.config.architecture,
        os: i.config.os,
        author: i.config.author.unwrap_or_default(),
        comment: i.config.comment.unwrap_or_default(),
        config_json: i.config_json,
    }
}

pub fn mounts_to_pb(m: Mounts) -> pb::SnapshotMounts {
    pb::SnapshotMounts {
        key: m.key,
        image_id: m.image_id,
        lower_dirs: m
            .lower_dirs
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        upper_dir: m.upper_dir.display().to_string(),
        work_dir: m.work_dir.display().to_string(),
    }
}

/// The container configuration a commit records, as an image config's `config` object
/// (empty fields are left to the base image's).
fn run_config_json(c: pb::ImageConfig) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::{json, Value};
    let mut m = serde_json::Map::new();
    let set = |m: &mut serde_json::Map<String, Value>, k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    if !c.env.is_empty() {
        set(&mut m, "Env", json!(c.env));
    }
    if !c.cmd.is_empty() {
        set(&mut m, "Cmd", json!(c.cmd));
    }
    if !c.entrypoint.is_empty() {
        set(&mut m, "Entrypoint", json!(c.entrypoint));
    }
    if !c.working_dir.is_empty() {
        set(&mut m, "WorkingDir", json!(c.working_dir));
    }
    if !c.user.is_empty() {
        set(&mut m, "User", json!(c.user));
    }
    if !c.labels.is_empty() {
        set(&mut m, "Labels", json!(c.labels));
    }
    if !c.stop_signal.is_empty() {
        set(&mut m, "StopSignal", json!(c.stop_signal));
    }
    let keys = |v: Vec<String>| Value::Object(v.into_iter().map(|k| (k, json!({}))).collect());
    if !c.exposed_ports.is_empty() {
        set(&mut m, "ExposedPorts", keys(c.exposed_ports));
    }
    if !c.volumes.is_empty() {
        set(&mut m, "Volumes", keys(c.volumes));
    }
    m
}
