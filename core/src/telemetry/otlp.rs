//! The part of the OTLP protobuf schema the gateway sends (opentelemetry-proto's
//! `collector/trace/v1` and `trace/v1`, field numbers as there), encoded by prost, and the
//! spans of one request. The tests decode what this writes with the `opentelemetry-proto`
//! crate itself.

use super::{Finished, Telemetry, MAX_SPANS};
use prost::Message;

#[derive(Clone, PartialEq, Message)]
pub struct ExportTraceServiceRequest {
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ResourceSpans {
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Resource {
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ScopeSpans {
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
}

#[derive(Clone, PartialEq, Message)]
pub struct InstrumentationScope {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub version: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Span {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    #[prost(string, tag = "5")]
    pub name: String,
    /// 1 internal, 2 server, 3 client.
    #[prost(int32, tag = "6")]
    pub kind: i32,
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Status {
    #[prost(string, tag = "2")]
    pub message: String,
    /// 0 unset, 1 ok, 2 error.
    #[prost(int32, tag = "3")]
    pub code: i32,
}

#[derive(Clone, PartialEq, Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<AnyValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AnyValue {
    #[prost(oneof = "Value", tags = "1, 3")]
    pub value: Option<Value>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(int64, tag = "3")]
    Int(i64),
}

const INTERNAL: i32 = 1;
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const ERROR: i32 = 2;

pub(super) fn text(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::String(v.into())),
        }),
    }
}

pub(super) fn int(key: &str, v: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::Int(v)),
        }),
    }
}

fn error(message: &str) -> Option<Status> {
    Some(Status {
        message: message.into(),
        code: ERROR,
    })
}

/// The request's server span, then a span per phase and per upstream attempt (at most
/// [`MAX_SPANS`] in all). Times: the request's wall-clock start plus monotonic offsets.
pub(super) fn spans(
    t: &Telemetry,
    f: &Finished<'_, '_>,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    mut random: impl FnMut() -> u64,
) -> Vec<Span> {
    let log = f.log;
    let wall_ns = log.ts_ms.saturating_mul(1_000_000);
    let at = |us: u64| wall_ns.saturating_add(us.saturating_sub(f.start_us).saturating_mul(1000));
    let mut child = |name: &str, kind: i32, start: u64, end: u64| Span {
        trace_id: trace_id.to_vec(),
        // a span id of zeros is invalid
        span_id: (random() | 1).to_be_bytes().to_vec(),
        parent_span_id: span_id.to_vec(),
        name: name.into(),
        kind,
        start_time_unix_nano: at(start),
        end_time_unix_nano: at(end),
        attributes: Vec::new(),
        status: None,
    };
    let mut spans = Vec::with_capacity(1 + log.phases.len() + f.attempts.len());
    for p in &log.phases {
        let end = p.start_us.saturating_add(p.us);
        let mut s = child(p.phase.as_str(), INTERNAL, p.start_us, end);
        s.attributes.push(text("portcullis.decision", &p.decision));
        if log.refused_in(p) {
            s.status = error(&p.decision);
        }
        spans.push(s);
    }
    for (i, a) in f.attempts.iter().enumerate() {
        let mut s = child(log.method, CLIENT, a.start_us, a.end_us);
        s.attributes.push(text("http.request.method", log.method));
        s.attributes
            .push(int("http.request.resend_count", i as i64));
        if let Some(name) = log.upstream {
            s.attributes.push(text("portcullis.upstream", name));
        }
        if let Some(status) = a.status {
            s.attributes
                .push(int("http.response.status_code", i64::from(status)));
            if status >= 500 {
                s.status = error("");
            }
        }
        if let Some(e) = a.error {
            s.attributes.push(text("error.type", e));
            s.status = error(e);
        }
        spans.push(s);
    }
    spans.truncate(MAX_SPANS - 1);
    spans.insert(0, server_span(t, f, trace_id, span_id, wall_ns));
    spans
}

fn server_span(
    t: &Telemetry,
    f: &Finished<'_, '_>,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    wall_ns: u64,
) -> Span {
    let log = f.log;
    let name = match f.route_path {
        Some(path) => format!("{} {path}", log.method),
        None => log.method.to_string(),
    };
    let mut attributes = vec![
        text("http.request.method", log.method),
        text("url.path", log.path),
        int("http.response.status_code", i64::from(log.status)),
        text("client.address", log.client_ip),
        text("portcullis.request_id", log.request_id),
    ];
    if let Some(path) = f.route_path {
        attributes.push(text("http.route", path));
    }
    if let Some(route) = log.route {
        attributes.push(text("portcullis.route", route));
    }
    if let (true, Some(consumer)) = (t.consumer_ids, &log.consumer) {
        attributes.push(text("portcullis.consumer", consumer));
    }
    if let Some(cache) = log.cache {
        attributes.push(text("portcullis.cache", cache));
    }
    if let Some(code) = log.error {
        attributes.push(text("error.type", code));
    }
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        parent_span_id: f.parent.map_or(Vec::new(), |p| p.span_id.to_vec()),
        name,
        kind: SERVER,
        start_time_unix_nano: wall_ns,
        end_time_unix_nano: wall_ns.saturating_add(log.duration_us.saturating_mul(1000)),
        attributes,
        // a server span's 4xx is the client's error, not the gateway's (OpenTelemetry's rule)
        status: if log.status >= 500 {
            error(log.error.unwrap_or(""))
        } else {
            None
        },
    }
}

/// The resource of every export: the service, its version and the runtime.
pub(super) fn resource(t: &Telemetry, runtime: &str) -> Resource {
    Resource {
        attributes: vec![
            text("service.name", &t.service_name),
            text("service.version", &t.service_version),
            text("portcullis.runtime", runtime),
            text("telemetry.sdk.name", "portcullis"),
            text("telemetry.sdk.language", "rust"),
        ],
    }
}

/// The instrumentation scope: the gateway and its version.
pub(super) fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "portcullis".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    }
}

/// The export request: the resource (service, version, runtime) and the spans.
pub(super) fn encode(t: &Telemetry, runtime: &str, spans: Vec<Span>) -> Vec<u8> {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(t, runtime)),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans,
            }],
        }],
    }
    .encode_to_vec()
}
