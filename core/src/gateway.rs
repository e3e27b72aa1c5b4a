//! `Gateway::handle`: the phases in the order of the request's journey, and nothing else.
//!
//! ```text
//! request ─► validate ─► access ─► auth ─► ratelimit ─► route ─► cache ─► backend
//!                                                                    │
//! client  ◄─ observe ◄─ transform ◄──────────────────────────────────┘
//! ```
//! Route matching runs right after path normalization, because the checks that follow are the
//! matched route's. Bodies are the platform's streams unless a phase needs one read
//! ([`crate::body`]). State kept between requests (verified tokens, JWKS) lives here, per
//! isolate; everything shared across isolates goes through the [`Host`]. Each step's workings
//! are in the submodules: `inbound` (1–2), `identity` (3–4), `upstream` (5–6), `cached` (6).

use crate::body::Body;
#[cfg(feature = "response-cache")]
use crate::config::raw::AdminAction;
use crate::config::{Action, Config, Route};
use crate::host::Host;
use crate::phase::access::{self, Client};
use crate::phase::auth::{Consumer, TokenCache};
use crate::phase::observe::{AccessLog, Phase};
use crate::phase::ratelimit::{self, Quota, Verdict};
use crate::phase::{route, transform};
use crate::problem::Reject;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use std::cell::RefCell;
use std::rc::Rc;

#[cfg(feature = "response-cache")]
mod cached;
#[cfg(feature = "response-cache")]
pub(crate) use cached::Refresh;
mod identity;
mod inbound;
mod jwks;
#[cfg(feature = "telemetry")]
mod traced;
mod upstream;
use jwks::{jwks_store_key, Jwks};

/// The W3C trace-context header.
const TRACEPARENT: &str = "traceparent";

/// What the gateway makes once per rate-limit quota (a policy's, or a plan's version of one):
/// its `RateLimit-Policy` value and quoted name, and the quota of each of its shards (empty when
/// it has one counter).
struct LimitUse {
    fields: (HeaderValue, String),
    shards: Vec<Quota>,
}

impl LimitUse {
    fn of(q: &Quota) -> LimitUse {
        LimitUse {
            fields: ratelimit::policy_fields(q),
            shards: match q.shards {
                0 | 1 => Vec::new(),
                n => (0..n).map(|i| q.shard(i)).collect(),
            },
        }
    }
}

/// The gateway: a compiled config plus what it remembers between requests.
pub struct Gateway {
    config: Config,
    /// Per rate-limit policy, what each request under it needs made once.
    limits: Vec<LimitUse>,
    /// Per plan, the same for each policy it changes (in the plan's order).
    plan_limits: Vec<Vec<LimitUse>>,
    tokens: RefCell<TokenCache>,
    jwks: RefCell<Vec<Jwks>>,
    /// Per JWT provider, the store key of its JWKS record.
    jwks_store_keys: Vec<crate::store::StoreKey>,
    /// The access-log line's buffer, reused from request to request.
    log_line: RefCell<String>,
    /// The cache keys whose misses are being filled, which other misses wait for.
    #[cfg(feature = "response-cache")]
    cache_flights: crate::flight::Flights,
    /// Spans and counts waiting to share an export (`[telemetry]`, Workers).
    #[cfg(feature = "telemetry")]
    telemetry_batch: RefCell<crate::telemetry::Batch>,
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
    /// Where the client as a route with its own `trusted_proxies` sees it is kept (set at most
    /// once, after routing; [`Ctx::trust_as`]).
    route_client: &'a std::cell::OnceCell<(Client, access::IpText)>,
    /// The client's address as text (logged, forwarded, a transform's `{client_ip}`).
    client_ip: &'a str,
    /// The request's host (lowercase, no port) as routes match it.
    host: Option<&'a str>,
    /// The request's authority (`host[:port]`) and scheme, as forwarded and keyed.
    authority: Option<&'a str>,
    scheme: Option<&'a str>,
    route: Option<&'a Route>,
    consumer: Option<Rc<Consumer>>,
    /// The rate limits asked, in order: their header fields (`RateLimit-Policy`, quoted name)
    /// and their verdicts.
    limits: Vec<(&'a (HeaderValue, String), Verdict)>,
    log: AccessLog<'a>,
    /// A traced request's caller and upstream attempts (`[telemetry]`).
    #[cfg(feature = "telemetry")]
    trace: Option<crate::telemetry::Trace>,
    /// The request body's declared size, when metrics count it (`[telemetry]`).
    #[cfg(feature = "telemetry")]
    request_bytes: Option<u64>,
}

impl<'a> Ctx<'a> {
    /// Resolves the client again with the proxies route `r` believes, when it names its own:
    /// from here on the access list, rate limit, forwarded headers and log see that client.
    fn trust_as(&mut self, r: &Route, headers: &HeaderMap) {
        let Some(trusted) = &r.trusted_proxies else {
            return;
        };
        let peer = self.peer.0;
        self.peer.1 = trusted.contains(peer);
        let ip = access::effective_ip(peer, headers, trusted);
        if ip == self.client.ip {
            return;
        }
        let client = Client {
            ip,
            ..self.client.clone()
        };
        let (client, text) = self
            .route_client
            .get_or_init(|| (client, access::ip_text(ip)));
        self.client = client;
        self.client_ip = text.as_str();
        self.log.client_ip = text.as_str();
    }

    /// Records that `phase`, begun at `since`, ended now with `decision`.
    fn mark<H: Host>(
        &mut self,
        phase: Phase,
        decision: impl Into<std::borrow::Cow<'a, str>>,
        since: u64,
        host: &H,
    ) {
        self.log.phase(phase, decision, since, host.monotonic_us());
    }

    /// Records `reject` as the end of `phase`, and hands it back.
    fn refuse<H: Host>(&mut self, phase: Phase, reject: Reject, since: u64, host: &H) -> Reject {
        self.mark(phase, reject.code(), since, host);
        reject
    }

    /// The values a transform's `{var}` holes take.
    fn vars(&self) -> transform::Vars<'_> {
        transform::Vars {
            consumer: self.consumer.as_ref().map_or("", |c| &c.id),
            route: self.route.map_or("", |r| &r.name),
            request_id: self.request_id,
            client_ip: self.client_ip,
        }
    }
}

/// The parts of the request that `run` consumes; the method and URI stay with `handle`, which
/// logs them.
struct Incoming<'a, S> {
    method: &'a Method,
    uri: &'a http::Uri,
    headers: HeaderMap,
    body: Body<S>,
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
        let limits = config.rate_limits.iter().map(LimitUse::of).collect();
        let plan_limits = (config.plans.iter())
            .map(|p| p.limits.iter().map(|(_, q)| LimitUse::of(q)).collect())
            .collect();
        Gateway {
            config,
            limits,
            plan_limits,
            tokens,
            jwks,
            jwks_store_keys,
            log_line: RefCell::default(),
            #[cfg(feature = "response-cache")]
            cache_flights: Default::default(),
            #[cfg(feature = "telemetry")]
            telemetry_batch: RefCell::default(),
        }
    }

    /// Builds the gateway from the config an adapter embedded at build time (`Config::embed`
    /// wrote it as data, `embedded_config!` names it), reading `secret_env` keys with
    /// `read_secret`. The build checked everything else, so an error is a missing or unusable
    /// secret, or a mismatched build; it comes as the listing.
    pub fn from_embedded(
        data: &'static crate::config::emit::Embedded,
        read_secret: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Gateway, String> {
        Config::from_embedded(data, read_secret)
            .map(Gateway::new)
            .map_err(|e| e.render("embedded config"))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs work a request left for after its answer ([`Host::defer`]), on `host`.
    pub async fn run_later<H: Host>(&self, later: crate::host::Later, host: &H) {
        let _ = host; // a build with neither part has no work to run on it
        match later.0 {
            #[cfg(feature = "response-cache")]
            crate::host::LaterWork::Refresh(refresh) => {
                out_of_line(self.refresh(*refresh, host)).await;
            }
            #[cfg(feature = "telemetry")]
            crate::host::LaterWork::Export(export) => {
                out_of_line(self.export(*export, host)).await;
            }
            #[cfg(feature = "telemetry")]
            crate::host::LaterWork::Flush(waiting, request_id) => {
                out_of_line(self.flush_batch(waiting, &request_id, host)).await;
            }
        }
    }

    /// Handles one request from `client` (as the adapter trusts it). The answer's body is the
    /// upstream's stream when the gateway passed it on, else bytes.
    pub async fn handle<H: Host>(
        &self,
        req: Request<Body<H::Stream>>,
        client: Client,
        host: &H,
    ) -> Response<Body<H::Stream>> {
        let start = host.monotonic_us();
        let (parts, body) = req.into_parts();
        let http::request::Parts {
            method,
            uri,
            headers,
            ..
        } = parts;
        let request_id_value = self.request_id(&headers, host);
        let request_id = request_id_value.to_str().unwrap_or("-");
        // changed and read only by a build with telemetry
        #[allow(unused_mut, unused_variables)]
        let (mut traceparent, caller) = transform::traceparent(
            headers.get(TRACEPARENT),
            [host.random(), host.random(), host.random()],
        );
        #[cfg(feature = "telemetry")]
        let trace = self.trace_start(caller, &mut traceparent, host);
        let traceparent = transform::traceparent_text(&traceparent);
        let peer = (client.ip, self.config.trusted_proxies.contains(client.ip));
        let client = Client {
            ip: access::effective_ip(client.ip, &headers, &self.config.trusted_proxies),
            ..client
        };
        let client_ip = access::ip_text(client.ip);
        let route_client = std::cell::OnceCell::new();
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
            route_client: &route_client,
            client_ip: client_ip.as_str(),
            host: req_host.as_deref(),
            authority: authority.as_deref(),
            scheme: uri.scheme_str(),
            route: None,
            consumer: None,
            limits: Vec::new(),
            log,
            #[cfg(feature = "telemetry")]
            trace,
            #[cfg(feature = "telemetry")]
            request_bytes: self
                .config
                .telemetry
                .as_ref()
                .and_then(|_| crate::body::declared_length(&headers)),
        };
        let req = Incoming {
            method: &method,
            uri: &uri,
            headers,
            body,
        };
        let res = match self.run(req, &mut ctx, host).await {
            Ok(res) => res,
            Err(reject) => self.refusal(reject, &mut ctx),
        };
        self.finish(res, origin.as_ref(), start, &mut ctx, host)
    }

    /// The pipeline, steps 1 to 7; a refusal anywhere ends it.
    async fn run<'a, H: Host>(
        &'a self,
        req: Incoming<'a, H::Stream>,
        ctx: &mut Ctx<'a>,
        host: &H,
    ) -> Result<Response<Body<H::Stream>>, Reject> {
        let Incoming {
            method,
            uri,
            headers,
            body,
        } = req;

        // 1. validate: sizes and the path, the route, then the route's parameters and body
        let t = host.monotonic_us();
        let path = self
            .check_request(uri, &headers)
            .map_err(|r| ctx.refuse(Phase::Validate, r, t, host))?;
        let found = match self.match_route(method, &headers, &path, t, ctx, host)? {
            inbound::Routed::Preflight(answer) => return Ok(answer.map(Body::Bytes)),
            inbound::Routed::To(found) => found,
        };
        let r = self.config.route_at(found.route);
        ctx.trust_as(r, &headers);
        let body = match self.validate(r, &found, uri.query(), &headers, body, t, ctx, host)? {
            inbound::Checked::Ready(body) => body,
            // a stream the route must read (its JSON Schema, a JSON transform, its own answer)
            inbound::Checked::Read(stream) => {
                out_of_line(self.read_body(r, &headers, stream, t, ctx, host)).await?
            }
        };

        // 2. access
        self.check_access(r, ctx, host)?;

        // 3. auth, and 4. rate limit
        self.authenticate(r, &headers, uri.query(), ctx, host)
            .await?;
        if !r.rate_limits.is_empty() {
            self.charge_limits(&r.rate_limits, r, ctx, &headers, host)
                .await?;
        }

        // 5. route
        let upstream = match &r.action {
            Action::Respond(fixed) => return Ok(self.respond(r, fixed, method, ctx, host)),
            #[cfg(feature = "response-cache")]
            Action::Admin(AdminAction::PurgeCache) => {
                return out_of_line(self.purge_action(r, &body, ctx, host)).await
            }
            // a build without the cache refuses admin routes when it loads the config
            #[cfg(not(feature = "response-cache"))]
            Action::Admin(_) => return Err(Reject::Unavailable),
            Action::Proxy(i) => &self.config.upstreams[*i],
        };
        let out = self.outbound(
            r,
            upstream,
            method,
            &path,
            &found,
            uri.query(),
            headers,
            body,
            ctx,
            host,
        )?;

        // 6. cache (a build without `response-cache` has no cached routes), then the backend
        #[cfg(feature = "response-cache")]
        let miss = match self
            .cache_lookup(
                (found.route, r),
                &out,
                &path,
                uri.query(),
                upstream.timeout_ms,
                ctx,
                host,
            )
            .await?
        {
            cached::Lookup::Hit(hit) | cached::Lookup::Stale(hit) => {
                return Ok(self.process_response(r, hit.map(Body::Bytes), ctx, host))
            }
            cached::Lookup::Miss(miss) => Some(*miss),
            cached::Lookup::Bypass => None,
        };
        let res = self.call_upstream(r, upstream, out, ctx, host).await;
        #[cfg(feature = "response-cache")]
        if let Some(stale) = self.stale_if_error(miss.as_ref(), &res, ctx, host) {
            return Ok(self.process_response(r, stale.map(Body::Bytes), ctx, host));
        }
        let res = res?;
        #[cfg(feature = "response-cache")]
        let res = if miss.is_some() || self.config.caches_responses {
            self.after_upstream(miss, res, method, &path, uri.query(), ctx, host)
                .await
        } else {
            res
        };

        // 7. transform
        Ok(self.process_response(r, res, ctx, host))
    }

    /// Step 7, transform: the route's response transform.
    fn process_response<S, H: Host>(
        &self,
        r: &Route,
        mut res: Response<Body<S>>,
        ctx: &mut Ctx<'_>,
        host: &H,
    ) -> Response<Body<S>> {
        let Some(tr) = &r.response else {
            return res;
        };
        let t = host.monotonic_us();
        transform::apply_headers(tr, res.headers_mut(), &ctx.vars());
        if tr.has_json() {
            // a route whose transform edits JSON has its upstream's body read
            if let Body::Bytes(body) = res.body() {
                let body = transform::apply_json(tr, body);
                res.headers_mut().remove(header::CONTENT_LENGTH);
                *res.body_mut() = Body::Bytes(body);
            }
        }
        ctx.mark(Phase::Transform, "applied", t, host);
        res
    }

    /// A refusal as the client gets it: the problem document, with the route's response headers
    /// (nosniff, HSTS, …).
    fn refusal<S>(&self, reject: Reject, ctx: &mut Ctx<'_>) -> Response<Body<S>> {
        ctx.log.error = Some(reject.code());
        let mut res = reject.to_response(ctx.request_id);
        if let Some(tr) = ctx.route.and_then(|r| r.response.as_deref()) {
            transform::apply_headers(tr, res.headers_mut(), &ctx.vars());
        }
        res.map(Body::Bytes)
    }

    /// What applies to every answer, refusals included: rate-limit fields, CORS, the request id,
    /// `Server-Timing`; then the access log.
    fn finish<S, H: Host>(
        &self,
        mut res: Response<Body<S>>,
        origin: Option<&HeaderValue>,
        start: u64,
        ctx: &mut Ctx<'_>,
        host: &H,
    ) -> Response<Body<S>> {
        let t = host.monotonic_us();
        match ctx.limits.as_slice() {
            [] => {}
            [((policy, name), verdict)] => {
                ratelimit::set_headers_with(res.headers_mut(), policy, name, verdict);
            }
            several => {
                let fields = several.iter().map(|(fields, verdict)| (*fields, verdict));
                ratelimit::set_list_headers(res.headers_mut(), fields);
            }
        }
        if let Some(cors) = ctx.route.and_then(|r| r.cors).map(|i| &self.config.cors[i]) {
            transform::cors_response(cors, origin, res.headers_mut());
        }
        res.headers_mut().insert(
            self.config.request_id_header.clone(),
            ctx.request_id_value.clone(),
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
        #[cfg(feature = "telemetry")]
        if self.config.telemetry.is_some() {
            let response_bytes = match res.body() {
                Body::Bytes(body) => Some(body.len() as u64),
                Body::Stream(_) => crate::body::declared_length(res.headers()),
            };
            self.telemetry_end(start, response_bytes, ctx, host);
        }
        res
    }

    /// The request's id: the client's when it is a valid one, else a new random one.
    fn request_id<H: Host>(&self, headers: &HeaderMap, host: &H) -> HeaderValue {
        headers
            .get(&self.config.request_id_header)
            .filter(|v| transform::valid_request_id(v).is_some())
            .cloned()
            .unwrap_or_else(|| {
                let id = transform::new_request_id(host.random(), host.random());
                // hex digits are always a valid value
                transform::shared_value(id).unwrap_or(HeaderValue::from_static("-"))
            })
    }

    /// Writes the access-log line (if the sample keeps it) into the reused buffer and hands it to
    /// the host. The buffer is borrowed only here, with no await inside, so interleaved requests
    /// never meet in it.
    fn write_log<H: Host>(&self, log: &AccessLog<'_>, host: &H) {
        if !self.config.access_log.keeps(log.status, || host.random()) {
            return;
        }
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
}

/// Awaits `fut` through a `dyn Future`, a call the compiler cannot inline, for paths few
/// requests take (reading a body whole, fetching a JWKS, an admin action). Their code then stays
/// out of the pipeline's own function: on Workers, V8 compiles a wasm function when it is first
/// called, so an isolate's first request compiles only the paths it takes.
pub(crate) async fn out_of_line<'a, T>(fut: impl std::future::Future<Output = T> + 'a) -> T {
    let fut: std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>> = Box::pin(fut);
    fut.await
}
