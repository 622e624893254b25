//! One consistent read of the store, and everything derived from it: the gRPC views
//! (attachments, network info), the firewall's desired state and the DNS entries.
use std::net::Ipv4Addr;

use berth_proto::network::v1::{Attachment, ContainerEndpoint, Endpoint, NetworkInfo, PortBinding};

use crate::{
    dns::DnsEntry,
    firewall::{FirewallNetwork, FirewallState, PublishedPort},
    ipam::Subnet,
    proxy::Protocol,
    store::{AttachmentRow, EndpointConfigRow, EndpointRow, LinkRow, NetworkRow, PortRow, Store},
    Result,
};

/// The built-in networks: (name, driver). `bridge` is the default network.
pub const BUILTIN: [(&str, &str); 3] = [("none", "null"), ("host", "host"), ("bridge", "bridge")];
pub const DEFAULT_NETWORK: &str = "bridge";

pub fn is_builtin(name: &str) -> bool {
    BUILTIN.iter().any(|(n, _)| *n == name)
}

/// A network that gives containers addresses (bridge, macvlan), parsed.
#[derive(Debug, Clone)]
pub struct Addressing {
    pub subnet: Subnet,
    pub gateway: Option<Ipv4Addr>,
    /// Where container addresses come from (the subnet unless --ip-range).
    pub range: Subnet,
}

/// The subnet, gateway and range of `n`; None for networks without addresses.
pub fn addressing(n: &NetworkRow) -> Option<Addressing> {
    let subnet: Subnet = n.subnet.parse().ok()?;
    Some(Addressing {
        subnet,
        gateway: n.gateway.parse().ok(),
        range: n.ip_range.parse().unwrap_or(subnet),
    })
}

pub fn protocol(s: &str) -> Option<Protocol> {
    match s {
        "tcp" => Some(Protocol::Tcp),
        "udp" => Some(Protocol::Udp),
        _ => None,
    }
}

pub struct State {
    pub networks: Vec<NetworkRow>,
    pub attachments: Vec<AttachmentRow>,
    /// The networks each container is on (recorded at create and connect).
    pub configs: Vec<EndpointConfigRow>,
    /// Live endpoints, of active containers only.
    pub endpoints: Vec<EndpointRow>,
    pub ports: Vec<PortRow>,
    pub links: Vec<LinkRow>,
}

impl State {
    pub fn load(store: &Store) -> Result<State> {
        Ok(State {
            networks: store.networks()?,
            attachments: store.attachments()?,
            configs: store.configs()?,
            endpoints: store.endpoints()?,
            ports: store.ports()?,
            links: store.links()?,
        })
    }

    pub fn network_by_id(&self, id: &str) -> Option<&NetworkRow> {
        self.networks.iter().find(|n| n.id == id)
    }

    /// By name, full ID or unique ID prefix (Docker's lookup order).
    pub fn find_network(&self, name: &str) -> Option<&NetworkRow> {
        self.networks
            .iter()
            .find(|n| n.name == name || n.id == name)
            .or_else(|| {
                let mut by_prefix = self
                    .networks
                    .iter()
                    .filter(|n| !name.is_empty() && n.id.starts_with(name));
                match (by_prefix.next(), by_prefix.next()) {
                    (Some(n), None) => Some(n),
                    _ => None,
                }
            })
    }

    pub fn attachment(&self, container_id: &str) -> Option<&AttachmentRow> {
        self.attachments
            .iter()
            .find(|a| a.container_id == container_id)
    }

    /// The container's endpoint configs, the one of its network mode first.
    pub fn configs_of(&self, container_id: &str) -> Vec<&EndpointConfigRow> {
        self.configs
            .iter()
            .filter(|c| c.container_id == container_id)
            .collect()
    }

    /// True when the container is attached and active (running).
    pub fn is_active(&self, container_id: &str) -> bool {
        self.attachment(container_id).is_some_and(|a| a.active)
    }

    /// Fixed addresses (--ip) other containers hold on a network, active or not: dynamic
    /// allocation avoids them so those containers can always start.
    pub fn reserved(&self, network_id: &str, except: &str) -> Vec<Ipv4Addr> {
        self.configs
            .iter()
            .filter(|c| c.network_id == network_id && c.container_id != except)
            .filter_map(|c| c.ipv4_address.parse().ok())
            .collect()
    }

    /// The container's live endpoints, the first one first.
    pub fn endpoints_of(&self, container_id: &str) -> Vec<&EndpointRow> {
        self.endpoints
            .iter()
            .filter(|e| e.container_id == container_id)
            .collect()
    }

    pub fn endpoints_on(&self, network_id: &str) -> Vec<&EndpointRow> {
        self.endpoints
            .iter()
            .filter(|e| e.network_id == network_id)
            .collect()
    }

    /// Addresses in use on a network (live endpoints).
    pub fn taken(&self, network_id: &str) -> Vec<Ipv4Addr> {
        self.endpoints_on(network_id)
            .iter()
            .filter_map(|e| e.ip.parse().ok())
            .collect()
    }

    /// Containers on a network, running or not: endpoint configs, or attachments for
    /// none/host.
    pub fn containers_on(&self, n: &NetworkRow) -> Vec<String> {
        let mut ids: Vec<String> = self
            .configs
            .iter()
            .filter(|c| c.network_id == n.id)
            .map(|c| c.container_id.clone())
            .collect();
        ids.extend(
            self.attachments
                .iter()
                .filter(|a| (a.mode == "none" || a.mode == "host") && a.network == n.name)
                .map(|a| a.container_id.clone()),
        );
        ids
    }

    /// A user-defined network (not none, host or the default bridge).
    pub fn is_user(&self, n: &NetworkRow) -> bool {
        !is_builtin(&n.name)
    }

    pub fn endpoint_view(&self, e: &EndpointRow) -> Endpoint {
        let n = self.network_by_id(&e.network_id);
        let prefix = n
            .and_then(addressing)
            .map(|a| a.subnet.prefix)
            .unwrap_or(32);
        Endpoint {
            network_id: e.network_id.clone(),
            network_name: n.map(|n| n.name.clone()).unwrap_or_default(),
            driver: n.map(|n| n.driver.clone()).unwrap_or_default(),
            ipv4_address: format!("{}/{prefix}", e.ip),
            gateway: n.map(|n| n.gateway.clone()).unwrap_or_default(),
            mac_address: e.mac.clone(),
            aliases: e.aliases.clone(),
            host_interface: e.host_ifname.clone(),
        }
    }

    /// A configured endpoint of a container that is not active: no address yet.
    pub fn config_view(&self, c: &EndpointConfigRow) -> Endpoint {
        let n = self.network_by_id(&c.network_id);
        Endpoint {
            network_id: c.network_id.clone(),
            network_name: n.map(|n| n.name.clone()).unwrap_or_default(),
            driver: n.map(|n| n.driver.clone()).unwrap_or_default(),
            gateway: n.map(|n| n.gateway.clone()).unwrap_or_default(),
            mac_address: c.mac_address.clone(),
            aliases: c.aliases.clone(),
            ..Default::default()
        }
    }

    /// The attachment of `row`; a `container:` one reports its target's endpoints.
    /// Endpoints are the configured ones, with addresses only while active.
    pub fn attachment_view(&self, row: &AttachmentRow) -> Attachment {
        let owner = row
            .mode
            .strip_prefix("container:")
            .unwrap_or(&row.container_id);
        let live = self.endpoints_of(owner);
        let endpoints: Vec<Endpoint> = self
            .configs_of(owner)
            .into_iter()
            .map(
                |c| match live.iter().find(|e| e.network_id == c.network_id) {
                    Some(e) => self.endpoint_view(e),
                    None => self.config_view(c),
                },
            )
            .collect();
        // The embedded DNS listens on the gateway of the first user-defined bridge network.
        let dns_servers = self
            .configs_of(owner)
            .into_iter()
            .filter_map(|c| self.network_by_id(&c.network_id))
            .find(|n| self.is_user(n) && matches!(n.driver.as_str(), "bridge" | "overlay"))
            .map(|n| vec![n.gateway.clone()])
            .unwrap_or_default();
        Attachment {
            container_id: row.container_id.clone(),
            mode: row.mode.clone(),
            netns_path: row.netns_path.clone(),
            ip_addresses: endpoints
                .iter()
                .filter(|e| !e.ipv4_address.is_empty())
                .map(|e| e.ipv4_address.clone())
                .collect(),
            dns_servers,
            endpoints,
            ports: self
                .ports
                .iter()
                .filter(|p| p.container_id == row.container_id)
                .map(|p| PortBinding {
                    protocol: p.protocol.clone(),
                    container_port: p.container_port.into(),
                    host_ip: p.host_ip.clone(),
                    host_port: p.host_port.into(),
                })
                .collect(),
            extra_hosts: self
                .links
                .iter()
                .filter(|l| l.container_id == owner && !l.ip.is_empty())
                .map(hosts_line)
                .collect(),
            ..Default::default()
        }
    }

    pub fn network_info(&self, n: &NetworkRow) -> NetworkInfo {
        NetworkInfo {
            containers: self.containers_on(n),
            id: n.id.clone(),
            name: n.name.clone(),
            driver: n.driver.clone(),
            scope: "local".into(),
            created: n.created.clone(),
            subnet: n.subnet.clone(),
            gateway: n.gateway.clone(),
            ip_range: n.ip_range.clone(),
            internal: n.internal,
            options: n.options.clone().into_iter().collect(),
            labels: n.labels.clone().into_iter().collect(),
            interface: n.interface.clone(),
            endpoints: self
                .endpoints_on(&n.id)
                .into_iter()
                .map(|e| ContainerEndpoint {
                    container_id: e.container_id.clone(),
                    container_name: self
                        .attachment(&e.container_id)
                        .map(|a| a.container_name.clone())
                        .unwrap_or_default(),
                    endpoint: Some(self.endpoint_view(e)),
                    node: String::new(),
                })
                .collect(),
            attachable: false,
            peers: Vec::new(),
        }
    }

    /// Every bridge network and every published port, for [`crate::firewall`].
    pub fn firewall_state(&self) -> FirewallState {
        FirewallState {
            networks: self
                .networks
                .iter()
                .filter(|n| {
                    matches!(n.driver.as_str(), "bridge" | "overlay") && !n.interface.is_empty()
                })
                .filter_map(|n| {
                    let a = addressing(n)?;
                    Some(FirewallNetwork {
                        bridge: n.interface.clone(),
                        subnet: a.subnet.addr,
                        prefix_len: a.subnet.prefix,
                        internal: n.internal,
                    })
                })
                .collect(),
            ports: self
                .ports
                .iter()
                .filter_map(|p| {
                    let host_ip: Ipv4Addr = p.host_ip.parse().ok()?;
                    Some(PublishedPort {
                        protocol: protocol(&p.protocol)?,
                        host_ip: (!host_ip.is_unspecified()).then_some(host_ip),
                        host_port: p.host_port,
                        container_ip: p.container_ip.parse().ok()?,
                        container_port: p.container_port,
                    })
                })
                .collect(),
        }
    }

    /// The names each container on `network_id` answers to there.
    pub fn dns_entries(&self, network_id: &str) -> Vec<DnsEntry> {
        self.endpoints_on(network_id)
            .into_iter()
            .filter_map(|e| {
                let a = self.attachment(&e.container_id)?;
                let mut names: Vec<String> = Vec::new();
                let short: String = e.container_id.chars().take(12).collect();
                let candidates = std::iter::once(a.container_name.clone())
                    .chain(e.aliases.iter().cloned())
                    .chain([short, a.hostname.clone()]);
                for name in candidates {
                    if !name.is_empty() && !names.contains(&name) {
                        names.push(name);
                    }
                }
                Some(DnsEntry {
                    container_id: e.container_id.clone(),
                    ip: e.ip.parse().ok()?,
                    names,
                })
            })
            .collect()
    }

    /// `--link` pairs (alias, target ID) of a container whose first network is
    /// user-defined; the embedded DNS answers them there.
    pub fn dns_links(&self, container_id: &str) -> Vec<(String, String)> {
        let on_user = self
            .endpoints_of(container_id)
            .first()
            .and_then(|e| self.network_by_id(&e.network_id))
            .is_some_and(|n| self.is_user(n));
        if !on_user || !self.is_active(container_id) {
            return Vec::new();
        }
        self.links
            .iter()
            .filter(|l| l.container_id == container_id)
            .map(|l| (link_alias(l).to_string(), l.target_id.clone()))
            .collect()
    }
}

fn link_alias(l: &LinkRow) -> &str {
    if l.alias.is_empty() {
        &l.name
    } else {
        &l.alias
    }
}

/// Docker's hosts line for a link: `ip\talias shortid name` (each name once).
pub fn hosts_line(l: &LinkRow) -> String {
    let short: String = l.target_id.chars().take(12).collect();
    let mut names: Vec<&str> = Vec::new();
    for n in [link_alias(l), short.as_str(), l.name.as_str()] {
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    }
    format!("{}\t{}", l.ip, names.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_hosts_lines_match_docker() {
        let mut l = LinkRow {
            container_id: "c".into(),
            target_id: "1a2b3c4d5e6f7890".into(),
            name: "db".into(),
            alias: "database".into(),
            ip: "172.17.0.3".into(),
        };
        assert_eq!(hosts_line(&l), "172.17.0.3\tdatabase 1a2b3c4d5e6f db");
        l.alias = String::new();
        assert_eq!(hosts_line(&l), "172.17.0.3\tdb 1a2b3c4d5e6f");
    }
}
