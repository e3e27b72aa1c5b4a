//! The config as Rust data: what the adapters' build scripts embed instead of a serialized form.
//!
//! Every raw type has a mirror of `'static` data ([`Embed::Static`]: `&'static str` for a
//! `String`, a slice for a `Vec` or a table). At build time [`rust_static`] writes the checked
//! config as a constant expression of that mirror; the adapter puts it in a `static` and builds
//! the [`RawConfig`] from it with [`Embed::build`] when an isolate (or a Spin instance) starts.
//! So the deployed wasm links no config parser and none of the raw types' `Deserialize` code
//! (BENCHMARKS.md, "Workers: size"), nothing is parsed at start-up, and a config of any size is
//! data in the wasm, not code: the building code is one small function per type.
//!
//! The mirrors are generated from one list of the raw types' fields (`embed_struct!` below).
//! Both directions are checked by the compiler: `build` writes a struct literal naming every
//! listed field (a field missing from the list does not compile), and `write` destructures the
//! value with an exhaustive pattern.

use super::raw::*;
use crate::phase::access::IpSet;
use std::collections::BTreeMap;
use std::fmt::Write;

/// A raw config type that can be written as `'static` data and built back from it.
pub trait Embed: Sized {
    /// The mirror of this type made of `'static` data only, so it can sit in a `static`.
    type Static: 'static + Sync;
    /// The value, from its mirror (at run time, in the adapter).
    fn build(s: &Self::Static) -> Self;
    /// Writes a constant expression of [`Embed::Static`] for this value (at build time).
    fn write(&self, out: &mut String);
}

/// The constant expression of the mirror of `raw` (a [`RawConfigStatic`]), for the adapter's
/// `static` (`static CONFIG: RawConfigStatic = include!(...)`).
pub fn rust_static(raw: &RawConfig) -> String {
    let mut out = String::from(
        "// Written by portcullis_core::config::emit from the checked config; do not edit.\n{\n\
         #[allow(unused_imports)]\nuse ::portcullis_core::config::emit::*;\n\
         #[allow(unused_imports)]\n\
         use ::portcullis_core::config::raw::{AdminAction, Alg, CalendarPeriod, FailMode, LimitAlgorithm, ParamType};\n",
    );
    raw.write(&mut out);
    out.push_str("\n}\n");
    out
}

/// The raw config an adapter embedded, built from its `static` mirror.
pub fn build(s: &RawConfigStatic) -> RawConfig {
    RawConfig::build(s)
}

macro_rules! embed_copy {
    ($($t:ty => $fmt:literal),* $(,)?) => {$(
        impl Embed for $t {
            type Static = $t;
            fn build(s: &$t) -> $t {
                *s
            }
            fn write(&self, out: &mut String) {
                let _ = write!(out, $fmt, self);
            }
        }
    )*};
}
embed_copy!(bool => "{}", u8 => "{}u8", u16 => "{}u16", u32 => "{}u32", u64 => "{}u64", usize => "{}usize");

impl Embed for f64 {
    type Static = f64;
    fn build(s: &f64) -> f64 {
        *s
    }
    fn write(&self, out: &mut String) {
        if self.is_nan() {
            out.push_str("f64::NAN");
        } else if self.is_infinite() {
            out.push_str(if *self > 0.0 {
                "f64::INFINITY"
            } else {
                "f64::NEG_INFINITY"
            });
        } else {
            // `{:?}` is the shortest text that reads back as the same f64
            let _ = write!(out, "{self:?}f64");
        }
    }
}

impl Embed for String {
    type Static = &'static str;
    fn build(s: &&'static str) -> String {
        (*s).to_owned()
    }
    fn write(&self, out: &mut String) {
        // a str's Debug form is a valid Rust string literal (quotes and escapes)
        let _ = write!(out, "{self:?}");
    }
}

/// An embedded config has no `openapi` section: it was expanded into routes, and a config that
/// still has one is refused before it is embedded. So it is embedded as `None` always.
impl Embed for OpenApiSource {
    type Static = ();
    fn build(_: &()) -> OpenApiSource {
        OpenApiSource {
            spec: String::new(),
            upstream: String::new(),
            operations: BTreeMap::new(),
        }
    }
    fn write(&self, out: &mut String) {
        out.push_str("()");
    }
}

impl<T: Embed> Embed for Option<T> {
    type Static = Option<T::Static>;
    fn build(s: &Option<T::Static>) -> Option<T> {
        s.as_ref().map(T::build)
    }
    fn write(&self, out: &mut String) {
        match self {
            None => out.push_str("None"),
            Some(v) => {
                out.push_str("Some(");
                v.write(out);
                out.push(')');
            }
        }
    }
}

impl<T: Embed> Embed for Box<T> {
    type Static = &'static T::Static;
    fn build(s: &&'static T::Static) -> Box<T> {
        Box::new(T::build(s))
    }
    fn write(&self, out: &mut String) {
        out.push('&');
        (**self).write(out);
    }
}

impl<T: Embed> Embed for Vec<T> {
    type Static = &'static [T::Static];
    fn build(s: &&'static [T::Static]) -> Vec<T> {
        // loops, not `collect`: each type would link its own copy of the iterator machinery
        let mut out = Vec::with_capacity(s.len());
        for v in s.iter() {
            out.push(T::build(v));
        }
        out
    }
    fn write(&self, out: &mut String) {
        out.push_str("&[");
        for v in self {
            v.write(out);
            out.push(',');
        }
        out.push(']');
    }
}

impl<V: Embed> Embed for BTreeMap<String, V> {
    type Static = &'static [(&'static str, V::Static)];
    fn build(s: &Self::Static) -> Self {
        // in key order already: inserting them one by one keeps out of the wasm the stable
        // sort that `collect` runs (a copy per value type, about 45 KB in all)
        let mut out = BTreeMap::new();
        for (k, v) in s.iter() {
            out.insert((*k).to_owned(), V::build(v));
        }
        out
    }
    fn write(&self, out: &mut String) {
        out.push_str("&[");
        pairs(self, out);
        out.push(']');
    }
}

fn pairs<'a, V: Embed + 'a>(
    entries: impl IntoIterator<Item = (&'a String, &'a V)>,
    out: &mut String,
) {
    for (k, v) in entries {
        out.push('(');
        k.write(out);
        out.push(',');
        v.write(out);
        out.push_str("),");
    }
}

/// The mirror of a JSON value (`jwk`, `body_schema`, `set`, `claims`).
#[doc(hidden)]
pub enum JsonStatic {
    Null,
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    String(&'static str),
    Array(&'static [JsonStatic]),
    Object(&'static [(&'static str, JsonStatic)]),
}

impl Embed for Value {
    type Static = JsonStatic;
    fn build(s: &JsonStatic) -> Value {
        match s {
            JsonStatic::Null => Value::Null,
            JsonStatic::Bool(b) => Value::Bool(*b),
            JsonStatic::Unsigned(n) => Value::from(*n),
            JsonStatic::Signed(n) => Value::from(*n),
            // a JSON number is finite; from(NaN) would be null, as serde_json has it
            JsonStatic::Float(n) => Value::from(*n),
            JsonStatic::String(s) => Value::String((*s).to_owned()),
            JsonStatic::Array(items) => Value::Array(Vec::build(items)),
            JsonStatic::Object(entries) => {
                let mut map = serde_json::Map::new();
                for (k, v) in entries.iter() {
                    map.insert((*k).to_owned(), Value::build(v));
                }
                Value::Object(map)
            }
        }
    }
    fn write(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("JsonStatic::Null"),
            Value::Bool(b) => {
                let _ = write!(out, "JsonStatic::Bool({b})");
            }
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    let _ = write!(out, "JsonStatic::Unsigned({u})");
                } else if let Some(i) = n.as_i64() {
                    let _ = write!(out, "JsonStatic::Signed({i})");
                } else {
                    out.push_str("JsonStatic::Float(");
                    n.as_f64().unwrap_or(f64::NAN).write(out);
                    out.push(')');
                }
            }
            Value::String(s) => {
                out.push_str("JsonStatic::String(");
                s.write(out);
                out.push(')');
            }
            Value::Array(items) => {
                out.push_str("JsonStatic::Array(");
                items.write(out);
                out.push(')');
            }
            Value::Object(map) => {
                out.push_str("JsonStatic::Object(&[");
                pairs(map, out);
                out.push_str("])");
            }
        }
    }
}

/// Field-less enums are their own mirror; the variant's name is its `Debug` form.
macro_rules! embed_unit_enum {
    ($($t:ident),*) => {$(
        impl Embed for $t {
            type Static = $t;
            fn build(s: &$t) -> $t {
                *s
            }
            fn write(&self, out: &mut String) {
                let _ = write!(out, "{}::{:?}", stringify!($t), self);
            }
        }
    )*};
}
embed_unit_enum!(
    FailMode,
    Alg,
    AdminAction,
    ParamType,
    LimitAlgorithm,
    CalendarPeriod
);

/// The mirror of [`RateLimitRef`].
#[doc(hidden)]
pub enum RateLimitRefStatic {
    Named(&'static str),
    Charged(RateLimitChargeStatic),
    Several(&'static [RateLimitRefStatic]),
}

impl Embed for RateLimitRef {
    type Static = RateLimitRefStatic;
    fn build(s: &RateLimitRefStatic) -> RateLimitRef {
        match s {
            RateLimitRefStatic::Named(name) => RateLimitRef::Named((*name).to_owned()),
            RateLimitRefStatic::Charged(c) => RateLimitRef::Charged(RateLimitCharge::build(c)),
            RateLimitRefStatic::Several(list) => RateLimitRef::Several(Vec::build(list)),
        }
    }
    fn write(&self, out: &mut String) {
        match self {
            RateLimitRef::Named(name) => {
                out.push_str("RateLimitRefStatic::Named(");
                name.write(out);
            }
            RateLimitRef::Charged(c) => {
                out.push_str("RateLimitRefStatic::Charged(");
                c.write(out);
            }
            RateLimitRef::Several(list) => {
                out.push_str("RateLimitRefStatic::Several(");
                list.write(out);
            }
        }
        out.push(')');
    }
}

/// The mirror of [`TransformRef`].
#[doc(hidden)]
pub enum TransformRefStatic {
    Named(&'static str),
    Inline(&'static TransformStatic),
}

impl Embed for TransformRef {
    type Static = TransformRefStatic;
    fn build(s: &TransformRefStatic) -> TransformRef {
        match s {
            TransformRefStatic::Named(name) => TransformRef::Named((*name).to_owned()),
            TransformRefStatic::Inline(t) => TransformRef::Inline(Box::new(Transform::build(t))),
        }
    }
    fn write(&self, out: &mut String) {
        match self {
            TransformRef::Named(name) => {
                out.push_str("TransformRefStatic::Named(");
                name.write(out);
            }
            TransformRef::Inline(t) => {
                out.push_str("TransformRefStatic::Inline(");
                t.write(out);
            }
        }
        out.push(')');
    }
}

/// The mirror of [`ParamSpec`].
#[doc(hidden)]
pub enum ParamSpecStatic {
    Type(ParamType),
    Rule(ParamRuleStatic),
}

impl Embed for ParamSpec {
    type Static = ParamSpecStatic;
    fn build(s: &ParamSpecStatic) -> ParamSpec {
        match s {
            ParamSpecStatic::Type(t) => ParamSpec::Type(*t),
            ParamSpecStatic::Rule(r) => ParamSpec::Rule(ParamRule::build(r)),
        }
    }
    fn write(&self, out: &mut String) {
        match self {
            ParamSpec::Type(t) => {
                out.push_str("ParamSpecStatic::Type(");
                t.write(out);
            }
            ParamSpec::Rule(r) => {
                out.push_str("ParamSpecStatic::Rule(");
                r.write(out);
            }
        }
        out.push(')');
    }
}

/// Structs: the mirror type, and both directions, from the list of fields and their types.
/// A struct's mirror and its `Embed`. `if feature "F"` before the fields: a build without
/// feature `F` refuses a config that has the section before it embeds it, so there the section
/// is `None` always, and its `build` makes a default that is never used rather than link the
/// code that builds the section.
macro_rules! embed_struct {
    ($($t:ident => $s:ident $(if feature $feature:literal)? { $($field:ident: $ft:ty),* $(,)? })*) => {$(
        #[doc = concat!("The mirror of [`", stringify!($t), "`].")]
        #[doc(hidden)]
        pub struct $s {
            $(pub $field: <$ft as Embed>::Static,)*
        }

        impl Embed for $t {
            type Static = $s;
            $(#[cfg(feature = $feature)])?
            fn build(s: &$s) -> $t {
                $t { $($field: <$ft as Embed>::build(&s.$field),)* }
            }
            $(
            #[cfg(not(feature = $feature))]
            fn build(_: &$s) -> $t {
                $t::default()
            }
            )?
            fn write(&self, out: &mut String) {
                let $t { $($field),* } = self;
                out.push_str(concat!(stringify!($s), " {"));
                $(
                    out.push_str(concat!(stringify!($field), ": "));
                    $field.write(out);
                    out.push(',');
                )*
                out.push('}');
            }
        }
    )*};
}

embed_struct! {
    RawConfig => RawConfigStatic {
        gateway: GatewaySettings, defaults: RouteDefaults, upstreams: BTreeMap<String, Upstream>,
        access: BTreeMap<String, AccessList>, auth: AuthProviders,
        rate_limits: BTreeMap<String, RateLimitPolicy>, plans: BTreeMap<String, Plan>,
        transforms: BTreeMap<String, Transform>, cors: BTreeMap<String, CorsPolicy>,
        routes: Vec<Route>, openapi: Option<OpenApiSource>, telemetry: Option<Telemetry>,
    }
    HeaderSource => HeaderSourceStatic { value: Option<String>, secret_env: Option<String> }
    Telemetry => TelemetryStatic if feature "telemetry" {
        upstream: Option<String>, path: String, sample: f64, service_name: String,
        service_version: Option<String>, consumer_ids: bool,
        headers: BTreeMap<String, HeaderSource>, batch_ms: u32, traces: bool, metrics: bool,
        metrics_path: String, analytics_engine: Option<String>,
    }
    Plan => PlanStatic { limits: BTreeMap<String, u64> }
    GatewaySettings => GatewaySettingsStatic {
        trusted_proxies: Vec<String>, request_id_header: String, server_timing: bool,
        log_client_geo: bool, access_log_sample: f64, limits: Limits, token_cache_size: usize,
    }
    Limits => LimitsStatic { max_uri_bytes: usize, max_header_bytes: usize, max_header_line_bytes: usize, max_body_bytes: usize }
    RouteDefaults => RouteDefaultsStatic {
        access: Option<String>, rate_limit: Option<String>, cors: Option<String>,
        request: Option<String>, response: Option<String>,
    }
    Upstream => UpstreamStatic {
        targets: Vec<Target>, timeout_ms: u32, idle_timeout_ms: u32, retries: u32,
        allow_private: bool, max_response_bytes: u64,
    }
    Target => TargetStatic { url: String, weight: u32 }
    AccessList => AccessListStatic {
        allow_ips: Vec<String>, deny_ips: Vec<String>, allow_countries: Vec<String>,
        deny_countries: Vec<String>, allow_asns: Vec<u32>, deny_asns: Vec<u32>,
    }
    AuthProviders => AuthProvidersStatic {
        jwt: BTreeMap<String, JwtProvider>, api_keys: BTreeMap<String, ApiKeySet>,
    }
    JwtProvider => JwtProviderStatic {
        issuer: Option<String>, audiences: Vec<String>, jwks_url: Option<String>,
        keys: Vec<InlineKey>, leeway_s: u32, require_exp: bool, header: String,
        jwks_min_ttl_s: u32, jwks_max_ttl_s: u32, jwks_cooldown_s: u32, allow_private: bool,
        fail: FailMode, consumer_claim: Option<String>, plan_claim: Option<String>,
        max_token_bytes: usize,
    }
    InlineKey => InlineKeyStatic {
        kid: Option<String>, alg: Alg, secret: Option<String>, secret_base64: Option<String>,
        secret_env: Option<String>, jwk: Option<Value>,
    }
    ApiKeySet => ApiKeySetStatic { header: Option<String>, query: Option<String>, keys: Vec<ApiKey> }
    ApiKey => ApiKeyStatic { consumer: String, sha256: String, plan: Option<String>, scopes: Vec<String> }
    RateLimitPolicy => RateLimitPolicyStatic {
        key: String, limit: u64, period_s: Option<u64>, period: Option<CalendarPeriod>,
        algorithm: LimitAlgorithm, burst: Option<u64>, shards: Option<u32>,
        fail: FailMode, ipv4_prefix: Option<u8>, ipv6_prefix: Option<u8>,
    }
    Transform => TransformStatic {
        set_headers: BTreeMap<String, String>, add_headers: BTreeMap<String, String>,
        remove_headers: Vec<String>, rename_headers: BTreeMap<String, String>,
        set_query: BTreeMap<String, String>, remove_query: Vec<String>, json: Option<JsonEdit>,
    }
    JsonEdit => JsonEditStatic {
        set: BTreeMap<String, Value>, remove: Vec<String>, rename: BTreeMap<String, String>,
    }
    CorsPolicy => CorsPolicyStatic {
        allow_origins: Vec<String>, allow_methods: Vec<String>, allow_headers: Vec<String>,
        expose_headers: Vec<String>, max_age_s: Option<u32>, allow_credentials: bool,
    }
    Route => RouteStatic {
        name: String, methods: Vec<String>, host: Option<String>, path: String,
        upstream: Option<String>, respond: Option<Respond>, admin: Option<AdminAction>,
        rewrite: Option<String>, strip_prefix: Option<String>, websocket: bool,
        auth: Option<RouteAuth>, trusted_proxies: Option<Vec<String>>,
        access: Option<String>, rate_limit: Option<RateLimitRef>, cors: Option<String>,
        cache: Option<RouteCache>, validate: Option<Validation>, request: Option<TransformRef>,
        response: Option<TransformRef>,
    }
    Respond => RespondStatic { status: u16, body: String, headers: BTreeMap<String, String> }
    RateLimitCharge => RateLimitChargeStatic { policy: String, cost: u32 }
    RouteAuth => RouteAuthStatic {
        jwt: Option<String>, api_key: Option<String>, scopes: Vec<String>,
        claims: BTreeMap<String, Value>,
    }
    RouteCache => RouteCacheStatic {
        ttl_s: u32, key_headers: Vec<String>, per_consumer: bool, fail: FailMode, max_bytes: u64,
        stale_if_error_s: u32, stale_while_revalidate_s: u32, tags: Vec<String>,
    }
    Validation => ValidationStatic {
        path: BTreeMap<String, ParamSpec>, query: BTreeMap<String, ParamSpec>,
        headers: BTreeMap<String, ParamSpec>, content_types: Vec<String>,
        body_schema: Option<Value>, max_body_bytes: Option<usize>,
    }
    ParamRule => ParamRuleStatic {
        kind: ParamType, required: bool, min: Option<f64>, max: Option<f64>,
        one_of: Vec<String>, pattern: Option<String>,
    }
}

/// What an adapter embeds: the checked config as `'static` data, with what grows with the
/// config prepared when it was checked, so that an instance's start does not grow with it.
/// [`Config::from_embedded`](crate::Config::from_embedded) builds the gateway settings and
/// policies from `raw`; each route is built from `routes` and `refs` when a request first needs
/// it; the route table and the address sets are used as they are.
pub struct Embedded {
    /// The config without its routes, and with its lists of addresses empty (they are `sets`).
    pub raw: RawConfigStatic,
    pub routes: &'static [RouteStatic],
    /// Each route's resolved references.
    pub refs: &'static [crate::config::RouteRefs],
    pub router: crate::phase::route::RouterData,
    pub sets: IpSets,
    /// Whether any route caches responses.
    pub caches_responses: bool,
}

/// The address sets of a config, sorted and merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpSets {
    /// `gateway.trusted_proxies`.
    pub trusted_proxies: IpSet,
    /// Each access list's (allow, deny) sets, in the raw config's order; no allow set when the
    /// list has none (everyone not denied is allowed).
    pub access: &'static [(Option<IpSet>, IpSet)],
}

impl Embedded {
    /// The raw config without its routes and without its lists of addresses.
    pub fn raw_without_routes(&self) -> RawConfig {
        RawConfig::build(&self.raw)
    }

    /// The raw config as its file has it, but for the lists of addresses (see [`Embedded::sets`]).
    pub fn raw_config(&self) -> RawConfig {
        let mut raw = self.raw_without_routes();
        raw.routes = Vec::build(&self.routes);
        raw
    }
}

/// The constant expression of the [`Embedded`] form of `raw`, which compiled to `config`: for
/// an adapter's `static` (`static CONFIG: Embedded = include!(...)`).
pub fn rust_embedded(raw: &RawConfig, config: &crate::Config) -> String {
    let mut slim = raw.clone();
    slim.routes = Vec::new();
    slim.gateway.trusted_proxies = Vec::new();
    for list in slim.access.values_mut() {
        list.allow_ips = Vec::new();
        list.deny_ips = Vec::new();
    }
    let mut out = String::from(
        "// Written by portcullis_core::config::emit from the checked config; do not edit.\n{\n\
         #[allow(unused_imports)]\nuse ::portcullis_core::config::emit::*;\n\
         #[allow(unused_imports)]\n\
         use ::portcullis_core::config::raw::{AdminAction, Alg, CalendarPeriod, FailMode, LimitAlgorithm, ParamType};\n\
         Embedded {\nraw: ",
    );
    slim.write(&mut out);
    out.push_str(",\nroutes: ");
    raw.routes.write(&mut out);
    out.push_str(",\nrefs: &[");
    for refs in config.route_refs() {
        refs.write(&mut out);
        out.push(',');
    }
    out.push_str("],\nrouter: ");
    config.router.data().write(&mut out);
    out.push_str(",\nsets: IpSets { trusted_proxies: ");
    config.trusted_proxies.write(&mut out);
    out.push_str(", access: &[");
    for policy in config.access.iter() {
        out.push('(');
        match &policy.allow_ips {
            Some(set) => {
                out.push_str("::core::option::Option::Some(");
                set.write(&mut out);
                out.push(')');
            }
            None => out.push_str("::core::option::Option::None"),
        }
        out.push(',');
        policy.deny_ips.write(&mut out);
        out.push_str("),");
    }
    out.push_str("] },\ncaches_responses: ");
    out.push_str(if config.caches_responses {
        "true"
    } else {
        "false"
    });
    out.push_str(",\n}\n}\n");
    out
}

/// The config an adapter's build script embedded (`adapters/embed-config.rs` wrote it to
/// `$OUT_DIR/config.rs` with [`Config::embed`](crate::Config::embed)), as the raw config for
/// [`Gateway::from_embedded`](crate::Gateway::from_embedded). It expands in the adapter, whose
/// `OUT_DIR` it reads.
#[macro_export]
macro_rules! embedded_config {
    () => {{
        static CONFIG: $crate::config::emit::Embedded =
            include!(concat!(env!("OUT_DIR"), "/config.rs"));
        &CONFIG
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text<T: Embed>(v: &T) -> String {
        let mut out = String::new();
        v.write(&mut out);
        out
    }

    #[test]
    fn scalars_are_written_as_typed_literals() {
        let rows: [(String, &str); 9] = [
            (text(&true), "true"),
            (text(&8192usize), "8192usize"),
            (text(&u64::MAX), "18446744073709551615u64"),
            (text(&0.5f64), "0.5f64"),
            (text(&-1e300f64), "-1e300f64"),
            (text(&f64::NAN), "f64::NAN"),
            (text(&f64::NEG_INFINITY), "f64::NEG_INFINITY"),
            (text(&String::from("a \"q\"\n\\")), r#""a \"q\"\n\\""#),
            (text(&None::<u32>), "None"),
        ];
        for (got, want) in rows {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn json_values_are_written_as_their_mirror_and_built_back() {
        let v = serde_json::json!({"a": [null, true, 1, -2, 2.5, "s"], "b": {}});
        assert_eq!(
            text(&v),
            "JsonStatic::Object(&[(\"a\",JsonStatic::Array(&[JsonStatic::Null,\
             JsonStatic::Bool(true),JsonStatic::Unsigned(1),JsonStatic::Signed(-2),\
             JsonStatic::Float(2.5f64),JsonStatic::String(\"s\"),])),\
             (\"b\",JsonStatic::Object(&[])),])"
        );
        static MIRROR: JsonStatic = JsonStatic::Object(&[
            (
                "a",
                JsonStatic::Array(&[
                    JsonStatic::Null,
                    JsonStatic::Bool(true),
                    JsonStatic::Unsigned(1),
                    JsonStatic::Signed(-2),
                    JsonStatic::Float(2.5f64),
                    JsonStatic::String("s"),
                ]),
            ),
            ("b", JsonStatic::Object(&[])),
        ]);
        assert_eq!(Value::build(&MIRROR), v);
    }

    #[test]
    fn untagged_enums_and_renamed_fields_are_written_by_their_rust_names() {
        let spec = ParamSpec::Rule(ParamRule {
            kind: ParamType::Int,
            required: true,
            min: Some(1.0),
            max: None,
            one_of: vec![],
            pattern: None,
        });
        assert_eq!(
            text(&spec),
            "ParamSpecStatic::Rule(ParamRuleStatic {kind: ParamType::Int,required: true,\
             min: Some(1.0f64),max: None,one_of: &[],pattern: None,})"
        );
        assert_eq!(
            text(&Some(TransformRef::Named("t".into()))),
            "Some(TransformRefStatic::Named(\"t\"))"
        );
        assert_eq!(
            text(&BTreeMap::from([("k".to_string(), FailMode::Open)])),
            "&[(\"k\",FailMode::Open),]"
        );
    }
}
