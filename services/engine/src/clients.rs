//! Clients of the five services the engine coordinates, over lazy Unix-socket channels
//! (they connect on first use and reconnect after a service restarts) that carry the trace
//! context of each call.
use berth_common::{
    client::{channel, Traced as Channel},
    Config, Service,
};
use berth_proto::{
    events::v1::events_client::EventsClient, image::v1::image_store_client::ImageStoreClient,
    logs::v1::log_router_client::LogRouterClient, network::v1::network_client::NetworkClient,
    supervisor::v1::supervisor_client::SupervisorClient, volume::v1::volumes_client::VolumesClient,
};

#[derive(Clone)]
pub struct Clients {
    pub images: ImageStoreClient<Channel>,
    pub supervisor: SupervisorClient<Channel>,
    pub network: NetworkClient<Channel>,
    pub volumes: VolumesClient<Channel>,
    pub logs: LogRouterClient<Channel>,
    /// The event feeds of the services that publish events (ADR 16).
    pub events: Vec<crate::events::Source>,
}

impl Clients {
    pub fn new(config: &Config) -> Clients {
        // Image uploads and config blobs can exceed tonic's 4 MiB default.
        const MAX: usize = 256 * 1024 * 1024;
        Clients {
            images: ImageStoreClient::new(channel(config, Service::ImageStore))
                .max_decoding_message_size(MAX)
                .max_encoding_message_size(MAX),
            supervisor: SupervisorClient::new(channel(config, Service::Supervisor)),
            network: NetworkClient::new(channel(config, Service::Network)),
            volumes: VolumesClient::new(channel(config, Service::Volume)),
            logs: LogRouterClient::new(channel(config, Service::LogRouter)),
            events: [
                ("supervisor", Service::Supervisor),
                ("image-store", Service::ImageStore),
                ("network", Service::Network),
                ("volume", Service::Volume),
            ]
            .into_iter()
            .map(|(name, service)| crate::events::Source {
                service: name,
                client: EventsClient::new(channel(config, service)),
            })
            .collect(),
        }
    }
}
