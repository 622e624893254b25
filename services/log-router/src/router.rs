//! The containers' logs: opening, ingesting lines with checkpoints, reading, closing.
//!
//! State per container in `<state>/containers/<id>/`: the driver's files (json-file:
//! `<id>-json.log`), `meta.json` (the [`LogConfig`]) and `ingest.seq`: the next sequence
//! number expected (u64 big-endian), followed by the length of the current log file at
//! that point (u64 big-endian). After a crash the file is cut back to that length and the
//! shim resends from that sequence number, so every line is written exactly once.
use std::{
    collections::HashMap,
    fs::{self, File, OpenOptions},
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use berth_wire::LogRecord;
use tokio::sync::{mpsc, watch};

use crate::{
    error::{Error, Result},
    logger::{self, LogConfig, LogReader, Logger, Message, STDERR, STDOUT},
    remote::{Delivery, DeliveryStats},
};

/// Whether a log is being written, for followers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveState {
    /// Ingest connections open that have not sent END.
    pub writers: usize,
    /// Bumped after each batch is written.
    pub version: u64,
    /// CloseLog removed the log.
    pub closed: bool,
}

impl LiveState {
    pub fn is_live(&self) -> bool {
        self.writers > 0 && !self.closed
    }
}

struct Writer {
    logger: Box<dyn Logger>,
    next_seq: u64,
    seq_file: File,
}

impl Writer {
    fn checkpoint(&mut self, position: u64) -> io::Result<()> {
        let mut buf = [0u8; 16];
        buf[..8].copy_from_slice(&self.next_seq.to_be_bytes());
        buf[8..].copy_from_slice(&position.to_be_bytes());
        self.seq_file.write_all_at(&buf, 0)
    }
}

/// What is known of a log without its writer, which may be blocked on a full remote
/// queue for as long as the peer is down.
struct Meta {
    config: LogConfig,
    delivery: Option<Delivery>,
    reader: Option<Arc<dyn LogReader>>,
}

/// One container's log.
pub struct ContainerLog {
    pub id: String,
    dir: PathBuf,
    writer: Mutex<Writer>,
    meta: Mutex<Meta>,
    state: watch::Sender<LiveState>,
}

/// What InspectLog reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogInfo {
    pub driver: String,
    /// The file `logs` reads, if one is kept.
    pub log_path: Option<PathBuf>,
    /// For remote drivers.
    pub stats: Option<DeliveryStats>,
}

impl ContainerLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn meta(&self) -> std::sync::MutexGuard<'_, Meta> {
        self.meta.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Releases a writer blocked on the remote queue (its line comes back from the shim)
    /// and lets the queued lines go out in the background.
    fn close_delivery(&self) {
        if let Some(d) = self.meta().delivery.take() {
            d.close();
        }
    }

    /// The next sequence number this log needs (RESUME). Waits for a batch being
    /// written: call it off the async workers.
    pub fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }

    pub fn state(&self) -> LiveState {
        *self.state.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<LiveState> {
        self.state.subscribe()
    }

    /// Marks a writer connected until the guard is dropped or [`LiveGuard::end`] runs.
    pub fn connect(self: &Arc<Self>) -> LiveGuard {
        self.state.send_modify(|s| s.writers += 1);
        LiveGuard {
            log: Some(self.clone()),
        }
    }

    /// Writes the records not yet written (resends are skipped), flushes and
    /// checkpoints; returns the last sequence number written, if any ever was. May block
    /// (disk, a full remote queue in blocking mode): call it off the async workers.
    pub fn write_batch(&self, records: &[LogRecord]) -> io::Result<Option<u64>> {
        let mut w = self.lock();
        let mut wrote = false;
        for r in records {
            if r.seq < w.next_seq {
                continue;
            }
            if w.logger.wants_rotation() {
                let pos = w.logger.flush()?;
                w.checkpoint(pos)?;
                w.logger.rotate()?;
                w.checkpoint(0)?;
            }
            w.logger.log(&Message {
                stream: if r.stream == STDERR { STDERR } else { STDOUT },
                line: r.line.clone(),
                time_unix_nano: r.time_unix_nano,
            })?;
            w.next_seq = r.seq + 1;
            wrote = true;
        }
        if wrote {
            let pos = w.logger.flush()?;
            w.checkpoint(pos)?;
        }
        let last = w.next_seq.checked_sub(1);
        drop(w);
        if wrote {
            self.state.send_modify(|s| s.version += 1);
        }
        Ok(last)
    }

    fn reader(&self) -> Option<Arc<dyn LogReader>> {
        self.meta().reader.clone()
    }
}

/// Keeps a log live while its ingest connection is open.
pub struct LiveGuard {
    log: Option<Arc<ContainerLog>>,
}

impl LiveGuard {
    /// END: the container's output is finished.
    pub fn end(&mut self) {
        if let Some(log) = self.log.take() {
            log.state.send_modify(|s| s.writers -= 1);
        }
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.end();
    }
}

/// What ReadLogs asks for.
#[derive(Debug, Clone, Default)]
pub struct ReadRequest {
    pub follow: bool,
    /// Last N lines; `None`: all.
    pub tail: Option<usize>,
    /// Unix nanoseconds, 0: unbounded.
    pub since: i64,
    pub until: i64,
    pub stdout: bool,
    pub stderr: bool,
}

impl ReadRequest {
    fn wants(&self, m: &Message) -> bool {
        let stream_ok = (!self.stdout && !self.stderr)
            || (self.stdout && m.stream == STDOUT)
            || (self.stderr && m.stream == STDERR);
        stream_ok && (self.since == 0 || m.time_unix_nano >= self.since)
    }

    fn past_until(&self, m: &Message) -> bool {
        self.until != 0 && m.time_unix_nano > self.until
    }
}

pub struct Router {
    dir: PathBuf,
    logs: Mutex<HashMap<String, Arc<ContainerLog>>>,
}

fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty() && id.len() <= 255 && !id.starts_with('.') && !id.contains(['/', '\0']);
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid container id: {id:?}"
        )))
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, data)?;
    fs::rename(&tmp, path)
}

impl Router {
    /// Opens the router's state in `state_dir`, loading every container's log.
    pub fn open(state_dir: &Path) -> Result<Router> {
        let dir = state_dir.join("containers");
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let router = Router {
            dir: dir.clone(),
            logs: Mutex::new(HashMap::new()),
        };
        let entries =
            fs::read_dir(&dir).map_err(|e| Error::io(format!("read {}", dir.display()), e))?;
        for entry in entries.flatten() {
            let Some(id) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if check_id(&id).is_err() || !entry.path().is_dir() {
                continue;
            }
            match router.load(&id) {
                Ok(log) => {
                    router.map().insert(id, log);
                }
                Err(e) => tracing::warn!(container = %id, error = %e, "cannot load log"),
            }
        }
        Ok(router)
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ContainerLog>>> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn load(&self, id: &str) -> Result<Arc<ContainerLog>> {
        let dir = self.container_dir(id);
        let config: LogConfig = match fs::read(dir.join("meta.json")) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_default(),
            Err(_) => LogConfig::default(),
        };
        let seq = fs::read(dir.join("ingest.seq")).unwrap_or_default();
        let next_seq = seq
            .get(..8)
            .map_or(0, |b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
        let position = seq
            .get(8..16)
            .map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes")));
        let mut logger = new_logger(&config, &dir, id)?;
        if let Some(pos) = position {
            logger
                .recover(pos)
                .map_err(|e| Error::io(format!("recover log of {id}"), e))?;
        }
        self.make(id, dir, config, logger, next_seq)
    }

    fn make(
        &self,
        id: &str,
        dir: PathBuf,
        config: LogConfig,
        mut logger: Box<dyn Logger>,
        next_seq: u64,
    ) -> Result<Arc<ContainerLog>> {
        let seq_path = dir.join("ingest.seq");
        let seq_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&seq_path)
            .map_err(|e| Error::io(format!("open {}", seq_path.display()), e))?;
        let pos = logger.flush().map_err(|e| Error::io("flush log", e))?;
        let delivery = logger.delivery();
        let reader = logger.reader();
        let mut writer = Writer {
            logger,
            next_seq,
            seq_file,
        };
        writer
            .checkpoint(pos)
            .map_err(|e| Error::io(format!("write {}", seq_path.display()), e))?;
        Ok(Arc::new(ContainerLog {
            id: id.to_string(),
            dir,
            writer: Mutex::new(writer),
            meta: Mutex::new(Meta {
                config,
                delivery,
                reader,
            }),
            state: watch::Sender::new(LiveState::default()),
        }))
    }

    fn create(&self, id: &str, config: LogConfig) -> Result<Arc<ContainerLog>> {
        let dir = self.container_dir(id);
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let meta = serde_json::to_vec_pretty(&config).expect("config serializes");
        write_atomic(&dir.join("meta.json"), &meta)
            .map_err(|e| Error::io(format!("write meta of {id}"), e))?;
        let logger = new_logger(&config, &dir, id)?;
        self.make(id, dir, config, logger, 0)
    }

    /// Sets up (idempotently) the log of `id`; an existing log takes the new
    /// configuration. Returns the json-file path.
    pub fn open_log(&self, id: &str, mut config: LogConfig) -> Result<PathBuf> {
        check_id(id)?;
        config.driver = logger::driver_name(&config.driver)?.to_string();
        logger::validate(&config)?;
        let mut map = self.map();
        if let Some(log) = map.get(id).cloned() {
            drop(map);
            return self.reconfigure(&log, config);
        }
        logger::check_peer(&config, id)?;
        let log = self.create(id, config)?;
        let path = logger::log_path(&log.dir, id);
        map.insert(id.to_string(), log);
        Ok(path)
    }

    /// Gives `log` a new configuration. The old remote delivery is closed before the
    /// writer is taken, so a writer blocked on its full queue cannot hold this up.
    fn reconfigure(&self, log: &ContainerLog, config: LogConfig) -> Result<PathBuf> {
        let id = &log.id;
        let path = logger::log_path(&log.dir, id);
        if log.meta().config == config {
            return Ok(path);
        }
        // Dialling may take a while: not under the lock InspectLog and ReadLogs take.
        logger::check_peer(&config, id)?;
        let logger = new_logger(&config, &log.dir, id)?;
        let mut meta = log.meta();
        let meta_json = serde_json::to_vec_pretty(&config).expect("config serializes");
        write_atomic(&log.dir.join("meta.json"), &meta_json)
            .map_err(|e| Error::io(format!("write meta of {id}"), e))?;
        if let Some(d) = meta.delivery.take() {
            d.close();
        }
        let delivery = logger.delivery();
        let reader = logger.reader();
        let old = {
            let mut w = log.lock();
            if let Err(e) = w.logger.flush() {
                tracing::warn!(container = %id, error = %e, "flush log before reconfiguring");
            }
            std::mem::replace(&mut w.logger, logger)
        };
        drop(old);
        meta.config = config;
        meta.delivery = delivery;
        meta.reader = reader;
        Ok(path)
    }

    /// Driver, stored file and delivery counters of `id`'s log, without waiting on its
    /// writer.
    pub fn inspect_log(&self, id: &str) -> Result<LogInfo> {
        let log = self.get(id)?;
        let meta = log.meta();
        Ok(LogInfo {
            driver: logger::driver_name(&meta.config.driver)
                .map_or_else(|_| meta.config.driver.clone(), str::to_string),
            log_path: logger::stored_path(&meta.config, &log.dir, id)?,
            stats: meta.delivery.as_ref().map(Delivery::stats),
        })
    }

    /// The log for an ingest connection, created with json-file defaults when the
    /// container is unknown so no line is dropped.
    pub fn ingest_log(&self, id: &str) -> Result<Arc<ContainerLog>> {
        check_id(id)?;
        let mut map = self.map();
        if let Some(log) = map.get(id) {
            return Ok(log.clone());
        }
        tracing::info!(container = %id, "log created on first output");
        let log = self.create(id, LogConfig::default())?;
        map.insert(id.to_string(), log.clone());
        Ok(log)
    }

    pub fn get(&self, id: &str) -> Result<Arc<ContainerLog>> {
        self.map()
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(id.to_string()))
    }

    /// Removes the log and its files; unknown logs succeed.
    pub fn close_log(&self, id: &str) -> Result<()> {
        check_id(id)?;
        let log = self.map().remove(id);
        if let Some(log) = &log {
            log.close_delivery();
            log.state.send_modify(|s| s.closed = true);
        }
        let dir = self.container_dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove {}", dir.display()), e)),
        }
    }

    /// Streams the log's lines as asked, one by one (see [`Router::read_log_chunks`]).
    pub fn read_logs(&self, id: &str, req: ReadRequest) -> Result<mpsc::Receiver<Result<Message>>> {
        let mut chunks = self.read_log_chunks(id, req)?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            while let Some(chunk) = chunks.recv().await {
                let msgs = match chunk {
                    Ok(msgs) => msgs,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                for m in msgs {
                    if tx.send(Ok(m)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }

    /// Streams the log's lines as asked in chunks of up to [`CHUNK_LINES`] (one channel
    /// send per chunk, not per line: a million lines cost a thousand sends); with
    /// `follow`, goes on until the log is not live and everything written has been sent.
    pub fn read_log_chunks(
        &self,
        id: &str,
        req: ReadRequest,
    ) -> Result<mpsc::Receiver<Result<Vec<Message>>>> {
        let log = self.get(id)?;
        let reader = log.reader().ok_or_else(|| {
            // Docker's words, so scripts that match them keep working.
            Error::InvalidArgument(format!(
                "configured logging driver does not support reading (container {id})"
            ))
        })?;
        let (tx, rx) = mpsc::channel(16);
        let mut state = log.subscribe();
        state.borrow_and_update();
        tokio::spawn(async move {
            let _log = log;
            let r = reader.clone();
            let (tail, since) = (req.tail, req.since);
            let existing =
                tokio::task::spawn_blocking(move || r.read_existing_since(tail, since)).await;
            let (msgs, mut cursor) = match existing {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    let _ = tx.send(Err(Error::io("read log", e))).await;
                    return;
                }
                Err(_) => return,
            };
            if !send_all(&tx, &req, msgs).await || !req.follow {
                return;
            }
            loop {
                let live = state.borrow_and_update().is_live();
                let r = reader.clone();
                let res = tokio::task::spawn_blocking(move || {
                    let out = r.read_new(&mut cursor);
                    (out, cursor)
                })
                .await;
                let Ok((msgs, c)) = res else { return };
                cursor = c;
                match msgs {
                    Ok(m) => {
                        if !send_all(&tx, &req, m).await {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Error::io("read log", e))).await;
                        return;
                    }
                }
                if !live {
                    return;
                }
                tokio::select! {
                    changed = state.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(rx)
    }
}

/// [`logger::new_logger`] in a span naming the container, which remote drivers' delivery
/// tasks keep for their warnings.
fn new_logger(config: &LogConfig, dir: &Path, id: &str) -> Result<Box<dyn Logger>> {
    tracing::info_span!("log", container = %id, driver = %config.driver)
        .in_scope(|| logger::new_logger(config, dir, id))
}

/// Lines per chunk sent by [`Router::read_log_chunks`].
pub const CHUNK_LINES: usize = 1024;

/// Sends what the request wants in chunks; false when the stream should end (receiver
/// gone or `until` passed).
async fn send_all(
    tx: &mpsc::Sender<Result<Vec<Message>>>,
    req: &ReadRequest,
    msgs: Vec<Message>,
) -> bool {
    let mut chunk = Vec::with_capacity(CHUNK_LINES.min(msgs.len()));
    for m in msgs {
        if req.past_until(&m) {
            if !chunk.is_empty() {
                let _ = tx.send(Ok(chunk)).await;
            }
            return false;
        }
        if req.wants(&m) {
            chunk.push(m);
            if chunk.len() == CHUNK_LINES {
                let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_LINES));
                if tx.send(Ok(full)).await.is_err() {
                    return false;
                }
            }
        }
    }
    chunk.is_empty() || tx.send(Ok(chunk)).await.is_ok()
}
