//! Checks a raw config for meaning and builds the compiled [`Config`]. Every problem is
//! collected, each with its key path, before anything is returned.
//!
//! Each phase compiles its own policies next to their types (`AccessPolicy::compile`,
//! `JwtProvider::compile`, `ApiKeySet::compile`, `Quota::compile`, `Transform::compile`,
//! `Cors::compile`, `CacheRule::compile`, `Validation::compile`), reporting through
//! [`super::diag`]. This module keeps what spans them: the gateway settings and upstreams, name
//! resolution (a route's [`RouteRefs`], typed ids into the config's tables), route assembly
//! and the route table.

use super::diag::{header_name, methods, refuse, Errs, CHECKS};
use super::emit::IpSets;
use super::raw::{self, RawConfig};
use super::{
    features, Action, AuthRule, BuildFeatures, Config, ConfigErrors, Id, LimitCharge, Plan,
    Respond, Route, RouteRefs, Routes, Secrets, Table, Upstream,
};
use crate::phase::{access, auth, cache, observe, ratelimit, route, transform, validate};
use http::HeaderName;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::rc::Rc;

/// ` (did you mean "x"?)` when a candidate is close to `name`.
pub(crate) fn did_you_mean<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
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
pub(crate) fn lookup<T>(
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
pub(crate) fn outbound_url(
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
    if raw.openapi.is_some() {
        refuse!(
            e,
            "openapi.spec",
            "the document's routes are added when the config is expanded (`portcullis check`, \
             `explain` and `expand`, `scripts/build-worker.sh`): expand it with `portcullis \
             expand FILE -o OUT` and load OUT",
        );
    }

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
    let trusted = gateway_settings(e, g, sets);
    let request_id_header = header_name(e, "gateway.request_id_header", &g.request_id_header);

    // upstreams
    let mut upstreams = Table::default();
    for (name, u) in &raw.upstreams {
        let _ = upstreams.push(upstream(e, name, u));
    }

    // access lists
    let mut access_lists = Table::default();
    for (name, a) in &raw.access {
        let set = sets.and_then(|s| s.access.get(access_lists.len()));
        let _ = access_lists.push(access::AccessPolicy::compile(e, name, a, set));
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

    // JWT providers and API keys, which may name plans
    let plan_names = names(&raw.plans);
    let mut jwt = Table::default();
    for (name, p) in &raw.auth.jwt {
        let _ = jwt.push(auth::JwtProvider::compile(e, name, p, secrets, &plan_names));
    }
    let mut api_keys = Table::default();
    for (name, set) in &raw.auth.api_keys {
        let _ = api_keys.push(auth::ApiKeySet::compile(e, name, set, &plan_names));
    }

    // rate limits, and the plans that change them
    let mut quotas = Table::default();
    for (name, q) in &raw.rate_limits {
        let _ = quotas.push(ratelimit::Quota::compile(e, name, q));
    }
    let mut plans = Table::default();
    for (name, p) in &raw.plans {
        let _ = plans.push(plan(e, name, p, raw, &quotas));
    }

    // transforms and CORS
    // inserted in the raw map's (sorted) order: `collect` would sort them again, and link a
    // sort routine for this type into the wasm
    let mut transforms: BTreeMap<String, Rc<transform::Transform>> = BTreeMap::new();
    for (name, t) in &raw.transforms {
        let compiled = transform::Transform::compile(e, &format!("transforms.{name}"), t);
        transforms.insert(name.clone(), Rc::new(compiled));
    }
    let mut cors = Table::default();
    for (name, c) in &raw.cors {
        let _ = cors.push(transform::Cors::compile(e, name, c));
    }

    // telemetry: its collector is one of the upstreams
    #[cfg(feature = "telemetry")]
    let telemetry = raw
        .telemetry
        .as_ref()
        .and_then(|t| crate::telemetry::Telemetry::compile(e, t, &names(&raw.upstreams), secrets));

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
        plans,
        transforms: transforms.into_values().collect(),
        cors,
        trusted_proxies: trusted,
        limits: validate::Limits {
            max_uri_bytes: g.limits.max_uri_bytes,
            max_header_bytes: g.limits.max_header_bytes,
            max_header_line_bytes: g.limits.max_header_line_bytes,
            max_body_bytes: g.limits.max_body_bytes,
        },
        request_id_header: request_id_header.unwrap_or(HeaderName::from_static("x-request-id")),
        server_timing: g.server_timing,
        access_log: observe::LogSample::share(g.access_log_sample),
        token_cache_size: g.token_cache_size,
        client_geo,
        #[cfg(feature = "telemetry")]
        telemetry,
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
    check_action(e, path, r, raw);
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
    let rate_limit = match &r.rate_limit {
        Some(own) => resolve_limits(e, path, own, n, r.auth.is_some(), c),
        None => {
            check_limit_key(
                e,
                path,
                "rate_limit",
                defaults.rate_limit,
                r.auth.is_some(),
                c,
            );
            defaults.rate_limit
        }
    };
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

/// Checks and builds plan `name`: for each policy it names, the policy's quota with the plan's
/// limit (and burst, when the policy leaves its burst to follow the limit).
fn plan(
    e: &mut Errs<'_>,
    name: &str,
    p: &raw::Plan,
    raw: &RawConfig,
    quotas: &Table<ratelimit::Quota>,
) -> Plan {
    let policies = names(&raw.rate_limits);
    let mut limits = Vec::new();
    for (policy, &limit) in &p.limits {
        let path = format!("plans.{name}.limits.{policy}");
        let Some(qi) = lookup::<ratelimit::Quota>(e, &path, "rate limit", Some(policy), &policies)
        else {
            continue;
        };
        let base = &quotas[qi];
        let burst = match raw.rate_limits.get(policy).and_then(|q| q.burst) {
            Some(burst) => burst,
            None => limit,
        };
        if limit == 0 || limit > 1_000_000_000 {
            refuse!(e, &path, "must be between 1 and 1000000000");
        } else if u64::from(base.shards) > limit.min(burst) {
            refuse!(
                e,
                &path,
                format!(
                    "policy {policy:?} is split over {} shards: each needs a part of the limit, \
                     so it must be at least {}",
                    base.shards, base.shards
                ),
            );
        }
        let quota = ratelimit::Quota {
            limit,
            burst,
            ..base.clone()
        };
        limits.push((qi, quota));
    }
    Plan {
        name: name.to_string(),
        limits,
    }
}

/// Resolves the policies a route's `rate_limit` names (one, or a list) and checks each; the
/// first one's id (a list's others are found by name when the route is built).
fn resolve_limits(
    e: &mut Errs<'_>,
    path: &str,
    own: &raw::RateLimitRef,
    n: &Names<'_>,
    has_auth: bool,
    c: &Config,
) -> Option<Id<ratelimit::Quota>> {
    let several = matches!(own, raw::RateLimitRef::Several(_));
    let charges = own.charges();
    if several && charges.is_empty() {
        refuse!(
            e,
            format!("{path}.rate_limit"),
            "an empty list applies no limit: write \"none\" for that",
        );
    }
    let mut first = None;
    let mut seen = Vec::new();
    for (i, (name, _, at, table)) in charges.into_iter().enumerate() {
        let at = if table { format!("{at}.policy") } else { at };
        if several && name == "none" {
            refuse!(
                e,
                format!("{path}.{at}"),
                "\"none\" cannot be one of several limits",
            );
        } else if seen.contains(&name) {
            refuse!(
                e,
                format!("{path}.{at}"),
                format!("policy {name:?} is already in this list"),
            );
        }
        seen.push(name);
        let id = lookup(
            e,
            &format!("{path}.{at}"),
            "rate limit",
            Some(name),
            &n.limit,
        );
        check_limit_key(e, path, &at, id, has_auth, c);
        if i == 0 {
            first = id;
        }
    }
    first
}

/// Refuses a policy that counts by consumer or claim on a route without `auth`.
fn check_limit_key(
    e: &mut Errs<'_>,
    path: &str,
    at: &str,
    id: Option<Id<ratelimit::Quota>>,
    has_auth: bool,
    c: &Config,
) {
    let Some(quota) = id.map(|i| &c.rate_limits[i]) else {
        return;
    };
    let needs_consumer = matches!(
        quota.key,
        ratelimit::LimitKey::Consumer | ratelimit::LimitKey::Claim(_)
    );
    if needs_consumer && !has_auth {
        let at = at.trim_end_matches(".policy");
        refuse!(
            e,
            format!("{path}.{at}"),
            format!(
                "policy {:?} counts by consumer or claim, but the route has no `auth`",
                quota.name
            ),
        );
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
    check_route(e, path, r);
    let route_methods = methods(e, &format!("{path}.methods"), &r.methods);
    let params = route::pattern_params(&r.path);
    let action = match (refs.upstream, &r.respond, r.admin) {
        (Some(u), _, _) => Some(Action::Proxy(u)),
        (None, None, Some(admin)) => Some(Action::Admin(admin)),
        (None, Some(resp), None) => respond(e, path, resp),
        _ => None,
    };
    let rewrite = rewrite(e, path, r, &params);
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
        Some(raw::TransformRef::Inline(t)) => Some(Rc::new(transform::Transform::compile(
            e,
            &format!("{path}.{field}"),
            t,
        ))),
        _ => id.map(|i| cfg.transforms[i].clone()),
    };
    let request = transform("request", &r.request, refs.request);
    let response = transform("response", &r.response, refs.response);
    let cache = r.cache.as_ref().map(|c| {
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
        let credentials = (credential_headers, credential_query);
        cache::CacheRule::compile(e, &format!("{path}.cache"), c, credentials)
    });
    let validation = match &r.validate {
        Some(v) => validate::Validation::compile(
            e,
            &format!("{path}.validate"),
            v,
            r,
            &params,
            cfg.limits.max_body_bytes,
        ),
        None => validate::Validation {
            max_body_bytes: cfg.limits.max_body_bytes,
            ..Default::default()
        },
    };
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
        trusted_proxies: r
            .trusted_proxies
            .as_ref()
            .map(|list| access::IpSet::new(cidrs(e, &format!("{path}.trusted_proxies"), list))),
        access: refs.access,
        rate_limits: rate_limits(e, path, r, refs, cfg),
        cors: refs.cors,
        cache,
        validation,
        request,
        response,
    }
}

/// The policies route `r` charges, each with what its requests cost: 1, or the entry's own
/// `cost`, at most what the policy admits at once per shard (a dearer request would always be
/// refused). The first is `refs`'s; a list's others are found by name.
fn rate_limits(
    e: &mut Errs<'_>,
    path: &str,
    r: &raw::Route,
    refs: &RouteRefs,
    cfg: &Config,
) -> Vec<LimitCharge> {
    let Some(own) = &r.rate_limit else {
        let quota = refs.rate_limit;
        return quota
            .map(|quota| LimitCharge { quota, cost: 1 })
            .into_iter()
            .collect();
    };
    let mut out = Vec::new();
    for (i, (name, cost, at, table)) in own.charges().into_iter().enumerate() {
        let id = match i {
            0 => refs.rate_limit,
            _ => cfg
                .rate_limits
                .entries()
                .find(|(_, q)| q.name == name)
                .map(|(id, _)| id),
        };
        // "none", or a name reported unknown when the route was resolved
        let Some(quota) = id else { continue };
        let q = &cfg.rate_limits[quota];
        let most = q.burst / u64::from(q.shards.max(1));
        // a name costs 1, which any policy admits (a broken one is reported as such)
        if table && (cost == 0 || u64::from(cost) > most) {
            refuse!(
                e,
                format!("{path}.{at}.cost"),
                format!(
                    "must be from 1 to {most}, what policy {:?} admits at once{}",
                    q.name,
                    if q.shards > 1 { " per shard" } else { "" }
                )
            );
        }
        out.push(LimitCharge {
            quota,
            cost: cost.max(1),
        });
    }
    out
}

/// Checks and builds upstream `name`.
fn upstream(e: &mut Errs<'_>, name: &str, u: &raw::Upstream) -> Upstream {
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
    Upstream {
        name: name.to_string(),
        targets,
        weights: u.targets.iter().map(|t| t.weight).collect(),
        timeout_ms: u.timeout_ms,
        idle_timeout_ms: u.idle_timeout_ms,
        retries: u.retries,
        max_response_bytes: usize::try_from(u.max_response_bytes).unwrap_or(usize::MAX),
    }
}

/// Checks and builds a route's fixed answer (at key path `path`).
fn respond(e: &mut Errs<'_>, path: &str, resp: &raw::Respond) -> Option<Action> {
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

/// Parses route `r`'s rewrite template, whose parameters must be among the path's `params`.
fn rewrite(
    e: &mut Errs<'_>,
    path: &str,
    r: &raw::Route,
    params: &[String],
) -> Option<route::Template> {
    r.rewrite
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
        })
}

/// The checks of route `r` that need nothing but the route: its path's form, and what may be
/// cached or upgraded.
fn check_route(e: &mut Errs<'_>, path: &str, r: &raw::Route) {
    if !CHECKS {
        return;
    }
    if !r.path.starts_with('/') {
        refuse!(
            e,
            format!("{path}.path"),
            format!("{:?} must start with /", r.path),
        );
    } else if r.path.contains(['?', '#']) {
        refuse!(
            e,
            format!("{path}.path"),
            format!(
                "{:?} has a query or fragment: a route matches the path alone, so no request \
                 would ever reach it",
                r.path
            ),
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
}

/// Checks that route `r` has one action, and an admin route's safeguards.
fn check_action(e: &mut Errs<'_>, path: &str, r: &raw::Route, raw: &RawConfig) {
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
}

/// The networks of a list of trusted proxies at key path `field`, each entry that is not an
/// address or CIDR refused.
fn cidrs(e: &mut Errs<'_>, field: &str, list: &[String]) -> Vec<ipnet::IpNet> {
    list.iter()
        .enumerate()
        .filter_map(|(i, c)| {
            access::parse_cidr(c)
                .map_err(|m| refuse!(e, format!("{field}[{i}]"), m))
                .ok()
        })
        .collect()
}

/// Checks the gateway's limits and returns its trusted proxies (`sets`: as the build script made
/// them).
fn gateway_settings(
    e: &mut Errs<'_>,
    g: &raw::GatewaySettings,
    sets: Option<&IpSets>,
) -> access::IpSet {
    let trusted = cidrs(e, "gateway.trusted_proxies", &g.trusted_proxies);
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
    // also refuses NaN
    if !(0.0..=1.0).contains(&g.access_log_sample) {
        refuse!(
            e,
            "gateway.access_log_sample",
            format!("must be from 0 to 1, not {}", g.access_log_sample)
        );
    }
    match sets {
        Some(sets) => sets.trusted_proxies.clone(),
        None => access::IpSet::new(trusted),
    }
}

#[cfg(test)]
mod tests;
