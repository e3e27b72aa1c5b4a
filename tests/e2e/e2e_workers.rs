//! The end-to-end suite on Cloudflare Workers: the worker is built by `scripts/build-worker.sh`
//! (as `npx wrangler dev` builds it) from `tests/e2e/gateway.toml` and runs on the real workerd
//! (Miniflare), with real local servers behind it. Needs Node with `npm ci` done.

#[path = "cases.rs"]
mod cases;

use cases::{ClWithTe, CutBeforeHead, NonUtf8Header, OtherHostTarget, Platform, Suite, TwoHosts};
use portcullis_core::Config;
use portcullis_e2e::net::{request, Reply};
use portcullis_e2e::runtime::{
    build_worker, e2e_files, repo_root, start_workers, start_workers_with, Running,
};
use serde_json::json;
use std::sync::OnceLock;

fn suite() -> &'static Suite {
    static SUITE: OnceLock<Suite> = OnceLock::new();
    SUITE.get_or_init(|| {
        Suite::new(
            Platform {
                client_ip_header: "cf-connecting-ip",
                non_utf8_header: NonUtf8Header::Replaced,
                cl_with_te: ClWithTe::Passed,
                two_hosts: TwoHosts::RefusedByRuntime(500),
                other_host_target: OtherHostTarget::RefusedByRuntime(500),
                cut_before_head: CutBeforeHead::HeadSent,
                one_isolate: true,
                runtime: "cloudflare-workers",
            },
            |ports| {
                let (config, _) = e2e_files("workers", &ports.upstream, &ports.jwks);
                let out = build_worker(&config, "build-e2e");
                assert!(
                    out.status.success(),
                    "building the worker failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                start_workers("build-e2e")
            },
        )
    })
}

e2e_cases!(suite);

/// The same listing as `portcullis check`, and no worker: a broken config cannot be deployed.
#[test]
fn a_malformed_config_fails_the_build() {
    let file = "core/tests/fixtures/broken.toml";
    let src = std::fs::read_to_string(repo_root().join(file)).unwrap();
    let listing = Config::from_toml(&src).unwrap_err().render(file);
    let out = build_worker(file, "build-broken");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in listing
        .lines()
        .filter(|l| !l.ends_with("nothing was loaded"))
    {
        assert!(stderr.contains(line), "missing {line:?} in:\n{stderr}");
    }
    let n = listing.lines().count() - 1;
    assert!(
        stderr.contains(&format!("{n} errors; nothing was built")),
        "{stderr}"
    );
    assert!(!repo_root()
        .join("adapters/workers/build-broken/index_bg.wasm")
        .exists());
}

/// Runs `tests/e2e/workers/SCRIPT` with node against the suite's build (on a workerd of its own)
/// and returns the lines it printed; fails the test when the script fails.
fn node_check(script: &str) -> Vec<String> {
    let _built = suite();
    let out = std::process::Command::new("node")
        .arg(format!("tests/e2e/workers/{script}"))
        .arg("adapters/workers/build-e2e")
        .current_dir(repo_root())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_string).collect()
}

/// Once a key's Durable Object has refused a request, the worker refuses the key's next
/// requests itself while the object's state would refuse them: of 60 requests against 50 per
/// hour, the object answers the 50 admissions and the first refusal, and the other nine are
/// refused in the isolate with the same headers. Runs on its own workerd, against the suite's
/// build (`tests/e2e/workers/limiter-memo.mjs`).
#[test]
fn an_isolate_refuses_a_key_over_its_limit_without_calling_its_object() {
    assert_eq!(
        node_check("limiter-memo.mjs"),
        [
            "statuses: 50 x 200, 10 x 429",
            "the last refusal: retry-after set, ratelimit \"fifty\";r=0",
            "admit requests the object answered: 51",
        ]
    );
}

/// A rate-limit Durable Object writes a busy key's state at most once a second and deletes it
/// once it has expired: of five admissions in a row the first is written at once and the other
/// four by one alarm a second later (two writes in all, the second a later state); a state that
/// lives 200 ms is written, then deleted. Runs on its own workerd, against the suite's build
/// (`tests/e2e/workers/limiter-cleanup.mjs`), reading the objects' storage through the namespace
/// binding.
#[test]
fn the_limiter_coalesces_a_busy_keys_writes_and_deletes_expired_state() {
    assert_eq!(
        node_check("limiter-cleanup.mjs"),
        [
            "five requests: 200 200 200 200 200",
            "right after them: a state stored, writes 1",
            "then: writes 2, the stored state changed",
            "brief: 200, ratelimit \"brief\";r=4;t=1",
            "brief stored after the request: a state",
            "brief stored once expired: nothing",
        ]
    );
}

/// A WebSocket through the gateway (a route with `websocket = true`): the handshake passes the
/// route's checks like any request, so one without its API key is refused 401 and one over the
/// rate limit 429 (2 an hour per address; the refused key counts, as for any `ip` limit); once
/// upgraded, messages pass both ways untouched (the upstream greets, then echoes). Spin has no
/// upgrades (wasi:http), so this is a Workers case.
#[test]
fn websockets_pass_through_after_auth_and_the_rate_limit() {
    use tungstenite::client::IntoClientRequest;
    use tungstenite::Message;
    let s = suite();
    let ip = s.client_ip();
    let connect = |key: Option<&str>| {
        let url = format!("ws://{}/ws/echo/{}", s.gw.addr, s.unique());
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("cf-connecting-ip", ip.parse().unwrap());
        if let Some(k) = key {
            req.headers_mut().insert("x-api-key", k.parse().unwrap());
        }
        tungstenite::connect(req)
    };
    let refused = |r: Result<_, tungstenite::Error>| match r {
        Err(tungstenite::Error::Http(res)) => res.status().as_u16(),
        Err(e) => panic!("{e}"),
        Ok(_) => 101,
    };
    assert_eq!(refused(connect(None)), 401);
    let (mut ws, res) = connect(Some("partner-key-1")).expect("the handshake passes");
    assert_eq!(res.status(), 101);
    assert_eq!(ws.read().unwrap(), Message::text("hello from upstream"));
    for m in [
        Message::text("ping 1"),
        Message::binary(vec![0u8, 1, 2, 255]),
        Message::text("é ✓"),
    ] {
        ws.send(m.clone()).unwrap();
        assert_eq!(ws.read().unwrap(), m);
    }
    ws.close(None).unwrap();
    assert_eq!(refused(connect(Some("partner-key-1"))), 429);
}

/// A fetch that passes its upstream's timeout does not keep the upstream's connection: the
/// worker answers 504 at the 1 s timeout (a timeout is not retried) and the upstream sees the
/// caller hang up then, not when its answer would have been due (4 s).
#[test]
fn a_timed_out_fetch_lets_go_of_the_upstream() {
    let s = suite();
    let slow = format!("/backend/slow/4000/abort-{}", s.unique());
    let r = s.send("GET", &slow, &[], b"");
    assert_eq!(r.status, 504, "{}", r.text());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let abandoned = || -> Vec<u64> {
        let all = s.upstream.abandoned.lock().unwrap();
        all.iter()
            .filter(|(t, _)| *t == slow)
            .map(|(_, ms)| *ms)
            .collect()
    };
    while abandoned().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let waits = abandoned();
    assert_eq!(
        waits.len(),
        1,
        "attempts the upstream saw abandoned: {waits:?}"
    );
    assert!(
        waits[0] < 2_000,
        "the upstream's connection was held {} ms after the request arrived",
        waits[0]
    );
}

/// With `PORTCULLIS_CACHE = "cache-api"` responses are kept in the colo-local Cache API rather
/// than KV: on a worker of its own (the suite's build, that binding changed), a second GET is a
/// hit with `Age` and the upstream sees one request. A failed Cache API read would bypass the
/// cache (fail-open) and send the second request upstream too.
#[test]
fn the_cache_api_holds_responses_when_chosen() {
    let s = suite();
    let gw = start_workers_with("build-e2e", &[("PORTCULLIS_CACHE", "cache-api")]);
    let path = format!("/cached/cache-api/{}", s.unique());
    let send = || get(&gw, &path, "198.18.250.1");
    let first = send();
    assert_eq!(first.status, 200, "{}", first.text());
    let second = send();
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(second.text(), first.text(), "a hit serves the stored body");
    assert!(second.header("age").is_some(), "{:?}", second.headers);
    assert_eq!(
        s.upstream.requests_for(&path).len(),
        1,
        "the second GET was a hit"
    );
}

/// Country lists read `request.cf.country`: the suite's worker (Miniflare's placeholder `cf`, no
/// listed country) passes `/geo`, and the same build on a worker whose `cf` says Tor (`T1`) is
/// refused there, but nowhere else. The access log names the country, ASN and colo from `cf`.
#[test]
fn a_country_list_reads_request_cf() {
    let s = suite();
    let r = s.send("GET", "/geo", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let tor = start_workers_with(
        "build-e2e",
        &[(
            "PORTCULLIS_TEST_CF",
            r#"{"country": "T1", "asn": 64496, "colo": "FRA"}"#,
        )],
    );
    let send = |path: &str| get(&tor, path, "198.18.250.2");
    let r = send("/geo");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["type"], "urn:portcullis:problem:access-denied");
    let id = r.header("x-request-id").unwrap().to_string();
    assert_eq!(send(&format!("/backend/tor/{}", s.unique())).status, 200);
    let records = tor.await_log_lines_with(&id);
    assert_eq!(records.len(), 1, "one access-log line for {id}");
    let rec = &records[0];
    assert_eq!(
        (&rec["country"], &rec["asn"], &rec["edge_location"]),
        (&json!("T1"), &json!(64496), &json!("FRA"))
    );
}

/// A worker whose `secret_env` secret is missing does not start: every request fails (the
/// platform's log says which secret), and none is let through on a partial config.
#[test]
fn a_missing_secret_keeps_the_gateway_from_starting() {
    let _ = suite(); // the suite's build
    let unset = start_workers_with("build-e2e", &[("PORTCULLIS_TEST_HS_SECRET", "")]);
    for path in ["/limited", "/env-secret", "/geo"] {
        assert_eq!(get(&unset, path, "198.18.250.3").status, 500, "{path}");
    }
}

/// A GET from client `ip` to a worker a test started for itself.
fn get(gw: &Running, path: &str, ip: &str) -> Reply {
    request(&gw.addr, "GET", path, &[("cf-connecting-ip", ip)], b"")
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}
