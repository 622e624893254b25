//! The engine's network steps that need several services: resolving `--link` targets
//! (supervisor, network, image store) and `network connect/disconnect` followed by the
//! supervisor's rewrite of /etc/hosts and /etc/resolv.conf.
use berth_proto::{
    image::v1::GetImageRequest,
    network::v1::{
        Attachment, ConnectContainerRequest, DisconnectContainerRequest, GetAttachmentRequest, Link,
    },
    supervisor::v1::{GetContainerRequest, UpdateNetworkRequest},
};
use tonic::{Code, Status};

use crate::{
    engine::{upstream, Engine},
    links, netsettings, ports,
};

/// The links of a new container: what the network service needs, and the environment
/// variables Docker sets for them.
#[derive(Debug, Default)]
pub struct ResolvedLinks {
    pub links: Vec<Link>,
    pub env: Vec<String>,
}

impl Engine {
    /// Resolves each `--link name[:alias]` to its container; on the default bridge also
    /// builds the link variables from the target's address, exposed ports and env.
    pub async fn resolve_links(
        &self,
        values: &[String],
        container_name: &str,
        mode: &str,
    ) -> Result<ResolvedLinks, Status> {
        let mut out = ResolvedLinks::default();
        for value in values {
            let spec = links::parse(value).map_err(|e| Status::invalid_argument(e.to_string()))?;
            let target = match self
                .clients
                .supervisor
                .clone()
                .get_container(GetContainerRequest {
                    id: spec.target.clone(),
                })
                .await
            {
                Ok(c) => c.into_inner(),
                Err(s) if s.code() == Code::NotFound => {
                    return Err(Status::invalid_argument(format!(
                        "could not get container for {}",
                        spec.target
                    )))
                }
                Err(s) => return Err(upstream("look up linked container")(s)),
            };
            if links::sets_env(mode) {
                out.env
                    .extend(self.link_env(&target, &spec, container_name, mode).await?);
            }
            out.links.push(Link {
                container_id: target.id.clone(),
                name: target.name.clone(),
                alias: spec.alias,
            });
        }
        Ok(out)
    }

    async fn link_env(
        &self,
        target: &berth_proto::supervisor::v1::Container,
        link: &links::LinkSpec,
        container_name: &str,
        mode: &str,
    ) -> Result<Vec<String>, Status> {
        let attachment = match self
            .clients
            .network
            .clone()
            .get_attachment(GetAttachmentRequest {
                container_id: target.id.clone(),
            })
            .await
        {
            Ok(a) => a.into_inner(),
            Err(s) if s.code() == Code::NotFound => Attachment::default(),
            Err(s) => return Err(upstream("linked container's network")(s)),
        };
        let Some(endpoint) = links::endpoint_for(&attachment, mode) else {
            // No address to point at (a none/host container): Docker refuses such links.
            return Err(Status::invalid_argument(format!(
                "cannot link to {}: it has no address on the default bridge",
                link.target
            )));
        };
        let spec = target.spec.clone().unwrap_or_default();
        let image = self
            .clients
            .images
            .clone()
            .get_image(GetImageRequest {
                reference: spec.image_id.clone(),
            })
            .await
            .map(|r| r.into_inner().config.unwrap_or_default());
        // The image may be gone (rmi -f); the link still works, without its ports.
        let image = match image {
            Ok(c) => c,
            Err(s) if s.code() == Code::NotFound => Default::default(),
            Err(s) => return Err(upstream("linked container's image")(s)),
        };
        // The record's list has --expose too; older records have only the image's.
        let exposed = ports::exposed(&image, &spec.exposed_ports, &attachment.ports)
            .map_err(|e| Status::internal(format!("linked container {}: {e}", link.target)))?;
        Ok(links::env(&links::LinkEnv {
            container_name,
            alias: &link.alias,
            ip: links::address(&endpoint.ipv4_address),
            ports: &exposed,
            env: &spec.env,
        }))
    }

    /// `network connect`: adds the endpoint, then has the supervisor rewrite the
    /// container's /etc/hosts and /etc/resolv.conf.
    #[tracing::instrument(skip_all, fields(container = %req.container_id, network = %req.network))]
    pub async fn connect_network(
        &self,
        mut req: ConnectContainerRequest,
    ) -> Result<Attachment, Status> {
        let container = self.resolve(&req.container_id).await?;
        let before = self.attachment_of(&container.id).await?;
        req.container_id = container.id.clone();
        req.container_name = container.name.clone();
        let network = req.network.clone();
        let after = self
            .clients
            .network
            .clone()
            .connect_container(req)
            .await
            .map_err(upstream("connect network"))?
            .into_inner();
        if let Err(status) = self.update_settings(&container, &before, &after).await {
            // Compensate: an endpoint the container's files do not know about is worse
            // than a failed connect.
            let undo = self
                .clients
                .network
                .clone()
                .disconnect_container(DisconnectContainerRequest {
                    container_id: container.id.clone(),
                    network,
                    force: true,
                })
                .await;
            if let Err(e) = undo {
                tracing::warn!(error = %e.message(), "undo connect failed");
            }
            return Err(status);
        }
        Ok(after)
    }

    /// `network disconnect`: removes the endpoint, then updates the container's files.
    #[tracing::instrument(skip_all, fields(container = %req.container_id, network = %req.network))]
    pub async fn disconnect_network(
        &self,
        mut req: DisconnectContainerRequest,
    ) -> Result<Attachment, Status> {
        let container = self.resolve(&req.container_id).await?;
        let before = self.attachment_of(&container.id).await?;
        req.container_id = container.id.clone();
        let after = self
            .clients
            .network
            .clone()
            .disconnect_container(req)
            .await
            .map_err(upstream("disconnect network"))?
            .into_inner();
        self.update_settings(&container, &before, &after).await?;
        Ok(after)
    }

    async fn attachment_of(&self, id: &str) -> Result<Attachment, Status> {
        match self
            .clients
            .network
            .clone()
            .get_attachment(GetAttachmentRequest {
                container_id: id.to_string(),
            })
            .await
        {
            Ok(a) => Ok(a.into_inner()),
            Err(s) if s.code() == Code::NotFound => Ok(Attachment::default()),
            Err(s) => Err(upstream("network attachment")(s)),
        }
    }

    async fn update_settings(
        &self,
        container: &berth_proto::supervisor::v1::Container,
        before: &Attachment,
        after: &Attachment,
    ) -> Result<(), Status> {
        let old = container
            .spec
            .as_ref()
            .and_then(|s| s.network.clone())
            .unwrap_or_default();
        let network = netsettings::after_change(&old, before, after);
        self.clients
            .supervisor
            .clone()
            .update_network(UpdateNetworkRequest {
                id: container.id.clone(),
                network: Some(network),
            })
            .await
            .map_err(upstream("update the container's hosts and resolv.conf"))?;
        Ok(())
    }
}
