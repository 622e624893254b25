//! Container records in `<state>/meta.db` (SQLite, WAL): the schema, its ordered
//! migrations and the queries the lifecycle needs. Nothing else touches the database.
use std::{path::Path, sync::Mutex};

use berth_proto::supervisor::v1::{ContainerSpec, ContainerStatus};
use prost::Message;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::{Error, Result};

/// Ordered migrations; `PRAGMA user_version` is the number applied so far.
const MIGRATIONS: &[&str] = &[
    // 1: the containers table.
    "CREATE TABLE containers (
        id             TEXT PRIMARY KEY NOT NULL,
        name           TEXT NOT NULL UNIQUE,
        spec           BLOB NOT NULL,
        created        TEXT NOT NULL,
        created_nanos  INTEGER NOT NULL,
        status         INTEGER NOT NULL,
        pid            INTEGER NOT NULL DEFAULT 0,
        pid_start_time INTEGER NOT NULL DEFAULT 0,
        shim_pid       INTEGER NOT NULL DEFAULT 0,
        exit_code      INTEGER NOT NULL DEFAULT 0,
        started_at     TEXT NOT NULL DEFAULT '',
        finished_at    TEXT NOT NULL DEFAULT '',
        oom_killed     INTEGER NOT NULL DEFAULT 0,
        error          TEXT NOT NULL DEFAULT '',
        restart_count  INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX containers_created ON containers (created_nanos);",
    // 2: whether the user stopped the container through the API (restart policies).
    "ALTER TABLE containers ADD COLUMN stopped_by_user INTEGER NOT NULL DEFAULT 0;",
];

/// One container as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub spec: ContainerSpec,
    /// RFC 3339 nano.
    pub created: String,
    pub created_nanos: i64,
    pub status: ContainerStatus,
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat`, to never signal a reused PID.
    pub pid_start_time: u64,
    pub shim_pid: i32,
    pub exit_code: i32,
    pub started_at: String,
    pub finished_at: String,
    pub oom_killed: bool,
    pub error: String,
    pub restart_count: i32,
    /// Set by stop/kill, cleared by start: a restart policy does not apply.
    pub stopped_by_user: bool,
}

impl Record {
    pub fn new(
        id: String,
        name: String,
        spec: ContainerSpec,
        created: String,
        created_nanos: i64,
    ) -> Record {
        Record {
            id,
            name,
            spec,
            created,
            created_nanos,
            status: ContainerStatus::Created,
            pid: 0,
            pid_start_time: 0,
            shim_pid: 0,
            exit_code: 0,
            started_at: String::new(),
            finished_at: String::new(),
            oom_killed: false,
            error: String::new(),
            restart_count: 0,
            stopped_by_user: false,
        }
    }

    /// True while the container's process exists: running or paused (as Docker's
    /// `State.Running`).
    pub fn is_running(&self) -> bool {
        matches!(
            self.status,
            ContainerStatus::Running | ContainerStatus::Paused
        )
    }

    pub fn is_paused(&self) -> bool {
        self.status == ContainerStatus::Paused
    }
}

/// How a process ended, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub exit_code: i32,
    pub oom_killed: bool,
    pub finished_at: String,
    pub error: String,
}

pub struct Store {
    conn: Mutex<Connection>,
}

const COLUMNS: &str =
    "id, name, spec, created, created_nanos, status, pid, pid_start_time, shim_pid, \
     exit_code, started_at, finished_at, oom_killed, error, restart_count, stopped_by_user";

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    pub fn open_in_memory() -> Result<Store> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Store> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn insert(&self, r: &Record) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            &format!("INSERT INTO containers ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"),
            params![
                r.id,
                r.name,
                r.spec.encode_to_vec(),
                r.created,
                r.created_nanos,
                r.status as i32,
                r.pid,
                r.pid_start_time as i64,
                r.shim_pid,
                r.exit_code,
                r.started_at,
                r.finished_at,
                r.oom_killed,
                r.error,
                r.restart_count,
                r.stopped_by_user,
            ],
        )?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<Record>> {
        let conn = self.conn();
        let rec = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM containers WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()?;
        rec.transpose()
    }

    pub fn get_by_name(&self, name: &str) -> Result<Option<Record>> {
        let conn = self.conn();
        let rec = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM containers WHERE name = ?1"),
                [name],
                from_row,
            )
            .optional()?;
        rec.transpose()
    }

    /// IDs starting with `prefix` (at most `limit`).
    pub fn ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id FROM containers WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![prefix, limit as i64], |row| row.get::<_, String>(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Newest first. `only_running`: running, paused and restarting ones (`docker ps`).
    pub fn list(&self, only_running: bool) -> Result<Vec<Record>> {
        let conn = self.conn();
        let sql = if only_running {
            format!(
                "SELECT {COLUMNS} FROM containers WHERE status IN ({}, {}, {}) ORDER BY created_nanos DESC, id",
                ContainerStatus::Running as i32,
                ContainerStatus::Paused as i32,
                ContainerStatus::Restarting as i32
            )
        } else {
            format!("SELECT {COLUMNS} FROM containers ORDER BY created_nanos DESC, id")
        };
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], from_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row??);
        }
        Ok(out)
    }

    pub fn set_running(
        &self,
        id: &str,
        pid: i32,
        pid_start_time: u64,
        shim_pid: i32,
        started_at: &str,
    ) -> Result<()> {
        self.conn().execute(
            "UPDATE containers SET status = ?2, pid = ?3, pid_start_time = ?4, shim_pid = ?5, started_at = ?6,
                 exit_code = 0, finished_at = '', oom_killed = 0, error = '' WHERE id = ?1",
            params![id, ContainerStatus::Running as i32, pid, pid_start_time as i64, shim_pid, started_at],
        )?;
        Ok(())
    }

    /// Records the exit of the run whose first process was `pid`; false when the record
    /// is no longer that run (removed, or already recorded).
    pub fn set_exited(&self, id: &str, pid: i32, exit: &Exit) -> Result<bool> {
        self.set_ended(id, pid, exit, ContainerStatus::Exited)
    }

    /// Like [`Store::set_exited`] with another end status (`restarting`).
    pub fn set_ended(
        &self,
        id: &str,
        pid: i32,
        exit: &Exit,
        status: ContainerStatus,
    ) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE containers SET status = ?3, pid = 0, pid_start_time = 0, shim_pid = 0, exit_code = ?4,
                 oom_killed = ?5, finished_at = ?6, error = ?7
             WHERE id = ?1 AND status IN (?8, ?9) AND pid = ?2",
            params![
                id,
                pid,
                status as i32,
                exit.exit_code,
                exit.oom_killed,
                exit.finished_at,
                exit.error,
                ContainerStatus::Running as i32,
                ContainerStatus::Paused as i32,
            ],
        )?;
        Ok(n > 0)
    }

    /// Moves between `from` and `to` (pause, unpause, restarting → exited); false when
    /// the record was not in `from`.
    pub fn transition(&self, id: &str, from: ContainerStatus, to: ContainerStatus) -> Result<bool> {
        Ok(self.conn().execute(
            "UPDATE containers SET status = ?3 WHERE id = ?1 AND status = ?2",
            params![id, from as i32, to as i32],
        )? > 0)
    }

    pub fn set_stopped_by_user(&self, id: &str, stopped: bool) -> Result<()> {
        self.conn().execute(
            "UPDATE containers SET stopped_by_user = ?2 WHERE id = ?1",
            params![id, stopped],
        )?;
        Ok(())
    }

    pub fn set_restart_count(&self, id: &str, count: i32) -> Result<()> {
        self.conn().execute(
            "UPDATE containers SET restart_count = ?2 WHERE id = ?1",
            params![id, count],
        )?;
        Ok(())
    }

    /// Renames; a UNIQUE violation means the name is taken.
    pub fn rename(&self, id: &str, name: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE containers SET name = ?2 WHERE id = ?1",
            params![id, name],
        )?;
        Ok(())
    }

    /// Replaces the stored spec (network settings changed by connect/disconnect).
    pub fn set_spec(&self, id: &str, spec: &ContainerSpec) -> Result<bool> {
        Ok(self.conn().execute(
            "UPDATE containers SET spec = ?2 WHERE id = ?1",
            params![id, spec.encode_to_vec()],
        )? > 0)
    }

    /// Changes the stored spec in one step (read, `change`, write under the connection's
    /// lock), so concurrent changes to other parts of the spec are not lost. Returns the
    /// new spec; None when there is no such record.
    pub fn update_spec(
        &self,
        id: &str,
        change: impl FnOnce(&mut ContainerSpec),
    ) -> Result<Option<ContainerSpec>> {
        let conn = self.conn();
        let bytes: Option<Vec<u8>> = conn
            .query_row("SELECT spec FROM containers WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .optional()?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        let mut spec = ContainerSpec::decode(bytes.as_slice())
            .map_err(|e| Error::Internal(format!("corrupt spec in meta.db: {e}")))?;
        change(&mut spec);
        conn.execute(
            "UPDATE containers SET spec = ?2 WHERE id = ?1",
            params![id, spec.encode_to_vec()],
        )?;
        Ok(Some(spec))
    }

    /// Records with the given status.
    pub fn with_status(&self, status: ContainerStatus) -> Result<Vec<Record>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM containers WHERE status = ?1 ORDER BY created_nanos DESC, id"
        ))?;
        let rows = stmt.query_map([status as i32], from_row)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row??);
        }
        Ok(out)
    }

    /// A failed start: the status stays as it was, the error and exit code are kept.
    pub fn set_start_error(&self, id: &str, error: &str, exit_code: i32) -> Result<()> {
        self.conn().execute(
            "UPDATE containers SET error = ?2, exit_code = ?3 WHERE id = ?1",
            params![id, error, exit_code],
        )?;
        Ok(())
    }

    pub fn delete(&self, id: &str) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM containers WHERE id = ?1", [id])?
            > 0)
    }
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let applied: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if applied as usize > MIGRATIONS.len() {
        return Err(Error::Internal(format!(
            "meta.db schema version {applied} is newer than this supervisor ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Result<Record>> {
    let spec: Vec<u8> = row.get(2)?;
    let status: i32 = row.get(5)?;
    let spec = match ContainerSpec::decode(spec.as_slice()) {
        Ok(spec) => spec,
        Err(e) => {
            return Ok(Err(Error::Internal(format!(
                "corrupt spec in meta.db: {e}"
            ))))
        }
    };
    Ok(Ok(Record {
        id: row.get(0)?,
        name: row.get(1)?,
        spec,
        created: row.get(3)?,
        created_nanos: row.get(4)?,
        status: ContainerStatus::try_from(status).unwrap_or(ContainerStatus::Dead),
        pid: row.get(6)?,
        pid_start_time: row.get::<_, i64>(7)? as u64,
        shim_pid: row.get(8)?,
        exit_code: row.get(9)?,
        started_at: row.get(10)?,
        finished_at: row.get(11)?,
        oom_killed: row.get(12)?,
        error: row.get(13)?,
        restart_count: row.get(14)?,
        stopped_by_user: row.get(15)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, name: &str, nanos: i64) -> Record {
        let spec = ContainerSpec {
            image: "busybox".into(),
            cmd: vec!["sh".into()],
            ..Default::default()
        };
        Record::new(
            id.into(),
            name.into(),
            spec,
            "2026-01-01T00:00:00Z".into(),
            nanos,
        )
    }

    #[test]
    fn migrations_apply_once_and_set_user_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let store = Store::open(&path).unwrap();
            store.insert(&rec("aa", "one", 1)).unwrap();
        }
        // Re-opening runs no migration twice and keeps the data.
        let store = Store::open(&path).unwrap();
        let version: i64 = store
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version as usize, MIGRATIONS.len());
        let mode: String = store
            .conn()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(store.get("aa").unwrap().unwrap().name, "one");
    }

    #[test]
    fn a_version_1_database_is_upgraded_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO containers (id, name, spec, created, created_nanos, status, restart_count)
                 VALUES ('aa', 'old', x'', 't', 1, 6, 4)",
                [],
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let r = store.get("aa").unwrap().unwrap();
        assert_eq!(
            (r.name.as_str(), r.restart_count, r.stopped_by_user),
            ("old", 4, false)
        );
        store.set_stopped_by_user("aa", true).unwrap();
        store.set_restart_count("aa", 5).unwrap();
        assert!(store
            .transition("aa", ContainerStatus::Exited, ContainerStatus::Restarting)
            .unwrap());
        assert!(!store
            .transition("aa", ContainerStatus::Exited, ContainerStatus::Restarting)
            .unwrap());
        store.rename("aa", "new").unwrap();
        let r = store.get_by_name("new").unwrap().unwrap();
        assert_eq!(
            (r.restart_count, r.stopped_by_user, r.status),
            (5, true, ContainerStatus::Restarting)
        );
        assert_eq!(
            store
                .with_status(ContainerStatus::Restarting)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn paused_counts_as_running_and_can_exit() {
        let store = Store::open_in_memory().unwrap();
        store.insert(&rec("p1", "p", 1)).unwrap();
        store.set_running("p1", 42, 7, 41, "t").unwrap();
        assert!(store
            .transition("p1", ContainerStatus::Running, ContainerStatus::Paused)
            .unwrap());
        assert_eq!(store.list(true).unwrap().len(), 1);
        assert!(store.get("p1").unwrap().unwrap().is_running());
        let exit = Exit {
            exit_code: 137,
            oom_killed: false,
            finished_at: "t2".into(),
            error: String::new(),
        };
        assert!(store.set_exited("p1", 42, &exit).unwrap());
        assert_eq!(
            store.get("p1").unwrap().unwrap().status,
            ContainerStatus::Exited
        );
    }

    #[test]
    fn records_round_trip_and_transition() {
        let store = Store::open_in_memory().unwrap();
        store.insert(&rec("abc1", "web", 1)).unwrap();
        store.insert(&rec("abc2", "db", 2)).unwrap();
        assert!(
            store.insert(&rec("abc3", "web", 3)).is_err(),
            "names are unique"
        );
        assert_eq!(store.get_by_name("web").unwrap().unwrap().id, "abc1");
        assert_eq!(
            store.ids_with_prefix("abc", 5).unwrap(),
            vec!["abc1", "abc2"]
        );
        assert_eq!(store.ids_with_prefix("abc1", 5).unwrap(), vec!["abc1"]);
        let names: Vec<_> = store
            .list(false)
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, vec!["db", "web"], "newest first");

        store.set_running("abc1", 42, 777, 41, "t1").unwrap();
        let r = store.get("abc1").unwrap().unwrap();
        assert_eq!(
            (r.status, r.pid, r.pid_start_time, r.shim_pid),
            (ContainerStatus::Running, 42, 777, 41)
        );
        assert_eq!(store.list(true).unwrap().len(), 1);

        let exit = Exit {
            exit_code: 3,
            oom_killed: true,
            finished_at: "t2".into(),
            error: String::new(),
        };
        assert!(
            !store.set_exited("abc1", 43, &exit).unwrap(),
            "another run's pid"
        );
        assert!(store.set_exited("abc1", 42, &exit).unwrap());
        assert!(
            !store.set_exited("abc1", 42, &exit).unwrap(),
            "recorded once"
        );
        let r = store.get("abc1").unwrap().unwrap();
        assert_eq!(
            (r.status, r.exit_code, r.oom_killed, r.pid),
            (ContainerStatus::Exited, 3, true, 0)
        );
        assert_eq!(r.spec.cmd, vec!["sh"]);

        store.set_start_error("abc2", "boom", 127).unwrap();
        let r = store.get("abc2").unwrap().unwrap();
        assert_eq!(
            (r.status, r.error.as_str(), r.exit_code),
            (ContainerStatus::Created, "boom", 127)
        );
        assert!(store.delete("abc2").unwrap());
        assert!(store.get("abc2").unwrap().is_none());
    }
}
