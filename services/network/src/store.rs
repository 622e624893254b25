//! The network service's metadata in `<state>/meta.db` (SQLite, WAL): the built-in
//! networks (so their IDs are stable) and one attachment per container.
use std::{path::Path, sync::Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use crate::Result;

/// The schema, one migration per entry, applied in order; `user_version` counts them.
const MIGRATIONS: &[&str] = &["CREATE TABLE networks (
        name TEXT PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        driver TEXT NOT NULL,
        created TEXT NOT NULL
    );
    CREATE TABLE attachments (
        container_id TEXT PRIMARY KEY,
        -- the resolved mode: none, host, container:<id>
        mode TEXT NOT NULL,
        -- the network it belongs to, for ListNetworks (none, host; empty for container:)
        network TEXT NOT NULL,
        netns_path TEXT NOT NULL,
        -- 1 when the namespace file was made for this container (removed on detach)
        owns_netns INTEGER NOT NULL,
        hostname TEXT NOT NULL,
        created TEXT NOT NULL
    );"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRow {
    pub name: String,
    pub id: String,
    pub driver: String,
    pub created: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentRow {
    pub container_id: String,
    pub mode: String,
    pub network: String,
    pub netns_path: String,
    pub owns_netns: bool,
    pub hostname: String,
    pub created: String,
}

pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts the network unless one with that name exists; returns the stored one.
    pub fn ensure_network(&self, row: &NetworkRow) -> Result<NetworkRow> {
        let conn = self.conn();
        conn.execute(
            "INSERT OR IGNORE INTO networks (name, id, driver, created) VALUES (?1, ?2, ?3, ?4)",
            params![row.name, row.id, row.driver, row.created],
        )?;
        Ok(conn.query_row(
            "SELECT name, id, driver, created FROM networks WHERE name = ?1",
            params![row.name],
            network_row,
        )?)
    }

    pub fn networks(&self) -> Result<Vec<NetworkRow>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT name, id, driver, created FROM networks ORDER BY name")?;
        let rows = stmt
            .query_map([], network_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn attachment(&self, container_id: &str) -> Result<Option<AttachmentRow>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT container_id, mode, network, netns_path, owns_netns, hostname, created
                 FROM attachments WHERE container_id = ?1",
                params![container_id],
                attachment_row,
            )
            .optional()?)
    }

    pub fn attachments(&self) -> Result<Vec<AttachmentRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT container_id, mode, network, netns_path, owns_netns, hostname, created
             FROM attachments ORDER BY created, container_id",
        )?;
        let rows = stmt
            .query_map([], attachment_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn insert_attachment(&self, row: &AttachmentRow) -> Result<()> {
        self.conn().execute(
            "INSERT INTO attachments (container_id, mode, network, netns_path, owns_netns, hostname, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                row.container_id,
                row.mode,
                row.network,
                row.netns_path,
                row.owns_netns,
                row.hostname,
                row.created
            ],
        )?;
        Ok(())
    }

    pub fn delete_attachment(&self, container_id: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM attachments WHERE container_id = ?1",
            params![container_id],
        )?;
        Ok(())
    }
}

fn network_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NetworkRow> {
    Ok(NetworkRow {
        name: r.get(0)?,
        id: r.get(1)?,
        driver: r.get(2)?,
        created: r.get(3)?,
    })
}

fn attachment_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AttachmentRow> {
    Ok(AttachmentRow {
        container_id: r.get(0)?,
        mode: r.get(1)?,
        network: r.get(2)?,
        netns_path: r.get(3)?,
        owns_netns: r.get(4)?,
        hostname: r.get(5)?,
        created: r.get(6)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> AttachmentRow {
        AttachmentRow {
            container_id: id.into(),
            mode: "none".into(),
            network: "none".into(),
            netns_path: format!("/run/x/{id}"),
            owns_netns: true,
            hostname: String::new(),
            created: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn rows_survive_reopen_and_networks_keep_their_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let net = NetworkRow {
            name: "none".into(),
            id: "a".repeat(64),
            driver: "null".into(),
            created: "t".into(),
        };
        {
            let store = Store::open(&path).unwrap();
            store.ensure_network(&net).unwrap();
            store.insert_attachment(&row("c1")).unwrap();
            assert!(store.insert_attachment(&row("c1")).is_err());
        }
        let store = Store::open(&path).unwrap();
        let other = NetworkRow {
            id: "b".repeat(64),
            ..net.clone()
        };
        assert_eq!(store.ensure_network(&other).unwrap(), net);
        assert_eq!(store.attachment("c1").unwrap(), Some(row("c1")));
        store.delete_attachment("c1").unwrap();
        store.delete_attachment("c1").unwrap();
        assert_eq!(store.attachment("c1").unwrap(), None);
    }
}
