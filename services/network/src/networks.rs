//! Network CRUD: create (bridge or macvlan), remove, prune, list with Docker's filters,
//! inspect. A bridge's subnet is chosen and its gateway put on the bridge under the
//! host-wide IPAM lock.
use std::{collections::BTreeMap, collections::HashMap, net::Ipv4Addr, path::PathBuf};

use berth_common::events::Event;
use berth_proto::network::v1::{CreateNetworkRequest, NetworkInfo};

use crate::{
    hosts_lock::HostLock,
    ipam::{self, Pool, Subnet},
    link, names,
    service::{blocking, now_rfc3339, NetworkService},
    state::{addressing, is_builtin, State},
    store::NetworkRow,
    sysctl, Error, Result,
};

/// Docker's option naming the bridge interface.
pub const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";

/// Makes bridge `name` with `subnet` (chosen from `pools` when None) under the host-wide
/// lock; returns the subnet and gateway. `known` are the subnets of berth's networks.
pub(crate) async fn make_bridge(
    lock: PathBuf,
    name: String,
    subnet: Option<(Subnet, Ipv4Addr)>,
    pools: Vec<Pool>,
    known: Vec<Subnet>,
) -> Result<(Subnet, Ipv4Addr)> {
    blocking(move || {
        let _lock = HostLock::acquire(&lock)?;
        let (subnet, gateway) = match subnet {
            Some(s) => s,
            None => {
                let mut used = link::run(None, |h| async move { link::used_subnets(&h).await })?;
                used.extend(known);
                let subnet = ipam::choose_subnet(&pools, &used).ok_or_else(|| {
                    Error::FailedPrecondition(
                        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into(),
                    )
                })?;
                let gateway = subnet.first_host().ok_or_else(|| {
                    Error::FailedPrecondition(format!("subnet {subnet} has no host addresses"))
                })?;
                (subnet, gateway)
            }
        };
        let bridge = name.clone();
        let created = link::run(None, move |h| async move {
            link::ensure_bridge(&h, &bridge, gateway, subnet.prefix).await
        })?;
        if created {
            tracing::info!(bridge = %name, %subnet, %gateway, "created bridge");
            // Docker turns forwarding on for bridges too; a failure only limits egress.
            if let Err(e) = sysctl::enable_ip_forward() {
                tracing::warn!(error = %e, "could not enable IPv4 forwarding");
            }
        }
        Ok((subnet, gateway))
    })
    .await
}

fn parse_subnet(s: &str) -> Result<Subnet> {
    s.parse().map_err(Error::InvalidArgument)
}

impl NetworkService {
    /// Creates a user-defined network (`network create`).
    pub async fn create_network(&self, req: &CreateNetworkRequest) -> Result<NetworkInfo> {
        names::check_network_name(&req.name).map_err(Error::InvalidArgument)?;
        let driver = match req.driver.as_str() {
            "" | "bridge" => "bridge",
            "macvlan" => "macvlan",
            "overlay" => "overlay",
            other => return Err(Error::NotFound(format!("plugin {other:?} not found"))),
        };
        let _guard = self.inner.lock.lock().await;
        let state = self.state()?;
        if state.networks.iter().any(|n| n.name == req.name) {
            return Err(Error::AlreadyExists(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        let subnet = (!req.subnet.is_empty())
            .then(|| parse_subnet(&req.subnet))
            .transpose()?;
        let gateway = if req.gateway.is_empty() {
            subnet.and_then(Subnet::first_host)
        } else {
            let gw: Ipv4Addr = req.gateway.parse().map_err(|_| {
                Error::InvalidArgument(format!("invalid gateway address {}", req.gateway))
            })?;
            let subnet = subnet
                .ok_or_else(|| Error::InvalidArgument(format!("gateway {gw} needs a --subnet")))?;
            if !subnet.contains(gw) || gw == subnet.addr || gw == subnet.broadcast() {
                return Err(Error::InvalidArgument(format!(
                    "invalid gateway {gw}: not a host address of subnet {subnet}"
                )));
            }
            Some(gw)
        };
        let range = if req.ip_range.is_empty() {
            None
        } else {
            let range = parse_subnet(&req.ip_range)?;
            let subnet = subnet.ok_or_else(|| {
                Error::InvalidArgument(format!("ip-range {range} needs a --subnet"))
            })?;
            if !subnet.covers(range) {
                return Err(Error::InvalidArgument(format!(
                    "ip-range {range} is not inside subnet {subnet}"
                )));
            }
            Some(range)
        };
        if let Some(s) = subnet {
            if let Some(other) = state
                .networks
                .iter()
                .find(|n| addressing(n).is_some_and(|a| a.subnet.overlaps(s)))
            {
                return Err(Error::FailedPrecondition(format!(
                    "subnet {s} overlaps with network {} ({})",
                    other.name, other.subnet
                )));
            }
        }
        let options: BTreeMap<String, String> = req.options.clone().into_iter().collect();
        let mut row = NetworkRow {
            name: req.name.clone(),
            id: berth_common::ids::random_id(),
            driver: driver.into(),
            created: now_rfc3339(),
            subnet: String::new(),
            gateway: String::new(),
            ip_range: range.map(|r| r.to_string()).unwrap_or_default(),
            internal: req.internal,
            options,
            labels: req.labels.clone().into_iter().collect(),
            interface: String::new(),
        };
        match driver {
            "bridge" => {
                self.create_bridge_network(&state, &mut row, subnet, gateway)
                    .await?
            }
            "overlay" => {
                self.create_overlay_network(&state, &mut row, subnet, gateway, req.attachable)
                    .await?
            }
            _ => {
                self.create_macvlan_network(&mut row, subnet, gateway)
                    .await?
            }
        }
        let now = self.state()?;
        tracing::info!(network = %row.name, id = %row.id, driver, subnet = %row.subnet, "created network");
        self.publish("create", &row, "");
        let mut info = now.network_info(&row);
        self.add_cluster_info(&mut info);
        Ok(info)
    }

    async fn create_bridge_network(
        &self,
        state: &State,
        row: &mut NetworkRow,
        subnet: Option<Subnet>,
        gateway: Option<Ipv4Addr>,
    ) -> Result<()> {
        let bridge = match row.options.get(BRIDGE_NAME_OPTION) {
            Some(name) => {
                names::check_ifname(name).map_err(Error::InvalidArgument)?;
                name.clone()
            }
            None => names::user_bridge(&self.inner.prefix, &row.id),
        };
        if let Some(other) = state.networks.iter().find(|n| n.interface == bridge) {
            return Err(Error::AlreadyExists(format!(
                "bridge {bridge} is already used by network {}",
                other.name
            )));
        }
        let given = match (subnet, gateway) {
            (Some(s), Some(g)) => Some((s, g)),
            (Some(s), None) => {
                return Err(Error::InvalidArgument(format!(
                    "subnet {s} has no host addresses"
                )))
            }
            _ => None,
        };
        let known = state
            .networks
            .iter()
            .filter_map(|n| addressing(n).map(|a| a.subnet))
            .collect();
        let (subnet, gateway) = make_bridge(
            self.inner.ipam_lock.clone(),
            bridge.clone(),
            given,
            self.inner.pools.clone(),
            known,
        )
        .await?;
        row.subnet = subnet.to_string();
        row.gateway = gateway.to_string();
        row.interface = bridge.clone();
        let result = self.finish_bridge_network(row, gateway).await;
        if result.is_err() {
            let _ = self.inner.store.delete_network(&row.id);
            self.inner.dns.stop_network(&row.id);
            let _ = blocking(move || {
                link::run(
                    None,
                    move |h| async move { link::delete(&h, &bridge).await },
                )
            })
            .await;
            let _ = self.apply_firewall().await;
        }
        result
    }

    async fn finish_bridge_network(&self, row: &NetworkRow, gateway: Ipv4Addr) -> Result<()> {
        self.inner.store.insert_network(row)?;
        self.inner.dns.serve_network(&row.id, gateway).await?;
        self.apply_firewall().await
    }

    async fn create_macvlan_network(
        &self,
        row: &mut NetworkRow,
        subnet: Option<Subnet>,
        gateway: Option<Ipv4Addr>,
    ) -> Result<()> {
        let parent = row
            .options
            .get("parent")
            .cloned()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                Error::InvalidArgument(
                    "macvlan networks need a parent interface: -o parent=<interface>".into(),
                )
            })?;
        if let Some(mode) = row.options.get("macvlan_mode") {
            if mode != "bridge" {
                return Err(Error::InvalidArgument(format!(
                    "unsupported macvlan_mode {mode:?}: only bridge"
                )));
            }
        }
        let (Some(subnet), Some(gateway)) = (subnet, gateway) else {
            return Err(Error::InvalidArgument(
                "macvlan networks need --subnet (and a gateway inside it)".into(),
            ));
        };
        let lookup = parent.clone();
        let exists = blocking(move || {
            link::run(None, move |h| async move {
                Ok(link::index_of(&h, &lookup).await?.is_some())
            })
        })
        .await?;
        if !exists {
            return Err(Error::InvalidArgument(format!(
                "macvlan parent interface {parent} does not exist"
            )));
        }
        row.subnet = subnet.to_string();
        row.gateway = gateway.to_string();
        row.interface = parent;
        self.inner.store.insert_network(row)
    }

    /// Removes a user-defined network without endpoints; returns its ID.
    pub async fn remove_network(&self, name: &str) -> Result<String> {
        let _guard = self.inner.lock.lock().await;
        let state = self.state()?;
        let n = state
            .find_network(name)
            .ok_or_else(|| Error::NetworkNotFound(name.to_string()))?
            .clone();
        if is_builtin(&n.name) {
            return Err(Error::FailedPrecondition(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        if !state.containers_on(&n).is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        if n.driver == "overlay" {
            self.remove_overlay_network(&n).await?;
            self.publish("destroy", &n, "");
        } else {
            self.remove_unused(&n).await?;
        }
        Ok(n.id)
    }

    /// Removes a network known to be unused: DNS, record, bridge, firewall.
    async fn remove_unused(&self, n: &NetworkRow) -> Result<()> {
        self.inner.dns.stop_network(&n.id);
        self.inner.store.delete_network(&n.id)?;
        if n.driver == "bridge" && !n.interface.is_empty() {
            let bridge = n.interface.clone();
            blocking(move || {
                link::run(
                    None,
                    move |h| async move { link::delete(&h, &bridge).await },
                )
            })
            .await?;
        }
        self.apply_firewall().await?;
        tracing::info!(network = %n.name, id = %n.id, "removed network");
        self.publish("destroy", n, "");
        Ok(())
    }

    /// Removes every user-defined network no container uses (`network prune`); returns
    /// their names. Filters: `label` (key or key=value), `label!`.
    pub async fn prune_networks(&self, filters: &HashMap<String, String>) -> Result<Vec<String>> {
        for key in filters.keys() {
            if !matches!(key.as_str(), "label" | "label!") {
                return Err(Error::InvalidArgument(format!("invalid filter '{key}'")));
            }
        }
        let _guard = self.inner.lock.lock().await;
        let state = self.state()?;
        let mut deleted = Vec::new();
        for n in &state.networks {
            let unused = state.containers_on(n).is_empty();
            let wanted = filters.get("label").is_none_or(|l| has_label(n, l))
                && filters.get("label!").is_none_or(|l| !has_label(n, l));
            // Overlay networks belong to the cluster: `network rm` removes them.
            if !is_builtin(&n.name) && n.driver != "overlay" && unused && wanted {
                self.remove_unused(n).await?;
                deleted.push(n.name.clone());
            }
        }
        // Removing a network frees no space to count.
        self.inner.events.publish(Event::prune("network", 0));
        Ok(deleted)
    }

    /// Networks matching Docker's filters: name (substring), id (prefix), driver, label
    /// (key or key=value), dangling (true/false), type (custom/builtin), scope.
    pub fn list_networks_filtered(
        &self,
        filters: &HashMap<String, String>,
    ) -> Result<Vec<NetworkInfo>> {
        let state = self.state()?;
        let mut keep: Vec<&NetworkRow> = state.networks.iter().collect();
        for (key, value) in filters {
            let matches: Box<dyn Fn(&NetworkRow) -> bool> = match key.as_str() {
                "name" => Box::new(|n| n.name.contains(value.as_str())),
                "id" => Box::new(|n| n.id.starts_with(value.as_str())),
                "driver" => Box::new(|n| n.driver == *value),
                "label" => Box::new(|n| has_label(n, value)),
                "scope" => Box::new(|n| {
                    let scope = if n.driver == "overlay" {
                        "global"
                    } else {
                        "local"
                    };
                    value == scope
                }),
                "type" => match value.as_str() {
                    "custom" => Box::new(|n| !is_builtin(&n.name)),
                    "builtin" => Box::new(|n| is_builtin(&n.name)),
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "invalid filter: 'type'='{value}'"
                        )))
                    }
                },
                "dangling" => {
                    let want = match value.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => {
                            return Err(Error::InvalidArgument(format!(
                                "invalid filter 'dangling={value}'"
                            )))
                        }
                    };
                    let state = &state;
                    Box::new(move |n| {
                        let dangling = !is_builtin(&n.name) && state.containers_on(n).is_empty();
                        dangling == want
                    })
                }
                _ => return Err(Error::InvalidArgument(format!("invalid filter '{key}'"))),
            };
            keep.retain(|n| matches(n));
        }
        Ok(keep
            .into_iter()
            .map(|n| {
                let mut info = state.network_info(n);
                self.add_cluster_info(&mut info);
                info
            })
            .collect())
    }

    pub fn list_networks(&self) -> Result<Vec<NetworkInfo>> {
        self.list_networks_filtered(&HashMap::new())
    }

    /// By name, full ID or unique ID prefix.
    pub fn get_network(&self, name: &str) -> Result<NetworkInfo> {
        let state = self.state()?;
        let n = state
            .find_network(name)
            .ok_or_else(|| Error::NetworkNotFound(name.to_string()))?;
        let mut info = state.network_info(n);
        self.add_cluster_info(&mut info);
        Ok(info)
    }
}

fn has_label(n: &NetworkRow, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => n.labels.get(k).is_some_and(|x| x == v),
        None => n.labels.contains_key(filter),
    }
}
