//! Properties of the whole pipeline: `handle` never panics whatever the request, and never lets
//! more requests through than the policy allows.

use bytes::Bytes;
use http::Request;
use portcullis_tests::*;
use proptest::prelude::*;

const CONFIG: &str = include_str!("../examples/gateway.toml");

fn arb_request() -> impl Strategy<Value = Request<Bytes>> {
    let method = prop::sample::select(vec![
        "GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH", "BREW",
    ]);
    let seg = prop::sample::select(vec![
        "v1", "hello", "me", "echo", "health", "..", ".", "", "%2e", "%2F", "%00", "%zz", "x%20y",
        "%7B", "%C3%BC", "partner",
    ]);
    let path = prop::collection::vec(seg, 0..6).prop_map(|s| format!("/{}", s.join("/")));
    let query = prop::option::of("[a-z=&%]{0,20}");
    let header_name = prop::sample::select(vec![
        "authorization",
        "x-api-key",
        "content-type",
        "origin",
        "access-control-request-method",
        "x-forwarded-for",
        "traceparent",
        "x-request-id",
        "content-length",
    ]);
    let header_value = "[ -~]{0,40}";
    let headers = prop::collection::vec((header_name, header_value), 0..5);
    let body = prop::collection::vec(any::<u8>(), 0..200);
    (method, path, query, headers, body).prop_filter_map(
        "a valid http request",
        |(m, p, q, h, b)| {
            let uri = match q {
                Some(q) => format!("{p}?{q}"),
                None => p,
            };
            let mut r = Request::builder().method(m).uri(uri);
            for (k, v) in h {
                r = r.header(k, v);
            }
            r.body(Bytes::from(b)).ok()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn handle_never_panics_and_always_answers_with_a_request_id(r in arb_request()) {
        let gw = gateway(CONFIG);
        let host = Backend::default().host();
        let res = send(&gw, &host, r, "192.0.2.1");
        prop_assert!(res.headers().contains_key("x-request-id"));
        prop_assert_eq!(host.logs.borrow().len(), 1);
        if res.status().is_client_error() && res.status().as_u16() != 403 {
            prop_assert_eq!(res.headers()["content-type"].to_str().unwrap(), "application/problem+json");
        }
    }

    #[test]
    fn the_pipeline_never_admits_more_than_the_quota(gaps in prop::collection::vec(0u64..20_000, 1..60)) {
        // hello: 5 per 60 s per address, burst 5, so one more every 12 s
        let gw = gateway(CONFIG);
        let host = Backend::default().host();
        let mut admitted: Vec<u64> = Vec::new();
        let mut t = 0;
        for g in gaps {
            host.advance(g);
            t += g;
            if send(&gw, &host, req("GET", "/v1/hello/p", &[], ""), "192.0.2.7").status().as_u16() == 200 {
                admitted.push(t);
            }
        }
        for (i, start) in admitted.iter().enumerate() {
            let within = admitted[i..].iter().filter(|x| **x - start < 60_000).count() as u64;
            prop_assert!(within <= 5 + 60_000 / 12_000, "{} admitted within 60 s from {}", within, start);
        }
    }
}
