//! Delivery to remote drivers (fluentd, awslogs, syslog): [`RemoteLogger`] queues a
//! container's lines in memory and one tokio task per container hands them to the
//! driver's [`Sink`] in batches, retrying with backoff. The ingest path never waits on the
//! network except in `mode=blocking` (Docker's default) when the queue is full;
//! `mode=non-blocking` drops and counts instead.
//!
//! Closing (drop, [`Delivery::close`]) never waits: writers blocked on a full queue are
//! released with an error (the shim resends those lines), and the task gets
//! [`CLOSE_GRACE`] to deliver what is queued before it gives up and closes the sink.
use std::{
    collections::{BTreeMap, VecDeque},
    future::Future,
    io,
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use tokio::sync::{watch, Notify};

use crate::{
    error::{Error, Result},
    logger::{LogReader, Logger, Message},
};

/// How long a closed log's task may go on delivering what was queued.
pub const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// A reasonable `queue_limit_bytes` for drivers without a better idea.
pub const DEFAULT_QUEUE_LIMIT: usize = 1 << 20;
/// Docker's default `max-buffer-size`.
pub const DEFAULT_MAX_BUFFER: usize = 1 << 20;
/// Non-blocking drops are reported at most this often (a full buffer drops many lines).
const DROP_WARN_EVERY: Duration = Duration::from_secs(5);

/// A remote destination. Runs on the container's delivery task.
pub trait Sink: Send + 'static {
    /// The driver name, for logs and errors ("fluentd").
    fn name(&self) -> &'static str;
    /// Sends one batch, in order. An error makes the caller retry the same batch after a
    /// backoff (reconnecting is the sink's job inside `send`).
    fn send<'a>(
        &'a mut self,
        batch: &'a [Message],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a;
    /// How big one batch may be.
    fn batch_limits(&self) -> BatchLimits {
        BatchLimits::default()
    }
    /// No more lines will come (the log is closed or reconfigured): finish politely.
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The most one [`Sink::send`] takes, and how long to wait for a batch to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_lines: usize,
    /// Sum of line lengths.
    pub max_bytes: usize,
    /// How long a partial batch may wait for more lines before it is sent.
    pub linger: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_lines: 1024,
            max_bytes: 1 << 20,
            linger: Duration::ZERO,
        }
    }
}

/// Retry policy for a failed batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// First wait; doubles after every failure up to `max_wait`.
    pub initial: Duration,
    pub max_wait: Duration,
    /// Failures of one batch before it is dropped (and counted), at least 1; `None`:
    /// retry forever.
    pub max_retries: Option<u32>,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            initial: Duration::from_secs(1),
            max_wait: Duration::from_secs(30),
            max_retries: None,
        }
    }
}

/// Docker's `mode` log option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Never drops: when the queue is full, writing a line waits (the shim then stops
    /// reading the container, which blocks on its output).
    Blocking,
    /// Never waits: when `max_buffer_bytes` of lines are queued, new lines are dropped
    /// and counted.
    NonBlocking { max_buffer_bytes: usize },
}

/// The options every driver accepts (`mode`, `max-buffer-size`), split from the rest.
/// Bad values are refused naming the key and value.
pub fn split_delivery_options(
    opts: &BTreeMap<String, String>,
) -> Result<(Mode, BTreeMap<String, String>)> {
    let mut rest = opts.clone();
    let mode = rest.remove("mode").unwrap_or_default();
    let size = rest.remove("max-buffer-size").filter(|v| !v.is_empty());
    let mode = match mode.as_str() {
        "" | "blocking" => {
            if size.is_some() {
                // Docker's words.
                return Err(Error::InvalidArgument(
                    "logger: max-buffer-size option is only supported with 'mode=non-blocking'"
                        .to_string(),
                ));
            }
            Mode::Blocking
        }
        "non-blocking" => {
            let max_buffer_bytes = match size {
                None => DEFAULT_MAX_BUFFER,
                Some(v) => crate::jsonfile::parse_size(&v)
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!("invalid log opt 'max-buffer-size': {v:?}"))
                    })?,
            };
            Mode::NonBlocking { max_buffer_bytes }
        }
        other => {
            return Err(Error::InvalidArgument(format!(
                "invalid log opt 'mode': {other:?} (blocking or non-blocking)"
            )))
        }
    };
    Ok((mode, rest))
}

/// Counters of a remote log, for InspectLog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    pub pending_lines: u64,
    pub delivered_lines: u64,
    pub dropped_lines: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// No new lines; the task delivers what is queued within [`CLOSE_GRACE`].
    Closing,
    /// Everything still queued is dropped now.
    Aborted,
}

#[derive(Default)]
struct Queue {
    lines: VecDeque<Message>,
    /// Line bytes queued plus those of the batch being sent: what bounds memory.
    bytes: usize,
    /// Lines of the batch being sent.
    in_flight: usize,
    closed: bool,
    delivered: u64,
    dropped: u64,
    drop_warned_at: Option<Instant>,
}

/// State shared by the writers, the delivery task and [`Delivery`] handles.
struct Shared {
    driver: &'static str,
    mode: Mode,
    /// Blocking mode: writers wait while this many bytes are queued.
    queue_limit: usize,
    queue: Mutex<Queue>,
    /// Writers blocked on a full queue wait here.
    space: Condvar,
    /// Wakes the task: a line arrived or the log closed.
    wake: Notify,
    phase: watch::Sender<Phase>,
    /// The span current at spawn (the router's, naming the container).
    span: tracing::Span,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stats(&self) -> DeliveryStats {
        let q = self.lock();
        DeliveryStats {
            pending_lines: (q.lines.len() + q.in_flight) as u64,
            delivered_lines: q.delivered,
            dropped_lines: q.dropped,
        }
    }

    fn shut(&self, phase: Phase) {
        self.lock().closed = true;
        self.space.notify_all();
        // Aborting may follow closing; nothing goes back.
        self.phase.send_if_modified(|p| {
            let change = *p != Phase::Aborted && *p != phase;
            if change {
                *p = phase;
            }
            change
        });
        self.wake.notify_one();
    }
}

/// A handle on a remote log's delivery, usable without the log's writer (which may be
/// blocked on a full queue).
#[derive(Clone)]
pub struct Delivery {
    shared: Arc<Shared>,
}

impl Delivery {
    pub fn stats(&self) -> DeliveryStats {
        self.shared.stats()
    }

    /// Stops accepting lines and releases blocked writers; what is queued still gets
    /// [`CLOSE_GRACE`] in the background.
    pub fn close(&self) {
        self.shared.shut(Phase::Closing);
    }

    /// Like [`Delivery::close`] but drops what is queued at once.
    pub fn abort(&self) {
        self.shared.shut(Phase::Aborted);
    }
}

/// A [`Logger`] that queues lines for a [`Sink`].
pub struct RemoteLogger {
    shared: Arc<Shared>,
}

impl RemoteLogger {
    /// Starts the delivery task of `sink` on the current tokio runtime.
    /// `queue_limit_bytes` bounds the queue in blocking mode (non-blocking mode uses its
    /// own `max_buffer_bytes`).
    pub fn spawn<S: Sink>(
        sink: S,
        mode: Mode,
        retry: Retry,
        queue_limit_bytes: usize,
    ) -> Result<RemoteLogger> {
        let driver = sink.name();
        let rt = tokio::runtime::Handle::try_current().map_err(|e| {
            Error::io(
                format!("start {driver} log delivery"),
                io::Error::other(format!("no tokio runtime: {e}")),
            )
        })?;
        let shared = Arc::new(Shared {
            driver,
            mode,
            queue_limit: match mode {
                Mode::Blocking => queue_limit_bytes,
                Mode::NonBlocking { max_buffer_bytes } => max_buffer_bytes,
            },
            queue: Mutex::new(Queue::default()),
            space: Condvar::new(),
            wake: Notify::new(),
            phase: watch::Sender::new(Phase::Open),
            span: tracing::Span::current(),
        });
        let task = run(shared.clone(), sink, retry);
        rt.spawn(tracing::Instrument::instrument(task, shared.span.clone()));
        Ok(RemoteLogger { shared })
    }

    pub fn stats(&self) -> DeliveryStats {
        self.shared.stats()
    }

    /// A handle to close the delivery or read its counters from elsewhere.
    pub fn delivery(&self) -> Delivery {
        Delivery {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for RemoteLogger {
    fn drop(&mut self) {
        self.shared.shut(Phase::Closing);
    }
}

fn closed_error(driver: &str) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, format!("{driver} log is closed"))
}

impl Logger for RemoteLogger {
    fn name(&self) -> &'static str {
        self.shared.driver
    }

    /// Queues the line. Blocking mode waits (on this thread: callers run it off the async
    /// workers) while the queue is full; a close releases the wait with an error so the
    /// shim resends the line to whatever logger comes next.
    fn log(&mut self, msg: &Message) -> io::Result<()> {
        let s = &*self.shared;
        let len = msg.line.len();
        let mut q = s.lock();
        match s.mode {
            Mode::Blocking => {
                while !q.closed && q.bytes >= s.queue_limit {
                    q = s.space.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                if q.closed {
                    return Err(closed_error(s.driver));
                }
            }
            Mode::NonBlocking { .. } => {
                if q.closed {
                    return Err(closed_error(s.driver));
                }
                // An empty queue takes any line, so a huge one is not always lost.
                if q.bytes + len > s.queue_limit && q.bytes > 0 {
                    q.dropped += 1;
                    let now = Instant::now();
                    if q.drop_warned_at
                        .is_none_or(|t| now.duration_since(t) >= DROP_WARN_EVERY)
                    {
                        q.drop_warned_at = Some(now);
                        let _g = s.span.enter();
                        tracing::warn!(
                            driver = s.driver,
                            dropped_total = q.dropped,
                            "mode=non-blocking buffer full: dropping log lines"
                        );
                    }
                    return Ok(());
                }
            }
        }
        q.bytes += len;
        q.lines.push_back(msg.clone());
        drop(q);
        s.wake.notify_one();
        Ok(())
    }

    fn flush(&mut self) -> io::Result<u64> {
        Ok(0)
    }

    fn reader(&self) -> Option<Arc<dyn LogReader>> {
        None
    }

    fn stats(&self) -> Option<DeliveryStats> {
        Some(self.shared.stats())
    }

    fn delivery(&self) -> Option<Delivery> {
        Some(RemoteLogger::delivery(self))
    }
}

/// The delivery task: delivers until closed and drained, or until the grace after a
/// close runs out; then counts what is left as dropped and closes the sink.
async fn run<S: Sink>(shared: Arc<Shared>, mut sink: S, retry: Retry) {
    let mut phase = shared.phase.subscribe();
    {
        let work = deliver(&shared, &mut sink, retry);
        let deadline = async {
            let _ = phase.wait_for(|p| *p != Phase::Open).await;
            if *phase.borrow() == Phase::Closing {
                let aborted = phase.wait_for(|p| *p == Phase::Aborted);
                let _ = tokio::time::timeout(CLOSE_GRACE, aborted).await;
            }
        };
        tokio::select! {
            () = work => {}
            () = deadline => {}
        }
    }
    let left = {
        let mut q = shared.lock();
        let n = (q.lines.len() + q.in_flight) as u64;
        q.lines.clear();
        q.in_flight = 0;
        q.bytes = 0;
        q.dropped += n;
        n
    };
    shared.space.notify_all();
    if left > 0 {
        tracing::warn!(
            driver = shared.driver,
            dropped = left,
            "log closed before its lines were delivered: dropping them"
        );
    }
    if tokio::time::timeout(CLOSE_GRACE, sink.close())
        .await
        .is_err()
    {
        tracing::debug!(driver = shared.driver, "sink close timed out");
    }
}

/// Called between batches, when `bytes` counts only the queued lines.
fn batch_full(q: &Queue, limits: BatchLimits) -> bool {
    q.lines.len() >= limits.max_lines || q.bytes >= limits.max_bytes
}

/// Takes the next batch off the queue (at least one line); it stays counted in `bytes`
/// until settled.
fn take_batch(q: &mut Queue, limits: BatchLimits) -> (Vec<Message>, usize) {
    let mut batch = Vec::new();
    let mut bytes = 0;
    while let Some(m) = q.lines.front() {
        let full = batch.len() >= limits.max_lines.max(1)
            || (!batch.is_empty() && bytes + m.line.len() > limits.max_bytes);
        if full {
            break;
        }
        bytes += m.line.len();
        batch.extend(q.lines.pop_front());
    }
    q.in_flight = batch.len();
    (batch, bytes)
}

/// Returns once the log is closed and everything queued has been handled.
async fn deliver<S: Sink>(shared: &Shared, sink: &mut S, retry: Retry) {
    let limits = sink.batch_limits();
    loop {
        // `notify_one` keeps a permit, so a line queued between the check and the wait
        // is not missed.
        loop {
            {
                let q = shared.lock();
                if !q.lines.is_empty() {
                    break;
                }
                if q.closed {
                    return;
                }
            }
            shared.wake.notified().await;
        }
        if !limits.linger.is_zero() {
            let until = tokio::time::Instant::now() + limits.linger;
            loop {
                {
                    let q = shared.lock();
                    if q.closed || batch_full(&q, limits) {
                        break;
                    }
                }
                if tokio::time::timeout_at(until, shared.wake.notified())
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
        let (batch, bytes) = take_batch(&mut shared.lock(), limits);
        let delivered = send_with_retry(shared, sink, retry, &batch).await;
        {
            let mut q = shared.lock();
            q.in_flight = 0;
            q.bytes -= bytes;
            if delivered {
                q.delivered += batch.len() as u64;
            } else {
                q.dropped += batch.len() as u64;
            }
        }
        shared.space.notify_all();
    }
}

/// Sends `batch` until it is accepted or the retries run out (false: dropped).
async fn send_with_retry<S: Sink>(
    shared: &Shared,
    sink: &mut S,
    retry: Retry,
    batch: &[Message],
) -> bool {
    let mut wait = retry.initial;
    let mut failures = 0u32;
    loop {
        let err = match sink.send(batch).await {
            Ok(()) => {
                if failures > 0 {
                    tracing::info!(driver = shared.driver, failures, "log delivery recovered");
                }
                return true;
            }
            Err(e) => e,
        };
        failures += 1;
        if retry.max_retries.is_some_and(|max| failures >= max.max(1)) {
            tracing::warn!(
                driver = shared.driver,
                error = %err,
                failures,
                dropped = batch.len(),
                "giving up on a batch of log lines"
            );
            return false;
        }
        if failures == 1 {
            tracing::warn!(driver = shared.driver, error = %err, retry_in = ?wait, "log delivery failed, retrying");
        } else {
            tracing::debug!(driver = shared.driver, error = %err, failures, "log delivery failed again");
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(retry.max_wait);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use tokio::sync::mpsc;

    use super::*;
    use crate::logger::STDOUT;

    /// Hands batches to the test; fails the next `fail_next` sends, or all while `down`.
    struct TestSink {
        tx: mpsc::UnboundedSender<Vec<Message>>,
        fail_next: Arc<AtomicU32>,
        down: Arc<AtomicBool>,
        closed: Arc<AtomicBool>,
        limits: BatchLimits,
    }

    impl Sink for TestSink {
        fn name(&self) -> &'static str {
            "test"
        }
        async fn send(&mut self, batch: &[Message]) -> io::Result<()> {
            let fail = self.down.load(Ordering::SeqCst)
                || self
                    .fail_next
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            if fail {
                return Err(io::Error::other("peer down"));
            }
            let _ = self.tx.send(batch.to_vec());
            Ok(())
        }
        fn batch_limits(&self) -> BatchLimits {
            self.limits
        }
        async fn close(&mut self) {
            self.closed.store(true, Ordering::SeqCst);
        }
    }

    struct Harness {
        rx: mpsc::UnboundedReceiver<Vec<Message>>,
        fail_next: Arc<AtomicU32>,
        down: Arc<AtomicBool>,
        closed: Arc<AtomicBool>,
    }

    const FAST: Retry = Retry {
        initial: Duration::from_millis(5),
        max_wait: Duration::from_millis(20),
        max_retries: None,
    };

    fn start(
        limits: BatchLimits,
        mode: Mode,
        retry: Retry,
        limit: usize,
    ) -> (RemoteLogger, Harness) {
        let (tx, rx) = mpsc::unbounded_channel();
        let h = Harness {
            rx,
            fail_next: Arc::default(),
            down: Arc::default(),
            closed: Arc::default(),
        };
        let sink = TestSink {
            tx,
            fail_next: h.fail_next.clone(),
            down: h.down.clone(),
            closed: h.closed.clone(),
            limits,
        };
        (RemoteLogger::spawn(sink, mode, retry, limit).unwrap(), h)
    }

    fn line(i: usize) -> Message {
        Message {
            stream: STDOUT,
            line: format!("l{i}\n").into_bytes(),
            time_unix_nano: i as i64,
        }
    }

    impl Harness {
        /// Receives batches until `n` lines came (or fails after 5 s).
        async fn lines(&mut self, n: usize) -> (Vec<Message>, Vec<usize>) {
            let mut got = Vec::new();
            let mut sizes = Vec::new();
            while got.len() < n {
                let b = tokio::time::timeout(Duration::from_secs(5), self.rx.recv())
                    .await
                    .expect("lines in time")
                    .expect("sink alive");
                sizes.push(b.len());
                got.extend(b);
            }
            (got, sizes)
        }
    }

    async fn until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn limits(max_lines: usize, max_bytes: usize, linger: Duration) -> BatchLimits {
        BatchLimits {
            max_lines,
            max_bytes,
            linger,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn order_is_kept_and_batches_respect_limits() {
        let (mut log, mut h) = start(limits(3, 10, Duration::ZERO), Mode::Blocking, FAST, 1 << 20);
        // A long line alone exceeds max_bytes: it still goes, in a batch of its own.
        let mut want: Vec<Message> = (0..50).map(line).collect();
        want[7].line = b"a much longer line than ten bytes\n".to_vec();
        for m in &want {
            log.log(m).unwrap();
        }
        let (got, sizes) = h.lines(want.len()).await;
        assert_eq!(got, want);
        let mut i = 0;
        for n in sizes {
            let b = &got[i..i + n];
            let bytes: usize = b.iter().map(|m| m.line.len()).sum();
            assert!(n <= 3 && (n == 1 || bytes <= 10), "batch {b:?}");
            i += n;
        }
        until("stats", || log.stats().delivered_lines == 50).await;
        assert_eq!(log.stats().pending_lines, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn linger_waits_for_a_batch_to_fill() {
        let lim = limits(4, 1 << 20, Duration::from_secs(2));
        let (mut log, mut h) = start(lim, Mode::Blocking, FAST, 1 << 20);
        log.log(&line(0)).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        for i in 1..4 {
            log.log(&line(i)).unwrap();
        }
        let start = Instant::now();
        let (_, sizes) = h.lines(4).await;
        assert_eq!(sizes, [4]);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "a full batch goes at once"
        );
        // A partial batch goes when the linger is over.
        log.log(&line(4)).unwrap();
        let (_, sizes) = h.lines(1).await;
        assert_eq!(sizes, [1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_batch_is_retried_and_delivered_once() {
        let (mut log, mut h) = start(
            limits(4, 1 << 20, Duration::ZERO),
            Mode::Blocking,
            FAST,
            1 << 20,
        );
        h.fail_next.store(3, Ordering::SeqCst);
        let want: Vec<Message> = (0..10).map(line).collect();
        for m in &want {
            log.log(m).unwrap();
        }
        let (got, _) = h.lines(10).await;
        assert_eq!(got, want);
        until("stats", || log.stats().delivered_lines == 10).await;
        assert_eq!(log.stats().dropped_lines, 0);
        assert_eq!(h.fail_next.load(Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(h.rx.try_recv().is_err(), "nothing sent twice");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_are_dropped_and_counted_after_max_retries() {
        let retry = Retry {
            max_retries: Some(2),
            ..FAST
        };
        let (mut log, mut h) = start(
            limits(2, 1 << 20, Duration::ZERO),
            Mode::Blocking,
            retry,
            1 << 20,
        );
        h.down.store(true, Ordering::SeqCst);
        for i in 0..5 {
            log.log(&line(i)).unwrap();
        }
        until("drops", || log.stats().dropped_lines == 5).await;
        assert_eq!(log.stats().pending_lines, 0);
        h.down.store(false, Ordering::SeqCst);
        log.log(&line(5)).unwrap();
        let (got, _) = h.lines(1).await;
        assert_eq!(got, [line(5)]);
        until("stats", || log.stats().delivered_lines == 1).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocking_mode_waits_while_full_and_resumes_when_drained() {
        let (log, mut h) = start(limits(1, 1 << 20, Duration::ZERO), Mode::Blocking, FAST, 10);
        h.down.store(true, Ordering::SeqCst);
        let writer = std::thread::spawn(move || {
            let mut log = log;
            for i in 0..20 {
                log.log(&line(i)).unwrap();
            }
            log
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!writer.is_finished(), "writer waits on a full queue");
        h.down.store(false, Ordering::SeqCst);
        let (got, _) = h.lines(20).await;
        assert_eq!(got, (0..20).map(line).collect::<Vec<_>>());
        let log = tokio::task::spawn_blocking(move || writer.join().unwrap())
            .await
            .unwrap();
        assert_eq!(log.stats().dropped_lines, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn non_blocking_mode_drops_and_counts_without_waiting() {
        let mode = Mode::NonBlocking {
            max_buffer_bytes: 12,
        };
        let (mut log, h) = start(BatchLimits::default(), mode, FAST, 0);
        h.down.store(true, Ordering::SeqCst);
        let start = Instant::now();
        for i in 0..100 {
            log.log(&line(i)).unwrap();
        }
        assert!(start.elapsed() < Duration::from_millis(500));
        let s = log.stats();
        // 3-4 byte lines: at most 4 fit (one more may be in flight).
        assert!(s.dropped_lines >= 94, "{s:?}");
        assert_eq!(s.dropped_lines + s.pending_lines, 100, "{s:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_releases_a_blocked_writer_and_gives_up_after_the_grace() {
        let (log, h) = start(BatchLimits::default(), Mode::Blocking, FAST, 8);
        h.down.store(true, Ordering::SeqCst);
        let delivery = log.delivery();
        let writer = std::thread::spawn(move || {
            let mut log = log;
            (0..100).map(|i| log.log(&line(i))).find(Result::is_err)
        });
        until("a full queue", || delivery.stats().pending_lines >= 2).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!writer.is_finished());
        let closed_at = Instant::now();
        delivery.close();
        until("writer released", || writer.is_finished()).await;
        assert!(closed_at.elapsed() < Duration::from_millis(500));
        let err = writer.join().unwrap().expect("an error").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        // The peer stays down: queued lines are dropped once the grace is over.
        until("sink closed", || h.closed.load(Ordering::SeqCst)).await;
        let s = delivery.stats();
        assert_eq!(s.pending_lines, 0);
        assert!(s.dropped_lines >= 2, "{s:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_logger_delivers_what_is_queued_then_closes() {
        let lim = limits(1024, 1 << 20, Duration::from_secs(30));
        let (mut log, mut h) = start(lim, Mode::Blocking, FAST, 1 << 20);
        for i in 0..3 {
            log.log(&line(i)).unwrap();
        }
        let delivery = log.delivery();
        drop(log);
        // The close cuts the linger short.
        let (got, _) = h.lines(3).await;
        assert_eq!(got, (0..3).map(line).collect::<Vec<_>>());
        until("sink closed", || h.closed.load(Ordering::SeqCst)).await;
        assert_eq!(delivery.stats().delivered_lines, 3);
    }

    #[test]
    fn spawn_outside_a_runtime_is_refused() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let sink = TestSink {
            tx,
            fail_next: Arc::default(),
            down: Arc::default(),
            closed: Arc::default(),
            limits: BatchLimits::default(),
        };
        let e = RemoteLogger::spawn(sink, Mode::Blocking, Retry::default(), 1)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("test") && e.contains("runtime"), "{e}");
    }

    fn opts(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn delivery_options_follow_docker() {
        let (mode, rest) = split_delivery_options(&opts(&[("tag", "x")])).unwrap();
        assert_eq!((mode, rest), (Mode::Blocking, opts(&[("tag", "x")])));
        let (mode, rest) = split_delivery_options(&opts(&[("mode", "blocking")])).unwrap();
        assert_eq!((mode, rest.len()), (Mode::Blocking, 0));
        let nb = |n| Mode::NonBlocking {
            max_buffer_bytes: n,
        };
        for (size, want) in [
            (None, 1 << 20),
            (Some("4m"), 4 << 20),
            (Some("1MB"), 1 << 20),
            (Some("512k"), 512 << 10),
        ] {
            let mut o = opts(&[("mode", "non-blocking")]);
            if let Some(s) = size {
                o.insert("max-buffer-size".into(), s.into());
            }
            assert_eq!(
                split_delivery_options(&o).unwrap(),
                (nb(want), BTreeMap::new())
            );
        }
        let e = split_delivery_options(&opts(&[("max-buffer-size", "4m")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "logger: max-buffer-size option is only supported with 'mode=non-blocking'"
        );
        for (k, v) in [("mode", "sometimes"), ("max-buffer-size", "lots")] {
            let mut o = opts(&[("mode", "non-blocking")]);
            o.insert(k.into(), v.into());
            let e = split_delivery_options(&o).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
            let e = e.to_string();
            assert!(e.contains(k) && e.contains(v), "{e}");
        }
    }
}
