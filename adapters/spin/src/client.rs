//! Who the client is. Spin knows only the connection's address (`spin-client-addr`, `ip:port`)
//! and has no geo data. Behind a CDN, name trusted headers in the component's environment:
//!
//! - `PORTCULLIS_CLIENT_IP_HEADER` (e.g. `true-client-ip`): the client address,
//! - `PORTCULLIS_COUNTRY_HEADER` (e.g. `cf-ipcountry`): ISO 3166-1 alpha-2 country,
//! - `PORTCULLIS_ASN_HEADER`: the client's ASN.
//!
//! Only set them when every request passes through a proxy that overwrites those headers;
//! otherwise a client can claim any address. Pure, so it is tested natively.

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

/// The client: from the trusted header when configured and valid, else `spin-client-addr`,
/// else `0.0.0.0` (matches no allow-list entry but `0.0.0.0/0`).
pub fn identify(headers: &HeaderMap, trusted: &Trusted) -> Client {
    let header = |name: &Option<String>| {
        name.as_deref()
            .and_then(|n| headers.get(n))
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let from_trusted = header(&trusted.ip).and_then(|s| s.parse::<IpAddr>().ok());
    let from_spin = headers
        .get("spin-client-addr")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| {
            s.parse::<SocketAddr>()
                .map(|a| a.ip())
                .or_else(|_| s.parse::<IpAddr>())
                .ok()
        });
    let ip = from_trusted
        .or(from_spin)
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let mut client = Client::new(ip);
    client.country = header(&trusted.country)
        .map(str::to_ascii_uppercase)
        .filter(|c| c.len() == 2 && c != "XX" && c.bytes().all(|b| b.is_ascii_alphanumeric()));
    client.asn = header(&trusted.asn)
        .and_then(|a| a.trim_start_matches("AS").parse().ok())
        .filter(|a| *a != 0);
    client
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
        ] {
            let mut map = HeaderMap::new();
            for (n, v) in headers {
                map.insert(*n, v.parse().unwrap());
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
