//! The gRPC skin over [`Store`]: it only translates, running the blocking store work
//! off the async runtime.
use std::sync::Arc;

use berth_common::events::{Event, EventLog};
use berth_proto::volume::v1::{self as pb, volumes_server::Volumes};
use tonic::{Request, Response, Status};

use crate::{
    error::Result,
    mounts::{MountKind, MountSpec, ResolvedMount},
    store::{CreateRequest, Store, VolumeInfo, LOCAL_DRIVER},
};

#[derive(Clone)]
pub struct VolumeService {
    store: Arc<Store>,
    /// `volume` events (ADR 16), published after each committed change.
    events: EventLog,
}

/// A `volume` event with Docker's `driver` attribute.
fn volume_event(action: &str, name: &str, driver: &str) -> Event {
    Event::new("volume", action, name).attr("driver", driver)
}

impl VolumeService {
    pub fn new(store: Arc<Store>) -> Self {
        VolumeService {
            store,
            events: EventLog::memory("volume"),
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

    pub fn into_server(self) -> pb::volumes_server::VolumesServer<Self> {
        pb::volumes_server::VolumesServer::new(self)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T, Status> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| Status::internal(format!("volume task failed: {e}")))?
            .map_err(Status::from)
    }
}

fn to_pb(v: VolumeInfo) -> pb::Volume {
    pb::Volume {
        name: v.name,
        driver: v.driver,
        mountpoint: v.mountpoint.display().to_string(),
        labels: v.labels.into_iter().collect(),
        options: v.options.into_iter().collect(),
        created_at: v.created_at,
        scope: "local".to_string(),
        used_by: v.used_by,
        anonymous: v.anonymous,
    }
}

fn kind_from_pb(t: i32) -> Option<MountKind> {
    match pb::MountType::try_from(t).ok()? {
        pb::MountType::Bind => Some(MountKind::Bind),
        pb::MountType::Volume => Some(MountKind::Volume),
        pb::MountType::Tmpfs => Some(MountKind::Tmpfs),
        pb::MountType::Unspecified => None,
    }
}

fn kind_to_pb(k: MountKind) -> pb::MountType {
    match k {
        MountKind::Bind => pb::MountType::Bind,
        MountKind::Volume => pb::MountType::Volume,
        MountKind::Tmpfs => pb::MountType::Tmpfs,
    }
}

fn resolved_to_pb(m: ResolvedMount) -> pb::ResolvedMount {
    pb::ResolvedMount {
        r#type: kind_to_pb(m.kind) as i32,
        source: m.source,
        destination: m.destination,
        read_only: m.read_only,
        volume_name: m.volume_name,
        options: m.options,
    }
}

impl VolumeService {
    /// `create` for the volumes a mount made, then `mount` for every volume mounted.
    fn publish_mounts(&self, container: &str, mounts: &[ResolvedMount], created: &[String]) {
        for name in created {
            self.events
                .publish(volume_event("create", name, LOCAL_DRIVER));
        }
        for m in mounts.iter().filter(|m| m.kind == MountKind::Volume) {
            let event = volume_event("mount", &m.volume_name, LOCAL_DRIVER)
                .attr("container", container)
                .attr("destination", m.destination.as_str())
                .attr("read/write", (!m.read_only).to_string())
                .attr("propagation", "");
            self.events.publish(event);
        }
    }
}

#[tonic::async_trait]
impl Volumes for VolumeService {
    #[tracing::instrument(skip_all, fields(volume = %request.get_ref().name))]
    async fn create_volume(
        &self,
        request: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let r = request.into_inner();
        let req = CreateRequest {
            name: r.name,
            driver: r.driver,
            labels: r.labels.into_iter().collect(),
            options: r.options.into_iter().collect(),
        };
        let v = self.run(move |s| s.create_volume(req)).await?;
        self.events
            .publish(volume_event("create", &v.name, &v.driver));
        Ok(Response::new(to_pb(v)))
    }

    #[tracing::instrument(skip_all, fields(volume = %request.get_ref().name))]
    async fn get_volume(
        &self,
        request: Request<pb::GetVolumeRequest>,
    ) -> Result<Response<pb::Volume>, Status> {
        let name = request.into_inner().name;
        let v = self.run(move |s| s.get_volume(&name)).await?;
        Ok(Response::new(to_pb(v)))
    }

    #[tracing::instrument(skip_all, fields(filters = ?request.get_ref().filters))]
    async fn list_volumes(
        &self,
        request: Request<pb::ListVolumesRequest>,
    ) -> Result<Response<pb::ListVolumesResponse>, Status> {
        let filters = request.into_inner().filters;
        let volumes = self.run(move |s| s.list_volumes(&filters)).await?;
        Ok(Response::new(pb::ListVolumesResponse {
            volumes: volumes.into_iter().map(to_pb).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(volume = %request.get_ref().name, force = request.get_ref().force))]
    async fn remove_volume(
        &self,
        request: Request<pb::RemoveVolumeRequest>,
    ) -> Result<Response<pb::RemoveVolumeResponse>, Status> {
        let r = request.into_inner();
        let name = r.name.clone();
        let removed = self.run(move |s| s.remove_volume(&r.name, r.force)).await?;
        // False: it did not exist and `force` made that a success; nothing happened.
        if removed {
            self.events
                .publish(volume_event("destroy", &name, LOCAL_DRIVER));
        }
        Ok(Response::new(pb::RemoveVolumeResponse {}))
    }

    #[tracing::instrument(skip_all, fields(all = request.get_ref().all))]
    async fn prune_volumes(
        &self,
        request: Request<pb::PruneVolumesRequest>,
    ) -> Result<Response<pb::PruneVolumesResponse>, Status> {
        let r = request.into_inner();
        let (deleted, space_reclaimed) = self
            .run(move |s| s.prune_volumes(&r.filters, r.all))
            .await?;
        for name in &deleted {
            self.events
                .publish(volume_event("destroy", name, LOCAL_DRIVER));
        }
        self.events.publish(Event::prune("volume", space_reclaimed));
        Ok(Response::new(pb::PruneVolumesResponse {
            deleted,
            space_reclaimed,
        }))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().container_id))]
    async fn prepare_mounts(
        &self,
        request: Request<pb::PrepareMountsRequest>,
    ) -> Result<Response<pb::PrepareMountsResponse>, Status> {
        let r = request.into_inner();
        if let Some(m) = r.mounts.iter().find(|m| !m.volumes_from.is_empty()) {
            return Err(Status::invalid_argument(format!(
                "volumes from {:?}: the engine expands --volumes-from before preparing mounts",
                m.volumes_from
            )));
        }
        let specs: Vec<MountSpec> = r
            .mounts
            .into_iter()
            .map(|m| MountSpec {
                kind: kind_from_pb(m.r#type),
                source: m.source,
                destination: m.destination,
                read_only: m.read_only,
                options: m.options,
                volume_options: m.volume_options.into_iter().collect(),
                volume_labels: m.volume_labels.into_iter().collect(),
                require_source: m.require_source,
            })
            .collect();
        let id = r.container_id;
        let lower: Vec<std::path::PathBuf> =
            r.image_lower_dirs.into_iter().map(Into::into).collect();
        let container = id.clone();
        let (mounts, created) = self
            .run(move |s| s.prepare_mounts_reporting(&id, &specs, &lower))
            .await?;
        self.publish_mounts(&container, &mounts, &created);
        Ok(Response::new(pb::PrepareMountsResponse {
            mounts: mounts.into_iter().map(resolved_to_pb).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().container_id))]
    async fn release_mounts(
        &self,
        request: Request<pb::ReleaseMountsRequest>,
    ) -> Result<Response<pb::ReleaseMountsResponse>, Status> {
        let id = request.into_inner().container_id;
        let container = id.clone();
        let (used, anonymous_volumes) = self
            .run(move |s| Ok((s.volumes_of(&id)?, s.release_mounts(&id)?)))
            .await?;
        for name in &used {
            self.events.publish(
                volume_event("unmount", name, LOCAL_DRIVER).attr("container", container.as_str()),
            );
        }
        Ok(Response::new(pb::ReleaseMountsResponse {
            anonymous_volumes,
        }))
    }
}
