//! The gRPC service: a thin layer over [`crate::lifecycle`].
use std::pin::Pin;

use berth_proto::supervisor::v1::{
    attach_input, exec_input, supervisor_server, AttachInput, AttachOutput, Container,
    ContainerStatsRequest, ContainerStatsSample, CreateContainerRequest, ExecInput, ExitStatus,
    GetContainerRequest, KillContainerRequest, ListContainersRequest, ListContainersResponse,
    PauseContainerRequest, RemoveContainerRequest, RemoveContainerResponse, RenameContainerRequest,
    RestartContainerRequest, StartContainerRequest, StopContainerRequest, TopContainerRequest,
    TopContainerResponse, TopProcess, UnpauseContainerRequest, UpdateNetworkRequest,
    UpdateResourcesRequest, WaitContainerRequest,
};
use tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::{attach, exec, lifecycle::Supervisor, stats, top};

pub const SERVICE_NAME: &str = "berth.supervisor.v1.Supervisor";

pub struct Service {
    sup: Supervisor,
}

impl Service {
    pub fn new(sup: Supervisor) -> Service {
        Service { sup }
    }

    pub fn into_server(self) -> supervisor_server::SupervisorServer<Service> {
        supervisor_server::SupervisorServer::new(self)
    }
}

type AttachStream = Pin<Box<dyn Stream<Item = Result<AttachOutput, Status>> + Send>>;

#[tonic::async_trait]
impl supervisor_server::Supervisor for Service {
    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id, name = %request.get_ref().name))]
    async fn create_container(
        &self,
        request: Request<CreateContainerRequest>,
    ) -> Result<Response<Container>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            self.sup.create(&r.id, &r.name, r.spec).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn start_container(
        &self,
        request: Request<StartContainerRequest>,
    ) -> Result<Response<Container>, Status> {
        Ok(Response::new(self.sup.start(&request.get_ref().id).await?))
    }

    type AttachStream = AttachStream;

    #[tracing::instrument(skip_all, fields(container_id))]
    async fn attach(
        &self,
        request: Request<Streaming<AttachInput>>,
    ) -> Result<Response<AttachStream>, Status> {
        let mut input = request.into_inner();
        let start = match input.next().await {
            Some(Ok(AttachInput {
                input: Some(attach_input::Input::Start(start)),
            })) => start,
            Some(Err(status)) => return Err(status),
            _ => {
                return Err(Status::invalid_argument(
                    "the first attach message must be AttachStart",
                ))
            }
        };
        tracing::Span::current().record("container_id", start.id.as_str());
        let rx = attach::attach(&self.sup, start, input).await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn stop_container(
        &self,
        request: Request<StopContainerRequest>,
    ) -> Result<Response<Container>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            self.sup.stop(&r.id, r.timeout_seconds, &r.signal).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn kill_container(
        &self,
        request: Request<KillContainerRequest>,
    ) -> Result<Response<Container>, Status> {
        let r = request.into_inner();
        Ok(Response::new(self.sup.kill(&r.id, &r.signal).await?))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn wait_container(
        &self,
        request: Request<WaitContainerRequest>,
    ) -> Result<Response<ExitStatus>, Status> {
        Ok(Response::new(self.sup.wait(&request.get_ref().id).await?))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn remove_container(
        &self,
        request: Request<RemoveContainerRequest>,
    ) -> Result<Response<RemoveContainerResponse>, Status> {
        let r = request.into_inner();
        let container = self.sup.remove(&r.id, r.force).await?;
        Ok(Response::new(RemoveContainerResponse {
            container: Some(container),
        }))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn get_container(
        &self,
        request: Request<GetContainerRequest>,
    ) -> Result<Response<Container>, Status> {
        Ok(Response::new(self.sup.get(&request.get_ref().id)?))
    }

    #[tracing::instrument(skip_all, fields(all = request.get_ref().all))]
    async fn list_containers(
        &self,
        request: Request<ListContainersRequest>,
    ) -> Result<Response<ListContainersResponse>, Status> {
        Ok(Response::new(ListContainersResponse {
            containers: self.sup.list(request.get_ref().all)?,
        }))
    }

    type ExecStream = AttachStream;

    #[tracing::instrument(skip_all, fields(container_id))]
    async fn exec(
        &self,
        request: Request<Streaming<ExecInput>>,
    ) -> Result<Response<AttachStream>, Status> {
        let mut input = request.into_inner();
        let start = match input.next().await {
            Some(Ok(ExecInput {
                input: Some(exec_input::Input::Start(start)),
            })) => start,
            Some(Err(status)) => return Err(status),
            _ => {
                return Err(Status::invalid_argument(
                    "the first exec message must be ExecStart",
                ))
            }
        };
        tracing::Span::current().record("container_id", start.id.as_str());
        let rx = exec::exec(&self.sup, start, input).await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn pause_container(
        &self,
        request: Request<PauseContainerRequest>,
    ) -> Result<Response<Container>, Status> {
        Ok(Response::new(self.sup.pause(&request.get_ref().id).await?))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn unpause_container(
        &self,
        request: Request<UnpauseContainerRequest>,
    ) -> Result<Response<Container>, Status> {
        Ok(Response::new(
            self.sup.unpause(&request.get_ref().id).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn top_container(
        &self,
        request: Request<TopContainerRequest>,
    ) -> Result<Response<TopContainerResponse>, Status> {
        let rows = self.sup.top(&request.get_ref().id).await?;
        Ok(Response::new(TopContainerResponse {
            titles: top::TITLES.iter().map(|t| t.to_string()).collect(),
            processes: rows
                .into_iter()
                .map(|fields| TopProcess { fields })
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id, new_name = %request.get_ref().new_name))]
    async fn rename_container(
        &self,
        request: Request<RenameContainerRequest>,
    ) -> Result<Response<Container>, Status> {
        let r = request.into_inner();
        Ok(Response::new(self.sup.rename(&r.id, &r.new_name).await?))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn restart_container(
        &self,
        request: Request<RestartContainerRequest>,
    ) -> Result<Response<Container>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            self.sup.restart(&r.id, r.timeout_seconds).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn update_network(
        &self,
        request: Request<UpdateNetworkRequest>,
    ) -> Result<Response<Container>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            self.sup.update_network(&r.id, r.network).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().id))]
    async fn update_resources(
        &self,
        request: Request<UpdateResourcesRequest>,
    ) -> Result<Response<Container>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            self.sup.update_resources(&r.id, r.resources).await?,
        ))
    }

    type ContainerStatsStream =
        Pin<Box<dyn Stream<Item = Result<ContainerStatsSample, Status>> + Send>>;

    #[tracing::instrument(skip_all, fields(ids = ?request.get_ref().ids, stream = request.get_ref().stream))]
    async fn container_stats(
        &self,
        request: Request<ContainerStatsRequest>,
    ) -> Result<Response<Self::ContainerStatsStream>, Status> {
        let r = request.into_inner();
        let rx = stats::stats(&self.sup, &r.ids, r.stream).await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
