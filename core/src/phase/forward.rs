//! What the upstream is told about the request: the headers the gateway removes because a client
//! could have forged them, and the ones it sets itself (`X-Forwarded-For`, `-Host`, `-Proto`,
//! the request id, trace context, `Content-Length`).
//!
//! Trust: a header that names the client (`Forwarded`, `X-Real-IP`, `True-Client-IP`,
//! `CF-Connecting-IP`, …) passes only when the connection came from a trusted proxy, and never on
//! a cached route, whose key does not hold it. `X-Forwarded-Host` and `X-Forwarded-Proto` are
//! always the gateway's own: the authority and scheme the route matched and the cache key holds.
//! Pure: edits a header map.

use super::transform;
use http::{header, HeaderMap, HeaderName, HeaderValue};

/// Headers that name the client or the original request, which only a proxy may set.
const CLIENT_IDENTITY: [HeaderName; 8] = [
    header::FORWARDED,
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
    HeaderName::from_static("fastly-client-ip"),
    // Spin's own; its adapter removes every `spin-*` header, and on Workers a client sends it
    HeaderName::from_static("spin-client-addr"),
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// What the gateway knows about the connection and the request.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The address the connection came from.
    pub peer: std::net::IpAddr,
    /// Whether `peer` is one of the configured trusted proxies.
    pub peer_trusted: bool,
    /// The client address the gateway judged (the peer, or the hop a trusted proxy named).
    pub client_ip: &'a str,
    /// The request's authority as the route matched it (`host[:port]`, lowercase).
    pub authority: Option<&'a str>,
    /// The scheme the request arrived with.
    pub scheme: Option<&'a str>,
    /// Whether the route caches responses (then nothing unkeyed about the client passes).
    pub cached: bool,
}

/// Removes what no client may tell the upstream (before the route's request transform runs):
/// hop-by-hop headers, `Host`, and the client-identity headers unless a trusted proxy sent them
/// on a route that does not cache.
pub fn remove_untrusted(headers: &mut HeaderMap, origin: &Origin<'_>) {
    transform::strip_hop_by_hop(headers);
    headers.remove(header::HOST);
    if !origin.peer_trusted || origin.cached {
        for name in &CLIENT_IDENTITY {
            if headers.contains_key(name) {
                headers.remove(name);
            }
        }
    }
}

/// Sets the headers the gateway owns (after the route's request transform): `X-Forwarded-For`
/// (a trusted proxy's chain with the peer appended, all of its lines joined, else the client
/// alone), `X-Forwarded-Host` and `X-Forwarded-Proto` from what the gateway matched,
/// `X-Forwarded-Port` removed, and `Content-Length` equal to the body sent (`body_len`; `None`
/// for a body streamed as the client sends it, whose own `Content-Length` stays).
pub fn set_owned(headers: &mut HeaderMap, origin: &Origin<'_>, body_len: Option<usize>) {
    let chain = if origin.peer_trusted {
        let lines: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        (!lines.is_empty()).then(|| format!("{}, {}", lines.join(", "), origin.peer))
    } else {
        None
    };
    let xff = match chain {
        Some(chain) => HeaderValue::from_str(&chain),
        None => HeaderValue::from_str(origin.client_ip),
    };
    headers.remove(&X_FORWARDED_FOR);
    if let Ok(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.remove(&X_FORWARDED_HOST);
    if let Some(v) = origin.authority.and_then(|a| HeaderValue::from_str(a).ok()) {
        headers.insert(X_FORWARDED_HOST, v);
    }
    headers.remove(&X_FORWARDED_PROTO);
    if let Some(scheme @ ("http" | "https")) = origin.scheme {
        headers.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(scheme_value(scheme)),
        );
    }
    headers.remove(&X_FORWARDED_PORT);
    let Some(body_len) = body_len else {
        return;
    };
    let had_length = headers.remove(header::CONTENT_LENGTH).is_some();
    if had_length || body_len > 0 {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    }
}

fn scheme_value(scheme: &str) -> &'static str {
    if scheme == "https" {
        "https"
    } else {
        "http"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(trusted: bool, cached: bool) -> Origin<'static> {
        Origin {
            peer: "192.0.2.10".parse().unwrap(),
            peer_trusted: trusted,
            client_ip: if trusted { "203.0.113.7" } else { "192.0.2.10" },
            authority: Some("api.example:8443"),
            scheme: Some("https"),
            cached,
        }
    }

    fn forged() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", "api.example:8443"),
            ("forwarded", "for=10.0.0.1;host=evil;proto=http"),
            ("x-real-ip", "10.0.0.1"),
            ("true-client-ip", "10.0.0.1"),
            ("cf-connecting-ip", "10.0.0.1"),
            ("x-client-ip", "10.0.0.1"),
            ("spin-client-addr", "10.0.0.1:1"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-port", "80"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-for", "203.0.113.7"),
            ("content-length", "4"),
            ("x-other", "kept"),
        ] {
            h.append(k, v.parse().unwrap());
        }
        h
    }

    fn forward(o: &Origin<'_>, body_len: Option<usize>) -> Vec<(String, String)> {
        let mut h = forged();
        remove_untrusted(&mut h, o);
        set_owned(&mut h, o, body_len);
        let mut out: Vec<(String, String)> = h
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        out.sort();
        out
    }

    fn pairs(rows: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = rows
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_direct_client_cannot_name_itself_or_the_request() {
        assert_eq!(
            forward(&origin(false, false), Some(0)),
            pairs(&[
                ("content-length", "0"),
                ("x-forwarded-for", "192.0.2.10"),
                ("x-forwarded-host", "api.example:8443"),
                ("x-forwarded-proto", "https"),
                ("x-other", "kept"),
            ])
        );
    }

    #[test]
    fn a_trusted_proxy_keeps_its_chain_and_identity_headers_unless_cached() {
        let kept = [
            ("cf-connecting-ip", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1;host=evil;proto=http"),
            ("spin-client-addr", "10.0.0.1:1"),
            ("true-client-ip", "10.0.0.1"),
            ("x-client-ip", "10.0.0.1"),
            ("x-real-ip", "10.0.0.1"),
        ];
        let owned = [
            ("content-length", "3"),
            // every X-Forwarded-For line, joined (RFC 9110 §5.3), then the peer
            ("x-forwarded-for", "10.0.0.1, 203.0.113.7, 192.0.2.10"),
            ("x-forwarded-host", "api.example:8443"),
            ("x-forwarded-proto", "https"),
            ("x-other", "kept"),
        ];
        let all: Vec<_> = kept.iter().chain(owned.iter()).copied().collect();
        assert_eq!(forward(&origin(true, false), Some(3)), pairs(&all));
        assert_eq!(forward(&origin(true, true), Some(3)), pairs(&owned));
    }

    #[test]
    fn without_a_known_authority_or_scheme_none_is_sent() {
        let o = Origin {
            authority: None,
            scheme: None,
            ..origin(false, false)
        };
        let mut h = forged();
        remove_untrusted(&mut h, &o);
        set_owned(&mut h, &o, Some(0));
        assert!(!h.contains_key("x-forwarded-host"));
        assert!(!h.contains_key("x-forwarded-proto"));
        // no Content-Length was sent and there is no body: none is added
        let mut bare = HeaderMap::new();
        set_owned(&mut bare, &o, Some(0));
        assert!(!bare.contains_key("content-length"));
        // a streamed body keeps the length the client declared
        let mut streamed = HeaderMap::new();
        streamed.insert("content-length", "12345".parse().unwrap());
        set_owned(&mut streamed, &o, None);
        assert_eq!(streamed["content-length"], "12345");
    }
}
