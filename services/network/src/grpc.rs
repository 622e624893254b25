//! The gRPC skin over [`NetworkService`]: translation only.
use berth_proto::network::v1::{
    network_server::Network, AttachContainerRequest, Attachment, DetachContainerRequest,
    DetachContainerResponse, GetAttachmentRequest, GetNetworkRequest, ListNetworksRequest,
    ListNetworksResponse, NetworkInfo,
};
use tonic::{Request, Response, Status};

use crate::NetworkService;

#[tonic::async_trait]
impl Network for NetworkService {
    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().container_id, mode = %request.get_ref().mode))]
    async fn attach_container(
        &self,
        request: Request<AttachContainerRequest>,
    ) -> Result<Response<Attachment>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            self.attach(&r.container_id, &r.mode, &r.hostname).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().container_id))]
    async fn detach_container(
        &self,
        request: Request<DetachContainerRequest>,
    ) -> Result<Response<DetachContainerResponse>, Status> {
        self.detach(&request.into_inner().container_id).await?;
        Ok(Response::new(DetachContainerResponse {}))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().container_id))]
    async fn get_attachment(
        &self,
        request: Request<GetAttachmentRequest>,
    ) -> Result<Response<Attachment>, Status> {
        let id = request.into_inner().container_id;
        self.get_attachment(&id)?
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("container {id} has no network attachment")))
    }

    #[tracing::instrument(skip_all)]
    async fn list_networks(
        &self,
        _request: Request<ListNetworksRequest>,
    ) -> Result<Response<ListNetworksResponse>, Status> {
        Ok(Response::new(ListNetworksResponse {
            networks: NetworkService::list_networks(self)?,
        }))
    }

    #[tracing::instrument(skip_all, fields(network = %request.get_ref().name))]
    async fn get_network(
        &self,
        request: Request<GetNetworkRequest>,
    ) -> Result<Response<NetworkInfo>, Status> {
        Ok(Response::new(NetworkService::get_network(
            self,
            &request.into_inner().name,
        )?))
    }
}
