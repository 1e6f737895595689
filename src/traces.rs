//! Optional OpenTelemetry traces: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) switches them on, exported over OTLP/HTTP (JSON) by
//! the SDK's batch processor on a thread of its own. Every span of an event shares one trace
//! whose id is the event id: the ingest span is its root (its span id is derived from the event
//! id too), enqueue is its child, and every delivery attempt, on whichever replica and however
//! late, is a child of the ingest span. Off, nothing is built: each call first reads one flag.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::SystemTime;

use opentelemetry::trace::{
    Span, SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
    TracerProvider,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider};
use uuid::Uuid;

static ON: AtomicBool = AtomicBool::new(false);
static TRACER: OnceLock<(SdkTracerProvider, SdkTracer)> = OnceLock::new();

thread_local! {
    /// The ids the next span built on this thread takes (the ingest span's, from its event).
    static NEXT_IDS: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

/// Random ids, except for a span built by [`ingest`], which takes its event's.
#[derive(Debug, Default)]
struct EventIds(RandomIdGenerator);

impl IdGenerator for EventIds {
    fn new_trace_id(&self) -> TraceId {
        NEXT_IDS
            .with(|n| n.get().map(|(t, _)| t))
            .unwrap_or_else(|| self.0.new_trace_id())
    }

    // Read, not taken: the SDK asks for the span id before the trace id. [`ingest`] clears
    // the override once its root span is built.
    fn new_span_id(&self) -> SpanId {
        NEXT_IDS
            .with(|n| n.get().map(|(_, s)| s))
            .unwrap_or_else(|| self.0.new_span_id())
    }
}

/// The trace of an event: its id.
fn trace_of(event: Uuid) -> TraceId {
    TraceId::from_bytes(*event.as_bytes())
}

/// The id of an event's ingest span: the event id's last 8 bytes (its random part).
fn root_of(event: Uuid) -> SpanId {
    let bytes = event.as_bytes();
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[8..]);
    if id == [0; 8] {
        id[7] = 1;
    }
    SpanId::from_bytes(id)
}

/// Switches traces on when the environment names an OTLP endpoint; says whether it did.
pub fn init(replica: &str) -> bool {
    let wanted = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|e| !e.is_empty()));
    if !wanted || TRACER.get().is_some() {
        return ON.load(Ordering::Relaxed);
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            log::error!("traces stay off: the OTLP exporter cannot be built: {e}");
            return false;
        }
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_id_generator(EventIds::default())
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("hookgate")
                .with_attribute(KeyValue::new("service.instance.id", replica.to_string()))
                .build(),
        )
        .build();
    let tracer = provider.tracer("hookgate");
    let _ = TRACER.set((provider, tracer));
    ON.store(true, Ordering::Relaxed);
    log::info!("traces on: exported over OTLP/HTTP");
    true
}

/// Sends what is buffered (at shutdown).
pub fn flush() {
    if let Some((provider, _)) = TRACER.get() {
        let _ = provider.force_flush();
    }
}

/// Now, when traces are on (the clock is not read for spans that will not be made).
pub fn now() -> Option<SystemTime> {
    ON.load(Ordering::Relaxed).then(SystemTime::now)
}

fn tracer() -> Option<&'static SdkTracer> {
    if !ON.load(Ordering::Relaxed) {
        return None;
    }
    TRACER.get().map(|(_, t)| t)
}

/// The ingest of one webhook, from `started` to now, with its enqueue (`enqueue`: from, to)
/// as a child; `outcome` is what the sender was answered. The times are [`now`]'s: None
/// when traces are off.
pub fn ingest(
    event: Uuid,
    source: &str,
    started: Option<SystemTime>,
    enqueue: (Option<SystemTime>, Option<SystemTime>),
    outcome: &'static str,
) {
    let (Some(tracer), Some(started), (Some(enqueue_from), Some(enqueue_to))) =
        (tracer(), started, enqueue)
    else {
        return;
    };
    let enqueue = (enqueue_from, enqueue_to);
    NEXT_IDS.with(|n| n.set(Some((trace_of(event), root_of(event)))));
    let mut root = tracer
        .span_builder("ingest")
        .with_kind(SpanKind::Server)
        .with_start_time(started)
        .with_attributes([
            KeyValue::new("hookgate.event_id", event.to_string()),
            KeyValue::new("hookgate.source", source.to_string()),
            KeyValue::new("hookgate.outcome", outcome),
        ])
        .start_with_context(tracer, &Context::new());
    NEXT_IDS.with(|n| n.set(None));
    let cx = Context::new().with_remote_span_context(root.span_context().clone());
    let mut child = tracer
        .span_builder("enqueue")
        .with_kind(SpanKind::Internal)
        .with_start_time(enqueue.0)
        .with_attributes([KeyValue::new("hookgate.event_id", event.to_string())])
        .start_with_context(tracer, &cx);
    child.end_with_timestamp(enqueue.1);
    root.end();
}

/// One delivery attempt of an event, from `started` ([`now`]'s) to now: a child of its
/// ingest span.
pub fn attempt(
    event: &str,
    source: &str,
    destination: &str,
    attempt: u32,
    started: Option<SystemTime>,
    status: Option<u16>,
    outcome: &'static str,
) {
    let (Some(tracer), Some(started)) = (tracer(), started) else {
        return;
    };
    let Ok(event) = Uuid::parse_str(event) else {
        return;
    };
    let parent = SpanContext::new(
        trace_of(event),
        root_of(event),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let cx = Context::new().with_remote_span_context(parent);
    let mut attrs = vec![
        KeyValue::new("hookgate.event_id", event.to_string()),
        KeyValue::new("hookgate.source", source.to_string()),
        KeyValue::new("hookgate.destination", destination.to_string()),
        KeyValue::new("hookgate.attempt", i64::from(attempt)),
        KeyValue::new("hookgate.outcome", outcome),
    ];
    if let Some(code) = status {
        attrs.push(KeyValue::new("http.response.status_code", i64::from(code)));
    }
    let mut span = tracer
        .span_builder("delivery attempt")
        .with_kind(SpanKind::Client)
        .with_start_time(started)
        .with_attributes(attrs)
        .start_with_context(tracer, &cx);
    span.end();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_spans_take_ids_from_the_event_id() {
        let event = Uuid::now_v7();
        assert_eq!(trace_of(event).to_bytes(), *event.as_bytes());
        assert_eq!(root_of(event).to_bytes()[..], event.as_bytes()[8..]);
        assert_ne!(root_of(Uuid::nil()), SpanId::INVALID);
    }
}
