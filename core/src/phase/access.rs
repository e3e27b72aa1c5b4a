//! Allow and deny lists: client IP CIDRs, countries and ASNs → 403; and which client address to
//! believe when the request came through trusted proxies.
//!
//! CIDRs are compiled once into sorted, merged ranges over one 128-bit space (IPv4 as
//! IPv4-mapped IPv6), kept as an IPv4 and an IPv6 list, so a lookup is a binary search whatever
//! the list's size. Reads no headers
//! other than `X-Forwarded-For`, and that one only behind configured proxies.

use crate::config::diag::{refuse, Errs};
use crate::config::raw;
use crate::problem::Reject;
use http::HeaderMap;
use ipnet::IpNet;
use std::borrow::Cow;
use std::net::IpAddr;

/// A set of addresses: sorted, non-overlapping, non-adjacent inclusive ranges, IPv4 (and
/// IPv4-mapped IPv6) as 32-bit ranges, the rest of the IPv6 space as 128-bit ones. Made when the
/// config is checked; an adapter's build script writes them as a `static` ([`IpSet::write`]), so
/// an instance starts without parsing, sorting or merging a deny list of any length, and an IPv4
/// range takes 8 bytes of the worker, not 32.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    v4: Cow<'static, [(u32, u32)]>,
    v6: Cow<'static, [(u128, u128)]>,
}

/// The IPv4-mapped block `::ffff:0:0/96`, where [`canonical`] puts IPv4 addresses.
const MAPPED: (u128, u128) = (0xffff_0000_0000, 0xffff_ffff_ffff);

/// A sorted list of inclusive ranges holds `x`.
fn holds<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|&(lo, _)| lo <= x);
    i > 0 && ranges[i - 1].1 >= x
}

/// Where a client address sits in the 128-bit space (IPv4 and IPv4-mapped IPv6 agree).
pub fn canonical(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => u128::from(v4.to_ipv6_mapped()),
            None => u128::from(v6),
        },
    }
}

/// Parses a CIDR or a single address.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not an IP address or CIDR"))
}

impl IpSet {
    /// Builds the set; overlapping and adjacent ranges are merged.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> IpSet {
        let mut ranges: Vec<(u128, u128)> = nets
            .into_iter()
            .map(|net| {
                let lo = canonical(net.network());
                let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
                let span = if host_bits >= 128 {
                    u128::MAX
                } else {
                    (1u128 << host_bits) - 1
                };
                (lo, lo.saturating_add(span))
            })
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        // each merged range split at the IPv4-mapped block's ends
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (lo, hi) in merged {
            if lo < MAPPED.0 {
                v6.push((lo, hi.min(MAPPED.0 - 1)));
            }
            if lo <= MAPPED.1 && hi >= MAPPED.0 {
                let clip = |x: u128| (x.clamp(MAPPED.0, MAPPED.1) - MAPPED.0) as u32;
                v4.push((clip(lo), clip(hi)));
            }
            if hi > MAPPED.1 {
                v6.push((lo.max(MAPPED.1 + 1), hi));
            }
        }
        IpSet {
            v4: Cow::Owned(v4),
            v6: Cow::Owned(v6),
        }
    }

    /// The set an [`IpSet::write`] wrote (sorted, merged: not checked again).
    pub const fn from_static(v4: &'static [(u32, u32)], v6: &'static [(u128, u128)]) -> IpSet {
        IpSet {
            v4: Cow::Borrowed(v4),
            v6: Cow::Borrowed(v6),
        }
    }

    /// Writes this set as a constant expression, for an adapter's `static`.
    pub fn write(&self, out: &mut String) {
        use std::fmt::Write;
        out.push_str("::portcullis_core::phase::access::IpSet::from_static(&[");
        for (lo, hi) in self.v4.iter() {
            let _ = write!(out, "({lo:#x},{hi:#x}),");
        }
        out.push_str("], &[");
        for (lo, hi) in self.v6.iter() {
            let _ = write!(out, "({lo:#x},{hi:#x}),");
        }
        out.push_str("])");
    }

    /// Whether `ip` is in the set.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let x = canonical(ip);
        if (MAPPED.0..=MAPPED.1).contains(&x) {
            holds(&self.v4, (x - MAPPED.0) as u32)
        } else {
            holds(&self.v6, x)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// How many merged ranges remain (one that spans the IPv4-mapped block counts in parts).
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// A compiled access list.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    pub name: String,
    pub allow_ips: Option<IpSet>,
    pub deny_ips: IpSet,
    pub allow_countries: Vec<String>,
    pub deny_countries: Vec<String>,
    pub allow_asns: Vec<u32>,
    pub deny_asns: Vec<u32>,
}

/// Who the client is, as far as the adapter can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The address the connection came from (as the platform reports it).
    pub ip: IpAddr,
    /// ISO 3166-1 alpha-2, uppercase, when the platform knows it.
    pub country: Option<String>,
    pub asn: Option<u32>,
    /// The platform's location that took the request, for the log (on Cloudflare its data
    /// center, an airport code such as `FRA`).
    pub edge_location: Option<String>,
}

impl Client {
    pub fn new(ip: IpAddr) -> Client {
        Client {
            ip,
            country: None,
            asn: None,
            edge_location: None,
        }
    }

    /// A country as a platform or a CDN's header reports it: ISO 3166-1 alpha-2, uppercased.
    /// `XX` (Cloudflare's "unknown") and anything that is not two letters or digits is none;
    /// `T1` (Tor) is kept, so lists can name it.
    pub fn country_from(reported: &str) -> Option<String> {
        let c = reported.trim().to_ascii_uppercase();
        (c.len() == 2 && c != "XX" && c.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(c)
    }

    /// An autonomous system number as reported: `3320` or `AS3320`; 0 (unknown) is none.
    pub fn asn_from(reported: &str) -> Option<u32> {
        let n = reported.trim();
        let n = n
            .strip_prefix("AS")
            .or_else(|| n.strip_prefix("as"))
            .unwrap_or(n);
        n.parse().ok().filter(|a| *a != 0)
    }

    /// The platform's location code, for the log: anything but 1–8 letters or digits is
    /// dropped rather than logged.
    pub fn edge_location_from(reported: &str) -> Option<String> {
        let c = reported.trim().to_ascii_uppercase();
        ((1..=8).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(c)
    }
}

/// The address as `Display` writes it; IPv4 (the common case) without the formatting machinery.
pub fn ip_text(ip: IpAddr) -> IpText {
    let mut text = IpText {
        buf: [0; IpText::MAX],
        len: 0,
    };
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push(b".");
                }
                text.push(itoa::Buffer::new().format(octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write;
            // cannot fail: the longest IPv6 text fits
            let _ = write!(text, "{v6}");
        }
    }
    text
}

/// An address as text, kept on the stack (no allocation per request).
#[derive(Clone, Copy)]
pub struct IpText {
    buf: [u8; IpText::MAX],
    len: usize,
}

impl IpText {
    /// The longest address text: `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`.
    const MAX: usize = 45;

    fn push(&mut self, bytes: &[u8]) {
        let end = (self.len + bytes.len()).min(Self::MAX);
        self.buf[self.len..end].copy_from_slice(&bytes[..end - self.len]);
        self.len = end;
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl std::fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

/// The client address to judge: the peer, or — when the peer is a trusted proxy — the rightmost
/// `X-Forwarded-For` hop that is not itself a trusted proxy.
pub fn effective_ip(peer: IpAddr, headers: &HeaderMap, trusted: &IpSet) -> IpAddr {
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut last = peer;
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if trusted.contains(ip) => last = ip,
            Ok(ip) => return ip,
            Err(_) => return last, // a garbled hop: believe nothing to its left
        }
    }
    last
}

/// Checks the client against the policy.
pub fn check(policy: &AccessPolicy, client: &Client) -> Result<(), Reject> {
    if policy.deny_ips.contains(client.ip) {
        return Err(Reject::Denied("client address is denied".into()));
    }
    if let Some(allow) = &policy.allow_ips {
        if !allow.contains(client.ip) {
            return Err(Reject::Denied("client address is not allowed".into()));
        }
    }
    let country = client.country.as_deref();
    if country.is_some_and(|c| policy.deny_countries.iter().any(|d| d == c)) {
        return Err(Reject::Denied("client country is denied".into()));
    }
    if !policy.allow_countries.is_empty()
        && !country.is_some_and(|c| policy.allow_countries.iter().any(|a| a == c))
    {
        return Err(Reject::Denied("client country is not allowed".into()));
    }
    if client.asn.is_some_and(|a| policy.deny_asns.contains(&a)) {
        return Err(Reject::Denied("client network is denied".into()));
    }
    if !policy.allow_asns.is_empty() && !client.asn.is_some_and(|a| policy.allow_asns.contains(&a))
    {
        return Err(Reject::Denied("client network is not allowed".into()));
    }
    Ok(())
}

/// Whether `s` is a country code in the form the lists use: ISO 3166-1 alpha-2 (two uppercase
/// letters), or `T1`, which Cloudflare reports for clients coming through Tor.
pub fn is_country_code(s: &str) -> bool {
    (s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())) || s == "T1"
}

impl AccessPolicy {
    /// Checks and builds access list `name`; `set` holds the (allow, deny) address sets an
    /// adapter's build script made (then the raw lists are empty).
    pub(crate) fn compile(
        e: &mut Errs<'_>,
        name: &str,
        a: &raw::AccessList,
        set: Option<&(Option<IpSet>, IpSet)>,
    ) -> AccessPolicy {
        let path = format!("access.{name}");
        let nets = |e: &mut Errs<'_>, field: &str, list: &[String]| {
            list.iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    parse_cidr(c)
                        .map_err(|m| refuse!(e, format!("{path}.{field}[{i}]"), m))
                        .ok()
                })
                .collect::<Vec<_>>()
        };
        let allow = nets(e, "allow_ips", &a.allow_ips);
        let deny = nets(e, "deny_ips", &a.deny_ips);
        for (field, list) in [
            ("allow_countries", &a.allow_countries),
            ("deny_countries", &a.deny_countries),
        ] {
            for (i, c) in list.iter().enumerate() {
                if !is_country_code(c) {
                    refuse!(
                        e,
                        format!("{path}.{field}[{i}]"),
                        format!(
                            "{c:?} is not an ISO 3166-1 alpha-2 code (two uppercase letters) or T1"
                        ),
                    );
                }
            }
        }
        let (allow_ips, deny_ips) = match set {
            Some((allow, deny)) => (allow.clone(), deny.clone()),
            None => (
                (!a.allow_ips.is_empty()).then(|| IpSet::new(allow)),
                IpSet::new(deny),
            ),
        };
        AccessPolicy {
            name: name.to_string(),
            allow_ips,
            deny_ips,
            allow_countries: a.allow_countries.clone(),
            deny_countries: a.deny_countries.clone(),
            allow_asns: a.allow_asns.clone(),
            deny_asns: a.deny_asns.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reported_geo_data_is_normalized_or_dropped() {
        use super::Client;
        for (raw, want) in [
            ("de", Some("DE")),
            (" T1 ", Some("T1")),
            ("XX", None),
            ("xx", None),
            ("DEU", None),
            ("D-", None),
            ("", None),
        ] {
            assert_eq!(Client::country_from(raw).as_deref(), want, "{raw:?}");
        }
        for (raw, want) in [
            ("3320", Some(3320)),
            ("AS3320", Some(3320)),
            ("as13335", Some(13335)),
            ("0", None),
            ("AS", None),
            ("-1", None),
            ("4294967296", None),
        ] {
            assert_eq!(Client::asn_from(raw), want, "{raw:?}");
        }
        for (raw, want) in [
            ("fra", Some("FRA")),
            ("", None),
            ("a b", None),
            ("ABCDEFGHI", None),
        ] {
            assert_eq!(Client::edge_location_from(raw).as_deref(), want, "{raw:?}");
        }
    }

    use super::*;

    #[test]
    fn country_codes_are_two_uppercase_letters_or_tor() {
        for (code, ok) in [
            ("DE", true),
            ("T1", true),
            ("de", false),
            ("T2", false),
            ("DEU", false),
            ("", false),
        ] {
            assert_eq!(is_country_code(code), ok, "{code:?}");
        }
    }

    #[test]
    fn ip_text_is_what_display_writes() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.200.30.255",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:198.51.100.7",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "1:2:3:4:5:6:7:8",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip).as_str(), ip.to_string());
        }
    }

    fn set(cidrs: &[&str]) -> IpSet {
        IpSet::new(cidrs.iter().map(|c| parse_cidr(c).unwrap()))
    }

    fn deny(cidrs: &[&str]) -> AccessPolicy {
        AccessPolicy {
            deny_ips: set(cidrs),
            ..Default::default()
        }
    }

    fn client(ip: &str) -> Client {
        Client::new(ip.parse().unwrap())
    }

    #[test]
    fn deny_list() {
        let p = deny(&["10.0.0.0/8", "2001:db8::/32"]);
        for (ip, want) in [
            ("10.1.2.3", Some(403)),
            ("::ffff:10.0.0.1", Some(403)),
            ("192.0.2.1", None),
            ("2001:db8::1", Some(403)),
            ("2001:db9::1", None),
            ("11.0.0.0", None),
            ("9.255.255.255", None),
        ] {
            assert_eq!(
                check(&p, &client(ip)).err().map(|r| r.status().as_u16()),
                want,
                "{ip}"
            );
        }
    }

    #[test]
    fn allow_list_admits_only_members() {
        let p = AccessPolicy {
            allow_ips: Some(set(&["192.0.2.0/24"])),
            ..Default::default()
        };
        for (ip, want) in [
            ("192.0.2.9", true),
            ("192.0.3.1", false),
            ("::ffff:192.0.2.1", true),
        ] {
            assert_eq!(check(&p, &client(ip)).is_ok(), want, "{ip}");
        }
    }

    #[test]
    fn ranges_merge() {
        let s = set(&[
            "10.0.0.0/24",
            "10.0.1.0/24",
            "10.0.0.128/25",
            "192.0.2.1",
            "0.0.0.0/0",
        ]);
        assert_eq!(s.len(), 1, "everything IPv4 collapses into 0.0.0.0/0");
        let s = set(&["10.0.0.0/24", "10.0.1.0/24", "10.0.3.0/24"]);
        assert_eq!(s.len(), 2);
        assert!(set(&["::/0"]).contains("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn a_set_is_written_as_its_merged_ranges() {
        let s = set(&["10.0.1.0/24", "10.0.0.0/24", "2001:db8::1"]);
        let mut out = String::new();
        s.write(&mut out);
        assert_eq!(
            out,
            "::portcullis_core::phase::access::IpSet::from_static(&[(0xa000000,0xa0001ff),], \
             &[(0x20010db8000000000000000000000001,0x20010db8000000000000000000000001),])"
        );
        const V6: &[(u128, u128)] = &[(
            0x20010db8000000000000000000000001,
            0x20010db8000000000000000000000001,
        )];
        assert_eq!(IpSet::from_static(&[(0xa000000, 0xa0001ff)], V6), s);
        // a range across the IPv4-mapped block is kept in three parts
        assert_eq!(set(&["::/0"]).len(), 3);
    }

    proptest::proptest! {
        /// Split into IPv4 and IPv6 ranges, a set answers as one list of 128-bit ranges does
        /// (IPv4 and IPv4-mapped addresses agreeing), for nets of any width around the
        /// IPv4-mapped block.
        #[test]
        fn a_set_answers_as_its_128_bit_ranges(
            nets in proptest::collection::vec((proptest::prelude::any::<u128>(), 0u8..=128, 0u8..3), 1..20),
            probes in proptest::collection::vec((proptest::prelude::any::<u128>(), 0u8..3), 1..50),
        ) {
            // addresses near the IPv4-mapped block, in it, or anywhere
            let place = |x: u128, how: u8| match how {
                0 => MAPPED.0 | (x & 0xffff_ffff),
                1 => MAPPED.0.wrapping_add(x % 0x3_0000_0000).wrapping_sub(0x1_0000_0000),
                _ => x,
            };
            let nets: Vec<IpNet> = nets
                .iter()
                .map(|&(x, len, how)| IpNet::new(IpAddr::V6(place(x, how).into()), len).unwrap().trunc())
                .collect();
            let s = IpSet::new(nets.clone());
            for &(x, how) in &probes {
                let ip = IpAddr::V6(place(x, how).into());
                let c = canonical(ip);
                let want = nets.iter().any(|n| {
                    let lo = canonical(n.network());
                    let span = u32::from(n.max_prefix_len() - n.prefix_len());
                    let hi = if span >= 128 { u128::MAX } else { lo.saturating_add((1u128 << span) - 1) };
                    (lo..=hi).contains(&c)
                });
                proptest::prop_assert_eq!(s.contains(ip), want, "{}", ip);
            }
        }
    }

    #[test]
    fn countries_and_asns() {
        let p = AccessPolicy {
            deny_countries: vec!["KP".into()],
            allow_asns: vec![13335],
            ..Default::default()
        };
        let c = |country: Option<&str>, asn: Option<u32>| Client {
            country: country.map(Into::into),
            asn,
            ..Client::new("192.0.2.1".parse().unwrap())
        };
        let rows = [
            (
                c(Some("KP"), Some(13335)),
                Err(Reject::Denied("client country is denied".into())),
            ),
            (c(Some("FR"), Some(13335)), Ok(())),
            (c(None, Some(13335)), Ok(())),
            (
                c(Some("FR"), Some(1)),
                Err(Reject::Denied("client network is not allowed".into())),
            ),
            (
                c(Some("FR"), None),
                Err(Reject::Denied("client network is not allowed".into())),
            ),
        ];
        for (client, want) in rows {
            assert_eq!(check(&p, &client), want, "{client:?}");
        }
    }

    #[test]
    fn forwarded_for_counts_only_behind_trusted_proxies() {
        let trusted = set(&["10.0.0.0/8"]);
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            "203.0.113.9, 198.51.100.7".parse().unwrap(),
        );
        h.append("x-forwarded-for", "10.0.0.2".parse().unwrap());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // the rightmost untrusted hop, not the leftmost (which the client can forge)
        assert_eq!(
            effective_ip(ip("10.0.0.1"), &h, &trusted),
            ip("198.51.100.7")
        );
        // from an untrusted peer the header is ignored
        assert_eq!(effective_ip(ip("192.0.2.1"), &h, &trusted), ip("192.0.2.1"));
        assert_eq!(
            effective_ip(ip("10.0.0.1"), &h, &IpSet::default()),
            ip("10.0.0.1")
        );
        let mut garbled = HeaderMap::new();
        garbled.append("x-forwarded-for", "1.2.3.4, nonsense".parse().unwrap());
        assert_eq!(
            effective_ip(ip("10.0.0.1"), &garbled, &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn bad_cidrs_are_named() {
        assert_eq!(
            parse_cidr("10.0.0.0/33"),
            Err("\"10.0.0.0/33\" is not an IP address or CIDR".into())
        );
        assert!(parse_cidr("::1").is_ok());
    }

    #[test]
    fn large_sets_answer_like_a_linear_scan() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let nets: Vec<IpNet> = (0..5_000)
            .map(|_| {
                let ip = std::net::Ipv4Addr::from(rng.gen::<u32>());
                IpNet::new(IpAddr::V4(ip), rng.gen_range(8..=32))
                    .unwrap()
                    .trunc()
            })
            .collect();
        let s = IpSet::new(nets.clone());
        for _ in 0..5_000 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(rng.gen::<u32>()));
            assert_eq!(s.contains(ip), nets.iter().any(|n| n.contains(&ip)), "{ip}");
        }
    }
}
