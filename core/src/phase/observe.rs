//! Logging and monitoring: one JSON access-log record per request with every phase's decision and
//! duration, and the optional `Server-Timing` header.
//!
//! Builds values only; the host writes the line.

use http::HeaderValue;
use serde::Serialize;

/// One phase's decision and how long it took.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PhaseRecord {
    pub phase: &'static str,
    /// What the phase decided, e.g. `pass`, `deny`, `hit`, `allow:41`.
    pub decision: String,
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
    pub route: Option<String>,
    pub consumer: Option<String>,
    pub status: u16,
    /// The problem code when the gateway refused or failed the request.
    pub error: Option<&'static str>,
    pub phases: Vec<PhaseRecord>,
    pub upstream: Option<String>,
    pub upstream_status: Option<u16>,
    pub upstream_attempts: u32,
    pub upstream_us: Option<u64>,
    pub cache: Option<&'static str>,
    pub rate_limit_remaining: Option<u64>,
    pub duration_us: u64,
}

impl AccessLog {
    /// Records a phase that ran from `start_us` to `end_us`.
    pub fn phase(
        &mut self,
        phase: &'static str,
        decision: impl Into<String>,
        start_us: u64,
        end_us: u64,
    ) {
        self.phases.push(PhaseRecord {
            phase,
            decision: decision.into(),
            us: end_us.saturating_sub(start_us),
        });
    }

    /// The record as one JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
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

#[cfg(test)]
mod tests {
    use super::*;

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
