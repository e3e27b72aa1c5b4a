//! Checks a raw config for meaning and builds the compiled [`Config`]. Every problem is
//! collected, each with its key path, before anything is returned.

use super::emit::IpSets;
use super::raw::{self, RawConfig};
use super::{
    features, Action, AuthRule, BuildFeatures, Config, ConfigErrors, Diagnostic, Id, Respond,
    Route, RouteRefs, Routes, Secrets, Table, Upstream,
};
use crate::phase::{access, auth, cache, ratelimit, route, transform, validate};
use http::{HeaderName, Method};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::rc::Rc;

/// Whether this build reports what is wrong with a config. A build without the config parser
/// (`toml`: the Workers and Spin components) only loads the config its build script embedded,
/// and that script compiled the same config with every check (`Config::embed`), so the
/// component does not carry the checks' messages and pure checks again (about 6 KB of the
/// default worker, gzip). What only the runtime knows, a `secret_env` value, is checked and
/// reported in every build.
const CHECKS: bool = cfg!(feature = "toml");

/// `e.push(path, message)` in a build that checks ([`CHECKS`]); in one that does not, nothing,
/// and the check's message is compiled out.
macro_rules! refuse {
    ($e:expr, $path:expr, $message:expr $(,)?) => {
        if CHECKS {
            $e.push($path, $message)
        }
    };
}

/// Collects problems.
struct Errs<'l> {
    list: Vec<Diagnostic>,
    locate: &'l dyn Fn(&str) -> Option<(usize, usize)>,
}

impl Errs<'_> {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push_owned(path.into(), message.into());
    }

    /// The body of `push`, once: not copied for each pair of argument types it is called with.
    #[inline(never)]
    fn push_owned(&mut self, path: String, message: String) {
        let line_col = (self.locate)(&path);
        self.list.push(Diagnostic {
            path,
            line_col,
            message,
        });
    }
}

/// ` (did you mean "x"?)` when a candidate is close to `name`.
pub(super) fn did_you_mean<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    let best = candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min();
    best.map(|(_, c)| format!(" (did you mean {c:?}?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The names of one table (`[access]`, `[upstreams]`…), in order: what references resolve
/// against. Listed once per table, so that `lookup` is one function, not one per value type.
fn names<T>(table: &BTreeMap<String, T>) -> Vec<&str> {
    let mut out = Vec::with_capacity(table.len());
    for k in table.keys() {
        out.push(k.as_str());
    }
    out
}

/// A route's own reference, or the default when it names none.
fn reference<T>(
    e: &mut Errs<'_>,
    path: &str,
    what: &str,
    own: &Option<String>,
    default: Option<Id<T>>,
    names: &[&str],
) -> Option<Id<T>> {
    match own {
        Some(name) => lookup(e, path, what, Some(name), names),
        None => default,
    }
}

/// Resolves a reference to a named policy; `"none"` opts out.
fn lookup<T>(
    e: &mut Errs<'_>,
    path: &str,
    what: &str,
    name: Option<&str>,
    names: &[&str],
) -> Option<Id<T>> {
    let name = name?;
    if name == "none" {
        return None;
    }
    match names.iter().position(|k| *k == name) {
        Some(i) => Some(Id::new(u32::try_from(i).unwrap_or(u32::MAX))),
        None => {
            refuse!(e, path, {
                let hint = did_you_mean(name, names.iter().copied());
                format!("unknown {what} {name:?}{hint}")
            });
            None
        }
    }
}

fn header_name(e: &mut Errs<'_>, path: &str, name: &str) -> Option<HeaderName> {
    match HeaderName::from_bytes(name.as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            refuse!(e, path, format!("{name:?} is not a valid header name"));
            None
        }
    }
}

/// The SHA-256 of the empty string, what `printf %s "$UNSET" | sha256sum` gives.
const EMPTY_SHA256: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Why an address must not be an upstream without `allow_private`: every special-purpose range
/// of the IANA IPv4 and IPv6 registries that is not globally reachable, and the IPv6 forms that
/// embed an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo), judged by that address.
pub fn private_reason(ip: IpAddr) -> Option<&'static str> {
    use std::net::{Ipv4Addr, Ipv6Addr};
    let v4 = |v4: Ipv4Addr| -> Option<&'static str> {
        let o = v4.octets();
        let n = u32::from(v4);
        let within = |net: u32, bits: u32| n >> (32 - bits) == net >> (32 - bits);
        if v4 == Ipv4Addr::new(169, 254, 169, 254) || v4 == Ipv4Addr::new(100, 100, 100, 200) {
            Some("a cloud metadata address")
        } else if o[0] == 127 {
            Some("a loopback address")
        } else if v4.is_private() || within(0x6440_0000, 10) {
            Some("a private address")
        } else if v4.is_link_local() {
            Some("a link-local address")
        } else if o[0] == 0 || o[0] >= 224 {
            // "this network", multicast, reserved and broadcast
            Some("not a routable address")
        } else if within(0xc000_0000, 24) // 192.0.0.0/24, IETF protocol assignments
            || within(0xc612_0000, 15) // 198.18.0.0/15, benchmarking
            || within(0xc000_0200, 24) // documentation
            || within(0xc633_6400, 24)
            || within(0xcb00_7100, 24)
            || within(0xc058_6300, 24)
        // 6to4 relay anycast
        {
            Some("a special-purpose address")
        } else {
            None
        }
    };
    match ip {
        IpAddr::V4(a) => v4(a),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
            if let Some(a) = v6.to_ipv4_mapped() {
                return v4(a);
            }
            if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                return Some("a cloud metadata address");
            }
            if v6.is_loopback() || v6.is_unspecified() {
                return Some("a loopback address");
            }
            // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96, 64:ff9b:1::/48), 6to4 (2002::/16),
            // Teredo (2001::/32, the client address inverted)
            if s[..6] == [0; 6] || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]) {
                return v4(embedded(s[6], s[7])).or(Some("an address that embeds IPv4"));
            }
            if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
                return v4(embedded(s[6], s[7])).or(Some("an address that embeds IPv4"));
            }
            if s[0] == 0x2002 {
                return v4(embedded(s[1], s[2])).or(Some("an address that embeds IPv4"));
            }
            if s[0] == 0x2001 && s[1] == 0 {
                return v4(embedded(!s[6], !s[7])).or(Some("an address that embeds IPv4"));
            }
            if s[0] & 0xfe00 == 0xfc00 {
                Some("a private address")
            } else if s[0] & 0xffc0 == 0xfe80 || s[0] & 0xffc0 == 0xfec0 {
                Some("a link-local address")
            } else if s[0] & 0xff00 == 0xff00 {
                Some("not a routable address")
            } else if (s[0] == 0x2001 && s[1] == 0xdb8) || s[0] == 0x100 && s[1..4] == [0; 3] {
                Some("a special-purpose address")
            } else {
                None
            }
        }
    }
}

/// Checks an outbound URL: http(s), a host, and no private address unless allowed. Hosts are
/// read as the runtimes' `fetch` reads them (WHATWG URL rules, in a build with the config
/// parser), so no spelling of a private address passes.
fn outbound_url(
    e: &mut Errs<'_>,
    path: &str,
    url: &str,
    allow_private: bool,
) -> Option<crate::phase::transform::Target> {
    let target = match crate::phase::transform::Target::parse(url) {
        Ok(target) => target,
        Err(why) => {
            refuse!(e, path, format!("{url:?} {why}"));
            return None;
        }
    };
    if !CHECKS {
        return Some(target);
    }
    let host = target.host();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    #[cfg(feature = "toml")]
    let address = match super::lint::fetch_address(url) {
        Ok(address) => address,
        Err(why) => {
            refuse!(e, path, format!("{url:?} {why}"));
            return None;
        }
    };
    #[cfg(not(feature = "toml"))]
    let address = bare.parse::<IpAddr>().ok();
    let reason = match address {
        Some(ip) => private_reason(ip),
        None => super::lint::special_name(bare),
    };
    if let (Some(reason), false) = (reason, allow_private) {
        refuse!(
            e,
            path,
            format!("{host} is {reason}; set allow_private = true to allow it"),
        );
        return None;
    }
    Some(target)
}

fn methods(e: &mut Errs<'_>, path: &str, list: &[String]) -> Vec<Method> {
    let mut out = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let upper = m.to_ascii_uppercase();
        match Method::from_bytes(upper.as_bytes()) {
            Ok(method) if m.bytes().all(|b| b.is_ascii_alphabetic()) => out.push(method),
            _ => refuse!(
                e,
                format!("{path}[{i}]"),
                format!("{m:?} is not an HTTP method"),
            ),
        }
    }
    out
}

fn compile_transform(e: &mut Errs<'_>, path: &str, t: &raw::Transform) -> transform::Transform {
    let mut out = transform::Transform::default();
    let pairs = |e: &mut Errs<'_>, field: &str, map: &BTreeMap<String, String>| {
        let mut v = Vec::new();
        for (name, value) in map {
            let p = format!("{path}.{field}.{name}");
            let h = header_name(e, &p, name);
            match transform::ValueTemplate::parse(value) {
                Ok(t) => {
                    if let Some(h) = h {
                        v.push((h, t))
                    }
                }
                Err(m) => refuse!(e, p, m),
            }
        }
        v
    };
    out.set_headers = pairs(e, "set_headers", &t.set_headers);
    out.add_headers = pairs(e, "add_headers", &t.add_headers);
    for (i, name) in t.remove_headers.iter().enumerate() {
        if let Some(h) = header_name(e, &format!("{path}.remove_headers[{i}]"), name) {
            out.remove_headers.push(h);
        }
    }
    for (from, to) in &t.rename_headers {
        let p = format!("{path}.rename_headers.{from}");
        if let (Some(a), Some(b)) = (header_name(e, &p, from), header_name(e, &p, to)) {
            out.rename_headers.push((a, b));
        }
    }
    out.set_query = t
        .set_query
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.remove_query = t.remove_query.clone();
    if let Some(json) = &t.json {
        let ptr = |e: &mut Errs<'_>, p: String, s: &str| match transform::pointer_tokens(s) {
            Ok(_) => true,
            Err(m) => {
                refuse!(e, p, m);
                false
            }
        };
        for (p, v) in &json.set {
            if ptr(e, format!("{path}.json.set"), p) {
                out.json_set.push((p.clone(), v.clone()));
            }
        }
        for (i, p) in json.remove.iter().enumerate() {
            if ptr(e, format!("{path}.json.remove[{i}]"), p) {
                out.json_remove.push(p.clone());
            }
        }
        for (from, to) in &json.rename {
            let p = format!("{path}.json.rename");
            if ptr(e, p.clone(), from) && ptr(e, p, to) {
                out.json_rename.push((from.clone(), to.clone()));
            }
        }
    }
    out
}

fn compile_param(
    e: &mut Errs<'_>,
    path: &str,
    spec: &raw::ParamSpec,
    in_path: bool,
) -> Option<validate::Param> {
    let rule = match spec {
        raw::ParamSpec::Type(kind) => raw::ParamRule {
            kind: *kind,
            required: false,
            min: None,
            max: None,
            one_of: vec![],
            pattern: None,
        },
        raw::ParamSpec::Rule(r) => r.clone(),
    };
    for (name, bound) in [("min", rule.min), ("max", rule.max)] {
        if bound.is_some_and(|b| !b.is_finite()) {
            refuse!(e, format!("{path}.{name}"), "must be a finite number");
            return None;
        }
    }
    if let (Some(min), Some(max)) = (rule.min, rule.max) {
        if min > max {
            refuse!(e, path, format!("min {min} is greater than max {max}"));
        }
    }
    let pattern = match &rule.pattern {
        Some(p) => match regex_lite::Regex::new(p) {
            Ok(r) => Some(r),
            Err(err) => {
                refuse!(
                    e,
                    format!("{path}.pattern"),
                    format!("invalid regular expression: {err}"),
                );
                return None;
            }
        },
        None => None,
    };
    Some(validate::Param {
        kind: rule.kind,
        required: rule.required || in_path,
        min: rule.min,
        max: rule.max,
        one_of: rule.one_of,
        pattern,
    })
}

/// The secret a `secret_env` key names: `Ok(None)` when secrets are not read (`Deferred`).
fn env_secret(var: &str, alg: raw::Alg, secrets: Secrets<'_>) -> Result<Option<Vec<u8>>, String> {
    let valid = !var.is_empty()
        && !var.starts_with(|c: char| c.is_ascii_digit())
        && var.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(format!(
            "{var:?} is not a variable name (letters, digits and `_`, not starting with a digit)"
        ));
    }
    if !alg.is_hmac() {
        return Err(format!(
            "holds an HMAC secret, and {} needs a `jwk`",
            alg.name()
        ));
    }
    match secrets {
        Secrets::Deferred => Ok(None),
        Secrets::From(read) => match read(var) {
            Some(v) if !v.is_empty() => Ok(Some(v.into_bytes())),
            _ => Err(format!(
                "the environment has no {var} (on Workers: `npx wrangler secret put {var}`; on \
                 Spin: `spin up -e {var}=...`)"
            )),
        },
    }
}

/// Checks `raw` and builds the config; `locate` maps a key path to a line and column, and
/// `secrets` says where `secret_env` keys get their values. The errors come in the order they
/// were found; [`ConfigErrors::in_file_order`] sorts them by position.
pub fn compile(
    raw: RawConfig,
    locate: &dyn Fn(&str) -> Option<(usize, usize)>,
    secrets: Secrets<'_>,
) -> Result<Config, ConfigErrors> {
    let mut e = Errs {
        list: Vec::new(),
        locate,
    };
    let mut config = policies(&mut e, &raw, secrets, None);

    // routes
    let (defaults, route_names) = Names::of(&mut e, &raw);
    let refs: Vec<RouteRefs> = raw
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            resolve_route(
                &mut e,
                &format!("routes[{i}]"),
                r,
                &raw,
                &route_names,
                &defaults,
                &config,
            )
        })
        .collect();
    let mut routes = Vec::new();
    let mut names = HashSet::new();
    for (i, (r, refs)) in raw.routes.iter().zip(&refs).enumerate() {
        let path = format!("routes[{i}]");
        if r.name.is_empty() {
            refuse!(e, format!("{path}.name"), "must not be empty");
        } else if !names.insert(r.name.clone()) {
            refuse!(
                e,
                format!("{path}.name"),
                format!("{:?} is used by another route", r.name),
            );
        }
        routes.push(build_route(&mut e, &path, r, refs, &config));
    }
    let (router, conflicts) = route::Router::build(route_keys(&raw.routes));
    for (i, m) in conflicts {
        refuse!(e, format!("routes[{i}].path"), m);
    }

    if !e.list.is_empty() {
        // in the order found: callers whose `locate` knows positions sort them
        // (`ConfigErrors::in_file_order`); the embedded config's have none, and its build
        // then links no sort for them
        return Err(ConfigErrors {
            diagnostics: e.list,
        });
    }
    config.caches_responses = routes.iter().any(|r| r.cache.is_some());
    config.routes = Routes::Built(routes);
    config.route_refs = refs;
    config.router = router;
    Ok(config)
}

/// Checks and builds everything but the routes: the gateway settings and every named policy.
/// `sets` are the address sets an adapter's build script made (then the raw config's lists of
/// addresses are empty).
fn policies(
    e: &mut Errs<'_>,
    raw: &RawConfig,
    secrets: Secrets<'_>,
    sets: Option<&IpSets>,
) -> Config {
    let g = &raw.gateway;

    // gateway
    let trusted: Vec<ipnet::IpNet> = g
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            access::parse_cidr(c)
                .map_err(|m| refuse!(e, format!("gateway.trusted_proxies[{i}]"), m))
                .ok()
        })
        .collect();
    let request_id_header = header_name(e, "gateway.request_id_header", &g.request_id_header);
    for (field, v) in [
        ("max_uri_bytes", g.limits.max_uri_bytes),
        ("max_header_bytes", g.limits.max_header_bytes),
        ("max_header_line_bytes", g.limits.max_header_line_bytes),
        ("max_body_bytes", g.limits.max_body_bytes),
    ] {
        if v == 0 {
            refuse!(
                e,
                format!("gateway.limits.{field}"),
                "must be greater than 0"
            );
        }
    }

    // upstreams
    let mut upstreams = Table::default();
    for (name, u) in &raw.upstreams {
        let path = format!("upstreams.{name}");
        if u.targets.is_empty() {
            refuse!(e, format!("{path}.targets"), "needs at least one target");
        }
        let mut targets = Vec::new();
        for (i, t) in u.targets.iter().enumerate() {
            if let Some(url) = outbound_url(
                e,
                &format!("{path}.targets[{i}].url"),
                &t.url,
                u.allow_private,
            ) {
                targets.push(url);
            }
        }
        if !u.targets.is_empty() && u.targets.iter().all(|t| t.weight == 0) {
            refuse!(
                e,
                format!("{path}.targets"),
                "at least one target needs a weight above 0",
            );
        }
        if u.timeout_ms == 0 {
            refuse!(e, format!("{path}.timeout_ms"), "must be greater than 0");
        }
        if u.idle_timeout_ms == 0 {
            refuse!(
                e,
                format!("{path}.idle_timeout_ms"),
                "must be greater than 0"
            );
        }
        if u.retries > 10 {
            refuse!(e, format!("{path}.retries"), "must be at most 10");
        }
        if !(1..=raw::MAX_RESPONSE_BYTES_LIMIT).contains(&u.max_response_bytes) {
            refuse!(
                e,
                format!("{path}.max_response_bytes"),
                format!(
                    "must be between 1 and {} (100 MiB: the gateway holds a response it reads whole)",
                    raw::MAX_RESPONSE_BYTES_LIMIT
                ),
            );
        }
        let _ = upstreams.push(Upstream {
            name: name.clone(),
            targets,
            weights: u.targets.iter().map(|t| t.weight).collect(),
            timeout_ms: u.timeout_ms,
            idle_timeout_ms: u.idle_timeout_ms,
            retries: u.retries,
            max_response_bytes: usize::try_from(u.max_response_bytes).unwrap_or(usize::MAX),
        });
    }

    // access lists
    let mut access_lists = Table::default();
    for (name, a) in &raw.access {
        let path = format!("access.{name}");
        let nets = |e: &mut Errs<'_>, field: &str, list: &[String]| {
            list.iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    access::parse_cidr(c)
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
                if !access::is_country_code(c) {
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
        let (allow_ips, deny_ips) = match sets.and_then(|s| s.access.get(access_lists.len())) {
            Some((allow, deny)) => (allow.clone(), deny.clone()),
            None => (
                (!a.allow_ips.is_empty()).then(|| access::IpSet::new(allow)),
                access::IpSet::new(deny),
            ),
        };
        let _ = access_lists.push(access::AccessPolicy {
            name: name.clone(),
            allow_ips,
            deny_ips,
            allow_countries: a.allow_countries.clone(),
            deny_countries: a.deny_countries.clone(),
            allow_asns: a.allow_asns.clone(),
            deny_asns: a.deny_asns.clone(),
        });
    }

    // the optional parts this build lacks (an adapter's build checked its own with `embed`,
    // so an adapter, which has no CHECKS, does not list them again when it starts)
    if CHECKS {
        for need in features::needs(raw) {
            if !BuildFeatures::COMPILED.has(need.feature) {
                e.push(need.path, need.missing);
            }
        }
    }

    // JWT providers
    let mut jwt = Table::default();
    for (name, p) in &raw.auth.jwt {
        let path = format!("auth.jwt.{name}");
        if p.keys.is_empty() && p.jwks_url.is_none() {
            refuse!(e, &path, "needs `keys` or `jwks_url`");
        }
        let jwks_url = p
            .jwks_url
            .as_ref()
            .and_then(|u| outbound_url(e, &format!("{path}.jwks_url"), u, p.allow_private))
            .map(|t| t.url);
        let mut keys = Vec::new();
        for (i, k) in p.keys.iter().enumerate() {
            if CHECKS && !BuildFeatures::COMPILED.verifies(k.alg) {
                continue; // refused above, with the feature it needs
            }
            let kp = format!("{path}.keys[{i}]");
            let secret = match (&k.secret, &k.secret_base64, &k.secret_env) {
                (Some(s), None, None) => Some(Ok(s.as_bytes().to_vec())),
                (None, Some(b), None) => {
                    Some(decode_base64(b).ok_or_else(|| "secret_base64 is not base64".to_string()))
                }
                (None, None, Some(var)) => {
                    match env_secret(var, k.alg, secrets) {
                        Err(m) => {
                            e.push(format!("{kp}.secret_env"), m);
                            continue;
                        }
                        Ok(_) if k.jwk.is_some() => {
                            Some(Err("give a secret or a `jwk`, not both".to_string()))
                        }
                        // checked as far as it can be without the value; the key is left out
                        Ok(None) => continue,
                        Ok(Some(bytes)) => Some(Ok(bytes)),
                    }
                }
                (None, None, None) => None,
                _ => Some(Err(
                    "give one of `secret`, `secret_base64` and `secret_env`, not several"
                        .to_string(),
                )),
            };
            let key = match (secret, &k.jwk) {
                (Some(_), Some(_)) => Err("give a secret or a `jwk`, not both".to_string()),
                (Some(Ok(bytes)), None) => auth::Key::hmac(k.kid.clone(), k.alg, &bytes),
                (Some(Err(m)), None) => Err(m),
                (None, Some(jwk)) => auth::Key::from_jwk(k.kid.clone(), k.alg, jwk),
                (None, None) => Err(format!(
                    "{} needs {}",
                    k.alg.name(),
                    if k.alg.is_hmac() {
                        "`secret`, `secret_base64` or `secret_env`"
                    } else {
                        "a `jwk`"
                    }
                )),
            };
            match key {
                Ok(key) => keys.push(key),
                Err(m) => e.push(kp, m),
            }
        }
        if p.jwks_min_ttl_s > p.jwks_max_ttl_s {
            refuse!(
                e,
                format!("{path}.jwks_min_ttl_s"),
                "must not be greater than jwks_max_ttl_s",
            );
        }
        let header = header_name(e, &format!("{path}.header"), &p.header);
        let _ = jwt.push(auth::JwtProvider {
            name: name.clone(),
            label: format!("jwt:{name}"),
            issuer: p.issuer.clone(),
            audiences: p.audiences.clone(),
            jwks_url,
            keys,
            leeway_s: u64::from(p.leeway_s),
            require_exp: p.require_exp,
            header: header.unwrap_or(http::header::AUTHORIZATION),
            jwks_min_ttl_s: p.jwks_min_ttl_s,
            jwks_max_ttl_s: p.jwks_max_ttl_s,
            jwks_cooldown_s: p.jwks_cooldown_s,
            fail_open: p.fail == raw::FailMode::Open,
            consumer_claim: p.consumer_claim.clone(),
            max_token_bytes: p.max_token_bytes,
        });
    }

    // API keys
    let mut api_keys = Table::default();
    for (name, s) in &raw.auth.api_keys {
        let path = format!("auth.api_keys.{name}");
        let header = match (&s.header, &s.query) {
            (Some(h), _) => header_name(e, &format!("{path}.header"), h),
            (None, None) => Some(HeaderName::from_static("x-api-key")),
            (None, Some(_)) => None,
        };
        let mut by_hash = HashMap::new();
        for (i, k) in s.keys.iter().enumerate() {
            let kp = format!("{path}.keys[{i}].sha256");
            match hex::decode(&k.sha256)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
            {
                Some(digest) if digest == EMPTY_SHA256 => refuse!(e,
                    kp,
                    "is the SHA-256 of the empty string (an unset variable?): an empty key is no credential",
                ),
                Some(digest) => {
                    if by_hash
                        .insert(digest, (k.consumer.clone(), k.scopes.clone()))
                        .is_some()
                    {
                        refuse!(e, kp, "the same key is listed twice");
                    }
                }
                None => refuse!(e, kp, "must be 64 hex digits (the SHA-256 of the key)"),
            }
        }
        let _ = api_keys.push(auth::ApiKeySet {
            name: name.clone(),
            label: format!("api_key:{name}"),
            header,
            query: s.query.clone(),
            by_hash,
        });
    }

    // rate limits
    let mut quotas = Table::default();
    for (name, q) in &raw.rate_limits {
        let path = format!("rate_limits.{name}");
        let key = ratelimit::LimitKey::parse(&q.key)
            .map_err(|m| refuse!(e, format!("{path}.key"), m))
            .ok();
        if q.limit == 0 || q.limit > 1_000_000_000 {
            refuse!(
                e,
                format!("{path}.limit"),
                "must be between 1 and 1000000000"
            );
        }
        if q.period_s == 0 || q.period_s > 31_536_000 {
            refuse!(
                e,
                format!("{path}.period_s"),
                "must be between 1 and 31536000 (a year)",
            );
        }
        if q.burst == Some(0) {
            refuse!(e, format!("{path}.burst"), "must be greater than 0");
        }
        let shards = q.shards.unwrap_or(1);
        let burst = q.burst.unwrap_or(q.limit);
        if !(1..=ratelimit::MAX_SHARDS).contains(&shards) {
            refuse!(
                e,
                format!("{path}.shards"),
                format!("must be between 1 and {}", ratelimit::MAX_SHARDS),
            );
        } else if u64::from(shards) > q.limit.min(burst) && q.limit > 0 && burst > 0 {
            refuse!(
                e,
                format!("{path}.shards"),
                format!(
                    "{shards} shards cannot each hold a part of limit {} and burst {burst}: \
                     use at most {}",
                    q.limit,
                    q.limit.min(burst)
                ),
            );
        }
        for (field, v, max) in [
            ("ipv4_prefix", q.ipv4_prefix, 32),
            ("ipv6_prefix", q.ipv6_prefix, 128),
        ] {
            if v.is_some_and(|v| v == 0 || v > max) {
                refuse!(
                    e,
                    format!("{path}.{field}"),
                    format!("must be between 1 and {max}"),
                );
            }
        }
        let defaults = ratelimit::IpPrefix::default();
        let _ = quotas.push(ratelimit::Quota {
            ip_prefix: ratelimit::IpPrefix {
                v4: q.ipv4_prefix.unwrap_or(defaults.v4),
                v6: q.ipv6_prefix.unwrap_or(defaults.v6),
            },
            name: name.clone(),
            limit: q.limit,
            period_ms: q.period_s.saturating_mul(1000),
            burst,
            shards,
            key: key.unwrap_or(ratelimit::LimitKey::Ip),
            fail_open: q.fail == raw::FailMode::Open,
        });
    }

    // transforms and CORS
    // inserted in the raw map's (sorted) order: `collect` would sort them again, and link a
    // sort routine for this type into the wasm
    let mut transforms: BTreeMap<String, Rc<transform::Transform>> = BTreeMap::new();
    for (name, t) in &raw.transforms {
        let compiled = compile_transform(e, &format!("transforms.{name}"), t);
        transforms.insert(name.clone(), Rc::new(compiled));
    }
    let mut cors = Table::default();
    for (name, c) in &raw.cors {
        let path = format!("cors.{name}");
        let any = c.allow_origins.iter().any(|o| o == "*");
        if any && c.allow_credentials {
            refuse!(
                e,
                format!("{path}.allow_credentials"),
                "cannot be true when allow_origins has \"*\"",
            );
        }
        if c.allow_origins.is_empty() {
            refuse!(
                e,
                format!("{path}.allow_origins"),
                "needs at least one origin (or \"*\")",
            );
        }
        for (i, o) in c.allow_origins.iter().enumerate() {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://"))
                || o.ends_with('/')
            {
                refuse!(
                    e,
                    format!("{path}.allow_origins[{i}]"),
                    format!("{o:?} is not an origin like https://app.example.com"),
                );
            }
        }
        let m = methods(e, &format!("{path}.allow_methods"), &c.allow_methods);
        for (field, list) in [
            ("allow_headers", &c.allow_headers),
            ("expose_headers", &c.expose_headers),
        ] {
            for (i, h) in list.iter().enumerate() {
                if h != "*" {
                    header_name(e, &format!("{path}.{field}[{i}]"), h);
                }
            }
        }
        let _ = cors.push(transform::Cors {
            any_origin: any,
            origins: c
                .allow_origins
                .iter()
                .filter(|o| *o != "*")
                .cloned()
                .collect(),
            methods: m,
            allow_headers: c.allow_headers.clone(),
            expose_headers: c.expose_headers.clone(),
            max_age_s: c.max_age_s,
            credentials: c.allow_credentials,
        });
    }

    // what adapters ask of the config on every request, worked out once here
    let client_geo = g.log_client_geo
        || access_lists.iter().any(|p| {
            !(p.allow_countries.is_empty()
                && p.deny_countries.is_empty()
                && p.allow_asns.is_empty()
                && p.deny_asns.is_empty())
        });
    Config {
        caches_responses: false,
        routes: Routes::default(),
        route_refs: Vec::new(),
        router: route::Router::default(),
        upstreams,
        access: access_lists,
        jwt,
        api_keys,
        rate_limits: quotas,
        transforms: transforms.into_values().collect(),
        cors,
        trusted_proxies: match sets {
            Some(sets) => sets.trusted_proxies.clone(),
            None => access::IpSet::new(trusted),
        },
        limits: validate::Limits {
            max_uri_bytes: g.limits.max_uri_bytes,
            max_header_bytes: g.limits.max_header_bytes,
            max_header_line_bytes: g.limits.max_header_line_bytes,
            max_body_bytes: g.limits.max_body_bytes,
        },
        request_id_header: request_id_header.unwrap_or(HeaderName::from_static("x-request-id")),
        server_timing: g.server_timing,
        token_cache_size: g.token_cache_size,
        client_geo,
    }
}

/// Loads what an adapter embedded: the gateway settings and policies (with the address sets the
/// build script made), checked for what only the runtime knows (`secret_env` values). The
/// routes come later, one by one ([`embedded_route`]).
pub(crate) fn embedded(
    raw: &RawConfig,
    sets: &IpSets,
    read: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut e = Errs {
        list: Vec::new(),
        locate: &|_| None,
    };
    let config = policies(&mut e, raw, Secrets::From(read), Some(sets));
    if e.list.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors {
            diagnostics: e.list,
        })
    }
}

/// Builds an embedded route from its raw form and the ids its build script resolved; it was
/// checked then, so nothing is reported.
pub(crate) fn embedded_route(r: &raw::Route, refs: &RouteRefs, c: &Config) -> Route {
    let mut e = Errs {
        list: Vec::new(),
        locate: &|_| None,
    };
    build_route(&mut e, "routes", r, refs, c)
}

/// Each route's key for the route table (the host lowercase, the methods as written).
fn route_keys(routes: &[raw::Route]) -> Vec<route::RouteKey> {
    routes
        .iter()
        .map(|r| route::RouteKey {
            host: Cow::Owned(r.host.as_deref().unwrap_or("").to_ascii_lowercase()),
            path: Cow::Owned(r.path.clone()),
            methods: r
                .methods
                .iter()
                .map(|m| Cow::Owned(m.to_ascii_uppercase())) // as `methods` reads them
                .collect(),
        })
        .collect()
}

/// The names routes refer to, by kind, and the ids the `[defaults]` name.
struct Names<'r> {
    access: Vec<&'r str>,
    limit: Vec<&'r str>,
    cors: Vec<&'r str>,
    transform: Vec<&'r str>,
    upstream: Vec<&'r str>,
    jwt: Vec<&'r str>,
    api_key: Vec<&'r str>,
}

impl<'r> Names<'r> {
    fn of(e: &mut Errs<'_>, raw: &'r RawConfig) -> (RouteRefs, Names<'r>) {
        let n = Names {
            access: names(&raw.access),
            limit: names(&raw.rate_limits),
            cors: names(&raw.cors),
            transform: names(&raw.transforms),
            upstream: names(&raw.upstreams),
            jwt: names(&raw.auth.jwt),
            api_key: names(&raw.auth.api_keys),
        };
        let d = &raw.defaults;
        let defaults = RouteRefs {
            access: lookup(
                e,
                "defaults.access",
                "access list",
                d.access.as_deref(),
                &n.access,
            ),
            rate_limit: lookup(
                e,
                "defaults.rate_limit",
                "rate limit",
                d.rate_limit.as_deref(),
                &n.limit,
            ),
            cors: lookup(
                e,
                "defaults.cors",
                "CORS policy",
                d.cors.as_deref(),
                &n.cors,
            ),
            request: lookup(
                e,
                "defaults.request",
                "transform",
                d.request.as_deref(),
                &n.transform,
            ),
            response: lookup(
                e,
                "defaults.response",
                "transform",
                d.response.as_deref(),
                &n.transform,
            ),
            ..RouteRefs::default()
        };
        (defaults, n)
    }
}

/// Resolves what route `r` (at key path `path`) names, with the `[defaults]` where it names
/// nothing, and checks what depends on the policies it names.
fn resolve_route(
    e: &mut Errs<'_>,
    path: &str,
    r: &raw::Route,
    raw: &RawConfig,
    n: &Names<'_>,
    defaults: &RouteRefs,
    c: &Config,
) -> RouteRefs {
    match (&r.upstream, &r.respond, r.admin) {
        (None, None, Some(_)) => {
            if r.auth.is_none() {
                refuse!(
                    e,
                    format!("{path}.admin"),
                    "an admin route needs `auth`: without it anyone could call it",
                );
            }
            let provider = r.auth.as_ref().and_then(|a| a.jwt.as_deref());
            if let Some(p) = provider.and_then(|name| raw.auth.jwt.get(name)) {
                if p.fail == raw::FailMode::Open {
                    refuse!(e,
                        format!("{path}.auth.jwt"),
                        "an admin route cannot use a provider with fail = \"open\": while its JWKS is down any bearer string would pass",
                    );
                }
            }
            let safe = |m: &str| ["GET", "HEAD", "OPTIONS", "TRACE"].contains(&m);
            if r.methods.is_empty() || r.methods.iter().any(|m| safe(m)) {
                refuse!(e,
                    format!("{path}.methods"),
                    "an admin route changes state: list only methods such as POST, never GET, HEAD, OPTIONS or TRACE",
                );
            }
        }
        (Some(_), None, None) | (None, Some(_), None) => {}
        (None, None, None) => refuse!(e, path, "needs `upstream`, `respond` or `admin`"),
        _ => refuse!(
            e,
            path,
            "give one of `upstream`, `respond` and `admin`, not several",
        ),
    }
    let upstream = match (&r.upstream, &r.respond, r.admin) {
        (Some(u), None, None) => lookup(
            e,
            &format!("{path}.upstream"),
            "upstream",
            Some(u),
            &n.upstream,
        ),
        _ => None,
    };
    let (mut jwt, mut api_key) = (None, None);
    if let Some(a) = &r.auth {
        let ap = format!("{path}.auth");
        if a.jwt.is_none() && a.api_key.is_none() {
            refuse!(e, &ap, "needs `jwt` or `api_key`");
        }
        jwt = lookup(
            e,
            &format!("{ap}.jwt"),
            "JWT provider",
            a.jwt.as_deref(),
            &n.jwt,
        );
        api_key = lookup(
            e,
            &format!("{ap}.api_key"),
            "API-key set",
            a.api_key.as_deref(),
            &n.api_key,
        );
    }
    let rate_limit = reference(
        e,
        &format!("{path}.rate_limit"),
        "rate limit",
        &r.rate_limit,
        defaults.rate_limit,
        &n.limit,
    );
    if let Some(li) = rate_limit {
        let quota = &c.rate_limits[li];
        let needs_consumer = matches!(
            quota.key,
            ratelimit::LimitKey::Consumer | ratelimit::LimitKey::Claim(_)
        );
        if needs_consumer && r.auth.is_none() {
            refuse!(
                e,
                format!("{path}.rate_limit"),
                format!(
                    "policy {:?} counts by consumer or claim, but the route has no `auth`",
                    quota.name
                ),
            );
        }
    }
    let mut transform = |field: &str, own: &Option<raw::TransformRef>, default| match own {
        Some(raw::TransformRef::Named(name)) => lookup(
            e,
            &format!("{path}.{field}"),
            "transform",
            Some(name),
            &n.transform,
        ),
        // compiled with the route
        Some(raw::TransformRef::Inline(_)) => None,
        None => default,
    };
    let request = transform("request", &r.request, defaults.request);
    let response = transform("response", &r.response, defaults.response);
    RouteRefs {
        upstream,
        jwt,
        api_key,
        access: reference(
            e,
            &format!("{path}.access"),
            "access list",
            &r.access,
            defaults.access,
            &n.access,
        ),
        rate_limit,
        cors: reference(
            e,
            &format!("{path}.cors"),
            "CORS policy",
            &r.cors,
            defaults.cors,
            &n.cors,
        ),
        request,
        response,
    }
}

/// Builds route `r` (at key path `path`) with the policies `refs` resolved, from `c`'s tables.
/// An adapter builds each route this way when a request first needs it.
fn build_route(
    e: &mut Errs<'_>,
    path: &str,
    r: &raw::Route,
    refs: &RouteRefs,
    cfg: &Config,
) -> Route {
    if !r.path.starts_with('/') {
        refuse!(
            e,
            format!("{path}.path"),
            format!("{:?} must start with /", r.path),
        );
    } else if let Ok(normalized) = validate::normalize_path(&r.path.replace(['{', '}', '*'], "x")) {
        if normalized != r.path.replace(['{', '}', '*'], "x") {
            refuse!(
                e,
                format!("{path}.path"),
                format!(
                    "{:?} is not in normal form (no //, . or .. segments, no needless %-encoding)",
                    r.path
                )
            );
        }
    }
    let route_methods = methods(e, &format!("{path}.methods"), &r.methods);
    let params = route::pattern_params(&r.path);
    let action = match (refs.upstream, &r.respond, r.admin) {
        (Some(u), _, _) => Some(Action::Proxy(u)),
        (None, None, Some(admin)) => Some(Action::Admin(admin)),
        (None, Some(resp), None) => {
            let rp = format!("{path}.respond");
            let status = http::StatusCode::from_u16(resp.status)
                .ok()
                .filter(|s| (200..=599).contains(&s.as_u16()));
            if status.is_none() {
                refuse!(
                    e,
                    format!("{rp}.status"),
                    format!("{} is not a final HTTP status", resp.status),
                );
            }
            let mut headers = http::HeaderMap::new();
            for (k, v) in &resp.headers {
                let hp = format!("{rp}.headers.{k}");
                let name = header_name(e, &hp, k);
                match http::HeaderValue::from_str(v) {
                    Ok(v) => {
                        if let Some(n) = name {
                            headers.append(n, v);
                        }
                    }
                    Err(_) => refuse!(e, hp, "header values must not contain CR, LF or NUL"),
                }
            }
            status.map(|status| {
                Action::Respond(Respond {
                    status,
                    headers,
                    body: bytes::Bytes::from(resp.body.clone()),
                })
            })
        }
        _ => None,
    };
    let rewrite = r
        .rewrite
        .as_ref()
        .and_then(|t| match route::Template::parse(t) {
            Ok(t) => {
                for p in t.params() {
                    if !params.iter().any(|x| x == p) {
                        refuse!(
                            e,
                            format!("{path}.rewrite"),
                            format!("{{{p}}} is not a parameter of path {:?}", r.path),
                        );
                    }
                }
                Some(t)
            }
            Err(m) => {
                refuse!(e, format!("{path}.rewrite"), m);
                None
            }
        });
    if r.rewrite.is_some() && r.strip_prefix.is_some() {
        refuse!(e, path, "give `rewrite` or `strip_prefix`, not both");
    }
    if r.rewrite.is_some() && r.strip_prefix.is_some() {
        refuse!(e, path, "give `rewrite` or `strip_prefix`, not both");
    }
    let auth = r.auth.as_ref().map(|a| AuthRule {
        jwt: refs.jwt,
        api_key: refs.api_key,
        scopes: a.scopes.clone(),
        claims: a
            .claims
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    });
    let mut transform = |field: &str, own: &Option<raw::TransformRef>, id: Option<Id<_>>| match own
    {
        Some(raw::TransformRef::Inline(t)) => {
            Some(Rc::new(compile_transform(e, &format!("{path}.{field}"), t)))
        }
        _ => id.map(|i| cfg.transforms[i].clone()),
    };
    let request = transform("request", &r.request, refs.request);
    let response = transform("response", &r.response, refs.response);
    let cache = r.cache.as_ref().map(|c| {
        let key_headers = c
            .key_headers
            .iter()
            .enumerate()
            .filter_map(|(j, h)| header_name(e, &format!("{path}.cache.key_headers[{j}]"), h))
            .collect();
        // the credentials the route knows keep its responses out of the shared cache
        let (mut credential_headers, mut credential_query) = (Vec::new(), Vec::new());
        if let Some(a) = &auth {
            if let Some(p) = a.jwt.map(|i| &cfg.jwt[i]) {
                credential_headers.push(p.header.clone());
            }
            if let Some(set) = a.api_key.map(|i| &cfg.api_keys[i]) {
                credential_headers.extend(set.header.clone());
                credential_query.extend(set.query.clone());
            }
        }
        if !(1..=raw::CACHE_MAX_BYTES_LIMIT).contains(&c.max_bytes) {
            refuse!(
                e,
                format!("{path}.cache.max_bytes"),
                format!(
                    "must be between 1 and {} (25 MiB, the largest value Workers KV stores)",
                    raw::CACHE_MAX_BYTES_LIMIT
                ),
            );
        }
        cache::CacheRule {
            ttl_s: c.ttl_s,
            max_bytes: usize::try_from(c.max_bytes).unwrap_or(usize::MAX),
            key_headers,
            per_consumer: c.per_consumer,
            fail_open: c.fail == raw::FailMode::Open,
            credential_headers,
            credential_query,
        }
    });
    if r.cache.is_some() && (r.respond.is_some() || r.admin.is_some()) {
        refuse!(
            e,
            format!("{path}.cache"),
            "only `upstream` routes are cached: `respond` and `admin` routes need no cache",
        );
    }
    if r.websocket {
        if r.upstream.is_none() {
            refuse!(
                e,
                format!("{path}.websocket"),
                "a WebSocket goes to an `upstream`"
            );
        } else if r.cache.is_some() {
            refuse!(
                e,
                format!("{path}.websocket"),
                "an upgraded connection cannot be cached"
            );
        } else if !r.methods.is_empty() && !r.methods.iter().any(|m| m == "GET") {
            refuse!(
                e,
                format!("{path}.websocket"),
                "a WebSocket handshake is a GET: list it in `methods`"
            );
        }
    }
    let mut validation = validate::Validation {
        max_body_bytes: cfg.limits.max_body_bytes,
        ..Default::default()
    };
    if let Some(v) = &r.validate {
        let vp = format!("{path}.validate");
        for (name, spec) in &v.path {
            if !params.iter().any(|p| p == name) {
                refuse!(
                    e,
                    format!("{vp}.path.{name}"),
                    format!("{name:?} is not a parameter of path {:?}", r.path),
                );
            }
            if let Some(p) = compile_param(e, &format!("{vp}.path.{name}"), spec, true) {
                validation.path.insert(name.clone(), p);
            }
        }
        for (name, spec) in &v.query {
            if let Some(p) = compile_param(e, &format!("{vp}.query.{name}"), spec, false) {
                validation.query.insert(name.clone(), p);
            }
        }
        for (name, spec) in &v.headers {
            let hp = format!("{vp}.headers.{name}");
            if let (Some(h), Some(p)) = (
                header_name(e, &hp, name),
                compile_param(e, &hp, spec, false),
            ) {
                validation.headers.push((h, p));
            }
        }
        validation.content_types = v
            .content_types
            .iter()
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if let Some(schema) = &v.body_schema {
            match validate::BodySchema::compile(schema) {
                Ok(s) => validation.body_schema = Some(s),
                Err(err) => refuse!(e, format!("{vp}.body_schema"), err),
            }
        }
        if let Some(max) = v.max_body_bytes {
            if max == 0 {
                refuse!(e, format!("{vp}.max_body_bytes"), "must be greater than 0");
            }
            validation.max_body_bytes = max;
        }
    }
    Route {
        name: r.name.clone(),
        methods: route_methods,
        path: r.path.clone(),
        action: action.unwrap_or(Action::Respond(Respond {
            status: http::StatusCode::NOT_FOUND,
            headers: Default::default(),
            body: Default::default(),
        })),
        rewrite,
        strip_prefix: r.strip_prefix.clone(),
        websocket: r.websocket,
        auth,
        access: refs.access,
        rate_limit: refs.rate_limit,
        cors: refs.cors,
        cache,
        validation,
        request,
        response,
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let s = s.trim();
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('='))
        })
        .ok()
}

#[cfg(test)]
mod tests;
