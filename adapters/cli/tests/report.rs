//! `portcullis report` on access-log lines the gateway itself wrote: traffic over ten minutes
//! through the default config (examples/gateway.toml) on the core's in-memory host, some of it
//! as `wrangler tail --format json` prints it, plus lines a hostile client could shape. The page
//! is then opened in headless Chromium (Debian's), which must show every chart and meet no
//! error, no dialog and no request for anything outside the page.

use bytes::Bytes;
use portcullis_core::memory::MemoryHost;
use portcullis_core::{Body, Client, Config, Gateway};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const START_MS: u64 = 1_796_326_637_000; // 2026-12-03 19:37:17 UTC
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
/// The demo token of examples/gateway.toml (public, expires 2100).
const TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImRlbW8ifQ.eyJpc3MiOiJodHRwczovL2RlbW8ucG9ydGN1bGxpcy5sb2NhbC8iLCJhdWQiOiJkZW1vIiwic3ViIjoiZGVtby11c2VyIiwic2NvcGUiOiJkZW1vOnJlYWQiLCJleHAiOjQxMDI0NDQ4MDB9.UMIBw3bHAiXP2VPlAMWT8oszvoFntlpw5JpWCfL9LOE";

/// 600 requests, one a second, of the kinds an operator sees: answers, refusals of each phase.
fn traffic() -> Vec<String> {
    let src = std::fs::read_to_string(format!("{ROOT}/examples/gateway.toml")).unwrap();
    let gateway = Gateway::new(Config::from_toml(&src).unwrap());
    let host = MemoryHost::new(START_MS, |_| Ok(http::Response::new(Bytes::new())));
    for i in 0..600u32 {
        host.set_now(START_MS + u64::from(i) * 1000);
        let (method, path, header) = match i % 10 {
            0 | 1 => ("GET", "/health", None),
            2 => ("GET", "/v1/hello/ada", None), // 5 a minute per address, then 429
            3 => ("GET", "/v1/hello/9-bad", None), // 400: the name's pattern
            4 => (
                "GET",
                "/v1/me",
                Some(("authorization", format!("Bearer {TOKEN}"))),
            ),
            5 => ("GET", "/v1/me", None), // 401
            6 => (
                "GET",
                "/v1/partner",
                Some(("x-api-key", "demo-key-123".into())),
            ),
            7 => ("GET", "/v1/partner", Some(("x-api-key", "wrong".into()))), // 401
            8 => (
                "POST",
                "/v1/echo",
                Some(("content-type", "text/plain".into())),
            ), // 415
            _ => ("GET", "/nowhere", None),                                   // 404
        };
        let mut req = http::Request::builder().method(method).uri(path);
        if let Some((k, v)) = header {
            req = req.header(k, v);
        }
        let req = req.body(Body::Bytes(Bytes::from_static(b"hi"))).unwrap();
        let client = Client::new([192, 0, 2, (i % 4) as u8 + 1].into());
        pollster::block_on(gateway.handle(req, client, &host));
    }
    let lines: Vec<String> = host.log_records().iter().map(|v| v.to_string()).collect();
    assert_eq!(lines.len(), 600);
    lines
}

/// Lines shaped by a hostile client or a broken pipe: markup in every name, a line cut short.
const HOSTILE: &str = r#"{"ts_ms":1796326700000,"route":"<script>alert('route')</script>","consumer":"<img src=x onerror=alert('consumer')>","status":403,"error":"<b onmouseover=alert(1)>","duration_us":1,"phases":[]}
{"ts_ms":1796326700000,"route":"a\"><svg onload=alert('svg')>","status":200,"duration_us":1}
{"ts_ms":17963267"#;

fn dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn report(args: &[&Path]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("report")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn a_report_of_ten_minutes_of_traffic_counts_every_line_and_shows_in_chromium() {
    let lines = traffic();
    let dir = dir();
    // 500 lines as Spin prints them, with its own line before; 100 as wrangler tail does
    let spin = dir.join("spin.log");
    let spin_text = format!(
        "Serving http://127.0.0.1:3000\n{}\n",
        lines[..500].join("\n")
    );
    std::fs::write(&spin, spin_text + HOSTILE).unwrap();
    let tail = dir.join("tail.json");
    let events = lines[500..].iter().map(|l| {
        let event = serde_json::json!({
            "outcome": "ok", "scriptName": "portcullis", "exceptions": [], "eventTimestamp": 0,
            "logs": [{"message": [l], "level": "log", "timestamp": 0}],
            "event": {"request": {"url": "https://example.com/", "method": "GET"}},
        });
        serde_json::to_string_pretty(&event).unwrap()
    });
    std::fs::write(&tail, events.collect::<Vec<_>>().join("\n")).unwrap();
    let page = dir.join("report.html");
    let (code, err) = report(&[&spin, &tail, Path::new("-o"), &page]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        err.trim(),
        format!(
            "report: 602 access-log lines from {}, {} (0 other events and 2 lines that are not \
             JSON left out)",
            spin.display(),
            tail.display()
        )
    );
    let html = std::fs::read_to_string(&page).unwrap();

    // each route's row counts its lines, as counted here from the same lines
    let mut by_route: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let route = v["route"].as_str().unwrap_or("(no route)").to_string();
        let status = v["status"].as_u64().unwrap();
        let e = by_route.entry(route).or_default();
        e.0 += 1;
        e.1 += u64::from((400..500).contains(&status));
    }
    assert_eq!(by_route["health"], (120, 0));
    assert_eq!(by_route["(no route)"], (60, 60), "the 404s");
    for (route, (n, client_errors)) in &by_route {
        let row = format!("<tr><td>{route}</td><td>{n}</td><td>{client_errors}</td><td>0</td>");
        assert!(html.contains(&row), "{row}");
    }
    // refusals by reason, with the demo token's and key's consumers
    for row in [
        "<tr><td>401 unauthenticated</td><td>120</td>",
        "<tr><td>415 unsupported-media-type</td><td>60</td>",
        "<tr><td>400 invalid-parameter</td><td>60</td>",
        "<tr><td>404 not-found</td><td>60</td>",
        "<tr><td>demo-partner</td><td>60</td>",
        "<tr><td>demo-user</td><td>60</td>",
    ] {
        assert!(html.contains(row), "{row}");
    }
    // hello's 6 a minute come from 2 addresses in turn, within 5 a minute each
    assert!(!html.contains("<tr><td>429 "), "none rate limited");

    // the hostile names are text, never markup
    for raw in ["<script>", "<img src=x", "<b onmouseover", "<svg onload"] {
        assert!(!html.contains(raw), "{raw} left unescaped");
    }
    assert!(html.contains("&lt;script&gt;alert(&#39;route&#39;)&lt;/script&gt;"));

    chromium(&page, &dir.join("report.png"));
}

/// The page in headless Chromium: required where `PORTCULLIS_REQUIRE_BROWSER` is set (CI),
/// else skipped with a notice when Debian's Chromium is not installed.
fn chromium(page: &Path, shot: &Path) {
    let chromium = std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        assert!(
            std::env::var_os("PORTCULLIS_REQUIRE_BROWSER").is_none(),
            "no {chromium}: apt-get install chromium"
        );
        eprintln!("skipped the browser check: no {chromium} (apt-get install chromium)");
        return;
    }
    let out = Command::new("node")
        .arg(format!("{ROOT}/adapters/cli/tests/browser.mjs"))
        .args([page, shot])
        .current_dir(ROOT)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "console_errors",
        "page_errors",
        "dialogs",
        "requests_failed",
    ] {
        assert_eq!(found[key], serde_json::json!([]), "{key}: {found}");
    }
    assert_eq!(found["scripts"], 0);
    assert!(found["title"]
        .as_str()
        .unwrap()
        .starts_with("Portcullis traffic, 2026-12-03 19:37:17 to 2026-12-03 19:47:16"));
    let charts = found["charts"].as_array().unwrap();
    assert_eq!(charts.len(), 5, "{found}");
    for c in charts {
        assert!(c["width"].as_u64().unwrap() >= 900, "{c}");
        assert!(c["lines"].as_u64().unwrap() >= 1, "{c}");
    }
    // a page of charts and tables, not a blank one
    let (shot_bytes, blank) = (
        found["screenshot_bytes"].as_u64(),
        found["blank_bytes"].as_u64(),
    );
    assert!(shot_bytes.unwrap() > 20 * blank.unwrap(), "{found}");
}

#[test]
fn no_access_line_is_an_error_that_says_so() {
    let dir = dir();
    let empty = dir.join("none.log");
    std::fs::write(
        &empty,
        "Serving http://127.0.0.1:3000\n{\"event\":\"cache-skip\"}\n",
    )
    .unwrap();
    let (code, err) = report(&[&empty]);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        format!(
            "portcullis: no access-log lines: 0 access-log lines from {} (1 other events and 1 \
             lines that are not JSON left out)",
            empty.display()
        )
    );
    let (code, err) = report(&[&dir.join("missing.log")]);
    assert_eq!(code, 1);
    assert!(err.starts_with("portcullis: cannot read "), "{err}");
}
