//! Every config in `examples/` (and the suites' own: end-to-end, load benchmark, fuzzing) loads, and the
//! default config does what its comments promise.

use portcullis_core::Config;
use portcullis_tests::*;
use serde_json::json;
use std::path::Path;

const DEMO_TOKEN: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImRlbW8ifQ.eyJpc3MiOiJodHRwczovL2RlbW8ucG9ydGN1bGxpcy5sb2NhbC8iLCJhdWQiOiJkZW1vIiwic3ViIjoiZGVtby11c2VyIiwic2NvcGUiOiJkZW1vOnJlYWQiLCJleHAiOjQxMDI0NDQ4MDB9.UMIBw3bHAiXP2VPlAMWT8oszvoFntlpw5JpWCfL9LOE";

fn examples() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    files.push(root.join("tests/e2e/gateway.toml"));
    files.push(root.join("benches/gateway.toml"));
    // the fuzz targets' configs: a target whose config stopped loading would panic at once
    files.push(root.join("fuzz/gateway.toml"));
    files.push(root.join("fuzz/jwt.toml"));
    files
}

#[test]
fn every_example_config_loads() {
    let files = examples();
    assert!(files.len() >= 5, "{files:?}");
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        let name = f.display().to_string();
        // a config with `[openapi]` loads as `portcullis check` loads it: expanded
        let dir = f.parent().unwrap();
        let src = portcullis_openapi::expand(&src, &name, dir).unwrap_or_else(|e| panic!("{e}"));
        assert!(src.warnings.is_empty(), "{:#?}", src.warnings);
        if let Err(e) = Config::from_toml(&src.toml) {
            panic!("{}", e.render(&name));
        }
    }
}

/// Every TOML block in the README and the docs is a config that loads, and the README's routes
/// what it says.
#[test]
fn the_configs_in_the_docs_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    docs.sort();
    pages.extend(docs);
    let mut blocks = 0;
    for page in pages {
        let text = std::fs::read_to_string(&page).unwrap();
        for block in text.split("```toml\n").skip(1) {
            let src = block.split("```").next().unwrap();
            blocks += 1;
            let page_name = page.display().to_string();
            let expanded = portcullis_openapi::expand(src, &page_name, &root)
                .unwrap_or_else(|e| panic!("{e}"));
            if let Err(e) = Config::from_toml(&expanded.toml) {
                panic!("{}", e.render(&page.display().to_string()));
            }
        }
    }
    assert!(blocks >= 2, "{blocks} TOML blocks");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let src = readme
        .split("```toml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next();
    let gw = gateway(src.unwrap());
    let host = Backend::default().host();
    let id = "1b4e28ba-2d11-4d8e-9b3a-4d6f3c1e2a10";
    let r = send(
        &gw,
        &host,
        req("GET", &format!("/v1/orders/{id}"), &[], ""),
        "203.0.113.9",
    );
    assert_eq!(r.status(), 401, "no token");
    let r = send(
        &gw,
        &host,
        req("GET", "/v1/orders/12", &[], ""),
        "203.0.113.9",
    );
    assert_eq!(r.status(), 400, "not a UUID");
}

/// `tests/build.rs`: the `static` `Config::embed` wrote for each config, compiled here.
mod emitted {
    include!(concat!(env!("OUT_DIR"), "/emitted.rs"));
}

#[test]
fn every_config_embedded_as_data_builds_what_its_file_parses_to() {
    let emitted = emitted::EMITTED;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut want: Vec<_> = examples()
        .iter()
        .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    want.push("tests/fixtures/emit.toml".into());
    let got: Vec<_> = emitted.iter().map(|(file, _)| file.to_string()).collect();
    assert_eq!(
        got, want,
        "tests/build.rs and examples() list different configs"
    );
    for (file, embedded) in emitted {
        let path = root.join(file);
        let src = std::fs::read_to_string(&path).unwrap();
        let src = portcullis_openapi::expand(&src, file, path.parent().unwrap())
            .unwrap()
            .toml;
        let mut parsed = Config::raw_from_toml(&src).unwrap();
        let secret = |_: &str| Some("s".repeat(64));
        let from_file = Config::from_toml_with_secrets(&src, &secret).unwrap();
        // the raw config but for its address lists, which come as sets
        parsed.gateway.trusted_proxies.clear();
        for list in parsed.access.values_mut() {
            list.allow_ips.clear();
            list.deny_ips.clear();
        }
        assert_eq!(
            serde_json::to_value(embedded.raw_config()).unwrap(),
            serde_json::to_value(&parsed).unwrap(),
            "{file}"
        );
        assert_eq!(
            embedded.sets.trusted_proxies, from_file.trusted_proxies,
            "{file}"
        );
        let sets: Vec<_> = from_file
            .access
            .iter()
            .map(|p| (p.allow_ips.clone(), p.deny_ips.clone()))
            .collect();
        assert_eq!(embedded.sets.access, &sets[..], "{file}");
        assert_eq!(embedded.refs, from_file.route_refs(), "{file}");
        assert_eq!(embedded.router, *from_file.router.data(), "{file}");
        // and it builds the same gateway, each route on first use
        let from_code = Config::from_embedded(embedded, &secret).unwrap();
        assert_eq!(from_code.summary(), from_file.summary(), "{file}");
        assert_eq!(
            from_code.caches_responses, from_file.caches_responses,
            "{file}"
        );
        for i in 0..from_file.route_count() {
            assert_eq!(
                format!("{:?}", from_code.route_at(i)),
                format!("{:?}", from_file.route_at(i)),
                "{file}: routes[{i}]"
            );
        }
    }
}

#[test]
fn an_embedded_config_reports_a_missing_secret_without_a_position() {
    let (_, edge) = emitted::EMITTED
        .iter()
        .find(|(f, _)| *f == "examples/edge.toml")
        .unwrap();
    let secret = |name: &str| (name == "INTERNAL_JWT_SECRET").then(|| "s".repeat(32));
    assert!(portcullis_core::Gateway::from_embedded(edge, &secret).is_ok());
    let err = portcullis_core::Gateway::from_embedded(edge, &|_| None)
        .err()
        .unwrap();
    assert!(
        err.starts_with("embedded config: auth.jwt.")
            && err.ends_with(".secret_env: the environment has no INTERNAL_JWT_SECRET (on Workers: `npx wrangler secret put INTERNAL_JWT_SECRET`; on Spin: `spin up -e INTERNAL_JWT_SECRET=...`)\n1 error; nothing was loaded\n"),
        "{err}"
    );
}

#[test]
fn the_default_config_works_with_no_backend() {
    let gw = gateway(include_str!("../examples/gateway.toml"));
    let host = Backend::default().host();
    let go = |m: &str, p: &str, h: &[(&str, &str)], body: &str| {
        send(&gw, &host, req(m, p, h, body), "192.0.2.10")
    };
    let auth = format!("Bearer {DEMO_TOKEN}");
    let rows: Vec<(u16, http::Response<bytes::Bytes>)> = vec![
        (200, go("GET", "/health", &[], "")),
        (200, go("GET", "/v1/hello/world?lang=fr", &[], "")),
        (400, go("GET", "/v1/hello/world?lang=de", &[], "")),
        (401, go("GET", "/v1/me", &[], "")),
        (200, go("GET", "/v1/me", &[("authorization", &auth)], "")),
        (
            200,
            go("GET", "/v1/partner", &[("x-api-key", "demo-key-123")], ""),
        ),
        (401, go("GET", "/v1/partner", &[("x-api-key", "nope")], "")),
        (
            202,
            go(
                "POST",
                "/v1/echo",
                &[("content-type", "application/json")],
                r#"{"message":"hi"}"#,
            ),
        ),
        (
            415,
            go("POST", "/v1/echo", &[("content-type", "text/plain")], "hi"),
        ),
        (
            413,
            go(
                "POST",
                "/v1/echo",
                &[("content-type", "application/json")],
                &format!(r#"{{"message":"{}"}}"#, "x".repeat(4096)),
            ),
        ),
        (
            204,
            go(
                "OPTIONS",
                "/v1/me",
                &[
                    ("origin", "https://app.example.com"),
                    ("access-control-request-method", "GET"),
                ],
                "",
            ),
        ),
    ];
    for (i, (want, res)) in rows.iter().enumerate() {
        assert_eq!(res.status().as_u16(), *want, "row {i}: {:?}", res.body());
    }
    assert_eq!(rows[1].1.headers()["x-content-type-options"], "nosniff");
    assert!(
        host.sent.borrow().is_empty(),
        "the default config never calls out"
    );
    // hello allows 5 a minute per address; one 200 above was counted (the 400 was refused before the limiter)
    let statuses: Vec<u16> = (0..6)
        .map(|_| go("GET", "/v1/hello/again", &[], "").status().as_u16())
        .collect();
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
}

#[test]
fn the_proxy_example_forwards_to_its_local_backend() {
    let gw = gateway(include_str!("../examples/proxy.toml"));
    let b = Backend::default();
    let host = b.host();
    let key = EcKey::new("local-1");
    *b.jwks.borrow_mut() = Some(jwks(&[&key]));
    let token = key.token(
        "ana",
        json!({"iss": "http://127.0.0.1:8081/", "scope": "items:read"}),
        NOW_MS,
    );
    let res = send(
        &gw,
        &host,
        req(
            "GET",
            "/api/items/12",
            &[("authorization", &format!("Bearer {token}"))],
            "",
        ),
        "198.18.0.10",
    );
    assert_eq!(res.status().as_u16(), 200);
    let sent = host.sent.borrow();
    let up = sent
        .iter()
        .find(|r| r.uri().path() == "/items/12")
        .expect("the item request went upstream");
    assert_eq!(up.uri().to_string(), "http://127.0.0.1:8080/items/12");
    assert_eq!(up.headers()["x-consumer"], "ana");
    drop(sent);
    let res = send(
        &gw,
        &host,
        req(
            "GET",
            "/api/items/12",
            &[("x-api-key", "partner-key-1")],
            "",
        ),
        "198.18.0.10",
    );
    assert_eq!(res.status().as_u16(), 200, "{:?}", res.body());
    // the example's deny list refuses documentation ranges
    let res = send(
        &gw,
        &host,
        req(
            "GET",
            "/api/items/12",
            &[("x-api-key", "partner-key-1")],
            "",
        ),
        "192.0.2.10",
    );
    assert_eq!(res.status().as_u16(), 403);
}

#[test]
fn the_proxy_example_sends_a_sampled_requests_spans_and_counts_to_its_local_collector() {
    let gw = gateway(include_str!("../examples/proxy.toml"));
    let b = Backend::default();
    let host = b.host();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let headers = [("x-api-key", "partner-key-1"), ("traceparent", traceparent)];
    let res = send(
        &gw,
        &host,
        req("GET", "/api/items/12", &headers, ""),
        "198.18.0.10",
    );
    assert_eq!(res.status().as_u16(), 200);
    let sent = host.sent.borrow();
    let exports: Vec<_> = sent
        .iter()
        .filter(|r| r.uri().host() == Some("127.0.0.1") && r.uri().port_u16() == Some(4318))
        .collect();
    let targets: Vec<String> = exports.iter().map(|r| r.uri().to_string()).collect();
    assert_eq!(
        targets,
        [
            "http://127.0.0.1:4318/v1/traces",
            "http://127.0.0.1:4318/v1/metrics"
        ]
    );
    for export in exports {
        assert_eq!(export.method(), "POST");
        assert_eq!(export.headers()["content-type"], "application/x-protobuf");
        assert!(!export.body().is_empty());
    }
}
