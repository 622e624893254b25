//! Volumes and their users, in `<state>/meta.db` (SQLite, WAL); volume data in
//! `<state>/volumes/<name>/_data`.
use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
    sync::Mutex,
    time::SystemTime,
};

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::{
    error::{Error, Result},
    mounts::{self, MountKind, MountSpec, ResolvedMount},
};

pub const LOCAL_DRIVER: &str = "local";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL,
    labels TEXT NOT NULL,
    options TEXT NOT NULL,
    created TEXT NOT NULL,
    anonymous INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS usage (
    container_id TEXT NOT NULL,
    volume_name TEXT NOT NULL,
    PRIMARY KEY (container_id, volume_name)
);
CREATE INDEX IF NOT EXISTS usage_by_volume ON usage (volume_name);
-- The result of PrepareMounts per container, so a second call returns it again.
CREATE TABLE IF NOT EXISTS prepared (
    container_id TEXT PRIMARY KEY,
    mounts TEXT NOT NULL
);
";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub name: String,
    pub driver: String,
    pub mountpoint: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    /// RFC 3339.
    pub created_at: String,
    pub used_by: Vec<String>,
    pub anonymous: bool,
}

#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// Empty: a generated 64-hex name.
    pub name: String,
    /// `local` when empty.
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

pub struct Store {
    root: PathBuf,
    conn: Mutex<Connection>,
}

fn driver_name(driver: &str) -> Result<&'static str> {
    match driver {
        "" | LOCAL_DRIVER => Ok(LOCAL_DRIVER),
        other => Err(Error::UnknownDriver(other.to_string())),
    }
}

/// Directories made while preparing mounts, removed again if the preparation fails.
#[derive(Default)]
struct Undo {
    dirs: Vec<PathBuf>,
    trees: Vec<PathBuf>,
}

impl Undo {
    fn run(self) {
        for tree in self.trees.iter().rev() {
            let _ = fs::remove_dir_all(tree);
        }
        for dir in self.dirs.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Creates `path` and missing parents, recording in `made` the ones it made.
fn create_dirs(path: &Path, made: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut p = Some(path);
    while let Some(dir) = p {
        if dir.exists() {
            break;
        }
        missing.push(dir.to_path_buf());
        p = dir.parent();
    }
    for dir in missing.into_iter().rev() {
        match fs::create_dir(&dir) {
            Ok(()) => made.push(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Store {
    pub fn open(state_dir: &Path) -> Result<Store> {
        let volumes = state_dir.join("volumes");
        fs::create_dir_all(&volumes)
            .map_err(|e| Error::io(format!("create {}", volumes.display()), e))?;
        let conn = Connection::open(state_dir.join("meta.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            root: state_dir.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn volume_dir(&self, name: &str) -> PathBuf {
        self.root.join("volumes").join(name)
    }

    pub fn mountpoint(&self, name: &str) -> PathBuf {
        self.volume_dir(name).join("_data")
    }

    fn read(&self, tx: &Connection, name: &str) -> Result<Option<VolumeInfo>> {
        let row = tx
            .query_row(
                "SELECT driver, labels, options, created, anonymous FROM volumes WHERE name = ?1",
                [name],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, bool>(4)?,
                    ))
                },
            )
            .optional()?;
        let Some((driver, labels, options, created_at, anonymous)) = row else {
            return Ok(None);
        };
        Ok(Some(VolumeInfo {
            name: name.to_string(),
            driver,
            mountpoint: self.mountpoint(name),
            labels: serde_json::from_str(&labels).unwrap_or_default(),
            options: serde_json::from_str(&options).unwrap_or_default(),
            created_at,
            used_by: users(tx, name)?,
            anonymous,
        }))
    }

    /// Makes the volume's directory and row (inside `tx`); returns whether it was new.
    fn create_in(
        &self,
        tx: &Transaction<'_>,
        req: &CreateRequest,
        anonymous: bool,
        undo: &mut Undo,
    ) -> Result<bool> {
        if tx
            .query_row("SELECT 1 FROM volumes WHERE name = ?1", [&req.name], |_| {
                Ok(())
            })
            .optional()?
            .is_some()
        {
            return Ok(false);
        }
        let dir = self.volume_dir(&req.name);
        let existed = dir.exists();
        let data = self.mountpoint(&req.name);
        fs::create_dir_all(&data)
            .map_err(|e| Error::io(format!("create {}", data.display()), e))?;
        if !existed {
            undo.trees.push(dir);
        }
        let created = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        tx.execute(
            "INSERT INTO volumes (name, driver, labels, options, created, anonymous)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                req.name,
                LOCAL_DRIVER,
                serde_json::to_string(&req.labels).expect("labels serialize"),
                serde_json::to_string(&req.options).expect("options serialize"),
                created,
                anonymous
            ],
        )?;
        Ok(true)
    }

    /// Creates a volume; an existing one of the same name is returned as it is.
    pub fn create_volume(&self, mut req: CreateRequest) -> Result<VolumeInfo> {
        driver_name(&req.driver)?;
        if req.name.is_empty() {
            req.name = berth_common::ids::random_id();
        } else {
            mounts::check_volume_name(&req.name)?;
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut undo = Undo::default();
        let res = self.create_in(&tx, &req, false, &mut undo).and_then(|_| {
            let info = self.read(&tx, &req.name)?.expect("volume just created");
            tx.commit()?;
            Ok(info)
        });
        if res.is_err() {
            undo.run();
        }
        res
    }

    pub fn get_volume(&self, name: &str) -> Result<VolumeInfo> {
        let conn = self.conn();
        self.read(&conn, name)?
            .ok_or_else(|| Error::NotFound(name.to_string()))
    }

    pub fn list_volumes(&self) -> Result<Vec<VolumeInfo>> {
        let conn = self.conn();
        let names: Vec<String> = conn
            .prepare("SELECT name FROM volumes ORDER BY name")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        names
            .iter()
            .filter_map(|n| self.read(&conn, n).transpose())
            .collect()
    }

    /// Removes a volume and its data. Refused while a container uses it, even with
    /// `force`; `force` makes an unknown volume succeed.
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let exists = tx
            .query_row("SELECT 1 FROM volumes WHERE name = ?1", [name], |_| Ok(()))
            .optional()?
            .is_some();
        if !exists {
            return if force {
                Ok(())
            } else {
                Err(Error::NotFound(name.to_string()))
            };
        }
        let containers = users(&tx, name)?;
        if !containers.is_empty() {
            return Err(Error::InUse {
                name: name.to_string(),
                containers,
            });
        }
        tx.execute("DELETE FROM volumes WHERE name = ?1", [name])?;
        tx.commit()?;
        let dir = self.volume_dir(name);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove {}", dir.display()), e)),
        }
    }

    /// Validates the container's mount specs, creates missing volumes and bind sources,
    /// records the container's use of its volumes and returns host paths — all or
    /// nothing. A second call for the same container returns the first result.
    pub fn prepare_mounts(
        &self,
        container_id: &str,
        specs: &[MountSpec],
    ) -> Result<Vec<ResolvedMount>> {
        if container_id.is_empty() {
            return Err(Error::InvalidMount("empty container id".to_string()));
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if let Some(json) = tx
            .query_row(
                "SELECT mounts FROM prepared WHERE container_id = ?1",
                [container_id],
                |r| r.get::<_, String>(0),
            )
            .optional()?
        {
            return Ok(serde_json::from_str(&json).unwrap_or_default());
        }
        let specs = mounts::validate(specs)?;
        let mut undo = Undo::default();
        let res = self
            .resolve_all(&tx, container_id, &specs, &mut undo)
            .and_then(|resolved| {
                tx.execute(
                    "INSERT INTO prepared (container_id, mounts) VALUES (?1, ?2)",
                    params![
                        container_id,
                        serde_json::to_string(&resolved).expect("mounts serialize")
                    ],
                )?;
                tx.commit()?;
                Ok(resolved)
            });
        if res.is_err() {
            undo.run();
        }
        res
    }

    fn resolve_all(
        &self,
        tx: &Transaction<'_>,
        container_id: &str,
        specs: &[MountSpec],
        undo: &mut Undo,
    ) -> Result<Vec<ResolvedMount>> {
        let mut out = Vec::with_capacity(specs.len());
        for spec in specs {
            let kind = spec.kind.expect("validated");
            let (source, volume_name) = match kind {
                MountKind::Bind => {
                    let path = PathBuf::from(&spec.source);
                    create_dirs(&path, &mut undo.dirs)
                        .map_err(|e| Error::io(format!("create bind source {}", spec.source), e))?;
                    (spec.source.clone(), String::new())
                }
                MountKind::Volume => {
                    let anonymous = spec.source.is_empty();
                    let name = if anonymous {
                        berth_common::ids::random_id()
                    } else {
                        spec.source.clone()
                    };
                    let req = CreateRequest {
                        name: name.clone(),
                        ..Default::default()
                    };
                    self.create_in(tx, &req, anonymous, undo)?;
                    tx.execute(
                        "INSERT OR IGNORE INTO usage (container_id, volume_name) VALUES (?1, ?2)",
                        params![container_id, name],
                    )?;
                    (self.mountpoint(&name).display().to_string(), name)
                }
                MountKind::Tmpfs => (String::new(), String::new()),
            };
            out.push(ResolvedMount {
                kind,
                source,
                destination: spec.destination.clone(),
                read_only: spec.read_only,
                volume_name,
                options: spec.options.clone(),
            });
        }
        Ok(out)
    }

    /// Forgets the container's use of its volumes; returns its anonymous volumes.
    pub fn release_mounts(&self, container_id: &str) -> Result<Vec<String>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let anonymous: Vec<String> = tx
            .prepare(
                "SELECT u.volume_name FROM usage u JOIN volumes v ON v.name = u.volume_name
                 WHERE u.container_id = ?1 AND v.anonymous ORDER BY u.volume_name",
            )?
            .query_map([container_id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        tx.execute("DELETE FROM usage WHERE container_id = ?1", [container_id])?;
        tx.execute(
            "DELETE FROM prepared WHERE container_id = ?1",
            [container_id],
        )?;
        tx.commit()?;
        Ok(anonymous)
    }
}

fn users(conn: &Connection, name: &str) -> Result<Vec<String>> {
    Ok(conn
        .prepare("SELECT container_id FROM usage WHERE volume_name = ?1 ORDER BY container_id")?
        .query_map([name], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}
