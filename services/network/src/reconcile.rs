//! Start-up repair: after a crash, a `kill -9` or a reboot, make the kernel and the
//! in-process helpers (port proxy, DNS, firewall) match the store again, without touching
//! running containers that are already right. Only active (running) containers own kernel
//! objects, ports and names: leftovers of inactive ones are removed.
use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddrV4,
    path::PathBuf,
};

use crate::{
    endpoint::{self, Kind},
    link, names, netns,
    networks::make_bridge,
    proxy::ProxyRequest,
    service::{blocking, NetworkService},
    state::{self, addressing, State},
    Error, Result,
};

impl NetworkService {
    pub(crate) async fn reconcile(&self) -> Result<()> {
        let _guard = self.inner.lock.lock().await;
        self.reconcile_namespaces().await?;
        self.reconcile_bridges().await?;
        let state = self.state()?;
        self.reconcile_endpoints(&state).await;
        self.remove_stray_links(&state).await?;
        self.reopen_ports(&state).await;
        for n in &state.networks {
            if state.is_user(n) && matches!(n.driver.as_str(), "bridge" | "overlay") {
                if let Some(gw) = addressing(n).and_then(|a| a.gateway) {
                    if let Err(e) = self.inner.dns.serve_network(&n.id, gw).await {
                        tracing::warn!(network = %n.name, error = %e, "embedded DNS not served");
                    }
                }
            }
            self.refresh_dns(&state, &n.id);
        }
        for a in &state.attachments {
            let links = state.dns_links(&a.container_id);
            if !links.is_empty() {
                self.inner.dns.set_links(&a.container_id, links);
            }
        }
        self.apply_firewall().await
    }

    /// Removes namespace files no active attachment owns (a crash between creating one
    /// and recording it, or a container that stopped while the service was down) and
    /// recreates active ones whose file is gone (a reboot cleared the run directory).
    async fn reconcile_namespaces(&self) -> Result<()> {
        let rows = self.inner.store.attachments()?;
        if let Ok(entries) = std::fs::read_dir(&self.inner.netns_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let owned = rows
                    .iter()
                    .any(|r| r.owns_netns && r.active && r.container_id == name);
                if !owned {
                    tracing::info!(container_id = %name, "removing an orphaned network namespace");
                    let path = entry.path();
                    blocking(move || netns::remove(&path)).await?;
                }
            }
        }
        for row in rows.iter().filter(|r| r.owns_netns && r.active) {
            let path = PathBuf::from(&row.netns_path);
            if !netns::is_namespace(&path) {
                tracing::warn!(container_id = %row.container_id, "network namespace missing, recreating it");
                blocking(move || netns::create(&path)).await?;
            }
        }
        Ok(())
    }

    /// Every bridge network has its bridge, address and link up; the default bridge gets
    /// its subnet on the first start.
    async fn reconcile_bridges(&self) -> Result<()> {
        let networks = self.inner.store.networks()?;
        // Overlay networks' bridges too: their endpoints are re-plugged below; the VXLAN
        // device follows when the cluster session starts.
        for n in networks
            .iter()
            .filter(|n| matches!(n.driver.as_str(), "bridge" | "overlay"))
        {
            let given = addressing(n).and_then(|a| Some((a.subnet, a.gateway?)));
            let known = networks
                .iter()
                .filter(|o| o.id != n.id)
                .filter_map(|o| addressing(o).map(|a| a.subnet))
                .collect();
            let (subnet, gateway) = make_bridge(
                self.inner.ipam_lock.clone(),
                n.interface.clone(),
                given,
                self.inner.pools.clone(),
                known,
            )
            .await?;
            if given.is_none() {
                let mut row = n.clone();
                row.subnet = subnet.to_string();
                row.gateway = gateway.to_string();
                self.inner.store.update_network(&row)?;
            }
        }
        Ok(())
    }

    /// Recreates endpoints whose link is gone (the namespace was recreated after a reboot).
    async fn reconcile_endpoints(&self, state: &State) {
        for e in &state.endpoints {
            if let Err(err) = self.reconcile_endpoint(state, e).await {
                tracing::warn!(container_id = %e.container_id, network = %e.network_id, error = %err, "endpoint not restored");
            }
        }
    }

    async fn reconcile_endpoint(&self, state: &State, e: &crate::store::EndpointRow) -> Result<()> {
        let (Some(row), Some(n)) = (
            state.attachment(&e.container_id),
            state.network_by_id(&e.network_id),
        ) else {
            return Ok(());
        };
        let netns = PathBuf::from(&row.netns_path);
        let (path, ifname, host) = (netns.clone(), e.ifname.clone(), e.host_ifname.clone());
        if blocking(move || endpoint::exists(&path, &ifname, &host)).await? {
            if matches!(n.driver.as_str(), "bridge" | "overlay") {
                // A bridge recreated at start has no ports: put the veth back on it.
                let (port, bridge) = (e.host_ifname.clone(), n.interface.clone());
                blocking(move || {
                    link::run(None, move |h| async move {
                        link::ensure_port(&h, &port, &bridge).await
                    })
                })
                .await?;
            }
            return Ok(());
        }
        let a = addressing(n).ok_or_else(|| {
            Error::FailedPrecondition(format!("network {} has no subnet", n.name))
        })?;
        let kind = match n.driver.as_str() {
            "bridge" | "overlay" => Kind::Bridge {
                bridge: n.interface.clone(),
                host_ifname: e.host_ifname.clone(),
            },
            _ => Kind::Macvlan {
                parent: n.interface.clone(),
            },
        };
        let spec = endpoint::Spec {
            netns,
            ifname: e.ifname.clone(),
            ip: e
                .ip
                .parse()
                .map_err(|_| Error::InvalidArgument(format!("invalid address {}", e.ip)))?,
            subnet: a.subnet,
            mac: names::parse_mac(&e.mac).map_err(Error::InvalidArgument)?,
            route_via: if e.default_route { a.gateway } else { None },
            mtu: None,
            kind,
        };
        tracing::warn!(container_id = %e.container_id, network = %n.name, "endpoint missing, recreating it");
        blocking(move || endpoint::create(&spec)).await
    }

    /// Deletes this instance's links that no record owns (a crash mid-attach).
    async fn remove_stray_links(&self, state: &State) -> Result<()> {
        let owned: HashSet<&str> = state
            .networks
            .iter()
            .map(|n| n.interface.as_str())
            .chain(state.endpoints.iter().map(|e| e.host_ifname.as_str()))
            .filter(|n| !n.is_empty())
            .collect();
        let vxlans: Vec<String> = state
            .networks
            .iter()
            .filter(|n| n.driver == "overlay")
            .map(|n| names::overlay_vxlan(&self.inner.prefix, &n.id))
            .collect();
        let owned: HashSet<&str> = owned
            .into_iter()
            .chain(vxlans.iter().map(String::as_str))
            .collect();
        let all =
            blocking(|| link::run(None, |h| async move { link::link_names(&h).await })).await?;
        let prefix = self.inner.prefix.clone();
        let stray: Vec<String> = all
            .into_iter()
            .filter(|l| names::is_own_link(&prefix, l) && !owned.contains(l.as_str()))
            .collect();
        for name in stray {
            tracing::info!(link = %name, "deleting a link no record owns");
            let n = name.clone();
            blocking(move || link::run(None, move |h| async move { link::delete(&h, &n).await }))
                .await?;
        }
        Ok(())
    }

    /// Binds the recorded published ports again (the proxy lives in this process).
    async fn reopen_ports(&self, state: &State) {
        let mut by_owner: BTreeMap<&str, Vec<ProxyRequest>> = BTreeMap::new();
        for p in &state.ports {
            let (Some(protocol), Ok(host_ip), Ok(ip)) = (
                state::protocol(&p.protocol),
                p.host_ip.parse(),
                p.container_ip.parse(),
            ) else {
                continue;
            };
            by_owner
                .entry(&p.container_id)
                .or_default()
                .push(ProxyRequest {
                    protocol,
                    host: SocketAddrV4::new(host_ip, p.host_port),
                    target: SocketAddrV4::new(ip, p.container_port),
                });
        }
        for (owner, requests) in by_owner {
            if let Err(e) = self.inner.proxy.open(owner, &requests).await {
                tracing::error!(container_id = owner, error = %e, "published ports not restored");
            }
        }
    }
}
