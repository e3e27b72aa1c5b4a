//! Logging and monitoring: one JSON access-log record per request with every phase's decision and
//! duration (or per sampled request: [`LogSample`]), and the optional `Server-Timing` header.
//!
//! Builds values only; the host writes the line.

use http::HeaderValue;
use serde::Serialize;
use std::borrow::Cow;
use std::rc::Rc;

/// A share of requests picked at random, one draw per request (the access log's sample, the
/// traces' `sample`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// Every request.
    All,
    /// A request when a random draw (uniform over `u64`) is below this.
    Below(u64),
}

impl Share {
    /// `share` of the requests (0 to 1; outside that range, the nearest end).
    pub fn of(share: f64) -> Share {
        if share >= 1.0 {
            Share::All
        } else {
            // `as` saturates and takes NaN to 0; 2^64 × share is below 2^64 here
            Share::Below((share * 18_446_744_073_709_551_616.0) as u64)
        }
    }

    /// Whether a request is picked; `draw` (a random `u64`) is called only when not every one is.
    pub fn picks(self, draw: impl FnOnce() -> u64) -> bool {
        match self {
            Share::All => true,
            Share::Below(bound) => draw() < bound,
        }
    }
}

/// Which answers get an access-log line (`[gateway] access_log_sample`): every answer of 400 and
/// above, and a share of the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSample(pub Share);

impl LogSample {
    /// The sample that logs `share` of the answers below 400.
    pub fn share(share: f64) -> LogSample {
        LogSample(Share::of(share))
    }

    /// Whether an answer of `status` gets its line; `draw` (a random `u64`) is called only for
    /// an answer below 400 when not every one is logged.
    pub fn keeps(self, status: u16, draw: impl FnOnce() -> u64) -> bool {
        status >= 400 || self.0.picks(draw)
    }
}

/// The phases a log record names, in the order of the request's journey.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Validate,
    Access,
    Auth,
    RateLimit,
    Route,
    Cache,
    Transform,
    Respond,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Validate,
        Phase::Access,
        Phase::Auth,
        Phase::RateLimit,
        Phase::Route,
        Phase::Cache,
        Phase::Transform,
        Phase::Respond,
    ];

    /// The name in logs and `Server-Timing`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Validate => "validate",
            Phase::Access => "access",
            Phase::Auth => "auth",
            Phase::RateLimit => "ratelimit",
            Phase::Route => "route",
            Phase::Cache => "cache",
            Phase::Transform => "transform",
            Phase::Respond => "respond",
        }
    }

    /// The record's opening up to the decision's value, written as one piece.
    fn json_opening(self) -> &'static str {
        match self {
            Phase::Validate => r#"{"phase":"validate","decision":"#,
            Phase::Access => r#"{"phase":"access","decision":"#,
            Phase::Auth => r#"{"phase":"auth","decision":"#,
            Phase::RateLimit => r#"{"phase":"ratelimit","decision":"#,
            Phase::Route => r#"{"phase":"route","decision":"#,
            Phase::Cache => r#"{"phase":"cache","decision":"#,
            Phase::Transform => r#"{"phase":"transform","decision":"#,
            Phase::Respond => r#"{"phase":"respond","decision":"#,
        }
    }
}

/// One phase's decision and how long it took.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PhaseRecord<'a> {
    pub phase: Phase,
    /// What the phase decided, e.g. `pass`, `deny`, `hit`, `jwt:main`.
    pub decision: Cow<'a, str>,
    pub us: u64,
    /// The monotonic reading when it began (for trace spans; not logged).
    #[serde(skip)]
    pub start_us: u64,
}

/// The access-log record. It borrows from the request and the config, so building it copies
/// no strings; [`AccessLog::to_json`] writes the line.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AccessLog<'a> {
    pub ts_ms: u64,
    pub request_id: &'a str,
    pub trace_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub host: &'a str,
    pub client_ip: &'a str,
    /// The client's country, ASN and the edge location, when the adapter reports them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge_location: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer: Option<Rc<str>>,
    pub status: u16,
    /// The problem code when the gateway refused or failed the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    pub phases: Vec<PhaseRecord<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    pub upstream_attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_remaining: Option<u64>,
    pub duration_us: u64,
}

impl<'a> AccessLog<'a> {
    /// Whether `p` is the phase that refused the request: its decision is the problem code.
    pub fn refused_in(&self, p: &PhaseRecord<'_>) -> bool {
        p.phase != Phase::Respond && self.error.is_some_and(|code| code == p.decision)
    }

    /// Records a phase that ran from `start_us` to `end_us`.
    pub fn phase(
        &mut self,
        phase: Phase,
        decision: impl Into<Cow<'a, str>>,
        start_us: u64,
        end_us: u64,
    ) {
        self.phases.push(PhaseRecord {
            phase,
            decision: decision.into(),
            us: end_us.saturating_sub(start_us),
            start_us,
        });
    }

    /// The record as one JSON line. Written by hand rather than through serde: this runs for
    /// every request, and serde's generic serializer takes ~3× as long (criterion rows
    /// `observe/to_json` and `observe/to_json_via_serde`, BENCHMARKS.md).
    /// Each key is written with its punctuation as one constant piece.
    /// `tests::hand_written_json_matches_serde` holds the two to the same output.
    pub fn to_json(&self) -> String {
        let mut line = String::new();
        self.write_json(&mut line);
        line
    }

    /// [`AccessLog::to_json`] appended to `line`, so a caller can reuse one buffer.
    pub fn write_json(&self, line: &mut String) {
        line.reserve(512 + 48 * self.phases.len());
        let mut w = Json(line);
        w.num_field("{\"ts_ms\":", self.ts_ms);
        w.str_field(",\"request_id\":", self.request_id);
        w.str_field(",\"trace_id\":", self.trace_id);
        w.str_field(",\"method\":", self.method);
        w.str_field(",\"path\":", self.path);
        w.str_field(",\"host\":", self.host);
        w.str_field(",\"client_ip\":", self.client_ip);
        if let Some(v) = self.country {
            w.str_field(",\"country\":", v);
        }
        if let Some(v) = self.asn {
            w.num_field(",\"asn\":", u64::from(v));
        }
        if let Some(v) = self.edge_location {
            w.str_field(",\"edge_location\":", v);
        }
        if let Some(v) = self.route {
            w.str_field(",\"route\":", v);
        }
        if let Some(v) = &self.consumer {
            w.str_field(",\"consumer\":", v);
        }
        w.num_field(",\"status\":", u64::from(self.status));
        if let Some(v) = self.error {
            w.str_field(",\"error\":", v);
        }
        w.raw(",\"phases\":[");
        for (i, p) in self.phases.iter().enumerate() {
            if i > 0 {
                w.raw(",");
            }
            w.str_field(p.phase.json_opening(), &p.decision);
            w.num_field(",\"us\":", p.us);
            w.raw("}");
        }
        w.raw("]");
        if let Some(v) = self.upstream {
            w.str_field(",\"upstream\":", v);
        }
        if let Some(v) = self.upstream_status {
            w.num_field(",\"upstream_status\":", u64::from(v));
        }
        w.num_field(",\"upstream_attempts\":", u64::from(self.upstream_attempts));
        if let Some(v) = self.upstream_us {
            w.num_field(",\"upstream_us\":", v);
        }
        if let Some(v) = self.cache {
            w.str_field(",\"cache\":", v);
        }
        if let Some(v) = self.rate_limit_remaining {
            w.num_field(",\"rate_limit_remaining\":", v);
        }
        w.num_field(",\"duration_us\":", self.duration_us);
        w.raw("}");
    }

    /// `Server-Timing` with each phase and the upstream, durations in milliseconds.
    pub fn server_timing(&self) -> Option<HeaderValue> {
        // milliseconds with three decimals, from whole microseconds: no float formatting
        let ms = |us: u64| format!("{}.{:03}", us / 1000, us % 1000);
        let mut parts: Vec<String> = self
            .phases
            .iter()
            .map(|p| format!("{};dur={}", p.phase.as_str(), ms(p.us)))
            .collect();
        if let Some(us) = self.upstream_us {
            parts.push(format!("upstream;dur={}", ms(us)));
        }
        parts.push(format!("total;dur={}", ms(self.duration_us)));
        HeaderValue::from_str(&parts.join(", ")).ok()
    }
}

/// A minimal JSON writer for the access log and problem documents.
pub(crate) struct Json<'s>(pub(crate) &'s mut String);

impl Json<'_> {
    // The constant pieces are inlined so that each is copied at its known length rather than
    // through a call to `memcpy`; the values go through the shared code below.
    #[inline(always)]
    pub(crate) fn raw(&mut self, s: &str) {
        self.0.push_str(s);
    }

    /// `key` is the key with its punctuation, e.g. `,"status":`.
    #[inline(always)]
    pub(crate) fn num_field(&mut self, key: &str, v: u64) {
        self.0.push_str(key);
        self.number(v);
    }

    #[inline(always)]
    pub(crate) fn str_field(&mut self, key: &str, v: &str) {
        self.0.push_str(key);
        self.string(v);
    }

    #[inline(never)]
    fn number(&mut self, v: u64) {
        // most phases take 0–9 µs: one digit needs no formatting
        match u8::try_from(v) {
            Ok(d @ 0..=9) => self.0.push(char::from(b'0' + d)),
            _ => self.0.push_str(itoa::Buffer::new().format(v)),
        }
    }

    /// A JSON string: runs of safe characters are copied whole.
    #[inline(never)]
    fn string(&mut self, v: &str) {
        self.0.push('"');
        // the common case: nothing to escape
        if !any_needs_escape(v.as_bytes()) {
            self.0.push_str(v);
            self.0.push('"');
            return;
        }
        let mut start = 0;
        for (i, b) in v.bytes().enumerate() {
            if !needs_escape(b) {
                continue;
            }
            self.0.push_str(&v[start..i]);
            match b {
                b'"' => self.0.push_str("\\\""),
                b'\\' => self.0.push_str("\\\\"),
                b'\n' => self.0.push_str("\\n"),
                b'\r' => self.0.push_str("\\r"),
                b'\t' => self.0.push_str("\\t"),
                0x08 => self.0.push_str("\\b"),
                0x0c => self.0.push_str("\\f"),
                _ => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    self.0.push_str("\\u00");
                    self.0.push(char::from(HEX[usize::from(b >> 4)]));
                    self.0.push(char::from(HEX[usize::from(b & 15)]));
                }
            }
            start = i + 1;
        }
        self.0.push_str(&v[start..]);
        self.0.push('"');
    }
}

/// Whether any byte must be escaped, eight bytes at a time (SWAR: "has a byte less than 0x20",
/// "has a byte equal to `"`", "has a byte equal to `\\`" on a whole word).
fn any_needs_escape(v: &[u8]) -> bool {
    let mut chunks = v.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if word_needs_escape(u64::from_le_bytes(word)) {
            return true;
        }
    }
    let rest = chunks.remainder();
    if rest.is_empty() {
        return false;
    }
    let mut word = [b'a'; 8]; // padding that needs no escape
    word[..rest.len()].copy_from_slice(rest);
    word_needs_escape(u64::from_le_bytes(word))
}

fn word_needs_escape(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // a byte of x is below n (n <= 0x80) iff this sets its high bit (for some byte)
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    (below(x, 0x20) | below(x ^ (ONES * 0x22), 1) | below(x ^ (ONES * 0x5c), 1)) != 0
}

/// Control characters, `"` and `\`: the bytes a JSON string must escape.
#[inline]
fn needs_escape(b: u8) -> bool {
    // bitwise, not short-circuit, so that loops over it vectorize
    (b < 0x20) | (b == b'"') | (b == b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_sample_keeps_every_failure_and_its_share_of_the_rest() {
        let none = LogSample::share(0.0);
        let tenth = LogSample::share(0.1);
        let all = LogSample::share(1.0);
        let never = || -> u64 { unreachable!("no draw is needed") };
        for (sample, status, draw, kept) in [
            (all, 200, None, true),
            (all, 503, None, true),
            (none, 200, Some(0), false),
            (none, 404, None, true),
            (none, 500, None, true),
            (tenth, 399, Some(u64::MAX / 10 - 1_000), true),
            (tenth, 399, Some(u64::MAX / 10 + 1_000), false),
            (tenth, 429, None, true),
        ] {
            let got = match draw {
                Some(d) => sample.keeps(status, || d),
                None => sample.keeps(status, never),
            };
            assert_eq!(got, kept, "{sample:?} {status} {draw:?}");
        }
        assert_eq!(Share::of(1.5), Share::All);
        assert_eq!(Share::of(-1.0), Share::Below(0));
        assert_eq!(Share::of(f64::NAN), Share::Below(0));
    }

    #[test]
    fn a_log_sample_of_a_half_keeps_about_half_of_a_uniform_sequence() {
        let half = LogSample::share(0.5);
        // a Weyl sequence covers u64 evenly
        let mut x = 0u64;
        let kept = (0..10_000)
            .filter(|_| {
                x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
                half.keeps(200, || x)
            })
            .count();
        assert!((4_900..=5_100).contains(&kept), "{kept}");
    }

    #[test]
    fn each_phase_has_one_name_in_json_server_timing_and_serde() {
        for p in Phase::ALL {
            assert_eq!(
                p.json_opening(),
                format!(r#"{{"phase":"{}","decision":"#, p.as_str())
            );
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
            assert!(!any_needs_escape(p.as_str().as_bytes()));
        }
    }

    #[test]
    fn hand_written_json_matches_serde() {
        let mut log = AccessLog {
            ts_ms: 1_700_000_000_123,
            request_id: "r\"1\\",
            trace_id: "t\u{1}\n\u{8}\u{c}\u{1f}\r",
            method: "GET",
            path: "/caf\u{e9}/\u{1F600}",
            host: "h",
            client_ip: "::1",
            country: Some("T1"),
            asn: Some(4_294_967_295),
            edge_location: Some("FRA"),
            route: Some("r"),
            consumer: None,
            status: 429,
            error: Some("rate-limited"),
            upstream_attempts: 0,
            cache: Some("bypass"),
            rate_limit_remaining: Some(0),
            duration_us: u64::MAX,
            ..Default::default()
        };
        log.phase(Phase::RateLimit, "limit", 0, 7);
        log.phase(
            Phase::Auth,
            std::borrow::Cow::Owned("jwt:\tmain".to_string()),
            0,
            0,
        );
        let ours: serde_json::Value = serde_json::from_str(&log.to_json()).unwrap();
        let theirs = serde_json::to_value(&log).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(log.to_json(), serde_json::to_string(&log).unwrap());
        let empty = AccessLog::default();
        assert_eq!(empty.to_json(), serde_json::to_string(&empty).unwrap());
    }

    proptest::proptest! {
        #[test]
        fn word_at_a_time_scan_agrees_with_the_byte_test(v in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            proptest::prop_assert_eq!(any_needs_escape(&v), v.iter().any(|&b| needs_escape(b)));
        }
    }

    #[test]
    fn every_escaped_byte_is_found_in_every_position() {
        for bad in (0u8..0x20).chain([b'"', b'\\']) {
            for len in 1..20 {
                for at in 0..len {
                    let mut v = vec![b'x'; len];
                    v[at] = bad;
                    assert!(any_needs_escape(&v), "{bad:#x} at {at} of {len}");
                }
            }
        }
        assert!(!any_needs_escape(
            "caf\u{e9} \u{1F600} ~!#$%&'()*+,-./:;<=>?@[]^_`{|}".as_bytes()
        ));
    }

    #[test]
    fn record_and_timing() {
        let mut log = AccessLog {
            request_id: "r1",
            status: 200,
            duration_us: 2500,
            ..Default::default()
        };
        log.phase(Phase::Validate, "pass", 10, 30);
        log.phase(Phase::Auth, "jwt:main", 30, 1030);
        log.upstream_us = Some(1200);
        assert_eq!(
            log.server_timing().unwrap(),
            "validate;dur=0.020, auth;dur=1.000, upstream;dur=1.200, total;dur=2.500"
        );
        let v: serde_json::Value = serde_json::from_str(&log.to_json()).unwrap();
        assert_eq!(
            v["phases"][1],
            serde_json::json!({"phase": "auth", "decision": "jwt:main", "us": 1000})
        );
        assert_eq!(v["request_id"], "r1");
    }
}
