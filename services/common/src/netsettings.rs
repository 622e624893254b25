//! What a container's record takes from the network service's attachment: its addresses,
//! the /etc/hosts lines of its links and its bound ports. Shared by the engine (create,
//! connect, disconnect) and the supervisor (start), so both read an attachment one way.
use berth_proto::{
    network::v1::{Attachment, PortBinding},
    supervisor::v1::{HostEntry, PublishedPort},
};

/// The attachment's `extra_hosts` lines ("ip\tnames") as host entries.
pub fn network_hosts(lines: &[String]) -> Vec<HostEntry> {
    lines
        .iter()
        .filter_map(|line| {
            let (ip, names) = line.trim().split_once(char::is_whitespace)?;
            let names = names.split_whitespace().collect::<Vec<_>>().join(" ");
            (!ip.is_empty() && !names.is_empty()).then(|| HostEntry {
                ip: ip.to_string(),
                hostname: names,
            })
        })
        .collect()
}

/// The container's addresses: one per endpoint (they follow connect/disconnect), else
/// the attachment's list (modes without endpoints).
pub fn ip_addresses(a: &Attachment) -> Vec<String> {
    let from_endpoints: Vec<String> = a
        .endpoints
        .iter()
        .filter(|e| !e.ipv4_address.is_empty())
        .map(|e| e.ipv4_address.clone())
        .collect();
    if from_endpoints.is_empty() {
        a.ip_addresses.clone()
    } else {
        from_endpoints
    }
}

/// The bound ports, for the record (`ps` reads them from there).
pub fn published(ports: &[PortBinding]) -> Vec<PublishedPort> {
    ports
        .iter()
        .map(|p| PublishedPort {
            protocol: p.protocol.clone(),
            container_port: p.container_port,
            host_ip: p.host_ip.clone(),
            host_port: p.host_port,
        })
        .collect()
}

/// `current` when set (the user's --dns and friends), else what the network gives.
pub fn user_or(current: &[String], network: &[String]) -> Vec<String> {
    if current.is_empty() {
        network.to_vec()
    } else {
        current.to_vec()
    }
}
