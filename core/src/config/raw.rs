//! The config file as written by hand: plain serde types with `deny_unknown_fields`.
//!
//! Nothing here is validated beyond its shape; [`super::compile`] checks meaning and builds the
//! fast structures. The JSON Schema of the file is generated from these types.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The JSON type some fields hold (`jwk`, `body_schema`, `set`, `claims`).
pub use serde_json::Value;

/// The whole config file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Gateway-wide settings.
    #[serde(default)]
    pub gateway: GatewaySettings,
    /// Policies applied to routes that do not name their own.
    #[serde(default)]
    pub defaults: RouteDefaults,
    /// Backends, by name.
    #[serde(default)]
    pub upstreams: BTreeMap<String, Upstream>,
    /// Allow and deny lists, by name.
    #[serde(default)]
    pub access: BTreeMap<String, AccessList>,
    /// Authentication providers.
    #[serde(default)]
    pub auth: AuthProviders,
    /// Rate-limit policies, by name.
    #[serde(default)]
    pub rate_limits: BTreeMap<String, RateLimitPolicy>,
    /// Plans, by name: what a consumer's plan (an API key's `plan`, a JWT provider's
    /// `plan_claim`) allows under the rate-limit policies it names.
    #[serde(default)]
    pub plans: BTreeMap<String, Plan>,
    /// Header, query and body transforms, by name.
    #[serde(default)]
    pub transforms: BTreeMap<String, Transform>,
    /// CORS policies, by name.
    #[serde(default)]
    pub cors: BTreeMap<String, CorsPolicy>,
    /// Routes, matched by method, host and path.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Routes made from an OpenAPI document, one per operation, added to `routes` when the
    /// config is expanded: by `portcullis check`, `explain`, `json` and `expand`, and by the
    /// Workers build (`scripts/build-worker.sh`); a loader that reads no files (the adapters'
    /// embedding, an embedder's `Config::from_toml`) refuses an unexpanded one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openapi: Option<OpenApiSource>,
    /// OpenTelemetry traces: a span per request, with a child per phase and per upstream
    /// attempt, sent as OTLP/HTTP (protobuf) to a collector after the answer
    /// (docs/observability.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<Telemetry>,
}

/// Where traces and metrics go, and which requests are traced.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Telemetry {
    /// The OpenTelemetry collector: an entry of `[upstreams]` (its targets, `timeout_ms`,
    /// `retries` and the private-address rule apply). Spans are sent to its target's URL
    /// followed by `path`, metrics followed by `metrics_path`. Without it nothing is sent over
    /// OTLP (`analytics_engine` alone).
    pub upstream: Option<String>,
    /// The path of the OTLP/HTTP traces endpoint on the collector.
    #[serde(default = "default_traces_path")]
    pub path: String,
    /// The share of requests traced, from 0 to 1, when the caller's `traceparent` did not decide:
    /// a valid one is followed (its sampled flag), and the decision goes upstream in the
    /// `traceparent` the gateway sends.
    #[serde(default = "default_share")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sample: f64,
    /// `service.name` of the exports' resource.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// `service.version` of the exports' resource: e.g. the config's revision (default: the
    /// gateway's version).
    pub service_version: Option<String>,
    /// Put the consumer's id (`portcullis.consumer`) on request spans, metric series and
    /// Analytics Engine data points. Off by default: a consumer id may identify a person, and a
    /// tracing or metrics backend is often more widely read than the access log.
    #[serde(default)]
    pub consumer_ids: bool,
    /// Headers sent with each export (a collector's API key), each a `value` or the name of an
    /// environment variable read when the gateway starts (`secret_env`).
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderSource>,
    /// On Workers, where requests share an isolate, how long a request's spans and counts may
    /// wait for others' to share one export, in milliseconds (at most 10,000; 0 sends each
    /// request's on its own). The wait runs after the answer, under `waitUntil`. On Spin each
    /// request sends its own.
    #[serde(default = "default_batch_ms")]
    pub batch_ms: u32,
    /// Send traces (of the requests `sample` and callers' `traceparent` choose) to the collector.
    #[serde(default = "default_true")]
    pub traces: bool,
    /// Send metrics of every request to the collector (OTLP, delta counts and histograms per
    /// route, method, status class and, with `consumer_ids`, consumer). On Workers they gather
    /// in the isolate for `batch_ms` as spans do; on Spin each request sends its own.
    #[serde(default = "default_true")]
    pub metrics: bool,
    /// The path of the OTLP/HTTP metrics endpoint on the collector.
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    /// On Workers, the name of a Workers Analytics Engine dataset binding (`wrangler.toml`
    /// `[[analytics_engine_datasets]]`) that gets one data point per request
    /// (docs/observability.md has its columns and example queries). Other runtimes have no such
    /// binding and ignore it.
    pub analytics_engine: Option<String>,
}

fn default_true() -> bool {
    true
}

fn default_metrics_path() -> String {
    "/v1/metrics".into()
}

fn default_batch_ms() -> u32 {
    1000
}

fn default_traces_path() -> String {
    "/v1/traces".into()
}

fn default_share() -> f64 {
    1.0
}

fn default_service_name() -> String {
    "portcullis".into()
}

/// A header's value, given or read from the environment when the gateway starts.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderSource {
    /// The value as text.
    pub value: Option<String>,
    /// Name of an environment variable that holds the value (Workers: a secret, `npx wrangler
    /// secret put NAME`; Spin: `spin up -e NAME=...`).
    pub secret_env: Option<String>,
}

/// Where a config's OpenAPI routes come from, and what each operation's route adds.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenApiSource {
    /// The OpenAPI 3.0 or 3.1 document (YAML or JSON), relative to this config file. Each of
    /// its operations becomes a route named by its `operationId`, with its parameters, body
    /// schema, media types and security (`docs/openapi.md`); what cannot be mapped is listed
    /// by `check`.
    pub spec: String,
    /// The upstream (a name in `[upstreams]`) every operation's route goes to.
    pub upstream: String,
    /// What an operation's route has besides what the document says, by `operationId`. Its
    /// `auth` replaces the document's security for that operation.
    #[serde(default)]
    pub operations: BTreeMap<String, OperationRoute>,
}

/// The route settings an operation of an OpenAPI document may add (the others come from the
/// document).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationRoute {
    /// Host the route is limited to.
    pub host: Option<String>,
    /// Authentication, instead of the document's security.
    pub auth: Option<RouteAuth>,
    /// Proxies this route believes, as a route's `trusted_proxies`.
    pub trusted_proxies: Option<Vec<String>>,
    /// Access list name.
    pub access: Option<String>,
    /// Rate limit(s), as a route's `rate_limit`.
    pub rate_limit: Option<RateLimitRef>,
    /// CORS policy name.
    pub cors: Option<String>,
    /// Response caching.
    pub cache: Option<RouteCache>,
    /// Transform applied to the request before it goes upstream.
    pub request: Option<TransformRef>,
    /// Transform applied to the response before it goes to the client.
    pub response: Option<TransformRef>,
    /// Upstream path template, with `{param}` from the operation's path.
    pub rewrite: Option<String>,
    /// Prefix removed from the path before it goes upstream.
    pub strip_prefix: Option<String>,
}

/// Gateway-wide settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// Proxies whose `X-Forwarded-For` entries are believed (CIDRs): the client is the rightmost
    /// hop that is not a trusted proxy. Empty: the header is ignored (and replaced upstream). A
    /// route may believe other proxies (its own `trusted_proxies`).
    pub trusted_proxies: Vec<String>,
    /// Header that carries the request id in and out. A valid incoming id (1–128 visible ASCII
    /// characters) is kept; otherwise one is generated.
    pub request_id_header: String,
    /// Send a `Server-Timing` header with per-phase durations.
    pub server_timing: bool,
    /// Add the client's country and ASN and the edge location to each access-log record, when
    /// the platform reports them. On Workers this reads `request.cf` for every request, which
    /// costs CPU; without it, `request.cf` is read only when an access list names countries or
    /// ASNs (and then they are logged anyway).
    pub log_client_geo: bool,
    /// The share of answers below 400 that get an access-log line, from 0 to 1, picked at random
    /// per request; answers of 400 and above are always logged. 1 logs every request. Writing a
    /// line is a large part of a proxied request's CPU time on Workers (BENCHMARKS.md), so a busy
    /// gateway may log, say, 0.01 of its successes and every failure.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub access_log_sample: f64,
    /// Size limits for requests.
    pub limits: Limits,
    /// How many verified JWTs to remember (each until it expires), so a token seen before is not
    /// verified again.
    pub token_cache_size: usize,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            request_id_header: "x-request-id".into(),
            server_timing: false,
            log_client_geo: false,
            access_log_sample: 1.0,
            limits: Limits::default(),
            token_cache_size: 10_000,
        }
    }
}

/// Request size limits.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest request target (path and query) in bytes → 414.
    pub max_uri_bytes: usize,
    /// Largest sum of header names and values in bytes → 431.
    pub max_header_bytes: usize,
    /// Largest single header line (name and value) in bytes → 431.
    pub max_header_line_bytes: usize,
    /// Largest request body in bytes → 413 (a route may set its own in `validate`).
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_uri_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
            max_header_line_bytes: 8 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// Policies applied to every route that does not name its own; a route opts out with `"none"`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteDefaults {
    /// Access list name.
    pub access: Option<String>,
    /// Rate-limit policy name.
    pub rate_limit: Option<String>,
    /// CORS policy name.
    pub cors: Option<String>,
    /// Request transform name.
    pub request: Option<String>,
    /// Response transform name.
    pub response: Option<String>,
}

/// A backend with one or more weighted targets.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Where requests go; one is picked per attempt by weight.
    pub targets: Vec<Target>,
    /// Time allowed for one attempt until the response's head arrives, in milliseconds → 504
    /// when passed. A body passed on as it streams is bounded by `idle_timeout_ms` instead.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    /// Longest gap between two chunks of a response body passed on as it streams (an event
    /// stream, a download), in milliseconds (default 60 s): past it the stream is cut, the
    /// client's body ends short and the log says so. Event streams should send something (a
    /// comment line) more often than this.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u32,
    /// Extra attempts (at most 10) after a connect error, 502, 503 or 504, for idempotent
    /// methods only (GET, HEAD, OPTIONS, PUT, DELETE, TRACE) and never for a streamed upload.
    #[serde(default)]
    pub retries: u32,
    /// Allow loopback, private, link-local, CGNAT and cloud-metadata addresses and `localhost`
    /// (local development only). The check sees IP literals and well-known names, not DNS.
    #[serde(default)]
    pub allow_private: bool,
    /// Longest response body the gateway reads, in bytes (default 8 MiB, at most 100 MiB): it
    /// reads one only to cache it or to transform its JSON, and refuses a longer one with 502
    /// rather than read it. A body passed on as it streams has no limit. (A JWKS response has
    /// its own limit, 1 MiB.)
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
}

fn default_timeout_ms() -> u32 {
    10_000
}

fn default_idle_timeout_ms() -> u32 {
    60_000
}

fn default_max_response_bytes() -> u64 {
    8 << 20
}

/// The highest `max_response_bytes` an upstream may set.
pub const MAX_RESPONSE_BYTES_LIMIT: u64 = 100 << 20;

/// One target of an upstream.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `http://` or `https://` origin, optionally with a base path.
    pub url: String,
    /// Relative share of requests.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// Allow and deny lists. Deny wins; a non-empty allow list admits only what it names.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessList {
    /// IPv4/IPv6 CIDRs (or single addresses) that may pass; an IPv4-mapped IPv6 client counts
    /// as IPv4. Lists are merged into sorted ranges when the config loads.
    #[serde(default)]
    pub allow_ips: Vec<String>,
    /// IPv4/IPv6 CIDRs (or single addresses) that are refused.
    #[serde(default)]
    pub deny_ips: Vec<String>,
    /// ISO 3166-1 alpha-2 country codes that may pass (`T1`: Tor, as Cloudflare reports it).
    #[serde(default)]
    pub allow_countries: Vec<String>,
    /// ISO 3166-1 alpha-2 country codes that are refused (`T1`: Tor, as Cloudflare reports it).
    #[serde(default)]
    pub deny_countries: Vec<String>,
    /// Autonomous system numbers that may pass.
    #[serde(default)]
    pub allow_asns: Vec<u32>,
    /// Autonomous system numbers that are refused.
    #[serde(default)]
    pub deny_asns: Vec<u32>,
}

/// Authentication providers, by kind and name.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthProviders {
    /// JWT validators.
    #[serde(default)]
    pub jwt: BTreeMap<String, JwtProvider>,
    /// API-key sets.
    #[serde(default)]
    pub api_keys: BTreeMap<String, ApiKeySet>,
}

/// What to do when a store or fetch the policy needs has failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Let the request through.
    Open,
    /// Refuse the request (503).
    Closed,
}

/// A JWT validator: inline keys, a JWKS URL, or both.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtProvider {
    /// Required `iss`.
    pub issuer: Option<String>,
    /// Accepted `aud` values; the token must name at least one. Empty: `aud` is not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Where to fetch the signing keys. The key set is kept for its `Cache-Control: max-age`,
    /// clamped to `jwks_min_ttl_s`..`jwks_max_ttl_s`; an unknown `kid` causes at most one
    /// refetch per `jwks_cooldown_s`; while the endpoint fails, the keys already known are used.
    pub jwks_url: Option<String>,
    /// Keys given in the config: HS256/384/512 secrets of at least 32/48/64 bytes, or public
    /// keys as JWKs (RSA keys under 2048 bits are refused).
    #[serde(default)]
    pub keys: Vec<InlineKey>,
    /// Clock skew allowed for `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_s: u32,
    /// Refuse tokens without `exp`.
    #[serde(default = "yes")]
    pub require_exp: bool,
    /// Header that carries the `Bearer` token.
    #[serde(default = "default_auth_header")]
    pub header: String,
    /// Shortest time a fetched JWKS is kept, whatever its Cache-Control says.
    #[serde(default = "default_jwks_min_ttl")]
    pub jwks_min_ttl_s: u32,
    /// Longest time a fetched JWKS is kept.
    #[serde(default = "default_jwks_max_ttl")]
    pub jwks_max_ttl_s: u32,
    /// Least time between two fetches caused by an unknown `kid`.
    #[serde(default = "default_jwks_cooldown")]
    pub jwks_cooldown_s: u32,
    /// Allow a JWKS URL on a private address (local development only).
    #[serde(default)]
    pub allow_private: bool,
    /// When the JWKS cannot be had at all. A fail-open provider never satisfies a route that
    /// requires scopes or claims (503), and `admin` routes refuse one.
    #[serde(default = "closed")]
    pub fail: FailMode,
    /// The claim that names the consumer. Unset: the first of `sub`, `client_id` and `azp`. A
    /// token without it has no consumer: per-consumer caches are bypassed and consumer-keyed
    /// rate limits count by client address.
    #[serde(default)]
    pub consumer_claim: Option<String>,
    /// The claim that names the consumer's plan (`[plans]`). A token without it, or naming no
    /// plan there, has the policies' own limits.
    #[serde(default)]
    pub plan_claim: Option<String>,
    /// The longest token accepted, in bytes → 401.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
}

fn default_max_token_bytes() -> usize {
    8 * 1024
}

fn default_leeway() -> u32 {
    60
}
fn yes() -> bool {
    true
}
fn default_auth_header() -> String {
    "authorization".into()
}
fn default_jwks_min_ttl() -> u32 {
    60
}
fn default_jwks_max_ttl() -> u32 {
    86_400
}
fn default_jwks_cooldown() -> u32 {
    30
}
fn closed() -> FailMode {
    FailMode::Closed
}
fn open() -> FailMode {
    FailMode::Open
}

/// JWS algorithms the gateway verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Alg {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    ES256,
    EdDSA,
}

impl Alg {
    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::ES256 => "ES256",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// HS256/384/512: verified with a shared secret rather than a public key.
    pub fn is_hmac(self) -> bool {
        matches!(self, Alg::HS256 | Alg::HS384 | Alg::HS512)
    }

    /// Parses an `alg` value.
    pub fn from_name(name: &str) -> Option<Alg> {
        Some(match name {
            "HS256" => Alg::HS256,
            "HS384" => Alg::HS384,
            "HS512" => Alg::HS512,
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "PS256" => Alg::PS256,
            "ES256" => Alg::ES256,
            "EdDSA" => Alg::EdDSA,
            _ => return None,
        })
    }
}

/// A key given in the config. HMAC keys take `secret` (or `secret_base64`); others take `jwk`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InlineKey {
    /// Matches the token's `kid`; a key without one is tried for tokens without `kid`.
    pub kid: Option<String>,
    /// The one algorithm this key verifies.
    pub alg: Alg,
    /// HMAC secret as text.
    pub secret: Option<String>,
    /// HMAC secret as base64 (standard or URL-safe).
    pub secret_base64: Option<String>,
    /// Name of an environment variable that holds the HMAC secret as text, read when the
    /// gateway starts, so the secret stays out of the config and the build (Workers: a secret,
    /// `npx wrangler secret put NAME`; Spin: `spin up -e NAME=...`).
    pub secret_env: Option<String>,
    /// Public key as a JSON Web Key (RSA, EC P-256 or OKP Ed25519).
    #[schemars(with = "Option<BTreeMap<String, String>>")]
    pub jwk: Option<serde_json::Value>,
}

/// API keys, read from a header or a query parameter and compared by SHA-256.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySet {
    /// Header that carries the key (default `x-api-key` when `query` is unset).
    pub header: Option<String>,
    /// Query parameter that carries the key.
    pub query: Option<String>,
    /// The known keys.
    pub keys: Vec<ApiKey>,
}

/// One API key, stored as the hex SHA-256 of the key.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// Who the key belongs to; becomes the request's consumer.
    pub consumer: String,
    /// Lowercase hex SHA-256 of the key (`printf %s KEY | sha256sum`).
    pub sha256: String,
    /// The key's plan (`[plans]`), if it has one.
    pub plan: Option<String>,
    /// Scopes the key grants.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// A rate limit: `limit` requests per `period_s`, bursts up to `burst` (default `limit`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitPolicy {
    /// What is counted: `ip`, `consumer`, `route`, `claim:NAME` or `header:NAME`.
    pub key: String,
    /// Requests allowed per period (1 to 10⁹).
    pub limit: u64,
    /// Period in seconds (1 s to one year). Give this or `period`.
    pub period_s: Option<u64>,
    /// A calendar period in UTC instead of `period_s`: a quota of `limit` per `day` or `month`,
    /// counted afresh from the first millisecond of each.
    pub period: Option<CalendarPeriod>,
    /// How requests are counted: `gcra` (default) or `sliding_window`.
    #[serde(default)]
    pub algorithm: LimitAlgorithm,
    /// Requests allowed at once after a quiet period (default: `limit`); `gcra` only.
    pub burst: Option<u64>,
    /// Counters each key is split over (1–64, at most `limit` and `burst`; default 1): for keys
    /// hotter than one counter serves.
    /// Each shard holds an equal part of `limit` and `burst`, and a request is charged to one
    /// at random, so the policy is never exceeded but a client may be refused while another
    /// shard still has room.
    #[schemars(range(min = 1, max = 64))]
    pub shards: Option<u32>,
    /// When the counter store fails.
    #[serde(default = "open")]
    pub fail: FailMode,
    /// Prefix length an IPv4 `ip` key aggregates to (default 32: each address).
    #[schemars(range(min = 1, max = 32))]
    pub ipv4_prefix: Option<u8>,
    /// Prefix length an IPv6 `ip` key aggregates to (default 64: a client's usual allocation,
    /// which holds 2^64 addresses).
    #[schemars(range(min = 1, max = 128))]
    pub ipv6_prefix: Option<u8>,
}

/// A calendar period of a quota, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CalendarPeriod {
    /// From 00:00 UTC to the next.
    Day,
    /// From the first of a month, 00:00 UTC, to the first of the next.
    Month,
}

/// A plan: for each rate-limit policy it names, the limit its consumers have instead of the
/// policy's own (`{ monthly = 100000, per_second = 50 }`). A policy it does not name applies
/// as written.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Policy name → the plan's limit under it (1 to 10⁹).
    pub limits: BTreeMap<String, u64>,
}

/// How a rate limit counts requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitAlgorithm {
    /// Generic cell rate algorithm: one request every `period_s / limit`, up to `burst` at once.
    /// It spaces requests evenly and never admits more than `burst + limit × W / period` in a
    /// window of `W`.
    #[default]
    Gcra,
    /// Sliding-window counter, as Cloudflare and Kong count: periods aligned to Unix time,
    /// and a request is admitted while the previous period's count, weighted by how much of it
    /// still overlaps the last `period_s`, plus this period's count stays within `limit`. No
    /// aligned period ever admits more than `limit`; any `period_s` at most twice that.
    SlidingWindow,
}

/// Header, query and JSON body changes. Header values may use `{consumer}`, `{route}`,
/// `{request_id}` and `{client_ip}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Transform {
    /// Headers to set, replacing any value.
    #[serde(default)]
    pub set_headers: BTreeMap<String, String>,
    /// Headers to append.
    #[serde(default)]
    pub add_headers: BTreeMap<String, String>,
    /// Headers to remove.
    #[serde(default)]
    pub remove_headers: Vec<String>,
    /// Headers to rename: `{ old = "new" }`.
    #[serde(default)]
    pub rename_headers: BTreeMap<String, String>,
    /// Query parameters to set (requests only).
    #[serde(default)]
    pub set_query: BTreeMap<String, String>,
    /// Query parameters to remove (requests only).
    #[serde(default)]
    pub remove_query: Vec<String>,
    /// JSON body edits, by JSON pointer.
    pub json: Option<JsonEdit>,
}

/// JSON body edits by JSON pointer (RFC 6901).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonEdit {
    /// Values to set: `{ "/a/b" = 1 }`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub set: BTreeMap<String, serde_json::Value>,
    /// Pointers to remove.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Moves: `{ "/old" = "/new" }`.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
}

/// The rate-limit policies a route counts against: one by name (each request costing 1), one
/// with what each of the route's requests costs, or a list of those, all applied.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum RateLimitRef {
    /// The name of a `[rate_limits]` entry (or `"none"`); a request costs 1.
    Named(String),
    /// A policy and the cost of each request.
    Charged(RateLimitCharge),
    /// Several policies, each a name or a table, all applied: a request is admitted only if
    /// every one admits it, and charged to each only then.
    Several(#[schemars(with = "Vec<RateLimitItem>")] Vec<RateLimitRef>),
}

/// One entry of a list of rate limits (for the schema: a list holds no lists, which reading
/// refuses).
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // only its schema is used
enum RateLimitItem {
    /// The name of a `[rate_limits]` entry; a request costs 1.
    Named(String),
    /// A policy and the cost of each request.
    Charged(RateLimitCharge),
}

impl RateLimitRef {
    /// Each policy named, with what a request costs against it, the key path of its entry below
    /// the route (`rate_limit`, `rate_limit[1]`) and whether that entry is a table (its name is
    /// then at `.policy`).
    pub fn charges(&self) -> Vec<(&str, u32, String, bool)> {
        fn one(r: &RateLimitRef, at: String) -> Option<(&str, u32, String, bool)> {
            match r {
                RateLimitRef::Named(name) => Some((name, 1, at, false)),
                RateLimitRef::Charged(c) => Some((&c.policy, c.cost, at, true)),
                RateLimitRef::Several(_) => None, // refused when read
            }
        }
        match self {
            RateLimitRef::Several(list) => list
                .iter()
                .enumerate()
                .filter_map(|(i, r)| one(r, format!("rate_limit[{i}]")))
                .collect(),
            single => one(single, "rate_limit".into()).into_iter().collect(),
        }
    }
}

/// A string, a table or a list of those, each with its own errors (an untagged enum would only
/// say that none matched: a misspelt `cost` must be named).
impl<'de> Deserialize<'de> for RateLimitRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit {
            in_list: bool,
        }
        impl<'de> serde::de::DeserializeSeed<'de> for Visit {
            type Value = RateLimitRef;
            fn deserialize<D: serde::Deserializer<'de>>(
                self,
                d: D,
            ) -> Result<RateLimitRef, D::Error> {
                d.deserialize_any(self)
            }
        }
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = RateLimitRef;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(match self.in_list {
                    false => "a policy name, a table with `policy` and `cost`, or a list of those",
                    true => "a policy name or a table with `policy` and `cost`",
                })
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<RateLimitRef, E> {
                Ok(RateLimitRef::Named(name.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RateLimitRef, A::Error> {
                let table = serde::de::value::MapAccessDeserializer::new(map);
                RateLimitCharge::deserialize(table).map(RateLimitRef::Charged)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RateLimitRef, A::Error> {
                if self.in_list {
                    return Err(serde::de::Error::invalid_type(
                        serde::de::Unexpected::Seq,
                        &self,
                    ));
                }
                let mut list = Vec::new();
                while let Some(item) = seq.next_element_seed(Visit { in_list: true })? {
                    list.push(item);
                }
                Ok(RateLimitRef::Several(list))
            }
        }
        d.deserialize_any(Visit { in_list: false })
    }
}

/// A route's charge against a rate-limit policy. Routes that name one policy share its budget,
/// each charging its own cost: with `limit = 100`, a route costing 5 may be called 20 times, or
/// 10 times alongside 50 calls of a route costing 1.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitCharge {
    /// The name of a `[rate_limits]` entry.
    pub policy: String,
    /// What each request of the route costs, from 1 to what the policy admits at once (its
    /// `burst`, divided by its `shards` and rounded down).
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub cost: u32,
}

/// A transform named in `[transforms]`, or written in place.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum TransformRef {
    /// The name of a `[transforms]` entry (or `"none"`).
    Named(String),
    /// A transform written in place.
    Inline(Box<Transform>),
}

/// A CORS policy; preflights are answered at the gateway.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CorsPolicy {
    /// Origins allowed (`"*"` for any).
    pub allow_origins: Vec<String>,
    /// Methods allowed in preflights (default: the route's methods).
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Request headers allowed in preflights.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Response headers the browser may read.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// How long a preflight may be cached, in seconds.
    pub max_age_s: Option<u32>,
    /// Allow cookies and credentials (not with `"*"`).
    #[serde(default)]
    pub allow_credentials: bool,
}

/// One route.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Unique name, used in logs and as a rate-limit key.
    pub name: String,
    /// Methods matched; empty matches every method. `HEAD` is served by a `GET` route.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Host matched (exact, case-insensitive, port ignored); unset matches any host.
    pub host: Option<String>,
    /// Path pattern (matchit): `/users/{id}`, `/files/{*rest}`; in normal form (no `//`, `.`
    /// or `..` segments).
    pub path: String,
    /// Upstream name (or use `respond`).
    pub upstream: Option<String>,
    /// Answer at the gateway without a backend.
    pub respond: Option<Respond>,
    /// Run an operator's action at the gateway (instead of `upstream` or `respond`). The route
    /// must have `auth` and may only take methods that change state (e.g. `POST`); see
    /// "Purging the cache" in docs/policies.md.
    pub admin: Option<AdminAction>,
    /// Upstream path template, with `{param}` from the path pattern.
    pub rewrite: Option<String>,
    /// Prefix removed from the path before it goes upstream.
    pub strip_prefix: Option<String>,
    /// Pass WebSocket upgrades through to the upstream (Workers only: wasi:http has no
    /// upgrades). The handshake goes through every check a request does (auth, rate limit);
    /// once upgraded, the messages pass untouched.
    #[serde(default)]
    pub websocket: bool,
    /// Who may call the route.
    pub auth: Option<RouteAuth>,
    /// Proxies whose `X-Forwarded-For` entries this route believes (CIDRs), instead of
    /// `[gateway] trusted_proxies`: a route behind a CDN may believe the CDN's ranges while
    /// the others trust only the connection. `[]` believes none. The route's access list, rate
    /// limit, log and forwarded headers see the client this gives; answers made before a route
    /// is found (a malformed request, no route) use the gateway's.
    pub trusted_proxies: Option<Vec<String>>,
    /// Access list name (or `"none"`).
    pub access: Option<String>,
    /// Rate-limit policy name (or `"none"`), each request costing 1; or the policy and what each
    /// of the route's requests costs against it: `{ policy = "compute", cost = 5 }`; or a list of
    /// those, all applied (`["per_second", "per_day"]`): a request is admitted only if every one
    /// admits it.
    pub rate_limit: Option<RateLimitRef>,
    /// CORS policy name (or `"none"`).
    pub cors: Option<String>,
    /// Response caching.
    pub cache: Option<RouteCache>,
    /// Request checks.
    pub validate: Option<Validation>,
    /// Transform applied to the request before it goes upstream.
    pub request: Option<TransformRef>,
    /// Transform applied to the response before it goes to the client.
    pub response: Option<TransformRef>,
}

/// An operator's action that a route runs at the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AdminAction {
    /// Move every cached response to a new cache generation, so none is served again.
    PurgeCache,
}

/// A response made at the gateway.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Respond {
    /// Status code.
    #[serde(default = "ok_status")]
    pub status: u16,
    /// Body text.
    #[serde(default)]
    pub body: String,
    /// Response headers (e.g. `location` for redirects, `content-type`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn ok_status() -> u16 {
    200
}

/// Route authentication and authorization.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteAuth {
    /// JWT provider name.
    pub jwt: Option<String>,
    /// API-key set name.
    pub api_key: Option<String>,
    /// Scopes all required (from `scope`/`scp`, or the API key's scopes).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Claims that must hold: a value, or a list of which one must match.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub claims: BTreeMap<String, serde_json::Value>,
}

/// Response caching for a route.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteCache {
    /// Freshness when the backend gives none, in seconds.
    pub ttl_s: u32,
    /// Request headers that are part of the key.
    #[serde(default)]
    pub key_headers: Vec<String>,
    /// Key the cache per consumer, which allows caching authenticated responses.
    #[serde(default)]
    pub per_consumer: bool,
    /// When the cache store fails: `open` goes to the backend, `closed` answers 503.
    #[serde(default = "open")]
    pub fail: FailMode,
    /// Longest response body stored, in bytes (default 8 MiB, at most 25 MiB, Workers KV's
    /// value limit). A response streams to the client while a copy goes to the store; one
    /// longer than this is passed on and not stored (the log says so).
    #[serde(default = "default_cache_max_bytes")]
    pub max_bytes: u64,
    /// How long after a stored answer goes stale it may still be served when the upstream
    /// fails (no answer, or 500, 502, 503, 504), in seconds, where the upstream's own
    /// `stale-if-error` (RFC 5861) does not say and it does not forbid serving stale
    /// (`no-cache`, `must-revalidate`, `proxy-revalidate`, `s-maxage`). Default 0: only when
    /// the upstream says so.
    #[serde(default)]
    #[schemars(range(max = 31536000))]
    pub stale_if_error_s: u32,
    /// How long after a stored answer goes stale it may still be served while the gateway
    /// refreshes it in the background, in seconds, where the upstream's own
    /// `stale-while-revalidate` (RFC 5861) does not say and it does not forbid serving stale
    /// (as for `stale_if_error_s`). The first request to find it stale starts one refresh (on
    /// Workers under `waitUntil`, on Spin in the request's task once the handler has returned);
    /// the others are served the stale answer meanwhile. Default 0: only when the upstream says so.
    #[serde(default)]
    #[schemars(range(max = 31536000))]
    pub stale_while_revalidate_s: u32,
    /// Cache tags every answer stored for this route carries, besides those the upstream names
    /// in `Cache-Tag`: an admin `purge_cache` request naming one of them purges them (at most
    /// 8 tags per answer; 1 to 128 visible ASCII characters other than `,`; compared without
    /// regard to case).
    #[serde(default)]
    pub tags: Vec<String>,
}

fn default_cache_max_bytes() -> u64 {
    8 << 20
}

/// The highest `cache.max_bytes` a route may set.
pub const CACHE_MAX_BYTES_LIMIT: u64 = 25 << 20;

/// Request checks for a route.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Validation {
    /// Path parameters by name.
    #[serde(default)]
    pub path: BTreeMap<String, ParamSpec>,
    /// Query parameters by name.
    #[serde(default)]
    pub query: BTreeMap<String, ParamSpec>,
    /// Headers by name.
    #[serde(default)]
    pub headers: BTreeMap<String, ParamSpec>,
    /// Accepted request content types (media type only) → 415.
    #[serde(default)]
    pub content_types: Vec<String>,
    /// JSON Schema the request body must satisfy (the `jsonschema` crate; a worker links it only
    /// when its config uses it).
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub body_schema: Option<serde_json::Value>,
    /// Largest body for this route (overrides `gateway.limits.max_body_bytes`).
    pub max_body_bytes: Option<usize>,
}

/// A parameter rule: a type name, or a table.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ParamSpec {
    /// Just the type: `"int"`, `"uuid"`…
    Type(ParamType),
    /// The full rule.
    Rule(ParamRule),
}

/// Parameter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    String,
    Int,
    Number,
    Bool,
    Uuid,
}

/// A full parameter rule.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamRule {
    /// Value type (default `string`).
    #[serde(rename = "type", default = "string_type")]
    pub kind: ParamType,
    /// The parameter must be present (path parameters always are).
    #[serde(default)]
    pub required: bool,
    /// Least value (numbers) or length (strings).
    pub min: Option<f64>,
    /// Greatest value (numbers) or length (strings).
    pub max: Option<f64>,
    /// Allowed values.
    #[serde(rename = "enum", default)]
    pub one_of: Vec<String>,
    /// Regular expression the value must contain a match of; anchor it (`^...$`) to match
    /// the whole value.
    pub pattern: Option<String>,
}

fn string_type() -> ParamType {
    ParamType::String
}
