//! The gRPC skin over [`Router`]: it only translates.
use std::{pin::Pin, sync::Arc};

use berth_proto::logs::v1::{self as pb, log_router_server::LogRouter};
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Response, Status};

use crate::{
    logger::{LogConfig, STDERR},
    router::{ReadRequest, Router},
};

#[derive(Clone)]
pub struct LogRouterService {
    router: Arc<Router>,
}

impl LogRouterService {
    pub fn new(router: Arc<Router>) -> Self {
        LogRouterService { router }
    }

    pub fn into_server(self) -> pb::log_router_server::LogRouterServer<Self> {
        pb::log_router_server::LogRouterServer::new(self)
    }
}

fn entry(m: crate::logger::Message) -> pb::LogEntry {
    pb::LogEntry {
        stream: if m.stream == STDERR {
            pb::LogStream::Stderr
        } else {
            pb::LogStream::Stdout
        } as i32,
        line: m.line,
        time_unix_nano: m.time_unix_nano,
    }
}

type EntryStream = Pin<Box<dyn Stream<Item = Result<pb::LogEntry, Status>> + Send>>;

#[tonic::async_trait]
impl LogRouter for LogRouterService {
    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().container_id, driver = %request.get_ref().driver))]
    async fn open_log(
        &self,
        request: Request<pb::OpenLogRequest>,
    ) -> Result<Response<pb::OpenLogResponse>, Status> {
        let r = request.into_inner();
        let config = LogConfig {
            driver: r.driver,
            options: r.options.into_iter().collect(),
            name: r.container_name,
            image: r.image,
            image_id: r.image_id,
            labels: r.labels.into_iter().collect(),
            env: r.env,
        };
        let router = self.router.clone();
        let path = tokio::task::spawn_blocking(move || router.open_log(&r.container_id, config))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(pb::OpenLogResponse {
            log_path: path.display().to_string(),
        }))
    }

    type ReadLogsStream = EntryStream;

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().container_id, follow = request.get_ref().follow))]
    async fn read_logs(
        &self,
        request: Request<pb::ReadLogsRequest>,
    ) -> Result<Response<Self::ReadLogsStream>, Status> {
        let r = request.into_inner();
        let req = ReadRequest {
            follow: r.follow,
            tail: usize::try_from(r.tail).ok(),
            since: r.since_unix_nano,
            until: r.until_unix_nano,
            stdout: r.stdout,
            stderr: r.stderr,
        };
        let rx = self.router.read_log_chunks(&r.container_id, req)?;
        let stream = futures::StreamExt::flat_map(ReceiverStream::new(rx), |chunk| {
            let entries: Vec<Result<pb::LogEntry, Status>> = match chunk {
                Ok(msgs) => msgs.into_iter().map(|m| Ok(entry(m))).collect(),
                Err(e) => vec![Err(Status::from(e))],
            };
            futures::stream::iter(entries)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().container_id))]
    async fn close_log(
        &self,
        request: Request<pb::CloseLogRequest>,
    ) -> Result<Response<pb::CloseLogResponse>, Status> {
        let id = request.into_inner().container_id;
        let router = self.router.clone();
        tokio::task::spawn_blocking(move || router.close_log(&id))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(pb::CloseLogResponse {}))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().container_id))]
    async fn inspect_log(
        &self,
        request: Request<pb::InspectLogRequest>,
    ) -> Result<Response<pb::InspectLogResponse>, Status> {
        let id = request.into_inner().container_id;
        let info = self.router.inspect_log(&id)?;
        let stats = info.stats.unwrap_or_default();
        Ok(Response::new(pb::InspectLogResponse {
            driver: info.driver,
            log_path: info
                .log_path
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            pending_lines: stats.pending_lines,
            dropped_lines: stats.dropped_lines,
        }))
    }
}
