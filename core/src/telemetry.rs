//! OpenTelemetry traces (`[telemetry]`): for each traced request, a server span with a child
//! span per phase and a client span per upstream attempt, encoded as an OTLP/HTTP protobuf
//! `ExportTraceServiceRequest` and sent to the collector after the answer (the adapter runs it
//! as [`crate::Later`] work: on Workers under `waitUntil`, on Spin in the request's task after
//! the handler has returned).
//!
//! What it trusts: the caller's `traceparent` decides whether a request is traced and which
//! trace it joins (W3C Trace Context: a caller may always ask for tracing, so a collector must
//! be sized for what callers can send; `sample` applies only to requests without a valid one).
//! Nothing else of the request goes into a span but its method, path, route, status, the client
//! address the gateway settled on and, when `consumer_ids` allows, the consumer's id.
//!
//! Bounds: at most [`MAX_SPANS`] spans a request. Where requests share an isolate (Workers),
//! their spans wait up to `batch_ms` to share one export of at most [`MAX_BATCH_SPANS`] spans
//! (the first request's work waits, then sends what has gathered); elsewhere (Spin, whose
//! instance may live for one request) each request sends its own. An export is sent once,
//! within the collector upstream's `timeout_ms`; a collector that fails costs the spans, and a
//! `telemetry-export` log line says how many were lost. Spans still waiting when an isolate is
//! evicted are lost with it (at most one batch).

mod metrics;
mod otlp;

pub use metrics::{Aggregate, DataPoint, Measure, MAX_SERIES};

use crate::config::diag::{header_name, refuse, Errs};
use crate::config::{raw, Id, Upstream};
use crate::phase::observe::{AccessLog, Share};
use http::{HeaderMap, HeaderValue};
use std::cell::Cell;
use std::rc::Rc;

/// The most spans one request sends: the request, its phases and its upstream attempts.
pub const MAX_SPANS: usize = 32;

/// `[telemetry]`, compiled.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// The OTLP collector, if any.
    pub upstream: Option<Id<Upstream>>,
    /// The traces' path on the collector.
    pub path: String,
    /// Whether sampled requests' spans are sent (a collector is named and `traces` is on).
    pub traces: bool,
    /// The metrics' path on the collector, when metrics are sent.
    pub metrics_path: Option<String>,
    /// The Workers Analytics Engine binding that gets a data point per request.
    pub analytics_engine: Option<String>,
    pub headers: HeaderMap,
    sample: Share,
    service_name: String,
    service_version: String,
    pub consumer_ids: bool,
    /// How long spans may wait in an isolate for others to share their export (0: never).
    pub batch_ms: u32,
}

impl Telemetry {
    /// Checks and builds `[telemetry]`, reading `secret_env` headers from `secrets`.
    pub(crate) fn compile(
        e: &mut Errs<'_>,
        t: &raw::Telemetry,
        upstream_names: &[&str],
        secrets: crate::Secrets<'_>,
    ) -> Option<Telemetry> {
        let path = "telemetry.upstream";
        if t.upstream.as_deref() == Some("none") {
            refuse!(e, path, "name the collector's upstream");
        }
        let upstream = t.upstream.as_deref().map(|name| {
            crate::config::compile::lookup(e, path, "upstream", Some(name), upstream_names)
        });
        if t.upstream.is_none() && t.analytics_engine.is_none() {
            refuse!(
                e,
                "telemetry",
                "name a collector (`upstream`) or a Workers Analytics Engine binding (`analytics_engine`)",
            );
        }
        if let Some(name) = &t.analytics_engine {
            // a JavaScript property name on the worker's `env`, as wrangler.toml's binding
            let valid = name.len() <= 64
                && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                refuse!(
                    e,
                    "telemetry.analytics_engine",
                    format!("{name:?} is not a binding name (letters, digits and _)"),
                );
            }
        }
        for (key, p) in [
            ("telemetry.path", &t.path),
            ("telemetry.metrics_path", &t.metrics_path),
        ] {
            if !p.starts_with('/') || p.contains(['?', '#']) {
                refuse!(e, key, format!("{p:?} must be a path starting with /"));
            }
        }
        if !(0.0..=1.0).contains(&t.sample) {
            refuse!(e, "telemetry.sample", "must be from 0 to 1");
        }
        if t.batch_ms > 10_000 {
            refuse!(e, "telemetry.batch_ms", "must be at most 10000");
        }
        if t.service_name.is_empty() {
            refuse!(e, "telemetry.service_name", "must not be empty");
        }
        let mut headers = HeaderMap::new();
        for (name, source) in &t.headers {
            let path = format!("telemetry.headers.{name}");
            let Some(key) = header_name(e, &path, name) else {
                continue;
            };
            let value = match (&source.value, &source.secret_env, secrets) {
                (Some(v), None, _) => v.clone(),
                (None, Some(_), crate::Secrets::Deferred) => continue,
                (None, Some(var), crate::Secrets::From(read)) => match read(var) {
                    Some(v) if !v.is_empty() => v,
                    _ => {
                        let m = format!("the environment variable {var} is not set or empty");
                        e.push(format!("{path}.secret_env"), m);
                        continue;
                    }
                },
                _ => {
                    refuse!(e, path, "give one of `value` and `secret_env`");
                    continue;
                }
            };
            match HeaderValue::from_str(value.trim()) {
                // a key should not show in a debug print of the config
                Ok(mut v) => {
                    v.set_sensitive(true);
                    headers.insert(key, v);
                }
                Err(_) => refuse!(e, path, "is not a valid header value"),
            }
        }
        let upstream = match upstream {
            Some(found) => Some(found?),
            None => None,
        };
        Some(Telemetry {
            upstream,
            traces: t.traces && upstream.is_some(),
            metrics_path: (t.metrics && upstream.is_some()).then(|| t.metrics_path.clone()),
            analytics_engine: t.analytics_engine.clone(),
            path: t.path.clone(),
            headers,
            sample: Share::of(t.sample),
            service_name: t.service_name.clone(),
            service_version: t
                .service_version
                .clone()
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").into()),
            consumer_ids: t.consumer_ids,
            batch_ms: t.batch_ms,
        })
    }

    /// Whether a request is traced: as the caller's valid `traceparent` says (its sampled
    /// flag), else by the configured share (`draw` is called only then).
    pub fn sampled(&self, incoming: Option<&Parent>, draw: impl FnOnce() -> u64) -> bool {
        match incoming {
            Some(parent) => parent.sampled,
            None => self.sample.picks(draw),
        }
    }
}

/// What a valid incoming `traceparent` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl Parent {
    /// The caller's span and decision, from the valid `traceparent` it sent.
    pub fn of(caller: crate::phase::transform::Caller<'_>) -> Option<Parent> {
        Some(Parent {
            span_id: hex8(caller.parent_id)?,
            sampled: u8::from_str_radix(caller.flags, 16).ok()? & 1 == 1,
        })
    }
}

fn hex8(s: &str) -> Option<[u8; 8]> {
    u64::from_str_radix(s, 16).ok().map(u64::to_be_bytes)
}

fn hex16(s: &str) -> Option<[u8; 16]> {
    u128::from_str_radix(s, 16).ok().map(u128::to_be_bytes)
}

/// A traced request's caller (when it sent a valid `traceparent`) and upstream attempts.
#[derive(Debug, Default)]
pub struct Trace {
    pub parent: Option<Parent>,
    pub attempts: Vec<Attempt>,
}

/// One upstream attempt, for its client span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    pub start_us: u64,
    pub end_us: u64,
    /// The status received, if any.
    pub status: Option<u16>,
    /// Why there was none (`timeout`, `connect`, `error`).
    pub error: Option<&'static str>,
}

impl Attempt {
    /// The attempt that fetched `fetched` from `start_us` to `end_us`.
    pub fn of<B>(
        fetched: &Result<http::Response<B>, crate::FetchError>,
        start_us: u64,
        end_us: u64,
    ) -> Attempt {
        let (status, error) = match fetched {
            Ok(res) => (Some(res.status().as_u16()), None),
            Err(crate::FetchError::Timeout) => (None, Some("timeout")),
            Err(crate::FetchError::Connect(_)) => (None, Some("connect")),
            Err(_) => (None, Some("error")),
        };
        Attempt {
            start_us,
            end_us,
            status,
            error,
        }
    }
}

/// A request as it ends, for its metrics and, when traced, its spans.
pub struct Finished<'l, 'a> {
    pub log: &'l AccessLog<'a>,
    /// The request's counts, when metrics are sent ([`Measure::of`]).
    pub measure: Option<&'l Measure<'l>>,
    /// Whether the request is traced.
    pub traced: bool,
    /// The `traceparent` the gateway sent on (its trace id and the request span's id).
    pub traceparent: &'l str,
    pub parent: Option<Parent>,
    /// The monotonic reading when the request began.
    pub start_us: u64,
    pub attempts: &'l [Attempt],
    /// The upstream attempts' method and the route's path template.
    pub route_path: Option<&'l str>,
    pub runtime: &'static str,
}

/// What an export carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
}

/// Spans or metrics waiting to be sent: the protobuf body, how many spans or data points it
/// holds, and the request whose work sends it (for the log line when it fails).
pub struct Export {
    pub signal: Signal,
    pub body: bytes::Bytes,
    pub items: usize,
    pub request_id: String,
}

/// The most spans one export holds: a batch that would pass it is sent first.
pub const MAX_BATCH_SPANS: usize = 512;

/// Spans and metrics of several requests waiting in an isolate (Workers) for one export each,
/// and whether a request's work is already waiting to send them ([`finish`]).
#[derive(Default)]
pub struct Batch {
    spans: Vec<otlp::Span>,
    metrics: Aggregate,
    waiting: Rc<Cell<bool>>,
}

/// Held by the work that waits to send the batch; when it is dropped (the batch taken, or the
/// work dropped unrun), the next request that adds to the batch starts a wait of its own.
pub struct Waiting(Rc<Cell<bool>>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// What [`finish`] asks of the request: exports to send now (its own, or a full batch's), and
/// whether to wait `batch_ms` and then send what the batch holds ([`Batch::take`]).
#[derive(Default)]
pub struct Then {
    pub send: Vec<Export>,
    pub wait: Option<Waiting>,
}

/// Where a request's spans (when traced) and metrics go: into the isolate's batch when the host
/// keeps one (`batching`) and `batch_ms` is above 0, else into exports of their own.
pub fn finish(
    t: &Telemetry,
    f: &Finished<'_, '_>,
    batch: &mut Batch,
    batching: bool,
    random: impl FnMut() -> u64,
) -> Then {
    let ids = (
        f.traceparent.get(3..35).and_then(hex16),
        f.traceparent.get(36..52).and_then(hex8),
    );
    let spans = match ids {
        // only a traceparent the gateway made has both
        (Some(trace_id), Some(span_id)) if f.traced && t.traces => {
            Some(otlp::spans(t, f, trace_id, span_id, random))
        }
        _ => None,
    };
    let request_id = f.log.request_id;
    let mut then = Then::default();
    if !batching || t.batch_ms == 0 {
        if let Some(spans) = spans {
            then.send.push(traces(t, f.runtime, spans, request_id));
        }
        if let Some(m) = f.measure {
            let mut one = Aggregate::default();
            one.add(m);
            let end_ms = f.log.ts_ms + f.log.duration_us / 1000;
            then.send
                .extend(metrics(t, f.runtime, one, end_ms, request_id));
        }
        return then;
    }
    let full = spans
        .as_ref()
        .is_some_and(|s| batch.spans.len() + s.len() > MAX_BATCH_SPANS)
        || f.measure
            .is_some_and(|m| batch.metrics.len() >= MAX_SERIES && batch.metrics.is_new(m));
    if full {
        let end_ms = f.log.ts_ms;
        then.send = batch.take(t, f.runtime, request_id, end_ms);
    }
    if spans.is_none() && f.measure.is_none() {
        return then;
    }
    batch.spans.extend(spans.into_iter().flatten());
    if let Some(m) = f.measure {
        batch.metrics.add(m);
    }
    if !batch.waiting.replace(true) {
        then.wait = Some(Waiting(batch.waiting.clone()));
    }
    then
}

impl Batch {
    /// What the batch holds, as exports (none when empty); its metrics end at `end_ms`.
    pub fn take(
        &mut self,
        t: &Telemetry,
        runtime: &str,
        request_id: &str,
        end_ms: u64,
    ) -> Vec<Export> {
        let spans = std::mem::take(&mut self.spans);
        let mut out = Vec::new();
        if !spans.is_empty() {
            out.push(traces(t, runtime, spans, request_id));
        }
        let aggregate = std::mem::take(&mut self.metrics);
        out.extend(metrics(t, runtime, aggregate, end_ms, request_id));
        out
    }
}

fn traces(t: &Telemetry, runtime: &str, spans: Vec<otlp::Span>, request_id: &str) -> Export {
    Export {
        signal: Signal::Traces,
        items: spans.len(),
        body: otlp::encode(t, runtime, spans).into(),
        request_id: request_id.to_string(),
    }
}

fn metrics(
    t: &Telemetry,
    runtime: &str,
    aggregate: Aggregate,
    end_ms: u64,
    request_id: &str,
) -> Option<Export> {
    if aggregate.is_empty() {
        return None;
    }
    let (body, items) = aggregate.encode(otlp::resource(t, runtime), end_ms);
    Some(Export {
        signal: Signal::Metrics,
        items,
        body: body.into(),
        request_id: request_id.to_string(),
    })
}

#[cfg(test)]
mod tests;
