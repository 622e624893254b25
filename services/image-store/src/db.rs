//! The metadata schema, in one place, as an ordered list of migrations. The database's
//! `user_version` is the number of migrations applied.
use rusqlite::Connection;

use crate::error::Result;

/// Every migration, oldest first. Never edit one that has shipped; append a new one.
pub const MIGRATIONS: &[&str] = &[
    // 1: images, tags, layer snapshots, active snapshots.
    "
    CREATE TABLE images (
        id          TEXT PRIMARY KEY,          -- sha256:<hex> of the config blob
        config      BLOB NOT NULL,             -- the config blob as stored
        created     TEXT NOT NULL,             -- RFC 3339, from the config (or load time)
        size        INTEGER NOT NULL,          -- unpacked bytes of all layers
        loaded_at   TEXT NOT NULL
    );
    CREATE TABLE tags (
        reference   TEXT PRIMARY KEY,          -- familiar form: busybox:latest
        image_id    TEXT NOT NULL REFERENCES images(id)
    );
    CREATE INDEX tags_image ON tags(image_id);
    CREATE TABLE snapshots (
        chain_id    TEXT PRIMARY KEY,          -- sha256:<hex> chain ID of the layer stack
        diff_id     TEXT NOT NULL,             -- sha256:<hex> of the uncompressed layer
        parent      TEXT,                      -- chain ID of the layer below (NULL: base)
        blob        TEXT NOT NULL,             -- sha256:<hex> of the layer blob as stored
        dir         TEXT NOT NULL UNIQUE,      -- n: unpacked at snapshots/committed/<n>/fs
        size        INTEGER NOT NULL
    );
    CREATE TABLE image_layers (
        image_id    TEXT NOT NULL REFERENCES images(id),
        idx         INTEGER NOT NULL,          -- 0 = base layer
        chain_id    TEXT NOT NULL REFERENCES snapshots(chain_id),
        PRIMARY KEY (image_id, idx)
    );
    CREATE INDEX image_layers_chain ON image_layers(chain_id);
    CREATE TABLE active_snapshots (
        key         TEXT PRIMARY KEY,          -- container ID
        image_id    TEXT NOT NULL REFERENCES images(id),
        created     TEXT NOT NULL
    );
    CREATE INDEX active_image ON active_snapshots(image_id);
    ",
    // 2: repo digests recorded by pull and push (`repo@sha256:<manifest digest>`).
    "
    CREATE TABLE repo_digests (
        reference   TEXT PRIMARY KEY,          -- familiar repo @ manifest digest
        image_id    TEXT NOT NULL REFERENCES images(id)
    );
    CREATE INDEX repo_digests_image ON repo_digests(image_id);
    ",
    // 3: gzip copies of uncompressed layer blobs, made once for pushes.
    "
    CREATE TABLE push_blobs (
        blob        TEXT PRIMARY KEY,          -- sha256:<hex> of the stored (plain tar) blob
        gzip        TEXT NOT NULL              -- sha256:<hex> of its gzip copy (in blobs/)
    );
    ",
    // 4: where a blob is known to exist remotely (pulled from or pushed to), so a push to
    // another repository of the same registry can mount it instead of uploading it.
    "
    CREATE TABLE blob_sources (
        blob        TEXT NOT NULL,             -- sha256:<hex> as the registry has it
        registry    TEXT NOT NULL,             -- host[:port]; docker.io for Docker Hub
        repository  TEXT NOT NULL,             -- path in the registry: library/busybox
        PRIMARY KEY (blob, registry, repository)
    );
    ",
];

/// Opens settings every connection needs.
pub fn configure(conn: &Connection) -> Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(())
}

/// Applies the migrations not yet applied, each in its own transaction.
pub fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        let mut conn = Connection::open(&path).unwrap();
        configure(&conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        drop(conn);
        // Re-opening applies nothing again.
        let mut conn = Connection::open(&path).unwrap();
        configure(&conn).unwrap();
        migrate(&mut conn).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        for table in [
            "images",
            "tags",
            "snapshots",
            "image_layers",
            "active_snapshots",
        ] {
            let n: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 1, "{table}");
        }
    }

    #[test]
    fn every_prefix_of_the_migrations_upgrades_to_the_latest() {
        for applied in 0..=MIGRATIONS.len() {
            let mut conn = Connection::open_in_memory().unwrap();
            for sql in &MIGRATIONS[..applied] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", applied as i64)
                .unwrap();
            migrate(&mut conn).unwrap();
            let v: i64 = conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(v, MIGRATIONS.len() as i64);
        }
    }
}
