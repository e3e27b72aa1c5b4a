//! Access-log lines out of whatever carried them: the gateway's own JSON lines (Spin's stdout,
//! a file), possibly after a prefix on the line, and `wrangler tail --format json`, which prints
//! each event as an indented JSON object whose `logs[].message` holds the lines as strings.
//!
//! Trusts nothing: a log may hold lines a client shaped (a path, a header copied into a field).
//! Text that is not JSON is counted and skipped; a value that is not an access line (the
//! gateway's `cache-skip` and `cache-refresh` events, an exception) is counted and skipped.

use serde::Deserialize;
use serde_json::Value;

/// The fields of an access line (`portcullis_core::phase::observe::AccessLog`) the report uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Line {
    pub ts_ms: u64,
    #[serde(default)]
    pub route: Option<String>,
    pub status: u16,
    /// The problem code when the gateway refused or failed the request.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub consumer: Option<String>,
    pub duration_us: u64,
    #[serde(default)]
    pub upstream_us: Option<u64>,
    #[serde(default)]
    pub cache: Option<String>,
}

/// What a read found.
#[derive(Debug, Default)]
pub struct Read {
    pub lines: Vec<Line>,
    /// JSON values that are not access lines (other events of the gateway or the runtime).
    pub other_events: usize,
    /// Non-empty text lines that hold no JSON value.
    pub not_json: usize,
}

/// Reads every access line in `text`.
pub fn read(text: &str) -> Read {
    let mut found = Read::default();
    let mut rest = text;
    while !rest.is_empty() {
        let line_end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        if let Some(open) = rest[..line_end].find('{') {
            // a value may span lines (wrangler indents its events)
            let mut values = serde_json::Deserializer::from_str(&rest[open..]).into_iter::<Value>();
            if let Some(Ok(value)) = values.next() {
                found.take(value);
                rest = &rest[open + values.byte_offset()..];
                continue;
            }
        }
        if !rest[..line_end].trim().is_empty() {
            found.not_json += 1;
        }
        rest = &rest[line_end..];
    }
    found
}

impl Read {
    fn take(&mut self, value: Value) {
        let Some(logs) = value.get("logs").and_then(Value::as_array) else {
            return self.access(value);
        };
        // a tail event: each `console.log` argument is a line (a string) or a value
        for message in logs.iter().filter_map(|l| l.get("message")?.as_array()) {
            for part in message {
                match part {
                    Value::String(s) => match serde_json::from_str::<Value>(s.trim()) {
                        Ok(v) => self.access(v),
                        Err(_) => self.not_json += 1,
                    },
                    v => self.access(v.clone()),
                }
            }
        }
    }

    fn access(&mut self, value: Value) {
        if value.get("event").is_some() {
            self.other_events += 1;
            return;
        }
        match Line::deserialize(value) {
            Ok(line) => self.lines.push(line),
            Err(_) => self.other_events += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"ts_ms":1000,"request_id":"r","trace_id":"t","method":"GET","path":"/a","host":"h","client_ip":"192.0.2.1","route":"items","consumer":"alice","status":429,"error":"rate-limited","phases":[],"upstream_attempts":0,"duration_us":120}"#;

    fn items() -> Line {
        Line {
            ts_ms: 1000,
            route: Some("items".into()),
            status: 429,
            error: Some("rate-limited".into()),
            consumer: Some("alice".into()),
            duration_us: 120,
            upstream_us: None,
            cache: None,
        }
    }

    #[test]
    fn plain_lines_prefixed_lines_and_other_events() {
        let text = format!(
            "Serving http://127.0.0.1:3000\n{LINE}\n[gateway] {LINE}\n\
             {{\"request_id\":\"r\",\"event\":\"cache-skip\",\"reason\":\"too-large\"}}\n\n"
        );
        let read = read(&text);
        assert_eq!(read.lines, vec![items(), items()]);
        assert_eq!((read.other_events, read.not_json), (1, 1));
    }

    #[test]
    fn wrangler_tail_events_indented_over_several_lines() {
        let event = serde_json::json!({
            "outcome": "ok",
            "scriptName": "portcullis",
            "exceptions": [],
            "logs": [{"message": [LINE], "level": "log", "timestamp": 1000}],
            "eventTimestamp": 1000,
            "event": {"request": {"url": "https://example.com/a", "method": "GET"}},
        });
        // as `wrangler tail --format json` prints it: JSON.stringify(event, null, 4)
        let one = serde_json::to_string_pretty(&event).unwrap();
        let read = read(&format!("{one}\n{one}\n"));
        assert_eq!(read.lines, vec![items(), items()]);
        assert_eq!((read.other_events, read.not_json), (0, 0));
    }

    #[test]
    fn broken_and_hostile_input_is_counted_not_fatal() {
        let deep = "[".repeat(10_000);
        let text = format!(
            "{{\"ts_ms\":\n{{not json\n{{\"ts_ms\":\"x\",\"status\":200,\"duration_us\":1}}\n{deep}\n\u{0}\u{ff}\n{LINE}"
        );
        let read = read(&text);
        assert_eq!(read.lines, vec![items()]);
        assert_eq!(read.other_events, 1, "a line whose ts_ms is not a number");
        assert!(read.not_json >= 3, "{}", read.not_json);
    }
}
