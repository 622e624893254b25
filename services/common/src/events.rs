//! A service's event log (ADR 16): what the service changed, published after the change
//! was committed, with Docker's event names (`container start`, `network connect`, ...).
//!
//! [`EventLog`] appends each event as one JSON line to `<state dir>/events.jsonl` (no
//! fsync per event), numbers it with a sequence that goes on across restarts, and
//! broadcasts it to live subscribers. The file keeps the last [`KEEP`] events: once it
//! holds twice as many it is rewritten (temp + rename) with the newest half. On open, a
//! torn last line (a kill -9 during a write) is dropped. [`EventLog::subscribe`] replays
//! the history (since a time or after a sequence number) and then follows; it is also
//! what every service serves as `berth.events.v1.Events/Subscribe` ([`server`]).
//!
//! [`Filters`] is Docker's `--filter` for events: values of one key are ORed, different
//! keys ANDed (`label` values are ANDed, as Docker does).
use std::{
    collections::{BTreeMap, VecDeque},
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use berth_proto::events::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Response, Status};

/// How many events a log keeps (the file holds between KEEP and 2 × KEEP).
pub const KEEP: usize = 10_000;
/// The gRPC service every berth service serves its log as (for health and reflection).
pub const SERVICE_NAME: &str = "berth.events.v1.Events";
/// The file name of a log in its service's state directory.
pub const FILE_NAME: &str = "events.jsonl";

/// One event, as stored (one JSON line) and streamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Event {
    pub seq: u64,
    pub time_nano: i64,
    pub service: String,
    /// Docker's type: container, image, network, volume.
    #[serde(rename = "type")]
    pub kind: String,
    pub action: String,
    pub actor_id: String,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl Event {
    /// An event to publish: the log fills in the sequence number, time and service.
    pub fn new(kind: &str, action: &str, actor_id: &str) -> Event {
        Event {
            kind: kind.to_string(),
            action: action.to_string(),
            actor_id: actor_id.to_string(),
            ..Event::default()
        }
    }

    /// Docker's `<kind> prune` event: no actor, the bytes the prune freed.
    pub fn prune(kind: &str, reclaimed: impl std::fmt::Display) -> Event {
        Event::new(kind, "prune", "").attr("reclaimed", reclaimed.to_string())
    }

    /// Adds one attribute (empty values are left out, as Docker does for most).
    pub fn attr(mut self, key: &str, value: impl Into<String>) -> Event {
        let value = value.into();
        if !value.is_empty() {
            self.attributes.insert(key.to_string(), value);
        }
        self
    }

    /// Adds attributes (a container's labels); earlier ones are not overwritten.
    pub fn attrs<'a>(mut self, pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> Event {
        for (k, v) in pairs {
            self.attributes
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        self
    }

    pub fn to_proto(&self) -> pb::Event {
        pb::Event {
            seq: self.seq,
            time_nano: self.time_nano,
            service: self.service.clone(),
            r#type: self.kind.clone(),
            action: self.action.clone(),
            actor_id: self.actor_id.clone(),
            attributes: self.attributes.clone().into_iter().collect(),
        }
    }

    pub fn from_proto(e: pb::Event) -> Event {
        Event {
            seq: e.seq,
            time_nano: e.time_nano,
            service: e.service,
            kind: e.r#type,
            action: e.action,
            actor_id: e.actor_id,
            attributes: e.attributes.into_iter().collect(),
        }
    }
}

/// Now, in Unix nanoseconds.
pub fn now_nano() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A service's event log; cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    service: String,
    /// None: kept in memory only (tests, or a state dir that cannot be written).
    path: Option<PathBuf>,
    keep: usize,
    state: Mutex<State>,
    tx: broadcast::Sender<Event>,
}

struct State {
    file: Option<File>,
    seq: u64,
    last_time: i64,
    /// Lines in the file (or events in `memory`).
    lines: usize,
    memory: VecDeque<Event>,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("service", &self.inner.service)
            .field("path", &self.inner.path)
            .finish()
    }
}

/// Reads the valid events of `path`, oldest first: a malformed line is skipped, and a
/// last line without its newline (being appended, or torn by a crash) is left out.
fn read_file(path: &Path) -> std::io::Result<Vec<Event>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut events = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 || line.last() != Some(&b'\n') {
            break;
        }
        if let Ok(e) = serde_json::from_slice::<Event>(&line) {
            events.push(e);
        }
    }
    Ok(events)
}

/// Writes `events` to `path` through a temp file and a rename.
fn write_file(path: &Path, events: &[Event]) -> std::io::Result<()> {
    let tmp = path.with_extension("jsonl.tmp");
    {
        let mut out = std::io::BufWriter::new(File::create(&tmp)?);
        for e in events {
            serde_json::to_writer(&mut out, e)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    std::fs::rename(&tmp, path)
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl EventLog {
    /// Opens (or creates) the log `<dir>/events.jsonl` of `service`.
    pub fn open(dir: &Path, service: &str) -> std::io::Result<EventLog> {
        EventLog::open_file(&dir.join(FILE_NAME), service, KEEP)
    }

    /// Opens the log at `path`, keeping the last `keep` events. Only the newest event is
    /// parsed (it carries the sequence number and time to go on from): opening stays
    /// cheap at every service start, however full the log.
    pub fn open_file(path: &Path, service: &str, keep: usize) -> std::io::Result<EventLog> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < bytes.len() {
            // Torn by a crash in the middle of a write.
            tracing::warn!(path = %path.display(), "event log had a torn last line; dropped it");
            OpenOptions::new()
                .write(true)
                .open(path)?
                .set_len(complete as u64)?;
            bytes.truncate(complete);
        }
        let newest = bytes
            .split(|&b| b == b'\n')
            .rev()
            .find_map(|line| serde_json::from_slice::<Event>(line).ok());
        let file = open_append(path)?;
        Ok(EventLog::build(
            service,
            Some(path.to_path_buf()),
            keep,
            State {
                file: Some(file),
                seq: newest.as_ref().map_or(0, |e| e.seq),
                last_time: newest.as_ref().map_or(0, |e| e.time_nano),
                lines: bytes.iter().filter(|&&b| b == b'\n').count(),
                memory: VecDeque::new(),
            },
        ))
    }

    /// Opens `<dir>/events.jsonl`, or (with a warning) a log in memory when the file
    /// cannot be used: events are never a reason for a service not to start.
    pub fn open_or_memory(dir: &Path, service: &str) -> EventLog {
        match EventLog::open(dir, service) {
            Ok(log) => log,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot open the event log; keeping events in memory");
                EventLog::memory(service)
            }
        }
    }

    /// A log kept in memory only (lost with the process).
    pub fn memory(service: &str) -> EventLog {
        EventLog::build(
            service,
            None,
            KEEP,
            State {
                file: None,
                seq: 0,
                last_time: 0,
                lines: 0,
                memory: VecDeque::new(),
            },
        )
    }

    fn build(service: &str, path: Option<PathBuf>, keep: usize, state: State) -> EventLog {
        let (tx, _) = broadcast::channel(1024);
        EventLog {
            inner: Arc::new(Inner {
                service: service.to_string(),
                path,
                keep: keep.max(1),
                state: Mutex::new(state),
                tx,
            }),
        }
    }

    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// The last sequence number given out (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.lock().seq
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers, timestamps (unless set), appends and broadcasts `event`; returns it as
    /// published. A failed write is logged: the change it reports has happened anyway.
    pub fn publish(&self, mut event: Event) -> Event {
        let mut st = self.lock();
        st.seq += 1;
        event.seq = st.seq;
        if event.time_nano == 0 {
            event.time_nano = now_nano();
        }
        // Never back in time within one log (a clock step): merges stay ordered.
        event.time_nano = event.time_nano.max(st.last_time);
        st.last_time = event.time_nano;
        event.service = self.inner.service.clone();
        match self.inner.path.as_deref() {
            None => {
                st.memory.push_back(event.clone());
                while st.memory.len() > self.inner.keep {
                    st.memory.pop_front();
                }
            }
            Some(path) => {
                let mut line = serde_json::to_vec(&event).unwrap_or_default();
                line.push(b'\n');
                let written = match st.file.as_mut() {
                    Some(f) => f.write_all(&line),
                    None => open_append(path).and_then(|mut f| {
                        let r = f.write_all(&line);
                        st.file = Some(f);
                        r
                    }),
                };
                match written {
                    Ok(()) => st.lines += 1,
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "append to the event log");
                        st.file = None;
                    }
                }
                if st.lines > 2 * self.inner.keep {
                    if let Err(e) = self.compact(path, &mut st) {
                        tracing::warn!(path = %path.display(), error = %e, "compact the event log");
                    }
                }
            }
        }
        tracing::debug!(kind = %event.kind, action = %event.action, actor = %event.actor_id, seq = event.seq, "event");
        let _ = self.inner.tx.send(event.clone());
        event
    }

    /// Rewrites the file with its newest `keep` events.
    fn compact(&self, path: &Path, st: &mut State) -> std::io::Result<()> {
        let events = read_file(path)?;
        let from = events.len().saturating_sub(self.inner.keep);
        write_file(path, &events[from..])?;
        st.file = Some(open_append(path)?);
        st.lines = events.len() - from;
        Ok(())
    }

    /// The kept events after `after_seq` (when non-zero) or at or after `since_time_nano`,
    /// oldest first.
    pub fn history(&self, since_time_nano: i64, after_seq: u64) -> Vec<Event> {
        let keep = |e: &Event| {
            if after_seq > 0 {
                e.seq > after_seq
            } else {
                e.time_nano >= since_time_nano
            }
        };
        // Nothing that new (`berth events` without --since asks from now): no file read.
        let (last_seq, last_time) = {
            let st = self.lock();
            (st.seq, st.last_time)
        };
        let nothing_newer = if after_seq > 0 {
            after_seq >= last_seq
        } else {
            since_time_nano > last_time
        };
        if nothing_newer {
            return Vec::new();
        }
        match self.inner.path.as_deref() {
            None => self
                .lock()
                .memory
                .iter()
                .filter(|e| keep(e))
                .cloned()
                .collect(),
            // Without the lock, so that publishers never wait for a reader: a line being
            // appended reads as torn and is left out (a subscriber gets it from the
            // broadcast), and a compaction renames a new file over the one being read.
            Some(path) => match read_file(path) {
                Ok(events) => events.into_iter().filter(keep).collect(),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "read the event log");
                    Vec::new()
                }
            },
        }
    }

    /// The history as in [`EventLog::history`], then (with `follow`) every new event,
    /// each once and in sequence order. Ends when the receiver is dropped.
    pub fn subscribe(
        &self,
        since_time_nano: i64,
        after_seq: u64,
        follow: bool,
    ) -> ReceiverStream<Event> {
        let (out, rx) = mpsc::channel(256);
        let log = self.clone();
        // Subscribed before the history is read: nothing published in between is lost.
        let mut live = self.inner.tx.subscribe();
        tokio::spawn(async move {
            let replay = |log: EventLog, since, after| async move {
                tokio::task::spawn_blocking(move || log.history(since, after))
                    .await
                    .unwrap_or_default()
            };
            let mut last = after_seq;
            for e in replay(log.clone(), since_time_nano, after_seq).await {
                last = last.max(e.seq);
                if out.send(e).await.is_err() {
                    return;
                }
            }
            if !follow {
                return;
            }
            loop {
                let batch = match live.recv().await {
                    Ok(e) => vec![e],
                    // Too slow for the channel: catch up from the log itself.
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        replay(log.clone(), since_time_nano, last.max(1)).await
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                for e in batch {
                    if e.seq <= last {
                        continue;
                    }
                    last = e.seq;
                    if out.send(e).await.is_err() {
                        return;
                    }
                }
            }
        });
        ReceiverStream::new(rx)
    }
}

/// The `berth.events.v1.Events` gRPC service over a log.
#[derive(Clone)]
pub struct EventsService {
    log: EventLog,
}

/// The tonic server of `log`, for a service's routes.
pub fn server(log: EventLog) -> pb::events_server::EventsServer<EventsService> {
    pb::events_server::EventsServer::new(EventsService { log })
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::events_server::Events for EventsService {
    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        use tokio_stream::StreamExt;
        let r = request.into_inner();
        let stream = self
            .log
            .subscribe(r.since_time_nano, r.after_seq, r.follow)
            .map(|e| Ok(e.to_proto()));
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The filter keys `berth events --filter` takes.
pub const FILTER_KEYS: [&str; 7] = [
    "container",
    "event",
    "image",
    "label",
    "network",
    "type",
    "volume",
];

/// Docker's event filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    by_key: BTreeMap<String, Vec<String>>,
}

impl Filters {
    /// From `key=value` pairs; an unknown key is an error naming it.
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Filters, String> {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, value) in pairs {
            let key = key.trim().to_ascii_lowercase();
            if !FILTER_KEYS.contains(&key.as_str()) {
                return Err(format!("invalid filter '{key}'"));
            }
            by_key.entry(key).or_default().push(value.to_string());
        }
        Ok(Filters { by_key })
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// No filter for `key`, or one of its values equals one of `candidates`.
    fn exact(&self, key: &str, candidates: &[&str]) -> bool {
        match self.by_key.get(key) {
            None => true,
            Some(values) => values
                .iter()
                .any(|v| candidates.iter().any(|c| !c.is_empty() && c == v)),
        }
    }

    /// No filter for `key`, or one of its values equals or is a prefix of a candidate.
    fn fuzzy(&self, key: &str, candidates: &[&str]) -> bool {
        match self.by_key.get(key) {
            None => true,
            Some(values) => values.iter().any(|v| {
                candidates
                    .iter()
                    .any(|c| !c.is_empty() && c.starts_with(v.as_str()))
            }),
        }
    }

    /// Whether an event passes (Docker's daemon/events/filter.go).
    pub fn matches(
        &self,
        kind: &str,
        action: &str,
        actor_id: &str,
        attributes: &BTreeMap<String, String>,
    ) -> bool {
        let attr = |k: &str| attributes.get(k).map(String::as_str).unwrap_or("");
        // `exec_start: sh -c ...`: a bare `exec_start` filter matches its prefix.
        let event_ok = match self.by_key.get("event") {
            None => true,
            Some(values) => values.iter().any(|v| {
                action == v
                    || (["exec_create", "exec_start", "health_status"].contains(&v.as_str())
                        && action.starts_with(v.as_str()))
            }),
        };
        // Container, network and volume filters: the actor's ID or name, by prefix.
        let names = [actor_id, attr("name")];
        let image_name = if kind == "image" {
            attr("name")
        } else {
            attr("image")
        };
        let labels_ok = self.by_key.get("label").is_none_or(|values| {
            values.iter().all(|v| match v.split_once('=') {
                Some((k, val)) => attributes.get(k).is_some_and(|a| a == val),
                None => attributes.contains_key(v.as_str()),
            })
        });
        event_ok
            && self.exact("type", &[kind])
            && self.fuzzy("container", &names)
            && self.fuzzy("network", &names)
            && self.fuzzy("volume", &names)
            && self.exact(
                "image",
                &[
                    actor_id,
                    image_name,
                    strip_tag(actor_id),
                    strip_tag(image_name),
                ],
            )
            && labels_ok
    }
}

/// `busybox:latest` → `busybox`; `host:5000/a` stays; digests are left alone.
fn strip_tag(reference: &str) -> &str {
    if reference.contains('@') || reference.starts_with("sha256:") {
        return reference;
    }
    match reference.rfind(':') {
        Some(colon) if !reference[colon..].contains('/') => &reference[..colon],
        _ => reference,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, action: &str, id: &str, attrs: &[(&str, &str)]) -> Event {
        let mut e = Event::new(kind, action, id);
        for (k, v) in attrs {
            e = e.attr(k, *v);
        }
        e
    }

    #[test]
    fn publish_numbers_and_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path(), "supervisor").unwrap();
        let a = log.publish(ev("container", "start", "abc", &[("name", "web")]));
        let b = log.publish(ev("container", "die", "abc", &[("exitCode", "0")]));
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!(a.service, "supervisor");
        assert!(a.time_nano > 0 && b.time_nano >= a.time_nano);
        drop(log);
        let log = EventLog::open(dir.path(), "supervisor").unwrap();
        assert_eq!(log.last_seq(), 2);
        let all = log.history(0, 0);
        assert_eq!(all, vec![a.clone(), b.clone()]);
        let c = log.publish(ev("container", "destroy", "abc", &[]));
        assert_eq!(c.seq, 3);
        assert_eq!(log.history(0, 2), vec![c.clone()]);
        assert_eq!(log.history(b.time_nano, 0), vec![b, c]);
    }

    #[test]
    fn a_torn_last_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path(), "network").unwrap();
        log.publish(ev("network", "create", "n1", &[]));
        log.publish(ev("network", "destroy", "n1", &[]));
        drop(log);
        let path = dir.path().join(FILE_NAME);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"seq":3,"time_nano":1,"serv"#).unwrap();
        drop(f);
        let log = EventLog::open(dir.path(), "network").unwrap();
        assert_eq!(log.last_seq(), 2);
        let e = log.publish(ev("network", "create", "n2", &[]));
        assert_eq!(e.seq, 3);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text
            .lines()
            .all(|l| serde_json::from_str::<Event>(l).is_ok()));
    }

    #[test]
    fn the_file_keeps_the_newest_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let log = EventLog::open_file(&path, "volume", 10).unwrap();
        for i in 0..35 {
            log.publish(ev("volume", "create", &format!("v{i}"), &[]));
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!((10..=20).contains(&lines), "{lines} lines");
        let all = log.history(0, 0);
        assert_eq!(all.last().unwrap().seq, 35);
        assert_eq!(all.last().unwrap().actor_id, "v34");
        // Consecutive: nothing in the middle was lost.
        assert!(all.windows(2).all(|w| w[1].seq == w[0].seq + 1));
        drop(log);
        let log = EventLog::open_file(&path, "volume", 10).unwrap();
        assert_eq!(log.publish(ev("volume", "destroy", "v0", &[])).seq, 36);
    }

    #[test]
    fn memory_logs_are_bounded_too() {
        let log = EventLog::memory("engine");
        for i in 0..(KEEP + 5) {
            log.publish(ev("container", "create", &i.to_string(), &[]));
        }
        let all = log.history(0, 0);
        assert_eq!(all.len(), KEEP);
        assert_eq!(all[0].seq, 6);
    }

    #[tokio::test]
    async fn subscribers_get_history_then_live_events_once() {
        use tokio_stream::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path(), "image-store").unwrap();
        log.publish(ev("image", "load", "sha256:1", &[]));
        let mut stream = log.subscribe(0, 0, true);
        log.publish(ev("image", "tag", "sha256:1", &[]));
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(stream.next().await.unwrap().action);
        }
        assert_eq!(got, ["load", "tag"]);
        let mut history = log.subscribe(0, 1, false);
        assert_eq!(history.next().await.unwrap().action, "tag");
        assert!(history.next().await.is_none());
    }

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn filters_follow_docker() {
        let f = |pairs: &[(&str, &str)]| Filters::new(pairs.iter().copied()).unwrap();
        let web = attrs(&[
            ("name", "web"),
            ("image", "busybox:latest"),
            ("app", "shop"),
        ]);
        let m = |f: &Filters, kind, action| f.matches(kind, action, "3f2a9c", &web);
        assert!(m(&f(&[]), "container", "start"));
        assert!(m(&f(&[("type", "container")]), "container", "start"));
        assert!(!m(&f(&[("type", "network")]), "container", "start"));
        // One key ORed.
        let two = f(&[("event", "die"), ("event", "start")]);
        assert!(m(&two, "container", "start") && m(&two, "container", "die"));
        assert!(!m(&two, "container", "create"));
        // Different keys ANDed.
        let and = f(&[("type", "container"), ("event", "die")]);
        assert!(m(&and, "container", "die") && !m(&and, "container", "start"));
        // Container: ID prefix or name prefix.
        assert!(m(&f(&[("container", "3f2a")]), "container", "die"));
        assert!(m(&f(&[("container", "web")]), "container", "die"));
        assert!(!m(&f(&[("container", "db")]), "container", "die"));
        assert!(m(
            &f(&[("container", "db"), ("container", "web")]),
            "container",
            "die"
        ));
        // Image: the container's image, with or without its tag.
        assert!(m(&f(&[("image", "busybox")]), "container", "die"));
        assert!(m(&f(&[("image", "busybox:latest")]), "container", "die"));
        assert!(!m(&f(&[("image", "alpine")]), "container", "die"));
        let img = attrs(&[("name", "busybox:latest")]);
        assert!(f(&[("image", "busybox")]).matches("image", "tag", "sha256:ab", &img));
        // Labels ANDed, key or key=value.
        assert!(m(&f(&[("label", "app")]), "container", "die"));
        assert!(m(&f(&[("label", "app=shop")]), "container", "die"));
        assert!(!m(
            &f(&[("label", "app=shop"), ("label", "tier")]),
            "container",
            "die"
        ));
        // exec_start with its command.
        assert!(f(&[("event", "exec_start")]).matches(
            "container",
            "exec_start: sh -c true",
            "x",
            &web
        ));
        // Network by name or ID.
        let net = attrs(&[
            ("name", "front"),
            ("type", "bridge"),
            ("container", "3f2a9c"),
        ]);
        assert!(f(&[("network", "front")]).matches("network", "connect", "n1", &net));
        assert!(!f(&[("network", "back")]).matches("network", "connect", "n1", &net));
        assert!(Filters::new([("bogus", "x")]).is_err());
    }

    #[test]
    fn tags_are_stripped_like_docker() {
        assert_eq!(strip_tag("busybox:latest"), "busybox");
        assert_eq!(strip_tag("host:5000/a"), "host:5000/a");
        assert_eq!(strip_tag("host:5000/a:1"), "host:5000/a");
        assert_eq!(strip_tag("sha256:abc"), "sha256:abc");
    }
}
