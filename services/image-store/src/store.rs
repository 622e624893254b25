//! The image store's logic: blobs, images, tags, layer snapshots and writable snapshots,
//! independent of gRPC (the `service` module only translates).
//!
//! Layout under the state dir:
//! ```text
//! blobs/sha256/<hex>                     config and layer blobs, content-addressed
//! snapshots/committed/<n>/fs             one unpacked dir per layer chain (overlay lower);
//!                                        short numbers keep `lowerdir=` within a page
//! snapshots/active/<key>/{upper,work}    containers' writable layers
//! tmp/                                   uploads, staging and half-made dirs (emptied on open)
//! meta.db                                SQLite (WAL): see `db::MIGRATIONS`
//! ```
//! Crash safety: files and dirs are made under `tmp/` and renamed into place, the database
//! commit comes last, and `open` removes temp files and anything the database does not
//! reference.
use std::{
    collections::{HashMap, HashSet},
    fs, io,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::SystemTime,
};

use berth_common::ids::{random_id, short_id};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::{
    config::{apply_change, is_digest, ConfigDoc},
    db,
    error::{Error, Result},
    reference::{is_sha256_hex, Reference},
    unpack::{self, remove_tree, HashingReader},
};

/// An image as the API shows it.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub created: String,
    pub size: i64,
    pub config: ConfigDoc,
    /// Diff IDs, base layer first.
    pub layers: Vec<String>,
    pub config_json: Vec<u8>,
}

/// The overlay mounts of a writable snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounts {
    pub key: String,
    pub image_id: String,
    /// Topmost first.
    pub lower_dirs: Vec<PathBuf>,
    pub upper_dir: PathBuf,
    pub work_dir: PathBuf,
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub reference: String,
    pub changes: Vec<String>,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// The image the reference named.
    pub image_id: String,
    pub untagged: Vec<String>,
    pub deleted: Vec<String>,
}

pub struct Store {
    root: PathBuf,
    conn: Mutex<Connection>,
    /// Serializes every operation that writes (files or rows).
    write: Mutex<()>,
    /// Layer chains running pulls rely on; deletions keep them (see [`Lease`]).
    leases: Arc<LeaseSet>,
    /// An exclusive `flock` on `<root>/lock`: one store process per state dir.
    _lock: fs::File,
}

/// A snapshot row made by the current operation, inserted at commit.
#[derive(Debug, Clone)]
struct NewSnapshot {
    chain_id: String,
    diff_id: String,
    parent: Option<String>,
    blob: String,
    /// The dir's name under snapshots/committed.
    dir: String,
    size: i64,
}

/// What an operation made on disk before its commit; removed unless committed.
#[derive(Default)]
struct Op {
    created: Vec<PathBuf>,
    snapshots: Vec<NewSnapshot>,
}

impl Op {
    fn snapshot(&self, chain: &str) -> Option<&NewSnapshot> {
        self.snapshots.iter().find(|s| s.chain_id == chain)
    }

    fn rollback(&mut self) {
        for p in self.created.drain(..).rev() {
            if let Err(e) = remove_any(&p) {
                tracing::warn!(path = %p.display(), error = %e, "rollback");
            }
        }
    }
}

/// A path under tmp/ (file or dir) removed when dropped unless kept.
pub struct TempPath(Option<PathBuf>);

impl TempPath {
    pub fn new(path: PathBuf) -> TempPath {
        TempPath(Some(path))
    }
    pub fn path(&self) -> &Path {
        self.0.as_deref().expect("temp path")
    }
    fn keep(mut self) -> PathBuf {
        self.0.take().expect("temp path")
    }
}

/// A layer a pull has downloaded and unpacked under tmp/, its blob checked against the
/// manifest's digest and its tar stream against the config's diff ID (both hashed once,
/// while streaming). [`Store::commit_pulled`] renames both into place; dropping it removes
/// them.
pub struct PulledLayer {
    /// The blob as the registry sent it (kept: `save` and `push` hand it out unchanged).
    pub blob: TempPath,
    /// The unpacked layer: a dir whose `fs` becomes the snapshot.
    pub snapshot: TempPath,
    pub diff_id: String,
    /// Bytes of regular file content.
    pub size: u64,
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = remove_any(&p);
        }
    }
}

/// A layer to bring into the store.
struct LayerSource<'a> {
    file: &'a Path,
    /// The blob's digest as the manifest names it (verified), if any.
    blob_digest: Option<String>,
    /// The diff ID from the image config (verified after unpacking), if known.
    diff_id: Option<String>,
    what: String,
}

/// One image found in an uploaded archive.
struct Candidate {
    config: Vec<u8>,
    layers: Vec<(PathBuf, Option<String>)>,
    tags: Vec<String>,
}

impl Store {
    /// Opens (creating if needed) the store at `root`, clearing leftovers of a crash.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        for dir in [
            "blobs/sha256",
            "snapshots/committed",
            "snapshots/active",
            "tmp",
        ] {
            let d = root.join(dir);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .map_err(Error::io("create", &d))?;
        }
        let lock = lock_root(&root)?;
        mark_top_dir(&root.join("tmp"));
        // Mounts hand out absolute paths.
        let root = fs::canonicalize(&root).map_err(Error::io("resolve", &root))?;
        let db_path = root.join("meta.db");
        let mut conn = Connection::open(&db_path)?;
        db::configure(&conn)?;
        db::migrate(&mut conn)?;
        let store = Store {
            root,
            conn: Mutex::new(conn),
            write: Mutex::new(()),
            leases: Arc::default(),
            _lock: lock,
        };
        store.recover()?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where uploads are spooled (same filesystem as the store, emptied on open).
    pub fn temp_path(&self, prefix: &str) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{prefix}-{}", &random_id()[..16]))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.root
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap_or(digest))
    }

    fn committed_dir(&self, dir: &str) -> PathBuf {
        self.root.join("snapshots/committed").join(dir)
    }

    /// The next free snapshot dir number (under the write lock).
    fn next_snapshot_dir(&self, op: &Op) -> Result<String> {
        let max_db: i64 = self.conn().query_row(
            "SELECT COALESCE(MAX(CAST(dir AS INTEGER)), 0) FROM snapshots",
            [],
            |r| r.get(0),
        )?;
        let max_op = op
            .snapshots
            .iter()
            .filter_map(|s| s.dir.parse::<i64>().ok())
            .max()
            .unwrap_or(0);
        Ok((max_db.max(max_op) + 1).to_string())
    }

    fn active_dir(&self, key: &str) -> PathBuf {
        self.root.join("snapshots/active").join(key)
    }

    /// Removes temp files and whatever on disk the database does not reference.
    fn recover(&self) -> Result<()> {
        let _w = self.write_lock();
        let tmp = self.root.join("tmp");
        for entry in read_dir(&tmp)? {
            remove_any(&entry)?;
        }
        // Snapshots no image uses were kept for a pull that never finished (no lease
        // survives a restart): their rows go here, their files with the sweep below.
        let orphans = self.delete_orphan_rows()?;
        if !orphans.is_empty() {
            tracing::info!(
                count = orphans.len(),
                "removing layers left by an unfinished pull"
            );
        }
        let conn = self.conn();
        let strings = |sql: &str| -> Result<HashSet<String>> {
            let mut stmt = conn.prepare(sql)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        };
        let hex = |s: &String| s.strip_prefix("sha256:").unwrap_or(s).to_string();
        let dirs = strings("SELECT dir FROM snapshots")?;
        let mut blobs: HashSet<String> =
            strings("SELECT id FROM images")?.iter().map(hex).collect();
        blobs.extend(strings("SELECT blob FROM snapshots")?.iter().map(hex));
        blobs.extend(strings("SELECT gzip FROM push_blobs")?.iter().map(hex));
        let keys = strings("SELECT key FROM active_snapshots")?;
        drop(conn);
        let sweep = |dir: &str, keep: &HashSet<String>| -> Result<()> {
            for p in read_dir(&self.root.join(dir))? {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if !keep.contains(&name) {
                    tracing::info!(path = %p.display(), "removing unreferenced leftover");
                    remove_any(&p)?;
                }
            }
            Ok(())
        };
        sweep("snapshots/committed", &dirs)?;
        sweep("blobs/sha256", &blobs)?;
        sweep("snapshots/active", &keys)?;
        Ok(())
    }

    // ---- images -------------------------------------------------------------------------

    /// A rootfs tarball (gzip or plain) at `file` becomes a one-layer image.
    pub fn import_image(&self, file: &Path, opts: &ImportOptions) -> Result<ImageInfo> {
        let tag = if opts.reference.is_empty() {
            None
        } else {
            Some(tag_reference(&opts.reference)?)
        };
        let mut config = Map::new();
        for change in &opts.changes {
            apply_change(&mut config, change)?;
        }
        let _w = self.write_lock();
        let mut op = Op::default();
        let result = (|| {
            let layer = self.ensure_layer(
                LayerSource {
                    file,
                    blob_digest: None,
                    diff_id: None,
                    what: "imported layer".into(),
                },
                None,
                &mut op,
            )?;
            let now = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
            let comment = if opts.message.is_empty() {
                "Imported from -".to_string()
            } else {
                opts.message.clone()
            };
            let mut doc = json!({
                "architecture": "amd64",
                "os": "linux",
                "created": now,
                "config": Value::Object(config),
                "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
                "history": [{"created": now, "created_by": "berth import", "comment": comment}],
            });
            if !opts.message.is_empty() {
                doc["comment"] = Value::String(opts.message.clone());
            }
            let config_json =
                serde_json::to_vec(&doc).map_err(|e| Error::Internal(e.to_string()))?;
            let id = self.commit_image(
                &config_json,
                &[layer.chain_id],
                tag.iter().cloned().collect(),
                &mut op,
            )?;
            Ok(id)
        })();
        match result {
            Ok(id) => self.get_image(&id),
            Err(e) => {
                op.rollback();
                Err(e)
            }
        }
    }

    /// A docker-archive or OCI image layout tarball at `file`: every image in it is stored,
    /// or none is.
    pub fn load_images(&self, file: &Path) -> Result<Vec<ImageInfo>> {
        let staging = TempPath(Some(self.temp_path("load")));
        fs::create_dir(staging.path()).map_err(Error::io("create", staging.path()))?;
        let archive = Staged::unpack(file, staging.path())?;
        let candidates = if archive.has("manifest.json") {
            archive.docker_archive()?
        } else if archive.has("index.json") {
            archive.oci_layout()?
        } else {
            return Err(Error::InvalidArchive(
                "neither a docker-archive (manifest.json) nor an OCI image layout (index.json)"
                    .into(),
            ));
        };
        if candidates.is_empty() {
            return Err(Error::InvalidArchive("the archive holds no image".into()));
        }
        let _w = self.write_lock();
        let mut op = Op::default();
        let result = (|| {
            let mut ids = Vec::new();
            for c in &candidates {
                let doc = ConfigDoc::parse(&c.config)?;
                if doc.rootfs.diff_ids.len() != c.layers.len() {
                    return Err(Error::InvalidArchive(format!(
                        "image config lists {} layers but the manifest has {}",
                        doc.rootfs.diff_ids.len(),
                        c.layers.len()
                    )));
                }
                let mut chains = Vec::new();
                let mut parent: Option<String> = None;
                for (i, ((file, blob_digest), diff_id)) in
                    c.layers.iter().zip(&doc.rootfs.diff_ids).enumerate()
                {
                    let layer = self.ensure_layer(
                        LayerSource {
                            file,
                            blob_digest: blob_digest.clone(),
                            diff_id: Some(diff_id.clone()),
                            what: format!("layer {} ({diff_id})", i + 1),
                        },
                        parent.as_deref(),
                        &mut op,
                    )?;
                    parent = Some(layer.chain_id.clone());
                    chains.push(layer.chain_id);
                }
                ids.push(self.commit_prepare(&c.config, chains, c.tags.clone(), &mut op)?);
            }
            self.commit(&mut op, &ids)?;
            Ok(ids.into_iter().map(|p| p.id).collect::<Vec<_>>())
        })();
        match result {
            Ok(ids) => {
                let mut seen = HashSet::new();
                ids.iter()
                    .filter(|id| seen.insert(id.to_string()))
                    .map(|id| self.get_image(id))
                    .collect()
            }
            Err(e) => {
                op.rollback();
                Err(e)
            }
        }
    }

    /// Brings one layer into the store (unpacking it unless its chain is already there).
    /// The blob is read once: its digest is computed while it is unpacked (or, for a
    /// chain here already, only the digest that checks it).
    fn ensure_layer(
        &self,
        src: LayerSource<'_>,
        parent: Option<&str>,
        op: &mut Op,
    ) -> Result<NewSnapshot> {
        let mismatch = |expected: &String, actual: String| Error::DigestMismatch {
            what: src.what.clone(),
            expected: expected.clone(),
            actual,
        };
        let chain_of = |diff: &str| match parent {
            None => diff.to_string(),
            Some(p) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{p} {diff}").as_bytes()))
            ),
        };
        if let Some(diff) = &src.diff_id {
            let chain = chain_of(diff);
            if let Some(existing) = self.existing_snapshot(&chain, op)? {
                if let Some(expected) = &src.blob_digest {
                    let blob = file_digest(src.file)?;
                    if *expected != blob {
                        return Err(mismatch(expected, blob));
                    }
                } else {
                    // Nothing names the blob: check its content against the diff ID.
                    let f = fs::File::open(src.file).map_err(Error::io("open", src.file))?;
                    let (actual, _) = HashingReader::new(unpack::decompressed(f)?)
                        .finish()
                        .map_err(|e| Error::InvalidArchive(format!("read {}: {e}", src.what)))?;
                    if actual != *diff {
                        return Err(mismatch(diff, actual));
                    }
                }
                return Ok(existing);
            }
        }
        let f = fs::File::open(src.file).map_err(Error::io("open", src.file))?;
        let mut blob_reader = HashingReader::new(f);
        let unpacked = self.unpack_to_temp(&mut blob_reader);
        // The rest of the blob (after the tar's end), then its digest: a blob that is not
        // the one named is reported as such, before whatever unpacking it said.
        let (blob, _) = blob_reader.finish().map_err(Error::io("read", src.file))?;
        if let Some(expected) = &src.blob_digest {
            if *expected != blob {
                return Err(mismatch(expected, blob));
            }
        }
        let (tmp, unpacked) = unpacked?;
        if let Some(diff) = &src.diff_id {
            if unpacked.diff_id != *diff {
                return Err(mismatch(diff, unpacked.diff_id));
            }
        }
        let chain = chain_of(&unpacked.diff_id);
        if let Some(existing) = self.existing_snapshot(&chain, op)? {
            return Ok(existing); // an import of a layer the store already has
        }
        let blob_path = self.blob_path(&blob);
        if !blob_path.exists() {
            self.store_blob(src.file, &blob_path)?;
            op.created.push(blob_path);
        }
        self.place_snapshot(tmp, chain, unpacked, parent, blob, op)
    }

    /// Unpacks the layer blob `reader` (gzip, zstd or plain tar) into a new dir under
    /// tmp/ (its `fs` subdir), for [`Store::commit_pulled`] or `ensure_layer` to rename
    /// into place. Needs no lock: nothing outside tmp/ is touched.
    pub fn unpack_to_temp<R: io::Read>(&self, reader: R) -> Result<(TempPath, unpack::Unpacked)> {
        let tmp = TempPath(Some(self.temp_path("snapshot")));
        let fs_dir = tmp.path().join("fs");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&fs_dir)
            .map_err(Error::io("create", &fs_dir))?;
        let unpacked = unpack::unpack_layer(reader, &fs_dir)?;
        Ok((tmp, unpacked))
    }

    /// Puts the (complete, verified) file `src` at `dest`: hard-linked when it is one of
    /// our own temp files (an upload), copied through a temp file otherwise. Not synced
    /// here: `commit` flushes the filesystem once before the rows that name it.
    fn store_blob(&self, src: &Path, dest: &Path) -> Result<()> {
        if src.starts_with(self.root.join("tmp")) && fs::hard_link(src, dest).is_ok() {
            return Ok(());
        }
        let tmp = TempPath(Some(self.temp_path("blob")));
        fs::copy(src, tmp.path()).map_err(Error::io("copy", src))?;
        fs::rename(tmp.path(), dest).map_err(Error::io("rename into place", dest))?;
        tmp.keep();
        Ok(())
    }

    /// Renames an unpacked layer dir (made by `unpack_to_temp`) into snapshots/committed
    /// as the snapshot of `chain`, recorded in `op` (inserted at commit, removed on
    /// rollback).
    fn place_snapshot(
        &self,
        tmp: TempPath,
        chain: String,
        unpacked: unpack::Unpacked,
        parent: Option<&str>,
        blob: String,
        op: &mut Op,
    ) -> Result<NewSnapshot> {
        let dir = self.next_snapshot_dir(op)?;
        let dest = self.committed_dir(&dir);
        if fs::symlink_metadata(&dest).is_ok() {
            remove_any(&dest)?; // unreferenced leftover
        }
        fs::rename(tmp.path(), &dest).map_err(Error::io("rename into place", &dest))?;
        tmp.keep();
        op.created.push(dest);
        let snap = NewSnapshot {
            chain_id: chain,
            diff_id: unpacked.diff_id,
            parent: parent.map(str::to_string),
            blob,
            dir,
            size: i64::try_from(unpacked.size).unwrap_or(i64::MAX),
        };
        op.snapshots.push(snap.clone());
        Ok(snap)
    }

    fn existing_snapshot(&self, chain: &str, op: &Op) -> Result<Option<NewSnapshot>> {
        if let Some(s) = op.snapshot(chain) {
            return Ok(Some(s.clone()));
        }
        let conn = self.conn();
        Ok(conn
            .query_row(
                "SELECT chain_id, diff_id, parent, blob, dir, size FROM snapshots WHERE chain_id = ?1",
                [chain],
                |r| {
                    Ok(NewSnapshot {
                        chain_id: r.get(0)?,
                        diff_id: r.get(1)?,
                        parent: r.get(2)?,
                        blob: r.get(3)?,
                        dir: r.get(4)?,
                        size: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }

    /// Writes the config blob and returns what `commit` inserts for one image.
    fn commit_prepare(
        &self,
        config: &[u8],
        chains: Vec<String>,
        tags: Vec<String>,
        op: &mut Op,
    ) -> Result<PendingImage> {
        let id = format!("sha256:{}", hex::encode(Sha256::digest(config)));
        let path = self.blob_path(&id);
        if !path.exists() {
            let tmp = TempPath(Some(self.temp_path("blob")));
            fs::write(tmp.path(), config).map_err(Error::io("write", tmp.path()))?;
            fs::rename(tmp.path(), &path).map_err(Error::io("rename into place", &path))?;
            tmp.keep();
            op.created.push(path);
        }
        let doc = ConfigDoc::parse(config)?;
        Ok(PendingImage {
            id,
            config: config.to_vec(),
            created: doc.created.clone(),
            chains,
            tags,
        })
    }

    fn commit_image(
        &self,
        config: &[u8],
        chains: &[String],
        tags: Vec<String>,
        op: &mut Op,
    ) -> Result<String> {
        let pending = self.commit_prepare(config, chains.to_vec(), tags, op)?;
        let id = pending.id.clone();
        self.commit(op, &[pending])?;
        Ok(id)
    }

    /// Inserts the operation's snapshots and images in one transaction, after flushing the
    /// files they name to disk: the one durability point of an operation (blobs, config
    /// and unpacked files are not synced one by one).
    fn commit(&self, op: &mut Op, images: &[PendingImage]) -> Result<()> {
        syncfs(&self.root)?;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for s in &op.snapshots {
            tx.execute(
                "INSERT OR IGNORE INTO snapshots (chain_id, diff_id, parent, blob, dir, size)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![s.chain_id, s.diff_id, s.parent, s.blob, s.dir, s.size],
            )?;
        }
        let now = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
        for img in images {
            let exists: bool = tx
                .query_row("SELECT 1 FROM images WHERE id = ?1", [&img.id], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                let mut size = 0i64;
                for c in &img.chains {
                    size +=
                        tx.query_row("SELECT size FROM snapshots WHERE chain_id = ?1", [c], |r| {
                            r.get::<_, i64>(0)
                        })?;
                }
                tx.execute(
                    "INSERT INTO images (id, config, created, size, loaded_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![img.id, img.config, img.created.clone().unwrap_or_else(|| now.clone()), size, now],
                )?;
                for (i, c) in img.chains.iter().enumerate() {
                    tx.execute(
                        "INSERT INTO image_layers (image_id, idx, chain_id) VALUES (?1, ?2, ?3)",
                        params![img.id, i as i64, c],
                    )?;
                }
            }
            for tag in &img.tags {
                tx.execute(
                    "INSERT OR REPLACE INTO tags (reference, image_id) VALUES (?1, ?2)",
                    params![tag, img.id],
                )?;
            }
        }
        tx.commit()?;
        op.created.clear();
        op.snapshots.clear();
        Ok(())
    }

    // ---- registry support ---------------------------------------------------------------

    /// Whether the layer chain is unpacked already.
    pub fn has_chain(&self, chain: &str) -> Result<bool> {
        Ok(self.existing_snapshot(chain, &Op::default())?.is_some())
    }

    /// Holds `chains` (layer chain IDs) until the lease is dropped: `rmi`, prune and every
    /// other deletion keep their snapshots and blobs, so a pull that found a layer present
    /// can still use it when it commits. A snapshot kept this way and no longer used is
    /// removed by [`Store::collect_orphans`] (the pull calls it when done) or at the next
    /// open.
    pub fn lease(&self, chains: impl IntoIterator<Item = String>) -> Lease {
        let keys: Vec<String> = chains.into_iter().collect();
        let mut held = self.leases.lock();
        for k in &keys {
            *held.entry(k.clone()).or_default() += 1;
        }
        Lease {
            set: self.leases.clone(),
            keys,
        }
    }

    /// Whether a deletion kept a leased snapshot since the last collection.
    pub fn has_orphans(&self) -> bool {
        self.leases
            .deferred
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Removes the snapshots no image uses and no lease holds (kept for a pull that has
    /// finished or failed since). Returns the chain IDs removed.
    pub fn collect_orphans(&self) -> Result<Vec<String>> {
        let _w = self.write_lock();
        self.leases
            .deferred
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let gone = self.delete_orphan_rows()?;
        let mut doomed = Vec::new();
        let mut chains = Vec::new();
        for (chain, dir, blobs) in gone {
            doomed.push(self.committed_dir(&dir));
            doomed.extend(blobs.iter().map(|b| self.blob_path(b)));
            chains.push(chain);
        }
        remove_files(doomed);
        Ok(chains)
    }

    /// Deletes the rows of unused, unleased snapshots (under the write lock); the caller
    /// removes their files.
    fn delete_orphan_rows(&self) -> Result<Vec<DeletedLayer>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let orphans: Vec<String> = {
            let mut stmt = tx.prepare(
                "SELECT chain_id FROM snapshots
                 WHERE chain_id NOT IN (SELECT chain_id FROM image_layers)",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut gone = Vec::new();
        let mut kept = false;
        for chain in orphans {
            if self.leases.holds(&chain) {
                kept = true;
                continue;
            }
            gone.push(delete_snapshot_row(&tx, chain)?);
        }
        tx.commit()?;
        if kept {
            self.leases
                .deferred
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(gone)
    }

    /// Records that `blobs` exist in `repository` of `registry` (pulled from or pushed
    /// to), for cross-repository mounts.
    pub fn record_blob_sources(
        &self,
        blobs: &[String],
        registry: &str,
        repository: &str,
    ) -> Result<()> {
        let mut conn = self.conn();
        // Read first: a pull of an image that is up to date then writes nothing.
        let mut missing = Vec::new();
        for b in blobs {
            let known = conn
                .query_row(
                    "SELECT 1 FROM blob_sources WHERE blob = ?1 AND registry = ?2 AND repository = ?3",
                    params![b, registry, repository],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !known {
                missing.push(b);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let tx = conn.transaction()?;
        for b in missing {
            tx.execute(
                "INSERT OR IGNORE INTO blob_sources (blob, registry, repository) VALUES (?1, ?2, ?3)",
                params![b, registry, repository],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The repositories of `registry` known to hold `blob`, most recently recorded first.
    pub fn blob_sources(&self, blob: &str, registry: &str) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT repository FROM blob_sources WHERE blob = ?1 AND registry = ?2
             ORDER BY rowid DESC",
        )?;
        let rows = stmt.query_map([blob, registry], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Stores a pulled image: `layers` are, base first, each layer's manifest digest with
    /// the layer as downloaded and unpacked (verified), or `None` for a layer whose chain
    /// the pull found here (held by its lease). Renames the new ones into place and
    /// records the image with `tag` (if any) and `repo_digest`, in one commit; on failure
    /// nothing is kept.
    pub fn commit_pulled(
        &self,
        config: &[u8],
        layers: Vec<(Option<PulledLayer>, String)>,
        tag: Option<String>,
        repo_digest: &str,
    ) -> Result<ImageInfo> {
        let doc = ConfigDoc::parse(config)?;
        if doc.rootfs.diff_ids.len() != layers.len() {
            return Err(Error::InvalidArchive(format!(
                "image config lists {} layers but the manifest has {}",
                doc.rootfs.diff_ids.len(),
                layers.len()
            )));
        }
        let tag = tag.map(|t| tag_reference(&t)).transpose()?;
        let _w = self.write_lock();
        let mut op = Op::default();
        let result = (|| {
            let mut chains = Vec::new();
            let mut parent: Option<String> = None;
            for (i, ((pulled, digest), diff_id)) in
                layers.into_iter().zip(&doc.rootfs.diff_ids).enumerate()
            {
                let chain = match &parent {
                    None => diff_id.clone(),
                    Some(p) => format!(
                        "sha256:{}",
                        hex::encode(Sha256::digest(format!("{p} {diff_id}").as_bytes()))
                    ),
                };
                let existing = self.existing_snapshot(&chain, &op)?;
                let layer = match (pulled, existing) {
                    // Here already (found before the download, or the same layer twice).
                    (_, Some(existing)) => existing,
                    (None, None) => {
                        return Err(Error::Internal(format!(
                            "layer {} ({digest}) vanished during the pull",
                            i + 1
                        )))
                    }
                    (Some(p), None) => {
                        if p.diff_id != *diff_id {
                            return Err(Error::DigestMismatch {
                                what: format!("layer {} ({digest})", i + 1),
                                expected: diff_id.clone(),
                                actual: p.diff_id,
                            });
                        }
                        let blob_path = self.blob_path(&digest);
                        if fs::symlink_metadata(&blob_path).is_err() {
                            fs::rename(p.blob.path(), &blob_path)
                                .map_err(Error::io("rename into place", &blob_path))?;
                            p.blob.keep();
                            op.created.push(blob_path);
                        }
                        let unpacked = unpack::Unpacked {
                            diff_id: p.diff_id,
                            size: p.size,
                        };
                        self.place_snapshot(
                            p.snapshot,
                            chain,
                            unpacked,
                            parent.as_deref(),
                            digest,
                            &mut op,
                        )?
                    }
                };
                parent = Some(layer.chain_id.clone());
                chains.push(layer.chain_id);
            }
            let pending =
                self.commit_prepare(config, chains, tag.into_iter().collect(), &mut op)?;
            let id = pending.id.clone();
            self.commit(&mut op, &[pending])?;
            self.conn().execute(
                "INSERT OR REPLACE INTO repo_digests (reference, image_id) VALUES (?1, ?2)",
                params![repo_digest, id],
            )?;
            Ok(id)
        })();
        match result {
            Ok(id) => self.get_image(&id),
            Err(e) => {
                op.rollback();
                Err(e)
            }
        }
    }

    /// The gzip copy of the stored layer blob `blob` (an uncompressed tar), made once and
    /// remembered, for pushes.
    pub fn gzip_layer_blob(&self, blob: &str) -> Result<LayerBlob> {
        let lookup = |conn: &Connection| -> Result<Option<String>> {
            Ok(conn
                .query_row("SELECT gzip FROM push_blobs WHERE blob = ?1", [blob], |r| {
                    r.get(0)
                })
                .optional()?)
        };
        let found = |gz: String| -> Result<LayerBlob> {
            let p = self.blob_path(&gz);
            let size = fs::metadata(&p).map_err(Error::io("stat", &p))?.len();
            Ok((p, gz, size))
        };
        if let Some(gz) = lookup(&self.conn())? {
            return found(gz);
        }
        let src = self.blob_path(blob);
        let tmp = TempPath(Some(self.temp_path("gzip")));
        let digest = {
            let mut input = fs::File::open(&src).map_err(Error::io("open", &src))?;
            let out = fs::File::create(tmp.path()).map_err(Error::io("create", tmp.path()))?;
            struct Hashing<W>(W, Sha256);
            impl<W: io::Write> io::Write for Hashing<W> {
                fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                    let n = self.0.write(b)?;
                    self.1.update(&b[..n]);
                    Ok(n)
                }
                fn flush(&mut self) -> io::Result<()> {
                    self.0.flush()
                }
            }
            let mut enc = flate2::write::GzEncoder::new(
                Hashing(io::BufWriter::new(out), Sha256::new()),
                flate2::Compression::default(),
            );
            io::copy(&mut input, &mut enc).map_err(Error::io("compress", &src))?;
            let Hashing(w, h) = enc.finish().map_err(Error::io("compress", &src))?;
            let f = w
                .into_inner()
                .map_err(|e| Error::Internal(format!("write {}: {e}", tmp.path().display())))?;
            f.sync_all().map_err(Error::io("sync", tmp.path()))?;
            format!("sha256:{}", hex::encode(h.finalize()))
        };
        let _w = self.write_lock();
        if let Some(gz) = lookup(&self.conn())? {
            return found(gz);
        }
        let dest = self.blob_path(&digest);
        if !dest.exists() {
            fs::rename(tmp.path(), &dest).map_err(Error::io("rename into place", &dest))?;
            tmp.keep();
            sync_dir(dest.parent().unwrap_or(&self.root))?;
        }
        self.conn().execute(
            "INSERT OR REPLACE INTO push_blobs (blob, gzip) VALUES (?1, ?2)",
            params![blob, digest],
        )?;
        found(digest)
    }

    /// Names an image a pull found complete here: `tag` (if any) and `repo_digest`. Writes
    /// only what is missing, so an up-to-date pull costs no disk sync. The flag says
    /// whether a name was added or moved (Docker's "Downloaded newer image").
    pub fn name_pulled(
        &self,
        image_id: &str,
        tag: Option<String>,
        repo_digest: &str,
    ) -> Result<(ImageInfo, bool)> {
        let tag = tag.map(|t| tag_reference(&t)).transpose()?;
        let _w = self.write_lock();
        let mut conn = self.conn();
        let points_to = |conn: &Connection, table: &str, reference: &str| -> Result<bool> {
            Ok(conn
                .query_row(
                    &format!("SELECT 1 FROM {table} WHERE reference = ?1 AND image_id = ?2"),
                    [reference, image_id],
                    |_| Ok(()),
                )
                .optional()?
                .is_some())
        };
        let tag_done = match &tag {
            Some(t) => points_to(&conn, "tags", t)?,
            None => true,
        };
        let changed = !tag_done || !points_to(&conn, "repo_digests", repo_digest)?;
        if changed {
            let tx = conn.transaction()?;
            let exists = tx
                .query_row("SELECT 1 FROM images WHERE id = ?1", [image_id], |_| Ok(()))
                .optional()?
                .is_some();
            if !exists {
                return Err(Error::ImageNotFound(image_id.to_string()));
            }
            if let Some(t) = &tag {
                tx.execute(
                    "INSERT OR REPLACE INTO tags (reference, image_id) VALUES (?1, ?2)",
                    params![t, image_id],
                )?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO repo_digests (reference, image_id) VALUES (?1, ?2)",
                params![repo_digest, image_id],
            )?;
            tx.commit()?;
        }
        Ok((image_info(&conn, image_id)?, changed))
    }

    /// Records `repo@sha256:…` for an image (after a push).
    pub fn add_repo_digest(&self, image_id: &str, repo_digest: &str) -> Result<()> {
        let _w = self.write_lock();
        self.conn().execute(
            "INSERT OR REPLACE INTO repo_digests (reference, image_id) VALUES (?1, ?2)",
            params![repo_digest, image_id],
        )?;
        Ok(())
    }

    /// What a push needs: the image, its config blob and each layer's stored blob
    /// (path, digest, size), base first.
    pub fn push_source(&self, reference: &str) -> Result<(ImageInfo, Vec<LayerBlob>)> {
        let conn = self.conn();
        let (id, _) = resolve(&conn, reference)?;
        let info = image_info(&conn, &id)?;
        let mut stmt = conn.prepare(
            "SELECT s.blob FROM image_layers l JOIN snapshots s ON s.chain_id = l.chain_id
             WHERE l.image_id = ?1 ORDER BY l.idx",
        )?;
        let blobs: Vec<String> = stmt
            .query_map([&id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::new();
        for b in blobs {
            let p = self.blob_path(&b);
            let size = fs::metadata(&p).map_err(Error::io("stat", &p))?.len();
            out.push((p, b, size));
        }
        Ok((info, out))
    }

    /// By reference, full ID (`sha256:…` or bare hex) or unique ID prefix.
    pub fn get_image(&self, reference: &str) -> Result<ImageInfo> {
        let conn = self.conn();
        let (id, _) = resolve(&conn, reference)?;
        image_info(&conn, &id)
    }

    pub fn list_images(&self, all: bool) -> Result<Vec<ImageInfo>> {
        let conn = self.conn();
        let sql = if all {
            "SELECT id FROM images ORDER BY created DESC, id"
        } else {
            "SELECT id FROM images WHERE id IN (SELECT image_id FROM tags) ORDER BY created DESC, id"
        };
        let ids: Vec<String> = {
            let mut stmt = conn.prepare(sql)?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        ids.iter().map(|id| image_info(&conn, id)).collect()
    }

    /// Points `target` at the image `source` names; returns that image's ID.
    pub fn tag_image(&self, source: &str, target: &str) -> Result<String> {
        let tag = tag_reference(target)?;
        let _w = self.write_lock();
        let conn = self.conn();
        let (id, _) = resolve(&conn, source)?;
        conn.execute(
            "INSERT OR REPLACE INTO tags (reference, image_id) VALUES (?1, ?2)",
            params![tag, id],
        )?;
        Ok(id)
    }

    /// Untags and deletes, like `docker rmi` (see the proto and the module docs).
    pub fn remove_image(&self, reference: &str, force: bool) -> Result<Removed> {
        let _w = self.write_lock();
        let mut conn = self.conn();
        let (id, by_tag) = resolve(&conn, reference)?;
        let tags = tags_of(&conn, &id)?;
        let users: Vec<String> = {
            let mut stmt = conn
                .prepare("SELECT key FROM active_snapshots WHERE image_id = ?1 ORDER BY created")?;
            let rows = stmt.query_map([&id], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let short = short_id(id.strip_prefix("sha256:").unwrap_or(&id)).to_string();
        let mut out = Removed {
            image_id: id.clone(),
            ..Removed::default()
        };
        let untag: Vec<String> = match &by_tag {
            Some(tag) => {
                if tags.len() == 1 && !users.is_empty() && !force {
                    return Err(Error::Conflict(format!(
                        "conflict: unable to remove repository reference \"{reference}\" (must force) - \
                         container {} is using its referenced image {short}",
                        short_id(&users[0])
                    )));
                }
                vec![tag.clone()]
            }
            None => {
                if tags.len() > 1 && !force {
                    return Err(Error::Conflict(format!(
                        "conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories"
                    )));
                }
                if !users.is_empty() && !force {
                    return Err(Error::Conflict(format!(
                        "conflict: unable to delete {short} (must be forced) - image is being used by container {}",
                        short_id(&users[0])
                    )));
                }
                tags.clone()
            }
        };
        let remaining = tags.len() - untag.len();
        let delete = remaining == 0 && users.is_empty();
        let tx = conn.transaction()?;
        for t in &untag {
            tx.execute("DELETE FROM tags WHERE reference = ?1", [t])?;
            out.untagged.push(t.clone());
        }
        // Like Docker: a repository's digest references go with its last tag on the image.
        let kept: Vec<&String> = tags.iter().filter(|t| !untag.contains(t)).collect();
        for t in &untag {
            let repo = repository_of(t);
            if !kept.iter().any(|k| repository_of(k) == repo) {
                tx.execute(
                    "DELETE FROM repo_digests WHERE image_id = ?1 AND substr(reference, 1, length(?2) + 1) = ?2 || '@'",
                    rusqlite::params![&id, repo],
                )?;
            }
        }
        let mut doomed = Vec::new();
        if delete {
            out.deleted.push(id.clone());
            out.deleted
                .extend(self.delete_image_rows(&tx, &id, &mut doomed)?);
        }
        tx.commit()?;
        drop(conn);
        remove_files(doomed);
        Ok(out)
    }

    /// Deletes the image's rows (and those of layers no other image uses) and adds the
    /// files to remove once the transaction commits. Returns the deleted layer chain IDs.
    fn delete_image_rows(
        &self,
        tx: &Transaction<'_>,
        id: &str,
        doomed: &mut Vec<PathBuf>,
    ) -> Result<Vec<String>> {
        doomed.push(self.blob_path(id));
        let mut chains = Vec::new();
        let leased = |c: &str| {
            let held = self.leases.holds(c);
            if held {
                self.leases
                    .deferred
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
            held
        };
        for (chain, dir, blobs) in delete_image(tx, id, &leased)? {
            doomed.push(self.committed_dir(&dir));
            doomed.extend(blobs.iter().map(|b| self.blob_path(b)));
            chains.push(chain);
        }
        Ok(chains)
    }

    // ---- writable snapshots -------------------------------------------------------------

    pub fn prepare_snapshot(&self, key: &str, image: &str) -> Result<Mounts> {
        validate_key(key)?;
        let _w = self.write_lock();
        let conn = self.conn();
        let (id, _) = resolve(&conn, image)?;
        let existing: Option<String> = conn
            .query_row(
                "SELECT image_id FROM active_snapshots WHERE key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(existing) = existing {
            if existing != id {
                return Err(Error::SnapshotExists {
                    key: key.to_string(),
                    image_id: existing,
                });
            }
            let mounts = self.mounts(&conn, key, &id)?;
            for d in [&mounts.upper_dir, &mounts.work_dir] {
                if !d.is_dir() {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o755)
                        .create(d)
                        .map_err(Error::io("create", d))?;
                }
            }
            return Ok(mounts);
        }
        let tmp = TempPath(Some(self.temp_path("active")));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(tmp.path())
            .map_err(Error::io("create", tmp.path()))?;
        for (sub, mode) in [("upper", 0o755), ("work", 0o700)] {
            let d = tmp.path().join(sub);
            fs::DirBuilder::new()
                .mode(mode)
                .create(&d)
                .map_err(Error::io("create", &d))?;
        }
        let dest = self.active_dir(key);
        if fs::symlink_metadata(&dest).is_ok() {
            remove_any(&dest)?; // unreferenced leftover
        }
        fs::rename(tmp.path(), &dest).map_err(Error::io("rename into place", &dest))?;
        tmp.keep();
        sync_dir(dest.parent().expect("parent"))?;
        let now = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
        if let Err(e) = conn.execute(
            "INSERT INTO active_snapshots (key, image_id, created) VALUES (?1, ?2, ?3)",
            params![key, id, now],
        ) {
            let _ = remove_any(&dest);
            return Err(e.into());
        }
        self.mounts(&conn, key, &id)
    }

    pub fn snapshot_mounts(&self, key: &str) -> Result<Mounts> {
        let conn = self.conn();
        let id: String = conn
            .query_row(
                "SELECT image_id FROM active_snapshots WHERE key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| Error::SnapshotNotFound(key.to_string()))?;
        self.mounts(&conn, key, &id)
    }

    /// Deletes the writable layer; a missing key is not an error.
    pub fn remove_snapshot(&self, key: &str) -> Result<()> {
        validate_key(key)?;
        let _w = self.write_lock();
        // The row first: a crash after it leaves an unreferenced dir, swept on open.
        self.conn()
            .execute("DELETE FROM active_snapshots WHERE key = ?1", [key])?;
        let dir = self.active_dir(key);
        let doomed = TempPath(Some(self.temp_path("remove")));
        match fs::rename(&dir, doomed.path()) {
            Ok(()) => remove_tree(doomed.path()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("move aside", &dir)(e)),
        }
    }

    fn mounts(&self, conn: &Connection, key: &str, id: &str) -> Result<Mounts> {
        let mut stmt = conn.prepare(
            "SELECT s.dir FROM image_layers l JOIN snapshots s ON s.chain_id = l.chain_id
             WHERE l.image_id = ?1 ORDER BY l.idx DESC",
        )?;
        let dirs: Vec<String> = stmt
            .query_map([id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let dir = self.active_dir(key);
        Ok(Mounts {
            key: key.to_string(),
            image_id: id.to_string(),
            lower_dirs: dirs
                .iter()
                .map(|d| self.committed_dir(d).join("fs"))
                .collect(),
            upper_dir: dir.join("upper"),
            work_dir: dir.join("work"),
        })
    }
}

/// One `docker history` row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryRow {
    pub id: String,
    pub created: String,
    pub created_by: String,
    pub size: i64,
    pub comment: String,
    pub empty_layer: bool,
}

/// What `PruneImages` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    pub untagged: Vec<String>,
    pub deleted: Vec<String>,
    pub space_reclaimed: i64,
}

/// What `CommitSnapshot` records besides the layer.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub reference: String,
    pub changes: Vec<String>,
    pub message: String,
    pub author: String,
    /// The container's configuration (`Cmd`, `Env`...), as a config's `config` object.
    pub config: Map<String, Value>,
}

impl Store {
    /// The image's history, newest first: the config's history entries, non-empty ones
    /// matched to the layers in order for their sizes; the top row carries the image ID.
    pub fn image_history(&self, reference: &str) -> Result<Vec<HistoryRow>> {
        let conn = self.conn();
        let (id, _) = resolve(&conn, reference)?;
        let info = image_info(&conn, &id)?;
        let sizes: Vec<i64> = {
            let mut stmt = conn.prepare(
                "SELECT s.size FROM image_layers l JOIN snapshots s ON s.chain_id = l.chain_id
                 WHERE l.image_id = ?1 ORDER BY l.idx",
            )?;
            let rows = stmt.query_map([&id], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        drop(conn);
        let doc: Value = serde_json::from_slice(&info.config_json)
            .map_err(|e| Error::InvalidArchive(format!("invalid image config: {e}")))?;
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let mut rows = Vec::new();
        let mut layer = 0usize;
        let history = doc
            .get("history")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if history.is_empty() {
            for size in &sizes {
                rows.push(HistoryRow {
                    created: info.created.clone(),
                    size: *size,
                    ..Default::default()
                });
            }
        }
        for h in &history {
            let empty = h
                .get("empty_layer")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let size = if empty {
                0
            } else {
                let s = sizes.get(layer).copied().unwrap_or(0);
                layer += 1;
                s
            };
            rows.push(HistoryRow {
                id: String::new(),
                created: text(h, "created"),
                created_by: text(h, "created_by"),
                size,
                comment: text(h, "comment"),
                empty_layer: empty,
            });
        }
        rows.reverse();
        for (i, r) in rows.iter_mut().enumerate() {
            r.id = if i == 0 {
                id.clone()
            } else {
                "<missing>".into()
            };
        }
        Ok(rows)
    }

    /// Removes dangling images (untagged, no writable snapshot); with `all`, every image
    /// no writable snapshot uses (untagging it first). Shared layers stay.
    pub fn prune_images(&self, all: bool) -> Result<Pruned> {
        let _w = self.write_lock();
        let mut conn = self.conn();
        let sql = if all {
            "SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM active_snapshots)
             ORDER BY created DESC, id"
        } else {
            "SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM active_snapshots)
             AND id NOT IN (SELECT image_id FROM tags) ORDER BY created DESC, id"
        };
        let ids: Vec<String> = {
            let mut stmt = conn.prepare(sql)?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut out = Pruned::default();
        let mut doomed = Vec::new();
        let tx = conn.transaction()?;
        for id in &ids {
            let sizes: HashMap<String, i64> = {
                let mut stmt = tx.prepare(
                    "SELECT s.chain_id, s.size FROM image_layers l
                     JOIN snapshots s ON s.chain_id = l.chain_id WHERE l.image_id = ?1",
                )?;
                let rows = stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            out.untagged.extend(tags_of(&tx, id)?);
            out.deleted.push(id.clone());
            for chain in self.delete_image_rows(&tx, id, &mut doomed)? {
                out.space_reclaimed += sizes.get(&chain).copied().unwrap_or(0);
                out.deleted.push(chain);
            }
        }
        tx.commit()?;
        drop(conn);
        remove_files(doomed);
        Ok(out)
    }

    /// Writes the images as one tarball at `out`: a docker-archive `manifest.json` beside
    /// an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`), as `docker save`
    /// (v25) does. Layer blobs are written as stored.
    pub fn save_images(&self, references: &[String], out: &Path) -> Result<()> {
        if references.is_empty() {
            return Err(Error::InvalidArgument(
                "requires at least one image to save".into(),
            ));
        }
        struct Saved {
            id: String,
            tags: Vec<String>,
            config: Vec<u8>,
            layers: Vec<(String, PathBuf, u64)>,
        }
        let mut images: Vec<Saved> = Vec::new();
        {
            let conn = self.conn();
            for r in references {
                let (id, tag) = resolve(&conn, r)?;
                if let Some(s) = images.iter_mut().find(|s| s.id == id) {
                    if let Some(t) = tag {
                        if !s.tags.contains(&t) {
                            s.tags.push(t);
                        }
                    }
                    continue;
                }
                let info = image_info(&conn, &id)?;
                let mut stmt = conn.prepare(
                    "SELECT s.blob FROM image_layers l JOIN snapshots s ON s.chain_id = l.chain_id
                     WHERE l.image_id = ?1 ORDER BY l.idx",
                )?;
                let blobs: Vec<String> = stmt
                    .query_map([&id], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut layers = Vec::new();
                for b in blobs {
                    let p = self.blob_path(&b);
                    let size = fs::metadata(&p).map_err(Error::io("stat", &p))?.len();
                    layers.push((b, p, size));
                }
                images.push(Saved {
                    id,
                    tags: tag.into_iter().collect(),
                    config: info.config_json,
                    layers,
                });
            }
        }
        let file = fs::File::create(out).map_err(Error::io("create", out))?;
        let mut b = tar::Builder::new(io::BufWriter::new(file));
        let werr = |e: io::Error| Error::Internal(format!("write archive: {e}"));
        let mut written: HashSet<String> = HashSet::new();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let dir = |b: &mut tar::Builder<io::BufWriter<fs::File>>, name: &str| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_mtime(now);
            h.set_size(0);
            b.append_data(&mut h, name, io::empty())
        };
        let bytes_entry =
            |b: &mut tar::Builder<io::BufWriter<fs::File>>, name: &str, data: &[u8]| {
                let mut h = tar::Header::new_ustar();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_mtime(now);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, data)
            };
        dir(&mut b, "blobs/").map_err(werr)?;
        dir(&mut b, "blobs/sha256/").map_err(werr)?;
        let blob_name = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
        let mut docker_manifest = Vec::new();
        let mut index = Vec::new();
        for img in &images {
            let mut layer_descs = Vec::new();
            for (digest, path, size) in &img.layers {
                let compression = unpack::Compression::of_file(path)?;
                if written.insert(digest.clone()) {
                    let mut h = tar::Header::new_ustar();
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(0o644);
                    h.set_mtime(now);
                    h.set_size(*size);
                    let f = fs::File::open(path).map_err(Error::io("open", path))?;
                    b.append_data(&mut h, blob_name(digest), f).map_err(werr)?;
                }
                layer_descs.push(json!({
                    "mediaType": match compression {
                        unpack::Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                        unpack::Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                        unpack::Compression::None => "application/vnd.oci.image.layer.v1.tar",
                    },
                    "digest": digest,
                    "size": size,
                }));
            }
            if written.insert(img.id.clone()) {
                bytes_entry(&mut b, &blob_name(&img.id), &img.config).map_err(werr)?;
            }
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": img.id,
                    "size": img.config.len(),
                },
                "layers": layer_descs,
            });
            let manifest =
                serde_json::to_vec(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
            let manifest_digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
            if written.insert(manifest_digest.clone()) {
                bytes_entry(&mut b, &blob_name(&manifest_digest), &manifest).map_err(werr)?;
            }
            let desc = |annotations: Option<Value>| {
                let mut d = json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest,
                    "size": manifest.len(),
                });
                if let Some(a) = annotations {
                    d["annotations"] = a;
                }
                d
            };
            if img.tags.is_empty() {
                index.push(desc(None));
            }
            for t in &img.tags {
                let r = Reference::parse_normalized(t)?;
                let tag = r.tag.clone().unwrap_or_else(|| "latest".into());
                index.push(desc(Some(json!({
                    "io.containerd.image.name": format!("{}:{tag}", r.full_name()),
                    "org.opencontainers.image.ref.name": tag,
                }))));
            }
            docker_manifest.push(json!({
                "Config": blob_name(&img.id),
                "RepoTags": if img.tags.is_empty() { Value::Null } else { json!(img.tags) },
                "Layers": img.layers.iter().map(|(d, _, _)| blob_name(d)).collect::<Vec<_>>(),
            }));
        }
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": index,
        });
        let json_bytes =
            |v: &Value| serde_json::to_vec(v).map_err(|e| Error::Internal(e.to_string()));
        bytes_entry(&mut b, "index.json", &json_bytes(&index)?).map_err(werr)?;
        bytes_entry(
            &mut b,
            "manifest.json",
            &json_bytes(&Value::Array(docker_manifest))?,
        )
        .map_err(werr)?;
        bytes_entry(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(werr)?;
        let w = b.into_inner().map_err(werr)?;
        w.into_inner()
            .map_err(|e| Error::Internal(format!("write archive: {e}")))?
            .sync_all()
            .map_err(Error::io("sync", out))?;
        Ok(())
    }

    /// Turns the writable snapshot `key`'s upper dir into a layer on top of its image's and
    /// stores the result as a new image (see [`CommitOptions`]).
    pub fn commit_snapshot(&self, key: &str, opts: &CommitOptions) -> Result<ImageInfo> {
        validate_key(key)?;
        let tag = if opts.reference.is_empty() {
            None
        } else {
            Some(tag_reference(&opts.reference)?)
        };
        let mounts = self.snapshot_mounts(key)?;
        let base = self.get_image(&mounts.image_id)?;
        let mut doc: Map<String, Value> = serde_json::from_slice(&base.config_json)
            .map_err(|e| Error::InvalidArchive(format!("invalid image config: {e}")))?;
        let mut config = doc
            .get("config")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (k, v) in &opts.config {
            config.insert(k.clone(), v.clone());
        }
        for change in &opts.changes {
            apply_change(&mut config, change)?;
        }
        // The layer tar, written under tmp/ (hard-linked in as the blob).
        let tmp = TempPath(Some(self.temp_path("commit")));
        {
            let f = fs::File::create(tmp.path()).map_err(Error::io("create", tmp.path()))?;
            let w = crate::layer::write_layer(&mounts.upper_dir, io::BufWriter::new(f))?;
            // Flushed with everything else by `commit`.
            w.into_inner()
                .map_err(|e| Error::Internal(format!("write layer: {e}")))?;
        }
        let _w = self.write_lock();
        let chains: Vec<String> = {
            let conn = self.conn();
            let mut stmt =
                conn.prepare("SELECT chain_id FROM image_layers WHERE image_id = ?1 ORDER BY idx")?;
            let rows = stmt.query_map([&base.id], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut op = Op::default();
        let result = (|| {
            let layer = self.ensure_layer(
                LayerSource {
                    file: tmp.path(),
                    blob_digest: None,
                    diff_id: None,
                    what: "committed layer".into(),
                },
                chains.last().map(String::as_str),
                &mut op,
            )?;
            let now = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
            let mut diff_ids = base.layers.clone();
            diff_ids.push(layer.diff_id.clone());
            doc.insert("created".into(), json!(now));
            doc.insert("config".into(), Value::Object(config));
            doc.insert(
                "rootfs".into(),
                json!({"type": "layers", "diff_ids": diff_ids}),
            );
            for k in ["container", "container_config", "id", "parent"] {
                doc.remove(k);
            }
            if opts.author.is_empty() {
                doc.remove("author");
            } else {
                doc.insert("author".into(), json!(opts.author));
            }
            if opts.message.is_empty() {
                doc.remove("comment");
            } else {
                doc.insert("comment".into(), json!(opts.message));
            }
            let mut entry = json!({"created": now, "created_by": "berth commit"});
            if !opts.author.is_empty() {
                entry["author"] = json!(opts.author);
            }
            if !opts.message.is_empty() {
                entry["comment"] = json!(opts.message);
            }
            let mut history = doc
                .get("history")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            history.push(entry);
            doc.insert("history".into(), Value::Array(history));
            let config_json = serde_json::to_vec(&Value::Object(doc.clone()))
                .map_err(|e| Error::Internal(e.to_string()))?;
            let mut all = chains.clone();
            all.push(layer.chain_id);
            self.commit_image(&config_json, &all, tag.iter().cloned().collect(), &mut op)
        })();
        drop(_w);
        match result {
            Ok(id) => self.get_image(&id),
            Err(e) => {
                op.rollback();
                Err(e)
            }
        }
    }
}

/// A layer's stored blob: (path, digest, size).
pub type LayerBlob = (PathBuf, String, u64);

/// Chain IDs held by running pulls, with a count each (two pulls may hold one). In memory
/// only: no pull survives a restart, and `open` removes what an unfinished one left.
#[derive(Default)]
struct LeaseSet {
    held: Mutex<HashMap<String, usize>>,
    /// A deletion kept a leased snapshot that may now be unused.
    deferred: std::sync::atomic::AtomicBool,
}

impl LeaseSet {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn holds(&self, chain: &str) -> bool {
        self.lock().contains_key(chain)
    }
}

/// What [`Store::lease`] returns; dropping it releases the chains.
pub struct Lease {
    set: Arc<LeaseSet>,
    keys: Vec<String>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut held = self.set.lock();
        for k in &self.keys {
            if let Some(n) = held.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    held.remove(k);
                }
            }
        }
    }
}

/// (chain ID, snapshot dir, blobs to delete).
type DeletedLayer = (String, String, Vec<String>);

struct PendingImage {
    id: String,
    config: Vec<u8>,
    created: Option<String>,
    chains: Vec<String>,
    tags: Vec<String>,
}

/// Normalizes a reference to tag with, refusing digests.
fn tag_reference(s: &str) -> Result<String> {
    let r = Reference::parse_normalized(s)?;
    if r.digest.is_some() {
        return Err(Error::InvalidArgument(format!(
            "refusing to create a tag with a digest reference: {s:?}"
        )));
    }
    Ok(r.to_string())
}

fn validate_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidKey(key.to_string()))
    }
}

/// Resolves `reference` to an image ID; the second value is the tag when it resolved by
/// tag.
fn resolve(conn: &Connection, reference: &str) -> Result<(String, Option<String>)> {
    let r = reference.trim();
    let by_id = |id: &str| -> Result<Option<String>> {
        Ok(conn
            .query_row("SELECT id FROM images WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .optional()?)
    };
    let by_prefix = |prefix: &str, shown: &str| -> Result<String> {
        let mut stmt =
            conn.prepare("SELECT id FROM images WHERE substr(id, 1, ?1) = ?2 LIMIT 2")?;
        let full = format!("sha256:{prefix}");
        let ids: Vec<String> = stmt
            .query_map(params![full.len() as i64, full], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        match ids.len() {
            0 => Err(Error::ImageNotFound(shown.to_string())),
            1 => Ok(ids.into_iter().next().expect("one")),
            _ => Err(Error::AmbiguousId(prefix.to_string())),
        }
    };
    let is_hex_prefix = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    if let Some(hex) = r.strip_prefix("sha256:") {
        if !is_hex_prefix(hex) {
            return Err(Error::InvalidArgument(format!("invalid image ID {r:?}")));
        }
        return Ok((by_prefix(hex, r)?, None));
    }
    if is_sha256_hex(r) {
        let id = format!("sha256:{r}");
        return by_id(&id)?
            .map(|id| (id, None))
            .ok_or_else(|| Error::ImageNotFound(r.to_string()));
    }
    match Reference::parse_normalized(r) {
        Ok(parsed) => {
            let shown = parsed.to_string();
            if let Some(digest) = &parsed.digest {
                let by_digest: Option<String> = conn
                    .query_row(
                        "SELECT image_id FROM repo_digests WHERE reference = ?1",
                        [format!("{}@{digest}", parsed.familiar_name())],
                        |row| row.get(0),
                    )
                    .optional()?;
                if let Some(id) = by_digest {
                    return Ok((id, None));
                }
            }
            if parsed.digest.is_none() {
                let tagged: Option<String> = conn
                    .query_row(
                        "SELECT image_id FROM tags WHERE reference = ?1",
                        [&shown],
                        |row| row.get(0),
                    )
                    .optional()?;
                if let Some(id) = tagged {
                    return Ok((id, Some(shown)));
                }
            }
            if is_hex_prefix(r) {
                return match by_prefix(r, &shown) {
                    Ok(id) => Ok((id, None)),
                    Err(e) => Err(e),
                };
            }
            Err(Error::ImageNotFound(shown))
        }
        Err(_) if is_hex_prefix(r) => Ok((by_prefix(r, r)?, None)),
        Err(e) => Err(e),
    }
}

fn tags_of(conn: &Connection, id: &str) -> Result<Vec<String>> {
    let mut stmt =
        conn.prepare("SELECT reference FROM tags WHERE image_id = ?1 ORDER BY reference")?;
    let tags = stmt
        .query_map([id], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(tags)
}

fn image_info(conn: &Connection, id: &str) -> Result<ImageInfo> {
    let (config_json, created, size): (Vec<u8>, String, i64) = conn
        .query_row(
            "SELECT config, created, size FROM images WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?
        .ok_or_else(|| Error::ImageNotFound(id.to_string()))?;
    let config = ConfigDoc::parse(&config_json)?;
    Ok(ImageInfo {
        id: id.to_string(),
        repo_tags: tags_of(conn, id)?,
        repo_digests: {
            let mut stmt = conn.prepare(
                "SELECT reference FROM repo_digests WHERE image_id = ?1 ORDER BY reference",
            )?;
            let rows = stmt.query_map([id], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        },
        created,
        size,
        layers: config.rootfs.diff_ids.clone(),
        config,
        config_json,
    })
}

/// Deletes the image's rows and every snapshot row no other image uses; returns those
/// chains (topmost first) with their dir, and their blob when no remaining snapshot shares it.
/// The repository of a stored tag: `127.0.0.1:5000/a/b:1` → `127.0.0.1:5000/a/b`.
fn repository_of(tag: &str) -> &str {
    let name_start = tag.rfind('/').map_or(0, |i| i + 1);
    match tag[name_start..].rfind(':') {
        Some(i) => &tag[..name_start + i],
        None => tag,
    }
}

fn delete_image(
    tx: &Transaction<'_>,
    id: &str,
    leased: &dyn Fn(&str) -> bool,
) -> Result<Vec<DeletedLayer>> {
    let chains: Vec<String> = {
        let mut stmt =
            tx.prepare("SELECT chain_id FROM image_layers WHERE image_id = ?1 ORDER BY idx DESC")?;
        let rows = stmt.query_map([id], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    tx.execute("DELETE FROM image_layers WHERE image_id = ?1", [id])?;
    tx.execute("DELETE FROM tags WHERE image_id = ?1", [id])?;
    tx.execute("DELETE FROM repo_digests WHERE image_id = ?1", [id])?;
    tx.execute("DELETE FROM images WHERE id = ?1", [id])?;
    tx.execute("DELETE FROM blob_sources WHERE blob = ?1", [id])?;
    let mut gone = Vec::new();
    for chain in chains {
        let used: bool = tx
            .query_row(
                "SELECT 1 FROM image_layers WHERE chain_id = ?1 LIMIT 1",
                [&chain],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if used {
            continue;
        }
        if leased(&chain) {
            // A running pull relies on it: it stays until that pull is done.
            continue;
        }
        gone.push(delete_snapshot_row(tx, chain)?);
    }
    Ok(gone)
}

/// Deletes one snapshot's row, its blob's row data when no other snapshot shares the blob
/// (with the push copy and the known remote sources), and says which files to remove.
fn delete_snapshot_row(tx: &Transaction<'_>, chain: String) -> Result<DeletedLayer> {
    let (blob, dir): (String, String) = tx.query_row(
        "SELECT blob, dir FROM snapshots WHERE chain_id = ?1",
        [&chain],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    tx.execute("DELETE FROM snapshots WHERE chain_id = ?1", [&chain])?;
    let shared: bool = tx
        .query_row(
            "SELECT 1 FROM snapshots WHERE blob = ?1 LIMIT 1",
            [&blob],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    let mut blobs = Vec::new();
    if !shared {
        let gzip: Option<String> = tx
            .query_row(
                "SELECT gzip FROM push_blobs WHERE blob = ?1",
                [&blob],
                |r| r.get(0),
            )
            .optional()?;
        tx.execute("DELETE FROM push_blobs WHERE blob = ?1", [&blob])?;
        for b in std::iter::once(&blob).chain(gzip.iter()) {
            tx.execute("DELETE FROM blob_sources WHERE blob = ?1", [b])?;
        }
        blobs.push(blob);
        blobs.extend(gzip);
    }
    Ok((chain, dir, blobs))
}

// ---- uploaded archives ----------------------------------------------------------------

/// An uploaded archive's regular files, each copied under a staging dir by number (names
/// never become paths), and its symlinks (docker save links repeated layers).
struct Staged {
    files: HashMap<String, PathBuf>,
    links: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexDoc {
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDoc {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

impl Staged {
    fn unpack(file: &Path, dir: &Path) -> Result<Staged> {
        let f = fs::File::open(file).map_err(Error::io("open", file))?;
        let mut archive = tar::Archive::new(unpack::decompressed(f)?);
        let mut staged = Staged {
            files: HashMap::new(),
            links: HashMap::new(),
        };
        let bad = |e: io::Error| Error::InvalidArchive(format!("read archive: {e}"));
        for (n, entry) in archive.entries().map_err(bad)?.enumerate() {
            let mut entry = entry.map_err(bad)?;
            let name = normalize_name(&entry.path_bytes());
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let path = dir.join(n.to_string());
                    let mut out = fs::File::create(&path).map_err(Error::io("create", &path))?;
                    io::copy(&mut entry, &mut out).map_err(bad)?;
                    staged.files.insert(name, path);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let Some(target) = entry.link_name_bytes() else {
                        continue;
                    };
                    let target = if entry.header().entry_type() == tar::EntryType::Symlink {
                        let base = name.rsplit_once('/').map_or("", |(d, _)| d);
                        normalize_name(
                            format!("{base}/{}", String::from_utf8_lossy(&target)).as_bytes(),
                        )
                    } else {
                        normalize_name(&target)
                    };
                    staged.links.insert(name, target);
                }
                _ => {}
            }
        }
        Ok(staged)
    }

    fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn get(&self, name: &str) -> Option<&Path> {
        let mut name = normalize_name(name.as_bytes());
        for _ in 0..16 {
            if let Some(p) = self.files.get(&name) {
                return Some(p);
            }
            name = self.links.get(&name)?.clone();
        }
        None
    }

    fn file(&self, name: &str) -> Result<&Path> {
        self.get(name)
            .ok_or_else(|| Error::InvalidArchive(format!("{name:?} is missing from the archive")))
    }

    fn read(&self, name: &str) -> Result<Vec<u8>> {
        let p = self.file(name)?;
        fs::read(p).map_err(Error::io("read", p))
    }

    /// Reads a blob of an OCI layout, verifying its digest.
    fn blob(&self, digest: &str) -> Result<Vec<u8>> {
        let bytes = self.read(&blob_name(digest)?)?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if actual != digest {
            return Err(Error::DigestMismatch {
                what: format!("blob {digest}"),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    fn docker_archive(&self) -> Result<Vec<Candidate>> {
        let manifests: Vec<DockerManifest> =
            serde_json::from_slice(&self.read("manifest.json")?)
                .map_err(|e| Error::InvalidArchive(format!("invalid manifest.json: {e}")))?;
        let mut out = Vec::new();
        for m in manifests {
            let config = self.read(&m.config)?;
            if let Some(expected) = digest_in_name(&m.config) {
                let actual = format!("sha256:{}", hex::encode(Sha256::digest(&config)));
                if actual != expected {
                    return Err(Error::DigestMismatch {
                        what: format!("config {}", m.config),
                        expected,
                        actual,
                    });
                }
            }
            let layers = m
                .layers
                .iter()
                .map(|l| Ok((self.file(l)?.to_path_buf(), digest_in_name(l))))
                .collect::<Result<Vec<_>>>()?;
            let tags = m
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| tag_reference(t))
                .collect::<Result<Vec<_>>>()?;
            out.push(Candidate {
                config,
                layers,
                tags,
            });
        }
        Ok(out)
    }

    fn oci_layout(&self) -> Result<Vec<Candidate>> {
        let index: IndexDoc = serde_json::from_slice(&self.read("index.json")?)
            .map_err(|e| Error::InvalidArchive(format!("invalid index.json: {e}")))?;
        let mut out = Vec::new();
        for desc in &index.manifests {
            let tag = oci_tag(desc.annotations.as_ref());
            self.oci_descriptor(desc, tag, 0, &mut out)?;
        }
        Ok(out)
    }

    fn oci_descriptor(
        &self,
        desc: &Descriptor,
        tag: Option<String>,
        depth: usize,
        out: &mut Vec<Candidate>,
    ) -> Result<()> {
        if depth > 4 {
            return Err(Error::InvalidArchive(
                "image indexes nested too deeply".into(),
            ));
        }
        if !is_digest(&desc.digest) {
            return Err(Error::InvalidArchive(format!(
                "invalid digest {:?}",
                desc.digest
            )));
        }
        let bytes = self.blob(&desc.digest)?;
        let is_index =
            desc.media_type.contains("index") || desc.media_type.contains("manifest.list") || {
                // A descriptor without a media type: look at the document.
                desc.media_type.is_empty()
                    && serde_json::from_slice::<IndexDoc>(&bytes)
                        .is_ok_and(|i| !i.manifests.is_empty())
            };
        if is_index {
            let index: IndexDoc = serde_json::from_slice(&bytes).map_err(|e| {
                Error::InvalidArchive(format!("invalid image index {}: {e}", desc.digest))
            })?;
            let _ = index.media_type;
            let wanted: Vec<&Descriptor> = index
                .manifests
                .iter()
                .filter(|d| {
                    d.platform
                        .as_ref()
                        .is_none_or(|p| p.os == "linux" && p.architecture == "amd64")
                })
                .collect();
            if wanted.is_empty() {
                return Err(Error::InvalidArchive(format!(
                    "image index {} has no linux/amd64 manifest",
                    desc.digest
                )));
            }
            for d in wanted {
                self.oci_descriptor(d, tag.clone(), depth + 1, out)?;
            }
            return Ok(());
        }
        let manifest: ManifestDoc = serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidArchive(format!("invalid manifest {}: {e}", desc.digest)))?;
        let config = self.blob(&manifest.config.digest)?;
        let layers = manifest
            .layers
            .iter()
            .map(|l| {
                if !is_digest(&l.digest) {
                    return Err(Error::InvalidArchive(format!(
                        "invalid layer digest {:?}",
                        l.digest
                    )));
                }
                Ok((
                    self.file(&blob_name(&l.digest)?)?.to_path_buf(),
                    Some(l.digest.clone()),
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(Candidate {
            config,
            layers,
            tags: tag.into_iter().collect(),
        });
        Ok(())
    }
}

/// The tag an OCI index entry names: `org.opencontainers.image.ref.name` when it is a full
/// reference; a bare tag combined with `io.containerd.image.name`; otherwise none.
fn oci_tag(annotations: Option<&HashMap<String, String>>) -> Option<String> {
    let a = annotations?;
    let ref_name = a
        .get(REF_NAME)
        .map(String::as_str)
        .filter(|s| !s.is_empty());
    let containerd = a
        .get(CONTAINERD_NAME)
        .map(String::as_str)
        .filter(|s| !s.is_empty());
    let candidate = match (ref_name, containerd) {
        (Some(r), _) if r.contains(':') || r.contains('/') => r.to_string(),
        (Some(tag), Some(name)) => match Reference::parse(name) {
            Ok(mut parsed) => {
                parsed.tag = Some(tag.to_string());
                parsed.digest = None;
                parsed.to_string()
            }
            Err(_) => name.to_string(),
        },
        (None, Some(name)) => name.to_string(),
        _ => return None,
    };
    match tag_reference(&candidate) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(reference = %candidate, error = %e, "loading image untagged");
            None
        }
    }
}

fn blob_name(digest: &str) -> Result<String> {
    if !is_digest(digest) {
        return Err(Error::InvalidArchive(format!("invalid digest {digest:?}")));
    }
    Ok(format!("blobs/{}", digest.replacen(':', "/", 1)))
}

/// `blobs/sha256/<hex>` or `<hex>.json` names carry the content's digest.
fn digest_in_name(name: &str) -> Option<String> {
    let base = name.rsplit('/').next()?;
    let hex = base.strip_suffix(".json").unwrap_or(base);
    let named = name.starts_with("blobs/sha256/") || base.ends_with(".json");
    (named && is_sha256_hex(hex)).then(|| format!("sha256:{hex}"))
}

/// `./a//b/../c` → `a/c` (lexical; `..` above the top is dropped).
fn normalize_name(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut parts: Vec<&str> = Vec::new();
    for p in s.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

// ---- files ----------------------------------------------------------------------------

/// Takes an exclusive lock on `<root>/lock` so two processes never share a state dir (the
/// sweep on open would remove the other's temp files).
fn lock_root(root: &Path) -> Result<fs::File> {
    let path = root.join("lock");
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(Error::io("open", &path))?;
    // SAFETY: a valid open file descriptor.
    let rc = unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(Error::Internal(format!(
                "the image store at {} is in use by another process",
                root.display()
            )));
        }
        return Err(Error::io("lock", &path)(e));
    }
    Ok(f)
}

/// Marks `dir` as the top of unrelated directory trees (ext4's `chattr +T`): each layer
/// unpacked under tmp/ is then placed in a block group of its own rather than in tmp/'s.
/// Without it, on ext4 without a journal, every file of a new layer skips, one by one,
/// the inodes of layers removed in the last minutes (`recently_deleted()`), which cost a
/// third of a cold pull's CPU after `rmi`. A hint only: other filesystems ignore or
/// refuse it, and nothing depends on it.
fn mark_top_dir(dir: &Path) {
    const FS_TOPDIR_FL: libc::c_long = 0x0002_0000;
    let Ok(f) = fs::File::open(dir) else {
        return;
    };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    let mut flags: libc::c_long = 0;
    // SAFETY: a valid open file descriptor and a pointer to a long, as the ioctls expect.
    unsafe {
        if libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags) == 0 && flags & FS_TOPDIR_FL == 0 {
            flags |= FS_TOPDIR_FL;
            libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &flags);
        }
    }
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = fs::read_dir(dir).map_err(Error::io("read", dir))?;
    Ok(rd.flatten().map(|e| e.path()).collect())
}

/// Removes files whose rows are gone; what fails is left for the sweep at the next start.
fn remove_files(paths: Vec<PathBuf>) {
    for p in paths {
        if let Err(e) = remove_any(&p) {
            tracing::warn!(path = %p.display(), error = %e, "remove");
        }
    }
}

fn remove_any(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => remove_tree(p),
        Ok(_) => fs::remove_file(p).map_err(Error::io("remove", p)),
        Err(_) => Ok(()),
    }
}

/// "sha256:<hex>" of a file's bytes.
pub fn file_digest(path: &Path) -> Result<String> {
    let f = fs::File::open(path).map_err(Error::io("open", path))?;
    let (digest, _) = HashingReader::new(f)
        .finish()
        .map_err(Error::io("read", path))?;
    Ok(digest)
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(Error::io("sync", dir))
}

/// Flushes the filesystem holding `path` (unpacked snapshots are many files; one syncfs
/// before the database commit is cheaper than an fsync each).
fn syncfs(path: &Path) -> Result<()> {
    let f = fs::File::open(path).map_err(Error::io("open", path))?;
    // SAFETY: a valid open file descriptor.
    let rc = unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f)) };
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::io("syncfs", path)(io::Error::last_os_error()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn repository_of_a_tag_drops_only_the_tag() {
        use super::repository_of;
        assert_eq!(repository_of("busybox:latest"), "busybox");
        assert_eq!(repository_of("127.0.0.1:5000/a/b:1"), "127.0.0.1:5000/a/b");
        assert_eq!(repository_of("localhost:5000/bb"), "localhost:5000/bb");
    }

    use super::*;

    #[test]
    fn names_and_digests() {
        assert_eq!(normalize_name(b"./a//b/../c"), "a/c");
        assert_eq!(normalize_name(b"../x"), "x");
        let hex = "a".repeat(64);
        assert_eq!(
            digest_in_name(&format!("{hex}.json")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(
            digest_in_name(&format!("blobs/sha256/{hex}")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(digest_in_name(&format!("{hex}/layer.tar")), None);
        assert!(validate_key("abc-1.2_x").is_ok());
        for bad in ["", "..", ".x", "a/b", "a b"] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn oci_tags_from_annotations() {
        let a = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            oci_tag(Some(&a(&[(REF_NAME, "busybox:latest")]))),
            Some("busybox:latest".into())
        );
        assert_eq!(
            oci_tag(Some(&a(&[(REF_NAME, "docker.io/library/alpine:3")]))),
            Some("alpine:3".into())
        );
        assert_eq!(
            oci_tag(Some(&a(&[
                (REF_NAME, "v2"),
                (CONTAINERD_NAME, "docker.io/library/app:latest")
            ]))),
            Some("app:v2".into())
        );
        assert_eq!(oci_tag(Some(&a(&[(REF_NAME, "latest")]))), None);
        assert_eq!(oci_tag(Some(&a(&[(REF_NAME, "Bad:x")]))), None);
        assert_eq!(oci_tag(None), None);
    }
}
