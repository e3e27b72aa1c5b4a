//! Who the client is, from what Cloudflare tells the worker. Pure, so it is tested natively.
//!
//! Cloudflare's edge sets `CF-Connecting-IP` to the address the connection came from and
//! overwrites any value a client sends; `request.cf` carries the country, the ASN and the
//! colo (the data center that took the request, an airport code such as `FRA`). Local runs
//! (`wrangler dev`, Miniflare) fill `request.cf` with placeholder values, so nothing here
//! assumes they are real.

use portcullis_core::Client;
use std::net::{IpAddr, Ipv4Addr};

/// The client as the edge reports it. A missing or malformed `CF-Connecting-IP` (only possible
/// off Cloudflare) gives `0.0.0.0`, which matches no allow list entry but `0.0.0.0/0`.
pub fn from_edge(
    connecting_ip: Option<&str>,
    country: Option<String>,
    asn: Option<u32>,
    colo: Option<String>,
) -> Client {
    let ip = connecting_ip
        .and_then(|s| s.trim().parse::<IpAddr>().ok())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let mut client = Client::new(ip);
    client.country = country.as_deref().and_then(Client::country_from);
    client.asn = asn.filter(|a| *a != 0);
    client.edge_location = colo.as_deref().and_then(Client::edge_location_from);
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_identity_from_the_edge() {
        for (ip, country, asn, colo, want) in [
            (
                Some("203.0.113.7"),
                Some("de"),
                Some(3320),
                Some("fra"),
                ("203.0.113.7", Some("DE"), Some(3320), Some("FRA")),
            ),
            (
                Some(" 2001:db8::1 "),
                Some("XX"),
                Some(0),
                Some(""),
                ("2001:db8::1", None, None, None),
            ),
            (None, None, None, None, ("0.0.0.0", None, None, None)),
            (
                Some("not-an-ip"),
                Some("T1"),
                None,
                Some("a\"b"),
                ("0.0.0.0", Some("T1"), None, None),
            ),
            (
                Some("192.0.2.1"),
                Some("USA"),
                None,
                Some("ABCDEFGHI"),
                ("192.0.2.1", None, None, None),
            ),
        ] {
            let c = from_edge(ip, country.map(String::from), asn, colo.map(String::from));
            assert_eq!(
                (
                    c.ip.to_string().as_str(),
                    c.country.as_deref(),
                    c.asn,
                    c.edge_location.as_deref()
                ),
                want,
                "{ip:?} {country:?} {asn:?} {colo:?}"
            );
        }
    }
}
