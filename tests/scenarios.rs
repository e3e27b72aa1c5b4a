//! Scenario tests: whole requests through `Gateway::handle` on the in-memory host, stepping a fake
//! clock. Each test names the behaviour it checks.

use bytes::Bytes;
use portcullis_core::host::{BodyUse, FetchError};
use portcullis_core::memory::{self, MemoryHost, MemoryStream};
use portcullis_core::{Body, Gateway};
use portcullis_tests::*;
use serde_json::json;

const CONFIG: &str = r#"
[gateway]
trusted_proxies = ["10.0.0.0/8"]
server_timing = true

[upstreams.app]
targets = [{ url = "https://backend.test/base" }]
timeout_ms = 1000
retries = 2

[access.blocklist]
deny_ips = ["203.0.113.0/24"]
deny_countries = ["KP"]

[auth.jwt.hs]
issuer = "https://issuer.test/"
audiences = ["api"]
keys = [{ kid = "hs", alg = "HS256", secret = "scenario-secret-0123456789abcdef-xyz" }]

[auth.jwt.remote]
issuer = "https://issuer.test/"
audiences = ["api"]
jwks_url = "https://issuer.test/.well-known/jwks.json"
jwks_cooldown_s = 30
jwks_min_ttl_s = 60
jwks_max_ttl_s = 600

[auth.api_keys.partners]
header = "x-api-key"
# sha256("k-partner")
keys = [{ consumer = "partner-1", sha256 = "2f0d0c4e6ed2b1c3fd4e1de3efd0e7c5b0c0ad9c1e1f4c9a6b1f3d1e7c0c0a11" }]

[rate_limits.three_per_minute]
key = "consumer"
limit = 3
period_s = 60

[rate_limits.fragile]
key = "ip"
limit = 1
period_s = 60
fail = "closed"

[rate_limits.hot]
key = "route"
limit = 8
period_s = 60
shards = 4

[transforms.out]
set_headers = { "x-consumer" = "{consumer}", "x-route" = "{route}" }
remove_headers = ["cookie"]
set_query = { "v" = "2" }
remove_query = ["debug"]

[cors.web]
allow_origins = ["https://app.test"]
allow_headers = ["authorization", "content-type"]
max_age_s = 60

[[routes]]
name = "health"
methods = ["GET"]
path = "/health"
respond = { body = "ok" }

[[routes]]
name = "user"
methods = ["GET", "PUT"]
path = "/v1/users/{id}"
upstream = "app"
rewrite = "/users/{id}"
access = "blocklist"
auth = { jwt = "hs", scopes = ["users:read"] }
rate_limit = "three_per_minute"
validate = { path = { id = "int" }, query = { verbose = "bool" } }
request = "out"
response = { remove_headers = ["server"], set_headers = { "x-served-by" = "portcullis" } }
cors = "web"

[[routes]]
name = "remote"
methods = ["GET"]
path = "/v1/remote"
upstream = "app"
auth = { jwt = "remote" }

[[routes]]
name = "partner"
methods = ["GET"]
path = "/v1/partner"
upstream = "app"
auth = { api_key = "partners" }

[[routes]]
name = "orders"
methods = ["POST"]
path = "/v1/orders"
upstream = "app"
validate = { content_types = ["application/json"], max_body_bytes = 64, body_schema = { type = "object", required = ["item"], properties = { item = { type = "integer" } } } }
request = { json = { set = { "/source" = "edge" }, remove = ["/debug"] } }

[[routes]]
name = "public"
methods = ["GET"]
path = "/public/{*rest}"
upstream = "app"
strip_prefix = "/public"
cache = { ttl_s = 30 }

[[routes]]
name = "purge"
methods = ["POST"]
path = "/admin/cache/purge"
admin = "purge_cache"
auth = { jwt = "hs", scopes = ["cache:purge"] }

[[routes]]
name = "hot"
methods = ["GET"]
path = "/hot"
rate_limit = "hot"
respond = { body = "x" }

[[routes]]
name = "fragile"
methods = ["GET"]
path = "/fragile"
rate_limit = "fragile"
respond = { body = "x" }
"#;

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[test]
fn health_answers_at_the_gateway_with_request_id_and_log() {
    let gw = gateway(CONFIG);
    let b = Backend::default();
    let host = b.host();
    let res = send(
        &gw,
        &host,
        req("GET", "/health", &[("x-request-id", "abc-1")], ""),
        "192.0.2.1",
    );
    assert_eq!(
        (res.status().as_u16(), res.body().as_ref()),
        (200, &b"ok"[..])
    );
    assert_eq!(res.headers()["x-request-id"], "abc-1");
    assert!(res.headers()["server-timing"]
        .to_str()
        .unwrap()
        .contains("total;dur="));
    assert!(host.sent.borrow().is_empty(), "no backend call");
    let log = &host.log_records()[0];
    assert_eq!(
        (
            log["route"].as_str(),
            log["status"].as_u64(),
            log["request_id"].as_str()
        ),
        (Some("health"), Some(200), Some("abc-1"))
    );
    assert_eq!(log["phases"][0]["phase"], "validate");
    assert_eq!(
        log["phases"][1],
        json!({"phase": "route", "decision": "respond", "us": log["phases"][1]["us"]})
    );
}

#[test]
fn the_access_log_names_the_clients_country_asn_and_edge_location_when_known() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let located = portcullis_core::Client {
        country: Some("DE".into()),
        asn: Some(3320),
        edge_location: Some("FRA".into()),
        ..client("192.0.2.1")
    };
    let res = send_as(&gw, &host, req("GET", "/health", &[], ""), located);
    assert_eq!(res.status(), 200);
    send(&gw, &host, req("GET", "/health", &[], ""), "192.0.2.1");
    let logs = host.log_records();
    let geo = |i: usize| {
        let log = &logs[i];
        (
            log.get("country").cloned(),
            log.get("asn").cloned(),
            log.get("edge_location").cloned(),
        )
    };
    assert_eq!(
        geo(0),
        (Some(json!("DE")), Some(json!(3320)), Some(json!("FRA")))
    );
    // an adapter that knows none of them: the keys are left out
    assert_eq!(geo(1), (None, None, None));
}

#[test]
fn a_sampled_access_log_keeps_every_failure_and_its_share_of_the_successes() {
    let sampled = |share: &str| {
        gateway(&CONFIG.replacen(
            "[gateway]",
            &format!("[gateway]\naccess_log_sample = {share}"),
            1,
        ))
    };
    let statuses = |gw: &Gateway| {
        let host = Backend::default().host();
        for path in ["/health", "/nope", "/health", "/health"] {
            send(gw, &host, req("GET", path, &[], ""), "192.0.2.1");
        }
        host.log_records()
            .iter()
            .map(|log| log["status"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(statuses(&sampled("0")), [404]);
    assert_eq!(statuses(&sampled("1")), [200, 404, 200, 200]);
    assert_eq!(statuses(&gateway(CONFIG)), [200, 404, 200, 200]);
    // a quarter of 400 successes, drawn from the host's random numbers
    let gw = sampled("0.25");
    let host = Backend::default().host();
    for _ in 0..400 {
        send(&gw, &host, req("GET", "/health", &[], ""), "192.0.2.1");
    }
    let kept = host.log_records().len();
    assert!((70..=130).contains(&kept), "{kept} of 400 logged");
}

#[test]
fn routes_charge_one_policy_by_their_costs_and_recover_by_units() {
    let gw = gateway(
        r#"
[rate_limits.units]
key = "ip"
limit = 6
period_s = 60

[[routes]]
name = "one"
path = "/one"
rate_limit = "units"
respond = { status = 200 }

[[routes]]
name = "three"
path = "/three"
rate_limit = { policy = "units", cost = 3 }
respond = { status = 200 }
"#,
    );
    let host = Backend::default().host();
    let go = |path: &str| {
        let res = send(&gw, &host, req("GET", path, &[], ""), "192.0.2.1");
        let limit = res.headers()["ratelimit"].to_str().unwrap().to_string();
        (res.status().as_u16(), limit)
    };
    assert_eq!(go("/three"), (200, "\"units\";r=3;t=30".into()));
    assert_eq!(go("/one"), (200, "\"units\";r=2;t=40".into()));
    assert_eq!(go("/three"), (429, "\"units\";r=2;t=40".into()));
    // one unit comes back every 10 s: the dear route waits for the one it lacks
    host.advance(9_000);
    assert_eq!(go("/three").0, 429);
    host.advance(1_000);
    assert_eq!(go("/three"), (200, "\"units\";r=0;t=60".into()));
}

#[test]
fn a_sliding_window_weighs_the_previous_minute_by_its_overlap() {
    let gw = gateway(
        r#"
[rate_limits.minute]
key = "ip"
limit = 4
period_s = 60
algorithm = "sliding_window"

[[routes]]
name = "r"
path = "/r"
rate_limit = "minute"
respond = { status = 200 }
"#,
    );
    let host = Backend::default().host();
    let go = || {
        let res = send(&gw, &host, req("GET", "/r", &[], ""), "192.0.2.1");
        let header = |name: &str| {
            res.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        (
            res.status().as_u16(),
            header("ratelimit").unwrap(),
            header("retry-after"),
        )
    };
    let minute = 1_700_000_040_000; // a whole minute of Unix time
    host.set_now(minute + 50_000);
    for left in (0..4).rev() {
        assert_eq!(go(), (200, format!("\"minute\";r={left};t=70"), None));
    }
    // the 4 weigh 4 × 45/60 = 3 a quarter into the next minute, and 2 at its half
    host.set_now(minute + 75_000);
    assert_eq!(go(), (200, "\"minute\";r=0;t=105".into(), None));
    assert_eq!(
        go(),
        (429, "\"minute\";r=0;t=105".into(), Some("15".into()))
    );
    host.set_now(minute + 90_000);
    assert_eq!(go(), (200, "\"minute\";r=0;t=90".into(), None));
    // two minutes on, nothing weighs
    host.set_now(minute + 180_000);
    assert_eq!(go(), (200, "\"minute\";r=3;t=120".into(), None));
}

#[test]
fn several_limits_on_a_route_all_apply_and_a_refusal_charges_none() {
    let gw = gateway(
        r#"
[rate_limits.second]
key = "ip"
limit = 2
period_s = 1

[rate_limits.minute]
key = "ip"
limit = 3
period_s = 60
algorithm = "sliding_window"

[[routes]]
name = "both"
path = "/both"
rate_limit = ["second", "minute"]
respond = { status = 200 }

[[routes]]
name = "fast"
path = "/fast"
rate_limit = "second"
respond = { status = 200 }
"#,
    );
    let host = Backend::default().host();
    let go = |path: &str| {
        let res = send(&gw, &host, req("GET", path, &[], ""), "192.0.2.1");
        let header = |name: &str| {
            res.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        (
            res.status().as_u16(),
            header("ratelimit"),
            header("retry-after"),
        )
    };
    let minute = 1_700_000_040_000; // a whole minute of Unix time
    host.set_now(minute);
    let res = send(&gw, &host, req("GET", "/both", &[], ""), "192.0.2.1");
    assert_eq!(
        res.headers()["ratelimit-policy"],
        "\"second\";q=2;w=1, \"minute\";q=3;w=60"
    );
    assert_eq!(
        res.headers()["ratelimit"],
        "\"second\";r=1;t=1, \"minute\";r=2;t=120"
    );
    let both = |r: u64, m: u64| Some(format!("\"second\";r={r};t=1, \"minute\";r={m};t=120"));
    assert_eq!(go("/both"), (200, both(0, 1), None));
    // the first limit refuses: the second is not asked, so nothing is charged to it
    assert_eq!(
        go("/both"),
        (429, Some("\"second\";r=0;t=1".into()), Some("1".into()))
    );
    host.set_now(minute + 1_000);
    assert_eq!(go("/both").0, 200); // the minute's third
                                    // the second admits, the minute refuses: the second's charge is given back, so a route
                                    // charging only the second still finds both of its requests
    host.set_now(minute + 2_000);
    let (status, limits, retry) = go("/both");
    // the three weigh 2 or less 20 s into the next minute
    assert_eq!((status, retry), (429, Some("78".into())));
    assert_eq!(
        limits.as_deref(),
        Some("\"second\";r=1;t=1, \"minute\";r=0;t=118")
    );
    assert_eq!(go("/fast").1, Some("\"second\";r=1;t=1".into()));
    assert_eq!(go("/fast").1, Some("\"second\";r=0;t=1".into()));
}

#[test]
fn a_daily_quota_follows_each_consumers_plan_and_resets_at_midnight_utc() {
    let gw = gateway(
        r#"
[auth.api_keys.partners]
# sha256("partner-key-1"), sha256("ops-key-1")
keys = [
  { consumer = "free-co", sha256 = "d1cf9c5cffcb718f754b7ecb1ed23efdb5a654b4b20c2fc42759db5903209f76" },
  { consumer = "gold-co", sha256 = "f5e368bcc22b06c39f3db394d0918fd5d5d29c887810a98e99b01196323d7540", plan = "gold" },
]

[rate_limits.daily]
key = "consumer"
limit = 2
period = "day"

[plans.gold]
limits = { daily = 4 }

[[routes]]
name = "r"
path = "/r"
auth = { api_key = "partners" }
rate_limit = "daily"
respond = { status = 200 }
"#,
    );
    let host = Backend::default().host();
    let go = |key: &str| {
        let res = send(
            &gw,
            &host,
            req("GET", "/r", &[("x-api-key", key)], ""),
            "192.0.2.1",
        );
        let header = |name: &str| {
            res.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let statuses = (res.status().as_u16(), header("retry-after"));
        (
            statuses,
            header("ratelimit-policy").unwrap(),
            header("ratelimit").unwrap(),
        )
    };
    // 2023-11-14 22:13:20 UTC: 6,400 s to midnight
    host.set_now(NOW_MS);
    let free = |r: u64| {
        (
            "\"daily\";q=2;w=86400".to_string(),
            format!("\"daily\";r={r};t=6400"),
        )
    };
    for left in [1, 0] {
        let (status, policy, limit) = go("partner-key-1");
        assert_eq!((status, (policy, limit)), ((200, None), free(left)));
    }
    let (status, ..) = go("partner-key-1");
    assert_eq!(status, (429, Some("6400".into())));
    // the gold plan's 4 a day, on the same policy
    for left in [3, 2, 1, 0] {
        let (status, policy, limit) = go("ops-key-1");
        assert_eq!(status, (200, None));
        assert_eq!(policy, "\"daily\";q=4;w=86400");
        assert_eq!(limit, format!("\"daily\";r={left};t=6400"));
    }
    assert_eq!(go("ops-key-1").0 .0, 429);
    // one millisecond before midnight still refused; at midnight a new day
    host.set_now(1_700_006_400_000 - 1);
    assert_eq!(go("partner-key-1").0 .0, 429);
    host.advance(1);
    assert_eq!(go("partner-key-1").2, "\"daily\";r=1;t=86400");
}

#[test]
fn unknown_paths_and_methods_are_problems() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let res = send(&gw, &host, req("GET", "/nope", &[], ""), "192.0.2.1");
    assert_eq!(res.status().as_u16(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body = json_body(&res);
    assert_eq!(body["type"], "urn:portcullis:problem:not-found");
    assert_eq!(
        body["request_id"],
        res.headers()["x-request-id"].to_str().unwrap()
    );
    let res = send(
        &gw,
        &host,
        req("DELETE", "/v1/users/7", &[], ""),
        "192.0.2.1",
    );
    assert_eq!(
        (
            res.status().as_u16(),
            res.headers()["allow"].to_str().unwrap()
        ),
        (405, "GET, PUT")
    );
}

#[test]
fn validation_rejections_have_their_statuses() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let t = hs_token("alice", json!({"scope": "users:read"}), NOW_MS);
    let auth = bearer(&t);
    let rows: Vec<(http::Request<bytes::Bytes>, u16, &str)> = vec![
        (
            req("GET", "/v1/users/abc", &[("authorization", &auth)], ""),
            400,
            "invalid-parameter",
        ),
        (
            req(
                "GET",
                "/v1/users/7?verbose=maybe",
                &[("authorization", &auth)],
                "",
            ),
            400,
            "invalid-parameter",
        ),
        (
            req("GET", "/v1/%2e%2e/%2e%2e/etc", &[], ""),
            400,
            "bad-path",
        ),
        (req("GET", "/v1/users/7%2F8", &[], ""), 400, "bad-path"),
        (
            req("POST", "/v1/orders", &[("content-type", "text/plain")], "x"),
            415,
            "unsupported-media-type",
        ),
        (
            req(
                "POST",
                "/v1/orders",
                &[("content-type", "application/json")],
                &" ".repeat(65),
            ),
            413,
            "body-too-large",
        ),
        (
            req(
                "POST",
                "/v1/orders",
                &[("content-type", "application/json")],
                r#"{"item":"x"}"#,
            ),
            400,
            "invalid-body",
        ),
        (
            req("GET", &format!("/health?{}", "a".repeat(9000)), &[], ""),
            414,
            "uri-too-long",
        ),
        (
            req("GET", "/health", &[("x-big", &"b".repeat(40_000))], ""),
            431,
            "header-too-large",
        ),
        (
            req(
                "GET",
                "/health",
                &[
                    ("x-a", &"a".repeat(8_000)),
                    ("x-b", &"b".repeat(8_000)),
                    ("x-c", &"c".repeat(8_000)),
                    ("x-d", &"d".repeat(8_000)),
                    ("x-e", &"e".repeat(8_000)),
                ],
                "",
            ),
            431,
            "headers-too-large",
        ),
    ];
    for (r, want, code) in rows {
        let label = format!(
            "{} {}",
            r.method(),
            r.uri().to_string().chars().take(60).collect::<String>()
        );
        let res = send(&gw, &host, r, "192.0.2.1");
        assert_eq!(
            (
                res.status().as_u16(),
                json_body(&res)["type"].as_str().unwrap_or("")
            ),
            (want, format!("urn:portcullis:problem:{code}").as_str()),
            "{label}"
        );
    }
    assert!(host.sent.borrow().is_empty(), "nothing reached the backend");
}

#[test]
fn dot_segments_are_normalized_before_matching_and_forwarding() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let res = send(
        &gw,
        &host,
        req("GET", "/public/a/../b//c/./d%7E", &[], ""),
        "192.0.2.1",
    );
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        host.sent.borrow()[0].uri().to_string(),
        "https://backend.test/base/b/c/d~"
    );
}

#[test]
fn denied_addresses_and_forwarded_clients() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let t = bearer(&hs_token("alice", json!({"scope": "users:read"}), NOW_MS));
    let rows = [
        ("203.0.113.9", None, 403),
        ("192.0.2.1", None, 200),
        // behind a trusted proxy, the rightmost untrusted hop is the client
        ("10.1.1.1", Some("198.51.100.1, 203.0.113.9"), 403),
        // an untrusted peer cannot claim another address
        ("192.0.2.1", Some("203.0.113.9"), 200),
    ];
    for (peer, xff, want) in rows {
        let mut h = vec![("authorization", t.as_str())];
        if let Some(x) = xff {
            h.push(("x-forwarded-for", x));
        }
        let res = send(&gw, &host, req("GET", "/v1/users/7", &h, ""), peer);
        assert_eq!(res.status().as_u16(), want, "{peer} {xff:?}");
    }
    let mut c = client("192.0.2.1");
    c.country = Some("KP".into());
    let res = send_as(
        &gw,
        &host,
        req("GET", "/v1/users/7", &[("authorization", &t)], ""),
        c,
    );
    assert_eq!(
        json_body(&res)["detail"],
        "access denied: client country is denied"
    );
}

#[test]
fn a_route_believes_its_own_proxies_or_none_instead_of_the_gateways() {
    // the gateway trusts 10.0.0.0/8; `cdn` believes only 192.0.2.0/24, `direct` no one
    let config = r#"
[gateway]
trusted_proxies = ["10.0.0.0/8"]

[upstreams.app]
targets = [{ url = "https://backend.test" }]

[access.no-doc]
deny_ips = ["203.0.113.0/24"]

[[routes]]
name = "default"
path = "/default"
upstream = "app"
access = "no-doc"

[[routes]]
name = "cdn"
path = "/cdn"
upstream = "app"
access = "no-doc"
trusted_proxies = ["192.0.2.0/24"]

[[routes]]
name = "direct"
path = "/direct"
upstream = "app"
access = "no-doc"
trusted_proxies = []
"#;
    let gw = gateway(config);
    let host = Backend::default().host();
    let mut seen = Vec::new();
    for (path, peer, xff) in [
        ("/default", "10.0.0.5", "198.51.100.7"),
        ("/default", "192.0.2.5", "198.51.100.7"),
        ("/cdn", "192.0.2.5", "198.51.100.7"),
        ("/cdn", "10.0.0.5", "198.51.100.7"),
        ("/direct", "10.0.0.5", "198.51.100.7"),
        // believed, the forwarded address is denied; not believed, it is not the client
        ("/cdn", "192.0.2.5", "203.0.113.9"),
        ("/default", "192.0.2.5", "203.0.113.9"),
    ] {
        let res = send(
            &gw,
            &host,
            req("GET", path, &[("x-forwarded-for", xff)], ""),
            peer,
        );
        let forwarded = match res.status().as_u16() {
            200 => host.sent.borrow().last().unwrap().headers()["x-forwarded-for"]
                .to_str()
                .unwrap()
                .to_string(),
            status => status.to_string(),
        };
        seen.push((path, peer, forwarded));
    }
    assert_eq!(
        seen,
        [
            ("/default", "10.0.0.5", "198.51.100.7, 10.0.0.5".to_string()),
            ("/default", "192.0.2.5", "192.0.2.5".to_string()),
            ("/cdn", "192.0.2.5", "198.51.100.7, 192.0.2.5".to_string()),
            ("/cdn", "10.0.0.5", "10.0.0.5".to_string()),
            ("/direct", "10.0.0.5", "10.0.0.5".to_string()),
            ("/cdn", "192.0.2.5", "403".to_string()),
            ("/default", "192.0.2.5", "192.0.2.5".to_string()),
        ]
    );
    // the log names the client each route saw
    let logged: Vec<String> = host
        .log_records()
        .iter()
        .map(|l| l["client_ip"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        logged,
        [
            "198.51.100.7",
            "192.0.2.5",
            "198.51.100.7",
            "10.0.0.5",
            "10.0.0.5",
            "203.0.113.9",
            "192.0.2.5"
        ]
    );
}

#[test]
fn jwt_auth_and_scopes() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let go = |h: &[(&str, &str)]| send(&gw, &host, req("GET", "/v1/users/7", h, ""), "192.0.2.1");
    let res = go(&[]);
    assert_eq!(
        (
            res.status().as_u16(),
            res.headers()["www-authenticate"].to_str().unwrap()
        ),
        (401, "Bearer")
    );
    let expired = bearer(&hs_token(
        "alice",
        json!({"scope": "users:read", "exp": NOW_MS / 1000 - 3600}),
        NOW_MS,
    ));
    let res = go(&[("authorization", &expired)]);
    assert_eq!(
        res.headers()["www-authenticate"],
        "Bearer error=\"invalid_token\", error_description=\"token expired\""
    );
    let no_scope = bearer(&hs_token("bob", json!({"scope": "other"}), NOW_MS));
    let res = go(&[("authorization", &no_scope)]);
    assert_eq!(
        (
            res.status().as_u16(),
            json_body(&res)["detail"].as_str().unwrap()
        ),
        (
            403,
            "the credentials are valid but do not allow this: missing scope \"users:read\""
        )
    );
    let good = bearer(&hs_token(
        "carol",
        json!({"scope": "users:read users:write"}),
        NOW_MS,
    ));
    let res = go(&[("authorization", &good)]);
    assert_eq!(res.status().as_u16(), 200);
    let log = host.log_records().pop().unwrap();
    assert_eq!(
        (
            log["consumer"].as_str(),
            log["phases"][2]["decision"].as_str()
        ),
        (Some("carol"), Some("jwt:hs"))
    );
}

#[test]
fn the_upstream_request_is_rewritten_and_carries_context() {
    let gw = gateway(CONFIG);
    let b = Backend::default();
    let host = b.host();
    b.push(ok(
        "{}",
        &[
            ("server", "nginx"),
            ("connection", "close, x-internal"),
            ("x-internal", "1"),
        ],
    ));
    let t = bearer(&hs_token("alice", json!({"scope": "users:read"}), NOW_MS));
    let h = [
        ("authorization", t.as_str()),
        ("cookie", "session=1"),
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "secret"),
        ("x-consumer", "forged"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
    ];
    let res = send(
        &gw,
        &host,
        req("GET", "/v1/users/42?debug=1&a=b", &h, ""),
        "192.0.2.1",
    );
    assert_eq!(res.status().as_u16(), 200);
    let sent = host.sent.borrow();
    let up = &sent[0];
    assert_eq!(
        up.uri().to_string(),
        "https://backend.test/base/users/42?a=b&v=2"
    );
    assert_eq!(up.headers()["x-consumer"], "alice");
    assert_eq!(up.headers()["x-route"], "user");
    assert_eq!(up.headers()["x-forwarded-for"], "192.0.2.1");
    assert_eq!(up.headers()["x-request-id"], res.headers()["x-request-id"]);
    let tp = up.headers()["traceparent"].to_str().unwrap();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && !tp.contains("00f067aa0ba902b7"),
        "{tp}"
    );
    for gone in ["cookie", "connection", "x-hop"] {
        assert!(!up.headers().contains_key(gone), "{gone} was forwarded");
    }
    // response side: transform applied, hop-by-hop stripped, rate-limit fields sent
    assert!(!res.headers().contains_key("server") && !res.headers().contains_key("x-internal"));
    assert_eq!(res.headers()["x-served-by"], "portcullis");
    assert_eq!(
        res.headers()["ratelimit-policy"],
        "\"three_per_minute\";q=3;w=60"
    );
    assert_eq!(res.headers()["ratelimit"], "\"three_per_minute\";r=2;t=20");
}

#[test]
fn generated_ids_reach_upstream_client_and_log_and_each_log_line_stands_alone() {
    let gw = gateway(CONFIG);
    let b = Backend::default();
    let host = b.host();
    b.push(ok("{}", &[]));
    let t = bearer(&hs_token("alice", json!({"scope": "users:read"}), NOW_MS));
    let first = send(
        &gw,
        &host,
        req("GET", "/v1/users/42", &[("authorization", &t)], ""),
        "192.0.2.1",
    );
    let second = send(&gw, &host, req("GET", "/health", &[], ""), "192.0.2.1");
    let ids = [&first, &second].map(|r| r.headers()["x-request-id"].to_str().unwrap().to_string());
    for id in &ids {
        assert!(
            id.len() == 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{id}"
        );
    }
    assert_ne!(ids[0], ids[1]);
    let sent = host.sent.borrow();
    assert_eq!(sent[0].headers()["x-request-id"], ids[0].as_str());
    let tp = sent[0].headers()["traceparent"].to_str().unwrap();
    assert_eq!((tp.len(), &tp[..3], &tp[52..]), (55, "00-", "-01"), "{tp}");
    // the log buffer is reused: each line is one whole record of its own request
    let lines = host.logs.borrow();
    assert_eq!(lines.len(), 2);
    let records: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("one JSON record per line"))
        .collect();
    assert_eq!(
        (
            records[0]["request_id"].as_str(),
            records[0]["trace_id"].as_str()
        ),
        (Some(ids[0].as_str()), Some(&tp[3..35]))
    );
    assert_eq!(
        (
            records[1]["request_id"].as_str(),
            records[1]["path"].as_str()
        ),
        (Some(ids[1].as_str()), Some("/health"))
    );
}

#[test]
fn json_bodies_are_transformed_on_the_way_up() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let res = send(
        &gw,
        &host,
        req(
            "POST",
            "/v1/orders",
            &[("content-type", "application/json")],
            r#"{"item":1,"debug":true}"#,
        ),
        "192.0.2.1",
    );
    assert_eq!(res.status().as_u16(), 200);
    let body: serde_json::Value = serde_json::from_slice(host.sent.borrow()[0].body()).unwrap();
    assert_eq!(body, json!({"item": 1, "source": "edge"}));
}

#[test]
fn rate_limits_count_exactly_and_recover_with_time() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let t = bearer(&hs_token("dave", json!({"scope": "users:read"}), NOW_MS));
    let go = || {
        send(
            &gw,
            &host,
            req("GET", "/v1/users/1", &[("authorization", &t)], ""),
            "192.0.2.1",
        )
    };
    let statuses: Vec<u16> = (0..5).map(|_| go().status().as_u16()).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let res = go();
    assert_eq!(
        (
            res.headers()["retry-after"].to_str().unwrap(),
            res.headers()["ratelimit"].to_str().unwrap()
        ),
        ("20", "\"three_per_minute\";r=0;t=60")
    );
    assert_eq!(
        json_body(&res)["type"],
        "urn:portcullis:problem:rate-limited"
    );
    host.advance(20_000);
    assert_eq!(go().status().as_u16(), 200);
    assert_eq!(go().status().as_u16(), 429);
    // another consumer has its own counter
    let other = bearer(&hs_token("erin", json!({"scope": "users:read"}), NOW_MS));
    assert_eq!(
        send(
            &gw,
            &host,
            req("GET", "/v1/users/1", &[("authorization", &other)], ""),
            "192.0.2.1"
        )
        .status()
        .as_u16(),
        200
    );
}

#[test]
fn a_sharded_limit_spreads_a_key_over_its_counters_and_never_admits_more_than_the_policy() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let burst = |n: usize| -> Vec<http::Response<bytes::Bytes>> {
        (0..n)
            .map(|_| send(&gw, &host, req("GET", "/hot", &[], ""), "192.0.2.1"))
            .collect()
    };
    let admitted = |replies: &[http::Response<bytes::Bytes>]| {
        replies.iter().filter(|r| r.status() == 200).count()
    };
    // 8 per minute over 4 counters of 2: a hundred requests at once use up every counter
    let first = burst(100);
    assert_eq!(admitted(&first), 8);
    assert_eq!(
        host.counter_keys(),
        [
            "rl:hot:hot#0",
            "rl:hot:hot#1",
            "rl:hot:hot#2",
            "rl:hot:hot#3"
        ]
    );
    // the policy is announced whole; what remains is the charged counter's
    let refused = first.iter().find(|r| r.status() == 429).unwrap();
    assert_eq!(refused.headers()["ratelimit-policy"], "\"hot\";q=8;w=60");
    assert_eq!(refused.headers()["retry-after"], "30");
    // each counter refills at its part of the rate, one request per 30 s
    host.advance(29_999);
    assert_eq!(admitted(&burst(100)), 0);
    host.advance(1);
    assert_eq!(admitted(&burst(100)), 4);
}

#[test]
fn store_failures_follow_each_policys_fail_mode() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    host.fail_store.set(true);
    // three_per_minute fails open (the default for rate limits)
    let t = bearer(&hs_token("fay", json!({"scope": "users:read"}), NOW_MS));
    assert_eq!(
        send(
            &gw,
            &host,
            req("GET", "/v1/users/1", &[("authorization", &t)], ""),
            "192.0.2.1"
        )
        .status()
        .as_u16(),
        200
    );
    // fragile says fail = "closed"
    let res = send(&gw, &host, req("GET", "/fragile", &[], ""), "192.0.2.1");
    assert_eq!(
        (res.status().as_u16(), json_body(&res)["type"].as_str()),
        (503, Some("urn:portcullis:problem:unavailable"))
    );
}

#[test]
fn retries_only_idempotent_requests_on_gateway_errors() {
    let gw = gateway(CONFIG);
    let b = Backend::default();
    let host = b.host();
    b.push(status(503));
    b.push(Err(FetchError::Connect("refused".into())));
    b.push(ok("third time", &[]));
    let res = send(&gw, &host, req("GET", "/public/x", &[], ""), "192.0.2.1");
    assert_eq!(
        (res.status().as_u16(), res.body().as_ref()),
        (200, &b"third time"[..])
    );
    assert_eq!(host.sent.borrow().len(), 3);
    assert_eq!(host.log_records()[0]["upstream_attempts"], 3);

    // POST is not retried; a 500 is not retried either
    b.push(status(503));
    let res = send(
        &gw,
        &host,
        req(
            "POST",
            "/v1/orders",
            &[("content-type", "application/json")],
            r#"{"item":1}"#,
        ),
        "192.0.2.1",
    );
    assert_eq!(res.status().as_u16(), 503);
    assert_eq!(host.sent.borrow().len(), 4);
}

#[test]
fn upstream_failures_become_502_and_504_problems() {
    let gw = gateway(CONFIG);
    let b = Backend::default();
    let host = b.host();
    for _ in 0..3 {
        b.push(Err(FetchError::Connect("reset".into())));
    }
    let res = send(&gw, &host, req("GET", "/public/x", &[], ""), "192.0.2.1");
    assert_eq!(
        (res.status().as_u16(), json_body(&res)["type"].as_str()),
        (502, Some("urn:portcullis:problem:bad-gateway"))
    );
    assert!(
        !String::from_utf8_lossy(res.body()).contains("backend.test"),
        "no internals leak"
    );
    b.push(Err(FetchError::Timeout));
    let res = send(&gw, &host, req("GET", "/public/y", &[], ""), "192.0.2.1");
    assert_eq!(
        (res.status().as_u16(), json_body(&res)["detail"].as_str()),
        (504, Some("the upstream did not answer in time"))
    );
}

#[test]
fn a_response_body_over_the_upstreams_limit_is_a_502_when_read_and_passes_when_streamed() {
    let gw = gateway(
        r#"
[upstreams.small]
targets = [{ url = "https://backend.test" }]
retries = 2
max_response_bytes = 16

[[routes]]
name = "edited"
methods = ["GET"]
path = "/edited"
upstream = "small"
response = { json = { remove = ["/secret"] } }

[[routes]]
name = "streamed"
methods = ["GET"]
path = "/streamed"
upstream = "small"
"#,
    );
    let b = Backend::default();
    let host = b.host();
    b.push(ok(&"x".repeat(16), &[]));
    let res = send(&gw, &host, req("GET", "/edited", &[], ""), "192.0.2.1");
    assert_eq!((res.status().as_u16(), res.body().len()), (200, 16));
    b.push(ok(&"x".repeat(17), &[]));
    let res = send(&gw, &host, req("GET", "/edited", &[], ""), "192.0.2.1");
    assert_eq!(
        (res.status().as_u16(), json_body(&res)["type"].as_str()),
        (502, Some("urn:portcullis:problem:bad-gateway"))
    );
    assert_eq!(
        host.sent.borrow().len(),
        2,
        "a body too large is not asked for again"
    );
    assert_eq!(host.log_records()[1]["upstream_attempts"], 1);
    // a body the gateway does not read has no limit: it passes as the upstream's stream
    let big = "y".repeat(100_000);
    b.push(ok(&big, &[]));
    let res = send(&gw, &host, req("GET", "/streamed", &[], ""), "192.0.2.1");
    assert_eq!((res.status().as_u16(), res.body().len()), (200, 100_000));
    assert_eq!(
        *host.body_uses.borrow(),
        [BodyUse::Read, BodyUse::Read, BodyUse::PassOn]
    );
}

#[test]
fn cache_hit_age_304_and_purge() {
    let gw = gateway(CONFIG);
    let b = Backend::default();
    let host = b.host();
    b.push(ok(
        "v1",
        &[("etag", "\"e1\""), ("cache-control", "max-age=120")],
    ));
    let get = |h: &[(&str, &str)]| send(&gw, &host, req("GET", "/public/doc", h, ""), "192.0.2.1");
    assert_eq!(get(&[]).body().as_ref(), b"v1");
    host.advance(5_000);
    let hit = get(&[]);
    assert_eq!(
        (hit.body().as_ref(), hit.headers()["age"].to_str().unwrap()),
        (&b"v1"[..], "5")
    );
    assert_eq!(host.sent.borrow().len(), 1, "served from cache");
    let nm = get(&[("if-none-match", "\"e1\"")]);
    assert_eq!((nm.status().as_u16(), nm.body().len()), (304, 0));
    // authenticated requests bypass a shared cache
    get(&[("authorization", "Bearer x")]);
    assert_eq!(host.sent.borrow().len(), 2);
    let caches: Vec<String> = host
        .log_records()
        .iter()
        .map(|l| l["cache"].as_str().unwrap_or("-").to_string())
        .collect();
    assert_eq!(caches, ["miss", "hit", "hit", "bypass"]);
    // purge through the admin route: a new generation, so the next request misses
    let purge = |token: Option<&str>| {
        let auth = token.map(bearer);
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        send(
            &gw,
            &host,
            req("POST", "/admin/cache/purge", &headers, ""),
            "192.0.2.1",
        )
    };
    let reader = hs_token("ops", json!({"scope": "users:read"}), NOW_MS);
    let operator = hs_token("ops", json!({"scope": "cache:purge"}), NOW_MS);
    assert_eq!(purge(None).status(), 401);
    assert_eq!(purge(Some(&reader)).status(), 403);
    let purged = purge(Some(&operator));
    assert_eq!(
        (purged.status().as_u16(), json_body(&purged)),
        (200, json!({"action": "purge_cache", "generation": 1}))
    );
    assert_eq!(purged.headers()["cache-control"], "no-store");
    assert_eq!(
        host.log_records().last().unwrap()["phases"][2]["decision"],
        "admin:purge_cache"
    );
    b.push(ok("v2", &[("cache-control", "max-age=120")]));
    assert_eq!(get(&[]).body().as_ref(), b"v2");
    assert_eq!(
        host.sent.borrow().len(),
        3,
        "the purged entry was not served"
    );
    // freshness runs out
    host.advance(121_000);
    assert_eq!(get(&[]).body().as_ref(), b"echo /base/doc");
    // a purge that cannot reach the store says so
    host.fail_store.set(true);
    let failed = purge(Some(&operator));
    assert_eq!(
        (
            failed.status().as_u16(),
            json_body(&failed)["type"].as_str()
        ),
        (503, Some("urn:portcullis:problem:unavailable"))
    );
}

#[test]
fn a_purge_by_tag_hides_only_the_answers_carrying_it() {
    // the scenarios' config (its `hs` provider and purge route) and two cached routes
    let gw = gateway(&format!(
        r#"{CONFIG}
[[routes]]
name = "docs"
path = "/docs/{{*rest}}"
upstream = "app"
cache = {{ ttl_s = 60, tags = ["Docs"] }}

[[routes]]
name = "shop"
path = "/shop/{{*rest}}"
upstream = "app"
cache = {{ ttl_s = 60 }}
"#
    ));
    let b = Backend::default();
    let host = b.host();
    let get = |path: &str| {
        let res = send(&gw, &host, req("GET", path, &[], ""), "192.0.2.1");
        assert!(!res.headers().contains_key("cache-tag"), "{path}");
        String::from_utf8(res.body().to_vec()).unwrap()
    };
    let operator = bearer(&hs_token("ops", json!({"scope": "cache:purge"}), NOW_MS));
    let purge = |body: &str| {
        let headers = [("authorization", operator.as_str())];
        let res = send(
            &gw,
            &host,
            req("POST", "/admin/cache/purge", &headers, body),
            "192.0.2.1",
        );
        (res.status().as_u16(), json_body(&res))
    };
    b.push(ok("guide", &[]));
    b.push(ok("shoe", &[("cache-tag", "Product-7,shoes")]));
    b.push(ok("sock", &[("cache-tag", "socks")]));
    for _ in 0..2 {
        assert_eq!(get("/docs/guide"), "guide");
        assert_eq!(get("/shop/shoe"), "shoe");
        assert_eq!(get("/shop/sock"), "sock");
    }
    assert_eq!(host.sent.borrow().len(), 3, "the second round was hits");
    host.advance(1_000);
    // the route's tag and an upstream's, in any case; the sock keeps its entry
    assert_eq!(
        purge(r#"{"tags": ["docs", "PRODUCT-7"]}"#),
        (
            200,
            json!({"action": "purge_cache", "tags": ["docs", "product-7"]})
        )
    );
    // (an answer stored in the purge's own millisecond counts as older than the purge)
    host.advance(1);
    b.push(ok("guide 2", &[]));
    b.push(ok("shoe 2", &[("cache-tag", "product-7")]));
    assert_eq!(get("/docs/guide"), "guide 2");
    assert_eq!(get("/shop/shoe"), "shoe 2");
    assert_eq!(get("/shop/sock"), "sock");
    assert_eq!(host.sent.borrow().len(), 5);
    // what was stored after the purge is served again
    assert_eq!(get("/shop/shoe"), "shoe 2");
    assert_eq!(host.sent.borrow().len(), 5);
    // a purge that is not one is a problem, and purges nothing
    let (status, problem) = purge(r#"{"tags": ["a b"]}"#);
    assert_eq!(
        (status, problem["type"].as_str()),
        (400, Some("urn:portcullis:problem:invalid-body"))
    );
    assert_eq!(get("/shop/shoe"), "shoe 2");
    // an empty body still purges everything
    assert_eq!(purge("").1["generation"], 1);
}

#[test]
fn concurrent_misses_for_one_key_wait_for_one_upstream_call() {
    let gw = gateway(CONFIG);
    let b = Backend::default();
    let host = b.host();
    host.fetch_yields.set(true);
    let together = |path: &str| {
        let requests = (0..4).map(|_| req("GET", path, &[], "")).collect();
        (send_together(&gw, &host, requests, "192.0.2.1").iter())
            .map(|r| {
                (
                    r.status().as_u16(),
                    String::from_utf8(r.body().to_vec()).unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let decisions = |from: usize| {
        (host.log_records()[from..].iter())
            .map(|l| {
                let phases = l["phases"].as_array().unwrap().iter();
                let cache = phases.rev().find(|p| p["phase"] == "cache").unwrap();
                cache["decision"].as_str().unwrap_or("-").to_string()
            })
            .collect::<Vec<_>>()
    };
    b.push(ok("once", &[("cache-control", "max-age=60")]));
    assert_eq!(together("/public/doc"), vec![(200, "once".to_string()); 4]);
    assert_eq!(
        host.sent.borrow().len(),
        1,
        "one upstream call for four misses"
    );
    let mut cache: Vec<String> = decisions(0);
    cache.sort();
    assert_eq!(
        cache,
        ["hit:collapsed", "hit:collapsed", "hit:collapsed", "miss"]
    );
    // an answer that is not stored: those that waited call the upstream themselves
    for body in ["p1", "p2", "p3", "p4"] {
        b.push(ok(body, &[("cache-control", "private")]));
    }
    let mut bodies: Vec<String> = together("/public/mine").into_iter().map(|r| r.1).collect();
    bodies.sort();
    assert_eq!(bodies, ["p1", "p2", "p3", "p4"]);
    assert_eq!(host.sent.borrow().len(), 5);
}

#[test]
fn set_cookie_and_private_responses_are_not_shared() {
    let gw = gateway(CONFIG);
    let b = Backend::default();
    let host = b.host();
    b.push(ok(
        "mine",
        &[("set-cookie", "s=1"), ("cache-control", "max-age=60")],
    ));
    b.push(ok("also mine", &[("cache-control", "private, max-age=60")]));
    let get = || send(&gw, &host, req("GET", "/public/me", &[], ""), "192.0.2.1");
    assert_eq!(get().body().as_ref(), b"mine");
    assert_eq!(get().body().as_ref(), b"also mine");
    assert_eq!(get().body().as_ref(), b"echo /base/me");
    assert_eq!(host.sent.borrow().len(), 3);
}

#[test]
fn cors_preflight_is_answered_at_the_gateway() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let h = [
        ("origin", "https://app.test"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "authorization"),
    ];
    let res = send(
        &gw,
        &host,
        req("OPTIONS", "/v1/users/1", &h, ""),
        "192.0.2.1",
    );
    assert_eq!(res.status().as_u16(), 204);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://app.test"
    );
    assert_eq!(res.headers()["access-control-allow-methods"], "GET, PUT");
    assert_eq!(res.headers()["access-control-max-age"], "60");
    assert!(host.sent.borrow().is_empty());
    // the actual request gets the origin back, even when refused
    let res = send(
        &gw,
        &host,
        req("GET", "/v1/users/1", &[("origin", "https://app.test")], ""),
        "192.0.2.1",
    );
    assert_eq!(
        (
            res.status().as_u16(),
            res.headers()["access-control-allow-origin"]
                .to_str()
                .unwrap()
        ),
        (401, "https://app.test")
    );
}

#[test]
fn api_keys_name_the_consumer() {
    let gw = gateway(&CONFIG.replace(
        "2f0d0c4e6ed2b1c3fd4e1de3efd0e7c5b0c0ad9c1e1f4c9a6b1f3d1e7c0c0a11",
        &sha256_hex("k-partner"),
    ));
    let host = Backend::default().host();
    let res = send(
        &gw,
        &host,
        req("GET", "/v1/partner", &[("x-api-key", "k-partner")], ""),
        "192.0.2.1",
    );
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(host.log_records()[0]["consumer"], "partner-1");
    let res = send(
        &gw,
        &host,
        req("GET", "/v1/partner", &[("x-api-key", "k-wrong")], ""),
        "192.0.2.1",
    );
    assert_eq!(
        (res.status().as_u16(), json_body(&res)["detail"].as_str()),
        (401, Some("authentication required: unknown API key"))
    );
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[test]
fn jwks_fetch_rotation_cooldown_and_outage() {
    let gw = gateway(CONFIG);
    let b = Backend::default();
    let host = b.host();
    let k1 = EcKey::new("k1");
    let k2 = EcKey::new("k2");
    *b.jwks.borrow_mut() = Some(jwks(&[&k1]));
    *b.jwks_max_age.borrow_mut() = 300;
    let call = |t: &str| {
        send(
            &gw,
            &host,
            req("GET", "/v1/remote", &[("authorization", &bearer(t))], ""),
            "192.0.2.1",
        )
        .status()
        .as_u16()
    };
    let jwks_fetches = || {
        host.sent
            .borrow()
            .iter()
            .filter(|r| r.uri().path() == "/.well-known/jwks.json")
            .count()
    };

    assert_eq!(call(&k1.token("a", json!({}), NOW_MS)), 200);
    assert_eq!(jwks_fetches(), 1);
    assert_eq!(call(&k1.token("b", json!({}), NOW_MS)), 200);
    assert_eq!(jwks_fetches(), 1, "kept for its max-age");

    // rotation: a token with a new kid triggers one refetch
    *b.jwks.borrow_mut() = Some(jwks(&[&k1, &k2]));
    assert_eq!(call(&k2.token("c", json!({}), NOW_MS)), 200);
    assert_eq!(jwks_fetches(), 2);

    // unknown kids refetch at most once per cooldown
    let k3 = EcKey::new("k3");
    assert_eq!(call(&k3.token("d", json!({}), NOW_MS)), 401);
    assert_eq!(call(&k3.token("e", json!({}), NOW_MS)), 401);
    assert_eq!(
        jwks_fetches(),
        2,
        "within the cooldown of the rotation fetch"
    );

    // outage after expiry: stale keys keep working
    *b.jwks.borrow_mut() = None;
    host.advance(301_000);
    assert_eq!(call(&k1.token("f", json!({}), NOW_MS + 301_000)), 200);
    assert_eq!(jwks_fetches(), 3);

    // a new isolate (fresh gateway) starts warm from the shared store, with no fetch
    let gw2 = gateway(CONFIG);
    let before = jwks_fetches();
    host.set_now(NOW_MS + 100_000); // within the stored copy's lifetime
    let res = send(
        &gw2,
        &host,
        req(
            "GET",
            "/v1/remote",
            &[("authorization", &bearer(&k2.token("g", json!({}), NOW_MS)))],
            "",
        ),
        "192.0.2.1",
    );
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(jwks_fetches(), before);
}

#[test]
fn concurrent_requests_that_need_new_keys_share_one_jwks_fetch() {
    let gw = gateway(CONFIG);
    let b = Backend::default();
    let host = b.host();
    host.fetch_yields.set(true);
    let (k1, k2) = (EcKey::new("k1"), EcKey::new("k2"));
    *b.jwks.borrow_mut() = Some(jwks(&[&k1]));
    *b.jwks_max_age.borrow_mut() = 300;
    let together = |key: &EcKey, now: u64| {
        let requests = (0..3)
            .map(|i| {
                let token = bearer(&key.token(&format!("u{i}"), json!({}), now));
                req("GET", "/v1/remote", &[("authorization", &token)], "")
            })
            .collect();
        (send_together(&gw, &host, requests, "192.0.2.1").iter())
            .map(|r| r.status().as_u16())
            .collect::<Vec<_>>()
    };
    let jwks_fetches = || {
        (host.sent.borrow().iter())
            .filter(|r| r.uri().path() == "/.well-known/jwks.json")
            .count()
    };
    // a cold start: the first fetches, the others wait for its keys
    assert_eq!(together(&k1, NOW_MS), [200, 200, 200]);
    assert_eq!(jwks_fetches(), 1);
    // a rotation: tokens with the new kid all wait for one refetch (none is refused for
    // arriving during it)
    *b.jwks.borrow_mut() = Some(jwks(&[&k1, &k2]));
    assert_eq!(together(&k2, NOW_MS), [200, 200, 200]);
    assert_eq!(jwks_fetches(), 2);
    // expired keys: one refresh, while the others go on with the keys they have
    host.advance(301_000);
    assert_eq!(together(&k1, NOW_MS + 301_000), [200, 200, 200]);
    assert_eq!(jwks_fetches(), 3);
    let upstream_calls = host.sent.borrow().len() - jwks_fetches();
    assert_eq!(upstream_calls, 9);
}

#[test]
fn jwks_unavailable_on_a_cold_start_fails_closed() {
    let gw = gateway(CONFIG);
    let b = Backend::default();
    let host = b.host();
    let k1 = EcKey::new("k1");
    let res = send(
        &gw,
        &host,
        req(
            "GET",
            "/v1/remote",
            &[("authorization", &bearer(&k1.token("a", json!({}), NOW_MS)))],
            "",
        ),
        "192.0.2.1",
    );
    assert_eq!(
        (res.status().as_u16(), json_body(&res)["type"].as_str()),
        (503, Some("urn:portcullis:problem:unavailable"))
    );
    let gw_open = gateway(&CONFIG.replace(
        "jwks_cooldown_s = 30",
        "jwks_cooldown_s = 30\nfail = \"open\"",
    ));
    let res = send(
        &gw_open,
        &host,
        req(
            "GET",
            "/v1/remote",
            &[("authorization", &bearer(&k1.token("a", json!({}), NOW_MS)))],
            "",
        ),
        "192.0.2.1",
    );
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        host.log_records().last().unwrap()["phases"][1]["decision"],
        "fail-open"
    );
}

#[test]
fn a_verified_token_is_served_from_the_token_cache_until_it_expires() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let token = hs_token(
        "gus",
        json!({"scope": "users:read", "exp": NOW_MS / 1000 + 30}),
        NOW_MS,
    );
    let go = || {
        send(
            &gw,
            &host,
            req(
                "PUT",
                "/v1/users/1",
                &[("authorization", &bearer(&token))],
                "",
            ),
            "192.0.2.1",
        )
        .status()
        .as_u16()
    };
    assert_eq!(go(), 200);
    assert_eq!(go(), 200);
    host.advance(91_000); // past exp + 60 s leeway
    assert_eq!(go(), 401);
}

#[test]
fn answers_that_vary_are_kept_as_variants_of_one_key() {
    let gw = gateway(
        r#"
[upstreams.app]
targets = [{ url = "https://backend.test" }]

[[routes]]
name = "doc"
path = "/doc"
upstream = "app"
cache = { ttl_s = 60 }
"#,
    );
    // the upstream answers in the request's language and varies on it and on the codings
    let host = MemoryHost::new(NOW_MS, |req: &http::Request<Bytes>| {
        let lang = req
            .headers()
            .get("accept-language")
            .map_or("none", |v| v.to_str().unwrap());
        Ok(http::Response::builder()
            .header("vary", "Accept-Language, Accept-Encoding")
            .header("cache-control", "max-age=60")
            .body(Bytes::from(format!("hello in {lang}")))
            .unwrap())
    });
    let get = |lang: &str, codings: &str| {
        let headers = [("accept-language", lang), ("accept-encoding", codings)];
        let res = send(&gw, &host, req("GET", "/doc", &headers, ""), "192.0.2.1");
        String::from_utf8(res.body().to_vec()).unwrap()
    };
    let sent = || host.sent.borrow().len();
    // en, fr, en, fr: two upstream calls, each language its own answer
    for lang in ["en", "fr", "en", "fr"] {
        assert_eq!(get(lang, "gzip, br"), format!("hello in {lang}"));
    }
    assert_eq!(sent(), 2);
    // the same codings listed another way are the same variant
    assert_eq!(get("en", "br;q=1.0, gzip"), "hello in en");
    assert_eq!(sent(), 2);
    // at most MAX_VARIANTS (16) per key: sixteen more languages push out the first two
    for i in 0..16 {
        get(&format!("x-{i}"), "gzip");
    }
    assert_eq!(sent(), 18);
    assert_eq!(get("x-15", "gzip"), "hello in x-15");
    assert_eq!(sent(), 18);
    assert_eq!(get("en", "gzip, br"), "hello in en");
    assert_eq!(sent(), 19, "the oldest variant made way");
}

#[test]
fn a_stale_answer_serves_an_upstream_failure_within_its_stale_if_error() {
    let gw = gateway(
        r#"
[upstreams.app]
targets = [{ url = "https://backend.test" }]
retries = 1

[[routes]]
name = "own"
path = "/own"
upstream = "app"
cache = { ttl_s = 60 }

[[routes]]
name = "default"
path = "/default"
upstream = "app"
cache = { ttl_s = 60, stale_if_error_s = 30 }
"#,
    );
    let b = Backend::default();
    let host = b.host();
    // `retries = 1`: each failure below is pushed twice, one per attempt
    let get = |path: &str| {
        let res = send(&gw, &host, req("GET", path, &[], ""), "192.0.2.1");
        let age = res
            .headers()
            .get("age")
            .map(|v| v.to_str().unwrap().to_string());
        (
            res.status().as_u16(),
            String::from_utf8(res.body().to_vec()).unwrap(),
            age,
        )
    };
    // the upstream's own allowance: fresh for 10 s, then 60 s more for failures
    b.push(ok(
        "v1",
        &[("cache-control", "max-age=10, stale-if-error=60")],
    ));
    assert_eq!(get("/own").0, 200);
    host.advance(15_000);
    b.push(status(503));
    b.push(status(503));
    assert_eq!(get("/own"), (200, "v1".into(), Some("15".into())));
    b.push(Err(FetchError::Connect("refused".into())));
    b.push(Err(FetchError::Connect("refused".into())));
    assert_eq!(get("/own"), (200, "v1".into(), Some("15".into())));
    // a failure from the end of the allowance (70 s after it was stored) passes
    host.advance(54_000);
    b.push(status(504));
    b.push(status(504));
    assert_eq!(get("/own").0, 200);
    host.advance(1_000);
    b.push(status(504));
    b.push(status(504));
    assert_eq!(get("/own").0, 504);
    let caches: Vec<String> = (host.log_records().iter())
        .map(|l| l["cache"].as_str().unwrap_or("-").to_string())
        .collect();
    assert_eq!(caches, ["miss", "stale", "stale", "stale", "miss"]);
    // the route's allowance where the upstream says nothing, but not where it forbids stale
    b.push(ok("d1", &[("cache-control", "max-age=10")]));
    get("/default");
    host.advance(39_000);
    b.push(status(502));
    b.push(status(502));
    assert_eq!(get("/default"), (200, "d1".into(), Some("39".into())));
    host.advance(2_000);
    b.push(status(502));
    b.push(status(502));
    assert_eq!(get("/default").0, 502);
    b.push(ok(
        "d2",
        &[("cache-control", "max-age=10, must-revalidate")],
    ));
    get("/default");
    host.advance(11_000);
    b.push(status(502));
    b.push(status(502));
    assert_eq!(get("/default").0, 502);
}

#[test]
fn a_stale_answer_is_served_while_one_refresh_replaces_it() {
    let config = r#"
[upstreams.app]
targets = [{ url = "https://backend.test" }]

[[routes]]
name = "own"
path = "/own"
upstream = "app"
cache = { ttl_s = 60 }

[[routes]]
name = "default"
path = "/default"
upstream = "app"
cache = { ttl_s = 60, stale_while_revalidate_s = 30 }
"#;
    let gw = gateway(config);
    let b = Backend::default();
    let host = b.host();
    let get_with = |path: &str, headers: &[(&str, &str)]| {
        let res = send(&gw, &host, req("GET", path, headers, ""), "192.0.2.1");
        let age: Option<String> = res.headers().get("age").map(|v| v.to_str().unwrap().into());
        let body = String::from_utf8(res.body().to_vec()).unwrap();
        (res.status().as_u16(), body, age)
    };
    let get = |path: &str| get_with(path, &[]);
    let calls = || host.sent.borrow().len();
    let swr = [("cache-control", "max-age=10, stale-while-revalidate=60")];
    b.push(ok("v1", &swr));
    assert_eq!(get("/own").1, "v1");
    // stale for 5 s: served at once, then refreshed after the answer, without the client's
    // conditional fields
    host.advance(15_000);
    b.push(ok("v2", &swr));
    let stale = get_with("/own", &[("if-none-match", "\"other\"")]);
    assert_eq!(stale, (200, "v1".into(), Some("15".into())));
    assert_eq!(calls(), 2);
    {
        let sent = host.sent.borrow();
        assert_eq!(sent[1].uri().path(), "/own");
        assert_eq!(sent[1].headers().get("if-none-match"), None);
    }
    let records = host.log_records();
    let access = &records[records.len() - 2];
    assert_eq!(access["cache"], "stale");
    let mut phases = access["phases"].as_array().unwrap().iter();
    let cache_phase = phases.find(|p| p["phase"] == "cache").unwrap();
    assert_eq!(cache_phase["decision"], "stale-while-revalidate");
    let line = &records[records.len() - 1];
    assert_eq!(line["event"], "cache-refresh");
    assert_eq!(line["request_id"], access["request_id"]);
    assert_eq!(
        (line["route"].as_str(), line["outcome"].as_str()),
        (Some("own"), Some("stored"))
    );
    assert_eq!(line["upstream_status"], 200);
    // the refreshed answer is a fresh hit
    assert_eq!(get("/own"), (200, "v2".into(), Some("0".into())));
    assert_eq!(calls(), 2);

    // requests together while it is stale: each is served the stale answer, and one refresh
    // runs for all of them
    host.advance(11_000);
    b.push(ok("v3", &swr));
    let together = (0..3).map(|_| req("GET", "/own", &[], "")).collect();
    let answers = send_together(&gw, &host, together, "192.0.2.1");
    assert!(answers.iter().all(|a| a.body().as_ref() == b"v2"));
    assert_eq!(calls(), 3);
    let decisions: Vec<String> = (host.log_records().iter().rev().skip(1).take(3))
        .map(|l| l["phases"].as_array().unwrap().iter())
        .filter_map(|mut p| p.find(|p| p["phase"] == "cache"))
        .map(|p| p["decision"].as_str().unwrap().to_string())
        .collect();
    let under_way = "stale-while-revalidate:under-way";
    assert_eq!(decisions, [under_way, under_way, "stale-while-revalidate"]);
    assert_eq!(get("/own").1, "v3");

    // another isolate sharing the store leaves a refresh it sees under way to that one
    host.advance(11_000);
    let other = gateway(config);
    b.push(ok("v4", &swr));
    let handle = |gw: &Gateway| {
        let r = req("GET", "/own", &[], "").map(Body::Bytes);
        pollster::block_on(gw.handle(r, client("192.0.2.1"), &host))
    };
    handle(&gw);
    let first = host.take_later();
    handle(&other);
    let second = host.take_later();
    for later in first {
        pollster::block_on(gw.run_later(later, &host));
    }
    for later in second {
        pollster::block_on(other.run_later(later, &host));
    }
    let outcomes: Vec<String> = (host.log_records().iter())
        .filter(|l| l["event"] == "cache-refresh")
        .map(|l| l["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outcomes[outcomes.len() - 2..], ["stored", "under-way"]);
    assert_eq!(calls(), 4);
    assert_eq!(get("/own").1, "v4");

    // a refresh that fails stores nothing: the stale answer stays, and the next refresh is
    // tried once the failed one's time (the upstream's timeout) has passed
    host.advance(11_000);
    b.push(status(503));
    assert_eq!(get("/own").1, "v4");
    let line = host.log_records().pop().unwrap();
    assert_eq!(line["outcome"], "not-stored");
    assert_eq!(line["upstream_status"], 503);
    assert_eq!(get("/own").1, "v4");
    let line = host.log_records().pop().unwrap();
    assert_eq!(line["outcome"], "under-way");
    assert_eq!(calls(), 5);
    host.advance(10_000);
    b.push(ok("v5", &swr));
    assert_eq!(get("/own").1, "v4");
    assert_eq!(get("/own").1, "v5");
    assert_eq!(calls(), 6);

    // a client that asks for a fresh answer waits for the upstream
    host.advance(11_000);
    b.push(ok("v6", &swr));
    assert_eq!(get_with("/own", &[("cache-control", "no-cache")]).1, "v6");
    // past the allowance (60 s after going stale), a miss
    host.advance(71_000);
    b.push(ok("v7", &swr));
    assert_eq!(get("/own"), (200, "v7".into(), None));
    assert_eq!(calls(), 8);

    // the route's allowance where the upstream says nothing, but not where it forbids stale
    b.push(ok("d1", &[("cache-control", "max-age=10")]));
    get("/default");
    host.advance(39_000);
    b.push(ok("d2", &[("cache-control", "max-age=10")]));
    assert_eq!(get("/default"), (200, "d1".into(), Some("39".into())));
    assert_eq!(get("/default").1, "d2");
    b.push(ok(
        "d3",
        &[("cache-control", "max-age=10, must-revalidate")],
    ));
    host.advance(11_000);
    get("/default");
    host.advance(11_000);
    b.push(ok("d4", &[("cache-control", "max-age=10")]));
    assert_eq!(get("/default"), (200, "d4".into(), None));
}

#[test]
fn a_head_request_never_fills_the_cache_with_an_empty_body() {
    let gw = gateway(CONFIG);
    let b = Backend::default();
    let host = b.host();
    b.push(ok("", &[("cache-control", "max-age=60")]));
    b.push(ok("full body", &[("cache-control", "max-age=60")]));
    let head = send(
        &gw,
        &host,
        req("HEAD", "/public/page", &[], ""),
        "192.0.2.1",
    );
    assert_eq!(head.status().as_u16(), 200);
    let get = send(&gw, &host, req("GET", "/public/page", &[], ""), "192.0.2.1");
    assert_eq!(get.body().as_ref(), b"full body");
    // the GET answer was stored; a HEAD is then served from it, without a body
    let head = send(
        &gw,
        &host,
        req("HEAD", "/public/page", &[], ""),
        "192.0.2.1",
    );
    assert_eq!((head.status().as_u16(), head.body().len()), (200, 0));
    assert_eq!(host.sent.borrow().len(), 2);
}

#[test]
fn cache_store_failures_follow_the_routes_fail_mode() {
    let b = Backend::default();
    let host = b.host();
    host.fail_store.set(true);
    // fail = "open" (the default): the request goes to the backend
    let gw = gateway(CONFIG);
    let res = send(&gw, &host, req("GET", "/public/x", &[], ""), "192.0.2.1");
    assert_eq!(res.status().as_u16(), 200);
    let log = host.log_records().pop().unwrap();
    assert_eq!(
        (log["cache"].as_str(), log["phases"][2]["decision"].as_str()),
        (Some("bypass"), Some("bypass:store-error"))
    );
    // fail = "closed": 503 without calling the backend
    let closed = gateway(&CONFIG.replace(
        "cache = { ttl_s = 30 }",
        "cache = { ttl_s = 30, fail = \"closed\" }",
    ));
    let res = send(
        &closed,
        &host,
        req("GET", "/public/x", &[], ""),
        "192.0.2.1",
    );
    assert_eq!(
        (res.status().as_u16(), json_body(&res)["type"].as_str()),
        (503, Some("urn:portcullis:problem:unavailable"))
    );
    assert_eq!(host.sent.borrow().len(), 1);
}

#[test]
fn the_upstream_body_passes_through_unless_the_route_transforms_its_json() {
    let gw = gateway(
        r#"
[upstreams.app]
targets = [{ url = "https://backend.test" }]

[[routes]]
name = "headers-only"
methods = ["GET"]
path = "/plain"
upstream = "app"
response = { set_headers = { "x-served-by" = "portcullis" } }

[[routes]]
name = "json"
methods = ["GET"]
path = "/json"
upstream = "app"
response = { json = { remove = ["/secret"] } }

[[routes]]
name = "cached"
methods = ["GET"]
path = "/cached"
upstream = "app"
cache = { ttl_s = 30 }
"#,
    );
    let b = Backend::default();
    let host = b.host();
    for path in ["/plain", "/json", "/cached"] {
        b.push(ok(r#"{"secret":1}"#, &[("cache-control", "max-age=60")]));
        let res = send(&gw, &host, req("GET", path, &[], ""), "192.0.2.1");
        assert_eq!(res.status().as_u16(), 200, "{path}");
    }
    let paths: Vec<String> = host
        .sent
        .borrow()
        .iter()
        .map(|r| r.uri().path().to_string())
        .collect();
    assert_eq!(paths, ["/plain", "/json", "/cached"]);
    // a cached route's answer streams too: a copy goes to the store on its way
    assert_eq!(
        *host.body_uses.borrow(),
        [BodyUse::PassOn, BodyUse::Read, BodyUse::PassOn]
    );
    let res = send(&gw, &host, req("GET", "/cached", &[], ""), "192.0.2.1");
    assert_eq!(
        (res.status().as_u16(), &res.body()[..]),
        (200, &br#"{"secret":1}"#[..])
    );
    assert_eq!(host.sent.borrow().len(), 3, "served from the cache");
}

#[test]
fn a_streamed_answer_over_the_cache_limit_is_passed_on_and_not_stored() {
    let gw = gateway(
        r#"
[upstreams.app]
targets = [{ url = "https://backend.test" }]

[[routes]]
name = "cached"
methods = ["GET"]
path = "/cached/{n}"
upstream = "app"
cache = { ttl_s = 30, max_bytes = 100 }
"#,
    );
    let b = Backend::default();
    let host = b.host();
    let big = "z".repeat(101);
    // declared too long: not copied at all; no length declared: copied, then dropped at the limit
    let declared = big.len().to_string();
    for (path, headers) in [
        ("/cached/1", vec![("content-length", declared.as_str())]),
        ("/cached/2", vec![]),
    ] {
        for _ in 0..2 {
            b.push(ok(&big, &headers));
            let res = send(&gw, &host, req("GET", path, &[], ""), "192.0.2.1");
            assert_eq!(
                (res.status().as_u16(), res.body().len()),
                (200, 101),
                "{path}"
            );
        }
    }
    assert_eq!(
        host.sent.borrow().len(),
        4,
        "nothing was served from the cache"
    );
    let logs = host.log_records();
    let decisions: Vec<&str> = logs
        .iter()
        .filter_map(|l| l["cache"].as_str().or(l["reason"].as_str()))
        .collect();
    assert_eq!(
        decisions,
        ["bypass", "bypass", "too-large", "miss", "too-large", "miss"]
    );
}

const UPLOADS: &str = r#"
[upstreams.app]
targets = [{ url = "https://backend.test" }]
retries = 2

[[routes]]
name = "upload"
methods = ["PUT"]
path = "/files/{name}"
upstream = "app"
validate = { max_body_bytes = 1000 }

[[routes]]
name = "checked"
methods = ["POST"]
path = "/orders"
upstream = "app"
validate = { max_body_bytes = 64, body_schema = { type = "object", required = ["item"] } }
"#;

/// A request as an adapter hands it over: the body as a stream of `chunk`-byte pieces.
fn streamed(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    broken: bool,
) -> http::Request<Body<MemoryStream>> {
    let mut stream = MemoryStream::chunked(&Bytes::copy_from_slice(body), 100);
    stream.broken = broken;
    req(method, uri, headers, "").map(|_| Body::Stream(stream))
}

fn run(
    gw: &Gateway,
    host: &MemoryHost,
    r: http::Request<Body<MemoryStream>>,
) -> http::Response<Bytes> {
    pollster::block_on(gw.handle(r, client("192.0.2.1"), host)).map(|b| memory::body_bytes(&b))
}

#[test]
fn an_upload_on_a_route_that_does_not_read_it_goes_upstream_as_a_stream_once() {
    let gw = gateway(UPLOADS);
    let b = Backend::default();
    let host = b.host();
    b.push(status(503));
    let body = vec![7u8; 1000];
    let res = run(
        &gw,
        &host,
        streamed(
            "PUT",
            "/files/a",
            &[("content-length", "1000")],
            &body,
            false,
        ),
    );
    // a stream is sent once: the 503 is the answer, not retried
    assert_eq!(res.status(), 503);
    let sent = host.sent.borrow();
    assert_eq!(sent.len(), 1);
    assert_eq!(&sent[0].body()[..], &body[..]);
    assert_eq!(
        sent[0].headers()["content-length"],
        "1000",
        "the declared length goes on"
    );
    assert_eq!(*host.streamed.borrow(), [true]);
}

#[test]
fn a_streamed_upload_over_the_limit_is_a_413_before_or_while_it_goes_upstream() {
    let gw = gateway(UPLOADS);
    let b = Backend::default();
    let host = b.host();
    // declared too long: refused before the upstream is called
    let res = run(
        &gw,
        &host,
        streamed(
            "PUT",
            "/files/a",
            &[("content-length", "1001")],
            &[1; 1001],
            false,
        ),
    );
    assert_eq!(res.status(), 413);
    assert!(host.sent.borrow().is_empty());
    // no length declared: the upload is cut at the limit on its way, and the client gets 413
    let res = run(
        &gw,
        &host,
        streamed("PUT", "/files/a", &[], &[1; 1001], false),
    );
    let problem: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(
        (res.status().as_u16(), problem["type"].as_str()),
        (413, Some("urn:portcullis:problem:body-too-large"))
    );
    assert_eq!(host.log_records()[1]["error"], "body-too-large");
}

#[test]
fn a_body_the_route_validates_is_read_up_to_its_limit_and_then_checked() {
    let gw = gateway(UPLOADS);
    let b = Backend::default();
    let host = b.host();
    b.push(ok("{}", &[]));
    let json = [("content-type", "application/json")];
    let res = run(
        &gw,
        &host,
        streamed("POST", "/orders", &json, br#"{"item":1}"#, false),
    );
    assert_eq!(res.status(), 200);
    assert_eq!(*host.streamed.borrow(), [false], "read, then sent as bytes");
    assert_eq!(host.sent.borrow()[0].headers()["content-length"], "10");
    let statuses: Vec<u16> = [
        streamed("POST", "/orders", &json, br#"{"other":1}"#, false),
        streamed("POST", "/orders", &json, &[b' '; 65], false),
        streamed("POST", "/orders", &json, br#"{"item":1}"#, true),
    ]
    .into_iter()
    .map(|r| run(&gw, &host, r).status().as_u16())
    .collect();
    assert_eq!(statuses, [400, 413, 400]);
    assert_eq!(
        host.sent.borrow().len(),
        1,
        "none of them reached the upstream"
    );
}
