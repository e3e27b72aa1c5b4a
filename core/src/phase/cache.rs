//! Response caching: the cache key, whether a request may use the cache at all, and storability
//! and freshness per RFC 9111 (by `http-cache-semantics`, evaluated as a shared cache).
//!
//! Never shares a response to a request with `Authorization` (or an authenticated consumer), nor
//! a response with `Set-Cookie`, `private` or `no-store`, unless the route keys the cache per
//! consumer. Purging bumps a generation number that is part of every key. Pure: the gateway
//! reads and writes the store.
//!
//! Storing and serving sit behind the `response-cache` cargo feature (on by default; the
//! Workers build turns it on when the config caches a route): without it a config with `cache`
//! on a route fails to load.

#[cfg(feature = "response-cache")]
use crate::host::UnixMillis;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, Method, Request};
#[cfg(feature = "response-cache")]
use http::{HeaderValue, Response, StatusCode};
#[cfg(feature = "response-cache")]
use http_cache_semantics::{BeforeRequest, CacheOptions, CachePolicy};
#[cfg(feature = "response-cache")]
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
#[cfg(feature = "response-cache")]
use std::time::{Duration, SystemTime};

/// A route's cache settings.
#[derive(Debug, Clone)]
pub struct CacheRule {
    /// Freshness when the backend gives none.
    pub ttl_s: u32,
    pub key_headers: Vec<HeaderName>,
    pub per_consumer: bool,
    /// Go to the backend when the store fails (else 503).
    pub fail_open: bool,
}

/// The store key holding the current cache generation.
pub const GENERATION_KEY: &str = "portcullis:cache-generation";

#[cfg(feature = "response-cache")]
fn at(now: UnixMillis) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(now)
}

/// The cache key for a request, or why it bypasses the cache.
pub fn key(
    rule: &CacheRule,
    generation: u64,
    route: &str,
    req: &Request<Bytes>,
    consumer: Option<&str>,
) -> Result<String, &'static str> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Err("method");
    }
    let authenticated = req.headers().contains_key(header::AUTHORIZATION) || consumer.is_some();
    if authenticated && !rule.per_consumer {
        return Err("authenticated");
    }
    if cache_control_has(req.headers(), "no-store") {
        return Err("no-store");
    }
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update([0]);
    h.update(req.uri().host().unwrap_or("").as_bytes());
    h.update([0]);
    h.update(req.uri().path().as_bytes());
    h.update([0]);
    let mut query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    query.sort();
    for (k, v) in &query {
        h.update(k.as_bytes());
        h.update([1]);
        h.update(v.as_bytes());
        h.update([2]);
    }
    for name in &rule.key_headers {
        h.update([0]);
        for v in req.headers().get_all(name) {
            h.update(v.as_bytes());
            h.update([3]);
        }
    }
    if rule.per_consumer {
        h.update([0]);
        h.update(consumer.unwrap_or("").as_bytes());
    }
    Ok(format!("cache:{generation}:{}", hex::encode(h.finalize())))
}

fn cache_control_has(headers: &HeaderMap, directive: &str) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| {
            d.trim()
                .split('=')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(directive))
        })
}

#[cfg(feature = "response-cache")]
/// A stored response: the policy (with the request it answered, for `Vary`) and the body.
#[derive(Serialize, Deserialize)]
struct Meta {
    policy: CachePolicy,
    status: u16,
    headers: Vec<(String, String)>,
}

#[cfg(feature = "response-cache")]
/// Whether and how to store a backend response: the bytes to store and their TTL.
pub fn store(
    rule: &CacheRule,
    req: &Request<Bytes>,
    res: &Response<Bytes>,
    now: UnixMillis,
) -> Option<(Vec<u8>, u32)> {
    // HEAD is served from GET entries, but its own (bodiless) answer must never fill one
    if req.method() != Method::GET {
        return None;
    }
    let h = res.headers();
    if !rule.per_consumer && (h.contains_key(header::SET_COOKIE) || cache_control_has(h, "private"))
    {
        return None;
    }
    if cache_control_has(h, "no-store")
        || h.get(header::VARY)
            .is_some_and(|v| v.as_bytes().trim_ascii() == b"*")
    {
        return None;
    }
    // the route's TTL applies where the backend says nothing about freshness
    let mut judged = Response::new(());
    *judged.status_mut() = res.status();
    *judged.headers_mut() = h.clone();
    let explicit = cache_control_has(h, "max-age")
        || cache_control_has(h, "s-maxage")
        || cache_control_has(h, "no-cache")
        || h.contains_key(header::EXPIRES);
    if !explicit && rule.ttl_s > 0 {
        let v = HeaderValue::from_str(&format!("s-maxage={}", rule.ttl_s)).ok()?;
        judged.headers_mut().append(header::CACHE_CONTROL, v);
    }
    let mut policy_req = Request::new(());
    *policy_req.method_mut() = Method::GET;
    *policy_req.uri_mut() = req.uri().clone();
    *policy_req.headers_mut() = req.headers().clone();
    policy_req.headers_mut().remove(header::AUTHORIZATION); // per-consumer keys already separate them
    let opts = CacheOptions {
        shared: !rule.per_consumer,
        ..Default::default()
    };
    let policy = CachePolicy::new_options(&policy_req, &judged, at(now), opts);
    if !policy.is_storable() {
        return None;
    }
    let ttl = policy.time_to_live(at(now)).as_secs();
    if ttl == 0 {
        return None;
    }
    let meta = Meta {
        policy,
        status: res.status().as_u16(),
        headers: h
            .iter()
            .filter(|(k, _)| *k != header::SET_COOKIE)
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
    };
    let mut out = serde_json::to_vec(&meta).ok()?;
    out.push(b'\n');
    out.extend_from_slice(res.body());
    Some((out, u32::try_from(ttl).unwrap_or(u32::MAX)))
}

#[cfg(feature = "response-cache")]
/// A cached answer for `req`, if the stored entry is fresh and matches (`Vary`): the stored
/// response with `Age`, or `304 Not Modified` when `If-None-Match` names its ETag.
pub fn serve(stored: &[u8], req: &Request<Bytes>, now: UnixMillis) -> Option<Response<Bytes>> {
    let split = stored.iter().position(|b| *b == b'\n')?;
    let meta: Meta = serde_json::from_slice(&stored[..split]).ok()?;
    let body = Bytes::copy_from_slice(&stored[split + 1..]);
    let mut probe = Request::new(());
    *probe.method_mut() = Method::GET;
    *probe.uri_mut() = req.uri().clone();
    *probe.headers_mut() = req.headers().clone();
    probe.headers_mut().remove(header::AUTHORIZATION);
    let BeforeRequest::Fresh(parts) = meta.policy.before_request(&probe, at(now)) else {
        return None;
    };
    let status = StatusCode::from_u16(meta.status).ok()?;
    let mut headers = HeaderMap::new();
    for (k, v) in &meta.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    let age = parts
        .headers
        .get(header::AGE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("0"));
    headers.insert(header::AGE, age);
    if let (Some(etag), Some(inm)) = (
        headers.get(header::ETAG),
        req.headers().get(header::IF_NONE_MATCH),
    ) {
        if etag_matches(inm.to_str().unwrap_or(""), etag.to_str().unwrap_or("")) {
            let mut not_modified = Response::new(Bytes::new());
            *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
            for name in [
                header::ETAG,
                header::CACHE_CONTROL,
                header::EXPIRES,
                header::VARY,
                header::AGE,
                header::DATE,
                header::LAST_MODIFIED,
            ] {
                if let Some(v) = headers.get(&name) {
                    not_modified.headers_mut().insert(name, v.clone());
                }
            }
            return Some(not_modified);
        }
    }
    let body = if req.method() == Method::HEAD {
        Bytes::new()
    } else {
        body
    };
    let mut res = Response::new(body);
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    Some(res)
}

/// Weak comparison of an `If-None-Match` list against an ETag (RFC 9110 §13.1.2).
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let etag = strip(etag);
    if_none_match
        .split(',')
        .any(|t| t.trim() == "*" || strip(t) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(per_consumer: bool) -> CacheRule {
        CacheRule {
            ttl_s: 30,
            key_headers: vec![HeaderName::from_static("accept-language")],
            per_consumer,
            fail_open: true,
        }
    }

    fn get(uri: &str, headers: &[(&str, &str)]) -> Request<Bytes> {
        let mut b = Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Bytes::new()).unwrap()
    }

    #[cfg(feature = "response-cache")]
    fn ok(headers: &[(&str, &str)]) -> Response<Bytes> {
        let mut b = Response::builder().status(200);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Bytes::from_static(b"hello")).unwrap()
    }

    #[test]
    fn keys() {
        let r = rule(false);
        let k = |req: &Request<Bytes>, c: Option<&str>| key(&r, 1, "route", req, c);
        let a = k(&get("http://h/x?b=2&a=1", &[]), None).unwrap();
        assert_eq!(
            k(&get("http://h/x?a=1&b=2", &[]), None).unwrap(),
            a,
            "query order does not matter"
        );
        assert_ne!(k(&get("http://h/x?a=1&b=3", &[]), None).unwrap(), a);
        assert_ne!(
            k(
                &get("http://h/x?a=1&b=2", &[("accept-language", "fr")]),
                None
            )
            .unwrap(),
            a
        );
        assert_ne!(
            key(&r, 2, "route", &get("http://h/x?a=1&b=2", &[]), None).unwrap(),
            a,
            "generation"
        );
        assert!(a.starts_with("cache:1:"));
        assert_eq!(
            k(&get("http://h/x", &[("authorization", "Bearer t")]), None),
            Err("authenticated")
        );
        assert_eq!(
            k(&get("http://h/x", &[]), Some("alice")),
            Err("authenticated")
        );
        assert_eq!(
            k(&get("http://h/x", &[("cache-control", "no-store")]), None),
            Err("no-store")
        );
        let post = Request::builder()
            .method("POST")
            .uri("http://h/x")
            .body(Bytes::new())
            .unwrap();
        assert_eq!(k(&post, None), Err("method"));
        let pc = rule(true);
        let alice = key(
            &pc,
            1,
            "r",
            &get("http://h/x", &[("authorization", "a")]),
            Some("alice"),
        )
        .unwrap();
        let bob = key(
            &pc,
            1,
            "r",
            &get("http://h/x", &[("authorization", "b")]),
            Some("bob"),
        )
        .unwrap();
        assert_ne!(alice, bob);
    }

    #[cfg(feature = "response-cache")]
    #[test]
    fn storability() {
        let r = rule(false);
        let req = get("http://h/x", &[]);
        type Row<'a> = (&'a [(&'a str, &'a str)], Option<u32>);
        let rows: [Row<'_>; 7] = [
            (&[], Some(30)),
            (&[("cache-control", "max-age=5")], Some(5)),
            (&[("cache-control", "s-maxage=9, max-age=5")], Some(9)),
            (&[("cache-control", "no-store")], None),
            (&[("cache-control", "private, max-age=60")], None),
            (&[("set-cookie", "a=b")], None),
            (&[("vary", "*")], None),
        ];
        for (headers, ttl) in rows {
            assert_eq!(
                store(&r, &req, &ok(headers), 1_000_000).map(|s| s.1),
                ttl,
                "{headers:?}"
            );
        }
        let head = Request::builder()
            .method("HEAD")
            .uri("http://h/x")
            .body(Bytes::new())
            .unwrap();
        assert_eq!(
            store(&r, &head, &ok(&[]), 1_000_000).map(|s| s.1),
            None,
            "a HEAD answer has no body to store"
        );
        let private_per_consumer = store(
            &rule(true),
            &req,
            &ok(&[("cache-control", "private, max-age=60")]),
            0,
        );
        assert_eq!(private_per_consumer.map(|s| s.1), Some(60));
    }

    #[cfg(feature = "response-cache")]
    #[test]
    fn serving_with_age_vary_and_304() {
        let r = rule(false);
        let req = get("http://h/x", &[("accept", "text/plain")]);
        let t0 = 1_700_000_000_000;
        let res = ok(&[
            ("cache-control", "max-age=60"),
            ("etag", "\"v1\""),
            ("vary", "accept"),
        ]);
        let (bytes, _) = store(&r, &req, &res, t0).unwrap();
        let hit = serve(&bytes, &req, t0 + 12_000).unwrap();
        assert_eq!(
            (hit.status(), hit.body().as_ref()),
            (StatusCode::OK, &b"hello"[..])
        );
        assert_eq!(hit.headers()["age"], "12");
        assert!(serve(&bytes, &req, t0 + 61_000).is_none(), "stale");
        assert!(
            serve(&bytes, &get("http://h/x", &[("accept", "text/html")]), t0).is_none(),
            "vary"
        );
        let cond = get(
            "http://h/x",
            &[
                ("accept", "text/plain"),
                ("if-none-match", "W/\"v0\", \"v1\""),
            ],
        );
        let nm = serve(&bytes, &cond, t0 + 1_000).unwrap();
        assert_eq!(
            (nm.status(), nm.body().len()),
            (StatusCode::NOT_MODIFIED, 0)
        );
        assert_eq!(nm.headers()["etag"], "\"v1\"");
        assert!(serve(b"garbage", &req, t0).is_none());
    }
}
