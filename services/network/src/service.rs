//! The network service's logic, independent of gRPC.
use std::{path::PathBuf, sync::Arc, time::SystemTime};

use berth_common::{ids, Config, Service};
use berth_proto::network::v1::{Attachment, NetworkInfo};

use crate::{
    netns,
    store::{AttachmentRow, NetworkRow, Store},
    Error, Result,
};

/// The built-in networks: (name, driver).
const BUILTIN: [(&str, &str); 2] = [("none", "null"), ("host", "host")];

#[derive(Clone)]
pub struct NetworkService {
    inner: Arc<Inner>,
}

struct Inner {
    netns_dir: PathBuf,
    store: Store,
    /// Serialises attach/detach so that concurrent calls for one container stay idempotent.
    lock: tokio::sync::Mutex<()>,
}

/// What a mode asks for, parsed.
#[derive(Debug, PartialEq, Eq)]
enum Mode<'a> {
    None,
    Host,
    Container(&'a str),
}

fn parse_mode(mode: &str) -> Result<Mode<'_>> {
    match mode {
        // "default" is Docker's name for the default network, `none` until bridges exist.
        "" | "default" | "none" => Ok(Mode::None),
        "host" => Ok(Mode::Host),
        _ => match mode.strip_prefix("container:") {
            Some("") => Err(Error::InvalidArgument(
                "network mode container: needs a container ID".into(),
            )),
            Some(target) => Ok(Mode::Container(target)),
            None => Err(Error::UnknownMode(mode.to_string())),
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

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn attachment(row: &AttachmentRow) -> Attachment {
    Attachment {
        container_id: row.container_id.clone(),
        mode: row.mode.clone(),
        netns_path: row.netns_path.clone(),
        ..Default::default()
    }
}

impl NetworkService {
    /// Opens the state in `config`, records the built-in networks and reconciles namespace
    /// files with the attachments (after a crash or a reboot).
    pub async fn open(config: &Config) -> Result<NetworkService> {
        let state = config.state_dir(Service::Network);
        berth_common::config::ensure_private_dir(&state)
            .map_err(|e| Error::sys(format!("create {}", state.display()), e))?;
        let store = Store::open(&state.join("meta.db"))?;
        for (name, driver) in BUILTIN {
            store.ensure_network(&NetworkRow {
                name: name.into(),
                id: ids::random_id(),
                driver: driver.into(),
                created: now_rfc3339(),
            })?;
        }
        let service = NetworkService {
            inner: Arc::new(Inner {
                netns_dir: config.netns_dir(),
                store,
                lock: Default::default(),
            }),
        };
        service.reconcile().await?;
        Ok(service)
    }

    fn netns_path(&self, container_id: &str) -> PathBuf {
        self.inner.netns_dir.join(container_id)
    }

    /// Removes namespace files no attachment owns (a crash between creating one and
    /// recording it) and recreates owned namespaces whose file is gone (a reboot cleared
    /// the run directory).
    async fn reconcile(&self) -> Result<()> {
        let _guard = self.inner.lock.lock().await;
        let rows = self.inner.store.attachments()?;
        if let Ok(entries) = std::fs::read_dir(&self.inner.netns_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let owned = rows.iter().any(|r| r.owns_netns && r.container_id == name);
                if !owned {
                    tracing::info!(container_id = %name, "removing an orphaned network namespace");
                    let path = entry.path();
                    blocking(move || netns::remove(&path)).await?;
                }
            }
        }
        for row in rows.iter().filter(|r| r.owns_netns) {
            let path = PathBuf::from(&row.netns_path);
            if !netns::is_namespace(&path) {
                tracing::warn!(container_id = %row.container_id, "network namespace missing, recreating it");
                blocking(move || netns::create(&path)).await?;
            }
        }
        Ok(())
    }

    /// Gives `container_id` its network; idempotent per container ID.
    pub async fn attach(
        &self,
        container_id: &str,
        mode: &str,
        hostname: &str,
    ) -> Result<Attachment> {
        check_container_id(container_id)?;
        let parsed = parse_mode(mode)?;
        let _guard = self.inner.lock.lock().await;
        let store = &self.inner.store;
        if let Some(row) = store.attachment(container_id)? {
            let same = match parsed {
                Mode::None => row.mode == "none",
                Mode::Host => row.mode == "host",
                Mode::Container(target) => row.mode == format!("container:{target}"),
            };
            if !same {
                return Err(Error::FailedPrecondition(format!(
                    "container {container_id} is already attached with network mode {}",
                    row.mode
                )));
            }
            return Ok(attachment(&row));
        }
        let mut row = AttachmentRow {
            container_id: container_id.to_string(),
            mode: String::new(),
            network: String::new(),
            netns_path: String::new(),
            owns_netns: false,
            hostname: hostname.to_string(),
            created: now_rfc3339(),
        };
        match parsed {
            Mode::None => {
                let path = self.netns_path(container_id);
                let create = path.clone();
                blocking(move || netns::create(&create)).await?;
                row.mode = "none".into();
                row.network = "none".into();
                row.netns_path = path.to_string_lossy().into_owned();
                row.owns_netns = true;
                if let Err(e) = store.insert_attachment(&row) {
                    // Leave nothing behind: the namespace is not recorded, so remove it.
                    let _ = blocking(move || netns::remove(&path)).await;
                    return Err(e);
                }
            }
            Mode::Host => {
                row.mode = "host".into();
                row.network = "host".into();
                store.insert_attachment(&row)?;
            }
            Mode::Container(target) => {
                if target == container_id {
                    return Err(Error::InvalidArgument(format!(
                        "cannot join the network namespace of container {target} itself"
                    )));
                }
                let owner = store.attachment(target)?.ok_or_else(|| {
                    Error::FailedPrecondition(format!(
                        "cannot join the network of container {target}: it has no network attachment"
                    ))
                })?;
                row.mode = format!("container:{target}");
                row.netns_path = owner.netns_path;
                store.insert_attachment(&row)?;
            }
        }
        tracing::info!(container_id, mode = %row.mode, netns = %row.netns_path, "attached");
        Ok(attachment(&row))
    }

    /// Releases what [`attach`](Self::attach) made; unknown containers succeed.
    pub async fn detach(&self, container_id: &str) -> Result<()> {
        check_container_id(container_id)?;
        let _guard = self.inner.lock.lock().await;
        let Some(row) = self.inner.store.attachment(container_id)? else {
            return Ok(());
        };
        if row.owns_netns {
            let path = PathBuf::from(&row.netns_path);
            blocking(move || netns::remove(&path)).await?;
        }
        self.inner.store.delete_attachment(container_id)?;
        tracing::info!(container_id, mode = %row.mode, "detached");
        Ok(())
    }

    pub fn get_attachment(&self, container_id: &str) -> Result<Option<Attachment>> {
        Ok(self
            .inner
            .store
            .attachment(container_id)?
            .as_ref()
            .map(attachment))
    }

    pub fn list_networks(&self) -> Result<Vec<NetworkInfo>> {
        let attachments = self.inner.store.attachments()?;
        Ok(self
            .inner
            .store
            .networks()?
            .into_iter()
            .map(|n| network_info(n, &attachments))
            .collect())
    }

    /// By name, full ID or unique ID prefix.
    pub fn get_network(&self, name: &str) -> Result<NetworkInfo> {
        let networks = self.inner.store.networks()?;
        let found = networks
            .iter()
            .find(|n| n.name == name || n.id == name)
            .cloned()
            .or_else(|| {
                let mut by_prefix = networks
                    .iter()
                    .filter(|n| !name.is_empty() && n.id.starts_with(name));
                match (by_prefix.next(), by_prefix.next()) {
                    (Some(n), None) => Some(n.clone()),
                    _ => None,
                }
            })
            .ok_or_else(|| Error::NetworkNotFound(name.to_string()))?;
        Ok(network_info(found, &self.inner.store.attachments()?))
    }
}

fn network_info(n: NetworkRow, attachments: &[AttachmentRow]) -> NetworkInfo {
    NetworkInfo {
        containers: attachments
            .iter()
            .filter(|a| a.network == n.name)
            .map(|a| a.container_id.clone())
            .collect(),
        id: n.id,
        name: n.name,
        driver: n.driver,
        scope: "local".into(),
        created: n.created,
    }
}

/// Runs blocking kernel work off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
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
        assert_eq!(parse_mode("").unwrap(), Mode::None);
        assert_eq!(parse_mode("none").unwrap(), Mode::None);
        assert_eq!(parse_mode("default").unwrap(), Mode::None);
        assert_eq!(parse_mode("host").unwrap(), Mode::Host);
        assert_eq!(parse_mode("container:abc").unwrap(), Mode::Container("abc"));
        assert!(matches!(
            parse_mode("container:"),
            Err(Error::InvalidArgument(_))
        ));
        let e = parse_mode("foo").unwrap_err();
        assert_eq!(e.to_string(), "network foo not found");
        assert!(matches!(e, Error::UnknownMode(_)));
    }

    #[test]
    fn container_ids_are_path_safe() {
        assert!(check_container_id(&"a".repeat(64)).is_ok());
        for bad in ["", "..", "a/b", ".x"] {
            assert!(check_container_id(bad).is_err(), "{bad}");
        }
    }
}
