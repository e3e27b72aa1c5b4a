//! Step 6, the cache: a lookup before the backend, the answer stored after it, the URIs an
//! unsafe request changed marked invalid, and the purge action's new generation.

//! Built only with `response-cache`: a build without it refuses configs that cache or purge.

use super::upstream::{send_upstream, Outbound, Tries};
use super::{Ctx, Gateway};
use crate::body::Body;
use crate::config::{Action, Route};
use crate::host::{BodyUse, Exchange, Host, Later, LaterWork, Tee};
use crate::phase::cache::{self, Stale};
use crate::phase::observe::Phase;
use crate::problem::Reject;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response};
use std::borrow::Cow;

/// What the cache had for a request.
pub(super) enum Lookup<'r> {
    Hit(Response<Bytes>),
    /// A stale answer served while it is refreshed (`stale-while-revalidate`).
    Stale(Response<Bytes>),
    /// Not there: where to store the answer.
    Miss(Box<Miss<'r>>),
    Bypass,
}

/// A miss: the rule, the key to store the answer under, the request as the cache saw it, the
/// key's record of variants when its answers vary, and the stored entry that was there but not
/// fresh (with its URI's last invalidation), which may serve an upstream failure.
pub(super) struct Miss<'r> {
    rule: &'r cache::CacheRule,
    key: cache::CacheKey,
    probe: Request<Bytes>,
    record: Option<Box<cache::VaryRecord>>,
    stale: Option<Box<(cache::Stored, Option<u64>)>>,
    /// This request's turn at filling the key, while no other request of the isolate has it.
    filling: Option<crate::flight::Lead>,
}

/// A stale entry's refresh, left for after the answer ([`Host::defer`]): the request as it
/// goes upstream, and where its answer is stored.
pub(crate) struct Refresh {
    /// The route's index.
    route: usize,
    path_and_query: String,
    /// The request's headers as they go upstream, without its conditional and range fields
    /// (the refresh asks for the whole answer).
    headers: http::HeaderMap,
    key: cache::CacheKey,
    probe: Request<Bytes>,
    record: Option<Box<cache::VaryRecord>>,
    /// When the stale entry was stored: a refresh begun since is another's, under way.
    stale_since: u64,
    request_id: String,
    /// The isolate's turn at filling the key, held until the refresh ends: stale hits
    /// meanwhile start no other refresh, and misses wait for it.
    _filling: crate::flight::Lead,
}

/// What a refresh is made of: the route's index, the request as it goes upstream, its key,
/// the request as the cache saw it, the key's record of variants, and when the stale entry
/// was stored.
type RefreshOf<'a, 'o, S> = (
    usize,
    &'a Outbound<'o, S>,
    cache::CacheKey,
    Request<Bytes>,
    Option<Box<cache::VaryRecord>>,
    u64,
);

/// What a look in the store found: a fresh answer, or the key to store one under, with the
/// key's record of variants and the stale entry; or why the request bypasses the cache.
type Found = Result<
    (
        Option<Response<Bytes>>,
        cache::CacheKey,
        Option<Box<cache::VaryRecord>>,
        Option<Box<(cache::Stored, Option<u64>)>>,
    ),
    &'static str,
>;

impl Gateway {
    /// Looks the request up in the cache (6): the request as the cache sees it is absolute,
    /// with the scheme and authority the gateway forwards and the headers that go upstream. A
    /// store failure follows the rule's fail mode: open bypasses the cache, closed is 503. A
    /// miss while another request of the isolate is filling the same key waits for it (for at
    /// most `wait_ms`, the upstream's timeout) and looks again (request collapsing). A stale
    /// entry within its `stale-while-revalidate` is served, and its refresh left for after the
    /// answer unless one is under way.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn cache_lookup<'r, S, H: Host>(
        &self,
        (route_at, r): (usize, &'r Route),
        out: &Outbound<'_, S>,
        path: &str,
        query: Option<&str>,
        wait_ms: u32,
        ctx: &mut Ctx<'_>,
        host: &H,
    ) -> Result<Lookup<'r>, Reject> {
        let Some(rule) = &r.cache else {
            return Ok(Lookup::Bypass);
        };
        let t = host.monotonic_us();
        let mut probe = Request::new(Bytes::new());
        *probe.method_mut() = out.method.clone();
        *probe.headers_mut() = out.headers.clone();
        *probe.uri_mut() = absolute_uri(ctx, path, query);
        // a consumer without an id has none to key by
        let consumer = ctx.consumer.as_ref().and_then(|c| c.identified());
        let mut lookup = self.look(rule, &r.name, &probe, consumer, host).await;
        let mut collapsed = false;
        if let Ok(Ok((None, key, ..))) = &lookup {
            let landing = (self.cache_flights).landing(key.entry.as_str(), host.now(), wait_ms);
            if let Some(landing) = landing {
                landing.wait(host, wait_ms).await;
                lookup = self.look(rule, &r.name, &probe, consumer, host).await;
                collapsed = true;
            }
        }
        let (outcome, decision) = match lookup {
            Ok(Ok((Some(hit), ..))) if collapsed => {
                (Lookup::Hit(hit), Cow::Borrowed("hit:collapsed"))
            }
            Ok(Ok((Some(hit), ..))) => (Lookup::Hit(hit), Cow::Borrowed("hit")),
            Ok(Ok((None, key, record, Some(stale))))
                if let Some(res) = cache::serve_stale(
                    &stale.0,
                    &probe,
                    host.now(),
                    stale.1,
                    Stale::WhileRevalidate,
                ) =>
            {
                let job = (route_at, out, key, probe, record, stale.0.stored_ms());
                let decision = self.refresh_later(job, wait_ms, ctx, host);
                (Lookup::Stale(res), Cow::Borrowed(decision))
            }
            Ok(Ok((None, key, record, stale))) => {
                // the first miss of a key fills it; one that waited in vain (the answer was not
                // stored, or is another variant) calls the upstream too, unless another fills it
                let flights = &self.cache_flights;
                let (entry, now) = (key.entry.as_str(), host.now());
                let filling = (flights.landing(entry, now, wait_ms).is_none())
                    .then(|| flights.lead(entry, now));
                let miss = Miss {
                    rule,
                    key,
                    probe,
                    record,
                    stale,
                    filling,
                };
                (Lookup::Miss(Box::new(miss)), Cow::Borrowed("miss"))
            }
            Ok(Err(why)) => (Lookup::Bypass, Cow::Owned(format!("bypass:{why}"))),
            Err(_) if !rule.fail_open => {
                ctx.mark(Phase::Cache, "store-error:closed", t, host);
                return Err(Reject::Unavailable);
            }
            Err(_) => (Lookup::Bypass, Cow::Borrowed("bypass:store-error")),
        };
        ctx.log.cache = Some(match &outcome {
            Lookup::Hit(_) => "hit",
            Lookup::Stale(_) => "stale",
            Lookup::Miss(..) => "miss",
            Lookup::Bypass => "bypass",
        });
        ctx.mark(Phase::Cache, decision, t, host);
        Ok(outcome)
    }

    /// After the backend (6): a miss's answer stored when it may be (a failed write only costs
    /// a later miss), and an unsafe request's URIs invalidated. A streamed answer is copied to
    /// the store as it goes to the client ([`Host::tee`]), unless its declared length is over
    /// the rule's `max_bytes`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn after_upstream<S, H: Host<Stream = S>>(
        &self,
        miss: Option<Miss<'_>>,
        res: Response<Body<S>>,
        method: &Method,
        path: &str,
        query: Option<&str>,
        ctx: &mut Ctx<'_>,
        host: &H,
    ) -> Response<Body<S>> {
        let (mut head, body) = res.into_parts();
        let body = match (miss, body) {
            (Some(miss), Body::Bytes(bytes)) => {
                // others waiting for this key look again once the put is done or skipped: the
                // miss, and its turn at filling the key, end with this arm
                // a route that edits the answer's JSON has it read
                let view = Response::from_parts(head, bytes);
                if let Some((entry, ttl)) = cache::store(miss.rule, &miss.probe, &view, host.now())
                {
                    let at = (&miss.key, &miss.probe, miss.record.as_deref());
                    if let Ok(key) = self.entry_key(at, view.headers(), ttl, host).await {
                        let _ = host.store_put(&key, entry, ttl).await;
                    }
                }
                let (view_head, bytes) = view.into_parts();
                head = view_head;
                Body::Bytes(bytes)
            }
            (Some(miss), Body::Stream(stream)) => {
                let t = host.monotonic_us();
                let now = host.now();
                let rule = miss.rule;
                let declared = crate::body::declared_length(&head.headers);
                let entry = cache::entry_head(rule, &miss.probe, head.status, &head.headers, now);
                match entry {
                    Some(_) if declared.is_some_and(|n| n > rule.max_bytes as u64) => {
                        ctx.log.cache = Some("bypass");
                        ctx.mark(Phase::Cache, "bypass:too-large", t, host);
                        Body::Stream(stream)
                    }
                    Some((entry, ttl_s)) => {
                        let at = (&miss.key, &miss.probe, miss.record.as_deref());
                        match self.entry_key(at, &head.headers, ttl_s, host).await {
                            Ok(key) => Body::Stream(host.tee(
                                stream,
                                Tee {
                                    key,
                                    head: entry,
                                    ttl_s,
                                    limit: rule.max_bytes,
                                    declared: declared.filter(|_| {
                                        !head.headers.contains_key(http::header::CONTENT_ENCODING)
                                    }),
                                    request_id: ctx.request_id.to_string(),
                                    filling: crate::host::Filling(miss.filling),
                                },
                            )),
                            Err(_) => Body::Stream(stream),
                        }
                    }
                    None => Body::Stream(stream),
                }
            }
            (None, body) => body,
        };
        // the upstream's tags are for this cache, not for clients (nor for caches after it)
        if ctx.route.is_some_and(|r| r.cache.is_some()) {
            head.headers.remove(&cache::CACHE_TAG);
        }
        if self.config.caches_responses {
            self.invalidate(method, path, query, head.status, &head.headers, ctx, host)
                .await;
        }
        Response::from_parts(head, body)
    }

    /// When the upstream failed (no answer, or 500, 502, 503 or 504) and the miss found a stale
    /// entry that may still serve a failure (`stale-if-error`): that entry, for the client.
    pub(super) fn stale_if_error<S, H: Host>(
        &self,
        miss: Option<&Miss<'_>>,
        upstream: &Result<Response<Body<S>>, Reject>,
        ctx: &mut Ctx<'_>,
        host: &H,
    ) -> Option<Response<Bytes>> {
        let failed = match upstream {
            Ok(res) => matches!(res.status().as_u16(), 500 | 502 | 503 | 504),
            Err(e) => matches!(e, Reject::BadGateway | Reject::GatewayTimeout),
        };
        let (miss, (stored, invalidated)) = (miss?, miss?.stale.as_deref()?);
        if !failed {
            return None;
        }
        let t = host.monotonic_us();
        let now = host.now();
        let stale = cache::serve_stale(stored, &miss.probe, now, *invalidated, Stale::IfError)?;
        ctx.log.cache = Some("stale");
        ctx.mark(Phase::Cache, "stale-if-error", t, host);
        Some(stale)
    }

    /// One look in the store for `probe`.
    async fn look<H: Host>(
        &self,
        rule: &cache::CacheRule,
        route: &str,
        probe: &Request<Bytes>,
        consumer: Option<&str>,
        host: &H,
    ) -> Result<Found, crate::host::HostError> {
        let generation = cache_generation(host).await?;
        let key = match cache::key(rule, generation, route, probe, consumer) {
            Ok(key) => key,
            Err(why) => return Ok(Err(why)),
        };
        let (stored, record) = self.read_entry(&key, probe, host).await?;
        let (mut hit, mut stale) = (None, None);
        if let Some(stored) = stored.as_deref().and_then(cache::Stored::parse) {
            let invalidated = self.hidden_since(&key, &stored, generation, host).await?;
            hit = cache::serve(&stored, probe, host.now(), invalidated);
            if hit.is_none() {
                stale = Some(Box::new((stored, invalidated)));
            }
        }
        Ok(Ok((hit, key, record, stale)))
    }

    /// When an entry was last hidden (ms): an entry is served only if no unsafe request
    /// invalidated its URI, and no purge named one of its tags, since it was stored.
    async fn hidden_since<H: Host>(
        &self,
        key: &cache::CacheKey,
        stored: &cache::Stored,
        generation: u64,
        host: &H,
    ) -> Result<Option<u64>, crate::host::HostError> {
        let marker = host.store_get(&key.invalidation).await?;
        let mut hidden = marker.as_deref().and_then(cache::invalidated_at);
        for tag in stored.tags() {
            let marker = host.store_get(&cache::tag_key(generation, tag)).await?;
            hidden = hidden.max(marker.as_deref().and_then(cache::invalidated_at));
        }
        Ok(hidden)
    }

    /// A key's stored value, and its record of variants when its answers vary: then the value
    /// is the request's variant (if the record lists it).
    async fn read_entry<H: Host>(
        &self,
        key: &cache::CacheKey,
        probe: &Request<Bytes>,
        host: &H,
    ) -> Result<(Option<Vec<u8>>, Option<Box<cache::VaryRecord>>), crate::host::HostError> {
        let stored = host.store_get(&key.entry).await?;
        let Some(record) = stored.as_deref().and_then(cache::VaryRecord::decode) else {
            return Ok((stored, None));
        };
        let id = cache::variant_id(&record.names, probe);
        let variant = match record.variants.contains(&id) {
            true => {
                host.store_get(&cache::VaryRecord::variant_key(key, &id))
                    .await?
            }
            false => None,
        };
        Ok((variant, Some(Box::new(record))))
    }

    /// Where an answer for `probe` is stored: its key, or, when the answer varies (`Vary`), its
    /// variant's key, after the key's record of variants (`record`, as it was read) is written
    /// with it.
    async fn entry_key<H: Host>(
        &self,
        (key, probe, record): (
            &cache::CacheKey,
            &Request<Bytes>,
            Option<&cache::VaryRecord>,
        ),
        headers: &http::HeaderMap,
        ttl_s: u32,
        host: &H,
    ) -> Result<crate::store::StoreKey, crate::host::HostError> {
        let Some(names) = cache::vary_names(headers) else {
            return Ok(key.entry.clone());
        };
        let id = cache::variant_id(&names, probe);
        let variant = cache::VaryRecord::variant_key(key, &id);
        let now = host.now();
        let record = cache::VaryRecord::with(record.cloned(), names, id, now, ttl_s);
        host.store_put(&key.entry, record.encode(), record.ttl_s(now))
            .await?;
        Ok(variant)
    }

    /// After serving a stale entry (`stale-while-revalidate`): its refresh left for after the
    /// answer ([`Host::defer`]), unless a request of the isolate is filling the key already.
    /// The decision logged.
    fn refresh_later<S, H: Host>(
        &self,
        (route, out, key, probe, record, stale_since): RefreshOf<'_, '_, S>,
        wait_ms: u32,
        ctx: &Ctx<'_>,
        host: &H,
    ) -> &'static str {
        let (entry, now) = (key.entry.as_str(), host.now());
        if self.cache_flights.landing(entry, now, wait_ms).is_some() {
            return "stale-while-revalidate:under-way";
        }
        let filling = self.cache_flights.lead(entry, now);
        let mut headers = out.headers.clone();
        for name in [
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_MATCH,
            header::IF_UNMODIFIED_SINCE,
            header::IF_RANGE,
            header::RANGE,
        ] {
            headers.remove(name);
        }
        host.defer(Later(LaterWork::Refresh(Box::new(Refresh {
            route,
            path_and_query: out.path_and_query.clone(),
            headers,
            key,
            probe,
            record,
            stale_since,
            request_id: ctx.request_id.to_string(),
            _filling: filling,
        }))));
        "stale-while-revalidate"
    }

    /// Refreshes a stale entry ([`Refresh`]), after the answer that served it, and logs a
    /// `cache-refresh` line saying how it went. Another isolate's or instance's refresh of the
    /// same entry under way (its marker in the store, written after the stale entry and less
    /// than the upstream's timeout ago, all attempts counted) is left to finish instead.
    pub(super) async fn refresh<H: Host>(&self, job: Refresh, host: &H) {
        let t = host.monotonic_us();
        let r = self.config.route_at(job.route);
        let (Action::Proxy(i), Some(rule)) = (&r.action, &r.cache) else {
            return;
        };
        let upstream = &self.config.upstreams[*i];
        let (outcome, status) = self.refreshed(&job, r, rule, upstream, host).await;
        let line = serde_json::json!({
            "ts_ms": host.now(),
            "request_id": job.request_id,
            "event": "cache-refresh",
            "route": r.name,
            "outcome": outcome,
            "upstream_status": status,
            "duration_us": host.monotonic_us().saturating_sub(t),
        });
        host.log(&line.to_string());
    }

    /// The refresh itself: how it ended, and the upstream's status.
    async fn refreshed<H: Host>(
        &self,
        job: &Refresh,
        r: &Route,
        rule: &cache::CacheRule,
        upstream: &crate::config::Upstream,
        host: &H,
    ) -> (&'static str, Option<u16>) {
        let marker = cache::refresh_key(&job.key);
        let now = host.now();
        // as long as a refresh may take, all its attempts
        let bound_ms = u64::from(upstream.timeout_ms) * u64::from(1 + upstream.retries);
        let under_way = |at: u64| at >= job.stale_since && now < at.saturating_add(bound_ms);
        match host.store_get(&marker).await {
            Ok(Some(v)) if cache::invalidated_at(&v).is_some_and(under_way) => {
                return ("under-way", None);
            }
            Ok(_) => {}
            Err(_) => return ("store-error", None),
        }
        let ttl_s = u32::try_from(bound_ms.div_ceil(1000)).unwrap_or(u32::MAX);
        let _ = (host.store_put(&marker, now.to_string().into_bytes(), ttl_s)).await;
        let out = Outbound {
            method: &Method::GET,
            upgrade: false,
            path_and_query: job.path_and_query.clone(),
            headers: job.headers.clone(),
            body: Body::Bytes(Bytes::new()),
        };
        let exchange = Exchange {
            timeout_ms: upstream.timeout_ms,
            idle_timeout_ms: upstream.idle_timeout_ms,
            max_response_bytes: upstream.max_response_bytes.min(rule.max_bytes),
            max_request_bytes: r.validation.max_body_bytes,
            body: BodyUse::Read,
            request_id: &job.request_id,
        };
        let mut sent = Tries::default();
        let res = match send_upstream(upstream, out, &exchange, &mut sent, host).await {
            Ok(res) => res,
            Err(reject) => return (reject.code(), sent.status),
        };
        let (head, body) = res.into_parts();
        let bytes = match body {
            Body::Bytes(bytes) => bytes,
            Body::Stream(stream) => match host.read_stream(stream, rule.max_bytes).await {
                Ok(bytes) => bytes,
                Err(_) => return ("not-stored", sent.status),
            },
        };
        let view = Response::from_parts(head, bytes);
        let Some((entry, ttl)) = cache::store(rule, &job.probe, &view, host.now()) else {
            return ("not-stored", sent.status);
        };
        let at = (&job.key, &job.probe, job.record.as_deref());
        let stored = match self.entry_key(at, view.headers(), ttl, host).await {
            Ok(key) => host.store_put(&key, entry, ttl).await,
            Err(e) => Err(e),
        };
        match stored {
            Ok(()) => ("stored", sent.status),
            Err(_) => ("store-error", sent.status),
        }
    }

    /// After an unsafe request answered 2xx/3xx, marks its target URI and its `Location` and
    /// `Content-Location` on the same authority as invalidated (RFC 9111 §4.4): entries stored
    /// before the mark are not served again. A failed write is logged, not an error.
    #[allow(clippy::too_many_arguments)]
    async fn invalidate<H: Host>(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        status: http::StatusCode,
        res_headers: &http::HeaderMap,
        ctx: &mut Ctx<'_>,
        host: &H,
    ) {
        let target = absolute_uri(ctx, path, query);
        let Some(uris) = cache::invalidated_uris(method, &target, status, res_headers) else {
            return;
        };
        let t = host.monotonic_us();
        let mut decision = "invalidate";
        match cache_generation(host).await {
            Ok(generation) => {
                let now = host.now().to_string();
                for uri in &uris {
                    let key = cache::invalidation_key(generation, uri);
                    let put = host.store_put(&key, now.clone().into_bytes(), cache::MAX_TTL_S);
                    if put.await.is_err() {
                        decision = "invalidate:store-error";
                    }
                }
            }
            Err(_) => decision = "invalidate:store-error",
        }
        ctx.mark(Phase::Cache, decision, t, host);
    }

    /// Step 5, route: the `purge_cache` admin action. An empty body purges everything;
    /// `{"tags": [...]}` purges the answers carrying any of those tags.
    pub(super) async fn purge_action<S, H: Host>(
        &self,
        r: &Route,
        body: &Body<S>,
        ctx: &mut Ctx<'_>,
        host: &H,
    ) -> Result<Response<Body<S>>, Reject> {
        let t = host.monotonic_us();
        // an admin route's body is read before its action (it answers itself)
        let request = body.bytes().map_or(&[][..], |b| &b[..]);
        let tags = purge_tags_of(request)
            .map_err(|why| ctx.refuse(Phase::Route, Reject::InvalidBody(why), t, host))?;
        let purged = match &tags {
            None => self.purge_cache(host).await.map(|generation| {
                format!("{{\"action\":\"purge_cache\",\"generation\":{generation}}}")
            }),
            Some(tags) => self.purge_tags(tags, host).await.map(|()| {
                let tags = serde_json::to_string(tags).unwrap_or_default();
                format!("{{\"action\":\"purge_cache\",\"tags\":{tags}}}")
            }),
        };
        let decision = match (&purged, &tags) {
            (Ok(_), None) => "admin:purge_cache",
            (Ok(_), Some(_)) => "admin:purge_cache:tags",
            (Err(_), _) => "admin:store-error",
        };
        ctx.mark(Phase::Route, decision, t, host);
        let body = purged.map_err(|_| Reject::Unavailable)?;
        let mut res = Response::new(Body::Bytes(Bytes::from(body)));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(self.process_response(r, res, ctx, host))
    }

    /// Purges the cached responses carrying any of `tags` (normalized, as
    /// [`cache::normalize_tag`] gives them): each tag's marker in the current generation is set
    /// to now, and entries stored until then are not served again.
    pub async fn purge_tags<H: Host>(
        &self,
        tags: &[String],
        host: &H,
    ) -> Result<(), crate::host::HostError> {
        let generation = cache_generation(host).await?;
        let now = host.now().to_string();
        for tag in tags {
            let key = cache::tag_key(generation, tag);
            host.store_put(&key, now.clone().into_bytes(), cache::MAX_TTL_S)
                .await?;
        }
        Ok(())
    }

    /// Purges every cached response by moving to a new cache generation; returns it.
    pub async fn purge_cache<H: Host>(&self, host: &H) -> Result<u64, crate::host::HostError> {
        let current = cache_generation(host).await?;
        let next = current + 1;
        host.store_put(
            &cache::GENERATION_KEY,
            next.to_string().into_bytes(),
            365 * 86_400,
        )
        .await?;
        Ok(next)
    }
}

/// `scheme://authority/path?query` as the gateway forwards and keys the request (`http` and
/// `gateway` when the request named neither).
fn absolute_uri(ctx: &Ctx<'_>, path: &str, query: Option<&str>) -> http::Uri {
    let scheme = ctx.scheme.unwrap_or("http");
    let authority = ctx.authority.unwrap_or("gateway");
    let full = match query {
        Some(q) => format!("{scheme}://{authority}{path}?{q}"),
        None => format!("{scheme}://{authority}{path}"),
    };
    full.parse().unwrap_or_default()
}

/// The most tags one purge request may name.
const MAX_PURGE_TAGS: usize = 64;

/// What a purge request asks for: `None` for everything (an empty body), or the tags (a JSON
/// object `{"tags": [...]}` with 1 to [`MAX_PURGE_TAGS`] tags, normalized); why not otherwise.
fn purge_tags_of(body: &[u8]) -> Result<Option<Vec<String>>, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Purge {
        tags: Vec<String>,
    }
    if body.trim_ascii().is_empty() {
        return Ok(None);
    }
    let purge: Purge = serde_json::from_slice(body).map_err(|e| {
        format!("a purge is an empty body (everything) or {{\"tags\": [...]}}: {e}")
    })?;
    if !(1..=MAX_PURGE_TAGS).contains(&purge.tags.len()) {
        return Err(format!("a purge names 1 to {MAX_PURGE_TAGS} tags"));
    }
    let tags = purge.tags.iter().map(|tag| cache::normalize_tag(tag));
    let mut tags = tags.collect::<Result<Vec<_>, _>>()?;
    tags.sort_unstable();
    tags.dedup();
    Ok(Some(tags))
}

/// The current cache generation (0 when none was stored yet or the value is unreadable).
async fn cache_generation<H: Host>(host: &H) -> Result<u64, crate::host::HostError> {
    Ok(host
        .store_get(&cache::GENERATION_KEY)
        .await?
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::purge_tags_of;

    #[test]
    fn a_purge_request_names_everything_or_its_tags() {
        assert_eq!(purge_tags_of(b""), Ok(None));
        assert_eq!(purge_tags_of(b" \r\n"), Ok(None));
        assert_eq!(
            purge_tags_of(br#"{"tags": ["Product-7", "home", "product-7"]}"#),
            Ok(Some(vec!["home".to_string(), "product-7".to_string()]))
        );
        for (body, why) in [
            (&br#"{"tags": []}"#[..], "1 to 64 tags"),
            (br#"{"tags": ["a b"]}"#, "is not a cache tag"),
            (br#"{"tags": ["a,b"]}"#, "is not a cache tag"),
            (br#"{"tags": [""]}"#, "is not a cache tag"),
            (br#"{"tags": ["a"], "all": true}"#, "unknown field `all`"),
            (br#"{"tags": "a"}"#, "invalid type"),
            (b"tags=a", "an empty body (everything) or"),
        ] {
            let err = purge_tags_of(body).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
        let many = format!(r#"{{"tags": [{}]}}"#, vec!["\"t\""; 65].join(","));
        assert!(purge_tags_of(many.as_bytes()).is_err());
        let long = format!(r#"{{"tags": ["{}"]}}"#, "x".repeat(129));
        assert!(purge_tags_of(long.as_bytes()).is_err());
    }
}
