//! Steps 1 and 2: the request's sizes, framing and path; the route it matches (answering a CORS
//! preflight there); the route's parameters and body; the route's access list.

use super::{Ctx, Gateway};
use crate::body::{Body, ReadError};
use crate::config::{Action, Route};
use crate::host::Host;
use crate::phase::observe::Phase;
use crate::phase::route::Matched;
use crate::phase::{access, transform, validate};
use crate::problem::Reject;
use bytes::Bytes;
use http::{HeaderMap, Method, Response};
use std::borrow::Cow;

/// What the route's checks left of the body.
pub(super) enum Checked<S> {
    /// Checked as far as it can be: bytes, or a stream that passes on.
    Ready(Body<S>),
    /// A stream the route must read and check first.
    Read(S),
}

/// Where matching took the request.
pub(super) enum Routed<'p> {
    /// A CORS preflight, answered by the route's policy.
    Preflight(Response<Bytes>),
    To(Matched<'p>),
}

impl Gateway {
    /// Sizes and framing, then the path normalized, before anything looks at them.
    pub(super) fn check_request<'u>(
        &self,
        uri: &'u http::Uri,
        headers: &HeaderMap,
    ) -> Result<Cow<'u, str>, Reject> {
        validate::check_sizes(&self.config.limits, uri, headers)?;
        validate::check_framing(headers)?;
        validate::normalize_path(uri.path())
    }

    /// The route `path` matches; a preflight is matched by the method it asks about, and
    /// answered here when that route has a CORS policy.
    pub(super) fn match_route<'p, 'a: 'p, H: Host>(
        &'a self,
        method: &Method,
        headers: &HeaderMap,
        path: &'p str,
        t: u64,
        ctx: &mut Ctx<'a>,
        host: &H,
    ) -> Result<Routed<'p>, Reject> {
        let router = &self.config.router;
        let preflight = transform::is_preflight(method, headers);
        let found = if preflight {
            let asked = transform::preflight_method(headers).unwrap_or(Method::OPTIONS);
            match router.find(&asked, ctx.host, path) {
                Err(Reject::MethodNotAllowed { .. } | Reject::NotFound) => {
                    router.find(method, ctx.host, path)
                }
                found => found,
            }
        } else {
            router.find(method, ctx.host, path)
        };
        let mut found = found.map_err(|r| ctx.refuse(Phase::Validate, r, t, host))?;
        if preflight {
            let r = self.config.route_at(found.route);
            if let Some(cors) = r.cors.map(|i| &self.config.cors[i]) {
                self.enter(r, ctx);
                ctx.mark(Phase::Validate, "preflight", t, host);
                return Ok(Routed::Preflight(transform::preflight(
                    cors, headers, &r.methods,
                )));
            }
            // no CORS here: an OPTIONS request like any other, 405 unless a route takes it
            found = router
                .find(method, ctx.host, path)
                .map_err(|r| ctx.refuse(Phase::Validate, r, t, host))?;
        }
        self.enter(self.config.route_at(found.route), ctx);
        Ok(Routed::To(found))
    }

    fn enter<'a>(&self, r: &'a Route, ctx: &mut Ctx<'a>) {
        ctx.route = Some(r);
        ctx.log.route = Some(&r.name);
    }

    /// The route's parameter and body checks. The body is read (up to the route's limit) only
    /// when something needs it: a JSON Schema, a request transform that edits JSON, or a route
    /// that answers itself (nothing else would hold its body to the limit): then this answers
    /// [`Checked::Read`] and [`Gateway::read_body`] reads and checks it. Else a streamed body
    /// stays a stream, refused now only if its declared length is over the limit, and cut where
    /// it passes the limit on its way upstream.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn validate<S, H: Host>(
        &self,
        r: &Route,
        found: &Matched<'_>,
        query: Option<&str>,
        headers: &HeaderMap,
        body: Body<S>,
        t: u64,
        ctx: &mut Ctx<'_>,
        host: &H,
    ) -> Result<Checked<S>, Reject> {
        let v = &r.validation;
        let params = validate::check_params(v, found.params.iter(), query, headers);
        let params =
            params.and_then(|()| validate::check_body(v, headers, body.bytes().map(|b| &b[..])));
        params.map_err(|e| ctx.refuse(Phase::Validate, e, t, host))?;
        let needs_body = v.body_schema.is_some()
            || r.request.as_ref().is_some_and(|tr| tr.has_json())
            || !matches!(r.action, Action::Proxy(_));
        match body {
            Body::Stream(stream) if needs_body => Ok(Checked::Read(stream)),
            body => {
                ctx.mark(Phase::Validate, "pass", t, host);
                Ok(Checked::Ready(body))
            }
        }
    }

    /// Reads a body [`Gateway::validate`] found the route needs, up to the route's limit, and
    /// checks it.
    pub(super) async fn read_body<S, H: Host<Stream = S>>(
        &self,
        r: &Route,
        headers: &HeaderMap,
        stream: S,
        t: u64,
        ctx: &mut Ctx<'_>,
        host: &H,
    ) -> Result<Body<S>, Reject> {
        let v = &r.validation;
        let read = host.read_stream(stream, v.max_body_bytes).await;
        let bytes = read.map_err(|e| {
            let reject = match e {
                ReadError::TooLarge { limit } => Reject::BodyTooLarge { limit },
                ReadError::Broken(_) => Reject::InvalidBody("the body could not be read".into()),
            };
            ctx.refuse(Phase::Validate, reject, t, host)
        })?;
        validate::check_body(v, headers, Some(&bytes))
            .map_err(|e| ctx.refuse(Phase::Validate, e, t, host))?;
        ctx.mark(Phase::Validate, "pass", t, host);
        Ok(Body::Bytes(bytes))
    }

    /// Step 2, access: the route's allow/deny list.
    pub(super) fn check_access<H: Host>(
        &self,
        r: &Route,
        ctx: &mut Ctx<'_>,
        host: &H,
    ) -> Result<(), Reject> {
        let Some(policy) = r.access.map(|i| &self.config.access[i]) else {
            return Ok(());
        };
        let t = host.monotonic_us();
        let verdict = access::check(policy, ctx.client);
        let decision = if verdict.is_ok() { "pass" } else { "deny" };
        ctx.mark(Phase::Access, decision, t, host);
        verdict
    }
}
