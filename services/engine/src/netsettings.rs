//! The supervisor's `NetworkSettings` (what goes in /etc/hosts and /etc/resolv.conf) from
//! the network service's attachment and the user's flags, at create and after a
//! connect/disconnect. Pure functions.
use berth_common::netsettings::user_or;
pub use berth_common::netsettings::{ip_addresses, network_hosts, published};
use berth_proto::{
    engine::v1::CreateContainerRequest, network::v1::Attachment, supervisor::v1::NetworkSettings,
};

/// The settings of a new container: the user's --dns, --dns-search, --dns-option win
/// over what the network suggests (its embedded DNS on user networks).
pub fn initial(req: &CreateContainerRequest, a: &Attachment) -> NetworkSettings {
    NetworkSettings {
        mode: a.mode.clone(),
        netns_path: a.netns_path.clone(),
        extra_hosts: req.extra_hosts.clone(),
        dns_servers: user_or(&req.dns_servers, &a.dns_servers),
        dns_search: user_or(&req.dns_search, &a.dns_search),
        dns_options: user_or(&req.dns_options, &a.dns_options),
        ip_addresses: ip_addresses(a),
        network_hosts: network_hosts(&a.extra_hosts),
        ports: published(&a.ports),
    }
}

/// The settings after a connect/disconnect changed the attachment from `before` to
/// `after`. A DNS list that still equals what the network gave before came from the
/// network and follows it; one that differs was the user's and stays.
pub fn after_change(
    old: &NetworkSettings,
    before: &Attachment,
    after: &Attachment,
) -> NetworkSettings {
    let follow = |current: &[String], was: &[String], now: &[String]| {
        if current == was {
            now.to_vec()
        } else {
            current.to_vec()
        }
    };
    NetworkSettings {
        mode: old.mode.clone(),
        netns_path: old.netns_path.clone(),
        extra_hosts: old.extra_hosts.clone(),
        dns_servers: follow(&old.dns_servers, &before.dns_servers, &after.dns_servers),
        dns_search: follow(&old.dns_search, &before.dns_search, &after.dns_search),
        dns_options: follow(&old.dns_options, &before.dns_options, &after.dns_options),
        ip_addresses: ip_addresses(after),
        network_hosts: network_hosts(&after.extra_hosts),
        // Ports are bound when the container starts; connect/disconnect leave them.
        ports: old.ports.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::network::v1::{Endpoint, PortBinding};
    use berth_proto::supervisor::v1::HostEntry;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn extra_hosts_lines_become_entries() {
        let got = network_hosts(&strings(&[
            "172.17.0.2\tdatabase db",
            "bad",
            "10.0.0.1  a  b ",
        ]));
        assert_eq!(
            got,
            vec![
                HostEntry {
                    ip: "172.17.0.2".into(),
                    hostname: "database db".into()
                },
                HostEntry {
                    ip: "10.0.0.1".into(),
                    hostname: "a b".into()
                }
            ]
        );
    }

    #[test]
    fn user_dns_wins_and_addresses_come_from_endpoints() {
        let a = Attachment {
            mode: "front".into(),
            netns_path: "/run/x".into(),
            dns_servers: strings(&["127.0.0.11"]),
            dns_search: strings(&["net.example"]),
            endpoints: vec![Endpoint {
                ipv4_address: "10.1.0.2/24".into(),
                ..Default::default()
            }],
            extra_hosts: strings(&["10.1.0.3\tdb"]),
            ports: vec![PortBinding {
                protocol: "tcp".into(),
                container_port: 80,
                host_ip: String::new(),
                host_port: 32768,
            }],
            ..Default::default()
        };
        let req = CreateContainerRequest {
            dns_servers: strings(&["1.1.1.1"]),
            dns_options: strings(&["ndots:2"]),
            ..Default::default()
        };
        let s = initial(&req, &a);
        assert_eq!(s.mode, "front");
        assert_eq!(s.dns_servers, strings(&["1.1.1.1"]));
        assert_eq!(s.dns_search, strings(&["net.example"]));
        assert_eq!(s.dns_options, strings(&["ndots:2"]));
        assert_eq!(s.ip_addresses, strings(&["10.1.0.2/24"]));
        assert_eq!(s.network_hosts.len(), 1);
        assert_eq!(
            (s.ports[0].container_port, s.ports[0].host_port),
            (80, 32768)
        );
    }

    #[test]
    fn network_dns_follows_a_change_and_user_dns_stays() {
        let before = Attachment {
            dns_servers: strings(&["8.8.8.8"]),
            ip_addresses: strings(&["172.17.0.2/16"]),
            ..Default::default()
        };
        let after = Attachment {
            dns_servers: strings(&["127.0.0.11"]),
            ip_addresses: strings(&["172.17.0.2/16", "10.1.0.2/24"]),
            extra_hosts: strings(&["10.1.0.3\tdb"]),
            ..Default::default()
        };
        let old = NetworkSettings {
            mode: "bridge".into(),
            dns_servers: strings(&["8.8.8.8"]),
            dns_search: strings(&["mine.example"]),
            ..Default::default()
        };
        let s = after_change(&old, &before, &after);
        assert_eq!(s.mode, "bridge");
        assert_eq!(s.dns_servers, strings(&["127.0.0.11"]));
        assert_eq!(s.dns_search, strings(&["mine.example"]));
        assert_eq!(s.ip_addresses.len(), 2);
        assert_eq!(s.network_hosts[0].hostname, "db");
    }
}
