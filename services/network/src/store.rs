//! The network service's metadata in `<state>/meta.db` (SQLite, WAL): networks (built-in
//! and user-defined), one attachment per container with its recorded configuration
//! (endpoint configs, requested ports, links) and, while it is active (running), its live
//! endpoints and bound ports.
use std::{collections::BTreeMap, path::Path, sync::Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use crate::Result;

/// The schema, one migration per entry, applied in order; `user_version` counts them.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE networks (
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
    );",
    // Bridge and macvlan networks: addressing, endpoints, published ports, links.
    "ALTER TABLE networks ADD COLUMN subnet TEXT NOT NULL DEFAULT '';
    ALTER TABLE networks ADD COLUMN gateway TEXT NOT NULL DEFAULT '';
    ALTER TABLE networks ADD COLUMN ip_range TEXT NOT NULL DEFAULT '';
    ALTER TABLE networks ADD COLUMN internal INTEGER NOT NULL DEFAULT 0;
    -- JSON objects
    ALTER TABLE networks ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE networks ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
    -- the bridge, or the macvlan parent
    ALTER TABLE networks ADD COLUMN interface TEXT NOT NULL DEFAULT '';
    ALTER TABLE attachments ADD COLUMN container_name TEXT NOT NULL DEFAULT '';
    CREATE TABLE endpoints (
        container_id TEXT NOT NULL,
        network_id TEXT NOT NULL,
        ip TEXT NOT NULL,
        mac TEXT NOT NULL,
        -- JSON array
        aliases TEXT NOT NULL,
        -- eth0, eth1, ... inside the container
        ifname TEXT NOT NULL,
        -- the veth's host end (bridge), empty for macvlan
        host_ifname TEXT NOT NULL,
        -- 1 when the container's default route goes through this endpoint
        default_route INTEGER NOT NULL,
        created TEXT NOT NULL,
        PRIMARY KEY (container_id, network_id),
        UNIQUE (network_id, ip)
    );
    CREATE TABLE ports (
        container_id TEXT NOT NULL,
        protocol TEXT NOT NULL,
        host_ip TEXT NOT NULL,
        host_port INTEGER NOT NULL,
        container_ip TEXT NOT NULL,
        container_port INTEGER NOT NULL
    );
    CREATE INDEX ports_by_container ON ports (container_id);
    CREATE TABLE links (
        container_id TEXT NOT NULL,
        target_id TEXT NOT NULL,
        name TEXT NOT NULL,
        alias TEXT NOT NULL,
        -- the target's address when the link was made (the hosts entry)
        ip TEXT NOT NULL
    );
    CREATE INDEX links_by_container ON links (container_id);",
    // Network only while running (ADR 7): the configuration is recorded at create,
    // endpoints and ports exist only while `active`. Older records were all live.
    "ALTER TABLE attachments ADD COLUMN active INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE attachments ADD COLUMN port_requests TEXT NOT NULL DEFAULT '[]';
    UPDATE attachments SET active = 1;
    UPDATE attachments SET port_requests = COALESCE((SELECT json_group_array(json_object(
        'protocol', p.protocol, 'host_ip', p.host_ip, 'host_port', p.host_port,
        'container_port', p.container_port)) FROM ports p
        WHERE p.container_id = attachments.container_id), '[]');
    CREATE TABLE endpoint_configs (
        container_id TEXT NOT NULL,
        network_id TEXT NOT NULL,
        -- JSON array
        aliases TEXT NOT NULL,
        -- --ip; empty: allocated at each activation
        ipv4_address TEXT NOT NULL,
        -- --mac-address; empty: derived from the address
        mac_address TEXT NOT NULL,
        created TEXT NOT NULL,
        PRIMARY KEY (container_id, network_id)
    );
    INSERT INTO endpoint_configs
        SELECT container_id, network_id, aliases, '', '', created FROM endpoints;",
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkRow {
    pub name: String,
    pub id: String,
    pub driver: String,
    pub created: String,
    /// `a.b.c.d/n`; empty for none/host.
    pub subnet: String,
    pub gateway: String,
    pub ip_range: String,
    pub internal: bool,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub interface: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachmentRow {
    pub container_id: String,
    pub mode: String,
    pub network: String,
    pub netns_path: String,
    pub owns_netns: bool,
    pub hostname: String,
    pub created: String,
    pub container_name: String,
    /// True while the container runs: its kernel objects, ports and names exist.
    pub active: bool,
    /// Published ports as requested (-p; host port 0 is chosen at each activation).
    pub port_requests: Vec<PortRequest>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortRequest {
    pub protocol: String,
    pub host_ip: String,
    pub host_port: u32,
    pub container_port: u32,
}

/// A network the container is on, as configured (create, connect); its live endpoint
/// exists only while the container is active.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointConfigRow {
    pub container_id: String,
    pub network_id: String,
    pub aliases: Vec<String>,
    /// Fixed address (--ip) or empty.
    pub ipv4_address: String,
    pub mac_address: String,
    pub created: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointRow {
    pub container_id: String,
    pub network_id: String,
    pub ip: String,
    pub mac: String,
    pub aliases: Vec<String>,
    pub ifname: String,
    pub host_ifname: String,
    pub default_route: bool,
    pub created: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortRow {
    pub container_id: String,
    pub protocol: String,
    pub host_ip: String,
    pub host_port: u16,
    pub container_ip: String,
    pub container_port: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkRow {
    pub container_id: String,
    pub target_id: String,
    pub name: String,
    pub alias: String,
    pub ip: String,
}

pub struct Store {
    conn: Mutex<Connection>,
}

const NETWORK_COLS: &str =
    "name, id, driver, created, subnet, gateway, ip_range, internal, options, labels, interface";
const ATTACHMENT_COLS: &str = "container_id, mode, network, netns_path, owns_netns, hostname, created, container_name, active, port_requests";
const CONFIG_COLS: &str = "container_id, network_id, aliases, ipv4_address, mac_address, created";
const ENDPOINT_COLS: &str =
    "container_id, network_id, ip, mac, aliases, ifname, host_ifname, default_route, created";
const PORT_COLS: &str = "container_id, protocol, host_ip, host_port, container_ip, container_port";
const LINK_COLS: &str = "container_id, target_id, name, alias, ip";

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
        insert_network(&conn, row, true)?;
        Ok(conn.query_row(
            &format!("SELECT {NETWORK_COLS} FROM networks WHERE name = ?1"),
            params![row.name],
            network_row,
        )?)
    }

    /// Inserts a new network; fails when the name or ID exists.
    pub fn insert_network(&self, row: &NetworkRow) -> Result<()> {
        insert_network(&self.conn(), row, false)
    }

    /// Replaces the addressing of a network (the default bridge gets it at first start).
    pub fn update_network(&self, row: &NetworkRow) -> Result<()> {
        let conn = self.conn();
        conn.execute("DELETE FROM networks WHERE id = ?1", params![row.id])?;
        insert_network(&conn, row, false)
    }

    pub fn delete_network(&self, id: &str) -> Result<()> {
        self.conn()
            .execute("DELETE FROM networks WHERE id = ?1", params![id])?;
        Ok(())
    }

    pub fn networks(&self) -> Result<Vec<NetworkRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {NETWORK_COLS} FROM networks ORDER BY name"
        ))?;
        let rows = stmt
            .query_map([], network_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn attachment(&self, container_id: &str) -> Result<Option<AttachmentRow>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {ATTACHMENT_COLS} FROM attachments WHERE container_id = ?1"),
                params![container_id],
                attachment_row,
            )
            .optional()?)
    }

    pub fn attachments(&self) -> Result<Vec<AttachmentRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {ATTACHMENT_COLS} FROM attachments ORDER BY created, container_id"
        ))?;
        let rows = stmt
            .query_map([], attachment_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn insert_attachment(&self, row: &AttachmentRow) -> Result<()> {
        self.insert_container(row, &[], &[])
    }

    /// Records a container's configuration (create): attachment, endpoint configs and
    /// links (their addresses are filled at activation), atomically.
    pub fn insert_container(
        &self,
        row: &AttachmentRow,
        configs: &[EndpointConfigRow],
        links: &[LinkRow],
    ) -> Result<()> {
        let conn = self.conn();
        let tx = conn.unchecked_transaction()?;
        tx.execute(
            &format!("INSERT INTO attachments ({ATTACHMENT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
            params![
                row.container_id,
                row.mode,
                row.network,
                row.netns_path,
                row.owns_netns,
                row.hostname,
                row.created,
                row.container_name,
                row.active,
                to_json(&row.port_requests)
            ],
        )?;
        for c in configs {
            insert_config(&tx, c)?;
        }
        for l in links {
            tx.execute(
                &format!("INSERT INTO links ({LINK_COLS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
                params![l.container_id, l.target_id, l.name, l.alias, l.ip],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Marks a container active with its live endpoints, bound ports and the current
    /// addresses of its link targets (`(target_id, ip)`), atomically.
    pub fn activate(
        &self,
        container_id: &str,
        endpoints: &[EndpointRow],
        ports: &[PortRow],
        link_ips: &[(String, String)],
    ) -> Result<()> {
        let conn = self.conn();
        let tx = conn.unchecked_transaction()?;
        for e in endpoints {
            insert_endpoint(&tx, e)?;
        }
        for p in ports {
            insert_port(&tx, p)?;
        }
        for (target, ip) in link_ips {
            tx.execute(
                "UPDATE links SET ip = ?3 WHERE container_id = ?1 AND target_id = ?2",
                params![container_id, target, ip],
            )?;
        }
        tx.execute(
            "UPDATE attachments SET active = 1 WHERE container_id = ?1",
            params![container_id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets a container's live state (endpoints, ports, link addresses); the
    /// configuration stays.
    pub fn deactivate(&self, container_id: &str) -> Result<()> {
        let conn = self.conn();
        let tx = conn.unchecked_transaction()?;
        for table in ["endpoints", "ports"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE container_id = ?1"),
                params![container_id],
            )?;
        }
        tx.execute(
            "UPDATE links SET ip = '' WHERE container_id = ?1",
            params![container_id],
        )?;
        tx.execute(
            "UPDATE attachments SET active = 0 WHERE container_id = ?1",
            params![container_id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets a container: attachment, configs, endpoints, ports, links.
    pub fn delete_attachment(&self, container_id: &str) -> Result<()> {
        let conn = self.conn();
        let tx = conn.unchecked_transaction()?;
        for table in [
            "attachments",
            "endpoint_configs",
            "endpoints",
            "ports",
            "links",
        ] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE container_id = ?1"),
                params![container_id],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn insert_config(&self, row: &EndpointConfigRow) -> Result<()> {
        insert_config(&self.conn(), row)
    }

    pub fn delete_config(&self, container_id: &str, network_id: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM endpoint_configs WHERE container_id = ?1 AND network_id = ?2",
            params![container_id, network_id],
        )?;
        Ok(())
    }

    /// Every endpoint config, in the order the container got them.
    pub fn configs(&self) -> Result<Vec<EndpointConfigRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {CONFIG_COLS} FROM endpoint_configs ORDER BY created, rowid"
        ))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(EndpointConfigRow {
                    container_id: r.get(0)?,
                    network_id: r.get(1)?,
                    aliases: from_json(r.get(2)?),
                    ipv4_address: r.get(3)?,
                    mac_address: r.get(4)?,
                    created: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn insert_endpoint(&self, row: &EndpointRow) -> Result<()> {
        insert_endpoint(&self.conn(), row)
    }

    pub fn delete_endpoint(&self, container_id: &str, network_id: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM endpoints WHERE container_id = ?1 AND network_id = ?2",
            params![container_id, network_id],
        )?;
        Ok(())
    }

    /// Every endpoint, in creation order.
    pub fn endpoints(&self) -> Result<Vec<EndpointRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {ENDPOINT_COLS} FROM endpoints ORDER BY created, rowid"
        ))?;
        let rows = stmt
            .query_map([], endpoint_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn ports(&self) -> Result<Vec<PortRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {PORT_COLS} FROM ports ORDER BY rowid"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(PortRow {
                    container_id: r.get(0)?,
                    protocol: r.get(1)?,
                    host_ip: r.get(2)?,
                    host_port: r.get(3)?,
                    container_ip: r.get(4)?,
                    container_port: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn delete_ports(&self, container_id: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM ports WHERE container_id = ?1",
            params![container_id],
        )?;
        Ok(())
    }

    pub fn links(&self) -> Result<Vec<LinkRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {LINK_COLS} FROM links ORDER BY rowid"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(LinkRow {
                    container_id: r.get(0)?,
                    target_id: r.get(1)?,
                    name: r.get(2)?,
                    alias: r.get(3)?,
                    ip: r.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

fn insert_network(conn: &Connection, row: &NetworkRow, or_ignore: bool) -> Result<()> {
    let verb = if or_ignore {
        "INSERT OR IGNORE"
    } else {
        "INSERT"
    };
    conn.execute(
        &format!(
            "{verb} INTO networks ({NETWORK_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        ),
        params![
            row.name,
            row.id,
            row.driver,
            row.created,
            row.subnet,
            row.gateway,
            row.ip_range,
            row.internal,
            to_json(&row.options),
            to_json(&row.labels),
            row.interface
        ],
    )?;
    Ok(())
}

fn insert_config(conn: &Connection, c: &EndpointConfigRow) -> Result<()> {
    conn.execute(
        &format!("INSERT INTO endpoint_configs ({CONFIG_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![
            c.container_id,
            c.network_id,
            to_json(&c.aliases),
            c.ipv4_address,
            c.mac_address,
            c.created
        ],
    )?;
    Ok(())
}

fn insert_port(conn: &Connection, p: &PortRow) -> Result<()> {
    conn.execute(
        &format!("INSERT INTO ports ({PORT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![
            p.container_id,
            p.protocol,
            p.host_ip,
            p.host_port,
            p.container_ip,
            p.container_port
        ],
    )?;
    Ok(())
}

fn insert_endpoint(conn: &Connection, e: &EndpointRow) -> Result<()> {
    conn.execute(
        &format!(
            "INSERT INTO endpoints ({ENDPOINT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ),
        params![
            e.container_id,
            e.network_id,
            e.ip,
            e.mac,
            to_json(&e.aliases),
            e.ifname,
            e.host_ifname,
            e.default_route,
            e.created
        ],
    )?;
    Ok(())
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// A JSON column; a damaged value reads as empty rather than failing every query.
fn from_json<T: serde::de::DeserializeOwned + Default>(s: String) -> T {
    serde_json::from_str(&s).unwrap_or_default()
}

fn network_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NetworkRow> {
    Ok(NetworkRow {
        name: r.get(0)?,
        id: r.get(1)?,
        driver: r.get(2)?,
        created: r.get(3)?,
        subnet: r.get(4)?,
        gateway: r.get(5)?,
        ip_range: r.get(6)?,
        internal: r.get(7)?,
        options: from_json(r.get(8)?),
        labels: from_json(r.get(9)?),
        interface: r.get(10)?,
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
        container_name: r.get(7)?,
        active: r.get(8)?,
        port_requests: from_json(r.get(9)?),
    })
}

fn endpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EndpointRow> {
    Ok(EndpointRow {
        container_id: r.get(0)?,
        network_id: r.get(1)?,
        ip: r.get(2)?,
        mac: r.get(3)?,
        aliases: from_json(r.get(4)?),
        ifname: r.get(5)?,
        host_ifname: r.get(6)?,
        default_route: r.get(7)?,
        created: r.get(8)?,
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
            container_name: String::new(),
            active: false,
            port_requests: Vec::new(),
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
            ..Default::default()
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

    /// A database written by the first schema opens, and keeps its rows, under the new one.
    #[test]
    fn version_one_databases_migrate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO networks VALUES ('none', 'n1', 'null', 't')",
                [],
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let nets = store.networks().unwrap();
        assert_eq!(nets[0].id, "n1");
        assert!(nets[0].options.is_empty() && !nets[0].internal);
    }

    /// Containers recorded under the create-to-remove design were live: they migrate
    /// as active, with their endpoints as configs and their ports as requests.
    #[test]
    fn version_two_databases_migrate_as_active() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(MIGRATIONS[1]).unwrap();
            conn.pragma_update(None, "user_version", 2).unwrap();
            conn.execute_batch(
                "INSERT INTO attachments VALUES ('c1', 'bridge', 'bridge', '/run/n/c1', 1, '', 't', 'web');
                 INSERT INTO endpoints VALUES ('c1', 'n1', '172.17.0.2', 'm', '[\"db\"]', 'eth0', 'v', 1, 't');
                 INSERT INTO ports VALUES ('c1', 'tcp', '0.0.0.0', 8080, '172.17.0.2', 80);",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let a = store.attachment("c1").unwrap().unwrap();
        assert!(a.active);
        assert_eq!(
            a.port_requests,
            vec![PortRequest {
                protocol: "tcp".into(),
                host_ip: "0.0.0.0".into(),
                host_port: 8080,
                container_port: 80,
            }]
        );
        let configs = store.configs().unwrap();
        assert_eq!(configs.len(), 1);
        assert_eq!(configs[0].aliases, vec!["db"]);
        assert!(configs[0].ipv4_address.is_empty());
        assert_eq!(store.endpoints().unwrap().len(), 1);
    }

    #[test]
    fn containers_are_recorded_and_forgotten_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("meta.db")).unwrap();
        let mut options = BTreeMap::new();
        options.insert("parent".to_string(), "veth0".to_string());
        let net = NetworkRow {
            name: "appnet".into(),
            id: "n2".into(),
            driver: "macvlan".into(),
            subnet: "10.1.0.0/24".into(),
            gateway: "10.1.0.1".into(),
            internal: true,
            options,
            ..Default::default()
        };
        store.insert_network(&net).unwrap();
        assert!(store.insert_network(&net).is_err(), "names are unique");
        assert_eq!(store.networks().unwrap(), vec![net]);

        let ep = EndpointRow {
            container_id: "c1".into(),
            network_id: "n2".into(),
            ip: "10.1.0.2".into(),
            mac: "02:42:0a:01:00:02".into(),
            aliases: vec!["db".into()],
            ifname: "eth0".into(),
            default_route: true,
            ..Default::default()
        };
        let port = PortRow {
            container_id: "c1".into(),
            protocol: "tcp".into(),
            host_ip: "0.0.0.0".into(),
            host_port: 8080,
            container_ip: "10.1.0.2".into(),
            container_port: 80,
        };
        let link = LinkRow {
            container_id: "c1".into(),
            target_id: "c0".into(),
            name: "web".into(),
            alias: "w".into(),
            ip: String::new(),
        };
        let config = EndpointConfigRow {
            container_id: "c1".into(),
            network_id: "n2".into(),
            aliases: vec!["db".into()],
            ipv4_address: "10.1.0.2".into(),
            ..Default::default()
        };
        let mut c1 = row("c1");
        c1.port_requests = vec![PortRequest {
            protocol: "tcp".into(),
            host_ip: String::new(),
            host_port: 8080,
            container_port: 80,
        }];
        store
            .insert_container(
                &c1,
                std::slice::from_ref(&config),
                std::slice::from_ref(&link),
            )
            .unwrap();
        assert_eq!(store.attachment("c1").unwrap(), Some(c1.clone()));
        assert_eq!(store.configs().unwrap(), vec![config.clone()]);
        store
            .activate(
                "c1",
                std::slice::from_ref(&ep),
                std::slice::from_ref(&port),
                &[("c0".into(), "10.1.0.3".into())],
            )
            .unwrap();
        assert!(store.attachment("c1").unwrap().unwrap().active);
        // The same address twice on one network is refused.
        store.insert_attachment(&row("c2")).unwrap();
        let dup = EndpointRow {
            container_id: "c2".into(),
            ..ep.clone()
        };
        assert!(store.activate("c2", &[dup], &[], &[]).is_err());
        assert!(!store.attachment("c2").unwrap().unwrap().active);
        assert_eq!(store.endpoints().unwrap(), vec![ep]);
        assert_eq!(store.ports().unwrap(), vec![port]);
        assert_eq!(store.links().unwrap()[0].ip, "10.1.0.3");
        // Deactivation keeps the configuration, drops the live state.
        store.deactivate("c1").unwrap();
        assert!(!store.attachment("c1").unwrap().unwrap().active);
        assert!(store.endpoints().unwrap().is_empty() && store.ports().unwrap().is_empty());
        assert_eq!(store.links().unwrap(), vec![link]);
        assert_eq!(store.configs().unwrap(), vec![config]);
        store.delete_attachment("c1").unwrap();
        assert!(store.configs().unwrap().is_empty());
        assert!(store.links().unwrap().is_empty());
    }
}
