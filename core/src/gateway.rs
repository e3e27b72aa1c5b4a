//! `Gateway::handle`: the phases in the order of the request's journey, and nothing else.
//!
//! ```text
//! request ─► validate ─► access ─► auth ─► ratelimit ─► route ─► cache ─► backend
//!                                                                    │
//! client  ◄─ observe ◄─ transform ◄──────────────────────────────────┘
//! ```
//! Route matching runs right after path normalization, because the checks that follow are the
//! matched route's. State kept between requests (verified tokens, JWKS) lives here, per isolate;
//! everything shared across isolates goes through the [`Host`].

use crate::config::raw::AdminAction;
use crate::config::{Action, Config, Route};
use crate::host::{BodyUse, FetchError, Host};
use crate::phase::access::{self, Client};
use crate::phase::auth::{self, Consumer, Key, TokenCache, TokenError};
use crate::phase::observe::{AccessLog, Phase};
use crate::phase::ratelimit::{self, Quota, Verdict};
use crate::phase::{cache, forward, route, transform, validate};
use crate::problem::Reject;
use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, Response};
use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

mod jwks;
use jwks::{jwks_store_key, Jwks};

/// The W3C trace-context header.
const TRACEPARENT: &str = "traceparent";

/// The gateway: a compiled config plus what it remembers between requests.
pub struct Gateway {
    config: Config,
    /// `RateLimit-Policy` values and quoted names, per rate limit.
    limit_fields: Vec<(HeaderValue, String)>,
    /// Per rate-limit policy, the quota of each of its shards (empty when it has one counter).
    limit_shards: Vec<Vec<Quota>>,
    tokens: RefCell<TokenCache>,
    jwks: RefCell<Vec<Jwks>>,
    /// Per JWT provider, the store key of its JWKS record.
    jwks_store_keys: Vec<String>,
    /// The access-log line's buffer, reused from request to request.
    log_line: RefCell<String>,
}

/// `value` itself when `take` (leaving its default behind), else a copy of it.
fn take_or_clone<T: Clone + Default>(value: &mut T, take: bool) -> T {
    if take {
        std::mem::take(value)
    } else {
        value.clone()
    }
}

/// A log line buffer that grew past this is given back rather than kept for the next request.
const LOG_LINE_KEEP: usize = 16 * 1024;

/// What the request carries from phase to phase.
struct Ctx<'a> {
    request_id: &'a str,
    /// The same id as a header value, shared by the upstream request and the response.
    request_id_value: &'a HeaderValue,
    traceparent: &'a str,
    /// The address the connection came from, and whether it is a trusted proxy.
    peer: (std::net::IpAddr, bool),
    client: &'a Client,
    /// The request's authority (`host[:port]`) and scheme, as forwarded and keyed.
    authority: Option<&'a str>,
    scheme: Option<&'a str>,
    route: Option<&'a Route>,
    consumer: Option<Rc<Consumer>>,
    /// The rate limit applied (index into the config's) and its verdict.
    limit: Option<(usize, Verdict)>,
    log: AccessLog<'a>,
}

/// The parts of the request that `run` consumes; the method and URI stay with `handle`, which
/// logs them.
struct Incoming<'a> {
    method: &'a Method,
    uri: &'a http::Uri,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Gateway {
    pub fn new(config: Config) -> Gateway {
        let tokens = RefCell::new(TokenCache::new(config.token_cache_size));
        let jwks = RefCell::new(config.jwt.iter().map(|_| Jwks::default()).collect());
        let jwks_store_keys = config
            .jwt
            .iter()
            .map(|p| jwks_store_key(&p.name, p.jwks_url.as_deref().unwrap_or("")))
            .collect();
        let limit_fields = config
            .rate_limits
            .iter()
            .map(ratelimit::policy_fields)
            .collect();
        let limit_shards = config
            .rate_limits
            .iter()
            .map(|q| match q.shards {
                0 | 1 => Vec::new(),
                n => (0..n).map(|i| q.shard(i)).collect(),
            })
            .collect();
        Gateway {
            config,
            limit_fields,
            limit_shards,
            tokens,
            jwks,
            jwks_store_keys,
            log_line: RefCell::default(),
        }
    }

    /// Builds the gateway from the config an adapter embedded at build time (`Config::embed`
    /// wrote it as data, `config::emit::build` made `raw` of it), reading `secret_env` keys with
    /// `read_secret`. The build checked everything else, so an error is a missing or unusable
    /// secret, or a mismatched build; it comes as the listing.
    pub fn from_embedded(
        raw: crate::config::raw::RawConfig,
        read_secret: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Gateway, String> {
        Config::from_embedded(raw, read_secret)
            .map(Gateway::new)
            .map_err(|e| e.render("embedded config"))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Handles one request from `client` (as the adapter trusts it).
    pub async fn handle<H: Host>(
        &self,
        req: Request<Bytes>,
        client: Client,
        host: &H,
    ) -> Response<Bytes> {
        let start = host.monotonic_us();
        let (parts, body) = req.into_parts();
        let http::request::Parts {
            method,
            uri,
            headers,
            ..
        } = parts;
        let request_id_value = headers
            .get(&self.config.request_id_header)
            .filter(|v| transform::valid_request_id(v).is_some())
            .cloned()
            .unwrap_or_else(|| {
                let id = transform::new_request_id(host.random(), host.random());
                // hex digits are always a valid value
                transform::shared_value(id).unwrap_or(HeaderValue::from_static("-"))
            });
        let request_id = request_id_value.to_str().unwrap_or("-");
        let traceparent = transform::traceparent(
            headers.get(TRACEPARENT),
            [host.random(), host.random(), host.random()],
        );
        let traceparent = transform::traceparent_text(&traceparent);
        let peer = (client.ip, self.config.trusted_proxies.contains(client.ip));
        let client = Client {
            ip: access::effective_ip(client.ip, &headers, &self.config.trusted_proxies),
            ..client
        };
        let client_ip = access::ip_text(client.ip);
        let req_host = route::request_host(&uri, &headers);
        let authority = route::request_authority(&uri, &headers, req_host.as_deref());
        let origin = headers.get(header::ORIGIN).cloned();
        let log = AccessLog {
            ts_ms: host.now(),
            request_id,
            trace_id: transform::trace_id(traceparent),
            method: method.as_str(),
            path: uri.path(),
            host: req_host.as_deref().unwrap_or_default(),
            phases: Vec::with_capacity(10),
            client_ip: client_ip.as_str(),
            country: client.country.as_deref(),
            asn: client.asn,
            edge_location: client.edge_location.as_deref(),
            ..Default::default()
        };
        let mut ctx = Ctx {
            request_id,
            request_id_value: &request_id_value,
            traceparent,
            peer,
            client: &client,
            authority: authority.as_deref(),
            scheme: uri.scheme_str(),
            route: None,
            consumer: None,
            limit: None,
            log,
        };
        let req = Incoming {
            method: &method,
            uri: &uri,
            headers,
            body,
        };
        let mut res = match self.run(req, &mut ctx, host).await {
            Ok(res) => res,
            Err(reject) => {
                ctx.log.error = Some(reject.code());
                let mut res = reject.to_response(request_id);
                // the route's response headers (nosniff, HSTS, …) go on its refusals too
                if let Some(tr) = ctx.route.and_then(|r| r.response.as_deref()) {
                    let consumer = ctx.consumer.as_ref().map(|c| c.id.clone());
                    let vars = transform::Vars {
                        consumer: consumer.as_deref().unwrap_or(""),
                        route: ctx.route.map_or("", |r| &r.name),
                        request_id,
                        client_ip: ctx.log.client_ip,
                    };
                    transform::apply_headers(tr, res.headers_mut(), &vars);
                }
                res
            }
        };
        // response processing that applies to every answer, refusals included
        let t = host.monotonic_us();
        if let Some((i, verdict)) = &ctx.limit {
            let (policy, name) = &self.limit_fields[*i];
            ratelimit::set_headers_with(res.headers_mut(), policy, name, verdict);
        }
        if let Some(cors) = ctx.route.and_then(|r| r.cors).map(|i| &self.config.cors[i]) {
            transform::cors_response(cors, origin.as_ref(), res.headers_mut());
        }
        res.headers_mut().insert(
            self.config.request_id_header.clone(),
            request_id_value.clone(),
        );
        let end = host.monotonic_us();
        ctx.log.phase(Phase::Respond, "done", t, end);
        ctx.log.status = res.status().as_u16();
        ctx.log.duration_us = end.saturating_sub(start);
        if self.config.server_timing {
            if let Some(v) = ctx.log.server_timing() {
                res.headers_mut()
                    .insert(const { HeaderName::from_static("server-timing") }, v);
            }
        }
        self.write_log(&ctx.log, host);
        res
    }

    async fn run<'a, H: Host>(
        &'a self,
        req: Incoming<'a>,
        ctx: &mut Ctx<'a>,
        host: &H,
    ) -> Result<Response<Bytes>, Reject> {
        let cfg = &self.config;
        let Incoming {
            method,
            uri,
            mut headers,
            body,
        } = req;

        // 1. validate: sizes and the path, before anything looks at them
        let t = host.monotonic_us();
        let checked = validate::check_sizes(&cfg.limits, uri, &headers)
            .and_then(|()| validate::check_framing(&headers))
            .and_then(|()| validate::normalize_path(uri.path()));
        let path = checked.inspect_err(|r| {
            ctx.log
                .phase(Phase::Validate, r.code(), t, host.monotonic_us())
        })?;
        let preflight = transform::is_preflight(method, &headers);
        let match_method = if preflight {
            transform::preflight_method(&headers).unwrap_or(Method::OPTIONS)
        } else {
            method.clone()
        };
        let req_host = (!ctx.log.host.is_empty()).then_some(ctx.log.host);
        let found = cfg.router.find(&match_method, req_host, &path);
        let found = match (found, preflight) {
            (Err(Reject::MethodNotAllowed { .. }), true) | (Err(Reject::NotFound), true) => {
                cfg.router.find(method, req_host, &path)
            }
            (f, _) => f,
        }
        .inspect_err(|r| {
            ctx.log
                .phase(Phase::Validate, r.code(), t, host.monotonic_us())
        })?;
        let mut r = &cfg.routes[found.route];
        let mut found = found;
        if preflight {
            if let Some(cors) = r.cors.map(|i| &cfg.cors[i]) {
                ctx.route = Some(r);
                ctx.log.route = Some(&r.name);
                ctx.log
                    .phase(Phase::Validate, "preflight", t, host.monotonic_us());
                return Ok(transform::preflight(cors, &headers, &r.methods));
            }
            // no CORS here: an OPTIONS request like any other, 405 unless a route takes it
            found = cfg.router.find(method, req_host, &path).inspect_err(|r| {
                ctx.log
                    .phase(Phase::Validate, r.code(), t, host.monotonic_us())
            })?;
            r = &cfg.routes[found.route];
        }
        ctx.route = Some(r);
        ctx.log.route = Some(&r.name);
        let query = uri.query();
        validate::check_params(&r.validation, found.params.iter(), query, &headers)
            .and_then(|()| validate::check_body(&r.validation, &headers, &body))
            .inspect_err(|e| {
                ctx.log
                    .phase(Phase::Validate, e.code(), t, host.monotonic_us())
            })?;
        ctx.log
            .phase(Phase::Validate, "pass", t, host.monotonic_us());

        // 2. access
        if let Some(policy) = r.access.map(|i| &cfg.access[i]) {
            let t = host.monotonic_us();
            let verdict = access::check(policy, ctx.client);
            ctx.log.phase(
                Phase::Access,
                if verdict.is_ok() { "pass" } else { "deny" },
                t,
                host.monotonic_us(),
            );
            verdict?;
        }

        // 3. auth
        if let Some(rule) = &r.auth {
            let t = host.monotonic_us();
            let outcome = self.authenticate(rule, &headers, query, host).await;
            let outcome = outcome.and_then(|c| match c {
                Some((c, via)) => {
                    auth::authorize(&rule.scopes, &rule.claims, &c).map(|()| Some((c, via)))
                }
                // a provider failed open: that lets a request in, but proves no scope or claim
                None if !rule.scopes.is_empty() || !rule.claims.is_empty() => {
                    Err(Reject::Unavailable)
                }
                None => Ok(None),
            });
            let decision = match &outcome {
                Ok(Some((_, via))) => via,
                Ok(None) => "fail-open",
                Err(e) => e.code(),
            };
            ctx.log.phase(Phase::Auth, decision, t, host.monotonic_us());
            if let Err(Reject::Unauthenticated(_)) = &outcome {
                // a refused credential counts against an `ip` limit, so keys and passwords
                // cannot be guessed without limit
                if let Some(qi) = r.rate_limit {
                    if cfg.rate_limits[qi].key == ratelimit::LimitKey::Ip {
                        self.charge_limit(qi, r, ctx, &headers, host).await?;
                    }
                }
            }
            ctx.consumer = outcome?.map(|(c, _)| c);
            ctx.log.consumer = ctx.consumer.as_ref().map(|c| c.id.clone());
        }

        // 4. rate limit
        if let Some(qi) = r.rate_limit {
            self.charge_limit(qi, r, ctx, &headers, host).await?;
        }

        // 5. route
        let t = host.monotonic_us();
        let vars_consumer = ctx.consumer.as_ref().map(|c| c.id.clone());
        let client_ip = ctx.log.client_ip;
        let vars = transform::Vars {
            consumer: vars_consumer.as_deref().unwrap_or(""),
            route: &r.name,
            request_id: ctx.request_id,
            client_ip,
        };
        let upstream = match &r.action {
            Action::Respond(resp) => {
                ctx.log
                    .phase(Phase::Route, "respond", t, host.monotonic_us());
                let mut res = Response::new(if *method == Method::HEAD {
                    Bytes::new()
                } else {
                    resp.body.clone()
                });
                *res.status_mut() = resp.status;
                *res.headers_mut() = resp.headers.clone();
                return Ok(self.process_response(r, res, &vars, ctx, host));
            }
            Action::Admin(AdminAction::PurgeCache) => {
                let purged = self.purge_cache(host).await;
                let decision = if purged.is_ok() {
                    "admin:purge_cache"
                } else {
                    "admin:store-error"
                };
                ctx.log
                    .phase(Phase::Route, decision, t, host.monotonic_us());
                let generation = purged.map_err(|_| Reject::Unavailable)?;
                let body = format!("{{\"action\":\"purge_cache\",\"generation\":{generation}}}");
                let mut res = Response::new(Bytes::from(body));
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                res.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return Ok(self.process_response(r, res, &vars, ctx, host));
            }
            Action::Proxy(i) => &cfg.upstreams[*i],
        };
        let origin = forward::Origin {
            peer: ctx.peer.0,
            peer_trusted: ctx.peer.1,
            client_ip,
            authority: ctx.authority,
            scheme: ctx.scheme,
            cached: r.cache.is_some(),
        };
        let mut up_query = query.map(Cow::Borrowed);
        let mut body = body;
        forward::remove_untrusted(&mut headers, &origin);
        let edited = r.request.as_ref().map_or(Ok(()), |tr| {
            transform::apply_headers(tr, &mut headers, &vars);
            up_query = transform::apply_query(tr, query);
            if tr.has_json() {
                // a body the transform cannot read would reach a lenient backend unedited
                body = transform::apply_request_json(tr, &body)?;
            }
            Ok(())
        });
        let up_path_and_query = edited.and_then(|()| {
            route::upstream_path_and_query(
                &path,
                &found.params,
                r.rewrite.as_ref(),
                r.strip_prefix.as_deref(),
                up_query.as_deref(),
            )
        });
        if let Err(e) = &up_path_and_query {
            ctx.log
                .phase(Phase::Route, e.code(), t, host.monotonic_us());
        }
        let mut up_path_and_query = up_path_and_query?;
        forward::set_owned(&mut headers, &origin, body.len());
        headers.insert(cfg.request_id_header.clone(), ctx.request_id_value.clone());
        if let Ok(v) = HeaderValue::from_str(ctx.traceparent) {
            headers.insert(const { HeaderName::from_static(TRACEPARENT) }, v);
        }
        ctx.log.upstream = Some(&upstream.name);
        ctx.log
            .phase(Phase::Route, upstream.name.as_str(), t, host.monotonic_us());

        // 6. cache (a build without `response-cache` has no cached routes), then the backend
        #[cfg(feature = "response-cache")]
        let cache_probe = match &r.cache {
            Some(rule) => {
                let probe = self.cache_probe(method, &path, query, &headers, ctx);
                match self.cache_lookup(rule, r, probe, ctx, host).await? {
                    CacheLookup::Hit(hit) => {
                        return Ok(self.process_response(r, hit, &vars, ctx, host))
                    }
                    CacheLookup::Miss(key, probe) => Some((rule, key, probe)),
                    CacheLookup::Bypass => None,
                }
            }
            None => None,
        };

        let t = host.monotonic_us();
        let attempts = 1 + if route::is_idempotent(method) {
            upstream.retries
        } else {
            0
        };
        // the body reaches the client as the upstream sent it unless it is cached or transformed
        let body_use = if r.cache.is_none() && r.response.as_ref().is_none_or(|t| !t.has_json()) {
            BodyUse::PassOn
        } else {
            BodyUse::Read
        };
        let mut outcome = Err(Reject::BadGateway);
        for attempt in 1..=attempts {
            let target = &upstream.targets[route::pick(&upstream.weights, host.random())];
            // the last attempt takes the parts; earlier ones send copies
            let last = attempt == attempts;
            let uri = transform::upstream_uri(target, take_or_clone(&mut up_path_and_query, last))
                .map_err(|_| Reject::BadGateway)?;
            let mut out = Request::new(take_or_clone(&mut body, last));
            *out.method_mut() = method.clone();
            *out.uri_mut() = uri;
            *out.headers_mut() = take_or_clone(&mut headers, last);
            ctx.log.upstream_attempts = attempt;
            match host
                .fetch(
                    out,
                    upstream.timeout_ms,
                    upstream.max_response_bytes,
                    body_use,
                )
                .await
            {
                Ok(res) if attempt < attempts && route::is_retryable_status(res.status()) => {
                    continue
                }
                Ok(res) => {
                    outcome = Ok(res);
                    break;
                }
                Err(FetchError::Connect(_)) if attempt < attempts => continue,
                Err(FetchError::Timeout) => {
                    outcome = Err(Reject::GatewayTimeout);
                    break;
                }
                Err(_) => {
                    outcome = Err(Reject::BadGateway);
                    break;
                }
            }
        }
        let upstream_us = host.monotonic_us().saturating_sub(t);
        ctx.log.upstream_us = Some(upstream_us);
        let res = outcome?;
        ctx.log.upstream_status = Some(res.status().as_u16());
        // `http` accepts any status up to 999, and a fetch may surface a stray 1xx: an answer
        // outside 200–599 is not one a client can read (workerd's `Response` refuses it)
        if !(200..=599).contains(&res.status().as_u16()) {
            return Err(Reject::BadGateway);
        }
        let mut res = res;
        transform::strip_hop_by_hop(res.headers_mut());
        #[cfg(feature = "response-cache")]
        if let Some((rule, key, probe)) = cache_probe {
            if let Some((bytes, ttl)) = cache::store(rule, &probe, &res, host.now()) {
                // a failed write only costs a later miss
                let _ = host.store_put(&key.entry, bytes, ttl).await;
            }
        }
        #[cfg(feature = "response-cache")]
        if cfg.caches_responses {
            self.invalidate(method, &path, query, res.status(), res.headers(), ctx, host)
                .await;
        }
        Ok(self.process_response(r, res, &vars, ctx, host))
    }

    /// 7. transform: the route's response transform.
    fn process_response<H: Host>(
        &self,
        r: &Route,
        mut res: Response<Bytes>,
        vars: &transform::Vars<'_>,
        ctx: &mut Ctx<'_>,
        host: &H,
    ) -> Response<Bytes> {
        let t = host.monotonic_us();
        if let Some(tr) = &r.response {
            transform::apply_headers(tr, res.headers_mut(), vars);
            if tr.has_json() {
                let body = transform::apply_json(tr, res.body());
                res.headers_mut().remove(header::CONTENT_LENGTH);
                *res.body_mut() = body;
            }
            ctx.log
                .phase(Phase::Transform, "applied", t, host.monotonic_us());
        }
        res
    }

    /// Writes the access-log line into the reused buffer and hands it to the host. The buffer
    /// is borrowed only here, with no await inside, so interleaved requests never meet in it.
    fn write_log<H: Host>(&self, log: &AccessLog<'_>, host: &H) {
        let Ok(mut line) = self.log_line.try_borrow_mut() else {
            // only if a host's `log` handled another request inside this one
            return host.log(&log.to_json());
        };
        line.clear();
        log.write_json(&mut line);
        host.log(&line);
        if line.capacity() > LOG_LINE_KEEP {
            *line = String::new();
        }
    }

    /// Rate limiting (phase 4): charges the request to the route's rate limit `qi`, the counter
    /// `rl:<policy>:<key part>` (a sharded policy adds `#<shard>`), with the verdict in `ctx`.
    async fn charge_limit<H: Host>(
        &self,
        qi: usize,
        r: &Route,
        ctx: &mut Ctx<'_>,
        headers: &http::HeaderMap,
        host: &H,
    ) -> Result<(), Reject> {
        let t = host.monotonic_us();
        let quota = &self.config.rate_limits[qi];
        let part = ratelimit::key_part(
            quota,
            &r.name,
            ctx.client.ip,
            ctx.consumer.as_deref(),
            headers,
        );
        let mut key = String::with_capacity(4 + quota.name.len() + part.len() + 3);
        key.push_str("rl:");
        key.push_str(&quota.name);
        key.push(':');
        key.push_str(&part);
        let shards = &self.limit_shards[qi];
        let charged = ratelimit::pick_shard(quota, shards, &mut key, || host.random());
        match host.rate_limit(&key, charged, 1).await {
            Ok(verdict) => {
                ctx.limit = Some((qi, verdict));
                ctx.log.rate_limit_remaining = Some(verdict.remaining);
                let decision = if verdict.allowed { "allow" } else { "limit" };
                ctx.log
                    .phase(Phase::RateLimit, decision, t, host.monotonic_us());
                if !verdict.allowed {
                    return Err(Reject::RateLimited {
                        retry_after_s: verdict.retry_after_s,
                        policy: quota.name.clone(),
                    });
                }
                Ok(())
            }
            Err(_) if quota.fail_open => {
                ctx.log
                    .phase(Phase::RateLimit, "store-error:open", t, host.monotonic_us());
                Ok(())
            }
            Err(_) => {
                ctx.log.phase(
                    Phase::RateLimit,
                    "store-error:closed",
                    t,
                    host.monotonic_us(),
                );
                Err(Reject::Unavailable)
            }
        }
    }

    /// Finds and checks the request's credentials, and names the provider that vouched for
    /// them (`jwt:NAME`, `api_key:NAME`). `Ok(None)`: a provider failed open.
    async fn authenticate<H: Host>(
        &self,
        rule: &crate::config::AuthRule,
        headers: &http::HeaderMap,
        query: Option<&str>,
        host: &H,
    ) -> Result<Option<(Rc<Consumer>, &str)>, Reject> {
        if let Some(pi) = rule.jwt {
            let provider = &self.config.jwt[pi];
            if let Some(token) = auth::bearer(headers, &provider.header) {
                let consumer = self.verify_jwt(pi, token, host).await?;
                return Ok(consumer.map(|c| (c, provider.label.as_str())));
            }
        }
        if let Some(si) = rule.api_key {
            let set = &self.config.api_keys[si];
            if let Some(key) = auth::presented_api_key(set, headers, query) {
                return match auth::check_api_key(set, &key) {
                    Some((consumer, scopes)) => Ok(Some((
                        Rc::new(Consumer {
                            id: consumer.as_str().into(),
                            scopes: scopes.clone(),
                            claims: Rc::default(),
                        }),
                        set.label.as_str(),
                    ))),
                    None => Err(Reject::Unauthenticated("unknown API key".into())),
                };
            }
        }
        Err(Reject::Unauthenticated("no credentials".into()))
    }

    async fn verify_jwt<H: Host>(
        &self,
        pi: usize,
        token: &str,
        host: &H,
    ) -> Result<Option<Rc<Consumer>>, Reject> {
        let provider = &self.config.jwt[pi];
        let now = host.now();
        let cached = self.tokens.borrow().get(pi, token, now);
        if let Some(v) = cached {
            return Ok(Some(v.consumer));
        }
        let mut remote = match &provider.jwks_url {
            Some(_) => match self.jwks_keys(pi, false, host).await {
                Some(keys) => keys,
                None if provider.keys.is_empty() => {
                    return if provider.fail_open {
                        Ok(None)
                    } else {
                        Err(Reject::Unavailable)
                    };
                }
                None => Rc::default(),
            },
            None => Rc::default(),
        };
        let mut result = {
            let all: Vec<&Key> = provider.keys.iter().chain(remote.iter()).collect();
            auth::verify_token(provider, &all, token, now)
        };
        if result == Err(TokenError::UnknownKid) && provider.jwks_url.is_some() {
            if let Some(fresh) = self.jwks_keys(pi, true, host).await {
                remote = fresh;
                let all: Vec<&Key> = provider.keys.iter().chain(remote.iter()).collect();
                result = auth::verify_token(provider, &all, token, now);
            }
        }
        match result {
            Ok(verified) => {
                let consumer = verified.consumer.clone();
                self.tokens.borrow_mut().put(pi, token, verified, now);
                Ok(Some(consumer))
            }
            Err(TokenError::UnknownKid) => {
                Err(Reject::Unauthenticated("unknown signing key".into()))
            }
            Err(TokenError::Invalid(why)) => Err(Reject::Unauthenticated(why.into())),
        }
    }

    /// The request as the cache sees it: absolute, with the scheme and authority the gateway
    /// forwards, and the headers that go upstream.
    #[cfg(feature = "response-cache")]
    fn cache_probe(
        &self,
        method: &Method,
        path: &str,
        query: Option<&str>,
        headers: &http::HeaderMap,
        ctx: &Ctx<'_>,
    ) -> Request<Bytes> {
        let mut probe = Request::new(Bytes::new());
        *probe.method_mut() = method.clone();
        *probe.headers_mut() = headers.clone();
        *probe.uri_mut() = absolute_uri(ctx, path, query);
        probe
    }

    /// Looks the request up in the cache (6); a store failure follows the rule's fail mode:
    /// open bypasses the cache, closed is 503.
    #[cfg(feature = "response-cache")]
    async fn cache_lookup<H: Host>(
        &self,
        rule: &cache::CacheRule,
        r: &Route,
        probe: Request<Bytes>,
        ctx: &mut Ctx<'_>,
        host: &H,
    ) -> Result<CacheLookup, Reject> {
        let t = host.monotonic_us();
        // a consumer without an id has none to key by
        let consumer = ctx.consumer.as_ref().and_then(|c| c.identified());
        let lookup = async {
            let generation = cache_generation(host).await?;
            let key = match cache::key(rule, generation, &r.name, &probe, consumer) {
                Ok(key) => key,
                Err(why) => return Ok(Err(why)),
            };
            let stored = host.store_get(&key.entry).await?;
            let mut hit = None;
            if let Some(stored) = stored {
                // an entry is served only if no unsafe request invalidated its URI since
                let marker = host.store_get(&key.invalidation).await?;
                let invalidated = marker.as_deref().and_then(cache::invalidated_at);
                hit = cache::serve(&stored, &probe, host.now(), invalidated);
            }
            Ok::<_, crate::host::HostError>(Ok((hit, key)))
        }
        .await;
        let (outcome, decision) = match lookup {
            Ok(Ok((Some(hit), _))) => (CacheLookup::Hit(hit), Cow::Borrowed("hit")),
            Ok(Ok((None, key))) => (CacheLookup::Miss(key, probe), Cow::Borrowed("miss")),
            Ok(Err(why)) => (CacheLookup::Bypass, Cow::Owned(format!("bypass:{why}"))),
            Err(_) if !rule.fail_open => {
                ctx.log
                    .phase(Phase::Cache, "store-error:closed", t, host.monotonic_us());
                return Err(Reject::Unavailable);
            }
            Err(_) => (CacheLookup::Bypass, Cow::Borrowed("bypass:store-error")),
        };
        ctx.log.cache = Some(match &outcome {
            CacheLookup::Hit(_) => "hit",
            CacheLookup::Miss(..) => "miss",
            CacheLookup::Bypass => "bypass",
        });
        ctx.log
            .phase(Phase::Cache, decision, t, host.monotonic_us());
        Ok(outcome)
    }

    /// After an unsafe request answered 2xx/3xx, marks its target URI and its `Location` and
    /// `Content-Location` on the same authority as invalidated (RFC 9111 §4.4): entries stored
    /// before the mark are not served again. A failed write is logged, not an error.
    #[cfg(feature = "response-cache")]
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
        ctx.log
            .phase(Phase::Cache, decision, t, host.monotonic_us());
    }

    /// Purges every cached response by moving to a new cache generation; returns it.
    pub async fn purge_cache<H: Host>(&self, host: &H) -> Result<u64, crate::host::HostError> {
        let current = cache_generation(host).await?;
        let next = current + 1;
        host.store_put(
            cache::GENERATION_KEY,
            next.to_string().into_bytes(),
            365 * 86_400,
        )
        .await?;
        Ok(next)
    }
}

/// What the cache had for a request.
#[cfg(feature = "response-cache")]
enum CacheLookup {
    Hit(Response<Bytes>),
    /// Not there: the key to store the answer under, and the request as the cache saw it.
    Miss(cache::CacheKey, Request<Bytes>),
    Bypass,
}

/// `scheme://authority/path?query` as the gateway forwards and keys the request (`http` and
/// `gateway` when the request named neither).
#[cfg(feature = "response-cache")]
fn absolute_uri(ctx: &Ctx<'_>, path: &str, query: Option<&str>) -> http::Uri {
    let scheme = ctx.scheme.unwrap_or("http");
    let authority = ctx.authority.unwrap_or("gateway");
    let full = match query {
        Some(q) => format!("{scheme}://{authority}{path}?{q}"),
        None => format!("{scheme}://{authority}{path}"),
    };
    full.parse().unwrap_or_default()
}

/// The current cache generation (0 when none was stored yet or the value is unreadable).
async fn cache_generation<H: Host>(host: &H) -> Result<u64, crate::host::HostError> {
    Ok(host
        .store_get(cache::GENERATION_KEY)
        .await?
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0))
}
