//! Keeps this host in the cluster: connects to etcd, holds the host's lease, registers
//! the host and its endpoints, then lists everything under the prefix and watches it from
//! that revision, applying each change to the kernel and the DNS. Any failure (etcd
//! restarting, the link to it cut, the lease lost after a long cut) ends the session;
//! the next one re-registers and re-lists, so nothing is missed or left behind.
use std::{sync::Arc, time::Duration};

use berth_etcd::Client;
use tonic::transport::ClientTlsConfig;

use crate::{
    cluster::{encode, Cluster, NodeRecord},
    service::{now_rfc3339, NetworkService},
    Error, Result,
};

const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl NetworkService {
    /// Starts the task that keeps this host in the cluster, when one is configured.
    pub(crate) fn start_cluster_sync(&self) {
        let Some(cluster) = self.inner.cluster.clone() else {
            return;
        };
        let service = self.clone();
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let started = std::time::Instant::now();
                if let Err(e) = service.cluster_session(&cluster).await {
                    tracing::warn!(error = %e, "cluster session ended; reconnecting");
                }
                if started.elapsed() > Duration::from_secs(10) {
                    backoff = Duration::from_millis(100);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
        *self
            .inner
            .cluster_task
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    /// One connection's worth of membership and watching; returns when it breaks.
    async fn cluster_session(&self, cluster: &Arc<Cluster>) -> Result<()> {
        let tls = match &cluster.config.tls {
            Some(tls) => Some(store_tls(tls).map_err(|e| cluster.store_error(e))?),
            None => None,
        };
        let client = Client::connect_tls(&cluster.config.store, tls)
            .await
            .map_err(|e| cluster.store_error(e))?;
        let err = |e| cluster.store_error(e);
        let ttl = cluster.config.lease_ttl as i64;
        let lease = client.grant_lease(ttl).await.map_err(err)?;
        let mut keep_alive = client.keep_alive(lease, ttl);
        let node = NodeRecord {
            node: cluster.node().to_string(),
            advertise: cluster.config.advertise,
            started: now_rfc3339(),
        };
        client
            .put(
                &cluster.keys.node(cluster.node()),
                &encode(&node),
                Some(lease),
            )
            .await
            .map_err(err)?;
        cluster.set_client(Some(client.clone()));
        cluster.set_lease(lease);
        let (kvs, revision) = client.get_prefix(cluster.keys.root()).await.map_err(err)?;
        let touched = cluster.reset(&kvs);
        self.register_endpoints(cluster).await?;
        for id in &touched.networks {
            if let Err(e) = self.sync_overlay(id).await {
                tracing::warn!(network = %id, error = %e, "overlay network not in sync");
            }
        }
        tracing::info!(
            node = cluster.node(),
            lease,
            revision,
            networks = touched.networks.len(),
            "joined the cluster"
        );
        let mut watch = client
            .watch_prefix(cluster.keys.root(), revision + 1)
            .await
            .map_err(err)?;
        loop {
            tokio::select! {
                _ = keep_alive.lost() => {
                    return Err(cluster.unavailable(format!("lease {lease} of this host expired")));
                }
                item = watch.next() => match item {
                    Some(Ok((_, events))) => {
                        let touched = cluster.apply(&events);
                        for id in &touched.networks {
                            if let Err(e) = self.sync_overlay(id).await {
                                tracing::warn!(network = %id, error = %e, "overlay network not in sync");
                            }
                        }
                    }
                    Some(Err(e)) => return Err(err(e)),
                    None => return Err(Error::Unavailable("cluster watch closed".into())),
                }
            }
        }
    }

    /// Publishes every local endpoint on an overlay network on the current lease (a new
    /// session, a restarted service, a host back after its lease expired), and withdraws
    /// records of this host's containers that no longer run.
    async fn register_endpoints(&self, cluster: &Cluster) -> Result<()> {
        let _guard = self.inner.lock.lock().await;
        let state = self.state()?;
        let mut live = Vec::new();
        for ep in &state.endpoints {
            let (Some(n), Some(row)) = (
                state.network_by_id(&ep.network_id),
                state.attachment(&ep.container_id),
            ) else {
                continue;
            };
            if n.driver != "overlay" {
                continue;
            }
            live.push((ep.network_id.clone(), ep.container_id.clone()));
            let ip = ep.ip.parse().ok();
            let held = self
                .allocate_overlay_ip(&state, n, &ep.container_id, ip)
                .await;
            if let Err(e) = held {
                tracing::error!(container_id = %ep.container_id, network = %n.name, ip = %ep.ip, error = %e, "address conflict on rejoining the cluster");
                continue;
            }
            self.publish_endpoint(ep, row).await?;
        }
        let me = cluster.node().to_string();
        let stale: Vec<(String, String, String)> = cluster.with_view(|v| {
            v.endpoints
                .values()
                .filter(|e| e.node == me)
                .filter(|e| !live.contains(&(e.network_id.clone(), e.container_id.clone())))
                .map(|e| {
                    (
                        e.network_id.clone(),
                        e.container_id.clone(),
                        e.ip.to_string(),
                    )
                })
                .collect()
        });
        for (network, container, ip) in stale {
            tracing::info!(container_id = %container, network = %network, "withdrawing a stale endpoint of this host");
            self.unpublish_endpoint(&network, &container, &ip).await;
        }
        Ok(())
    }
}

/// The TLS settings for etcd's `https://` endpoints, from `[cluster]`'s PEM files (read at
/// every session, so renewed certificates are picked up on the next reconnect).
fn store_tls(tls: &berth_common::cluster::StoreTls) -> berth_etcd::Result<ClientTlsConfig> {
    let identity = tls
        .identity
        .as_ref()
        .map(|(c, k)| (c.as_path(), k.as_path()));
    berth_common::tls::client_config(&tls.ca, identity)
        .map_err(|e| berth_etcd::Error::InvalidEndpoint(format!("cluster TLS files: {e:#}")))
}
