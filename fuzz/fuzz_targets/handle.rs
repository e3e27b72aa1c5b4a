//! The whole pipeline: `Gateway::handle` on the in-memory host with `fuzz/gateway.toml` (every
//! phase and feature), a request the fuzzer builds (method, path under one of the config's
//! routes, query, headers, body, client address, optionally a validly signed token with claims
//! it chooses) and upstream answers it also chooses (status, headers, body), sent twice with the
//! clock moved in between so that cached entries are served. Whatever arrives, the gateway
//! answers; it never panics, never answers a status outside 100–599, and never sends upstream a
//! `Content-Length` that differs from the body it sends.
//!
//! Names come mostly from lists of the headers the gateway reads, so the fuzzer spends its time
//! on values; the target is always a URI `http` accepts (the runtimes hand over nothing else).
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use jwt_compact::alg::{Hs256, Hs256Key};
use jwt_compact::{AlgorithmExt, Claims, Header};
use libfuzzer_sys::fuzz_target;
use portcullis_core::memory::{MemoryHost, MemoryStream};
use portcullis_core::{Body, Client, Config, Gateway};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const NOW_MS: u64 = 1_700_000_000_000;
const SECRET: &str = "fuzz-secret-0123456789abcdef-0123456789";
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE",
];
const PREFIXES: [&str; 8] = [
    "/api/items/",
    "/files/",
    "/orders",
    "/legacy/",
    "/admin/cache/purge",
    "/teapot",
    "/",
    "",
];
const REQUEST_HEADERS: [&str; 24] = [
    "host",
    "authorization",
    "x-api-key",
    "content-type",
    "content-length",
    "transfer-encoding",
    "origin",
    "access-control-request-method",
    "access-control-request-headers",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "forwarded",
    "x-real-ip",
    "cookie",
    "x-tenant",
    "accept-language",
    "cache-control",
    "pragma",
    "if-none-match",
    "if-modified-since",
    "x-old",
    "x-consumer",
    "spin-client-addr",
];
const RESPONSE_HEADERS: [&str; 16] = [
    "cache-control",
    "age",
    "expires",
    "date",
    "etag",
    "last-modified",
    "vary",
    "content-type",
    "content-length",
    "location",
    "content-location",
    "set-cookie",
    "x-internal",
    "server",
    "pragma",
    "transfer-encoding",
];

#[derive(Arbitrary, Debug)]
struct Field {
    /// An index into the list of known names; past its end, `custom` is the name.
    name: u8,
    custom: String,
    value: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Answer {
    status: u16,
    headers: Vec<Field>,
    body: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Token {
    sub: Option<String>,
    scope: String,
    tier: String,
    /// Seconds from now to `exp`.
    exp_s: i32,
    issuer_ok: bool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    prefix: u8,
    path: String,
    query: Option<String>,
    headers: Vec<Field>,
    token: Option<Token>,
    body: Vec<u8>,
    v6: bool,
    ip: [u8; 16],
    country: Option<[u8; 2]>,
    answers: Vec<Answer>,
    later_ms: u32,
}

thread_local! {
    static CONFIG: Config = Config::from_toml(include_str!("../gateway.toml"))
        .unwrap_or_else(|e| panic!("{}", e.render("fuzz/gateway.toml")));
}

fn headers(fields: &[Field], known: &[&str]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for f in fields.iter().take(32) {
        let name = known
            .get(usize::from(f.name))
            .map_or(f.custom.as_bytes(), |n| n.as_bytes());
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name),
            HeaderValue::from_bytes(&f.value),
        ) {
            map.append(n, v);
        }
    }
    map
}

fn answer(a: &Answer) -> Response<Bytes> {
    let mut res = Response::new(Bytes::from(a.body.clone()));
    *res.status_mut() = http::StatusCode::from_u16(a.status).unwrap_or(http::StatusCode::OK);
    *res.headers_mut() = headers(&a.headers, &RESPONSE_HEADERS);
    res
}

/// Bytes a URI path or query may not hold as they are, percent-encoded (`%` stays, so the
/// fuzzer's own escapes reach the normalizer).
fn uri_safe(text: &str, out: &mut String) {
    for b in text.bytes() {
        if b.is_ascii_graphic()
            && !matches!(
                b,
                b'#' | b'?' | b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            )
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn token(t: &Token) -> String {
    let mut claims = serde_json::json!({
        "iss": if t.issuer_ok { "https://issuer.example/" } else { "https://other.example/" },
        "aud": "api",
        "scope": t.scope,
        "tier": t.tier,
        "exp": (NOW_MS / 1000) as i64 + i64::from(t.exp_s),
    });
    if let Some(sub) = &t.sub {
        claims["sub"] = sub.clone().into();
    }
    let claims = Claims::new(claims.as_object().cloned().unwrap_or_default());
    Hs256
        .token(
            &Header::empty().with_key_id("hs"),
            &claims,
            &Hs256Key::new(SECRET),
        )
        .expect("HS256 signs any claims")
}

fn request(input: &Input) -> Option<Request<Bytes>> {
    let method = METHODS[usize::from(input.method) % METHODS.len()];
    let mut target = String::from(PREFIXES[usize::from(input.prefix) % PREFIXES.len()]);
    uri_safe(&input.path, &mut target);
    if !target.starts_with('/') {
        target.insert(0, '/');
    }
    if let Some(q) = &input.query {
        target.push('?');
        uri_safe(q, &mut target);
    }
    let mut req = Request::builder()
        .method(method)
        .uri(target.as_str())
        .body(Bytes::from(input.body.clone()))
        .ok()?;
    *req.headers_mut() = headers(&input.headers, &REQUEST_HEADERS);
    if let Some(t) = &input.token {
        let value = HeaderValue::from_str(&format!("Bearer {}", token(t))).ok()?;
        req.headers_mut().insert(http::header::AUTHORIZATION, value);
    }
    Some(req)
}

fn client(input: &Input) -> Client {
    let ip = if input.v6 {
        IpAddr::V6(Ipv6Addr::from(input.ip))
    } else {
        IpAddr::V4(Ipv4Addr::new(
            input.ip[0],
            input.ip[1],
            input.ip[2],
            input.ip[3],
        ))
    };
    Client {
        ip,
        country: input
            .country
            .map(|c| String::from_utf8_lossy(&c).to_ascii_uppercase()),
        asn: Some(u32::from(input.ip[4]) + 64_400),
        edge_location: None,
    }
}

fn check_sent(host: &MemoryHost) {
    for sent in host.sent.borrow().iter() {
        if let Some(cl) = sent.headers().get(http::header::CONTENT_LENGTH) {
            assert_eq!(
                cl.to_str().ok().and_then(|v| v.parse::<usize>().ok()),
                Some(sent.body().len()),
                "Content-Length sent upstream differs from the body: {sent:?}"
            );
        }
    }
}

fuzz_target!(|input: Input| {
    // a gateway per input, so no state (token cache, JWKS copies) carries from one to the next
    let gateway = Gateway::new(CONFIG.with(Config::clone));
    let answers: Vec<Response<Bytes>> = input.answers.iter().take(8).map(answer).collect();
    let next = std::cell::Cell::new(0usize);
    let host = MemoryHost::new(NOW_MS, move |_req| {
        let i = next.get();
        next.set(i + 1);
        Ok(answers
            .get(i % answers.len().max(1))
            .cloned()
            .unwrap_or_else(|| Response::new(Bytes::from_static(b"{}"))))
    });
    for round in 0..2 {
        let Some(req) = request(&input) else {
            return;
        };
        // a body comes as the platform's stream, in chunks whose size the fuzzer picks, when its
        // length is the declared one (a runtime hands over no other stream)
        let chunk = 1 + usize::from(input.later_ms as u8);
        let declared = req.headers().get(http::header::CONTENT_LENGTH);
        let framed =
            declared.is_none_or(|cl| cl.as_bytes() == req.body().len().to_string().as_bytes());
        let req = req.map(|b| match b.is_empty() || !framed {
            true => Body::Bytes(b),
            false => Body::Stream(MemoryStream::chunked(&b, chunk)),
        });
        let res = pollster::block_on(gateway.handle(req, client(&input), &host));
        let status = res.status().as_u16();
        assert!((100..=599).contains(&status), "status {status}");
        if round == 0 {
            host.advance(u64::from(input.later_ms % 120_000));
        }
    }
    check_sent(&host);
});
