//! Who the client is. Spin knows only the connection's address (`spin-client-addr`, `ip:port`)
//! and has no geo data. Behind a CDN, name trusted headers in the component's environment:
//!
//! - `PORTCULLIS_CLIENT_IP_HEADER` (e.g. `true-client-ip`): the client address,
//! - `PORTCULLIS_COUNTRY_HEADER` (e.g. `cf-ipcountry`): ISO 3166-1 alpha-2 country,
//! - `PORTCULLIS_ASN_HEADER`: the client's ASN.
//!
//! Only set them when every request passes through a proxy that overwrites those headers;
//! otherwise a client can claim any address. Pure, so it is tested natively.
//!
//! Trust: Spin copies the client's headers into the request and then *appends* its own
//! `spin-client-addr`, so a client-sent `spin-client-addr` comes first. Only the last value is
//! Spin's; [`identify`] reads that one, and [`remove_runtime_headers`] takes every value out of
//! the request before the gateway sees it, so none reaches an upstream. A configured header
//! that is missing or unreadable falls back to Spin's own address, never to another header.

use http::HeaderMap;
use portcullis_core::Client;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Which headers to trust (names from the environment; `None` when unset).
#[derive(Debug, Clone, Default)]
pub struct Trusted {
    pub ip: Option<String>,
    pub country: Option<String>,
    pub asn: Option<String>,
}

impl Trusted {
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Trusted {
        let name = |v: &str| {
            var(v)
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
        };
        Trusted {
            ip: name("PORTCULLIS_CLIENT_IP_HEADER"),
            country: name("PORTCULLIS_COUNTRY_HEADER"),
            asn: name("PORTCULLIS_ASN_HEADER"),
        }
    }
}

/// The header Spin appends with the connection's address.
pub const SPIN_CLIENT_ADDR: &str = "spin-client-addr";

/// The last value of `name`: the one the nearest hop (Spin, or the proxy in front) added.
fn last<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(name)
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The client: from the trusted header when configured and valid (its last value), else the
/// last `spin-client-addr` (the one Spin appended), else `0.0.0.0` (matches no allow-list entry
/// but `0.0.0.0/0`).
pub fn identify(headers: &HeaderMap, trusted: &Trusted) -> Client {
    let header = |name: &Option<String>| name.as_deref().and_then(|n| last(headers, n));
    let from_trusted = header(&trusted.ip).and_then(|s| s.parse::<IpAddr>().ok());
    let from_spin = last(headers, SPIN_CLIENT_ADDR).and_then(|s| {
        s.parse::<SocketAddr>()
            .map(|a| a.ip())
            .or_else(|_| s.parse::<IpAddr>())
            .ok()
    });
    let ip = from_trusted
        .or(from_spin)
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let mut client = Client::new(ip);
    client.country = header(&trusted.country).and_then(Client::country_from);
    client.asn = header(&trusted.asn).and_then(Client::asn_from);
    client
}

/// Removes what Spin added to the request (`spin-*`, `spin-client-addr` among them) once the
/// client is identified: runtime metadata is not the client's to send upstream.
pub fn remove_runtime_headers(headers: &mut HeaderMap) {
    let names: Vec<http::HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("spin-"))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_identity_from_spin() {
        let trusted = Trusted::from_env(|v| match v {
            "PORTCULLIS_CLIENT_IP_HEADER" => Some("True-Client-IP".into()),
            "PORTCULLIS_COUNTRY_HEADER" => Some("cf-ipcountry".into()),
            "PORTCULLIS_ASN_HEADER" => Some("x-asn".into()),
            _ => None,
        });
        let none = Trusted::default();
        for (headers, trusted, want) in [
            (
                &[("spin-client-addr", "127.0.0.1:51234")][..],
                &none,
                ("127.0.0.1", None, None),
            ),
            (
                &[("spin-client-addr", "[2001:db8::1]:443")][..],
                &none,
                ("2001:db8::1", None, None),
            ),
            // without configuration, client-supplied headers count for nothing
            (
                &[
                    ("spin-client-addr", "10.0.0.1:1"),
                    ("true-client-ip", "203.0.113.9"),
                    ("cf-ipcountry", "DE"),
                ][..],
                &none,
                ("10.0.0.1", None, None),
            ),
            (
                &[
                    ("spin-client-addr", "10.0.0.1:1"),
                    ("true-client-ip", "203.0.113.9"),
                    ("cf-ipcountry", "de"),
                    ("x-asn", "AS3320"),
                ][..],
                &trusted,
                ("203.0.113.9", Some("DE"), Some(3320)),
            ),
            (
                &[
                    ("spin-client-addr", "10.0.0.1:1"),
                    ("true-client-ip", "nonsense"),
                    ("cf-ipcountry", "XX"),
                ][..],
                &trusted,
                ("10.0.0.1", None, None),
            ),
            (&[][..], &none, ("0.0.0.0", None, None)),
            // Spin appends its own value after the client's: only the last one counts
            (
                &[
                    ("spin-client-addr", "10.0.0.1:1"),
                    ("spin-client-addr", "198.51.100.4:40000"),
                ][..],
                &none,
                ("198.51.100.4", None, None),
            ),
            // the trusted header is missing: Spin's address, never the client's forgery
            (
                &[
                    ("spin-client-addr", "10.0.0.1:1"),
                    ("spin-client-addr", "198.51.100.4:40000"),
                ][..],
                &trusted,
                ("198.51.100.4", None, None),
            ),
            // a proxy in front appends too: its value is the last
            (
                &[
                    ("true-client-ip", "10.9.9.9"),
                    ("true-client-ip", "203.0.113.9"),
                    ("spin-client-addr", "198.51.100.4:40000"),
                ][..],
                &trusted,
                ("203.0.113.9", None, None),
            ),
        ] {
            let mut map = HeaderMap::new();
            for (n, v) in headers {
                map.append(*n, v.parse().unwrap());
            }
            let c = identify(&map, trusted);
            assert_eq!(
                (c.ip.to_string().as_str(), c.country.as_deref(), c.asn),
                want,
                "{headers:?}"
            );
        }
    }
}

#[cfg(test)]
mod runtime_headers {
    use super::*;

    #[test]
    fn spin_headers_do_not_reach_the_gateway() {
        let mut map = HeaderMap::new();
        for (n, v) in [
            ("spin-client-addr", "10.0.0.1:1"),
            ("spin-client-addr", "198.51.100.4:1"),
            ("spin-full-url", "http://x/"),
            ("x-kept", "1"),
        ] {
            map.append(n, v.parse().unwrap());
        }
        remove_runtime_headers(&mut map);
        assert_eq!(
            map.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["x-kept"]
        );
    }
}
