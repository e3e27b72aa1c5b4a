//! The config: raw serde types ([`raw`]) → checked, compiled [`Config`].
//!
//! Loading never panics and reports *every* problem it finds, each with the key path it concerns
//! and, for TOML, its line and column. The compiled form holds what the phases need, built once
//! (route tables, CIDR ranges, keys, regexes, schemas).

pub(crate) mod compile;
pub(crate) mod diag;
pub mod emit;
pub mod features;
pub mod lint;
#[cfg(feature = "toml")]
mod locate;
pub mod raw;
pub mod reference;
pub mod table;

use crate::phase::{access, auth, cache, observe, ratelimit, route, transform, validate};
use http::Method;
use std::fmt;
use std::rc::Rc;

pub use compile::compile;
pub(crate) use compile::outbound_url;
pub use features::BuildFeatures;
pub use lint::warnings;
pub use table::{Id, Table};

/// The file's top-level sections, in the order a config file is written.
pub(crate) const SECTIONS: [&str; 12] = [
    "gateway",
    "defaults",
    "upstreams",
    "access",
    "auth",
    "rate_limits",
    "plans",
    "transforms",
    "cors",
    "routes",
    "openapi",
    "telemetry",
];

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Where: `routes[2].auth.jwt`.
    pub path: String,
    /// 1-based line and column, when the source format keeps them.
    pub line_col: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((l, c)) = self.line_col {
            write!(f, "{l}:{c} ")?;
        }
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Whether a Spin `allowed_outbound_hosts` entry (`scheme://host[:port]`, where scheme, port
/// and a leading `*.` label may be `*`) allows `origin` (`scheme://host:port`).
pub fn outbound_allowed(pattern: &str, origin: &str) -> bool {
    // (scheme, host, port); the port is empty when the pattern names none
    let split = |s: &str| -> Option<(String, String, String)> {
        let (scheme, rest) = s.split_once("://")?;
        let rest = rest.trim_end_matches('/').to_ascii_lowercase();
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if p == "*" || p.bytes().all(|b| b.is_ascii_digit()) => {
                (h.to_string(), p.to_string())
            }
            _ => (rest, String::new()),
        };
        Some((scheme.to_ascii_lowercase(), host, port))
    };
    let (Some((ps, ph, pp)), Some((os, oh, op))) = (split(pattern), split(origin)) else {
        return false;
    };
    let default = if os == "https" { "443" } else { "80" };
    let scheme_ok = ps == "*" || ps == os;
    let port_ok = pp == "*" || pp == op || (pp.is_empty() && op == default);
    let host_ok = ph == "*"
        || ph == oh
        || ph
            .strip_prefix("*.")
            .is_some_and(|suffix| oh.ends_with(&format!(".{suffix}")));
    scheme_ok && host_ok && port_ok
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub diagnostics: Vec<Diagnostic>,
}

impl ConfigErrors {
    /// The problems sorted by position (those without one last), as a reader meets them.
    pub fn in_file_order(mut diagnostics: Vec<Diagnostic>) -> ConfigErrors {
        diagnostics.sort_by_key(|d| d.line_col.unwrap_or((usize::MAX, usize::MAX)));
        ConfigErrors { diagnostics }
    }

    /// These problems in file order ([`ConfigErrors::in_file_order`]).
    pub fn sorted(self) -> ConfigErrors {
        ConfigErrors::in_file_order(self.diagnostics)
    }

    /// The listing, one problem a line, each prefixed with `file:line:col ` (`file: ` when the
    /// source kept no positions).
    pub fn render(&self, file: &str) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            out.push_str(file);
            out.push_str(if d.line_col.is_some() { ":" } else { ": " });
            out.push_str(&d.to_string());
            out.push('\n');
        }
        let n = self.diagnostics.len();
        out.push_str(&format!(
            "{n} error{}; nothing was loaded\n",
            if n == 1 { "" } else { "s" }
        ));
        out
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render("config"))
    }
}

impl std::error::Error for ConfigErrors {}

/// Where the `secret_env` keys of a config get their secrets.
#[derive(Clone, Copy)]
pub enum Secrets<'a> {
    /// Not read (a check, a build script): each key is checked as far as it can be without its
    /// value and left out of the compiled config, so tokens signed with it are refused.
    Deferred,
    /// Read with this function, e.g. from the platform's environment; a missing or empty
    /// value is an error.
    From(&'a dyn Fn(&str) -> Option<String>),
}

/// What a route does with the request once it is admitted.
#[derive(Debug, Clone)]
pub enum Action {
    /// Proxy to `upstreams[index]`.
    Proxy(Id<Upstream>),
    /// Answer at the gateway.
    Respond(Respond),
    /// Run an operator's action at the gateway.
    Admin(raw::AdminAction),
}

/// A response made at the gateway.
#[derive(Debug, Clone)]
pub struct Respond {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

/// A compiled upstream.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    /// Base URLs (scheme, authority, optional base path without trailing `/`).
    pub targets: Vec<crate::phase::transform::Target>,
    pub weights: Vec<u32>,
    pub timeout_ms: u32,
    pub idle_timeout_ms: u32,
    pub retries: u32,
    /// The longest response body read from it (to cache or transform); a longer one is a 502.
    pub max_response_bytes: usize,
}

/// How a route authenticates.
#[derive(Debug, Clone, Default)]
pub struct AuthRule {
    pub jwt: Option<Id<auth::JwtProvider>>,
    pub api_key: Option<Id<auth::ApiKeySet>>,
    pub scopes: Vec<String>,
    pub claims: Vec<(String, serde_json::Value)>,
}

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub methods: Vec<Method>,
    pub path: String,
    pub action: Action,
    pub rewrite: Option<route::Template>,
    pub strip_prefix: Option<String>,
    /// Whether WebSocket upgrades pass through to the upstream.
    pub websocket: bool,
    pub auth: Option<AuthRule>,
    /// The proxies the route believes instead of the gateway's (an empty set: none).
    pub trusted_proxies: Option<access::IpSet>,
    pub access: Option<Id<access::AccessPolicy>>,
    /// The rate limits the route charges, in the order written: a request is admitted only if
    /// every one admits it.
    pub rate_limits: Vec<LimitCharge>,
    pub cors: Option<Id<transform::Cors>>,
    pub cache: Option<cache::CacheRule>,
    pub validation: validate::Validation,
    pub request: Option<Rc<transform::Transform>>,
    pub response: Option<Rc<transform::Transform>>,
}

/// A plan (`[plans.NAME]`): for each rate-limit policy it names, the quota its consumers have
/// instead of the policy's own.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub limits: Vec<(Id<ratelimit::Quota>, ratelimit::Quota)>,
}

impl Plan {
    /// The quota this plan gives under policy `qi`, if it names it.
    pub fn quota(&self, qi: Id<ratelimit::Quota>) -> Option<&ratelimit::Quota> {
        self.limits.iter().find(|(i, _)| *i == qi).map(|(_, q)| q)
    }
}

/// A rate-limit policy a route charges, and what each of its requests costs against it (1
/// unless the route sets its `cost`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitCharge {
    pub quota: Id<ratelimit::Quota>,
    pub cost: u32,
}

/// What a route names, resolved to ids when the config is checked (an adapter's build script
/// writes them beside each route): its upstream, policies and named transforms (own or the
/// `[defaults]`). An inline transform is compiled with the route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteRefs {
    pub upstream: Option<Id<Upstream>>,
    pub jwt: Option<Id<auth::JwtProvider>>,
    pub api_key: Option<Id<auth::ApiKeySet>>,
    pub access: Option<Id<access::AccessPolicy>>,
    /// The route's rate limit, or the first of its list (the others are found by name when the
    /// route is built).
    pub rate_limit: Option<Id<ratelimit::Quota>>,
    pub cors: Option<Id<transform::Cors>>,
    pub request: Option<Id<Rc<transform::Transform>>>,
    pub response: Option<Id<Rc<transform::Transform>>>,
}

impl RouteRefs {
    /// Writes these ids as a constant expression, for an adapter's `static`.
    pub fn write(&self, out: &mut String) {
        fn id<T>(out: &mut String, field: &str, id: Option<Id<T>>) {
            out.push_str(field);
            match id {
                Some(id) => {
                    out.push_str(
                        ": ::core::option::Option::Some(::portcullis_core::config::Id::new(",
                    );
                    out.push_str(&id.index().to_string());
                    out.push_str(")),");
                }
                None => out.push_str(": ::core::option::Option::None,"),
            }
        }
        out.push_str("::portcullis_core::config::RouteRefs {");
        id(out, "upstream", self.upstream);
        id(out, "jwt", self.jwt);
        id(out, "api_key", self.api_key);
        id(out, "access", self.access);
        id(out, "rate_limit", self.rate_limit);
        id(out, "cors", self.cors);
        id(out, "request", self.request);
        id(out, "response", self.response);
        out.push('}');
    }
}

/// The compiled routes: all of them (a config loaded from its file), or, for an adapter, each
/// built from the embedded data when a request first needs it, so an instance's start does not
/// grow with the number of routes.
#[derive(Clone)]
enum Routes {
    Built(Vec<Route>),
    Embedded {
        data: &'static emit::Embedded,
        built: Box<[std::cell::OnceCell<Box<Route>>]>,
    },
}

impl Default for Routes {
    fn default() -> Self {
        Routes::Built(Vec::new())
    }
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Routes::Built(list) => list.fmt(f),
            Routes::Embedded { data, .. } => write!(f, "{} embedded routes", data.routes.len()),
        }
    }
}

/// A loaded, checked config, ready to serve.
#[derive(Debug, Clone)]
pub struct Config {
    routes: Routes,
    /// Each route's [`RouteRefs`], for [`Config::embed`] (empty in an adapter).
    route_refs: Vec<RouteRefs>,
    pub router: route::Router,
    pub upstreams: Table<Upstream>,
    pub access: Table<access::AccessPolicy>,
    pub jwt: Table<auth::JwtProvider>,
    pub api_keys: Table<auth::ApiKeySet>,
    pub rate_limits: Table<ratelimit::Quota>,
    pub plans: Table<Plan>,
    /// The named transforms, which routes share.
    pub transforms: Table<Rc<transform::Transform>>,
    pub cors: Table<transform::Cors>,
    pub trusted_proxies: access::IpSet,
    pub limits: validate::Limits,
    pub request_id_header: http::HeaderName,
    pub server_timing: bool,
    /// Which answers below 400 get an access-log line.
    pub access_log: observe::LogSample,
    pub token_cache_size: usize,
    /// Whether any route caches responses (then unsafe requests invalidate what they change).
    pub caches_responses: bool,
    /// [`Config::needs_client_geo`], worked out when the config is compiled.
    pub(crate) client_geo: bool,
    /// `[telemetry]`: where traces go.
    #[cfg(feature = "telemetry")]
    pub telemetry: Option<crate::telemetry::Telemetry>,
}

impl Config {
    /// Loads a TOML config, reporting every problem with its line and column. Keys with
    /// `secret_env` are checked but left out (see [`Secrets::Deferred`]); use
    /// [`Config::from_toml_with_secrets`] to read them.
    #[cfg(feature = "toml")]
    pub fn from_toml(src: &str) -> Result<Config, ConfigErrors> {
        let (raw, locator) = locate::parse_toml(src)?;
        compile(raw, &|path| locator.find(path), Secrets::Deferred).map_err(ConfigErrors::sorted)
    }

    /// [`Config::from_toml`], reading `secret_env` keys with `read` (e.g. the environment).
    #[cfg(feature = "toml")]
    pub fn from_toml_with_secrets(
        src: &str,
        read: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let (raw, locator) = locate::parse_toml(src)?;
        compile(raw, &|path| locator.find(path), Secrets::From(read)).map_err(ConfigErrors::sorted)
    }

    /// Loads a JSON config (the same keys as the TOML, e.g. what `portcullis json` writes), with
    /// each error's key path. Keys with `secret_env` are left out, as in [`Config::from_toml`].
    pub fn from_json(src: &str) -> Result<Config, ConfigErrors> {
        let raw = Self::raw_from_json(src)?;
        compile(raw, &|_| None, Secrets::Deferred)
    }

    /// Loads the config an adapter embedded: [`Config::embed`] wrote it from a checked file as
    /// Rust data that [`emit::build`] turns into this [`raw::RawConfig`]. `secret_env` keys are
    /// read with `read` (the platform's environment); an error is a missing or unusable secret,
    /// or a build that checked with other features than it was compiled with.
    pub fn from_embedded(
        data: &'static emit::Embedded,
        read: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let raw = data.raw_without_routes();
        let mut config = compile::embedded(&raw, &data.sets, read)?;
        config.routes = Routes::Embedded {
            data,
            built: (0..data.routes.len()).map(|_| Default::default()).collect(),
        };
        config.router = route::Router::from_data(std::borrow::Cow::Borrowed(&data.router));
        config.caches_responses = data.caches_responses;
        Ok(config)
    }

    /// Parses a JSON config without compiling it.
    pub fn raw_from_json(src: &str) -> Result<raw::RawConfig, ConfigErrors> {
        let de = &mut serde_json::Deserializer::from_str(src);
        serde_path_to_error::deserialize(de).map_err(|e| ConfigErrors {
            diagnostics: vec![Diagnostic {
                path: e.path().to_string().trim_start_matches('.').to_string(),
                line_col: Some((e.inner().line(), e.inner().column())),
                message: e.inner().to_string(),
            }],
        })
    }

    /// The raw form of a TOML file (for conversion to JSON), after every check passed.
    #[cfg(feature = "toml")]
    pub fn raw_from_toml(src: &str) -> Result<raw::RawConfig, ConfigErrors> {
        let (raw, locator) = locate::parse_toml(src)?;
        compile(raw.clone(), &|path| locator.find(path), Secrets::Deferred)
            .map_err(ConfigErrors::sorted)?;
        Ok(raw)
    }

    /// For adapters' build scripts: checks a TOML config exactly as `portcullis check` does and
    /// returns it as a Rust constant expression of its `'static` mirror ([`emit`]), for the
    /// adapter's `static`; [`emit::build`] makes the [`raw::RawConfig`] of it, to load with
    /// [`Config::from_embedded`]. The worker links no config parser.
    /// `built_with` says which optional parts the adapter is compiled with; a config that needs
    /// a missing one is refused. The error is the full listing.
    #[cfg(feature = "toml")]
    pub fn embed(src: &str, file: &str, built_with: BuildFeatures) -> Result<String, String> {
        let (raw, locator) = locate::parse_toml(src).map_err(|e| e.render(file))?;
        let located = |path: &str| locator.find(path);
        let compiled = compile(raw.clone(), &located, Secrets::Deferred);
        let mut errors = match &compiled {
            Ok(_) => ConfigErrors {
                diagnostics: Vec::new(),
            },
            Err(e) => e.clone(),
        };
        // the parts the adapter lacks (compile reported those this build lacks too)
        for need in features::needs(&raw) {
            if !built_with.has(need.feature) && BuildFeatures::COMPILED.has(need.feature) {
                errors.diagnostics.push(Diagnostic {
                    line_col: located(&need.path),
                    path: need.path,
                    message: need.missing,
                });
            }
        }
        match compiled {
            Ok(config) if errors.diagnostics.is_empty() => Ok(emit::rust_embedded(&raw, &config)),
            _ => {
                let listing = errors.sorted().render(file);
                Err(listing.replace("nothing was loaded", "nothing was built"))
            }
        }
    }

    /// Every origin (`scheme://host:port`) the gateway may call: upstream targets and JWKS URLs.
    pub fn outbound_origins(&self) -> Vec<String> {
        let urls = self
            .upstreams
            .iter()
            .flat_map(|u| u.targets.iter().map(|t| &t.url));
        let jwks = self.jwt.iter().filter_map(|p| p.jwks_url.as_ref());
        let mut origins: Vec<String> = urls
            .chain(jwks)
            .filter_map(|u| {
                let uri: http::Uri = u.parse().ok()?;
                let scheme = uri.scheme_str()?;
                let default = if scheme == "https" { 443 } else { 80 };
                let port = uri.port_u16().unwrap_or(default);
                Some(format!("{scheme}://{}:{port}", uri.host()?))
            })
            .collect();
        origins.sort();
        origins.dedup();
        origins
    }

    /// The origins this config calls that `allowed` (a Spin `allowed_outbound_hosts` list:
    /// `scheme://host[:port]`, where scheme, port and a leading `*.` label may be `*`) does not
    /// allow. Empty when the manifest and the config agree.
    pub fn outbound_origins_not_in(&self, allowed: &[String]) -> Vec<String> {
        self.outbound_origins()
            .into_iter()
            .filter(|o| !allowed.iter().any(|a| outbound_allowed(a, o)))
            .collect()
    }

    /// Checks a Spin manifest (`spin.toml`, manifest version 2) against this config: Spin refuses
    /// outbound calls to origins missing from the component's `allowed_outbound_hosts`, which is
    /// better found when the component is built than as a 502 in production. The error is a
    /// listing in the style of every other config error, naming each entry to add.
    #[cfg(feature = "toml")]
    pub fn check_spin_manifest(
        &self,
        manifest: &str,
        file: &str,
        component: &str,
    ) -> Result<(), String> {
        let doc: toml::Table = toml::from_str(manifest).map_err(|e| format!("{file}: {e}"))?;
        let entry = doc
            .get("component")
            .and_then(|c| c.get(component))
            .ok_or_else(|| format!("{file}: no [component.{component}]"))?;
        let allowed: Vec<String> = match entry.get("allowed_outbound_hosts") {
            None => Vec::new(),
            Some(toml::Value::Array(list)) => list
                .iter()
                .map(|v| v.as_str().map(String::from))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    format!("{file}: allowed_outbound_hosts must be a list of strings")
                })?,
            Some(_) => {
                return Err(format!(
                    "{file}: allowed_outbound_hosts must be a list of strings"
                ))
            }
        };
        let missing = self.outbound_origins_not_in(&allowed);
        if missing.is_empty() {
            return Ok(());
        }
        let mut listing = String::new();
        for origin in &missing {
            listing.push_str(&format!("{file}: component.{component}.allowed_outbound_hosts: add \"{origin}\" (the gateway config calls it)\n"));
        }
        let n = missing.len();
        listing.push_str(&format!(
            "{n} error{}; nothing was built\n",
            if n == 1 { "" } else { "s" }
        ));
        Err(listing)
    }

    /// Whether the config uses a client's country, ASN or edge location: an access list names
    /// countries or ASNs, or `log_client_geo` asks for them in the log. An adapter for which
    /// they are costly to get (on Workers, `request.cf` is a large object made on first use)
    /// can leave them out when this is false.
    pub fn needs_client_geo(&self) -> bool {
        self.client_geo
    }

    /// How many routes there are.
    pub fn route_count(&self) -> usize {
        match &self.routes {
            Routes::Built(list) => list.len(),
            Routes::Embedded { data, .. } => data.routes.len(),
        }
    }

    /// The route at `index` (in the config's order), built on first use in an adapter.
    pub fn route_at(&self, index: usize) -> &Route {
        match &self.routes {
            Routes::Built(list) => &list[index],
            Routes::Embedded { data, built } => built[index].get_or_init(|| {
                let raw = <raw::Route as emit::Embed>::build(&data.routes[index]);
                Box::new(compile::embedded_route(&raw, &data.refs[index], self))
            }),
        }
    }

    /// Each route's resolved references (empty for an embedded config).
    pub fn route_refs(&self) -> &[RouteRefs] {
        &self.route_refs
    }

    /// A route by name.
    pub fn route(&self, name: &str) -> Option<&Route> {
        let index = match &self.routes {
            Routes::Built(list) => list.iter().position(|r| r.name == name),
            Routes::Embedded { data, .. } => data.routes.iter().position(|r| r.name == name),
        };
        index.map(|i| self.route_at(i))
    }

    /// A one-line summary: `12 routes, 2 upstreams, …`.
    pub fn summary(&self) -> String {
        format!(
            "{} routes, {} upstreams, {} access lists, {} JWT providers, {} API-key sets, {} rate limits, {} plans",
            self.route_count(),
            self.upstreams.len(),
            self.access.len(),
            self.jwt.len(),
            self.api_keys.len(),
            self.rate_limits.len(),
            self.plans.len()
        )
    }
}

/// The JSON Schema of the config file.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(raw::RawConfig);
    serde_json::to_value(schema).unwrap_or_default()
}
