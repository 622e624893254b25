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
    copyup::{self, ImageView},
    driver,
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
    /// Every change goes through this one connection, one at a time.
    conn: Mutex<Connection>,
    /// `get_volume` and `list_volumes` read through their own connection: in WAL mode a
    /// read sees the last commit without waiting for a change in progress (a copy-up can
    /// hold the writer for as long as the image directory takes to copy).
    reader: Mutex<Connection>,
}

fn driver_name(driver: &str) -> Result<&'static str> {
    match driver {
        "" | LOCAL_DRIVER => Ok(LOCAL_DRIVER),
        other => Err(Error::UnknownDriver(other.to_string())),
    }
}

/// What a failed create or preparation made, taken away again: driver mounts first (so
/// removing a tree never reaches through a mount), filled volumes, trees, directories.
#[derive(Default)]
struct Undo {
    dirs: Vec<PathBuf>,
    trees: Vec<PathBuf>,
    mounts: Vec<PathBuf>,
    filled: Vec<PathBuf>,
    /// Names of the volumes made (their rows go with the transaction; reported on success).
    volumes: Vec<String>,
}

impl Undo {
    fn run(self) {
        for m in self.mounts.iter().rev() {
            if let Err(e) = driver::unmount(m) {
                tracing::warn!(path = %m.display(), error = %e, "undo: unmount");
            }
        }
        for dir in &self.filled {
            if let Ok(entries) = fs::read_dir(dir) {
                for entry in entries.flatten() {
                    let p = entry.path();
                    let _ = if p.is_dir() && !p.is_symlink() {
                        fs::remove_dir_all(&p)
                    } else {
                        fs::remove_file(&p)
                    };
                }
            }
        }
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
        let reader = Connection::open(state_dir.join("meta.db"))?;
        reader.pragma_update(None, "query_only", true)?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = Store {
            root: state_dir.to_path_buf(),
            conn: Mutex::new(conn),
            reader: Mutex::new(reader),
        };
        store.reconcile()?;
        Ok(store)
    }

    /// At start: remounts driver-option volumes that are not mounted (after a host
    /// reboot, or a crash between create's mount and commit), and unmounts leftovers of
    /// volumes that have no row (a crash between rm's commit and its unmount).
    fn reconcile(&self) -> Result<()> {
        let conn = self.conn();
        let rows: Vec<(String, String)> = conn
            .prepare("SELECT name, options FROM volumes")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut known = std::collections::HashSet::new();
        for (name, options) in rows {
            let options: BTreeMap<String, String> =
                serde_json::from_str(&options).unwrap_or_default();
            if driver::has_mount(&options) {
                if let Err(e) = self.ensure_mounted(&name, &options) {
                    tracing::warn!(volume = %name, error = %e, "remount at start");
                }
            }
            known.insert(name);
        }
        // Image views of copy-ups a crash interrupted (the failed preparation recorded
        // nothing, so the container's create was undone or will be retried).
        if let Ok(views) = fs::read_dir(self.root.join("copyup")) {
            for view in views.flatten() {
                match driver::unmount(&view.path()) {
                    Ok(()) => {
                        let _ = fs::remove_dir(view.path());
                    }
                    Err(e) => {
                        tracing::warn!(path = %view.path().display(), error = %e, "unmount leftover image view")
                    }
                }
            }
        }
        let dir = self.root.join("volumes");
        let entries =
            fs::read_dir(&dir).map_err(|e| Error::io(format!("read {}", dir.display()), e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if known.contains(&name) {
                continue;
            }
            let data = self.mountpoint(&name);
            match driver::unmount(&data) {
                Ok(()) => {
                    tracing::info!(volume = %name, "removing the leftover of a removed volume");
                    let _ = fs::remove_dir_all(entry.path());
                }
                Err(e) => tracing::warn!(volume = %name, error = %e, "unmount leftover"),
            }
        }
        Ok(())
    }

    /// Mounts a driver-option volume's filesystem unless it is already mounted; returns
    /// whether it mounted it.
    fn ensure_mounted(&self, name: &str, options: &BTreeMap<String, String>) -> Result<bool> {
        let data = self.mountpoint(name);
        if driver::is_mountpoint(&data).map_err(|e| Error::io("read mountinfo", e))? {
            return Ok(false);
        }
        driver::mount_options(options, &data).map_err(|source| Error::Mount {
            name: name.to_string(),
            source,
        })?;
        Ok(true)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
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
        mounts::check_driver_options(&req.options)?;
        let dir = self.volume_dir(&req.name);
        let existed = dir.exists();
        let data = self.mountpoint(&req.name);
        fs::create_dir_all(&data)
            .map_err(|e| Error::io(format!("create {}", data.display()), e))?;
        if !existed {
            undo.trees.push(dir);
        }
        if driver::has_mount(&req.options) && self.ensure_mounted(&req.name, &req.options)? {
            undo.mounts.push(data);
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
        let conn = self.reader();
        self.read(&conn, name)?
            .ok_or_else(|| Error::NotFound(name.to_string()))
    }

    /// Every volume matching `filters` (see [`Filters`]), by name.
    pub fn list_volumes(&self, filters: &[String]) -> Result<Vec<VolumeInfo>> {
        let filters = Filters::parse(filters)?;
        let mut reader = self.reader();
        // One snapshot for both tables.
        let conn = reader.transaction()?;
        // One pass over each table: `volume ls` with thousands of volumes stays one query each.
        let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut stmt =
            conn.prepare("SELECT volume_name, container_id FROM usage ORDER BY container_id")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (v, c) = row?;
            used.entry(v).or_default().push(c);
        }
        let mut stmt = conn.prepare(
            "SELECT name, driver, labels, options, created, anonymous FROM volumes ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, bool>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, driver, labels, options, created_at, anonymous) = row?;
            let info = VolumeInfo {
                mountpoint: self.mountpoint(&name),
                used_by: used.remove(&name).unwrap_or_default(),
                name,
                driver,
                labels: serde_json::from_str(&labels).unwrap_or_default(),
                options: serde_json::from_str(&options).unwrap_or_default(),
                created_at,
                anonymous,
            };
            if filters.matches(&info) {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// Removes a volume and its data. Refused while a container uses it, even with
    /// `force`; `force` makes an unknown volume succeed.
    /// Removes unused volumes matching `filters` (label filters only), anonymous ones only
    /// unless `all`. A volume taken into use or removed since the listing is skipped.
    /// Returns the removed names and the bytes their files took.
    pub fn prune_volumes(&self, filters: &[String], all: bool) -> Result<(Vec<String>, u64)> {
        if let Some(bad) = filters
            .iter()
            .find(|f| !(f.starts_with("label=") || f.starts_with("label!=")))
        {
            return Err(Error::InvalidFilter(format!(
                "{bad}: volume prune takes label=KEY[=VALUE] and label!=KEY[=VALUE]"
            )));
        }
        let mut filters = filters.to_vec();
        filters.push("dangling=true".into());
        if !all {
            filters.push("anonymous=true".into());
        }
        let mut deleted = Vec::new();
        let mut reclaimed = 0;
        for volume in self.list_volumes(&filters)? {
            let size = disk_usage(&volume.mountpoint);
            match self.remove_volume(&volume.name, false) {
                Ok(_) => {
                    reclaimed += size;
                    deleted.push(volume.name);
                }
                Err(Error::InUse { .. } | Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((deleted, reclaimed))
    }

    /// Returns whether there was a volume to remove (false: absent, and `force`).
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let exists = tx
            .query_row("SELECT 1 FROM volumes WHERE name = ?1", [name], |_| Ok(()))
            .optional()?
            .is_some();
        if !exists {
            return if force {
                Ok(false)
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
        // Unmounted before the row goes: a failure keeps the volume whole, and the tree
        // removal below can never reach through a mount into other data.
        let data = self.mountpoint(name);
        driver::unmount(&data).map_err(|e| Error::io(format!("unmount {}", data.display()), e))?;
        tx.execute("DELETE FROM volumes WHERE name = ?1", [name])?;
        tx.commit()?;
        let dir = self.volume_dir(name);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(Error::io(format!("remove {}", dir.display()), e)),
        }
    }

    /// Validates the container's mount specs, creates missing volumes and bind sources,
    /// records the container's use of its volumes and returns host paths — all or
    /// nothing. A second call for the same container returns the first result.
    /// `lower_dirs` (the image's layers, topmost first) fill empty volumes (copy-up) and
    /// catch a bind of a file over an image directory or the reverse.
    pub fn prepare_mounts(
        &self,
        container_id: &str,
        specs: &[MountSpec],
        lower_dirs: &[PathBuf],
    ) -> Result<Vec<ResolvedMount>> {
        Ok(self
            .prepare_mounts_reporting(container_id, specs, lower_dirs)?
            .0)
    }

    /// [`Store::prepare_mounts`], and the names of the volumes it created (none when the
    /// container's mounts were prepared before).
    pub fn prepare_mounts_reporting(
        &self,
        container_id: &str,
        specs: &[MountSpec],
        lower_dirs: &[PathBuf],
    ) -> Result<(Vec<ResolvedMount>, Vec<String>)> {
        // The ID names a scratch directory (the copy-up view): no path separators.
        if container_id.is_empty()
            || container_id.starts_with('.')
            || !container_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(Error::InvalidMount(format!(
                "invalid container id {container_id:?}"
            )));
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
            return Ok((serde_json::from_str(&json).unwrap_or_default(), Vec::new()));
        }
        let specs = mounts::validate(specs)?;
        let mut undo = Undo::default();
        let mut image = ImageView::new(
            lower_dirs.to_vec(),
            self.root.join("copyup").join(container_id),
        );
        let res = self
            .resolve_all(&tx, container_id, &specs, &mut image, &mut undo)
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
        match res {
            Ok(resolved) => Ok((resolved, undo.volumes)),
            Err(e) => {
                undo.run();
                Err(e)
            }
        }
    }

    fn resolve_all(
        &self,
        tx: &Transaction<'_>,
        container_id: &str,
        specs: &[MountSpec],
        image: &mut ImageView,
        undo: &mut Undo,
    ) -> Result<Vec<ResolvedMount>> {
        let mut out = Vec::with_capacity(specs.len());
        for spec in specs {
            let Some(kind) = spec.kind else {
                return Err(Error::InvalidMount(format!(
                    "invalid mount config for {:?}: mount type unspecified",
                    spec.destination
                )));
            };
            let options = mounts::runtime_options(kind, spec)?;
            let (source, volume_name) = match kind {
                MountKind::Bind => {
                    self.bind_source(spec, image, undo)?;
                    (spec.source.clone(), String::new())
                }
                MountKind::Volume => {
                    let name = self.volume_for(tx, container_id, spec, image, undo)?;
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
                options,
            });
        }
        Ok(out)
    }

    /// Checks a bind's source (must exist for `--mount`; made as a directory for `-v`) and
    /// that it is the same kind (file or directory) as what the image has at the target.
    fn bind_source(&self, spec: &MountSpec, image: &mut ImageView, undo: &mut Undo) -> Result<()> {
        let path = PathBuf::from(&spec.source);
        let meta = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if spec.require_source {
                    return Err(Error::InvalidMount(format!(
                        "invalid mount config for type \"bind\": bind source path does not exist: {}",
                        spec.source
                    )));
                }
                create_dirs(&path, &mut undo.dirs)
                    .map_err(|e| Error::io(format!("create bind source {}", spec.source), e))?;
                fs::metadata(&path)
                    .map_err(|e| Error::io(format!("bind source {}", spec.source), e))?
            }
            Err(e) => return Err(Error::io(format!("bind source {}", spec.source), e)),
        };
        if let Some((_, target)) = image.lookup(&spec.destination)? {
            let what = |dir: bool| if dir { "a directory" } else { "a file" };
            if meta.is_dir() != target.is_dir() {
                return Err(Error::InvalidMount(format!(
                    "invalid mount config for type \"bind\": source {} is {} but {} in the image is {}",
                    spec.source,
                    what(meta.is_dir()),
                    spec.destination,
                    what(target.is_dir())
                )));
            }
        }
        Ok(())
    }

    /// Creates the spec's volume if missing (anonymous: a new name), records the
    /// container's use, and fills it from the image when it is empty (unless `nocopy`).
    fn volume_for(
        &self,
        tx: &Transaction<'_>,
        container_id: &str,
        spec: &MountSpec,
        image: &mut ImageView,
        undo: &mut Undo,
    ) -> Result<String> {
        let anonymous = spec.source.is_empty();
        let name = if anonymous {
            berth_common::ids::random_id()
        } else {
            spec.source.clone()
        };
        let req = CreateRequest {
            name: name.clone(),
            driver: String::new(),
            labels: spec.volume_labels.clone(),
            options: spec.volume_options.clone(),
        };
        if self.create_in(tx, &req, anonymous, undo)? {
            undo.volumes.push(name.clone());
        } else {
            // An existing driver-option volume whose mount went away (host reboot).
            let options = self.read(tx, &name)?.map(|v| v.options).unwrap_or_default();
            if driver::has_mount(&options) && self.ensure_mounted(&name, &options)? {
                undo.mounts.push(self.mountpoint(&name));
            }
        }
        tx.execute(
            "INSERT OR IGNORE INTO usage (container_id, volume_name) VALUES (?1, ?2)",
            params![container_id, name],
        )?;
        let data = self.mountpoint(&name);
        if !spec.options.iter().any(|o| o == "nocopy") && copyup::is_empty_dir(&data)? {
            if let Some((src, meta)) = image.lookup(&spec.destination)? {
                if meta.is_dir() {
                    undo.filled.push(data.clone());
                    copyup::copy_dir(&src, &data)?;
                    tracing::info!(volume = %name, destination = %spec.destination, "copied up from the image");
                }
            }
        }
        Ok(name)
    }

    /// The volumes `container_id` uses, by name.
    pub fn volumes_of(&self, container_id: &str) -> Result<Vec<String>> {
        Ok(self
            .reader()
            .prepare("SELECT volume_name FROM usage WHERE container_id = ?1 ORDER BY volume_name")?
            .query_map([container_id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
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

/// `volume ls -f` filters: all keys must match; several values of one key match when
/// any of them does (Docker's rule).
#[derive(Debug, Default)]
struct Filters {
    dangling: Option<bool>,
    anonymous: Option<bool>,
    labels: Vec<(String, Option<String>)>,
    not_labels: Vec<(String, Option<String>)>,
    names: Vec<String>,
    drivers: Vec<String>,
}

fn parse_bool(filter: &str, v: &str) -> Result<bool> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(Error::InvalidFilter(filter.to_string())),
    }
}

impl Filters {
    fn parse(filters: &[String]) -> Result<Filters> {
        let mut f = Filters::default();
        for filter in filters {
            let label = |v: &str| match v.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (v.to_string(), None),
            };
            // `label!=` before `label=`: the key of the first is `label!`.
            if let Some(v) = filter.strip_prefix("label!=") {
                f.not_labels.push(label(v));
                continue;
            }
            let Some((key, value)) = filter.split_once('=') else {
                return Err(Error::InvalidFilter(filter.clone()));
            };
            match key {
                "dangling" => f.dangling = Some(parse_bool(filter, value)?),
                "anonymous" => f.anonymous = Some(parse_bool(filter, value)?),
                "label" => f.labels.push(label(value)),
                "name" => f.names.push(value.to_string()),
                "driver" => f.drivers.push(value.to_string()),
                _ => return Err(Error::InvalidFilter(filter.clone())),
            }
        }
        Ok(f)
    }

    fn matches(&self, v: &VolumeInfo) -> bool {
        let has = |(k, val): &(String, Option<String>)| {
            v.labels
                .get(k)
                .is_some_and(|got| val.as_ref().is_none_or(|want| want == got))
        };
        self.dangling.is_none_or(|d| d == v.used_by.is_empty())
            && self.anonymous.is_none_or(|a| a == v.anonymous)
            && self.labels.iter().all(has)
            && !self.not_labels.iter().any(has)
            && (self.names.is_empty() || self.names.iter().any(|n| v.name.contains(n.as_str())))
            && (self.drivers.is_empty() || self.drivers.contains(&v.driver))
    }
}

/// Bytes of the regular files under `dir` (symlinks not followed).
fn disk_usage(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_usage(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{sync::Arc, time::Duration};

    #[test]
    fn reads_do_not_wait_for_a_change_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        store
            .create_volume(CreateRequest {
                name: "kept".into(),
                driver: String::new(),
                labels: BTreeMap::new(),
                options: BTreeMap::new(),
            })
            .unwrap();
        // A change in progress (as a long copy-up holds it): uncommitted.
        let mut writer = store.conn();
        let tx = writer.transaction().unwrap();
        tx.execute("DELETE FROM volumes WHERE name = 'kept'", [])
            .unwrap();
        let (done, answer) = std::sync::mpsc::channel();
        let reading = store.clone();
        std::thread::spawn(move || {
            let listed = reading.list_volumes(&[]).map(|v| v.len()).ok();
            let found = reading.get_volume("kept").is_ok();
            let _ = done.send((listed, found));
        });
        let (listed, found) = answer
            .recv_timeout(Duration::from_secs(3))
            .expect("reads waited for the change in progress");
        // They see the last commit.
        assert_eq!(listed, Some(1));
        assert!(found);
        tx.commit().unwrap();
        drop(writer);
        assert!(store.get_volume("kept").is_err());
        assert!(store.list_volumes(&[]).unwrap().is_empty());
    }
}
