//! Metrics of every request (`[telemetry]`): what a request counts ([`Measure`]), the counts of
//! many requests per series ([`Aggregate`]) as an OTLP `ExportMetricsServiceRequest` (delta
//! temporality: each export holds only what happened since the last), and one request as a
//! Workers Analytics Engine data point ([`DataPoint`]).
//!
//! A series is a route, a method, a status class and, with `consumer_ids`, a consumer. Methods
//! outside HTTP's registered ones count as `_OTHER` (OpenTelemetry's rule), so a client cannot
//! make series of its own; an export holds at most [`MAX_SERIES`].

use super::otlp::{text, KeyValue};
use crate::phase::observe::AccessLog;
use prost::Message;

/// The most series one export holds: a request that would add one more sends the others first.
pub const MAX_SERIES: usize = 256;

/// The upper bounds of the latency histograms' buckets, in seconds (OpenTelemetry's advice for
/// `http.server.request.duration`, with two finer buckets below 5 ms for an edge gateway).
pub const BOUNDS_S: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// One request, as its metrics count it.
#[derive(Debug, Clone, PartialEq)]
pub struct Measure<'a> {
    pub ts_ms: u64,
    /// The route's name and path template ("" when no route matched).
    pub route: &'a str,
    pub route_path: &'a str,
    /// The method, or `_OTHER`.
    pub method: &'static str,
    pub status: u16,
    /// The consumer's id, when `consumer_ids` allows it.
    pub consumer: Option<&'a str>,
    pub cache: Option<&'static str>,
    /// The phase that refused the request and the problem code.
    pub refused: Option<(&'static str, &'static str)>,
    pub error: Option<&'static str>,
    pub upstream: Option<&'a str>,
    pub upstream_attempts: u32,
    pub duration_us: u64,
    pub upstream_us: Option<u64>,
    /// Body sizes known when the answer starts (`Content-Length`, or a body the gateway read);
    /// `None` for a stream of unknown length.
    pub request_bytes: Option<u64>,
    pub response_bytes: Option<u64>,
}

/// HTTP's registered methods, as OpenTelemetry's `http.request.method` keeps them.
fn known_method(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("_OTHER")
}

impl<'a> Measure<'a> {
    /// The request the access log records.
    pub fn of(
        log: &'a AccessLog<'a>,
        route_path: Option<&'a str>,
        consumer_ids: bool,
        bytes: (Option<u64>, Option<u64>),
    ) -> Measure<'a> {
        let refused = log.error.and_then(|code| {
            let phase = log.phases.iter().find(|p| log.refused_in(p))?;
            Some((phase.phase.as_str(), code))
        });
        Measure {
            ts_ms: log.ts_ms,
            route: log.route.unwrap_or_default(),
            route_path: route_path.unwrap_or_default(),
            method: known_method(log.method),
            status: log.status,
            consumer: log.consumer.as_deref().filter(|_| consumer_ids),
            cache: log.cache,
            refused,
            error: log.error,
            upstream: log.upstream,
            upstream_attempts: log.upstream_attempts,
            duration_us: log.duration_us,
            upstream_us: log.upstream_us,
            request_bytes: bytes.0,
            response_bytes: bytes.1,
        }
    }

    /// `2xx`, `4xx`, …
    fn class(&self) -> &'static str {
        match self.status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        }
    }
}

/// A latency histogram over [`BOUNDS_S`], in seconds.
#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    counts: [u64; BOUNDS_S.len() + 1],
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
}

impl Histogram {
    fn add(&mut self, us: u64) {
        let s = us as f64 / 1e6;
        // bucket i holds values above bound i-1 up to bound i; the last, above every bound
        let i = BOUNDS_S.partition_point(|b| *b < s);
        self.counts[i] += 1;
        if self.count == 0 || s < self.min {
            self.min = s;
        }
        if s > self.max {
            self.max = s;
        }
        self.count += 1;
        self.sum += s;
    }
}

/// The counts of one series.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    route: String,
    route_path: String,
    method: &'static str,
    class: &'static str,
    consumer: Option<String>,
    duration: Histogram,
    upstream: Histogram,
    request_bytes: u64,
    response_bytes: u64,
    /// Requests per cache outcome (`hit`, `miss`, …).
    cache: Vec<(&'static str, u64)>,
    /// Refusals per phase and problem code.
    refusals: Vec<((&'static str, &'static str), u64)>,
}

impl Series {
    fn is(&self, m: &Measure<'_>) -> bool {
        self.route == m.route
            && self.method == m.method
            && self.class == m.class()
            && self.consumer.as_deref() == m.consumer
    }
}

fn bump<K: PartialEq>(counts: &mut Vec<(K, u64)>, key: K) {
    match counts.iter_mut().find(|(k, _)| *k == key) {
        Some((_, n)) => *n += 1,
        None => counts.push((key, 1)),
    }
}

/// The counts of the requests since the last export, per series.
#[derive(Debug, Default)]
pub struct Aggregate {
    series: Vec<Series>,
    /// When the first of them came (Unix milliseconds).
    start_ms: u64,
}

impl Aggregate {
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// How many series it holds.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether `m` would need a series it does not hold yet.
    pub fn is_new(&self, m: &Measure<'_>) -> bool {
        !self.series.iter().any(|s| s.is(m))
    }

    /// Counts one request.
    pub fn add(&mut self, m: &Measure<'_>) {
        if self.series.is_empty() {
            self.start_ms = m.ts_ms;
        }
        let i = match self.series.iter().position(|s| s.is(m)) {
            Some(i) => i,
            None => {
                self.series.push(Series {
                    route: m.route.into(),
                    route_path: m.route_path.into(),
                    method: m.method,
                    class: m.class(),
                    consumer: m.consumer.map(Into::into),
                    duration: Histogram::default(),
                    upstream: Histogram::default(),
                    request_bytes: 0,
                    response_bytes: 0,
                    cache: Vec::new(),
                    refusals: Vec::new(),
                });
                self.series.len() - 1
            }
        };
        let s = &mut self.series[i];
        s.duration.add(m.duration_us);
        if let Some(us) = m.upstream_us {
            s.upstream.add(us);
        }
        s.request_bytes += m.request_bytes.unwrap_or(0);
        s.response_bytes += m.response_bytes.unwrap_or(0);
        if let Some(cache) = m.cache {
            bump(&mut s.cache, cache);
        }
        if let Some(refused) = m.refused {
            bump(&mut s.refusals, refused);
        }
    }

    /// The counts as OTLP metrics, up to `end_ms`, with `resource`; and how many data points.
    pub(super) fn encode(self, resource: otlp::Resource, end_ms: u64) -> (Vec<u8>, usize) {
        let (start, end) = (
            self.start_ms * 1_000_000,
            end_ms.max(self.start_ms) * 1_000_000,
        );
        let mut w = Writer {
            start,
            end,
            metrics: Vec::new(),
            points: 0,
        };
        let series = &self.series;
        w.histogram(
            "http.server.request.duration",
            "Duration of requests through the gateway.",
            series.iter().map(|s| (s, &s.duration, vec![])),
        );
        w.histogram(
            "portcullis.upstream.duration",
            "Duration of the upstream calls of requests that made one, retries included.",
            series.iter().map(|s| (s, &s.upstream, vec![])),
        );
        w.sum(
            "portcullis.request.body.size",
            "Bytes of request bodies of known length.",
            "By",
            series.iter().map(|s| (s, s.request_bytes, vec![])),
        );
        w.sum(
            "portcullis.response.body.size",
            "Bytes of answers' bodies of known length.",
            "By",
            series.iter().map(|s| (s, s.response_bytes, vec![])),
        );
        w.sum(
            "portcullis.cache.requests",
            "Requests of cached routes, by outcome.",
            "{request}",
            series.iter().flat_map(|s| {
                s.cache
                    .iter()
                    .map(move |(c, n)| (s, *n, vec![text("portcullis.cache", c)]))
            }),
        );
        w.sum(
            "portcullis.refusals",
            "Requests a phase refused, by phase and problem code.",
            "{request}",
            series.iter().flat_map(|s| {
                s.refusals.iter().map(move |((phase, code), n)| {
                    let attributes =
                        vec![text("portcullis.phase", phase), text("error.type", code)];
                    (s, *n, attributes)
                })
            }),
        );
        let points = w.points;
        let body = otlp::ExportMetricsServiceRequest {
            resource_metrics: vec![otlp::ResourceMetrics {
                resource: Some(resource),
                scope_metrics: vec![otlp::ScopeMetrics {
                    scope: Some(super::otlp::scope()),
                    metrics: w.metrics,
                }],
            }],
        }
        .encode_to_vec();
        (body, points)
    }
}

/// A series' attributes, and `extra`.
fn attributes(s: &Series, extra: Vec<KeyValue>) -> Vec<KeyValue> {
    let mut a = Vec::with_capacity(5 + extra.len());
    if !s.route.is_empty() {
        a.push(text("portcullis.route", &s.route));
        a.push(text("http.route", &s.route_path));
    }
    a.push(text("http.request.method", s.method));
    a.push(text("portcullis.status_class", s.class));
    if let Some(consumer) = &s.consumer {
        a.push(text("portcullis.consumer", consumer));
    }
    a.extend(extra);
    a
}

/// Builds the export's metrics, leaving out those with no data point.
struct Writer {
    start: u64,
    end: u64,
    metrics: Vec<otlp::Metric>,
    points: usize,
}

impl Writer {
    fn histogram<'s>(
        &mut self,
        name: &str,
        description: &str,
        of: impl Iterator<Item = (&'s Series, &'s Histogram, Vec<KeyValue>)>,
    ) {
        let data_points: Vec<otlp::HistogramDataPoint> = of
            .filter(|(_, h, _)| h.count > 0)
            .map(|(s, h, extra)| otlp::HistogramDataPoint {
                attributes: attributes(s, extra),
                start_time_unix_nano: self.start,
                time_unix_nano: self.end,
                count: h.count,
                sum: Some(h.sum),
                bucket_counts: h.counts.to_vec(),
                explicit_bounds: BOUNDS_S.to_vec(),
                min: Some(h.min),
                max: Some(h.max),
            })
            .collect();
        self.push(
            name,
            description,
            "s",
            otlp::Data::Histogram(otlp::Histogram {
                aggregation_temporality: otlp::DELTA,
                data_points,
            }),
        );
    }

    fn sum<'s>(
        &mut self,
        name: &str,
        description: &str,
        unit: &str,
        of: impl Iterator<Item = (&'s Series, u64, Vec<KeyValue>)>,
    ) {
        let data_points: Vec<otlp::NumberDataPoint> = of
            .filter(|(_, n, _)| *n > 0)
            .map(|(s, n, extra)| otlp::NumberDataPoint {
                attributes: attributes(s, extra),
                start_time_unix_nano: self.start,
                time_unix_nano: self.end,
                // a count or a byte total above i64::MAX is not reached in one export
                as_int: i64::try_from(n).unwrap_or(i64::MAX),
            })
            .collect();
        self.push(
            name,
            description,
            unit,
            otlp::Data::Sum(otlp::Sum {
                aggregation_temporality: otlp::DELTA,
                is_monotonic: true,
                data_points,
            }),
        );
    }

    fn push(&mut self, name: &str, description: &str, unit: &str, data: otlp::Data) {
        let n = match &data {
            otlp::Data::Sum(s) => s.data_points.len(),
            otlp::Data::Histogram(h) => h.data_points.len(),
        };
        if n == 0 {
            return;
        }
        self.points += n;
        self.metrics.push(otlp::Metric {
            name: name.into(),
            description: description.into(),
            unit: unit.into(),
            data: Some(data),
        });
    }
}

/// One request as a Workers Analytics Engine data point: its index (the route, which the
/// engine samples by), blobs and doubles, in the order docs/observability.md lists them. The
/// gateway makes one that borrows the request's strings (`DataPoint<&str>`, nothing allocated
/// per request); a host that keeps points past the call (the in-memory test host) makes an owned
/// copy ([`DataPoint::owned`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DataPoint<S = String> {
    pub index: S,
    pub blobs: [S; BLOBS],
    pub doubles: [f64; DOUBLES],
}

impl DataPoint<&str> {
    /// The point with its strings copied, to keep.
    pub fn owned(&self) -> DataPoint {
        DataPoint {
            index: self.index.into(),
            blobs: self.blobs.map(String::from),
            doubles: self.doubles,
        }
    }
}

/// How many blobs and doubles a [`DataPoint`] has (the engine takes up to 20 of each).
pub const BLOBS: usize = 10;
pub const DOUBLES: usize = 7;

/// The engine's limit on an index, in bytes.
const INDEX_BYTES: usize = 96;

impl Measure<'_> {
    /// The request as an Analytics Engine data point (times in milliseconds; a size the
    /// gateway did not know counts 0, and the last double says whether the answer's was known).
    pub fn data_point<'a>(&'a self, runtime: &'a str) -> DataPoint<&'a str> {
        let mut index = if self.route.is_empty() {
            "-"
        } else {
            self.route
        };
        if index.len() > INDEX_BYTES {
            let mut end = INDEX_BYTES;
            while !index.is_char_boundary(end) {
                end -= 1;
            }
            index = &index[..end];
        }
        let phase = self.refused.map_or("", |(phase, _)| phase);
        let code = self.error.unwrap_or_default();
        DataPoint {
            index,
            blobs: [
                self.route,
                self.route_path,
                self.method,
                self.class(),
                self.consumer.unwrap_or_default(),
                self.cache.unwrap_or_default(),
                phase,
                code,
                self.upstream.unwrap_or_default(),
                runtime,
            ],
            doubles: [
                f64::from(self.status),
                self.duration_us as f64 / 1000.0,
                self.upstream_us.map_or(0.0, |us| us as f64 / 1000.0),
                f64::from(self.upstream_attempts),
                self.request_bytes.unwrap_or(0) as f64,
                self.response_bytes.unwrap_or(0) as f64,
                if self.response_bytes.is_some() {
                    1.0
                } else {
                    0.0
                },
            ],
        }
    }
}

/// The part of the OTLP protobuf schema metrics need (opentelemetry-proto's
/// `collector/metrics/v1` and `metrics/v1`, field numbers as there).
pub(super) mod otlp {
    pub use super::super::otlp::{InstrumentationScope, KeyValue, Resource};

    /// `AGGREGATION_TEMPORALITY_DELTA`.
    pub const DELTA: i32 = 1;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportMetricsServiceRequest {
        #[prost(message, repeated, tag = "1")]
        pub resource_metrics: Vec<ResourceMetrics>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ResourceMetrics {
        #[prost(message, optional, tag = "1")]
        pub resource: Option<Resource>,
        #[prost(message, repeated, tag = "2")]
        pub scope_metrics: Vec<ScopeMetrics>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ScopeMetrics {
        #[prost(message, optional, tag = "1")]
        pub scope: Option<InstrumentationScope>,
        #[prost(message, repeated, tag = "2")]
        pub metrics: Vec<Metric>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metric {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub description: String,
        #[prost(string, tag = "3")]
        pub unit: String,
        #[prost(oneof = "Data", tags = "7, 9")]
        pub data: Option<Data>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Data {
        #[prost(message, tag = "7")]
        Sum(Sum),
        #[prost(message, tag = "9")]
        Histogram(Histogram),
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sum {
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<NumberDataPoint>,
        #[prost(int32, tag = "2")]
        pub aggregation_temporality: i32,
        #[prost(bool, tag = "3")]
        pub is_monotonic: bool,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(message, repeated, tag = "1")]
        pub data_points: Vec<HistogramDataPoint>,
        #[prost(int32, tag = "2")]
        pub aggregation_temporality: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NumberDataPoint {
        #[prost(message, repeated, tag = "7")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed64, tag = "2")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "3")]
        pub time_unix_nano: u64,
        /// `as_int` of the value oneof.
        #[prost(sfixed64, tag = "6")]
        pub as_int: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HistogramDataPoint {
        #[prost(message, repeated, tag = "9")]
        pub attributes: Vec<KeyValue>,
        #[prost(fixed64, tag = "2")]
        pub start_time_unix_nano: u64,
        #[prost(fixed64, tag = "3")]
        pub time_unix_nano: u64,
        #[prost(fixed64, tag = "4")]
        pub count: u64,
        #[prost(double, optional, tag = "5")]
        pub sum: Option<f64>,
        #[prost(fixed64, repeated, tag = "6")]
        pub bucket_counts: Vec<u64>,
        #[prost(double, repeated, tag = "7")]
        pub explicit_bounds: Vec<f64>,
        #[prost(double, optional, tag = "11")]
        pub min: Option<f64>,
        #[prost(double, optional, tag = "12")]
        pub max: Option<f64>,
    }
}

#[cfg(test)]
mod tests;
