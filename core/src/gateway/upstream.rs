//! Steps 5 and 6: what the route answers itself (a fixed response, an admin action), the request
//! as it goes upstream (trusted headers, the route's request transform, the rewritten path), and
//! the backend call with its retries.

use super::{Ctx, Gateway, TRACEPARENT};
use crate::body::Body;
use crate::config::{Respond, Route, Upstream};
use crate::host::{BodyUse, Exchange, FetchError, Host};
use crate::phase::observe::Phase;
use crate::phase::route::Matched;
use crate::phase::{forward, route, transform};
use crate::problem::Reject;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use std::borrow::Cow;

/// The request as it goes upstream, but for the target, which each attempt picks.
pub(super) struct Outbound<'a, S> {
    pub method: &'a Method,
    /// A WebSocket handshake the route lets through.
    pub upgrade: bool,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Body<S>,
}

/// `value` itself when `take` (leaving its default behind), else a copy of it.
fn take_or_clone<T: Clone + Default>(value: &mut T, take: bool) -> T {
    if take {
        std::mem::take(value)
    } else {
        value.clone()
    }
}

/// The body itself when `take`, else a copy of its bytes (a stream is sent once: a request with
/// one gets a single attempt).
fn take_or_copy<S>(body: &mut Body<S>, take: bool) -> Body<S> {
    match body {
        Body::Bytes(b) if !take => Body::Bytes(b.clone()),
        _ => std::mem::take(body),
    }
}

impl Gateway {
    /// Step 5, route: a fixed response (without its body for HEAD).
    pub(super) fn respond<S, H: Host>(
        &self,
        r: &Route,
        fixed: &Respond,
        method: &Method,
        ctx: &mut Ctx<'_>,
        host: &H,
    ) -> Response<Body<S>> {
        let t = host.monotonic_us();
        ctx.mark(Phase::Route, "respond", t, host);
        let body = if *method == Method::HEAD {
            Bytes::new()
        } else {
            fixed.body.clone()
        };
        let mut res = Response::new(Body::Bytes(body));
        *res.status_mut() = fixed.status;
        *res.headers_mut() = fixed.headers.clone();
        self.process_response(r, res, ctx, host)
    }

    /// Step 5, route: the request as it goes to `upstream`: what no client may say removed, the
    /// route's request transform applied, the path rewritten, the gateway's own headers set.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn outbound<'a, 'm, S, H: Host>(
        &'a self,
        r: &Route,
        upstream: &'a Upstream,
        method: &'m Method,
        path: &str,
        found: &Matched<'_>,
        query: Option<&str>,
        mut headers: HeaderMap,
        mut body: Body<S>,
        ctx: &mut Ctx<'a>,
        host: &H,
    ) -> Result<Outbound<'m, S>, Reject> {
        let t = host.monotonic_us();
        let origin = forward::Origin {
            peer: ctx.peer.0,
            peer_trusted: ctx.peer.1,
            client_ip: ctx.client_ip,
            authority: ctx.authority,
            scheme: ctx.scheme,
            cached: r.cache.is_some(),
        };
        let upgrade = r.websocket && transform::is_websocket_upgrade(method, &headers);
        forward::remove_untrusted(&mut headers, &origin);
        if upgrade {
            // hop-by-hop, so removed above; asked for again (the platform adds `Connection`)
            headers.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        }
        let mut up_query = query.map(Cow::Borrowed);
        if let Some(tr) = &r.request {
            transform::apply_headers(tr, &mut headers, &ctx.vars());
            up_query = transform::apply_query(tr, query);
            // a route whose transform edits JSON has the body read; one the transform cannot
            // read would reach a lenient backend unedited
            if let (true, Body::Bytes(b)) = (tr.has_json(), &body) {
                body = transform::apply_request_json(tr, b)
                    .map(Body::Bytes)
                    .map_err(|e| ctx.refuse(Phase::Route, e, t, host))?;
            }
        }
        let path_and_query = route::upstream_path_and_query(
            path,
            &found.params,
            r.rewrite.as_ref(),
            r.strip_prefix.as_deref(),
            up_query.as_deref(),
        )
        .map_err(|e| ctx.refuse(Phase::Route, e, t, host))?;
        forward::set_owned(&mut headers, &origin, body.bytes().map(Bytes::len));
        headers.insert(
            self.config.request_id_header.clone(),
            ctx.request_id_value.clone(),
        );
        if let Ok(v) = HeaderValue::from_str(ctx.traceparent) {
            headers.insert(const { HeaderName::from_static(TRACEPARENT) }, v);
        }
        ctx.log.upstream = Some(&upstream.name);
        ctx.mark(Phase::Route, upstream.name.as_str(), t, host);
        Ok(Outbound {
            method,
            upgrade,
            path_and_query,
            headers,
            body,
        })
    }

    /// Step 6, the backend: one attempt, or more for an idempotent request without a streamed body,
    /// after a connect error or a retryable status. The body is passed on as the upstream's
    /// stream unless the route transforms its JSON (a cached one is copied as it streams).
    pub(super) async fn call_upstream<S, H: Host<Stream = S>>(
        &self,
        r: &Route,
        upstream: &Upstream,
        out: Outbound<'_, S>,
        ctx: &mut Ctx<'_>,
        host: &H,
    ) -> Result<Response<Body<S>>, Reject> {
        let t = host.monotonic_us();
        let reads = r.response.as_ref().is_some_and(|t| t.has_json());
        let exchange = Exchange {
            timeout_ms: upstream.timeout_ms,
            idle_timeout_ms: upstream.idle_timeout_ms,
            max_response_bytes: upstream.max_response_bytes,
            max_request_bytes: r.validation.max_body_bytes,
            body: if reads {
                BodyUse::Read
            } else {
                BodyUse::PassOn
            },
            request_id: ctx.request_id,
        };
        let mut tries = Tries::default();
        #[cfg(feature = "telemetry")]
        if ctx.trace.is_some() {
            tries.traced = Some(Vec::new());
        }
        let answer = send_upstream(upstream, out, &exchange, &mut tries, host).await;
        #[cfg(feature = "telemetry")]
        if let (Some(trace), Some(attempts)) = (&mut ctx.trace, tries.traced) {
            trace.attempts = attempts;
        }
        ctx.log.upstream_attempts = tries.attempts;
        ctx.log.upstream_us = Some(host.monotonic_us().saturating_sub(t));
        ctx.log.upstream_status = tries.status;
        answer
    }
}

/// How [`send_upstream`] went, whatever it answers.
#[derive(Default)]
pub(super) struct Tries {
    pub attempts: u32,
    /// The status the last attempt received, if any (also one that is not a client's).
    pub status: Option<u16>,
    /// Each attempt, for a traced request's spans.
    #[cfg(feature = "telemetry")]
    pub traced: Option<Vec<crate::telemetry::Attempt>>,
}

/// Sends `out` to one of `upstream`'s targets on the terms of `exchange`: again after a connect
/// error or a retryable status while `upstream.retries` allow, for an idempotent request
/// without a streamed body. The answer, with its hop-by-hop fields removed, or why there is
/// none; `tries` says how it went.
pub(super) async fn send_upstream<S, H: Host<Stream = S>>(
    upstream: &Upstream,
    out: Outbound<'_, S>,
    exchange: &Exchange<'_>,
    tries: &mut Tries,
    host: &H,
) -> Result<Response<Body<S>>, Reject> {
    let Outbound {
        method,
        upgrade,
        mut path_and_query,
        mut headers,
        mut body,
    } = out;
    let retries = route::is_idempotent(method) && !matches!(body, Body::Stream(_));
    let attempts = 1 + if retries { upstream.retries } else { 0 };
    let mut outcome = Err(Reject::BadGateway);
    for attempt in 1..=attempts {
        let target = &upstream.targets[route::pick(&upstream.weights, host.random())];
        // the last attempt takes the parts; earlier ones send copies
        let last = attempt == attempts;
        let Ok(uri) = transform::upstream_uri(target, take_or_clone(&mut path_and_query, last))
        else {
            return Err(Reject::BadGateway);
        };
        let mut req = Request::new(take_or_copy(&mut body, last));
        *req.method_mut() = method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = take_or_clone(&mut headers, last);
        tries.attempts = attempt;
        #[cfg(feature = "telemetry")]
        let began = tries.traced.is_some().then(|| host.monotonic_us());
        let fetched = host.fetch(req, exchange).await;
        #[cfg(feature = "telemetry")]
        if let (Some(spans), Some(start_us)) = (&mut tries.traced, began) {
            spans.push(crate::telemetry::Attempt::of(
                &fetched,
                start_us,
                host.monotonic_us(),
            ));
        }
        outcome = match fetched {
            Ok(res) if !last && route::is_retryable_status(res.status()) => continue,
            Err(FetchError::Connect(_)) if !last => continue,
            Ok(res) => Ok(res),
            Err(FetchError::Timeout) => Err(Reject::GatewayTimeout),
            Err(FetchError::RequestTooLarge { limit }) => Err(Reject::BodyTooLarge { limit }),
            Err(_) => Err(Reject::BadGateway),
        };
        break;
    }
    let mut res = outcome?;
    tries.status = Some(res.status().as_u16());
    // `http` accepts any status up to 999, and a fetch may surface a stray 1xx: an answer
    // outside 200–599 is not one a client can read (workerd's `Response` refuses it), but
    // for 101 to a handshake the route lets through (its body is the platform's socket)
    let switched = upgrade && res.status() == http::StatusCode::SWITCHING_PROTOCOLS;
    if !switched && !(200..=599).contains(&res.status().as_u16()) {
        return Err(Reject::BadGateway);
    }
    transform::strip_hop_by_hop(res.headers_mut());
    Ok(res)
}
