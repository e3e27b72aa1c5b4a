//! Response caching: the cache key, whether a request may use the cache at all, and storability
//! and freshness per RFC 9111 (by `http-cache-semantics`, evaluated as a shared cache).
//!
//! Never shares a response to a request that carried a credential the route knows
//! (`Authorization`, `Cookie`, its API-key header or query parameter) or came from an
//! authenticated consumer, nor a response with `Set-Cookie`, `private` or `no-store`, unless the
//! route keys the cache per consumer; then a consumer without an id bypasses the cache. The key
//! holds every input the gateway forwards that can change the answer (scheme, authority, path,
//! query, the route's key headers, the consumer), each length-prefixed so that no two requests
//! share a key. Freshness values an upstream or client sends are clamped to RFC 9111's 2^31
//! seconds before the rules see them. A `POST`, `PUT`, `PATCH` or `DELETE` answered 2xx/3xx
//! invalidates its target URI and its `Location`/`Content-Location` on the same authority
//! (RFC 9111 §4.4) with a marker the lookup checks. Purging bumps a generation number that is
//! part of every key. Pure: the gateway reads and writes the store.
//!
//! Storing and serving sit behind the `response-cache` cargo feature (on by default; the
//! Workers build turns it on when the config caches a route): without it a config with `cache`
//! on a route fails to load.

use crate::config::diag::{header_name, refuse, Errs};
use crate::config::raw;
#[cfg(feature = "response-cache")]
use crate::host::UnixMillis;
use crate::store::{Kind, StoreKey};
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request};
#[cfg(feature = "response-cache")]
use http::{Response, StatusCode};
#[cfg(feature = "response-cache")]
use http_cache_semantics::{BeforeRequest, CacheOptions, CachePolicy};
#[cfg(feature = "response-cache")]
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
#[cfg(feature = "response-cache")]
use std::time::{Duration, SystemTime};

/// A route's cache settings.
#[derive(Debug, Clone)]
pub struct CacheRule {
    /// Freshness when the backend gives none, for the statuses RFC 9111 lets a cache choose a
    /// lifetime for (§4.2.2: 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501).
    pub ttl_s: u32,
    pub key_headers: Vec<HeaderName>,
    pub per_consumer: bool,
    /// Go to the backend when the store fails (else 503).
    pub fail_open: bool,
    /// Request headers beside `Authorization` and `Cookie` that carry a credential the route
    /// knows (its API-key header).
    pub credential_headers: Vec<HeaderName>,
    /// Query parameters that carry a credential the route knows (its API-key parameter).
    pub credential_query: Vec<String>,
    /// The longest body stored.
    pub max_bytes: usize,
    /// How long a stale answer may serve an upstream failure where the upstream does not say.
    pub stale_if_error_s: u32,
    /// How long a stale answer may be served while it is refreshed in the background, where
    /// the upstream does not say.
    pub stale_while_revalidate_s: u32,
    /// The tags every stored answer of the route carries (normalized), besides its `Cache-Tag`.
    pub tags: Vec<String>,
}

/// The most cache tags one stored answer may carry (the route's and its `Cache-Tag`'s): a hit
/// reads one purge marker per tag.
pub const MAX_TAGS: usize = 8;

/// The longest cache tag, in bytes.
pub const MAX_TAG_BYTES: usize = 128;

/// The upstream's header naming an answer's cache tags (comma-separated, as Cloudflare's).
pub const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

/// A cache tag as stored and compared: 1 to [`MAX_TAG_BYTES`] visible ASCII characters other
/// than `,` (surrounding whitespace trimmed), lowercased, since tags match without regard to
/// case. For anything else, why it is not one.
pub fn normalize_tag(tag: &str) -> Result<String, String> {
    let trimmed = tag.trim();
    let visible = |b: &u8| (0x21..=0x7e).contains(b) && *b != b',';
    match (1..=MAX_TAG_BYTES).contains(&trimmed.len()) && trimmed.bytes().all(|b| visible(&b)) {
        true => Ok(trimmed.to_ascii_lowercase()),
        false => Err(format!(
            "{tag:?} is not a cache tag: 1 to {MAX_TAG_BYTES} visible ASCII characters other than ','"
        )),
    }
}

/// The store key of a tag's purge marker in cache generation `generation` (the tag hashed, so
/// that no tag can name another key).
pub fn tag_key(generation: u64, tag: &str) -> StoreKey {
    let mut h = Sha256::new();
    field(&mut h, tag.as_bytes());
    let tag = hex::encode(h.finalize());
    StoreKey::new(Kind::Cache, format_args!("tag:{generation}:{tag}"))
}

/// The store key of the marker saying when a refresh of the entry at `key` began
/// (`stale-while-revalidate`), which other isolates and instances leave it to.
pub fn refresh_key(key: &CacheKey) -> StoreKey {
    let entry = key.entry.as_str();
    let name = entry.strip_prefix(Kind::Cache.prefix()).unwrap_or(entry);
    StoreKey::new(Kind::Cache, format_args!("refresh:{name}"))
}

/// The store key holding the current cache generation.
pub const GENERATION_KEY: StoreKey = StoreKey::fixed(Kind::Gateway, "portcullis:cache-generation");

/// The longest a cached entry or an invalidation marker is kept, in seconds (a year).
pub const MAX_TTL_S: u32 = 365 * 86_400;

/// RFC 9111 §1.2.2: a delta-seconds value over 2^31 is taken as 2^31.
const DELTA_SECONDS_MAX: u64 = 1 << 31;

/// Where a request's answer is kept: the entry's store key, and the key of the marker that
/// invalidates every entry for the same URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    pub entry: StoreKey,
    pub invalidation: StoreKey,
}

#[cfg(feature = "response-cache")]
fn at(now: UnixMillis) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(now)
}

/// Adds a field to a key's hash with its length first, so that no field's bytes can pass for
/// another field's or a separator.
fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// The hash of what names the resource: scheme, authority, path and the query's pairs in order.
fn uri_hash(uri: &http::Uri) -> [u8; 32] {
    let mut h = Sha256::new();
    field(&mut h, uri.scheme_str().unwrap_or("").as_bytes());
    field(
        &mut h,
        uri.authority().map_or("", |a| a.as_str()).as_bytes(),
    );
    field(&mut h, uri.path().as_bytes());
    let mut query: Vec<(String, String)> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    query.sort();
    h.update((query.len() as u64).to_be_bytes());
    for (k, v) in &query {
        field(&mut h, k.as_bytes());
        field(&mut h, v.as_bytes());
    }
    h.finalize().into()
}

/// The key of the marker that invalidates the entries for `uri` (scheme, authority, path, query).
pub fn invalidation_key(generation: u64, uri: &http::Uri) -> StoreKey {
    let uri = hex::encode(uri_hash(uri));
    StoreKey::new(Kind::Cache, format_args!("inv:{generation}:{uri}"))
}

/// Whether the request carries a credential the route knows.
fn has_credentials(rule: &CacheRule, req: &Request<Bytes>) -> bool {
    let h = req.headers();
    h.contains_key(header::AUTHORIZATION)
        || h.contains_key(header::COOKIE)
        || rule.credential_headers.iter().any(|n| h.contains_key(n))
        || (!rule.credential_query.is_empty()
            && req.uri().query().is_some_and(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .any(|(k, _)| rule.credential_query.iter().any(|c| *c == k))
            }))
}

/// The cache key for a request (its URI absolute: scheme and authority as the gateway forwards
/// them), or why it bypasses the cache. `consumer` is the authenticated consumer's id, `None`
/// for a request with no consumer or a consumer without an id.
pub fn key(
    rule: &CacheRule,
    generation: u64,
    route: &str,
    req: &Request<Bytes>,
    consumer: Option<&str>,
) -> Result<CacheKey, &'static str> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Err("method");
    }
    let credentialed = has_credentials(rule, req);
    if rule.per_consumer {
        if credentialed && consumer.is_none() {
            return Err("no-consumer-id");
        }
    } else if credentialed || consumer.is_some() {
        return Err("authenticated");
    }
    if cache_control_has(req.headers(), "no-store") {
        return Err("no-store");
    }
    let uri = uri_hash(req.uri());
    let mut h = Sha256::new();
    h.update(uri);
    field(&mut h, route.as_bytes());
    h.update((rule.key_headers.len() as u64).to_be_bytes());
    for name in &rule.key_headers {
        let values = req.headers().get_all(name);
        h.update((values.iter().count() as u64).to_be_bytes());
        for v in values {
            field(&mut h, v.as_bytes());
        }
    }
    if rule.per_consumer {
        field(&mut h, consumer.unwrap_or("").as_bytes());
    }
    Ok(CacheKey {
        entry: StoreKey::new(
            Kind::Cache,
            format_args!("{generation}:{}", hex::encode(h.finalize())),
        ),
        invalidation: StoreKey::new(
            Kind::Cache,
            format_args!("inv:{generation}:{}", hex::encode(uri)),
        ),
    })
}

fn cache_control_has(headers: &HeaderMap, directive: &str) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| {
            d.trim()
                .split('=')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(directive))
        })
}

/// Clamps what the freshness rules compute with: each numeric `Cache-Control` argument and
/// `Age` to 2^31 seconds (RFC 9111 §1.2.2); an `Age` that is not a number is removed. An
/// upstream (or client) value can then never overflow the rules' arithmetic.
pub fn clamp_freshness(headers: &mut HeaderMap) {
    let clamp_number = |n: &str| -> Option<u64> {
        let n = n.trim().trim_matches('"');
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(n.parse::<u64>().unwrap_or(u64::MAX).min(DELTA_SECONDS_MAX))
    };
    if let Some(age) = headers.get(header::AGE) {
        let clamped = age.to_str().ok().and_then(clamp_number);
        match clamped {
            Some(n) => {
                headers.insert(header::AGE, HeaderValue::from(n));
            }
            None => {
                headers.remove(header::AGE);
            }
        }
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        return;
    }
    let directives: Vec<String> = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| match d.split_once('=') {
            Some((name, arg)) => match clamp_number(arg) {
                Some(n) => format!("{}={n}", name.trim()),
                None if arg.trim().bytes().any(|b| b.is_ascii_digit()) && !arg.contains('"') => {
                    // a number that is not one (`max-age=-1`, `max-age=1e9`): stale at once
                    format!("{}=0", name.trim())
                }
                None => d.trim().to_string(),
            },
            None => d.trim().to_string(),
        })
        .filter(|d| !d.is_empty())
        .collect();
    headers.remove(header::CACHE_CONTROL);
    if let Ok(v) = HeaderValue::from_str(&directives.join(", ")) {
        headers.insert(header::CACHE_CONTROL, v);
    }
}

/// The most variants kept for one key when the upstream answers with `Vary`: a client choosing
/// new `Accept-Language` values cannot fill the store; the oldest variant makes way.
pub const MAX_VARIANTS: usize = 16;

/// The request header codings a cache tells apart: `Accept-Encoding` reduced to the set of
/// codings it accepts (q > 0) among `br`, `deflate`, `gzip` and `zstd`, in that order, joined by
/// commas (`""` for none). `gzip, deflate, br` and `br;q=1, gzip, deflate` are one variant, as
/// they are to an upstream choosing among those codings (and Workers rewrites the header on the
/// way out in any case).
pub fn normalized_accept_encoding(headers: &HeaderMap) -> String {
    let mut accepted = [false; 4];
    for item in (headers.get_all(header::ACCEPT_ENCODING).iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if let Some(i) = ["br", "deflate", "gzip", "zstd"]
            .iter()
            .position(|c| *c == coding)
        {
            accepted[i] |= !refused;
        }
    }
    let names = ["br", "deflate", "gzip", "zstd"];
    let chosen: Vec<&str> = (0..4).filter(|i| accepted[*i]).map(|i| names[i]).collect();
    chosen.join(",")
}

/// The request header names a response varies on (`Vary`, lowercase, sorted, once each);
/// `None` when it names none (or `*`, which is never stored).
pub fn vary_names(headers: &HeaderMap) -> Option<Vec<String>> {
    let mut names: Vec<String> = (headers.get_all(header::VARY).iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    (!names.is_empty() && !names.iter().any(|n| n == "*")).then_some(names)
}

/// The variant of a request under `names`: a hash of its values of those headers
/// (`Accept-Encoding` as [`normalized_accept_encoding`]), each length-prefixed.
pub fn variant_id(names: &[String], req: &Request<Bytes>) -> String {
    let mut h = Sha256::new();
    for name in names {
        field(&mut h, name.as_bytes());
        if name == "accept-encoding" {
            field(&mut h, normalized_accept_encoding(req.headers()).as_bytes());
            continue;
        }
        let values = req.headers().get_all(name.as_str());
        h.update((values.iter().count() as u64).to_be_bytes());
        for v in values {
            field(&mut h, v.as_bytes());
        }
    }
    hex::encode(&h.finalize()[..16])
}

/// What a key holds when its answers vary: the header names, the variants stored (oldest
/// first, at most [`MAX_VARIANTS`]) and when the longest-lived of them expires. Each variant is
/// stored under its own key ([`VaryRecord::variant_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaryRecord {
    pub names: Vec<String>,
    pub variants: Vec<String>,
    pub expires_ms: u64,
}

/// What a stored record starts with (a response entry starts with its JSON head, `{`).
const VARY_MARK: &[u8] = b"vary\n";

impl VaryRecord {
    /// The stored form: `vary`, then lines of the names, the variants and the expiry.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = VARY_MARK.to_vec();
        out.extend_from_slice(self.names.join(",").as_bytes());
        out.push(b'\n');
        out.extend_from_slice(self.variants.join(",").as_bytes());
        out.push(b'\n');
        out.extend_from_slice(self.expires_ms.to_string().as_bytes());
        out
    }

    /// The record a stored value holds, if it is one.
    pub fn decode(stored: &[u8]) -> Option<VaryRecord> {
        let text = std::str::from_utf8(stored.strip_prefix(VARY_MARK)?).ok()?;
        let mut lines = text.split('\n');
        let list = |l: &str| -> Vec<String> {
            l.split(',')
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect()
        };
        let names = list(lines.next()?);
        let variants = list(lines.next()?);
        let expires_ms = lines.next()?.parse().ok()?;
        (!names.is_empty() && lines.next().is_none()).then_some(VaryRecord {
            names,
            variants,
            expires_ms,
        })
    }

    /// The key variant `id` of `key`'s entry is stored under.
    pub fn variant_key(key: &CacheKey, id: &str) -> StoreKey {
        StoreKey::new(
            Kind::Cache,
            format_args!(
                "{}:v:{id}",
                key.entry.as_str().trim_start_matches(Kind::Cache.prefix())
            ),
        )
    }

    /// This record with variant `id` (stored at `now`, kept `ttl_s`) added as the newest; the
    /// oldest goes when there are more than [`MAX_VARIANTS`]. A record for other header names
    /// (the upstream changed its `Vary`) starts over.
    pub fn with(
        previous: Option<VaryRecord>,
        names: Vec<String>,
        id: String,
        now: u64,
        ttl_s: u32,
    ) -> VaryRecord {
        let expires = now.saturating_add(u64::from(ttl_s) * 1000);
        let mut record = match previous {
            Some(r) if r.names == names && r.expires_ms > now => r,
            _ => VaryRecord {
                names,
                variants: Vec::new(),
                expires_ms: 0,
            },
        };
        record.variants.retain(|v| *v != id);
        record.variants.push(id);
        if record.variants.len() > MAX_VARIANTS {
            record.variants.remove(0);
        }
        record.expires_ms = record.expires_ms.max(expires);
        record
    }

    /// How long the record must be kept from `now` (s): as long as its longest-lived variant.
    pub fn ttl_s(&self, now: u64) -> u32 {
        let s = self.expires_ms.saturating_sub(now).div_ceil(1000);
        u32::try_from(s).unwrap_or(MAX_TTL_S).clamp(1, MAX_TTL_S)
    }
}

/// The statuses a cache may give a lifetime the response does not state (RFC 9111 §4.2.2,
/// RFC 9110 §15.1).
#[cfg(feature = "response-cache")]
fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

#[cfg(feature = "response-cache")]
/// A stored response: the policy (with the request it answered, for `Vary`), when it was
/// stored, and the body.
#[derive(Serialize, Deserialize)]
struct Meta {
    policy: CachePolicy,
    stored_ms: u64,
    status: u16,
    headers: Vec<(String, String)>,
    /// When it goes stale, and how long after that it may serve an upstream failure (entries
    /// stored before these were kept have neither: never served stale).
    #[serde(default)]
    fresh_until_ms: u64,
    #[serde(default)]
    stale_if_error_s: u64,
    /// How long after going stale it may be served while it is refreshed.
    #[serde(default)]
    stale_while_revalidate_s: u64,
    /// Its cache tags (normalized), whose purge markers it is checked against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
}

#[cfg(feature = "response-cache")]
/// A stored entry read back: its head and its body.
pub struct Stored {
    meta: Meta,
    body: Bytes,
}

#[cfg(feature = "response-cache")]
impl Stored {
    /// A stored entry's head and body (`None` for bytes that are not one).
    pub fn parse(stored: &[u8]) -> Option<Stored> {
        let split = stored.iter().position(|b| *b == b'\n')?;
        let meta: Meta = serde_json::from_slice(&stored[..split]).ok()?;
        let body = Bytes::copy_from_slice(&stored[split + 1..]);
        Some(Stored { meta, body })
    }

    /// When the entry was stored (ms).
    pub fn stored_ms(&self) -> u64 {
        self.meta.stored_ms
    }

    /// The entry's cache tags.
    pub fn tags(&self) -> &[String] {
        &self.meta.tags
    }

    /// Whether a purge or an unsafe request marked at `marked` (ms) hides it: it was stored
    /// then or before.
    fn hidden_by(&self, marked: Option<u64>) -> bool {
        marked.is_some_and(|t| self.meta.stored_ms <= t)
    }
}

#[cfg(feature = "response-cache")]
/// The tags of an answer: the route's, then those its `Cache-Tag` names, without repeats.
/// `None` when one is not a tag ([`normalize_tag`]) or there are more than [`MAX_TAGS`]: such
/// an answer could not be purged by all its tags, so it is not stored.
fn answer_tags(rule: &CacheRule, h: &HeaderMap) -> Option<Vec<String>> {
    let mut tags = rule.tags.clone();
    for value in h.get_all(&CACHE_TAG) {
        let value = value.to_str().ok()?;
        for tag in value.split(',').filter(|t| !t.trim().is_empty()) {
            let tag = normalize_tag(tag).ok()?;
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
    }
    (tags.len() <= MAX_TAGS).then_some(tags)
}

#[cfg(feature = "response-cache")]
/// The request as the freshness rules see it: the method GET, no `Authorization` (per-consumer
/// keys already separate consumers), freshness values clamped.
fn policy_request(req: &Request<Bytes>) -> Request<()> {
    let mut policy_req = Request::new(());
    *policy_req.method_mut() = Method::GET;
    *policy_req.uri_mut() = req.uri().clone();
    *policy_req.headers_mut() = req.headers().clone();
    policy_req.headers_mut().remove(header::AUTHORIZATION);
    clamp_freshness(policy_req.headers_mut());
    // one variant for every list of the same codings, as the variant's key has it
    if policy_req.headers().contains_key(header::ACCEPT_ENCODING) {
        let codings = normalized_accept_encoding(policy_req.headers());
        if let Ok(v) = HeaderValue::from_str(&codings) {
            policy_req.headers_mut().insert(header::ACCEPT_ENCODING, v);
        }
    }
    policy_req
}

#[cfg(feature = "response-cache")]
/// Whether and how to store a backend response: the bytes to store and their TTL.
pub fn store(
    rule: &CacheRule,
    req: &Request<Bytes>,
    res: &Response<Bytes>,
    now: UnixMillis,
) -> Option<(Vec<u8>, u32)> {
    if res.body().len() > rule.max_bytes {
        return None;
    }
    let (mut entry, ttl) = entry_head(rule, req, res.status(), res.headers(), now)?;
    entry.extend_from_slice(res.body());
    Some((entry, ttl))
}

#[cfg(feature = "response-cache")]
/// Whether a backend response with this head may be stored, judged before its body is read: the
/// start of its entry (the body follows it) and its TTL.
pub fn entry_head(
    rule: &CacheRule,
    req: &Request<Bytes>,
    status: http::StatusCode,
    headers: &HeaderMap,
    now: UnixMillis,
) -> Option<(Vec<u8>, u32)> {
    // HEAD is served from GET entries, but its own (bodiless) answer must never fill one
    if req.method() != Method::GET {
        return None;
    }
    let mut h = headers.clone();
    clamp_freshness(&mut h);
    if !rule.per_consumer
        && (h.contains_key(header::SET_COOKIE) || cache_control_has(&h, "private"))
    {
        return None;
    }
    if cache_control_has(&h, "no-store")
        || h.get(header::VARY)
            .is_some_and(|v| v.as_bytes().trim_ascii() == b"*")
    {
        return None;
    }
    // the route's TTL applies where the backend says nothing about freshness and RFC 9111 lets
    // a cache choose a lifetime
    let mut judged = Response::new(());
    *judged.status_mut() = status;
    *judged.headers_mut() = h.clone();
    let explicit = cache_control_has(&h, "max-age")
        || cache_control_has(&h, "s-maxage")
        || cache_control_has(&h, "no-cache")
        || h.contains_key(header::EXPIRES);
    if !explicit && rule.ttl_s > 0 && heuristically_cacheable(status) {
        let v = HeaderValue::from_str(&format!("s-maxage={}", rule.ttl_s)).ok()?;
        judged.headers_mut().append(header::CACHE_CONTROL, v);
    }
    let opts = CacheOptions {
        shared: !rule.per_consumer,
        ..Default::default()
    };
    let policy = CachePolicy::new_options(&policy_request(req), &judged, at(now), opts);
    if !policy.is_storable() {
        return None;
    }
    let ttl = policy
        .time_to_live(at(now))
        .as_secs()
        .min(u64::from(MAX_TTL_S));
    if ttl == 0 {
        return None;
    }
    let stale_if_error_s = stale_allowance(&h, Stale::IfError, rule.stale_if_error_s);
    let stale_while_revalidate_s =
        stale_allowance(&h, Stale::WhileRevalidate, rule.stale_while_revalidate_s);
    let tags = answer_tags(rule, &h)?;
    let meta = Meta {
        policy,
        stored_ms: now,
        fresh_until_ms: now.saturating_add(ttl * 1000),
        stale_if_error_s,
        stale_while_revalidate_s,
        tags,
        status: status.as_u16(),
        headers: h
            .iter()
            .filter(|(k, _)| *k != header::SET_COOKIE && *k != CACHE_TAG)
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect(),
    };
    let mut out = serde_json::to_vec(&meta).ok()?;
    out.push(b'\n');
    // kept as long as it may be served stale
    let keep = (ttl + stale_if_error_s.max(stale_while_revalidate_s)).min(u64::from(MAX_TTL_S));
    Some((out, u32::try_from(keep).unwrap_or(MAX_TTL_S)))
}

#[cfg(feature = "response-cache")]
/// Why a stale answer may be served (RFC 5861).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// The upstream failed (`stale-if-error`).
    IfError,
    /// The answer is being refreshed in the background (`stale-while-revalidate`).
    WhileRevalidate,
}

#[cfg(feature = "response-cache")]
impl Stale {
    /// The `Cache-Control` directive that sets its allowance.
    fn directive(self) -> &'static str {
        match self {
            Stale::IfError => "stale-if-error",
            Stale::WhileRevalidate => "stale-while-revalidate",
        }
    }
}

#[cfg(feature = "response-cache")]
/// How long after going stale a response may be served for `why` (s): its own directive
/// (RFC 5861), else the route's `route_s` unless the response forbids serving it stale
/// (RFC 9111 §4.2.4: `no-cache`, `must-revalidate`, `proxy-revalidate`, and for a shared cache
/// `s-maxage`).
fn stale_allowance(h: &HeaderMap, why: Stale, route_s: u32) -> u64 {
    let own = (h.get_all(header::CACHE_CONTROL).iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|d| d.trim().split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case(why.directive()))
        .and_then(|(_, n)| n.trim().parse::<u64>().ok());
    if let Some(own) = own {
        return own.min(u64::from(MAX_TTL_S));
    }
    let forbidden = [
        "no-cache",
        "must-revalidate",
        "proxy-revalidate",
        "s-maxage",
    ]
    .iter()
    .any(|d| cache_control_has(h, d));
    if forbidden {
        0
    } else {
        u64::from(route_s)
    }
}

#[cfg(feature = "response-cache")]
/// When an invalidation marker was written (its stored value), if it is one.
pub fn invalidated_at(marker: &[u8]) -> Option<u64> {
    std::str::from_utf8(marker).ok()?.trim().parse().ok()
}

#[cfg(feature = "response-cache")]
/// A cached answer for `req`, if the stored entry is fresh, matches (`Vary`) and was stored after
/// the URI's last invalidation (`invalidated`, ms): the stored response with `Age`, or `304 Not
/// Modified` when `If-None-Match` names its ETag.
pub fn serve(
    stored: &Stored,
    req: &Request<Bytes>,
    now: UnixMillis,
    invalidated: Option<u64>,
) -> Option<Response<Bytes>> {
    if stored.hidden_by(invalidated) {
        return None;
    }
    let meta = &stored.meta;
    let BeforeRequest::Fresh(parts) = meta.policy.before_request(&policy_request(req), at(now))
    else {
        return None;
    };
    let age = parts
        .headers
        .get(header::AGE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("0"));
    stored_response(meta, stored.body.clone(), age, req, true)
}

#[cfg(feature = "response-cache")]
/// A stale answer for `req`, served because the upstream has failed or while the entry is
/// refreshed (`why`): the stored response, if it matches (the same resource and variant), was
/// stored after the URI's last invalidation and went stale no longer ago than its allowance
/// for `why` (RFC 5861). A request that asks for a fresh answer (`Cache-Control: no-cache`,
/// `max-age`, `min-fresh`, or `Pragma: no-cache`) is not served one while it could wait for
/// the upstream; a failure still serves it.
pub fn serve_stale(
    stored: &Stored,
    req: &Request<Bytes>,
    now: UnixMillis,
    invalidated: Option<u64>,
    why: Stale,
) -> Option<Response<Bytes>> {
    if stored.hidden_by(invalidated) {
        return None;
    }
    let meta = &stored.meta;
    let matches = match meta.policy.before_request(&policy_request(req), at(now)) {
        BeforeRequest::Fresh(_) => true,
        BeforeRequest::Stale { matches, .. } => matches,
    };
    let allowance = match why {
        Stale::IfError => meta.stale_if_error_s,
        Stale::WhileRevalidate if wants_fresh(req.headers()) => 0,
        Stale::WhileRevalidate => meta.stale_while_revalidate_s,
    };
    let allowed_until = (meta.fresh_until_ms).saturating_add(allowance.saturating_mul(1000));
    if !matches || allowance == 0 || now >= allowed_until {
        return None;
    }
    let age = HeaderValue::from(meta.policy.age(at(now)).as_secs());
    stored_response(
        meta,
        stored.body.clone(),
        age,
        req,
        why == Stale::WhileRevalidate,
    )
}

#[cfg(feature = "response-cache")]
/// Whether a request asks for an answer fresher than a stale one (RFC 9111 §5.2.1, §5.4).
fn wants_fresh(h: &HeaderMap) -> bool {
    ["no-cache", "max-age", "min-fresh"]
        .iter()
        .any(|d| cache_control_has(h, d))
        || (h.get_all(header::PRAGMA).iter()).any(|v| {
            v.to_str()
                .is_ok_and(|v| v.to_ascii_lowercase().contains("no-cache"))
        })
}

#[cfg(feature = "response-cache")]
/// The stored response with `Age`; with `conditional`, `304 Not Modified` when the request's
/// `If-None-Match` names its ETag.
fn stored_response(
    meta: &Meta,
    body: Bytes,
    age: HeaderValue,
    req: &Request<Bytes>,
    conditional: bool,
) -> Option<Response<Bytes>> {
    let status = StatusCode::from_u16(meta.status).ok()?;
    let mut headers = HeaderMap::new();
    for (k, v) in &meta.headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(k, v);
        }
    }
    headers.insert(header::AGE, age);
    if let (true, Some(etag), Some(inm)) = (
        conditional,
        headers.get(header::ETAG),
        req.headers().get(header::IF_NONE_MATCH),
    ) {
        if etag_matches(inm.to_str().unwrap_or(""), etag.to_str().unwrap_or("")) {
            let mut not_modified = Response::new(Bytes::new());
            *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
            for name in [
                header::ETAG,
                header::CACHE_CONTROL,
                header::EXPIRES,
                header::VARY,
                header::AGE,
                header::DATE,
                header::LAST_MODIFIED,
            ] {
                if let Some(v) = headers.get(&name) {
                    not_modified.headers_mut().insert(name, v.clone());
                }
            }
            return Some(not_modified);
        }
    }
    let body = if req.method() == Method::HEAD {
        Bytes::new()
    } else {
        body
    };
    let mut res = Response::new(body);
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    Some(res)
}

/// The URIs an unsafe request answered `status` invalidates (RFC 9111 §4.4): the target, and
/// `Location` and `Content-Location` when they name the same authority. `None` when it
/// invalidates nothing (a safe method, or a status other than 2xx/3xx).
pub fn invalidated_uris(
    method: &Method,
    target: &http::Uri,
    status: http::StatusCode,
    res_headers: &HeaderMap,
) -> Option<Vec<http::Uri>> {
    let unsafe_method = matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if !unsafe_method || !(status.is_success() || status.is_redirection()) {
        return None;
    }
    let mut out = vec![target.clone()];
    for name in [header::LOCATION, header::CONTENT_LOCATION] {
        let Some(v) = res_headers.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let Ok(uri) = v.trim().parse::<http::Uri>() else {
            continue;
        };
        let absolute = match (uri.authority(), uri.path_and_query()) {
            // the same authority (case aside) and scheme, or a path on the target's own
            (Some(a), Some(pq))
                if a.as_str()
                    .eq_ignore_ascii_case(target.authority().map_or("", |t| t.as_str()))
                    && uri.scheme() == target.scheme() =>
            {
                same_origin(target, pq.as_str())
            }
            (None, Some(pq)) if pq.as_str().starts_with('/') => same_origin(target, pq.as_str()),
            _ => None,
        };
        out.extend(absolute);
    }
    Some(out)
}

/// `path_and_query` on `target`'s scheme and authority.
fn same_origin(target: &http::Uri, path_and_query: &str) -> Option<http::Uri> {
    let mut parts = http::uri::Parts::default();
    parts.scheme = target.scheme().cloned();
    parts.authority = target.authority().cloned();
    parts.path_and_query = Some(path_and_query.parse().ok()?);
    http::Uri::from_parts(parts).ok()
}

/// Weak comparison of an `If-None-Match` list against an ETag (RFC 9110 §13.1.2).
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let etag = strip(etag);
    if_none_match
        .split(',')
        .any(|t| t.trim() == "*" || strip(t) == etag)
}

impl CacheRule {
    /// Checks and builds a route's cache rule (at key path `path`); `credentials` are the
    /// headers and query parameters that carry the route's credentials.
    pub(crate) fn compile(
        e: &mut Errs<'_>,
        path: &str,
        c: &raw::RouteCache,
        credentials: (Vec<http::HeaderName>, Vec<String>),
    ) -> CacheRule {
        let (credential_headers, credential_query) = credentials;
        let key_headers = c
            .key_headers
            .iter()
            .enumerate()
            .filter_map(|(j, h)| header_name(e, &format!("{path}.key_headers[{j}]"), h))
            .collect();
        if !(1..=raw::CACHE_MAX_BYTES_LIMIT).contains(&c.max_bytes) {
            refuse!(
                e,
                format!("{path}.max_bytes"),
                format!(
                    "must be between 1 and {} (25 MiB, the largest value Workers KV stores)",
                    raw::CACHE_MAX_BYTES_LIMIT
                ),
            );
        }
        let mut tags: Vec<String> = Vec::new();
        for (j, tag) in c.tags.iter().enumerate() {
            match normalize_tag(tag) {
                Ok(t) if tags.contains(&t) => {
                    refuse!(
                        e,
                        format!("{path}.tags[{j}]"),
                        format!("{tag:?} is listed twice")
                    );
                }
                Ok(t) => tags.push(t),
                Err(why) => refuse!(e, format!("{path}.tags[{j}]"), why),
            }
        }
        if tags.len() > MAX_TAGS {
            refuse!(
                e,
                format!("{path}.tags"),
                format!("at most {MAX_TAGS} tags (a hit reads a purge marker for each)"),
            );
        }
        CacheRule {
            ttl_s: c.ttl_s,
            max_bytes: usize::try_from(c.max_bytes).unwrap_or(usize::MAX),
            stale_if_error_s: c.stale_if_error_s.min(MAX_TTL_S),
            stale_while_revalidate_s: c.stale_while_revalidate_s.min(MAX_TTL_S),
            tags,
            key_headers,
            per_consumer: c.per_consumer,
            fail_open: c.fail == raw::FailMode::Open,
            credential_headers,
            credential_query,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generation_key_reads_back_as_the_gateways_own() {
        assert_eq!(Kind::of(GENERATION_KEY.as_str()), Some(Kind::Gateway));
        assert_eq!(GENERATION_KEY.kind(), Kind::Gateway);
    }

    fn rule(per_consumer: bool) -> CacheRule {
        CacheRule {
            ttl_s: 30,
            key_headers: vec![HeaderName::from_static("accept-language")],
            per_consumer,
            fail_open: true,
            credential_headers: vec![HeaderName::from_static("x-api-key")],
            credential_query: vec!["api_key".into()],
            max_bytes: 1 << 20,
            stale_if_error_s: 0,
            stale_while_revalidate_s: 0,
            tags: Vec::new(),
        }
    }

    fn get(uri: &str, headers: &[(&str, &str)]) -> Request<Bytes> {
        let mut b = Request::builder().uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Bytes::new()).unwrap()
    }

    #[cfg(feature = "response-cache")]
    fn ok(headers: &[(&str, &str)]) -> Response<Bytes> {
        let mut b = Response::builder().status(200);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Bytes::from_static(b"hello")).unwrap()
    }

    #[test]
    fn accept_encoding_is_reduced_to_the_codings_it_accepts() {
        for (sent, want) in [
            ("gzip, deflate, br", "br,deflate,gzip"),
            ("br;q=1.0, gzip;q=0.8, deflate", "br,deflate,gzip"),
            ("GZIP", "gzip"),
            ("gzip, br;q=0", "gzip"),
            ("identity", ""),
            ("*", ""),
            ("zstd, compress, x-gzip", "zstd"),
        ] {
            let req = get("http://h/", &[("accept-encoding", sent)]);
            assert_eq!(normalized_accept_encoding(req.headers()), want, "{sent}");
        }
    }

    #[test]
    fn variants_are_told_apart_by_the_headers_the_answer_varies_on() {
        let vary = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::VARY, HeaderValue::from_str(v).unwrap());
            vary_names(&h)
        };
        assert_eq!(
            vary("Accept-Language, accept-encoding, Accept-Language"),
            Some(vec!["accept-encoding".into(), "accept-language".into()])
        );
        assert_eq!(vary("*"), None);
        assert_eq!(vary(" , "), None);
        let names = vary("accept-language, accept-encoding").unwrap();
        let id = |h: &[(&str, &str)]| variant_id(&names, &get("http://h/", h));
        let en = id(&[("accept-language", "en"), ("accept-encoding", "gzip, br")]);
        assert_eq!(
            en,
            id(&[("accept-language", "en"), ("accept-encoding", "br,gzip")])
        );
        assert_ne!(
            en,
            id(&[("accept-language", "fr"), ("accept-encoding", "gzip, br")])
        );
        assert_ne!(en, id(&[("accept-language", "en")]));
    }

    #[test]
    fn a_vary_record_round_trips_and_keeps_the_newest_variants() {
        let names = vec!["accept-language".to_string()];
        let mut record = None;
        for i in 0..=MAX_VARIANTS {
            let ttl = if i == 0 { 600 } else { 60 };
            record = Some(VaryRecord::with(
                record,
                names.clone(),
                format!("v{i}"),
                1_000,
                ttl,
            ));
        }
        let record = record.unwrap();
        assert_eq!(record.variants.len(), MAX_VARIANTS);
        assert_eq!(record.variants.first().map(String::as_str), Some("v1"));
        // kept as long as its longest-lived variant was to be
        assert_eq!((record.expires_ms, record.ttl_s(1_000)), (601_000, 600));
        assert_eq!(VaryRecord::decode(&record.encode()), Some(record.clone()));
        assert_eq!(VaryRecord::decode(b"{\"policy\":1}\nbody"), None);
        // the upstream changed what it varies on: the record starts over
        let other = VaryRecord::with(Some(record), vec!["accept".into()], "a".into(), 2_000, 60);
        assert_eq!(other.variants, ["a"]);
        let key = key(&rule(false), 3, "r", &get("http://h/x", &[]), None).unwrap();
        let variant = VaryRecord::variant_key(&key, "ab12");
        assert_eq!(variant.as_str(), format!("{}:v:ab12", key.entry.as_str()));
        assert_eq!(Kind::of(variant.as_str()), Some(Kind::Cache));
    }

    #[test]
    fn keys() {
        let r = rule(false);
        let k = |req: &Request<Bytes>, c: Option<&str>| key(&r, 1, "route", req, c);
        let a = k(&get("http://h/x?b=2&a=1", &[]), None).unwrap();
        assert_eq!(
            k(&get("http://h/x?a=1&b=2", &[]), None).unwrap(),
            a,
            "query order does not matter"
        );
        assert_ne!(k(&get("http://h/x?a=1&b=3", &[]), None).unwrap(), a);
        assert_ne!(
            k(
                &get("http://h/x?a=1&b=2", &[("accept-language", "fr")]),
                None
            )
            .unwrap(),
            a
        );
        assert_ne!(
            key(&r, 2, "route", &get("http://h/x?a=1&b=2", &[]), None).unwrap(),
            a,
            "generation"
        );
        assert!(a.entry.as_str().starts_with("cache:1:"));
        assert_eq!(
            k(&get("http://h/x", &[("authorization", "Bearer t")]), None),
            Err("authenticated")
        );
        assert_eq!(
            k(&get("http://h/x", &[]), Some("alice")),
            Err("authenticated")
        );
        assert_eq!(
            k(&get("http://h/x", &[("cache-control", "no-store")]), None),
            Err("no-store")
        );
        let post = Request::builder()
            .method("POST")
            .uri("http://h/x")
            .body(Bytes::new())
            .unwrap();
        assert_eq!(k(&post, None), Err("method"));
        let pc = rule(true);
        let alice = key(
            &pc,
            1,
            "r",
            &get("http://h/x", &[("authorization", "a")]),
            Some("alice"),
        )
        .unwrap();
        let bob = key(
            &pc,
            1,
            "r",
            &get("http://h/x", &[("authorization", "b")]),
            Some("bob"),
        )
        .unwrap();
        assert_ne!(alice, bob);
    }

    /// Every credential the route knows keeps a response out of the shared cache; per consumer,
    /// a credential without a consumer id bypasses it.
    #[test]
    fn credentialed_requests_are_not_shared() {
        let shared = rule(false);
        for (uri, headers) in [
            ("http://h/account", &[("cookie", "session=alice")][..]),
            ("http://h/account", &[("x-api-key", "k")][..]),
            ("http://h/account?api_key=k", &[][..]),
            ("http://h/account", &[("authorization", "Basic YTpi")][..]),
        ] {
            assert_eq!(
                key(&shared, 1, "r", &get(uri, headers), None),
                Err("authenticated"),
                "{uri} {headers:?}"
            );
        }
        let per = rule(true);
        assert_eq!(
            key(
                &per,
                1,
                "r",
                &get("http://h/x", &[("authorization", "Bearer t")]),
                None
            ),
            Err("no-consumer-id")
        );
        assert!(key(&per, 1, "r", &get("http://h/x", &[]), None).is_ok());
    }

    /// Field bytes cannot pass for separators: decoded query bytes once made
    /// `?lang=en%02page%012` and `?lang=en&page=2` share a key.
    #[test]
    fn keys_are_unambiguous() {
        let r = rule(false);
        let k = |uri: &str, h: &[(&str, &str)]| key(&r, 1, "route", &get(uri, h), None).unwrap();
        assert_ne!(
            k("http://h/x?lang=en%02page%012", &[]),
            k("http://h/x?lang=en&page=2", &[])
        );
        assert_ne!(k("http://h/x?a=1%01b", &[]), k("http://h/x?a=1&b", &[]));
        assert_ne!(k("http://h:8080/x", &[]), k("http://h/x", &[]), "port");
        assert_ne!(k("https://h/x", &[]), k("http://h/x", &[]), "scheme");
        assert_ne!(
            k(
                "http://h/x",
                &[("accept-language", "en"), ("accept-language", "fr")]
            ),
            k("http://h/x", &[("accept-language", "enfr")])
        );
        assert_ne!(
            key(&r, 1, "ab", &get("http://h/x", &[]), None),
            key(&r, 1, "a", &get("http://h/x", &[]), None)
        );
        // the invalidation key holds only the URI: every route and variant shares it
        assert_eq!(
            k("http://h/x?b=2&a=1", &[("accept-language", "fr")]).invalidation,
            invalidation_key(1, &"http://h/x?a=1&b=2".parse().unwrap())
        );
    }

    #[test]
    fn unsafe_methods_invalidate_their_target_and_locations() {
        let target: http::Uri = "http://h/account?x=1".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("location", "/account/7".parse().unwrap());
        h.insert("content-location", "http://other/account".parse().unwrap());
        let got = invalidated_uris(&Method::POST, &target, http::StatusCode::CREATED, &h)
            .unwrap()
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>();
        assert_eq!(got, ["http://h/account?x=1", "http://h/account/7"]);
        assert_eq!(
            invalidated_uris(&Method::GET, &target, http::StatusCode::OK, &h),
            None
        );
        assert_eq!(
            invalidated_uris(&Method::DELETE, &target, http::StatusCode::NOT_FOUND, &h),
            None
        );
        h.insert("content-location", "http://H/account/8".parse().unwrap());
        let got = invalidated_uris(&Method::PUT, &target, http::StatusCode::SEE_OTHER, &h).unwrap();
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn hostile_freshness_values_are_clamped() {
        let mut h = HeaderMap::new();
        h.insert("age", "18446744073709551614".parse().unwrap());
        h.insert(
            "cache-control",
            "public, max-age=18446744073709551615, s-maxage=99999999999999999999999, max-age=-1, x=\"9\"".parse().unwrap(),
        );
        clamp_freshness(&mut h);
        assert_eq!(h["age"], "2147483648");
        assert_eq!(
            h["cache-control"],
            "public, max-age=2147483648, s-maxage=2147483648, max-age=0, x=9"
        );
        h.insert("age", "soon".parse().unwrap());
        clamp_freshness(&mut h);
        assert!(!h.contains_key("age"));
    }

    /// The upstream answer that once made a hit panic inside the freshness rules.
    #[cfg(feature = "response-cache")]
    #[test]
    fn an_upstream_cannot_make_a_hit_panic() {
        let r = rule(false);
        let req = get("http://h/x", &[]);
        let t0 = 1_700_000_000_000;
        let huge = "18446744073709551615";
        let mut stored = Vec::new();
        for (age, max_age) in [
            (huge, huge),
            ("1", huge),
            (huge, "60"),
            ("0", "99999999999"),
        ] {
            let cc = format!("max-age={max_age}");
            let res = ok(&[("age", age), ("cache-control", cc.as_str())]);
            if let Some((bytes, ttl)) = store(&r, &req, &res, t0) {
                assert!(ttl <= MAX_TTL_S, "{age} {max_age}");
                stored.push(bytes);
            }
        }
        assert_eq!(stored.len(), 2, "the fresh ones are stored");
        let bytes = Stored::parse(&stored.remove(0)).unwrap();
        for later in [1_000, 86_400_000, 400 * 86_400_000] {
            assert!(serve(&bytes, &req, t0 + later, None).is_some(), "{later}");
        }
        let greedy = get(
            "http://h/x",
            &[(
                "cache-control",
                "max-stale=18446744073709551615, min-fresh=18446744073709551615",
            )],
        );
        let _ = serve(&bytes, &greedy, t0 + 1_000, None);
    }

    #[cfg(feature = "response-cache")]
    #[test]
    fn an_invalidation_hides_older_entries() {
        let r = rule(false);
        let req = get("http://h/x", &[]);
        let t0 = 1_700_000_000_000;
        let (bytes, _) = store(&r, &req, &ok(&[("cache-control", "max-age=60")]), t0).unwrap();
        let bytes = Stored::parse(&bytes).unwrap();
        assert!(serve(&bytes, &req, t0 + 1, Some(t0 - 1)).is_some());
        assert!(serve(&bytes, &req, t0 + 1, Some(t0)).is_none());
        assert_eq!(invalidated_at(b"1700000000000"), Some(t0));
    }

    #[cfg(feature = "response-cache")]
    #[test]
    fn storability() {
        let r = rule(false);
        let req = get("http://h/x", &[]);
        type Row<'a> = (&'a [(&'a str, &'a str)], Option<u32>);
        let rows: [Row<'_>; 7] = [
            (&[], Some(30)),
            (&[("cache-control", "max-age=5")], Some(5)),
            (&[("cache-control", "s-maxage=9, max-age=5")], Some(9)),
            (&[("cache-control", "no-store")], None),
            (&[("cache-control", "private, max-age=60")], None),
            (&[("set-cookie", "a=b")], None),
            (&[("vary", "*")], None),
        ];
        for (headers, ttl) in rows {
            assert_eq!(
                store(&r, &req, &ok(headers), 1_000_000).map(|s| s.1),
                ttl,
                "{headers:?}"
            );
        }
        // the route's TTL is a heuristic lifetime: only where RFC 9111 §4.2.2 allows one
        for (status, want) in [(500, None), (302, None), (404, Some(30)), (301, Some(30))] {
            let mut res = ok(&[]);
            *res.status_mut() = StatusCode::from_u16(status).unwrap();
            assert_eq!(
                store(&r, &req, &res, 1_000_000).map(|s| s.1),
                want,
                "{status}"
            );
        }
        let head = Request::builder()
            .method("HEAD")
            .uri("http://h/x")
            .body(Bytes::new())
            .unwrap();
        assert_eq!(
            store(&r, &head, &ok(&[]), 1_000_000).map(|s| s.1),
            None,
            "a HEAD answer has no body to store"
        );
        let private_per_consumer = store(
            &rule(true),
            &req,
            &ok(&[("cache-control", "private, max-age=60")]),
            0,
        );
        assert_eq!(private_per_consumer.map(|s| s.1), Some(60));
    }

    #[cfg(feature = "response-cache")]
    #[test]
    fn serving_with_age_vary_and_304() {
        let r = rule(false);
        let req = get("http://h/x", &[("accept", "text/plain")]);
        let t0 = 1_700_000_000_000;
        let res = ok(&[
            ("cache-control", "max-age=60"),
            ("etag", "\"v1\""),
            ("vary", "accept"),
        ]);
        let (bytes, _) = store(&r, &req, &res, t0).unwrap();
        let bytes = Stored::parse(&bytes).unwrap();
        let hit = serve(&bytes, &req, t0 + 12_000, None).unwrap();
        assert_eq!(
            (hit.status(), hit.body().as_ref()),
            (StatusCode::OK, &b"hello"[..])
        );
        assert_eq!(hit.headers()["age"], "12");
        assert!(serve(&bytes, &req, t0 + 61_000, None).is_none(), "stale");
        assert!(
            serve(
                &bytes,
                &get("http://h/x", &[("accept", "text/html")]),
                t0,
                None
            )
            .is_none(),
            "vary"
        );
        let cond = get(
            "http://h/x",
            &[
                ("accept", "text/plain"),
                ("if-none-match", "W/\"v0\", \"v1\""),
            ],
        );
        let nm = serve(&bytes, &cond, t0 + 1_000, None).unwrap();
        assert_eq!(
            (nm.status(), nm.body().len()),
            (StatusCode::NOT_MODIFIED, 0)
        );
        assert_eq!(nm.headers()["etag"], "\"v1\"");
        assert!(Stored::parse(b"garbage").is_none());
    }

    #[cfg(feature = "response-cache")]
    #[test]
    fn a_stale_entry_serves_a_failure_only_within_its_allowance() {
        let mut r = rule(false);
        r.stale_if_error_s = 30;
        let req = get("http://h/x", &[]);
        let t0 = 1_700_000_000_000;
        // (the upstream's Cache-Control, the allowance it gives in s, the store TTL in s)
        let rows: [(&str, u64, u32); 6] = [
            ("max-age=10, stale-if-error=60", 60, 70),
            ("max-age=10, stale-if-error=0", 0, 10),
            ("max-age=10", 30, 40),
            ("max-age=10, must-revalidate", 0, 10),
            ("max-age=10, no-cache", 0, 0),
            ("s-maxage=10", 0, 10),
        ];
        for (cc, allowance, keep) in rows {
            let Some((bytes, ttl)) = store(&r, &req, &ok(&[("cache-control", cc)]), t0) else {
                assert_eq!(keep, 0, "{cc}: not stored");
                continue;
            };
            assert_eq!(ttl, keep, "{cc}");
            let bytes = Stored::parse(&bytes).unwrap();
            let fresh_until = t0 + 10_000;
            assert!(serve(&bytes, &req, fresh_until, None).is_none(), "{cc}");
            let last = fresh_until + allowance * 1000 - 1;
            let stale = serve_stale(&bytes, &req, last, None, Stale::IfError);
            assert_eq!(stale.is_some(), allowance > 0, "{cc}");
            if let Some(stale) = stale {
                assert_eq!(
                    stale.headers()["age"],
                    (last - t0).div_euclid(1000).to_string()
                );
                assert_eq!(stale.body().as_ref(), b"hello");
            }
            assert!(
                serve_stale(&bytes, &req, last + 1, None, Stale::IfError).is_none(),
                "{cc}"
            );
            assert!(
                serve_stale(&bytes, &req, t0 + 11_000, Some(t0), Stale::IfError).is_none(),
                "{cc}"
            );
        }
        // a stale answer never becomes a 304, even for a matching If-None-Match
        let res = ok(&[("cache-control", "max-age=1"), ("etag", "\"v1\"")]);
        let (bytes, _) = store(&r, &req, &res, t0).unwrap();
        let bytes = Stored::parse(&bytes).unwrap();
        let cond = get("http://h/x", &[("if-none-match", "\"v1\"")]);
        let stale = serve_stale(&bytes, &cond, t0 + 2_000, None, Stale::IfError).unwrap();
        assert_eq!(stale.status(), StatusCode::OK);
    }

    #[cfg(feature = "response-cache")]
    #[test]
    fn a_stale_entry_is_served_while_revalidating_only_within_its_allowance() {
        let mut r = rule(false);
        r.stale_while_revalidate_s = 20;
        let req = get("http://h/x", &[]);
        let t0 = 1_700_000_000_000;
        // (the upstream's Cache-Control, the allowance it gives in s, the store TTL in s): the
        // longer of the two allowances keeps the entry
        let rows: [(&str, u64, u32); 6] = [
            ("max-age=10, stale-while-revalidate=60", 60, 70),
            ("s-maxage=1, stale-while-revalidate=59", 59, 60),
            (
                "max-age=10, stale-while-revalidate=5, stale-if-error=30",
                5,
                40,
            ),
            ("max-age=10", 20, 30),
            ("max-age=10, must-revalidate", 0, 10),
            ("max-age=10, stale-while-revalidate=x", 20, 30),
        ];
        for (cc, allowance, keep) in rows {
            let (bytes, ttl) = store(&r, &req, &ok(&[("cache-control", cc)]), t0).expect(cc);
            assert_eq!(ttl, keep, "{cc}");
            let bytes = Stored::parse(&bytes).unwrap();
            let fresh_until = bytes.meta.fresh_until_ms;
            let why = Stale::WhileRevalidate;
            let last = fresh_until + allowance * 1000 - 1;
            let stale = serve_stale(&bytes, &req, last, None, why);
            assert_eq!(stale.is_some(), allowance > 0, "{cc}");
            assert!(
                serve_stale(&bytes, &req, last + 1, None, why).is_none(),
                "{cc}"
            );
            assert!(
                serve_stale(&bytes, &req, fresh_until, Some(t0), why).is_none(),
                "{cc}: invalidated"
            );
        }
        let res = ok(&[
            ("cache-control", "max-age=1, stale-while-revalidate=60"),
            ("etag", "\"v1\""),
        ]);
        let (bytes, _) = store(&r, &req, &res, t0).unwrap();
        let bytes = Stored::parse(&bytes).unwrap();
        let why = Stale::WhileRevalidate;
        // a client that asks for a fresh answer waits for one
        for (name, value) in [
            ("cache-control", "no-cache"),
            ("cache-control", "max-age=0"),
            ("cache-control", "min-fresh=5"),
            ("pragma", "No-Cache"),
        ] {
            let picky = get("http://h/x", &[(name, value)]);
            assert!(serve_stale(&bytes, &picky, t0 + 2_000, None, why).is_none());
        }
        // served as a hit is: a matching If-None-Match gets 304
        let cond = get("http://h/x", &[("if-none-match", "\"v1\"")]);
        let stale = serve_stale(&bytes, &cond, t0 + 2_000, None, why).unwrap();
        assert_eq!(stale.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(stale.headers()["age"], "2");
    }

    #[test]
    fn tags_are_visible_ascii_without_commas_and_compared_in_lowercase() {
        assert_eq!(normalize_tag(" Product-7 ").as_deref(), Ok("product-7"));
        assert_eq!(normalize_tag("a:b/c").as_deref(), Ok("a:b/c"));
        for bad in ["", " ", "a b", "a,b", "caf\u{e9}", "a\tb", &"x".repeat(129)] {
            assert_eq!(normalize_tag(bad).ok(), None, "{bad:?}");
        }
        assert_eq!(normalize_tag(&"x".repeat(128)).map(|t| t.len()), Ok(128));
        assert_ne!(tag_key(1, "a"), tag_key(2, "a"));
        assert_ne!(tag_key(1, "a"), tag_key(1, "b"));
    }

    #[cfg(feature = "response-cache")]
    #[test]
    fn an_answer_carries_the_routes_tags_and_its_cache_tag() {
        let mut r = rule(false);
        r.tags = vec!["pages".into()];
        let req = get("http://h/x", &[]);
        let t0 = 1_700_000_000_000;
        let tagged = |values: &[&str]| {
            let mut res = ok(&[]);
            for v in values {
                res.headers_mut()
                    .append(CACHE_TAG, HeaderValue::from_str(v).unwrap());
            }
            store(&r, &req, &res, t0).map(|(bytes, _)| Stored::parse(&bytes).unwrap())
        };
        let stored = tagged(&["Product-7, home", "pages,,product-7"]).unwrap();
        assert_eq!(stored.tags(), ["pages", "product-7", "home"]);
        let hit = serve(&stored, &req, t0 + 1, None).unwrap();
        assert!(!hit.headers().contains_key(CACHE_TAG), "not replayed");
        // an answer whose tags could not all be purged is not stored
        assert!(tagged(&["a b"]).is_none());
        assert!(tagged(&["a,b,c,d,e,f,g"]).is_some(), "8 with the route's");
        assert!(tagged(&["a,b,c,d,e,f,g,h"]).is_none(), "9");
        // a tag's purge hides what was stored until then
        assert!(serve(&stored, &req, t0 + 1, Some(t0)).is_none());
        assert!(serve(&stored, &req, t0 + 1, Some(t0 - 1)).is_some());
    }
}
