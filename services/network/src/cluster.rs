//! This host's view of the cluster store (etcd) that overlay networks live in: the key
//! layout, the records, the connection and this host's lease, and the in-memory copy of
//! every overlay network, endpoint and host that the watch keeps current.
//!
//! Keys under `<prefix>/v1/` (ADR 14):
//! - `networks/<id>` an [`OverlayRecord`]; `names/<name>`, `vnis/<vni>`, `subnets/<cidr>`
//!   hold the network ID so a name, VNI or subnet is taken once, by one transaction;
//! - `ipam/<network>/<ip>` the container holding the address (on its host's lease), and
//!   `ipam-last/<network>` the address handed out last (allocation goes on after it);
//! - `endpoints/<network>/<container>` an [`EndpointRecord`] (on its host's lease);
//! - `nodes/<node>` a [`NodeRecord`] (on the host's lease).
//!
//! A host that dies stops renewing its lease: its endpoints, addresses and membership
//! expire and every other host removes their forwarding entries and names.
use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    sync::{
        atomic::{AtomicI64, Ordering},
        Mutex,
    },
};

use berth_common::cluster::ClusterConfig;
use berth_etcd::{Client, Event, KeyValue};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// An overlay network as every host sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlayRecord {
    pub id: String,
    pub name: String,
    pub created: String,
    pub subnet: String,
    pub gateway: String,
    #[serde(default)]
    pub ip_range: String,
    pub vni: u32,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The host it was created on.
    pub creator: String,
}

/// One container's endpoint on an overlay network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub network_id: String,
    pub container_id: String,
    #[serde(default)]
    pub container_name: String,
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub ip: Ipv4Addr,
    pub mac: String,
    /// The host the container runs on, and its underlay address (the tunnel's far end).
    pub node: String,
    pub vtep: Ipv4Addr,
}

/// A host taking part in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node: String,
    pub advertise: Ipv4Addr,
    pub started: String,
}

/// The key layout under the configured prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    root: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            root: format!("{prefix}/v1/"),
        }
    }

    /// Every key berth writes (what the watch covers).
    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn network(&self, id: &str) -> String {
        format!("{}networks/{id}", self.root)
    }

    pub fn name(&self, name: &str) -> String {
        format!("{}names/{name}", self.root)
    }

    pub fn vni(&self, vni: u32) -> String {
        format!("{}vnis/{vni}", self.root)
    }

    pub fn subnet(&self, subnet: &str) -> String {
        format!("{}subnets/{}", self.root, subnet.replace('/', "_"))
    }

    pub fn ipam_prefix(&self, network_id: &str) -> String {
        format!("{}ipam/{network_id}/", self.root)
    }

    pub fn ipam(&self, network_id: &str, ip: Ipv4Addr) -> String {
        format!("{}{ip}", self.ipam_prefix(network_id))
    }

    /// The address last handed out on a network (allocation goes on after it).
    pub fn ipam_cursor(&self, network_id: &str) -> String {
        format!("{}ipam-last/{network_id}", self.root)
    }

    pub fn endpoint_prefix(&self, network_id: &str) -> String {
        format!("{}endpoints/{network_id}/", self.root)
    }

    pub fn endpoint(&self, network_id: &str, container_id: &str) -> String {
        format!("{}{container_id}", self.endpoint_prefix(network_id))
    }

    pub fn node(&self, node: &str) -> String {
        format!("{}nodes/{node}", self.root)
    }
}

/// What a watched key is.
#[derive(Debug, PartialEq, Eq)]
enum Kind<'a> {
    Network(&'a str),
    Endpoint(&'a str, &'a str),
    Node(&'a str),
    Other,
}

impl Keys {
    fn kind<'a>(&self, key: &'a str) -> Kind<'a> {
        let Some(rest) = key.strip_prefix(self.root.as_str()) else {
            return Kind::Other;
        };
        let mut parts = rest.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("networks"), Some(id), None) => Kind::Network(id),
            (Some("endpoints"), Some(net), Some(c)) => Kind::Endpoint(net, c),
            (Some("nodes"), Some(node), None) => Kind::Node(node),
            _ => Kind::Other,
        }
    }
}

/// The cluster as last seen through the watch.
#[derive(Debug, Default, Clone)]
pub struct View {
    pub networks: BTreeMap<String, OverlayRecord>,
    /// Keyed by (network ID, container ID).
    pub endpoints: BTreeMap<(String, String), EndpointRecord>,
    pub nodes: BTreeMap<String, NodeRecord>,
}

impl View {
    /// The endpoints on one network.
    pub fn endpoints_on<'a>(
        &'a self,
        network_id: &'a str,
    ) -> impl Iterator<Item = &'a EndpointRecord> + 'a {
        self.endpoints
            .range((network_id.to_string(), String::new())..)
            .take_while(move |((n, _), _)| n == network_id)
            .map(|(_, e)| e)
    }

    pub fn network_by_name(&self, name: &str) -> Option<&OverlayRecord> {
        self.networks.values().find(|n| n.name == name)
    }
}

/// The networks whose records or endpoints an event batch touched.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Touched {
    pub networks: std::collections::BTreeSet<String>,
}

/// The connection, the lease and the view. Methods never hold the view's lock across an
/// await.
pub struct Cluster {
    pub config: ClusterConfig,
    pub keys: Keys,
    client: Mutex<Option<Client>>,
    lease: AtomicI64,
    view: Mutex<View>,
}

impl Cluster {
    pub fn new(config: ClusterConfig) -> Cluster {
        Cluster {
            keys: Keys::new(&config.prefix),
            config,
            client: Mutex::new(None),
            lease: AtomicI64::new(0),
            view: Mutex::new(View::default()),
        }
    }

    pub fn node(&self) -> &str {
        &self.config.node
    }

    /// The connected client, or Unavailable naming the store.
    pub fn client(&self) -> Result<Client> {
        lock(&self.client)
            .clone()
            .ok_or_else(|| self.unavailable("not connected yet"))
    }

    pub fn set_client(&self, client: Option<Client>) {
        *lock(&self.client) = client;
    }

    /// This host's lease; Unavailable until registered.
    pub fn lease(&self) -> Result<i64> {
        match self.lease.load(Ordering::SeqCst) {
            0 => Err(self.unavailable("this host is not registered yet")),
            id => Ok(id),
        }
    }

    pub fn set_lease(&self, id: i64) {
        self.lease.store(id, Ordering::SeqCst);
    }

    pub fn unavailable(&self, why: impl std::fmt::Display) -> Error {
        Error::Unavailable(format!(
            "cluster store {}: {why}",
            self.config.store.join(",")
        ))
    }

    /// Maps an etcd error to ours, naming the store.
    pub fn store_error(&self, e: berth_etcd::Error) -> Error {
        self.unavailable(e)
    }

    pub fn view(&self) -> View {
        lock(&self.view).clone()
    }

    /// Reads the view without copying it.
    pub fn with_view<T>(&self, f: impl FnOnce(&View) -> T) -> T {
        f(&lock(&self.view))
    }

    /// Replaces the view with a full listing; returns every network in the old or new view.
    pub fn reset(&self, kvs: &[KeyValue]) -> Touched {
        let mut fresh = View::default();
        for kv in kvs {
            self.apply_put(&mut fresh, kv);
        }
        let mut view = lock(&self.view);
        let mut touched = Touched::default();
        touched.networks.extend(view.networks.keys().cloned());
        touched.networks.extend(fresh.networks.keys().cloned());
        touched
            .networks
            .extend(view.endpoints.keys().map(|(n, _)| n.clone()));
        touched
            .networks
            .extend(fresh.endpoints.keys().map(|(n, _)| n.clone()));
        *view = fresh;
        touched
    }

    /// Applies a watch batch; returns the networks it touched.
    pub fn apply(&self, events: &[Event]) -> Touched {
        let mut view = lock(&self.view);
        let mut touched = Touched::default();
        for event in events {
            match event {
                Event::Put(kv) => {
                    if let Some(n) = self.apply_put(&mut view, kv) {
                        touched.networks.insert(n);
                    }
                }
                Event::Delete { key, .. } => match self.keys.kind(key) {
                    Kind::Network(id) => {
                        view.networks.remove(id);
                        touched.networks.insert(id.to_string());
                    }
                    Kind::Endpoint(net, c) => {
                        view.endpoints.remove(&(net.to_string(), c.to_string()));
                        touched.networks.insert(net.to_string());
                    }
                    Kind::Node(node) => {
                        view.nodes.remove(node);
                    }
                    Kind::Other => {}
                },
            }
        }
        touched
    }

    /// Records one put; returns the network it concerns. Unreadable values are logged and
    /// skipped (a newer berth may have written them).
    fn apply_put(&self, view: &mut View, kv: &KeyValue) -> Option<String> {
        match self.keys.kind(&kv.key) {
            Kind::Network(id) => match serde_json::from_slice::<OverlayRecord>(&kv.value) {
                Ok(rec) => {
                    view.networks.insert(id.to_string(), rec);
                    Some(id.to_string())
                }
                Err(e) => skip(&kv.key, e),
            },
            Kind::Endpoint(net, c) => match serde_json::from_slice::<EndpointRecord>(&kv.value) {
                Ok(rec) => {
                    view.endpoints.insert((net.to_string(), c.to_string()), rec);
                    Some(net.to_string())
                }
                Err(e) => skip(&kv.key, e),
            },
            Kind::Node(node) => {
                match serde_json::from_slice::<NodeRecord>(&kv.value) {
                    Ok(rec) => {
                        view.nodes.insert(node.to_string(), rec);
                    }
                    Err(e) => {
                        skip(&kv.key, e);
                    }
                }
                None
            }
            Kind::Other => None,
        }
    }
}

fn skip(key: &str, e: serde_json::Error) -> Option<String> {
    tracing::warn!(key, error = %e, "ignoring an unreadable cluster record");
    None
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serialises a record for the store.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: Vec<u8>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value,
            create_revision: 1,
            mod_revision: 1,
            lease: 0,
        }
    }

    fn config() -> ClusterConfig {
        ClusterConfig {
            store: vec!["http://192.0.2.1:2379".into()],
            advertise: Ipv4Addr::new(192, 0, 2, 11),
            node: "a".into(),
            prefix: "/t".into(),
            vxlan_port: 4789,
            lease_ttl: 10,
            tls: None,
        }
    }

    #[test]
    fn keys_classify() {
        let k = Keys::new("/t");
        assert_eq!(k.kind(&k.network("n1")), Kind::Network("n1"));
        assert_eq!(k.kind(&k.endpoint("n1", "c1")), Kind::Endpoint("n1", "c1"));
        assert_eq!(k.kind(&k.node("h")), Kind::Node("h"));
        assert_eq!(
            k.kind(&k.ipam("n1", Ipv4Addr::new(10, 0, 0, 2))),
            Kind::Other
        );
        assert_eq!(k.kind("/other/v1/networks/x"), Kind::Other);
        assert_eq!(k.subnet("10.0.0.0/24"), "/t/v1/subnets/10.0.0.0_24");
    }

    #[test]
    fn events_update_the_view_and_name_the_networks() {
        let c = Cluster::new(config());
        let ep = EndpointRecord {
            network_id: "n1".into(),
            container_id: "c1".into(),
            container_name: "api".into(),
            hostname: String::new(),
            aliases: vec![],
            ip: Ipv4Addr::new(10, 90, 0, 2),
            mac: "02:42:0a:5a:00:02".into(),
            node: "b".into(),
            vtep: Ipv4Addr::new(192, 0, 2, 12),
        };
        let t = c.apply(&[
            Event::Put(kv(&c.keys.endpoint("n1", "c1"), encode(&ep))),
            Event::Put(kv(&c.keys.node("b"), b"not json".to_vec())),
        ]);
        assert_eq!(t.networks.into_iter().collect::<Vec<_>>(), vec!["n1"]);
        assert_eq!(c.view().endpoints_on("n1").count(), 1);
        assert_eq!(c.view().endpoints_on("n0").count(), 0);
        c.apply(&[Event::Delete {
            key: c.keys.endpoint("n1", "c1"),
            mod_revision: 3,
        }]);
        assert_eq!(c.view().endpoints_on("n1").count(), 0);
        let t = c.reset(&[kv(&c.keys.endpoint("n2", "c1"), encode(&ep))]);
        assert!(t.networks.contains("n2"));
    }
}
