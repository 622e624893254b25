//! The network service's logic, independent of gRPC: attachments, endpoints, ports.
//! Network CRUD lives in [`crate::networks`], start-up repair in [`crate::reconcile`].
use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::{Path, PathBuf},
    sync::Arc,
    time::SystemTime,
};

use berth_common::{
    cluster::ClusterConfig,
    events::{Event, EventLog},
    Config, Service,
};
use berth_proto::network::v1::{
    AttachContainerRequest, Attachment, ConnectContainerRequest, DisconnectContainerRequest,
    EndpointConfig, PortBinding,
};

use crate::{
    cluster::Cluster,
    dns::DnsServer,
    endpoint::{self, Kind},
    firewall::FirewallDriver,
    ipam::{self, Pool},
    names, netns,
    proxy::{PortProxy, ProxyRequest},
    state::{self, addressing, State},
    store::{
        AttachmentRow, EndpointConfigRow, EndpointRow, LinkRow, NetworkRow, PortRequest, PortRow,
        Store,
    },
    Error, Result,
};

/// What the service is built with besides its [`Config`]; tests swap pieces.
pub struct Options {
    pub firewall: Box<dyn FirewallDriver>,
    /// Pools new subnets are carved from.
    pub pools: Vec<Pool>,
    /// The host-wide IPAM lock file.
    pub ipam_lock: PathBuf,
    /// Resolvers the embedded DNS forwards to.
    pub dns_upstreams: Vec<SocketAddr>,
    /// The etcd cluster store of overlay networks; None on a single host.
    pub cluster: Option<ClusterConfig>,
}

impl Options {
    /// nftables in the instance's table, pools from `BERTH_ADDRESS_POOL` (else Docker's),
    /// the host's resolvers.
    pub fn from_config(config: &Config) -> Result<Options> {
        Ok(Options {
            firewall: Box::new(crate::firewall::Nftables::new(config.nft_table())),
            pools: ipam::pools_from_env().map_err(Error::InvalidArgument)?,
            ipam_lock: crate::hosts_lock::ipam_lock_path(),
            dns_upstreams: crate::dns::default_upstreams(),
            cluster: berth_common::config::FileConfig::load()
                .map_err(|e| Error::InvalidArgument(e.to_string()))?
                .cluster
                .resolve()
                .map_err(Error::InvalidArgument)?,
        })
    }
}

/// The nameservers of the host's /etc/resolv.conf, port 53.
#[derive(Clone)]
pub struct NetworkService {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub netns_dir: PathBuf,
    /// Start of every interface name this instance makes.
    pub prefix: String,
    pub pools: Vec<Pool>,
    pub ipam_lock: PathBuf,
    pub store: Store,
    /// Serialises every change, so the store, the kernel and the helpers move together.
    pub lock: tokio::sync::Mutex<()>,
    pub firewall: Box<dyn FirewallDriver>,
    pub proxy: PortProxy,
    pub dns: DnsServer,
    /// The cluster store and this host's view of it (overlay networks).
    pub cluster: Option<Arc<Cluster>>,
    /// The task keeping this host in the cluster.
    pub cluster_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// `network` events (ADR 16), published after each committed change.
    pub events: EventLog,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self
            .cluster_task
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

/// What a mode asks for, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Mode<'a> {
    None,
    Host,
    Container(&'a str),
    /// A network by name, ID or ID prefix.
    Network(&'a str),
}

pub(crate) fn parse_mode(mode: &str) -> Result<Mode<'_>> {
    match mode {
        // Docker's default network is the bridge.
        "" | "default" => Ok(Mode::Network(state::DEFAULT_NETWORK)),
        "none" => Ok(Mode::None),
        "host" => Ok(Mode::Host),
        _ => match mode.strip_prefix("container:") {
            Some("") => Err(Error::InvalidArgument(
                "network mode container: needs a container ID".into(),
            )),
            Some(target) => Ok(Mode::Container(target)),
            None => Ok(Mode::Network(mode)),
        },
    }
}

fn check_container_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid container ID {id:?}"
        )))
    }
}

pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// A mode resolved against the store.
enum Resolved {
    None,
    Host,
    Container(String),
    Network(Box<NetworkRow>),
}

/// Kernel and store changes made so far by a multi-step operation, undone in reverse
/// when a later step fails.
#[derive(Default)]
struct Undo(Vec<Step>);

enum Step {
    Netns(PathBuf),
    Endpoint {
        netns: PathBuf,
        ifname: String,
        host_ifname: String,
    },
    Proxy(String),
    Rows(String),
    /// An endpoint published in the cluster store: (network, container, ip).
    Published(String, String, String),
}

impl NetworkService {
    /// Opens the state in `config` with the default [`Options`]; see [`Self::open_with`].
    pub async fn open(config: &Config) -> Result<NetworkService> {
        NetworkService::open_with(config, Options::from_config(config)?).await
    }

    /// Opens the state, records the built-in networks, makes the default bridge and
    /// reconciles the kernel and the helpers with the records (after a crash or reboot).
    pub async fn open_with(config: &Config, options: Options) -> Result<NetworkService> {
        let state = config.state_dir(Service::Network);
        berth_common::config::ensure_private_dir(&state)
            .map_err(|e| Error::sys(format!("create {}", state.display()), e))?;
        let store = Store::open(&state.join("meta.db"))?;
        let events = EventLog::open_or_memory(&state, "network");
        let prefix = config.link_prefix();
        for (name, driver) in state::BUILTIN {
            let interface = if name == state::DEFAULT_NETWORK {
                names::default_bridge(&prefix)
            } else {
                String::new()
            };
            store.ensure_network(&NetworkRow {
                name: name.into(),
                id: berth_common::ids::random_id(),
                driver: driver.into(),
                created: now_rfc3339(),
                interface,
                ..Default::default()
            })?;
        }
        let service = NetworkService {
            inner: Arc::new(Inner {
                netns_dir: config.netns_dir(),
                prefix,
                pools: options.pools,
                ipam_lock: options.ipam_lock,
                store,
                lock: Default::default(),
                firewall: options.firewall,
                proxy: PortProxy::new(),
                dns: DnsServer::new(options.dns_upstreams),
                cluster: options.cluster.map(|c| Arc::new(Cluster::new(c))),
                cluster_task: Default::default(),
                events,
            }),
        };
        service.reconcile().await?;
        service.start_cluster_sync();
        Ok(service)
    }

    /// The log this service serves as `berth.events.v1.Events`.
    pub fn events(&self) -> &EventLog {
        &self.inner.events
    }

    /// Publishes a `network` event about `n` with Docker's attributes (name, type, and
    /// the container for connect and disconnect).
    pub(crate) fn publish(&self, action: &str, n: &NetworkRow, container_id: &str) {
        let event = Event::new("network", action, &n.id)
            .attr("name", &n.name)
            .attr("type", &n.driver)
            .attr("container", container_id);
        self.inner.events.publish(event);
    }

    /// Publishes `action` (connect, disconnect) for each of `endpoints`.
    fn publish_endpoints(&self, action: &str, state: &State, endpoints: &[EndpointRow]) {
        for e in endpoints {
            if let Some(n) = state.network_by_id(&e.network_id) {
                self.publish(action, n, &e.container_id);
            }
        }
    }

    /// The prefix of every interface this service makes.
    pub fn link_prefix(&self) -> &str {
        &self.inner.prefix
    }

    fn netns_path(&self, container_id: &str) -> PathBuf {
        self.inner.netns_dir.join(container_id)
    }

    pub(crate) fn state(&self) -> Result<State> {
        State::load(&self.inner.store)
    }

    /// Replaces the firewall's rules with the state of the store.
    pub(crate) async fn apply_firewall(&self) -> Result<()> {
        let desired = self.state()?.firewall_state();
        let inner = self.inner.clone();
        blocking(move || inner.firewall.apply(&desired)).await
    }

    /// Hands the embedded DNS the current names of a user-defined network.
    pub(crate) fn refresh_dns(&self, state: &State, network_id: &str) {
        if let Some(n) = state.network_by_id(network_id) {
            if state.is_user(n) {
                let mut entries = state.dns_entries(network_id);
                if n.driver == "overlay" {
                    entries.extend(self.remote_dns_entries(network_id));
                }
                self.inner.dns.set_entries(network_id, entries);
            }
        }
    }

    /// Records `container_id`'s network and activates it at once: the old
    /// create-and-start in one call, for tests and tools. See [`Self::attach_with`].
    pub async fn attach(
        &self,
        container_id: &str,
        mode: &str,
        hostname: &str,
    ) -> Result<Attachment> {
        self.attach_with(&AttachContainerRequest {
            container_id: container_id.into(),
            mode: mode.into(),
            hostname: hostname.into(),
            ..Default::default()
        })
        .await?;
        self.activate(container_id).await
    }

    /// Records a container's network configuration (AttachContainer, at create): mode,
    /// endpoint config, requested ports, links. No kernel object is made; everything that
    /// can be checked without one is checked here. Idempotent per container ID.
    pub async fn attach_with(&self, req: &AttachContainerRequest) -> Result<Attachment> {
        let id = req.container_id.as_str();
        check_container_id(id)?;
        let parsed = parse_mode(&req.mode)?;
        let _guard = self.inner.lock.lock().await;
        let state = self.state()?;
        // A network named by mode that is really none or host acts as that mode.
        let resolved = match parsed {
            Mode::Network(name) => {
                let n = state
                    .find_network(name)
                    .ok_or_else(|| Error::NetworkNotFound(name.to_string()))?;
                match n.driver.as_str() {
                    "null" => Resolved::None,
                    "host" => Resolved::Host,
                    _ => Resolved::Network(Box::new(n.clone())),
                }
            }
            Mode::None => Resolved::None,
            Mode::Host => Resolved::Host,
            Mode::Container(t) => Resolved::Container(t.to_string()),
        };
        let mode_name = match &resolved {
            Resolved::None => "none".to_string(),
            Resolved::Host => "host".to_string(),
            Resolved::Container(t) => format!("container:{t}"),
            Resolved::Network(n) => n.name.clone(),
        };
        if let Some(row) = state.attachment(id) {
            if row.mode != mode_name {
                return Err(Error::FailedPrecondition(format!(
                    "container {id} is already attached with network mode {}",
                    row.mode
                )));
            }
            return Ok(state.attachment_view(row));
        }
        check_ports(&req.ports)?;
        let mut row = AttachmentRow {
            container_id: id.to_string(),
            mode: mode_name,
            network: String::new(),
            netns_path: String::new(),
            owns_netns: false,
            hostname: req.hostname.clone(),
            created: now_rfc3339(),
            container_name: req.container_name.clone(),
            active: false,
            port_requests: Vec::new(),
        };
        let own_netns = self.netns_path(id).to_string_lossy().into_owned();
        let mut configs = Vec::new();
        let mut links = Vec::new();
        match &resolved {
            Resolved::Network(n) => {
                let cfg = req.endpoint.clone().unwrap_or_default();
                configs.push(endpoint_config(&state, id, n, &cfg)?);
                links = record_links(&state, id, &req.links)?;
                row.network = n.name.clone();
                row.netns_path = own_netns;
                row.owns_netns = true;
                row.port_requests = req
                    .ports
                    .iter()
                    .map(|p| PortRequest {
                        protocol: if p.protocol.is_empty() {
                            "tcp".into()
                        } else {
                            p.protocol.clone()
                        },
                        host_ip: p.host_ip.clone(),
                        host_port: p.host_port,
                        container_port: p.container_port,
                    })
                    .collect();
            }
            Resolved::None => {
                row.network = "none".into();
                row.netns_path = own_netns;
                row.owns_netns = true;
            }
            Resolved::Host => row.network = "host".into(),
            Resolved::Container(target) => {
                if target == id {
                    return Err(Error::InvalidArgument(format!(
                        "cannot join the network namespace of container {target} itself"
                    )));
                }
                if !req.ports.is_empty() {
                    return Err(Error::InvalidArgument(
                        "conflicting options: port publishing and the container type network mode"
                            .into(),
                    ));
                }
                let owner = state.attachment(target).ok_or_else(|| {
                    Error::FailedPrecondition(format!(
                        "cannot join the network of container {target}: it has no network attachment"
                    ))
                })?;
                row.netns_path = owner.netns_path.clone();
            }
        }
        if !req.ports.is_empty() && !matches!(resolved, Resolved::Network(_)) {
            tracing::warn!(container_id = id, mode = %row.mode, "published ports are discarded in this network mode");
        }
        self.inner.store.insert_container(&row, &configs, &links)?;
        tracing::info!(container_id = id, mode = %row.mode, netns = %row.netns_path, "attached");
        Ok(self.state()?.attachment_view(&row))
    }

    /// Gives an attached container its live network before it runs (ActivateContainer):
    /// namespace, endpoints (addresses allocated now), published ports, firewall, DNS.
    /// All of it or, on any failure, nothing. Idempotent for an active container.
    pub async fn activate(&self, container_id: &str) -> Result<Attachment> {
        check_container_id(container_id)?;
        let _guard = self.inner.lock.lock().await;
        let state = self.state()?;
        let row = state
            .attachment(container_id)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "container {container_id} has no network attachment"
                ))
            })?
            .clone();
        if row.active {
            return Ok(state.attachment_view(&row));
        }
        if let Some(target) = row.mode.strip_prefix("container:") {
            if !state.is_active(target) {
                return Err(Error::FailedPrecondition(format!(
                    "cannot join network of a non running container: {target}"
                )));
            }
        }
        let mut undo = Undo::default();
        if let Err(e) = self.activate_steps(&state, &row, &mut undo).await {
            self.undo(undo).await;
            return Err(e);
        }
        tracing::info!(container_id, mode = %row.mode, "activated");
        let now = self.state()?;
        let endpoints: Vec<EndpointRow> = now
            .endpoints_of(container_id)
            .into_iter()
            .cloned()
            .collect();
        self.publish_endpoints("connect", &now, &endpoints);
        let row = now.attachment(container_id).unwrap_or(&row);
        Ok(now.attachment_view(row))
    }

    /// The steps of [`Self::activate`]; each registers its undo.
    async fn activate_steps(
        &self,
        state: &State,
        row: &AttachmentRow,
        undo: &mut Undo,
    ) -> Result<()> {
        let id = row.container_id.as_str();
        if row.owns_netns {
            let path = PathBuf::from(&row.netns_path);
            let create = path.clone();
            blocking(move || netns::create(&create)).await?;
            undo.0.push(Step::Netns(path));
        }
        let netns = PathBuf::from(&row.netns_path);
        let mut endpoints: Vec<EndpointRow> = Vec::new();
        for cfg in state.configs_of(id) {
            let n = state.network_by_id(&cfg.network_id).ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "container {id}: network {} no longer exists",
                    cfg.network_id
                ))
            })?;
            let ifname = names::next_container_ifname(endpoints.iter().map(|e| e.ifname.as_str()));
            let route = !n.internal && !endpoints.iter().any(|e| e.default_route);
            let ep = self
                .create_endpoint(state, id, &netns, n, cfg, &ifname, route)
                .await?;
            undo.0.push(Step::Endpoint {
                netns: netns.clone(),
                ifname: ep.ifname.clone(),
                host_ifname: ep.host_ifname.clone(),
            });
            if n.driver == "overlay" {
                undo.0.push(Step::Published(
                    ep.network_id.clone(),
                    ep.container_id.clone(),
                    ep.ip.clone(),
                ));
            }
            endpoints.push(ep);
        }

        let mut ports = Vec::new();
        if !row.port_requests.is_empty() {
            // Ports forward to the first endpoint, as they did at create.
            match endpoints.first() {
                Some(first) => {
                    let ip: Ipv4Addr = first.ip.parse().map_err(|_| {
                        Error::InvalidArgument(format!("invalid address {}", first.ip))
                    })?;
                    let requests = proxy_requests(&port_bindings(&row.port_requests), ip)?;
                    undo.0.push(Step::Proxy(id.to_string()));
                    let bindings = self.inner.proxy.open(id, &requests).await?;
                    ports = bindings
                        .iter()
                        .map(|b| PortRow {
                            container_id: id.to_string(),
                            protocol: protocol_name(b.protocol).into(),
                            host_ip: b.host.ip().to_string(),
                            host_port: b.host.port(),
                            container_ip: b.target.ip().to_string(),
                            container_port: b.target.port(),
                        })
                        .collect();
                }
                None => {
                    tracing::warn!(container_id = id, "no endpoint left to publish ports on")
                }
            }
        }

        let link_ips = link_addresses(state, row)?;
        self.inner
            .store
            .activate(id, &endpoints, &ports, &link_ips)?;
        undo.0.push(Step::Rows(id.to_string()));
        if !ports.is_empty() {
            self.apply_firewall().await?;
        }
        let now = self.state()?;
        for e in &endpoints {
            self.refresh_dns(&now, &e.network_id);
        }
        self.inner.dns.set_links(id, now.dns_links(id));
        Ok(())
    }

    /// Allocates an address and builds the endpoint of `container_id` on `n` as `ifname`.
    #[allow(clippy::too_many_arguments)]
    async fn create_endpoint(
        &self,
        state: &State,
        container_id: &str,
        netns: &Path,
        n: &NetworkRow,
        cfg: &EndpointConfigRow,
        ifname: &str,
        default_route: bool,
    ) -> Result<EndpointRow> {
        let a = addressing(n).ok_or_else(|| {
            Error::FailedPrecondition(format!("network {} has no subnet", n.name))
        })?;
        let overlay = n.driver == "overlay";
        let mut taken = state.taken(&n.id);
        let ip = if overlay {
            let fixed = (!cfg.ipv4_address.is_empty())
                .then(|| parse_ip(&cfg.ipv4_address))
                .transpose()?;
            self.allocate_overlay_ip(state, n, container_id, fixed)
                .await?
        } else if cfg.ipv4_address.is_empty() {
            taken.extend(state.reserved(&n.id, container_id));
            ipam::allocate(a.subnet, a.range, a.gateway, &taken).ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "no available IPv4 addresses on network {}",
                    n.name
                ))
            })?
        } else {
            let ip = parse_ip(&cfg.ipv4_address)?;
            ipam::check_fixed(a.subnet, a.gateway, &taken, ip)
                .map_err(Error::FailedPrecondition)?;
            ip
        };
        let mac = endpoint::mac(&cfg.mac_address, ip)?;
        let kind = match n.driver.as_str() {
            "bridge" | "overlay" => Kind::Bridge {
                bridge: n.interface.clone(),
                host_ifname: names::host_veth(&self.inner.prefix),
            },
            "macvlan" => Kind::Macvlan {
                parent: n.interface.clone(),
            },
            other => {
                return Err(Error::FailedPrecondition(format!(
                    "network {} with driver {other} has no endpoints",
                    n.name
                )))
            }
        };
        let host_ifname = match &kind {
            Kind::Bridge { host_ifname, .. } => host_ifname.clone(),
            Kind::Macvlan { .. } => String::new(),
        };
        let route_via = if default_route { a.gateway } else { None };
        let spec = endpoint::Spec {
            netns: netns.to_path_buf(),
            ifname: ifname.to_string(),
            ip,
            subnet: a.subnet,
            mac,
            route_via,
            mtu: None,
            kind,
        };
        let made = self.build_endpoint(spec, overlay).await;
        if let Err(e) = made {
            if overlay {
                let _ = self.release_overlay_ip(&n.id, container_id, ip).await;
            }
            return Err(e);
        }
        let row = EndpointRow {
            container_id: container_id.to_string(),
            network_id: n.id.clone(),
            ip: ip.to_string(),
            mac: names::format_mac(&mac),
            aliases: cfg.aliases.clone(),
            ifname: ifname.to_string(),
            host_ifname,
            default_route: route_via.is_some(),
            created: now_rfc3339(),
        };
        if overlay {
            let attachment = state.attachment(container_id).cloned().unwrap_or_default();
            if let Err(e) = self.publish_endpoint(&row, &attachment).await {
                let (path, name, host) = (
                    netns.to_path_buf(),
                    row.ifname.clone(),
                    row.host_ifname.clone(),
                );
                let _ = blocking(move || endpoint::remove(&path, &name, &host)).await;
                self.unpublish_endpoint(&n.id, container_id, &row.ip).await;
                return Err(e);
            }
        }
        Ok(row)
    }

    /// Makes the endpoint's links; on an overlay network with the tunnel's smaller MTU.
    async fn build_endpoint(&self, mut spec: endpoint::Spec, overlay: bool) -> Result<()> {
        if overlay {
            spec.mtu = Some(self.overlay_mtu().await?);
        }
        blocking(move || endpoint::create(&spec)).await
    }

    async fn undo(&self, undo: Undo) {
        for step in undo.0.into_iter().rev() {
            let result = match step {
                Step::Rows(id) => self.inner.store.deactivate(&id),
                Step::Proxy(id) => {
                    // Waits for the sockets to close, so a retry can bind the same ports.
                    self.inner.proxy.close_wait(&id).await;
                    Ok(())
                }
                Step::Endpoint {
                    netns,
                    ifname,
                    host_ifname,
                } => blocking(move || endpoint::remove(&netns, &ifname, &host_ifname)).await,
                Step::Netns(path) => blocking(move || netns::remove(&path)).await,
                Step::Published(network, container, ip) => {
                    self.unpublish_endpoint(&network, &container, &ip).await;
                    Ok(())
                }
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "undoing a failed activation");
            }
        }
        let _ = self.apply_firewall().await;
    }

    /// Removes what [`Self::activate`] made (DeactivateContainer, when the container's
    /// process has ended): ports, endpoints (addresses released), namespace, DNS names.
    /// The configuration stays. Idempotent; unknown containers succeed.
    pub async fn deactivate(&self, container_id: &str) -> Result<()> {
        check_container_id(container_id)?;
        let _guard = self.inner.lock.lock().await;
        self.deactivate_locked(container_id).await
    }

    async fn deactivate_locked(&self, container_id: &str) -> Result<()> {
        let state = self.state()?;
        let Some(row) = state.attachment(container_id) else {
            return Ok(());
        };
        let had_ports = state.ports.iter().any(|p| p.container_id == container_id);
        // Waits for the sockets to close: `stop` then `run -p` on the same port must work.
        self.inner.proxy.close_wait(container_id).await;
        let endpoints: Vec<EndpointRow> = state
            .endpoints_of(container_id)
            .into_iter()
            .cloned()
            .collect();
        // A namespace nobody else joined takes its links along when it goes: the kernel
        // then destroys them (and the veths' host ends) in the background, where deleting
        // each link here waits for an RCU grace period on the path of every stop.
        let joined = format!("container:{container_id}");
        let links_go_with_netns = row.owns_netns
            && netns::is_namespace(Path::new(&row.netns_path))
            && !state
                .attachments
                .iter()
                .any(|a| a.active && a.mode == joined);
        for e in &endpoints {
            let (netns, ifname, host) = (
                PathBuf::from(&row.netns_path),
                e.ifname.clone(),
                e.host_ifname.clone(),
            );
            if !links_go_with_netns {
                blocking(move || endpoint::remove(&netns, &ifname, &host)).await?;
            }
            if state
                .network_by_id(&e.network_id)
                .is_some_and(|n| n.driver == "overlay")
            {
                self.unpublish_endpoint(&e.network_id, container_id, &e.ip)
                    .await;
            }
        }
        // Also when inactive: a crash may have left the file behind.
        if row.owns_netns && Path::new(&row.netns_path).exists() {
            let path = PathBuf::from(&row.netns_path);
            blocking(move || netns::remove(&path)).await?;
        }
        self.inner.store.deactivate(container_id)?;
        self.inner.dns.set_links(container_id, Vec::new());
        let now = self.state()?;
        for e in &endpoints {
            self.refresh_dns(&now, &e.network_id);
        }
        if had_ports {
            self.apply_firewall().await?;
        }
        if row.active {
            tracing::info!(container_id, mode = %row.mode, "deactivated");
            self.publish_endpoints("disconnect", &state, &endpoints);
        }
        Ok(())
    }

    /// Deactivates and forgets a container (DetachContainer, at remove); unknown
    /// containers succeed.
    pub async fn detach(&self, container_id: &str) -> Result<()> {
        check_container_id(container_id)?;
        let _guard = self.inner.lock.lock().await;
        let Some(row) = self.inner.store.attachment(container_id)? else {
            return Ok(());
        };
        self.deactivate_locked(container_id).await?;
        self.inner.store.delete_attachment(container_id)?;
        tracing::info!(container_id, mode = %row.mode, "detached");
        Ok(())
    }

    /// Adds a network to a container (`network connect`): recorded always, the live
    /// endpoint made only while the container is active.
    pub async fn connect(&self, req: &ConnectContainerRequest) -> Result<Attachment> {
        let id = req.container_id.as_str();
        check_container_id(id)?;
        let _guard = self.inner.lock.lock().await;
        let state = self.state()?;
        let (row, n) = attachment_and_network(&state, id, &req.network)?;
        if !matches!(n.driver.as_str(), "bridge" | "macvlan" | "overlay") {
            return Err(Error::FailedPrecondition(format!(
                "container cannot be connected to network {}: only bridge, macvlan and overlay networks can be added",
                n.name
            )));
        }
        if !row.owns_netns || row.mode == "none" {
            return Err(Error::FailedPrecondition(format!(
                "container {id} cannot be connected to network {}: its network mode is {}",
                n.name, row.mode
            )));
        }
        if state.configs_of(id).iter().any(|c| c.network_id == n.id) {
            return Err(Error::AlreadyExists(format!(
                "endpoint with name {} already exists in network {}",
                if row.container_name.is_empty() {
                    id
                } else {
                    &row.container_name
                },
                n.name
            )));
        }
        let cfg = endpoint_config(&state, id, &n, &req.endpoint.clone().unwrap_or_default())?;
        self.inner.store.insert_config(&cfg)?;
        if row.active {
            let mine = state.endpoints_of(id);
            let ifname = names::next_container_ifname(mine.iter().map(|e| e.ifname.as_str()));
            let route = !n.internal && !mine.iter().any(|e| e.default_route);
            let netns = PathBuf::from(&row.netns_path);
            let made = match self
                .create_endpoint(&state, id, &netns, &n, &cfg, &ifname, route)
                .await
            {
                Ok(ep) => match self.inner.store.insert_endpoint(&ep) {
                    Ok(()) => Ok(ep),
                    Err(e) => {
                        let (host, name) = (ep.host_ifname.clone(), ep.ifname.clone());
                        let _ = blocking(move || endpoint::remove(&netns, &name, &host)).await;
                        Err(e)
                    }
                },
                Err(e) => Err(e),
            };
            match made {
                Ok(ep) => {
                    tracing::info!(container_id = id, network = %n.name, ip = %ep.ip, ifname = %ep.ifname, "connected");
                    self.publish("connect", &n, id);
                }
                Err(e) => {
                    let _ = self.inner.store.delete_config(id, &n.id);
                    return Err(e);
                }
            }
        } else {
            tracing::info!(container_id = id, network = %n.name, "connected (endpoint made at start)");
        }
        let now = self.state()?;
        self.refresh_dns(&now, &n.id);
        Ok(now.attachment_view(&row))
    }

    /// Removes a container from one network (`network disconnect`): the record, and the
    /// live endpoint when active. Ports that forwarded to that endpoint are closed.
    pub async fn disconnect(&self, req: &DisconnectContainerRequest) -> Result<Attachment> {
        let id = req.container_id.as_str();
        check_container_id(id)?;
        let _guard = self.inner.lock.lock().await;
        let state = self.state()?;
        let (row, n) = attachment_and_network(&state, id, &req.network)?;
        if !state.configs_of(id).iter().any(|c| c.network_id == n.id) {
            return Err(Error::NotFound(format!(
                "container {id} is not connected to network {}",
                n.name
            )));
        }
        let live = state
            .endpoints_of(id)
            .into_iter()
            .find(|e| e.network_id == n.id)
            .cloned();
        if let Some(ep) = &live {
            let (netns, name, host) = (
                PathBuf::from(&row.netns_path),
                ep.ifname.clone(),
                ep.host_ifname.clone(),
            );
            blocking(move || endpoint::remove(&netns, &name, &host)).await?;
            if n.driver == "overlay" {
                self.unpublish_endpoint(&n.id, id, &ep.ip).await;
            }
            self.inner.store.delete_endpoint(id, &n.id)?;
            let forwarded = state
                .ports
                .iter()
                .any(|p| p.container_id == id && p.container_ip == ep.ip);
            if forwarded {
                self.inner.proxy.close_wait(id).await;
                self.inner.store.delete_ports(id)?;
                self.apply_firewall().await?;
            }
        }
        self.inner.store.delete_config(id, &n.id)?;
        let now = self.state()?;
        self.refresh_dns(&now, &n.id);
        tracing::info!(container_id = id, network = %n.name, "disconnected");
        if live.is_some() {
            self.publish("disconnect", &n, id);
        }
        Ok(now.attachment_view(&row))
    }

    pub fn get_attachment(&self, container_id: &str) -> Result<Option<Attachment>> {
        let state = self.state()?;
        Ok(state
            .attachment(container_id)
            .map(|row| state.attachment_view(row)))
    }
}

/// Checks `--alias`, `--ip` and `--mac-address` against the network and builds the
/// config to record. A fixed address must be in the subnet and not held by another
/// container's config.
fn endpoint_config(
    state: &State,
    container_id: &str,
    n: &NetworkRow,
    cfg: &EndpointConfig,
) -> Result<EndpointConfigRow> {
    let user = state.is_user(n);
    if !cfg.aliases.is_empty() && !user {
        return Err(Error::InvalidArgument(
            "network-scoped aliases are only supported for user-defined networks".into(),
        ));
    }
    if !cfg.ipv4_address.is_empty() {
        if !user {
            return Err(Error::InvalidArgument(format!(
                "user specified IP address {} is supported on user defined networks only",
                cfg.ipv4_address
            )));
        }
        let ip = parse_ip(&cfg.ipv4_address)?;
        let a = addressing(n).ok_or_else(|| {
            Error::FailedPrecondition(format!("network {} has no subnet", n.name))
        })?;
        ipam::check_fixed(
            a.subnet,
            a.gateway,
            &state.reserved(&n.id, container_id),
            ip,
        )
        .map_err(Error::InvalidArgument)?;
    }
    if !cfg.mac_address.is_empty() {
        names::parse_mac(&cfg.mac_address).map_err(Error::InvalidArgument)?;
    }
    Ok(EndpointConfigRow {
        container_id: container_id.to_string(),
        network_id: n.id.clone(),
        aliases: cfg.aliases.clone(),
        ipv4_address: cfg.ipv4_address.clone(),
        mac_address: cfg.mac_address.clone(),
        created: now_rfc3339(),
    })
}

fn parse_ip(s: &str) -> Result<Ipv4Addr> {
    s.parse()
        .map_err(|_| Error::InvalidArgument(format!("invalid IPv4 address {s:?}")))
}

/// `--link` targets to record: attached containers. Their addresses are looked up at
/// each activation.
fn record_links(
    state: &State,
    container_id: &str,
    links: &[berth_proto::network::v1::Link],
) -> Result<Vec<LinkRow>> {
    links
        .iter()
        .map(|l| {
            if state.attachment(&l.container_id).is_none() {
                let label = if l.name.is_empty() {
                    &l.container_id
                } else {
                    &l.name
                };
                return Err(Error::FailedPrecondition(format!(
                    "cannot link to {label}: it has no network attachment"
                )));
            }
            Ok(LinkRow {
                container_id: container_id.to_string(),
                target_id: l.container_id.clone(),
                name: l.name.clone(),
                alias: l.alias.clone(),
                ip: String::new(),
            })
        })
        .collect()
}

/// The current address of each link target of `row`, which must be running (Docker:
/// "Cannot link to a non running container"); on the container's first network when the
/// target is on it.
fn link_addresses(state: &State, row: &AttachmentRow) -> Result<Vec<(String, String)>> {
    let first = state
        .configs_of(&row.container_id)
        .first()
        .map(|c| c.network_id.clone());
    state
        .links
        .iter()
        .filter(|l| l.container_id == row.container_id)
        .map(|l| {
            let alias = if l.alias.is_empty() {
                &l.name
            } else {
                &l.alias
            };
            let not_running = || {
                Error::FailedPrecondition(format!(
                    "Cannot link to a non running container: /{} AS /{}/{alias}",
                    l.name, row.container_name
                ))
            };
            let target = state.attachment(&l.target_id).ok_or_else(not_running)?;
            if !target.active {
                return Err(not_running());
            }
            let owner = target
                .mode
                .strip_prefix("container:")
                .unwrap_or(&target.container_id);
            let eps = state.endpoints_of(owner);
            let ep = eps
                .iter()
                .find(|e| Some(&e.network_id) == first.as_ref())
                .or(eps.first())
                .ok_or_else(|| {
                    Error::FailedPrecondition(format!(
                        "cannot link to {}: it has no network address",
                        l.name
                    ))
                })?;
            Ok((l.target_id.clone(), ep.ip.clone()))
        })
        .collect()
}

/// The recorded requests as the proto's bindings.
fn port_bindings(requests: &[PortRequest]) -> Vec<PortBinding> {
    requests
        .iter()
        .map(|p| PortBinding {
            protocol: p.protocol.clone(),
            container_port: p.container_port,
            host_ip: p.host_ip.clone(),
            host_port: p.host_port,
        })
        .collect()
}

fn check_ports(ports: &[PortBinding]) -> Result<()> {
    proxy_requests(ports, Ipv4Addr::UNSPECIFIED).map(drop)
}

/// The proxy's requests for `ports`, forwarding to `ip`; errors name the bad value.
pub(crate) fn proxy_requests(ports: &[PortBinding], ip: Ipv4Addr) -> Result<Vec<ProxyRequest>> {
    ports
        .iter()
        .map(|p| {
            let proto = if p.protocol.is_empty() {
                "tcp"
            } else {
                &p.protocol
            };
            let protocol = state::protocol(proto).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "invalid protocol {:?}: want tcp or udp",
                    p.protocol
                ))
            })?;
            let container_port = u16::try_from(p.container_port)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!("invalid container port {}", p.container_port))
                })?;
            let host_port = u16::try_from(p.host_port).map_err(|_| {
                Error::InvalidArgument(format!("invalid host port {}", p.host_port))
            })?;
            let host_ip = if p.host_ip.is_empty() {
                Ipv4Addr::UNSPECIFIED
            } else {
                p.host_ip.parse().map_err(|_| {
                    Error::InvalidArgument(format!("invalid host IP {:?}", p.host_ip))
                })?
            };
            Ok(ProxyRequest {
                protocol,
                host: SocketAddrV4::new(host_ip, host_port),
                target: SocketAddrV4::new(ip, container_port),
            })
        })
        .collect()
}

pub(crate) fn protocol_name(p: crate::proxy::Protocol) -> &'static str {
    match p {
        crate::proxy::Protocol::Tcp => "tcp",
        crate::proxy::Protocol::Udp => "udp",
    }
}

/// The container's attachment and the network it names, for connect and disconnect.
fn attachment_and_network(
    state: &State,
    container_id: &str,
    network: &str,
) -> Result<(AttachmentRow, NetworkRow)> {
    let row = state.attachment(container_id).ok_or_else(|| {
        Error::NotFound(format!(
            "container {container_id} has no network attachment"
        ))
    })?;
    let n = state
        .find_network(network)
        .ok_or_else(|| Error::NetworkNotFound(network.to_string()))?;
    Ok((row.clone(), n.clone()))
}

/// Runs blocking kernel work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Error::sys(
            "network namespace task",
            std::io::Error::other(e.to_string()),
        )
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!(parse_mode("").unwrap(), Mode::Network("bridge"));
        assert_eq!(parse_mode("default").unwrap(), Mode::Network("bridge"));
        assert_eq!(parse_mode("bridge").unwrap(), Mode::Network("bridge"));
        assert_eq!(parse_mode("none").unwrap(), Mode::None);
        assert_eq!(parse_mode("host").unwrap(), Mode::Host);
        assert_eq!(parse_mode("container:abc").unwrap(), Mode::Container("abc"));
        assert_eq!(parse_mode("appnet").unwrap(), Mode::Network("appnet"));
        assert!(matches!(
            parse_mode("container:"),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn container_ids_are_path_safe() {
        assert!(check_container_id(&"a".repeat(64)).is_ok());
        for bad in ["", "..", "a/b", ".x"] {
            assert!(check_container_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn port_bindings_are_checked_and_errors_name_the_value() {
        let ip = Ipv4Addr::new(10, 0, 0, 2);
        let ok = PortBinding {
            protocol: "udp".into(),
            container_port: 53,
            host_ip: "127.0.0.1".into(),
            host_port: 0,
        };
        let r = proxy_requests(std::slice::from_ref(&ok), ip).unwrap();
        assert_eq!(r[0].target, SocketAddrV4::new(ip, 53));
        assert_eq!(r[0].host, "127.0.0.1:0".parse().unwrap());
        for (bad, word) in [
            (
                PortBinding {
                    protocol: "sctp".into(),
                    ..ok.clone()
                },
                "sctp",
            ),
            (
                PortBinding {
                    container_port: 70000,
                    ..ok.clone()
                },
                "70000",
            ),
            (
                PortBinding {
                    host_ip: "nope".into(),
                    ..ok.clone()
                },
                "nope",
            ),
        ] {
            let e = proxy_requests(&[bad], ip).unwrap_err().to_string();
            assert!(e.contains(word), "{e}");
        }
    }
}
