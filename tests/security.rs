//! Trust-boundary scenarios: each is an attack from the adversarial review of 6b33365 (issue 16),
//! sent whole through `Gateway::handle` on the in-memory host, and what the gateway must do
//! instead. Each test names the item it keeps closed.

use portcullis_tests::*;
use serde_json::json;

const CONFIG: &str = r#"
[gateway]
trusted_proxies = ["10.0.0.0/8"]

[upstreams.app]
targets = [{ url = "https://backend.test" }]

[auth.jwt.hs]
issuer = "https://issuer.test/"
audiences = ["api"]
keys = [{ kid = "hs", alg = "HS256", secret = "scenario-secret-0123456789abcdef-xyz" }]

[auth.jwt.open]
issuer = "https://issuer.test/"
audiences = ["api"]
jwks_url = "https://issuer.test/.well-known/jwks.json"
fail = "open"

[auth.api_keys.partners]
header = "x-api-key"
# sha256("k-partner")
keys = [{ consumer = "partner-1", sha256 = "2f0d0c4e6ed2b1c3fd4e1de3efd0e7c5b0c0ad9c1e1f4c9a6b1f3d1e7c0c0a11" }]

[rate_limits.per_ip]
key = "ip"
limit = 3
period_s = 60

[rate_limits.per_consumer]
key = "consumer"
limit = 2
period_s = 60

[transforms.who]
set_headers = { "x-consumer" = "{consumer}" }

[transforms.strip-admin]
json = { remove = ["/is_admin"], set = { "/role" = "user" } }

[transforms.nosniff]
set_headers = { "x-content-type-options" = "nosniff" }

[[routes]]
name = "files"
methods = ["GET"]
path = "/files/{name}.txt"
upstream = "app"
rewrite = "/storage/public/{name}/content"

[[routes]]
name = "search"
methods = ["GET"]
path = "/search/{term}"
upstream = "app"
rewrite = "/v2/search?scope=public&q={term}"

[[routes]]
name = "static"
methods = ["GET"]
path = "/static/{*rest}"
upstream = "app"

[[routes]]
name = "account"
methods = ["GET", "POST"]
path = "/account"
upstream = "app"
cache = { ttl_s = 60 }

[[routes]]
name = "private"
methods = ["GET"]
path = "/private"
upstream = "app"
auth = { jwt = "hs" }
rate_limit = "per_consumer"
cache = { ttl_s = 60, per_consumer = true }

[[routes]]
name = "who"
methods = ["GET"]
path = "/who"
upstream = "app"
auth = { jwt = "hs" }
request = "who"

[[routes]]
name = "profile"
methods = ["POST"]
path = "/profile"
upstream = "app"
request = "strip-admin"

[[routes]]
name = "admin-open"
methods = ["GET"]
path = "/scoped"
upstream = "app"
auth = { jwt = "open", scopes = ["admin"] }

[[routes]]
name = "login"
methods = ["GET"]
path = "/login"
upstream = "app"
auth = { api_key = "partners" }
rate_limit = "per_ip"

[[routes]]
name = "limited"
methods = ["GET"]
path = "/limited"
rate_limit = "per_ip"
respond = { body = "ok" }

[[routes]]
name = "typed"
methods = ["POST"]
path = "/typed"
upstream = "app"
response = "nosniff"
validate = { content_types = ["application/json"] }

[[routes]]
name = "admin-host"
methods = ["GET"]
host = "admin.test"
path = "/where"
respond = { body = "admin" }

[[routes]]
name = "any-host"
methods = ["GET"]
path = "/where"
respond = { body = "any" }
"#;

/// The upstream request the backend saw last.
fn last_sent(host: &portcullis_core::memory::MemoryHost) -> http::Request<bytes::Bytes> {
    host.sent
        .borrow()
        .last()
        .cloned()
        .expect("a request went upstream")
}

fn problem(res: &http::Response<bytes::Bytes>) -> (u16, String) {
    (
        res.status().as_u16(),
        json_body(res)["type"].as_str().unwrap_or("").to_string(),
    )
}

fn p(status: u16, code: &str) -> (u16, String) {
    (status, format!("urn:portcullis:problem:{code}"))
}

/// Item 2: a parameter that shares a segment with literal text captures `..`; the rewritten
/// path would climb out of `/storage/public`.
#[test]
fn a_rewrite_never_sends_a_dot_segment_upstream() {
    let gw = gateway(CONFIG);
    let b = Backend::default();
    let host = b.host();
    for path in ["/files/...txt", "/files/%2e%2e.txt", "/files/..;x.txt"] {
        let res = send(&gw, &host, req("GET", path, &[], ""), "192.0.2.1");
        assert_eq!(problem(&res), p(400, "bad-path"), "{path}");
    }
    assert!(host.sent.borrow().is_empty(), "nothing went upstream");
    let res = send(&gw, &host, req("GET", "/files/a.txt", &[], ""), "192.0.2.1");
    assert_eq!(res.status(), 200);
    assert_eq!(last_sent(&host).uri().path(), "/storage/public/a/content");
}

/// Item 23: what a path parameter puts into a template's query stays one value.
#[test]
fn a_path_parameter_cannot_add_query_parameters() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let res = send(
        &gw,
        &host,
        req("GET", "/search/shoes&scope=internal", &[], ""),
        "192.0.2.1",
    );
    assert_eq!(res.status(), 200);
    assert_eq!(
        last_sent(&host).uri().query(),
        Some("scope=public&q=shoes%26scope%3Dinternal")
    );
}

/// Items 3 and 4: `..;` (Tomcat's `..`), overlong UTF-8 and encoded CR LF are refused; raw
/// UTF-8 keeps its bytes.
#[test]
fn paths_backends_read_differently_are_refused() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    for path in [
        "/static/..;/admin/users",
        "/static/%2e%2e;/admin",
        "/static/%C0%AE%C0%AE/admin",
        "/static/a%FF",
        "/static/a%0D%0ASet-Cookie:x",
    ] {
        let res = send(&gw, &host, req("GET", path, &[], ""), "192.0.2.1");
        assert_eq!(problem(&res), p(400, "bad-path"), "{path}");
    }
    assert!(host.sent.borrow().is_empty());
    let uri = http::Uri::builder()
        .path_and_query("/static/caf%C3%A9//x")
        .build()
        .unwrap();
    let res = send(
        &gw,
        &host,
        req("GET", &uri.to_string(), &[], ""),
        "192.0.2.1",
    );
    assert_eq!(res.status(), 200);
    assert_eq!(last_sent(&host).uri().path(), "/static/caf%C3%A9/x");
}

/// Items 5 and 6: nothing the client says about itself or the request reaches the upstream
/// unless a trusted proxy said it; the forwarded host and scheme are the ones the cache keyed.
#[test]
fn forged_forwarding_headers_never_reach_the_upstream() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let forged = [
        ("host", "gw.test:8443"),
        ("forwarded", "for=10.1.1.1;host=evil.test;proto=http"),
        ("x-forwarded-host", "evil.test"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-port", "80"),
        ("x-real-ip", "10.1.1.1"),
        ("true-client-ip", "10.1.1.1"),
        ("cf-connecting-ip", "10.1.1.1"),
        ("x-client-ip", "10.1.1.1"),
        ("x-forwarded-for", "10.1.1.1"),
    ];
    let res = send(
        &gw,
        &host,
        req("GET", "https://gw.test:8443/static/a", &forged, ""),
        "192.0.2.1",
    );
    assert_eq!(res.status(), 200);
    let sent = last_sent(&host);
    let h = sent.headers();
    for gone in [
        "forwarded",
        "x-forwarded-port",
        "x-real-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "x-client-ip",
    ] {
        assert!(!h.contains_key(gone), "{gone} reached the upstream");
    }
    assert_eq!(h["x-forwarded-host"], "gw.test:8443");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-for"], "192.0.2.1");
    // without a Host header the client's own X-Forwarded-Host does not pass either
    let res = send(
        &gw,
        &host,
        req("GET", "/static/a", &[("x-forwarded-host", "evil.test")], ""),
        "192.0.2.1",
    );
    assert_eq!(res.status(), 200);
    assert!(!last_sent(&host).headers().contains_key("x-forwarded-host"));
}

/// Item 22: behind a trusted proxy, every `X-Forwarded-For` line is one list.
#[test]
fn every_forwarded_for_line_is_read_and_forwarded() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let mut r = req("GET", "/static/a", &[], "");
    for line in ["198.51.100.7", "203.0.113.9"] {
        r.headers_mut()
            .append("x-forwarded-for", line.parse().unwrap());
    }
    send(&gw, &host, r, "10.0.0.5");
    assert_eq!(
        last_sent(&host).headers()["x-forwarded-for"],
        "198.51.100.7, 203.0.113.9, 10.0.0.5"
    );
    assert_eq!(host.log_records()[0]["client_ip"], "203.0.113.9");
}

/// Item 7: alice's page, fetched with her session cookie, is never served to anyone else.
#[test]
fn credentialed_responses_are_not_shared() {
    let gw = gateway(CONFIG);
    let b = Backend::default();
    let host = b.host();
    b.push(ok("alice's page", &[("cache-control", "max-age=60")]));
    let alice = send(
        &gw,
        &host,
        req("GET", "/account", &[("cookie", "session=alice")], ""),
        "192.0.2.1",
    );
    assert_eq!(alice.body().as_ref(), b"alice's page");
    let anonymous = send(&gw, &host, req("GET", "/account", &[], ""), "192.0.2.2");
    assert_ne!(anonymous.body().as_ref(), b"alice's page");
    assert_eq!(host.sent.borrow().len(), 2);
    // a 500 without Cache-Control is not made fresh by ttl_s
    b.push(status(500));
    send(&gw, &host, req("GET", "/account?e=1", &[], ""), "192.0.2.1");
    send(&gw, &host, req("GET", "/account?e=1", &[], ""), "192.0.2.1");
    assert_eq!(host.sent.borrow().len(), 4);
}

/// Item 8: a successful POST invalidates the cached GET of the same URI.
#[test]
fn unsafe_requests_invalidate_the_cached_entry() {
    let gw = gateway(CONFIG);
    let b = Backend::default();
    let host = b.host();
    b.push(ok("v1", &[("cache-control", "max-age=600")]));
    let get = || send(&gw, &host, req("GET", "/account", &[], ""), "192.0.2.1");
    assert_eq!(get().body().as_ref(), b"v1");
    host.advance(1);
    assert_eq!(get().body().as_ref(), b"v1", "a hit");
    host.advance(1);
    b.push(status(204));
    send(&gw, &host, req("POST", "/account", &[], "x"), "192.0.2.1");
    host.advance(1);
    b.push(ok("v2", &[("cache-control", "max-age=600")]));
    assert_eq!(get().body().as_ref(), b"v2", "the POST invalidated v1");
    host.advance(1);
    assert_eq!(get().body().as_ref(), b"v2", "v2 is cached again");
    assert_eq!(host.sent.borrow().len(), 3);
}

/// Item 9: tokens without `sub`, `client_id` or `azp` share neither a per-consumer cache
/// namespace nor a consumer's rate-limit bucket.
#[test]
fn tokens_without_an_identity_share_nothing() {
    let gw = gateway(CONFIG);
    let b = Backend::default();
    let host = b.host();
    let anon = |tag: &str| {
        let t = hs_token("x", json!({"sub": null, "tag": tag}), NOW_MS);
        format!("Bearer {t}")
    };
    b.push(ok("for alice", &[("cache-control", "private, max-age=60")]));
    let a = send(
        &gw,
        &host,
        req("GET", "/private", &[("authorization", &anon("a"))], ""),
        "192.0.2.1",
    );
    assert_eq!(a.body().as_ref(), b"for alice");
    let bob = send(
        &gw,
        &host,
        req("GET", "/private", &[("authorization", &anon("b"))], ""),
        "192.0.2.2",
    );
    assert_ne!(bob.body().as_ref(), b"for alice");
    assert_eq!(host.log_records()[1]["cache"], "bypass");
    // each anonymous token counts by its address, not against one shared "" bucket
    for ip in ["192.0.2.3", "192.0.2.4", "192.0.2.5"] {
        let r = send(
            &gw,
            &host,
            req("GET", "/private", &[("authorization", &anon(ip))], ""),
            ip,
        );
        assert_eq!(r.status(), 200, "{ip}");
    }
}

/// Item 11: an instance may live for one request (Spin). With a new gateway per request, 50
/// tokens with unknown `kid`s make one JWKS fetch, not 50; and once the stored copy's TTL has
/// passed while the IdP is down, known keys keep working without each request waiting.
#[test]
fn jwks_cooldowns_and_last_good_keys_outlive_an_instance() {
    let b = Backend::default();
    let host = b.host();
    let key = EcKey::new("k1");
    *b.jwks.borrow_mut() = Some(jwks(&[&key]));
    *b.jwks_max_age.borrow_mut() = 60;
    let toml = r#"
[auth.jwt.remote]
issuer = "https://issuer.test/"
audiences = ["api"]
jwks_url = "https://issuer.test/.well-known/jwks.json"
jwks_cooldown_s = 30
jwks_min_ttl_s = 60
jwks_max_ttl_s = 60

[[routes]]
name = "r"
path = "/r"
auth = { jwt = "remote" }
respond = { body = "ok" }
"#;
    let fetches = || {
        host.sent
            .borrow()
            .iter()
            .filter(|r| r.uri().path() == "/.well-known/jwks.json")
            .count()
    };
    let fresh = |token: &str| {
        let gw = gateway(toml); // a new instance for every request
        let auth = format!("Bearer {token}");
        send(
            &gw,
            &host,
            req("GET", "/r", &[("authorization", &auth)], ""),
            "192.0.2.1",
        )
    };
    let good = key.token("alice", json!({}), NOW_MS);
    assert_eq!(fresh(&good).status(), 200);
    assert_eq!(fetches(), 1);
    for i in 0..50 {
        let stranger = EcKey::new(&format!("unknown-{i}"));
        let res = fresh(&stranger.token("eve", json!({}), NOW_MS));
        assert_eq!(res.status(), 401);
    }
    assert_eq!(
        fetches(),
        2,
        "one refetch for 50 unknown kids in one cooldown"
    );
    // the IdP goes down; the copy's TTL passes
    *b.jwks.borrow_mut() = None;
    host.advance(120_000);
    let good = key.token("alice", json!({}), NOW_MS + 120_000);
    for _ in 0..10 {
        assert_eq!(
            fresh(&good).status(),
            200,
            "the last good keys keep working"
        );
    }
    assert_eq!(fetches(), 3, "one failed refresh, then a cooldown");
}

/// Item 10: a stored key set is keyed by its URL: after `jwks_url` changes, keys from the old
/// IdP are not used.
#[test]
fn a_jwks_copy_does_not_outlive_its_url() {
    let b = Backend::default();
    let host = b.host();
    let old = EcKey::new("old");
    *b.jwks.borrow_mut() = Some(jwks(&[&old]));
    let config = |url: &str| {
        format!(
            r#"
[auth.jwt.main]
jwks_url = "{url}"
[[routes]]
name = "r"
path = "/r"
auth = {{ jwt = "main" }}
respond = {{ body = "ok" }}
"#
        )
    };
    let token = format!("Bearer {}", old.token("alice", json!({}), NOW_MS));
    let first = gateway(&config("https://old-idp.test/.well-known/jwks.json"));
    let r = send(
        &first,
        &host,
        req("GET", "/r", &[("authorization", &token)], ""),
        "192.0.2.1",
    );
    assert_eq!(r.status(), 200);
    // the new IdP does not know the old key
    *b.jwks.borrow_mut() = Some(jwks(&[&EcKey::new("new")]));
    let moved = gateway(&config("https://new-idp.test/.well-known/jwks.json"));
    let r = send(
        &moved,
        &host,
        req("GET", "/r", &[("authorization", &token)], ""),
        "192.0.2.1",
    );
    assert_eq!(r.status(), 401);
    let hosts: Vec<String> = host
        .sent
        .borrow()
        .iter()
        .map(|r| r.uri().host().unwrap_or("").to_string())
        .collect();
    // the new provider fetched its own keys (and, for the unknown `kid`, once more)
    assert_eq!(hosts, ["old-idp.test", "new-idp.test", "new-idp.test"]);
}

/// Item 12: a body the JSON transform cannot read is refused, not passed on unedited.
#[test]
fn a_request_json_transform_refuses_what_it_cannot_parse() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let nested = format!("{}{}", "[".repeat(200), "]".repeat(200));
    for body in [
        "\u{feff}{\"is_admin\":true}",
        "{\"is_admin\":true,}",
        "{\"is_admin\":true,\"a\":\"\\ud800\"}",
        "{\"is_admin\":true,\"n\":1e400}",
        "{\"is_admin\":false,\"is_admin\":true}",
        nested.as_str(),
    ] {
        let res = send(&gw, &host, req("POST", "/profile", &[], body), "192.0.2.1");
        assert_eq!(problem(&res), p(400, "invalid-body"), "{body:.40}");
    }
    assert!(host.sent.borrow().is_empty());
    let res = send(
        &gw,
        &host,
        req("POST", "/profile", &[], r#"{"is_admin":true,"name":"x"}"#),
        "192.0.2.1",
    );
    assert_eq!(res.status(), 200);
    let sent: serde_json::Value = serde_json::from_slice(last_sent(&host).body()).unwrap();
    assert_eq!(sent, json!({"name": "x", "role": "user"}));
    assert_eq!(
        last_sent(&host).headers()["content-length"],
        sent.to_string().len().to_string().as_str()
    );
}

/// Item 13: the addresses of one IPv6 /64 share one budget.
#[test]
fn an_ipv6_64_shares_one_budget() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let statuses: Vec<u16> = (1..=4)
        .map(|i| {
            let ip = format!("2001:db8:1:2::{i}");
            send(&gw, &host, req("GET", "/limited", &[], ""), &ip)
                .status()
                .as_u16()
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    let other = send(
        &gw,
        &host,
        req("GET", "/limited", &[], ""),
        "2001:db8:1:3::1",
    );
    assert_eq!(other.status(), 200, "another /64");
}

/// Item 15: a fail-open provider lets a request in while its JWKS is down, but never proves a
/// scope.
#[test]
fn fail_open_never_satisfies_scopes() {
    let gw = gateway(CONFIG);
    let b = Backend::default();
    let host = b.host();
    *b.jwks.borrow_mut() = None; // the JWKS is down
    let res = send(
        &gw,
        &host,
        req(
            "GET",
            "/scoped",
            &[("authorization", "Bearer not-a-token")],
            "",
        ),
        "192.0.2.1",
    );
    assert_eq!(problem(&res), p(503, "unavailable"));
}

/// Item 18: an upstream's hostile freshness values make no hit panic.
#[test]
fn hostile_freshness_values_cannot_make_a_hit_panic() {
    let gw = gateway(CONFIG);
    let b = Backend::default();
    let host = b.host();
    b.push(ok(
        "x",
        &[
            ("age", "18446744073709551614"),
            ("cache-control", "max-age=18446744073709551615"),
        ],
    ));
    for _ in 0..3 {
        let res = send(&gw, &host, req("GET", "/account", &[], ""), "192.0.2.1");
        assert_eq!(res.status(), 200);
        host.advance(1_000);
    }
}

/// Found by the `handle` fuzz target: an upstream status `http` accepts but no client can read
/// (890, or a stray 103) is answered 502, never passed on (workerd's `Response` would throw).
#[test]
fn an_upstream_status_outside_200_to_599_is_a_bad_gateway() {
    let gw = gateway(CONFIG);
    let b = Backend::default();
    let host = b.host();
    for code in [890, 103, 600] {
        b.push(status(code));
        let res = send(&gw, &host, req("GET", "/account", &[], ""), "192.0.2.1");
        assert_eq!(problem(&res), p(502, "bad-gateway"), "upstream {code}");
    }
    b.push(status(599));
    let res = send(&gw, &host, req("GET", "/account", &[], ""), "192.0.2.1");
    assert_eq!(res.status(), 599);
}

/// Item 19: a `set` whose value cannot be a header removes the client's own value.
#[test]
fn a_header_that_cannot_be_set_is_removed() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let t = hs_token("alice\r\nx-admin: 1", json!({}), NOW_MS);
    let res = send(
        &gw,
        &host,
        req(
            "GET",
            "/who",
            &[
                ("authorization", &format!("Bearer {t}")),
                ("x-consumer", "admin"),
            ],
            "",
        ),
        "192.0.2.1",
    );
    assert_eq!(res.status(), 200);
    assert!(!last_sent(&host).headers().contains_key("x-consumer"));
}

/// Item 20: a preflight-shaped OPTIONS on a route without CORS is not proxied.
#[test]
fn a_preflight_without_cors_is_405() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let res = send(
        &gw,
        &host,
        req(
            "OPTIONS",
            "/static/a",
            &[
                ("origin", "https://evil.test"),
                ("access-control-request-method", "GET"),
            ],
            "",
        ),
        "192.0.2.1",
    );
    assert_eq!(problem(&res), p(405, "method-not-allowed"));
    assert_eq!(res.headers()["allow"], "GET");
    assert!(host.sent.borrow().is_empty());
}

/// Item 21: `admin.test.` is `admin.test`.
#[test]
fn a_trailing_dot_names_the_same_host() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    for h in ["admin.test", "admin.test.", "ADMIN.test.:8080"] {
        let res = send(
            &gw,
            &host,
            req("GET", "/where", &[("host", h)], ""),
            "192.0.2.1",
        );
        assert_eq!(res.body().as_ref(), b"admin", "{h}");
    }
}

/// Item 26: refused credentials count against an `ip` limit, so keys cannot be guessed
/// without limit.
#[test]
fn refused_credentials_count_against_ip_limits() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let statuses: Vec<u16> = (0..5)
        .map(|i| {
            let key = format!("guess-{i}");
            send(
                &gw,
                &host,
                req("GET", "/login", &[("x-api-key", &key)], ""),
                "192.0.2.9",
            )
            .status()
            .as_u16()
        })
        .collect();
    assert_eq!(statuses, [401, 401, 401, 429, 429]);
}

/// Item 14: an empty API key is no credential.
#[test]
fn an_empty_api_key_is_no_credential() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    for v in ["", "   "] {
        let res = send(
            &gw,
            &host,
            req("GET", "/login", &[("x-api-key", v)], ""),
            "192.0.2.10",
        );
        assert_eq!(problem(&res), p(401, "unauthenticated"), "{v:?}");
        assert_eq!(
            json_body(&res)["detail"],
            "authentication required: no credentials"
        );
    }
}

/// Items 28 and 29: requests two servers could frame differently are refused.
#[test]
fn ambiguous_framing_is_refused() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let mut two_hosts = req("GET", "/static/a", &[], "");
    two_hosts
        .headers_mut()
        .append("host", "a.test".parse().unwrap());
    two_hosts
        .headers_mut()
        .append("host", "admin.test".parse().unwrap());
    let rows = [
        two_hosts,
        req(
            "POST",
            "/account",
            &[("content-length", "4"), ("transfer-encoding", "chunked")],
            "abcd",
        ),
    ];
    for r in rows {
        let what = format!("{} {:?}", r.uri(), r.headers());
        let res = send(&gw, &host, r, "192.0.2.1");
        assert_eq!(problem(&res), p(400, "bad-framing"), "{what}");
    }
    assert!(host.sent.borrow().is_empty());
    // what goes upstream carries the length of the body it carries
    let res = send(
        &gw,
        &host,
        req("POST", "/account", &[("content-length", "999")], "abcd"),
        "192.0.2.1",
    );
    assert_eq!(res.status(), 200);
    assert_eq!(last_sent(&host).headers()["content-length"], "4");
}

/// Item 27: a validly signed 16 KiB token is refused (the header line limit answers first).
#[test]
fn oversized_headers_and_tokens_are_refused() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let t = hs_token("alice", json!({"pad": "x".repeat(16 * 1024)}), NOW_MS);
    let res = send(
        &gw,
        &host,
        req(
            "GET",
            "/who",
            &[("authorization", &format!("Bearer {t}"))],
            "",
        ),
        "192.0.2.1",
    );
    assert_eq!(problem(&res), p(431, "header-too-large"));
}

/// Item 30: the route's response headers are on its refusals too.
#[test]
fn refusals_carry_the_routes_response_headers() {
    let gw = gateway(CONFIG);
    let host = Backend::default().host();
    let res = send(
        &gw,
        &host,
        req("POST", "/typed", &[("content-type", "text/html")], "<b>"),
        "192.0.2.1",
    );
    assert_eq!(problem(&res), p(415, "unsupported-media-type"));
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
}
