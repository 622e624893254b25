//! Per-method gRPC metrics of a service, exposed as Prometheus text.
//!
//! [`MetricsLayer`] (installed by [`crate::serve`] on every server) counts each call by
//! method and status code and records its duration, from the request's arrival to the end
//! of its response body, in a histogram with fixed buckets. The code is the gRPC status of
//! the response headers (a Trailers-Only answer) or trailers; a non-gRPC HTTP answer is
//! mapped as the gRPC spec says (404 → Unimplemented, 503 → Unavailable, …), a body that
//! ends without a status is Unknown, one dropped early (the client went away) Cancelled.
//! Counting is atomics only; a method is looked up under a read lock.
//!
//! berth.toml's `[metrics]` gives a service a TCP address where [`serve_http`] answers
//! `GET /metrics` with [`Registry::render`]: `berth_grpc_requests_total{service,method,code}`,
//! `berth_grpc_request_duration_seconds{service,method}` (histogram) and
//! `process_resident_memory_bytes`. Without `[metrics]` the layer is a pass-through.
use std::{
    collections::HashMap,
    fmt::Write as _,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use http_body::{Body, Frame, SizeHint};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// Upper bounds (seconds) of the latency buckets; `+Inf` follows.
pub const BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Distinct methods kept; calls to further (unknown) paths count as method `other`.
const MAX_METHODS: usize = 256;

/// gRPC status codes by number, as Prometheus exporters name them.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const CANCELLED: usize = 1;
const UNKNOWN: usize = 2;

/// One method's numbers.
#[derive(Default)]
struct MethodStats {
    codes: [AtomicU64; CODE_NAMES.len()],
    /// Non-cumulative: `buckets[i]` counts durations in (BUCKETS[i-1], BUCKETS[i]]; the
    /// last one those above every bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl MethodStats {
    fn record(&self, code: usize, elapsed: Duration) {
        self.codes[code.min(CODE_NAMES.len() - 1)].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// The numbers of one service.
pub struct Registry {
    service: String,
    methods: RwLock<HashMap<String, Arc<MethodStats>>>,
}

impl Registry {
    /// An empty registry; `service` is the `service` label (`engine`, …).
    pub fn new(service: &str) -> Arc<Registry> {
        Arc::new(Registry {
            service: service.to_string(),
            methods: RwLock::new(HashMap::new()),
        })
    }

    fn method(&self, path: &str) -> Arc<MethodStats> {
        let name = path.trim_start_matches('/');
        if let Some(stats) = self
            .methods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return stats.clone();
        }
        let mut methods = self.methods.write().unwrap_or_else(|e| e.into_inner());
        let name = if methods.len() >= MAX_METHODS && !methods.contains_key(name) {
            "other"
        } else {
            name
        };
        methods.entry(name.to_string()).or_default().clone()
    }

    /// Records one call (for tests and callers outside the layer).
    pub fn record(&self, path: &str, code: i32, elapsed: Duration) {
        let code = usize::try_from(code).unwrap_or(UNKNOWN);
        self.method(path).record(code, elapsed);
    }

    /// The Prometheus text exposition (format 0.0.4) of everything recorded, plus the
    /// process's resident memory.
    pub fn render(&self) -> String {
        let methods = self.methods.read().unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<&String> = methods.keys().collect();
        names.sort();
        let service = escape(&self.service);
        let mut out = String::new();
        out.push_str(
            "# HELP berth_grpc_requests_total gRPC calls handled, by method and status code.\n\
             # TYPE berth_grpc_requests_total counter\n",
        );
        for name in &names {
            let stats = &methods[*name];
            let method = escape(name);
            for (code, count) in stats.codes.iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    let _ = writeln!(
                        out,
                        "berth_grpc_requests_total{{service=\"{service}\",method=\"{method}\",code=\"{}\"}} {count}",
                        CODE_NAMES[code]
                    );
                }
            }
        }
        out.push_str(
            "# HELP berth_grpc_request_duration_seconds Time from a gRPC call's arrival to the end of its response.\n\
             # TYPE berth_grpc_request_duration_seconds histogram\n",
        );
        for name in &names {
            let stats = &methods[*name];
            let method = escape(name);
            let labels = format!("service=\"{service}\",method=\"{method}\"");
            let mut cumulative = 0;
            for (i, bucket) in stats.buckets.iter().enumerate() {
                cumulative += bucket.load(Ordering::Relaxed);
                let le = BUCKETS
                    .get(i)
                    .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
                let _ = writeln!(
                    out,
                    "berth_grpc_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                );
            }
            let sum = stats.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "berth_grpc_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "berth_grpc_request_duration_seconds_count{{{labels}}} {}",
                stats.count.load(Ordering::Relaxed)
            );
        }
        if let Some(rss) = resident_memory_bytes() {
            let _ = write!(
                out,
                "# HELP process_resident_memory_bytes Resident memory size in bytes.\n\
                 # TYPE process_resident_memory_bytes gauge\n\
                 process_resident_memory_bytes {rss}\n"
            );
        }
        out
    }
}

/// Label value escaping of the text format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// This process's resident set size, from /proc/self/statm.
fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

/// The gRPC code of an HTTP status other than 200, as the gRPC spec maps them.
fn code_of_http_status(status: http::StatusCode) -> usize {
    match status.as_u16() {
        400 => 13,             // Internal
        401 => 16,             // Unauthenticated
        403 => 7,              // PermissionDenied
        404 => 12,             // Unimplemented
        429 | 502..=504 => 14, // Unavailable
        _ => UNKNOWN,
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<usize> {
    let value = headers.get("grpc-status")?.to_str().ok()?;
    Some(value.trim().parse::<usize>().unwrap_or(UNKNOWN))
}

/// The tower layer of [`crate::serve`]: records every call in the registry (none: passes
/// calls through untouched).
#[derive(Clone, Default)]
pub struct MetricsLayer {
    registry: Option<Arc<Registry>>,
}

impl MetricsLayer {
    pub fn new(registry: Option<Arc<Registry>>) -> MetricsLayer {
        MetricsLayer { registry }
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> MetricsService<S> {
        MetricsService {
            inner,
            registry: self.registry.clone(),
        }
    }
}

#[derive(Clone)]
pub struct MetricsService<S> {
    inner: S,
    registry: Option<Arc<Registry>>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for MetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: Body + Unpin,
{
    type Response = http::Response<MeteredBody<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let recorder = self.registry.as_ref().map(|registry| Recorder {
            stats: registry.method(request.uri().path()),
            start: Instant::now(),
            code: None,
        });
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let mut recorder = recorder;
            if let Some(r) = recorder.as_mut() {
                r.code = if response.status() != http::StatusCode::OK {
                    Some(code_of_http_status(response.status()))
                } else {
                    grpc_status(response.headers())
                };
            }
            Ok(response.map(|inner| MeteredBody {
                inner,
                recorder,
                ended: false,
            }))
        })
    }
}

/// Records a call when its response is done (or dropped).
struct Recorder {
    stats: Arc<MethodStats>,
    start: Instant,
    code: Option<usize>,
}

/// A response body that records its call once it ends.
pub struct MeteredBody<B> {
    inner: B,
    recorder: Option<Recorder>,
    ended: bool,
}

impl<B> MeteredBody<B> {
    fn finish(&mut self) {
        if let Some(r) = self.recorder.take() {
            let code = r
                .code
                .unwrap_or(if self.ended { UNKNOWN } else { CANCELLED });
            r.stats.record(code, r.start.elapsed());
        }
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<B: Body + Unpin> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(trailers), Some(r)) = (frame.trailers_ref(), this.recorder.as_mut()) {
                    if let Some(code) = grpc_status(trailers) {
                        r.code = Some(code);
                    }
                }
            }
            Poll::Ready(None) => {
                this.ended = true;
                this.finish();
            }
            Poll::Ready(Some(Err(_))) => {
                this.ended = true;
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped: one HTTP/1.1 answer per
/// connection, then close.
pub async fn serve_http(listener: TcpListener, registry: Arc<Registry>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), answer(stream, &registry)).await;
        });
    }
}

async fn answer(mut stream: tokio::net::TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > 16 * 1024 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut first = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            registry.render(),
        ),
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "method not allowed\n".to_string(),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if method != "HEAD" {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text() {
        let registry = Registry::new("engine");
        registry.record(
            "/berth.engine.v1.Engine/ListContainers",
            0,
            Duration::from_millis(3),
        );
        registry.record(
            "/berth.engine.v1.Engine/ListContainers",
            0,
            Duration::from_secs(100),
        );
        registry.record(
            "/berth.engine.v1.Engine/InspectContainer",
            5,
            Duration::from_micros(200),
        );
        let text = registry.render();
        let m = "service=\"engine\",method=\"berth.engine.v1.Engine/ListContainers\"";
        for line in [
            "# TYPE berth_grpc_requests_total counter".to_string(),
            format!("berth_grpc_requests_total{{{m},code=\"OK\"}} 2"),
            "berth_grpc_requests_total{service=\"engine\",method=\"berth.engine.v1.Engine/InspectContainer\",code=\"NotFound\"} 1".to_string(),
            "# TYPE berth_grpc_request_duration_seconds histogram".to_string(),
            format!("berth_grpc_request_duration_seconds_bucket{{{m},le=\"0.0025\"}} 0"),
            format!("berth_grpc_request_duration_seconds_bucket{{{m},le=\"0.005\"}} 1"),
            format!("berth_grpc_request_duration_seconds_bucket{{{m},le=\"30\"}} 1"),
            format!("berth_grpc_request_duration_seconds_bucket{{{m},le=\"+Inf\"}} 2"),
            format!("berth_grpc_request_duration_seconds_sum{{{m}}} 100.003"),
            format!("berth_grpc_request_duration_seconds_count{{{m}}} 2"),
            "# TYPE process_resident_memory_bytes gauge".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // No zero-valued code series.
        assert!(!text.contains("code=\"Internal\""), "{text}");
        let rss: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(rss > 0);
    }

    #[test]
    fn codes_from_http_and_headers() {
        assert_eq!(code_of_http_status(http::StatusCode::NOT_FOUND), 12);
        assert_eq!(
            code_of_http_status(http::StatusCode::SERVICE_UNAVAILABLE),
            14
        );
        let mut headers = http::HeaderMap::new();
        assert_eq!(grpc_status(&headers), None);
        headers.insert("grpc-status", http::HeaderValue::from_static("5"));
        assert_eq!(grpc_status(&headers), Some(5));
    }

    #[tokio::test]
    async fn layer_records_trailers_and_http_answers() {
        use http_body_util::BodyExt;
        use tower::{Layer, ServiceExt};
        let registry = Registry::new("volume");
        let layer = MetricsLayer::new(Some(registry.clone()));
        let service = layer.layer(tower::service_fn(|req: http::Request<()>| async move {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", http::HeaderValue::from_static("6"));
            let body = http_body_util::StreamBody::new(futures_stream(trailers));
            let _ = req;
            Ok::<_, std::convert::Infallible>(http::Response::new(body))
        }));
        let request = http::Request::builder()
            .uri("/berth.volume.v1.Volumes/Create")
            .body(())
            .unwrap();
        let response = service.oneshot(request).await.unwrap();
        let _ = response.into_body().collect().await;
        let text = registry.render();
        assert!(
            text.contains("method=\"berth.volume.v1.Volumes/Create\",code=\"AlreadyExists\"} 1"),
            "{text}"
        );
    }

    /// A body of one data frame then `trailers`.
    fn futures_stream(
        trailers: http::HeaderMap,
    ) -> impl tokio_stream::Stream<
        Item = Result<Frame<tonic::codegen::Bytes>, std::convert::Infallible>,
    > + Unpin {
        tokio_stream::iter(vec![
            Ok(Frame::data(tonic::codegen::Bytes::from_static(b"x"))),
            Ok(Frame::trailers(trailers)),
        ])
    }
}
