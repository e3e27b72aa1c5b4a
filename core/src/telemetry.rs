//! OpenTelemetry traces (`[telemetry]`): for each traced request, a server span with a child
//! span per phase and a client span per upstream attempt, encoded as an OTLP/HTTP protobuf
//! `ExportTraceServiceRequest` and sent to the collector after the answer (the adapter runs it
//! as [`crate::Later`] work: on Workers under `waitUntil`, on Spin after the answer's last byte).
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

mod otlp;

use crate::config::diag::{header_name, refuse, Errs};
use crate::config::{raw, Id, Upstream};
use crate::phase::observe::{AccessLog, LogSample};
use http::{HeaderMap, HeaderValue};
use std::cell::Cell;
use std::rc::Rc;

/// The most spans one request sends: the request, its phases and its upstream attempts.
pub const MAX_SPANS: usize = 32;

/// `[telemetry]`, compiled.
#[derive(Debug, Clone)]
pub struct Telemetry {
    /// The collector.
    pub upstream: Id<Upstream>,
    pub path: String,
    pub headers: HeaderMap,
    sample: LogSample,
    service_name: String,
    service_version: String,
    consumer_ids: bool,
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
        if t.upstream == "none" {
            refuse!(e, path, "name the collector's upstream");
        }
        let upstream = crate::config::compile::lookup(
            e,
            path,
            "upstream",
            Some(t.upstream.as_str()),
            upstream_names,
        );
        if !t.path.starts_with('/') || t.path.contains(['?', '#']) {
            refuse!(
                e,
                "telemetry.path",
                format!("{:?} must be a path starting with /", t.path),
            );
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
        Some(Telemetry {
            upstream: upstream?,
            path: t.path.clone(),
            headers,
            sample: LogSample::share(t.sample),
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
            // `keeps` samples answers below 400; any status below it asks the share
            None => self.sample.keeps(0, draw),
        }
    }
}

/// What a valid incoming `traceparent` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub span_id: [u8; 8],
    pub sampled: bool,
}

/// The caller's span and decision, from a `traceparent` the gateway kept (the trace id of
/// `ours` equals the incoming one exactly when the incoming one was valid).
pub fn parent(incoming: Option<&HeaderValue>, ours: &str) -> Option<Parent> {
    let s = incoming?.to_str().ok()?.trim();
    if s.get(3..35)? != ours.get(3..35)? {
        return None; // not valid: the gateway started a trace of its own
    }
    Some(Parent {
        span_id: hex8(s.get(36..52)?)?,
        sampled: u8::from_str_radix(s.get(53..55)?, 16).ok()? & 1 == 1,
    })
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

/// A traced request as it ends.
pub struct Finished<'l, 'a> {
    pub log: &'l AccessLog<'a>,
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

/// Spans waiting to be sent: the protobuf body, how many spans it holds, and the request whose
/// work sends it (for the log line when it fails).
pub struct Export {
    pub body: bytes::Bytes,
    pub spans: usize,
    pub request_id: String,
}

/// The most spans one export holds: a batch that reaches it is sent at once.
pub const MAX_BATCH_SPANS: usize = 512;

/// Spans of several requests waiting in an isolate (Workers) for one export, and whether a
/// request's work is already waiting to send them ([`finish`]).
#[derive(Default)]
pub struct Batch {
    spans: Vec<otlp::Span>,
    waiting: Rc<Cell<bool>>,
}

/// Held by the work that waits to send the batch; when it is dropped (the batch taken, or the
/// work dropped unrun), the next request that adds spans starts a wait of its own.
pub struct Waiting(Rc<Cell<bool>>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// What [`finish`] asks of the request that added its spans.
pub enum Then {
    /// Nothing: a request's work already waits to send the batch.
    Wait,
    /// Wait `batch_ms`, then send what the batch holds ([`Batch::take`]).
    SendLater(Waiting),
    /// Send these now (the batch was full, or batching is off).
    Send(Export),
}

/// Where a traced request's spans go: into the isolate's batch when the host keeps one
/// (`batching`) and `batch_ms` is above 0, else into an export of their own.
pub fn finish(
    t: &Telemetry,
    f: &Finished<'_, '_>,
    batch: &mut Batch,
    batching: bool,
    random: impl FnMut() -> u64,
) -> Then {
    let (Some(trace_id), Some(span_id)) = (
        f.traceparent.get(3..35).and_then(hex16),
        f.traceparent.get(36..52).and_then(hex8),
    ) else {
        return Then::Wait; // not a traceparent the gateway made: nothing to trace
    };
    let spans = otlp::spans(t, f, trace_id, span_id, random);
    let request_id = f.log.request_id;
    if !batching || t.batch_ms == 0 {
        return Then::Send(export(t, f.runtime, spans, request_id));
    }
    batch.spans.extend(spans);
    if batch.spans.len() >= MAX_BATCH_SPANS {
        let spans = std::mem::take(&mut batch.spans);
        return Then::Send(export(t, f.runtime, spans, request_id));
    }
    if batch.waiting.replace(true) {
        Then::Wait
    } else {
        Then::SendLater(Waiting(batch.waiting.clone()))
    }
}

impl Batch {
    /// What the batch holds, as one export (none when empty).
    pub fn take(&mut self, t: &Telemetry, runtime: &str, request_id: &str) -> Option<Export> {
        let spans = std::mem::take(&mut self.spans);
        (!spans.is_empty()).then(|| export(t, runtime, spans, request_id))
    }
}

fn export(t: &Telemetry, runtime: &str, spans: Vec<otlp::Span>, request_id: &str) -> Export {
    Export {
        spans: spans.len(),
        body: otlp::encode(t, runtime, spans).into(),
        request_id: request_id.to_string(),
    }
}

#[cfg(test)]
mod tests;
