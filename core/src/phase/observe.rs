//! Logging and monitoring: one JSON access-log record per request with every phase's decision and
//! duration, and the optional `Server-Timing` header.
//!
//! Builds values only; the host writes the line.

use http::HeaderValue;
use serde::Serialize;
use std::borrow::Cow;

/// One phase's decision and how long it took.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PhaseRecord {
    pub phase: &'static str,
    /// What the phase decided, e.g. `pass`, `deny`, `hit`, `jwt:main`.
    pub decision: Cow<'static, str>,
    pub us: u64,
}

/// The access-log record.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AccessLog {
    pub ts_ms: u64,
    pub request_id: String,
    pub trace_id: String,
    pub method: String,
    pub path: String,
    pub host: String,
    pub client_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    pub status: u16,
    /// The problem code when the gateway refused or failed the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    pub phases: Vec<PhaseRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
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

impl AccessLog {
    /// Records a phase that ran from `start_us` to `end_us`.
    pub fn phase(
        &mut self,
        phase: &'static str,
        decision: impl Into<Cow<'static, str>>,
        start_us: u64,
        end_us: u64,
    ) {
        self.phases.push(PhaseRecord {
            phase,
            decision: decision.into(),
            us: end_us.saturating_sub(start_us),
        });
    }

    /// The record as one JSON line. Written by hand rather than through serde: this runs for
    /// every request, and the generic serializer cost ~5× more (measured, see BENCHMARKS.md).
    /// `tests::hand_written_json_matches_serde` holds the two to the same output.
    pub fn to_json(&self) -> String {
        let mut w = Json(String::with_capacity(1024));
        w.0.push('{');
        w.num("ts_ms", self.ts_ms, true);
        w.str("request_id", &self.request_id);
        w.str("trace_id", &self.trace_id);
        w.str("method", &self.method);
        w.str("path", &self.path);
        w.str("host", &self.host);
        w.str("client_ip", &self.client_ip);
        if let Some(v) = &self.route {
            w.str("route", v);
        }
        if let Some(v) = &self.consumer {
            w.str("consumer", v);
        }
        w.num("status", u64::from(self.status), false);
        if let Some(v) = self.error {
            w.str("error", v);
        }
        w.0.push_str(",\"phases\":[");
        for (i, p) in self.phases.iter().enumerate() {
            if i > 0 {
                w.0.push(',');
            }
            w.0.push('{');
            w.str_first("phase", p.phase);
            w.str("decision", &p.decision);
            w.num("us", p.us, false);
            w.0.push('}');
        }
        w.0.push(']');
        if let Some(v) = &self.upstream {
            w.str("upstream", v);
        }
        if let Some(v) = self.upstream_status {
            w.num("upstream_status", u64::from(v), false);
        }
        w.num(
            "upstream_attempts",
            u64::from(self.upstream_attempts),
            false,
        );
        if let Some(v) = self.upstream_us {
            w.num("upstream_us", v, false);
        }
        if let Some(v) = self.cache {
            w.str("cache", v);
        }
        if let Some(v) = self.rate_limit_remaining {
            w.num("rate_limit_remaining", v, false);
        }
        w.num("duration_us", self.duration_us, false);
        w.0.push('}');
        w.0
    }

    /// `Server-Timing` with each phase and the upstream, durations in milliseconds.
    pub fn server_timing(&self) -> Option<HeaderValue> {
        let mut parts: Vec<String> = self
            .phases
            .iter()
            .map(|p| format!("{};dur={:.3}", p.phase, p.us as f64 / 1000.0))
            .collect();
        if let Some(us) = self.upstream_us {
            parts.push(format!("upstream;dur={:.3}", us as f64 / 1000.0));
        }
        parts.push(format!("total;dur={:.3}", self.duration_us as f64 / 1000.0));
        HeaderValue::from_str(&parts.join(", ")).ok()
    }
}

/// A minimal JSON object writer for the access log.
struct Json(String);

impl Json {
    fn key(&mut self, key: &str, first: bool) {
        if !first {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(key);
        self.0.push_str("\":");
    }

    fn num(&mut self, key: &str, v: u64, first: bool) {
        self.key(key, first);
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        let mut n = v;
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.0
            .push_str(std::str::from_utf8(&buf[i..]).unwrap_or("0"));
    }

    fn str(&mut self, key: &str, v: &str) {
        self.key(key, false);
        self.escaped(v);
    }

    fn str_first(&mut self, key: &str, v: &str) {
        self.key(key, true);
        self.escaped(v);
    }

    /// A JSON string: runs of safe characters are copied whole.
    fn escaped(&mut self, v: &str) {
        self.0.push('"');
        // the common case: nothing to escape (a branch-free scan the compiler vectorizes)
        if v.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            self.0.push_str(v);
            self.0.push('"');
            return;
        }
        let mut start = 0;
        for (i, b) in v.bytes().enumerate() {
            let esc = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.push_str(&v[start..i]);
            if esc.is_empty() {
                self.0.push_str(&format!("\\u{b:04x}"));
            } else {
                self.0.push_str(esc);
            }
            start = i + 1;
        }
        self.0.push_str(&v[start..]);
        self.0.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_written_json_matches_serde() {
        let mut log = AccessLog {
            ts_ms: 1_700_000_000_123,
            request_id: "r\"1\\".into(),
            trace_id: "t\u{1}\n".into(),
            method: "GET".into(),
            path: "/caf\u{e9}/\u{1F600}".into(),
            host: "h".into(),
            client_ip: "::1".into(),
            route: Some("r".into()),
            consumer: None,
            status: 429,
            error: Some("rate-limited"),
            upstream_attempts: 0,
            cache: Some("bypass"),
            rate_limit_remaining: Some(0),
            duration_us: u64::MAX,
            ..Default::default()
        };
        log.phase("ratelimit", "limit", 0, 7);
        log.phase("auth", std::borrow::Cow::Owned("jwt:\tmain".into()), 0, 0);
        let ours: serde_json::Value = serde_json::from_str(&log.to_json()).unwrap();
        let theirs = serde_json::to_value(&log).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(log.to_json(), serde_json::to_string(&log).unwrap());
        let empty = AccessLog::default();
        assert_eq!(empty.to_json(), serde_json::to_string(&empty).unwrap());
    }

    #[test]
    fn record_and_timing() {
        let mut log = AccessLog {
            request_id: "r1".into(),
            status: 200,
            duration_us: 2500,
            ..Default::default()
        };
        log.phase("validate", "pass", 10, 30);
        log.phase("auth", "jwt:main", 30, 1030);
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
