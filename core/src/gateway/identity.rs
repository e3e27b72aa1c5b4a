//! Steps 3 and 4: who the client is (a JWT, verified against inline keys or a JWKS, or an API
//! key) and whether that proves the route's scopes and claims; then the rate limit.

use super::{Ctx, Gateway, LimitUse};
use crate::config::{Id, LimitCharge, Route};
use crate::host::Host;
use crate::phase::auth::{self, Consumer, Key, TokenError};
use crate::phase::observe::Phase;
use crate::phase::ratelimit;
use crate::problem::Reject;
use crate::store::{Kind, StoreKey};
use std::rc::Rc;

impl Gateway {
    /// Step 3, auth: the route's credentials, then its scopes and claims; the consumer goes in `ctx`.
    pub(super) async fn authenticate<'a, H: Host>(
        &'a self,
        r: &'a Route,
        headers: &http::HeaderMap,
        query: Option<&str>,
        ctx: &mut Ctx<'a>,
        host: &H,
    ) -> Result<(), Reject> {
        let Some(rule) = &r.auth else {
            return Ok(());
        };
        let t = host.monotonic_us();
        let outcome = self.credentials(rule, headers, query, host).await;
        let outcome = outcome.and_then(|c| match c {
            Some((c, via)) => {
                auth::authorize(&rule.scopes, &rule.claims, &c).map(|()| Some((c, via)))
            }
            // a provider failed open: that lets a request in, but proves no scope or claim
            None if !rule.scopes.is_empty() || !rule.claims.is_empty() => Err(Reject::Unavailable),
            None => Ok(None),
        });
        let decision = match &outcome {
            Ok(Some((_, via))) => via,
            Ok(None) => "fail-open",
            Err(e) => e.code(),
        };
        ctx.mark(Phase::Auth, decision, t, host);
        if let Err(Reject::Unauthenticated(_)) = &outcome {
            // a refused credential counts against an `ip` limit, so keys and passwords cannot be
            // guessed without limit
            let by_ip: Vec<LimitCharge> = (r.rate_limits.iter())
                .filter(|l| self.config.rate_limits[l.quota].key == ratelimit::LimitKey::Ip)
                .copied()
                .collect();
            if !by_ip.is_empty() {
                self.charge_limits(&by_ip, r, ctx, headers, host).await?;
            }
        }
        ctx.consumer = outcome?.map(|(c, _)| c);
        ctx.log.consumer = ctx.consumer.as_ref().map(|c| c.id.clone());
        Ok(())
    }

    /// Finds and checks the request's credentials, and names the provider that vouched for
    /// them (`jwt:NAME`, `api_key:NAME`). `Ok(None)`: a provider failed open.
    async fn credentials<H: Host>(
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
                    Some(holder) => Ok(Some((
                        Rc::new(Consumer {
                            id: holder.consumer.as_str().into(),
                            scopes: holder.scopes.clone(),
                            claims: Rc::default(),
                            plan: holder.plan,
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
        pi: Id<auth::JwtProvider>,
        token: &str,
        host: &H,
    ) -> Result<Option<Rc<Consumer>>, Reject> {
        let provider = &self.config.jwt[pi];
        let now = host.now();
        let cached = self.tokens.borrow().get(pi.index(), token, now);
        if let Some(v) = cached {
            return Ok(Some(v.consumer));
        }
        let mut remote = match &provider.jwks_url {
            Some(_) => match super::out_of_line(self.jwks_keys(pi, false, host)).await {
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
            if let Some(fresh) = super::out_of_line(self.jwks_keys(pi, true, host)).await {
                remote = fresh;
                let all: Vec<&Key> = provider.keys.iter().chain(remote.iter()).collect();
                result = auth::verify_token(provider, &all, token, now);
            }
        }
        match result {
            Ok(verified) => {
                let consumer = verified.consumer.clone();
                self.tokens
                    .borrow_mut()
                    .put(pi.index(), token, verified, now);
                Ok(Some(consumer))
            }
            Err(TokenError::UnknownKid) => {
                Err(Reject::Unauthenticated("unknown signing key".into()))
            }
            Err(TokenError::Invalid(why)) => Err(Reject::Unauthenticated(why.into())),
        }
    }

    /// Rate limiting (phase 4): charges the request to each of `limits` in turn, the counter
    /// `rl:<policy>:<key part>` (a sharded policy adds `#<shard>`), with the verdicts in `ctx`.
    /// A request is admitted only if every limit admits it: when one refuses (or its store fails
    /// closed), what the limits before it charged is given back, so it is charged to none.
    pub(super) async fn charge_limits<'a, H: Host>(
        &'a self,
        limits: &[LimitCharge],
        r: &Route,
        ctx: &mut Ctx<'a>,
        headers: &http::HeaderMap,
        host: &H,
    ) -> Result<(), Reject> {
        let t = host.monotonic_us();
        let mut outcome = Ok("allow");
        // what to give back if a later limit refuses (only a route with several keeps any)
        let mut charged = Vec::new();
        for &LimitCharge { quota: qi, cost } in limits {
            let (quota, used) = self.limit_quota(qi, ctx.consumer.as_deref());
            let (key, counter) = self.limit_counter(quota, used, r, ctx, headers, host);
            match host.rate_limit(&key, counter, cost).await {
                Ok((verdict, state)) => {
                    ctx.limits.push((&used.fields, verdict));
                    ctx.log.rate_limit_remaining = Some(
                        (ctx.log.rate_limit_remaining)
                            .map_or(verdict.remaining, |left| left.min(verdict.remaining)),
                    );
                    if !verdict.allowed {
                        outcome = Err(Reject::RateLimited {
                            retry_after_s: verdict.retry_after_s,
                            policy: quota.name.clone(),
                        });
                        break;
                    }
                    if let (Some(state), 2..) = (state, limits.len()) {
                        charged.push((key, counter, cost, state));
                    }
                }
                Err(_) if quota.fail_open => outcome = outcome.map(|_| "store-error:open"),
                Err(_) => {
                    outcome = Err(Reject::Unavailable);
                    break;
                }
            }
        }
        let decision = match &outcome {
            Ok(decision) => decision,
            Err(Reject::Unavailable) => "store-error:closed",
            Err(_) => "limit",
        };
        if outcome.is_err() {
            for (key, counter, cost, state) in charged {
                // a refund that fails leaves the charge: the key is refused early, never
                // admitted beyond its policy
                let _ = host.rate_limit_refund(&key, counter, cost, state).await;
            }
        }
        ctx.mark(Phase::RateLimit, decision, t, host);
        outcome.map(|_| ())
    }

    /// The quota of rate limit `qi` for `consumer`: its plan's, when its plan changes that
    /// policy, else the policy's own; and what the gateway made once for it.
    fn limit_quota(
        &self,
        qi: Id<ratelimit::Quota>,
        consumer: Option<&Consumer>,
    ) -> (&ratelimit::Quota, &LimitUse) {
        if let Some(p) = consumer.and_then(|c| c.plan) {
            let plan = &self.config.plans[p];
            if let Some(k) = plan.limits.iter().position(|(i, _)| *i == qi) {
                return (&plan.limits[k].1, &self.plan_limits[p.index()][k]);
            }
        }
        (&self.config.rate_limits[qi], &self.limits[qi.index()])
    }

    /// The counter a request is charged to under `quota`: its key (the same whatever the
    /// consumer's plan, so a change of plan keeps the count), and its quota (a sharded policy's,
    /// one of its shards at random).
    fn limit_counter<'q, H: Host>(
        &self,
        quota: &'q ratelimit::Quota,
        used: &'q LimitUse,
        r: &Route,
        ctx: &Ctx<'_>,
        headers: &http::HeaderMap,
        host: &H,
    ) -> (StoreKey, &'q ratelimit::Quota) {
        let part = ratelimit::key_part(
            quota,
            &r.name,
            ctx.client.ip,
            ctx.consumer.as_deref(),
            headers,
        );
        // room for the shard's `#N` too
        let name_len = quota.name.len() + 1 + part.len() + 3;
        let mut key = StoreKey::build(Kind::RateLimit, name_len, |key| {
            key.push_str(&quota.name);
            key.push(':');
            key.push_str(&part);
        });
        let counter = ratelimit::pick_shard(quota, &used.shards, &mut key, || host.random());
        (key, counter)
    }
}
