//! Overlay networks across hosts (ADR 14). The record lives in etcd ([`crate::cluster`]);
//! every host mirrors it into its own store and kernel: a bridge holding the network's
//! gateway (the same address on every host, so each container's gateway and DNS server is
//! its own host) and a VXLAN device on that bridge. Remote containers are reached through
//! static forwarding entries: for each, an FDB entry (MAC → its host's underlay address)
//! and a neighbour entry (IP → MAC) on the VXLAN device, which answers ARP itself, so no
//! broadcast crosses the tunnel. Addresses are allocated by transaction in etcd.
use std::{collections::BTreeMap, net::Ipv4Addr, time::Duration};

use berth_proto::network::v1::{ContainerEndpoint, Endpoint, NetworkInfo, NetworkPeer};

use crate::{
    cluster::{encode, Cluster, EndpointRecord, Keys, OverlayRecord, View},
    dns::DnsEntry,
    ipam::{self, Pool, Subnet},
    link, names,
    networks::make_bridge,
    service::{blocking, NetworkService},
    state::{addressing, State},
    store::{AttachmentRow, EndpointRow, NetworkRow},
    vxlan, Error, Result,
};

/// Docker's option naming an overlay network's VNI, and berth's short form.
pub const VXLAN_ID_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";
pub const VXLAN_ID_SHORT: &str = "vxlan-id";
/// Where automatic VNIs start (Docker's overlay driver starts at 4096 too).
const FIRST_VNI: u32 = 4096;
const MAX_VNI: u32 = (1 << 24) - 1;
/// VXLAN over IPv4 adds 50 bytes.
const VXLAN_OVERHEAD: u32 = 50;

/// Docker's default pool for overlay networks: /24s in 10.0.0.0/8.
fn overlay_pools() -> Vec<Pool> {
    vec![Pool {
        base: Subnet {
            addr: Ipv4Addr::new(10, 0, 0, 0),
            prefix: 8,
        },
        size: 24,
    }]
}

fn parse_vni(row: &NetworkRow) -> Result<Option<u32>> {
    let given = row
        .options
        .get(VXLAN_ID_SHORT)
        .or_else(|| row.options.get(VXLAN_ID_OPTION));
    let Some(v) = given else { return Ok(None) };
    v.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_VNI).contains(n))
        .map(Some)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "invalid vxlan-id {v:?}: want a number from 1 to {MAX_VNI}"
            ))
        })
}

/// The local row mirroring an overlay record.
pub(crate) fn mirror_row(prefix: &str, rec: &OverlayRecord) -> NetworkRow {
    let mut options = rec.options.clone();
    options.remove(VXLAN_ID_SHORT);
    options.insert(VXLAN_ID_OPTION.into(), rec.vni.to_string());
    NetworkRow {
        name: rec.name.clone(),
        id: rec.id.clone(),
        driver: "overlay".into(),
        created: rec.created.clone(),
        subnet: rec.subnet.clone(),
        gateway: rec.gateway.clone(),
        ip_range: rec.ip_range.clone(),
        internal: rec.internal,
        options,
        labels: rec.labels.clone(),
        interface: names::overlay_bridge(prefix, &rec.id),
    }
}

fn vni_of(row: &NetworkRow) -> Option<u32> {
    row.options.get(VXLAN_ID_OPTION)?.parse().ok()
}

/// The given VNI unless an overlay network has it, else the first free from 4096.
fn choose_vni(view: &View, fixed: Option<u32>) -> Result<u32> {
    match fixed {
        Some(v) => match view.networks.values().find(|n| n.vni == v) {
            Some(o) => Err(Error::AlreadyExists(format!(
                "vxlan-id {v} is already used by overlay network {}",
                o.name
            ))),
            None => Ok(v),
        },
        None => (FIRST_VNI..=MAX_VNI)
            .find(|v| !view.networks.values().any(|n| n.vni == *v))
            .ok_or_else(|| Error::FailedPrecondition("no free VXLAN ID".into())),
    }
}

/// After a refused create: the error when the user's name, subnet or VNI is taken; Ok
/// when only an automatic choice lost a race (the caller picks again).
async fn explain_conflict(
    client: &berth_etcd::Client,
    keys: &Keys,
    rec: &OverlayRecord,
    subnet_given: bool,
    vni_given: bool,
) -> Result<()> {
    let taken = |key: String| async move { client.get(&key).await.ok().flatten().is_some() };
    if taken(keys.name(&rec.name)).await {
        return Err(Error::AlreadyExists(format!(
            "network with name {} already exists",
            rec.name
        )));
    }
    if subnet_given && taken(keys.subnet(&rec.subnet)).await {
        return Err(Error::FailedPrecondition(format!(
            "subnet {} is already used by another overlay network",
            rec.subnet
        )));
    }
    if vni_given && taken(keys.vni(rec.vni)).await {
        return Err(Error::AlreadyExists(format!(
            "vxlan-id {} is already used by another overlay network",
            rec.vni
        )));
    }
    Ok(())
}

/// The cluster, or the error telling the user how to get one.
fn need(cluster: Option<&std::sync::Arc<Cluster>>) -> Result<&Cluster> {
    cluster.map(|c| c.as_ref()).ok_or_else(|| {
        Error::FailedPrecondition(
            "overlay networks need a cluster store: set [cluster] store and advertise in berth.toml (see deploy/multihost)".into(),
        )
    })
}

impl NetworkService {
    fn cluster(&self) -> Result<&Cluster> {
        need(self.inner.cluster.as_ref())
    }

    /// Creates an overlay network in the cluster store (name, VNI and subnet taken in one
    /// transaction) and mirrors it here. The caller holds the service lock.
    pub(crate) async fn create_overlay_network(
        &self,
        state: &State,
        row: &mut NetworkRow,
        subnet: Option<Subnet>,
        gateway: Option<Ipv4Addr>,
        attachable: bool,
    ) -> Result<()> {
        let cluster = self.cluster()?;
        let client = cluster.client()?;
        if row
            .options
            .contains_key(crate::networks::BRIDGE_NAME_OPTION)
        {
            return Err(Error::InvalidArgument(format!(
                "option {} is not supported by the overlay driver",
                crate::networks::BRIDGE_NAME_OPTION
            )));
        }
        let fixed_vni = parse_vni(row)?;
        let subnet_given = subnet.is_some();
        for attempt in 0..8 {
            let view = cluster.view();
            if let Some(other) = view.network_by_name(&row.name) {
                return Err(Error::AlreadyExists(format!(
                    "network with name {} already exists (overlay network {} created on {})",
                    row.name, other.id, other.creator
                )));
            }
            let (subnet, gateway) = self
                .overlay_addressing(&view, state, subnet, gateway)
                .await?;
            let vni = choose_vni(&view, fixed_vni)?;
            let rec = OverlayRecord {
                id: row.id.clone(),
                name: row.name.clone(),
                created: row.created.clone(),
                subnet: subnet.to_string(),
                gateway: gateway.to_string(),
                ip_range: row.ip_range.clone(),
                vni,
                internal: row.internal,
                attachable,
                options: row.options.clone(),
                labels: row.labels.clone(),
                creator: cluster.node().to_string(),
            };
            let keys = &cluster.keys;
            let id = rec.id.as_bytes().to_vec();
            let created = client
                .create_all(&[
                    (keys.name(&rec.name), id.clone(), None),
                    (keys.vni(vni), id.clone(), None),
                    (keys.subnet(&rec.subnet), id, None),
                    (keys.network(&rec.id), encode(&rec), None),
                ])
                .await
                .map_err(|e| cluster.store_error(e))?;
            if created {
                *row = mirror_row(&self.inner.prefix, &rec);
                cluster.apply(&[berth_etcd::Event::Put(berth_etcd::KeyValue {
                    key: keys.network(&rec.id),
                    value: encode(&rec),
                    create_revision: 0,
                    mod_revision: 0,
                    lease: 0,
                })]);
                if let Err(e) = self.mirror_network(row).await {
                    // Nothing half-made: the record goes with the local objects.
                    let _ = self.delete_overlay_keys(&rec).await;
                    return Err(e);
                }
                return Ok(());
            }
            // Someone else took the name, VNI or subnet: a user's clash is an error, a
            // race for an automatic VNI or subnet is tried again.
            explain_conflict(&client, keys, &rec, subnet_given, fixed_vni.is_some()).await?;
            // A concurrent create took an automatic VNI or subnet: pick again.
            tokio::time::sleep(Duration::from_millis(20 * (attempt + 1))).await;
        }
        Err(Error::Unavailable(format!(
            "could not create overlay network {}: the cluster store kept changing",
            row.name
        )))
    }

    /// The subnet and gateway of a new overlay network: the given subnet unless another
    /// overlay network overlaps it, else a free /24 of 10.0.0.0/8 that no overlay network,
    /// local network or route of this host uses.
    async fn overlay_addressing(
        &self,
        view: &View,
        state: &State,
        subnet: Option<Subnet>,
        gateway: Option<Ipv4Addr>,
    ) -> Result<(Subnet, Ipv4Addr)> {
        let cluster_subnets = view
            .networks
            .values()
            .filter_map(|n| n.subnet.parse::<Subnet>().ok().map(|s| (n, s)));
        if let Some(s) = subnet {
            if let Some((o, _)) = cluster_subnets.clone().find(|(_, x)| x.overlaps(s)) {
                return Err(Error::FailedPrecondition(format!(
                    "subnet {s} overlaps with overlay network {} ({})",
                    o.name, o.subnet
                )));
            }
            let g = gateway.or_else(|| s.first_host()).ok_or_else(|| {
                Error::InvalidArgument(format!("subnet {s} has no host addresses"))
            })?;
            return Ok((s, g));
        }
        let mut used =
            blocking(|| link::run(None, |h| async move { link::used_subnets(&h).await })).await?;
        used.extend(cluster_subnets.map(|(_, s)| s));
        used.extend(
            state
                .networks
                .iter()
                .filter_map(|n| addressing(n).map(|a| a.subnet)),
        );
        let s = ipam::choose_subnet(&overlay_pools(), &used).ok_or_else(|| {
            Error::FailedPrecondition(
                "could not find an available subnet for the overlay network in 10.0.0.0/8".into(),
            )
        })?;
        Ok((s, s.first_host().unwrap_or(s.addr)))
    }

    async fn delete_overlay_keys(&self, rec: &OverlayRecord) -> Result<()> {
        let cluster = self.cluster()?;
        let client = cluster.client()?;
        let keys = &cluster.keys;
        let id = rec.id.as_bytes();
        let err = |e| cluster.store_error(e);
        client.delete(&keys.network(&rec.id)).await.map_err(err)?;
        client
            .delete_if_value(&keys.name(&rec.name), id)
            .await
            .map_err(err)?;
        client
            .delete_if_value(&keys.vni(rec.vni), id)
            .await
            .map_err(err)?;
        client
            .delete_if_value(&keys.subnet(&rec.subnet), id)
            .await
            .map_err(err)?;
        client
            .delete_prefix(&keys.ipam_prefix(&rec.id))
            .await
            .map_err(err)?;
        client
            .delete(&keys.ipam_cursor(&rec.id))
            .await
            .map_err(err)?;
        client
            .delete_prefix(&keys.endpoint_prefix(&rec.id))
            .await
            .map_err(err)?;
        Ok(())
    }

    /// Removes an overlay network from the cluster (no host may have endpoints on it) and
    /// from this host. The caller holds the lock and checked local containers.
    pub(crate) async fn remove_overlay_network(&self, n: &NetworkRow) -> Result<()> {
        let cluster = self.cluster()?;
        let client = cluster.client()?;
        let (eps, _) = client
            .get_prefix(&cluster.keys.endpoint_prefix(&n.id))
            .await
            .map_err(|e| cluster.store_error(e))?;
        if !eps.is_empty() {
            let mut hosts: Vec<String> = eps
                .iter()
                .filter_map(|kv| serde_json::from_slice::<EndpointRecord>(&kv.value).ok())
                .map(|e| e.node)
                .collect();
            hosts.sort();
            hosts.dedup();
            return Err(Error::FailedPrecondition(format!(
                "error while removing network: network {} id {} has active endpoints (on {})",
                n.name,
                n.id,
                hosts.join(", ")
            )));
        }
        let rec = cluster
            .with_view(|v| v.networks.get(&n.id).cloned())
            .unwrap_or_else(|| OverlayRecord {
                id: n.id.clone(),
                name: n.name.clone(),
                created: n.created.clone(),
                subnet: n.subnet.clone(),
                gateway: n.gateway.clone(),
                ip_range: n.ip_range.clone(),
                vni: vni_of(n).unwrap_or(0),
                internal: n.internal,
                attachable: false,
                options: BTreeMap::new(),
                labels: BTreeMap::new(),
                creator: String::new(),
            });
        self.delete_overlay_keys(&rec).await?;
        self.unmirror_network(n).await
    }

    /// Makes the local copy of an overlay network: record, bridge with the gateway, VXLAN
    /// device, DNS, firewall. Idempotent.
    pub(crate) async fn mirror_network(&self, row: &NetworkRow) -> Result<()> {
        let state = self.state()?;
        if state.network_by_id(&row.id).is_none() {
            if let Some(clash) = state.networks.iter().find(|n| n.name == row.name) {
                return Err(Error::AlreadyExists(format!(
                    "overlay network {} clashes with local {} network {} on this host",
                    row.name, clash.driver, clash.id
                )));
            }
            self.inner.store.insert_network(row)?;
        }
        let result = self.ensure_overlay_kernel(row).await;
        if let Err(e) = result {
            let _ = self.unmirror_network(row).await;
            return Err(e);
        }
        self.apply_firewall().await?;
        tracing::info!(network = %row.name, id = %row.id, subnet = %row.subnet, "overlay network ready on this host");
        Ok(())
    }

    /// Bridge with the gateway, VXLAN device on it, DNS on the gateway.
    pub(crate) async fn ensure_overlay_kernel(&self, row: &NetworkRow) -> Result<()> {
        let cluster = self.cluster()?;
        let a = addressing(row).ok_or_else(|| {
            Error::FailedPrecondition(format!("network {} has no subnet", row.name))
        })?;
        let gateway = a.gateway.ok_or_else(|| {
            Error::FailedPrecondition(format!("network {} has no gateway", row.name))
        })?;
        let vni = vni_of(row).ok_or_else(|| {
            Error::FailedPrecondition(format!("overlay network {} has no VXLAN ID", row.name))
        })?;
        make_bridge(
            self.inner.ipam_lock.clone(),
            row.interface.clone(),
            Some((a.subnet, gateway)),
            Vec::new(),
            Vec::new(),
        )
        .await?;
        let (vx, bridge) = (
            names::overlay_vxlan(&self.inner.prefix, &row.id),
            row.interface.clone(),
        );
        let (local, port) = (cluster.config.advertise, cluster.config.vxlan_port);
        let mtu = self.overlay_mtu().await?;
        blocking(move || {
            link::run(None, move |h| async move {
                vxlan::ensure_vxlan(&h, &vx, vni, local, port, &bridge, mtu).await
            })
        })
        .await?;
        self.inner.dns.serve_network(&row.id, gateway).await?;
        Ok(())
    }

    /// The MTU of container links on overlay networks: the underlay's less VXLAN's 50.
    pub(crate) async fn overlay_mtu(&self) -> Result<u32> {
        let local = self.cluster()?.config.advertise;
        let underlay = blocking(move || {
            link::run(None, move |h| async move {
                vxlan::mtu_of_address(&h, local).await
            })
        })
        .await?;
        Ok(underlay.saturating_sub(VXLAN_OVERHEAD).max(576))
    }

    /// Removes the local copy: DNS, record, VXLAN device, bridge, firewall rules.
    pub(crate) async fn unmirror_network(&self, n: &NetworkRow) -> Result<()> {
        self.inner.dns.stop_network(&n.id);
        self.inner.store.delete_network(&n.id)?;
        let vx = names::overlay_vxlan(&self.inner.prefix, &n.id);
        let bridge = n.interface.clone();
        blocking(move || {
            link::run(None, move |h| async move {
                link::delete(&h, &vx).await?;
                link::delete(&h, &bridge).await
            })
        })
        .await?;
        self.apply_firewall().await?;
        tracing::info!(network = %n.name, id = %n.id, "overlay network removed from this host");
        Ok(())
    }

    /// Takes an address on overlay network `n` for `container_id` in the cluster store:
    /// `fixed` (--ip) or the lowest free one; the key is created only if absent, so two
    /// hosts never hand out the same address.
    pub(crate) async fn allocate_overlay_ip(
        &self,
        state: &State,
        n: &NetworkRow,
        container_id: &str,
        fixed: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr> {
        let cluster = self.cluster()?;
        let client = cluster.client()?;
        let lease = cluster.lease()?;
        let a = addressing(n).ok_or_else(|| {
            Error::FailedPrecondition(format!("network {} has no subnet", n.name))
        })?;
        let err = |e| cluster.store_error(e);
        for attempt in 0..32u64 {
            let (held, _) = client
                .get_prefix(&cluster.keys.ipam_prefix(&n.id))
                .await
                .map_err(err)?;
            let mut taken: Vec<Ipv4Addr> = Vec::new();
            for kv in &held {
                let ip: Option<Ipv4Addr> = kv.key.rsplit('/').next().and_then(|s| s.parse().ok());
                if let Some(ip) = ip {
                    if kv.value == container_id.as_bytes() && fixed.is_none_or(|f| f == ip) {
                        // Ours already (a retried activation): keep it, on today's lease.
                        client
                            .put(&kv.key, container_id.as_bytes(), Some(lease))
                            .await
                            .map_err(err)?;
                        return Ok(ip);
                    }
                    taken.push(ip);
                }
            }
            let ip = match fixed {
                Some(ip) => {
                    ipam::check_fixed(a.subnet, a.gateway, &taken, ip)
                        .map_err(Error::FailedPrecondition)?;
                    ip
                }
                None => {
                    taken.extend(state.reserved(&n.id, container_id));
                    let last = client
                        .get(&cluster.keys.ipam_cursor(&n.id))
                        .await
                        .map_err(err)?
                        .and_then(|kv| String::from_utf8(kv.value).ok()?.parse().ok());
                    ipam::allocate_after(a.subnet, a.range, a.gateway, &taken, last).ok_or_else(
                        || {
                            Error::FailedPrecondition(format!(
                                "no available IPv4 addresses on network {}",
                                n.name
                            ))
                        },
                    )?
                }
            };
            let key = cluster.keys.ipam(&n.id, ip);
            if client
                .create(&key, container_id.as_bytes(), Some(lease))
                .await
                .map_err(err)?
            {
                if fixed.is_none() {
                    // A hint only: a lost race here costs an address reused sooner.
                    let _ = client
                        .put(
                            &cluster.keys.ipam_cursor(&n.id),
                            ip.to_string().as_bytes(),
                            None,
                        )
                        .await;
                }
                return Ok(ip);
            }
            if fixed.is_some() {
                return Err(Error::FailedPrecondition(format!(
                    "address {ip} is already in use"
                )));
            }
            // Another host took it between our read and our create: read again.
            tokio::time::sleep(Duration::from_millis(2 * attempt)).await;
        }
        Err(Error::Unavailable(format!(
            "could not allocate an address on network {}: too much contention",
            n.name
        )))
    }

    /// Gives an address back (a failed activation, a stopped container).
    pub(crate) async fn release_overlay_ip(
        &self,
        network_id: &str,
        container_id: &str,
        ip: Ipv4Addr,
    ) -> Result<()> {
        let cluster = self.cluster()?;
        let client = cluster.client()?;
        client
            .delete_if_value(&cluster.keys.ipam(network_id, ip), container_id.as_bytes())
            .await
            .map_err(|e| cluster.store_error(e))?;
        Ok(())
    }

    /// Tells every host about a local endpoint on an overlay network.
    pub(crate) async fn publish_endpoint(
        &self,
        ep: &EndpointRow,
        row: &AttachmentRow,
    ) -> Result<()> {
        let cluster = self.cluster()?;
        let client = cluster.client()?;
        let lease = cluster.lease()?;
        let rec = EndpointRecord {
            network_id: ep.network_id.clone(),
            container_id: ep.container_id.clone(),
            container_name: row.container_name.clone(),
            hostname: row.hostname.clone(),
            aliases: ep.aliases.clone(),
            ip: ep
                .ip
                .parse()
                .map_err(|_| Error::InvalidArgument(format!("invalid address {}", ep.ip)))?,
            mac: ep.mac.clone(),
            node: cluster.node().to_string(),
            vtep: cluster.config.advertise,
        };
        client
            .put(
                &cluster.keys.endpoint(&ep.network_id, &ep.container_id),
                &encode(&rec),
                Some(lease),
            )
            .await
            .map_err(|e| cluster.store_error(e))?;
        Ok(())
    }

    /// Withdraws a local endpoint and its address from the cluster.
    pub(crate) async fn unpublish_endpoint(&self, network_id: &str, container_id: &str, ip: &str) {
        let Ok(cluster) = self.cluster() else { return };
        let result = async {
            let client = cluster.client()?;
            client
                .delete(&cluster.keys.endpoint(network_id, container_id))
                .await
                .map_err(|e| cluster.store_error(e))?;
            if let Ok(ip) = ip.parse() {
                self.release_overlay_ip(network_id, container_id, ip)
                    .await?;
            }
            Ok::<(), Error>(())
        }
        .await;
        if let Err(e) = result {
            // The audit after the next (re)connection removes it.
            tracing::warn!(container_id, network = network_id, error = %e, "endpoint not withdrawn from the cluster store");
        }
    }

    /// The names of containers on other hosts, for the embedded DNS.
    pub(crate) fn remote_dns_entries(&self, network_id: &str) -> Vec<DnsEntry> {
        let Some(cluster) = self.inner.cluster.as_ref() else {
            return Vec::new();
        };
        cluster.with_view(|v| {
            v.endpoints_on(network_id)
                .filter(|e| e.node != cluster.config.node)
                .map(|e| {
                    let short: String = e.container_id.chars().take(12).collect();
                    let mut names: Vec<String> = Vec::new();
                    for name in std::iter::once(e.container_name.clone())
                        .chain(e.aliases.iter().cloned())
                        .chain([short, e.hostname.clone()])
                    {
                        if !name.is_empty() && !names.contains(&name) {
                            names.push(name);
                        }
                    }
                    DnsEntry {
                        container_id: e.container_id.clone(),
                        ip: e.ip,
                        names,
                    }
                })
                .collect()
        })
    }

    /// Adds what only the cluster knows to an overlay network's view: every host's
    /// endpoints, the peers, attachable.
    pub(crate) fn add_cluster_info(&self, info: &mut NetworkInfo) {
        if info.driver != "overlay" {
            return;
        }
        info.scope = "global".into();
        let Some(cluster) = self.inner.cluster.as_ref() else {
            return;
        };
        let me = cluster.node().to_string();
        cluster.with_view(|v| {
            if let Some(rec) = v.networks.get(&info.id) {
                info.attachable = rec.attachable;
            }
            let prefix = info
                .subnet
                .parse::<Subnet>()
                .map(|s| s.prefix)
                .unwrap_or(32);
            let mut peers: BTreeMap<String, String> = BTreeMap::new();
            for e in v.endpoints_on(&info.id) {
                peers.insert(e.node.clone(), e.vtep.to_string());
                if let Some(local) = info
                    .endpoints
                    .iter_mut()
                    .find(|c| c.container_id == e.container_id)
                {
                    local.node = me.clone();
                    continue;
                }
                info.containers.push(e.container_id.clone());
                info.endpoints.push(ContainerEndpoint {
                    container_id: e.container_id.clone(),
                    container_name: e.container_name.clone(),
                    node: e.node.clone(),
                    endpoint: Some(Endpoint {
                        network_id: info.id.clone(),
                        network_name: info.name.clone(),
                        driver: "overlay".into(),
                        ipv4_address: format!("{}/{prefix}", e.ip),
                        gateway: info.gateway.clone(),
                        mac_address: e.mac.clone(),
                        aliases: e.aliases.clone(),
                        host_interface: String::new(),
                    }),
                });
            }
            info.peers = peers
                .into_iter()
                .map(|(name, ip)| NetworkPeer { name, ip })
                .collect();
        });
    }

    /// Makes this host match the cluster for one network: the local copy exists exactly
    /// while the record does, the forwarding entries are those of the other hosts'
    /// endpoints, and the DNS knows their names. Called by the watch for each network an
    /// event touched.
    pub(crate) async fn sync_overlay(&self, network_id: &str) -> Result<()> {
        let Some(cluster) = self.inner.cluster.clone() else {
            return Ok(());
        };
        let _guard = self.inner.lock.lock().await;
        let state = self.state()?;
        let local = state
            .network_by_id(network_id)
            .filter(|n| n.driver == "overlay")
            .cloned();
        let record = cluster.with_view(|v| v.networks.get(network_id).cloned());
        let row = match (record, local) {
            (Some(rec), None) => {
                let row = mirror_row(&self.inner.prefix, &rec);
                self.mirror_network(&row).await?;
                row
            }
            (Some(_), Some(row)) => row,
            (None, Some(row)) => {
                if !state.containers_on(&row).is_empty() {
                    tracing::warn!(network = %row.name, "overlay network removed from the cluster while containers here use it; keeping the local copy");
                    return Ok(());
                }
                return self.unmirror_network(&row).await;
            }
            (None, None) => return Ok(()),
        };
        self.sync_forwarding(&cluster, &row).await?;
        let now = self.state()?;
        self.refresh_dns(&now, network_id);
        Ok(())
    }

    /// Programs the FDB and neighbour entries of the remote endpoints on `row`'s VXLAN
    /// device and removes the ones of endpoints that are gone.
    async fn sync_forwarding(&self, cluster: &Cluster, row: &NetworkRow) -> Result<()> {
        let me = cluster.node().to_string();
        let mut wanted: BTreeMap<Ipv4Addr, ([u8; 6], Ipv4Addr)> = BTreeMap::new();
        cluster.with_view(|v| {
            for e in v.endpoints_on(&row.id).filter(|e| e.node != me) {
                if let Ok(mac) = names::parse_mac(&e.mac) {
                    wanted.insert(e.ip, (mac, e.vtep));
                }
            }
        });
        let vx = names::overlay_vxlan(&self.inner.prefix, &row.id);
        let exists = {
            let vx = vx.clone();
            blocking(move || {
                link::run(None, move |h| async move {
                    Ok(link::index_of(&h, &vx).await?.is_some())
                })
            })
            .await?
        };
        if !exists {
            tracing::warn!(network = %row.name, "VXLAN device missing, recreating it");
            self.ensure_overlay_kernel(row).await?;
        }
        blocking(move || {
            link::run(None, move |h| async move {
                let (fdb, neigh) = vxlan::remote_entries(&h, &vx).await?;
                let wanted_macs: Vec<([u8; 6], Ipv4Addr)> = wanted.values().copied().collect();
                for (mac, remote) in &fdb {
                    if !wanted_macs.contains(&(*mac, *remote)) {
                        vxlan::fdb_delete(&h, &vx, *mac).await?;
                    }
                }
                for (ip, mac) in &neigh {
                    if wanted.get(ip).map(|w| w.0) != Some(*mac) {
                        vxlan::neigh_delete(&h, &vx, *ip).await?;
                    }
                }
                for (ip, (mac, remote)) in &wanted {
                    if !fdb.contains(&(*mac, *remote)) {
                        vxlan::fdb_replace(&h, &vx, *mac, *remote).await?;
                    }
                    if !neigh.contains(&(*ip, *mac)) {
                        vxlan::neigh_replace(&h, &vx, *ip, *mac).await?;
                    }
                }
                Ok(())
            })
        })
        .await
    }
}
