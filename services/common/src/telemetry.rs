//! Tracing set-up shared by every binary: human-readable events on stderr, filtered by
//! `RUST_LOG` (default `info`), and, only when the standard OpenTelemetry variables ask
//! for it, spans exported with OTLP over gRPC.
//!
//! Export is on when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! is set (and `OTEL_SDK_DISABLED` is not `true`). Then a tracing-opentelemetry layer
//! sends every span at `info` or above through a batch span processor (its own thread;
//! `OTEL_BSP_*` tune it) to that endpoint, as service `OTEL_SERVICE_NAME`, else
//! `berth-<service>` (the binary's name) or `berth-cli`. Otherwise no exporter, thread or
//! connection exists and only the stderr layer is installed.
//!
//! Context crosses processes as W3C `traceparent`/`tracestate`: gRPC clients built by
//! [`crate::client`] inject the current span's context ([`TraceInjector`]), servers made
//! by [`crate::serve`] extract it ([`rpc_span`]), and the supervisor hands it to the shim
//! in `TRACEPARENT` ([`traceparent`]).
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    time::Duration,
};

use opentelemetry::{
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::TracerProvider as _,
};
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider, Resource};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    filter::LevelFilter, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer,
};

/// True once a tracer provider is installed: the only case in which anything is
/// propagated or exported.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// The installed provider, taken by [`shutdown`].
static PROVIDER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);

/// How long a flush at exit may take (a collector that is down must not hold the CLI).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Installs the subscriber of a service: events on stderr filtered by `RUST_LOG`
/// (default `default_filter`), plus OTLP export when configured (see the module docs).
/// Call it within the tokio runtime (the exporter's channel lives there); the service
/// name is the binary's (`berth-engine`, …). [`crate::serve::serve_unix`] flushes the
/// spans when the service stops.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(filter);
    let otel = otel_layer(&default_service_name());
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
}

/// The CLI's subscriber: nothing on stderr (the CLI prints its own messages), spans
/// exported as `berth-cli` when configured. Call it within the tokio runtime, and
/// [`shutdown`] before exiting.
pub fn init_cli() {
    let Some(otel) = otel_layer("berth-cli") else {
        return;
    };
    let _ = tracing_subscriber::registry().with(otel).try_init();
}

/// Whether spans are exported (an OTLP endpoint is configured and the exporter was built).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Whether the environment asks for OTLP export: an endpoint is set and
/// `OTEL_SDK_DISABLED` is not `true`.
pub fn configured() -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
    let disabled =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// `berth-<service>` from the binary's name; `berth` (the CLI) is `berth-cli`, `berthd` (all
/// services in one process) itself.
fn default_service_name() -> String {
    let exe = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    match exe.as_str() {
        "" => "berth".into(),
        "berth" => "berth-cli".into(),
        "berthd" => "berthd".into(),
        name if name.starts_with("berth-") => name.into(),
        name => format!("berth-{name}"),
    }
}

/// The export layer, when configured: a batch span processor over a tonic exporter.
fn otel_layer<S>(service_name: &str) -> Option<Box<dyn Layer<S> + Send + Sync>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    if !configured() {
        return None;
    }
    if tokio::runtime::Handle::try_current().is_err() {
        eprintln!("berth: OTLP export needs a tokio runtime at start-up; not exporting");
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("berth: OTLP exporter: {e}; not exporting");
            return None;
        }
    };
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none_or(|v| v.is_empty()) {
        resource = resource.with_service_name(service_name.to_string());
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("berth");
    *PROVIDER.lock().unwrap_or_else(|e| e.into_inner()) = Some(provider);
    ENABLED.store(true, Ordering::Relaxed);
    Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_target(false)
            .with_filter(LevelFilter::INFO)
            .boxed(),
    )
}

/// Flushes and stops the exporter (no-op when not exporting). The batch processor's
/// thread exports through a channel driven by the tokio runtime, so this runs on a
/// blocking thread while the runtime keeps going; it gives up after a few seconds.
pub async fn shutdown() {
    let Some(provider) = PROVIDER.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    ENABLED.store(false, Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || {
        let _ = provider.shutdown_with_timeout(FLUSH_TIMEOUT);
    })
    .await;
}

/// Header map adapters for the propagator.
struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Adds the current span's `traceparent`/`tracestate` to `headers` (nothing when not
/// exporting).
pub fn inject(headers: &mut http::HeaderMap) {
    if !enabled() {
        return;
    }
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// The current span's context as a W3C `traceparent` value, for a child process (the
/// shim); `None` when not exporting or outside any span.
pub fn traceparent() -> Option<String> {
    if !enabled() {
        return None;
    }
    let cx = tracing::Span::current().context();
    let mut headers = http::HeaderMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut headers));
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The server span of one gRPC call (`rpc{method}`, exported as the method's path),
/// child of the caller's span when the request carries `traceparent`.
pub fn rpc_span<B>(request: &http::Request<B>) -> tracing::Span {
    let path = request.uri().path();
    let span = tracing::info_span!(
        "rpc",
        method = %path,
        otel.name = path.trim_start_matches('/'),
        otel.kind = "server",
        rpc.system = "grpc",
    );
    if enabled() && request.headers().contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
        let _ = span.set_parent(parent);
    }
    span
}

/// A tonic interceptor that puts the current span's context in every call's metadata;
/// [`crate::client`] wraps every channel with it, so no call site does anything.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceInjector;

impl tonic::service::Interceptor for TraceInjector {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if enabled() {
            let mut headers = std::mem::take(request.metadata_mut()).into_headers();
            inject(&mut headers);
            *request.metadata_mut() = tonic::metadata::MetadataMap::from_headers(headers);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        // The test binary is not called berth-*: it gets the prefix.
        assert!(default_service_name().starts_with("berth-"));
    }

    #[test]
    fn nothing_is_injected_when_not_exporting() {
        assert!(!enabled());
        let mut headers = http::HeaderMap::new();
        inject(&mut headers);
        assert!(headers.is_empty());
        assert_eq!(traceparent(), None);
        let request = http::Request::builder()
            .uri("/berth.engine.v1.Engine/Version")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .body(())
            .unwrap();
        let _span = rpc_span(&request);
    }
}
