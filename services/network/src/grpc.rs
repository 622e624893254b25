//! The gRPC skin over [`NetworkService`]: translation only.
use berth_proto::network::v1::{
    network_server::Network, ActivateContainerRequest, AttachContainerRequest, Attachment,
    ConnectContainerRequest, CreateNetworkRequest, DeactivateContainerRequest,
    DeactivateContainerResponse, DetachContainerRequest, DetachContainerResponse,
    DisconnectContainerRequest, GetAttachmentRequest, GetNetworkRequest, ListNetworksRequest,
    ListNetworksResponse, NetworkInfo, PruneNetworksRequest, PruneNetworksResponse,
    RemoveNetworkRequest, RemoveNetworkResponse,
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
        Ok(Response::new(self.attach_with(request.get_ref()).await?))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().container_id))]
    async fn activate_container(
        &self,
        request: Request<ActivateContainerRequest>,
    ) -> Result<Response<Attachment>, Status> {
        Ok(Response::new(
            self.activate(&request.get_ref().container_id).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().container_id))]
    async fn deactivate_container(
        &self,
        request: Request<DeactivateContainerRequest>,
    ) -> Result<Response<DeactivateContainerResponse>, Status> {
        self.deactivate(&request.get_ref().container_id).await?;
        Ok(Response::new(DeactivateContainerResponse {}))
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
        request: Request<ListNetworksRequest>,
    ) -> Result<Response<ListNetworksResponse>, Status> {
        Ok(Response::new(ListNetworksResponse {
            networks: self.list_networks_filtered(&request.get_ref().filters)?,
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

    #[tracing::instrument(skip_all, fields(network = %request.get_ref().name, driver = %request.get_ref().driver))]
    async fn create_network(
        &self,
        request: Request<CreateNetworkRequest>,
    ) -> Result<Response<NetworkInfo>, Status> {
        Ok(Response::new(
            NetworkService::create_network(self, request.get_ref()).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(network = %request.get_ref().name))]
    async fn remove_network(
        &self,
        request: Request<RemoveNetworkRequest>,
    ) -> Result<Response<RemoveNetworkResponse>, Status> {
        let id = NetworkService::remove_network(self, &request.get_ref().name).await?;
        Ok(Response::new(RemoveNetworkResponse { id }))
    }

    #[tracing::instrument(skip_all)]
    async fn prune_networks(
        &self,
        request: Request<PruneNetworksRequest>,
    ) -> Result<Response<PruneNetworksResponse>, Status> {
        let deleted = NetworkService::prune_networks(self, &request.get_ref().filters).await?;
        Ok(Response::new(PruneNetworksResponse { deleted }))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().container_id, network = %request.get_ref().network))]
    async fn connect_container(
        &self,
        request: Request<ConnectContainerRequest>,
    ) -> Result<Response<Attachment>, Status> {
        Ok(Response::new(self.connect(request.get_ref()).await?))
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.get_ref().container_id, network = %request.get_ref().network))]
    async fn disconnect_container(
        &self,
        request: Request<DisconnectContainerRequest>,
    ) -> Result<Response<Attachment>, Status> {
        Ok(Response::new(self.disconnect(request.get_ref()).await?))
    }
}
