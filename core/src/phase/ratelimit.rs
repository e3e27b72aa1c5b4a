//! Rate limiting: two exact algorithms, GCRA (generic cell rate algorithm) and the sliding-window
//! counter ([`window`]), each a pure function of (stored state, now, quota, cost) → (verdict,
//! new state); the key a request counts against; and the IETF `RateLimit` / `RateLimit-Policy`
//! header fields.
//!
//! GCRA's arithmetic is in integer "ticks" of 1/limit ms, so the emission interval
//! `period / limit` is exact and no rounding lets an extra request through. Reads no clock;
//! stores nothing: the host applies [`admit`] atomically per key.

use crate::config::diag::{refuse, Errs};
use crate::config::raw::{self, CalendarPeriod, LimitAlgorithm};
use crate::host::UnixMillis;
use crate::store::StoreKey;
use http::{HeaderMap, HeaderName, HeaderValue};

mod calendar;
mod window;
pub use calendar::Count;
pub use window::Window;

/// A compiled rate-limit policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// Policy name (shown in headers and logs).
    pub name: String,
    /// Requests per period.
    pub limit: u64,
    /// Period in milliseconds.
    pub period_ms: u64,
    /// How requests are counted.
    pub algorithm: LimitAlgorithm,
    /// A quota over a calendar period in UTC instead: `limit` per day or month, counted afresh
    /// from each period's first millisecond (`algorithm` does not apply).
    pub calendar: Option<CalendarPeriod>,
    /// Requests allowed at once (GCRA; a sliding window's is its `limit`).
    pub burst: u64,
    /// Counters each key is split over (1: one counter); see [`Quota::shard`].
    pub shards: u32,
    /// What requests are counted by.
    pub key: LimitKey,
    /// How much of a client address an `ip` key (or a fallback to one) holds.
    pub ip_prefix: IpPrefix,
    /// Let requests through when the counter store fails.
    pub fail_open: bool,
}

/// The prefix lengths an `ip` key aggregates addresses to: a client is handed a whole IPv6 /64
/// as easily as one IPv4 address, so by default all of a /64 shares one budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPrefix {
    pub v4: u8,
    pub v6: u8,
}

impl Default for IpPrefix {
    fn default() -> IpPrefix {
        IpPrefix { v4: 32, v6: 64 }
    }
}

/// Counter keys longer than this are hashed (a client-chosen header value must not become a
/// 30 KB store key).
const MAX_KEY_PART: usize = 64;

/// The client address as an `ip` key holds it: the address itself at a full-length prefix
/// (IPv4-mapped IPv6 counts as IPv4), else the network, `2001:db8:1:2::/64`.
pub fn ip_key(ip: std::net::IpAddr, prefix: IpPrefix) -> String {
    use std::net::IpAddr;
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let len = match ip {
        IpAddr::V4(_) => prefix.v4.min(32),
        IpAddr::V6(_) => prefix.v6.min(128),
    };
    if u32::from(len) == if ip.is_ipv4() { 32 } else { 128 } {
        return crate::phase::access::ip_text(ip).as_str().to_string();
    }
    match ipnet::IpNet::new(ip, len) {
        Ok(net) => net.trunc().to_string(),
        Err(_) => ip.to_string(),
    }
}

/// What a request is counted by, as the text of its counter key: `ip` the client's address
/// (aggregated by [`IpPrefix`]), `consumer`/`claim:` the consumer's id or the claim, `header:`
/// the header's value, `route` the route. A request without the consumer, claim or header
/// counts by its address instead (`~ip:` before it, so it never meets a real value); a part
/// longer than 64 bytes is hashed.
pub fn key_part(
    quota: &Quota,
    route: &str,
    client: std::net::IpAddr,
    consumer: Option<&crate::phase::auth::Consumer>,
    headers: &HeaderMap,
) -> String {
    use sha2::Digest;
    let fallback = || format!("~ip:{}", ip_key(client, quota.ip_prefix));
    let part = match &quota.key {
        LimitKey::Ip => return ip_key(client, quota.ip_prefix),
        LimitKey::Route => route.to_string(),
        LimitKey::Consumer => match consumer.and_then(|c| c.identified()) {
            Some(id) => id.to_string(),
            None => return fallback(),
        },
        LimitKey::Claim(c) => match consumer.and_then(|x| x.claim_text(c)) {
            Some(text) if !text.is_empty() => text,
            _ => return fallback(),
        },
        LimitKey::Header(h) => {
            let values: Vec<&[u8]> = headers.get_all(h).iter().map(|v| v.as_bytes()).collect();
            match values.as_slice() {
                [] => return fallback(),
                [one] if one.iter().all(|b| b.is_ascii_graphic() || *b == b' ') => {
                    String::from_utf8_lossy(one).into_owned()
                }
                // several lines or bytes that are not text: hashed whole
                many => format!(
                    "#{}",
                    hex::encode(sha2::Sha256::digest(many.join(&b"\n"[..])))
                ),
            }
        }
    };
    if part.len() > MAX_KEY_PART || part.starts_with('~') {
        return format!("#{}", hex::encode(sha2::Sha256::digest(part.as_bytes())));
    }
    part
}

/// The most counters one key may be split over.
pub const MAX_SHARDS: u32 = 64;

impl Quota {
    /// The quota of shard `i` (of [`Quota::shards`]): its part of `limit` and `burst`, split as
    /// evenly as whole requests allow (the first `limit % shards` shards hold one more). The
    /// parts add up to the whole, so over any window all shards together admit no more than
    /// the unsharded quota would.
    pub fn shard(&self, i: u32) -> Quota {
        let n = u64::from(self.shards.max(1));
        let i = u64::from(i) % n;
        let part = |total: u64| total / n + u64::from(i < total % n);
        Quota {
            name: self.name.clone(),
            limit: part(self.limit).max(1),
            period_ms: self.period_ms,
            algorithm: self.algorithm,
            calendar: self.calendar,
            burst: part(self.burst).max(1),
            shards: 1,
            key: self.key.clone(),
            ip_prefix: self.ip_prefix,
            fail_open: self.fail_open,
        }
    }
}

/// What a request is counted by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    Ip,
    Consumer,
    Route,
    Claim(String),
    Header(http::HeaderName),
}

impl LimitKey {
    /// Parses `ip`, `consumer`, `route`, `claim:NAME` or `header:NAME`.
    pub fn parse(s: &str) -> Result<LimitKey, String> {
        match s {
            "ip" => Ok(LimitKey::Ip),
            "consumer" => Ok(LimitKey::Consumer),
            "route" => Ok(LimitKey::Route),
            _ => {
                if let Some(c) = s.strip_prefix("claim:").filter(|c| !c.is_empty()) {
                    Ok(LimitKey::Claim(c.to_string()))
                } else if let Some(h) = s.strip_prefix("header:") {
                    http::HeaderName::from_bytes(h.as_bytes())
                        .map(LimitKey::Header)
                        .map_err(|_| format!("{h:?} is not a valid header name"))
                } else {
                    Err(format!(
                        "unknown key {s:?}; expected ip, consumer, route, claim:NAME or header:NAME"
                    ))
                }
            }
        }
    }
}

/// A GCRA state for one key: the theoretical arrival time in ticks of 1/`scale` ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    tat: u128,
    scale: u64,
}

/// The limiter state for one key, of either algorithm. A state of the other algorithm than the
/// policy's (the policy changed) counts as none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitState {
    Gcra(Gcra),
    Window(Window),
    Count(Count),
}

impl LimitState {
    /// The stored form: `"tat:scale"` for GCRA, [`Window::encode`] for a sliding window.
    pub fn encode(&self) -> String {
        match self {
            LimitState::Gcra(g) => format!("{}:{}", g.tat, g.scale),
            LimitState::Window(w) => w.encode(),
            LimitState::Count(c) => c.encode(),
        }
    }

    /// Reads the stored form; `None` for anything malformed (treated as no state).
    pub fn decode(s: &str) -> Option<LimitState> {
        if let Some(fields) = s.strip_prefix("w:") {
            return Window::decode(fields).map(LimitState::Window);
        }
        if let Some(fields) = s.strip_prefix("c:") {
            return Count::decode(fields).map(LimitState::Count);
        }
        let (tat, scale) = s.split_once(':')?;
        let scale: u64 = scale.parse().ok()?;
        (scale > 0).then_some(LimitState::Gcra(Gcra {
            tat: tat.parse().ok()?,
            scale,
        }))
    }

    /// Milliseconds after which the state no longer matters (a store may expire it then).
    pub fn expires_at_ms(&self) -> u64 {
        match self {
            LimitState::Gcra(g) => {
                u64::try_from(g.tat.div_ceil(u128::from(g.scale))).unwrap_or(u64::MAX)
            }
            LimitState::Window(w) => w.expires_at_ms(),
            LimitState::Count(c) => c.expires_at_ms(),
        }
    }
}

/// Refusals an isolate remembers, so that a key over its limit is refused again without asking
/// its counter (on Workers, without a Durable Object call per request of a client that keeps
/// coming). Only refusals are answered from memory, never admissions, so no more requests are
/// admitted than the counter allows:
///
/// - A counter's state only moves towards "refuse" between two of its answers (an admission
///   raises GCRA's `tat`, or a sliding window's count; time is the only thing that lowers what
///   is used, and [`admit`] takes `now`). So a request that the remembered state refuses at
///   `now` is refused by the counter's current state too.
/// - Once the remembered state would admit the request, or [`MEMO_HOLD_MS`] after it was
///   remembered, the entry is dropped and the counter is asked, as without the memo.
///
/// A refund ([`refund`]: a route's other limit refused a request this one admitted) is the one
/// move towards "admit" besides time. A state remembered while refunds were on their way may
/// refuse what the counter would admit by then; the hold bounds how long.
///
/// The verdict's numbers (`reset_s`, `retry_after_s`) are those of the remembered state: when
/// other isolates were admitted in between (with a cost smaller than the refused one), the
/// counter would say a little more. The memo keeps at most `max` keys; a full memo drops the
/// states that have expired, and then all of them, which only costs counter calls.
#[derive(Debug, Default)]
pub struct RefusalMemo {
    /// Each key's state, and when it was remembered.
    states: std::collections::HashMap<String, (LimitState, UnixMillis)>,
    max: usize,
}

/// How long a remembered refusal answers for its key (ms): a client that keeps coming costs its
/// counter one call a second per isolate, and a refund is seen at most this late.
pub const MEMO_HOLD_MS: u64 = 1000;

impl RefusalMemo {
    /// An empty memo for at most `max` keys.
    pub fn new(max: usize) -> RefusalMemo {
        RefusalMemo {
            states: std::collections::HashMap::new(),
            max,
        }
    }

    /// The refusal of a request of `cost` to `key` at `now`, when the state remembered for the
    /// key still refuses it; `None` when the counter must be asked.
    pub fn refusal(
        &mut self,
        key: &str,
        quota: &Quota,
        now: UnixMillis,
        cost: u32,
    ) -> Option<Verdict> {
        let (state, at) = *self.states.get(key)?;
        let (verdict, _) = admit(quota, Some(state), now, cost);
        if verdict.allowed || now >= at.saturating_add(MEMO_HOLD_MS) {
            self.states.remove(key);
            return None;
        }
        Some(verdict)
    }

    /// Remembers the state the counter for `key` had when it refused a request.
    pub fn remember(&mut self, key: &str, state: LimitState, now: UnixMillis) {
        if self.max == 0 {
            return;
        }
        if self.states.len() >= self.max && !self.states.contains_key(key) {
            self.states.retain(|_, (s, at)| {
                s.expires_at_ms() > now && now < at.saturating_add(MEMO_HOLD_MS)
            });
            if self.states.len() >= self.max {
                self.states.clear();
            }
        }
        self.states.insert(key.to_string(), (state, now));
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }
}

/// The counter a request is charged to when its policy is sharded: shard `random() % n` of the
/// `shards` ([`Quota::shard`] of each), whose index is appended to `key` as `#i`. An unsharded
/// policy (no `shards`) is its own counter: `quota` comes back, the key is unchanged and
/// `random` is not called.
pub fn pick_shard<'q>(
    quota: &'q Quota,
    shards: &'q [Quota],
    key: &mut StoreKey,
    random: impl FnOnce() -> u64,
) -> &'q Quota {
    let Ok(n @ 2..) = u64::try_from(shards.len()) else {
        return quota;
    };
    let i = random() % n;
    key.push_str("#");
    key.push_str(itoa::Buffer::new().format(i));
    usize::try_from(i)
        .ok()
        .and_then(|i| shards.get(i))
        .unwrap_or(quota)
}

/// The outcome of one request against a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Requests that could still be made right now.
    pub remaining: u64,
    /// Seconds until the quota is fully restored.
    pub reset_s: u64,
    /// Seconds to wait before this request would be allowed (0 when allowed).
    pub retry_after_s: u64,
}

/// Applies one request of `cost` at `now` with the quota's algorithm. Pure: the caller stores
/// the returned state (a refusal returns the state unchanged but for the passing of time, so
/// there is nothing to store).
pub fn admit(
    quota: &Quota,
    state: Option<LimitState>,
    now: UnixMillis,
    cost: u32,
) -> (Verdict, LimitState) {
    if let Some(period) = quota.calendar {
        let state = state.and_then(|s| match s {
            LimitState::Count(c) => Some(c),
            _ => None,
        });
        let (verdict, next) = calendar::admit(quota, period, state, now, cost);
        return (verdict, LimitState::Count(next));
    }
    match quota.algorithm {
        LimitAlgorithm::Gcra => {
            let state = state.and_then(|s| match s {
                LimitState::Gcra(g) => Some(g),
                _ => None,
            });
            let (verdict, next) = admit_gcra(quota, state, now, cost);
            (verdict, LimitState::Gcra(next))
        }
        LimitAlgorithm::SlidingWindow => {
            let state = state.and_then(|s| match s {
                LimitState::Window(w) => Some(w),
                _ => None,
            });
            let (verdict, next) = window::admit(quota, state, now, cost);
            (verdict, LimitState::Window(next))
        }
    }
}

/// Gives back a request of `cost` that was admitted, leaving the counter in state `charged`,
/// because another limit of its route refused it (each limit of a route charges only if all
/// admit). The new state to store; `None` when nothing changes.
///
/// - A sliding window's count for the period it was charged in goes down, whatever came since:
///   counts add up, so the state is exactly as though the request had never come.
/// - GCRA's `tat` goes back by the cost only while the state is still the one the admission left.
///   Once other requests have moved it, how much of the charge still weighs is no longer known
///   (time may have caught up with it), and the charge stays: the key may then be refused a
///   little early, never admitted beyond its policy.
pub fn refund(
    quota: &Quota,
    state: Option<LimitState>,
    cost: u32,
    charged: LimitState,
) -> Option<LimitState> {
    let cost = cost.max(1);
    match (state?, charged) {
        (LimitState::Gcra(g), LimitState::Gcra(c)) if g == c && g.scale == quota.limit.max(1) => {
            let back = u128::from(quota.period_ms) * u128::from(cost);
            Some(LimitState::Gcra(Gcra {
                tat: g.tat.saturating_sub(back),
                ..g
            }))
        }
        (LimitState::Window(w), LimitState::Window(c)) => w.refund(c, cost).map(LimitState::Window),
        (LimitState::Count(n), LimitState::Count(c)) => n.refund(c, cost).map(LimitState::Count),
        _ => None,
    }
}

/// GCRA: one request of `cost` at `now`.
fn admit_gcra(quota: &Quota, state: Option<Gcra>, now: UnixMillis, cost: u32) -> (Verdict, Gcra) {
    let scale = quota.limit.max(1);
    let now_t = u128::from(now) * u128::from(scale);
    let interval = u128::from(quota.period_ms); // period/limit ms, in ticks of 1/limit ms
    let capacity = interval * u128::from(quota.burst.max(1)); // burst × interval
    let tat = match state {
        Some(s) if s.scale == scale => s.tat,
        // the policy changed: carry the state over in the new unit, rounding against the client
        Some(s) => (s.tat * u128::from(scale)).div_ceil(u128::from(s.scale)),
        None => 0,
    }
    .max(now_t);
    let new_tat = tat + interval * u128::from(cost.max(1));
    let to_secs =
        |ticks: u128| u64::try_from(ticks.div_ceil(u128::from(scale) * 1000)).unwrap_or(u64::MAX);
    if new_tat - now_t > capacity {
        let remaining = ((capacity + now_t).saturating_sub(tat) / interval.max(1)) as u64;
        let verdict = Verdict {
            allowed: false,
            remaining,
            reset_s: to_secs(tat - now_t),
            retry_after_s: to_secs(new_tat - now_t - capacity).max(1),
        };
        (verdict, Gcra { tat, scale })
    } else {
        let remaining = ((capacity - (new_tat - now_t)) / interval.max(1)) as u64;
        let verdict = Verdict {
            allowed: true,
            remaining,
            reset_s: to_secs(new_tat - now_t),
            retry_after_s: 0,
        };
        (
            verdict,
            Gcra {
                tat: new_tat,
                scale,
            },
        )
    }
}

/// One [`admit`] call sent to a counter that lives elsewhere (a Durable Object, a store with
/// compare-and-swap): the quota's numbers and the cost, as `"limit:period_ms:burst:cost"`, and
/// after them `":w"` for a sliding window, `":day"` or `":month"` for a calendar quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmitRequest {
    pub limit: u64,
    pub period_ms: u64,
    pub algorithm: LimitAlgorithm,
    pub calendar: Option<CalendarPeriod>,
    pub burst: u64,
    pub cost: u32,
}

impl AdmitRequest {
    pub fn new(quota: &Quota, cost: u32) -> AdmitRequest {
        AdmitRequest {
            limit: quota.limit,
            period_ms: quota.period_ms,
            algorithm: quota.algorithm,
            calendar: quota.calendar,
            burst: quota.burst,
            cost,
        }
    }

    pub fn encode(&self) -> String {
        let kind = match (self.calendar, self.algorithm) {
            (Some(CalendarPeriod::Day), _) => ":day",
            (Some(CalendarPeriod::Month), _) => ":month",
            (None, LimitAlgorithm::Gcra) => "",
            (None, LimitAlgorithm::SlidingWindow) => ":w",
        };
        format!(
            "{}:{}:{}:{}{kind}",
            self.limit, self.period_ms, self.burst, self.cost
        )
    }

    /// Reads the wire form; `None` when malformed or when a number is zero.
    pub fn decode(s: &str) -> Option<AdmitRequest> {
        let (mut algorithm, mut calendar) = (LimitAlgorithm::Gcra, None);
        let mut s = s;
        for (suffix, sliding, period) in [
            (":w", true, None),
            (":day", false, Some(CalendarPeriod::Day)),
            (":month", false, Some(CalendarPeriod::Month)),
        ] {
            if let Some(numbers) = s.strip_suffix(suffix) {
                s = numbers;
                calendar = period;
                if sliding {
                    algorithm = LimitAlgorithm::SlidingWindow;
                }
                break;
            }
        }
        let mut it = s.split(':');
        let mut next = || it.next()?.parse::<u64>().ok().filter(|n| *n > 0);
        let r = AdmitRequest {
            limit: next()?,
            period_ms: next()?,
            algorithm,
            calendar,
            burst: next()?,
            cost: u32::try_from(next()?).ok()?,
        };
        it.next().is_none().then_some(r)
    }

    /// Applies this request to `state` at `now`, as [`admit`] does.
    pub fn apply(&self, state: Option<LimitState>, now: UnixMillis) -> (Verdict, LimitState) {
        admit(&self.quota(), state, now, self.cost)
    }

    /// Gives this request back, as [`refund`] does: its admission left the state `charged`.
    pub fn refund(&self, state: Option<LimitState>, charged: LimitState) -> Option<LimitState> {
        refund(&self.quota(), state, self.cost, charged)
    }

    fn quota(&self) -> Quota {
        Quota {
            name: String::new(),
            limit: self.limit,
            period_ms: self.period_ms,
            algorithm: self.algorithm,
            calendar: self.calendar,
            burst: self.burst,
            shards: 1,
            key: LimitKey::Route,
            ip_prefix: IpPrefix::default(),
            fail_open: false,
        }
    }
}

impl Verdict {
    /// The wire form: `"allowed:remaining:reset_s:retry_after_s"` with allowed as 1 or 0.
    pub fn encode(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            u8::from(self.allowed),
            self.remaining,
            self.reset_s,
            self.retry_after_s
        )
    }

    /// Reads the wire form; `None` when malformed.
    pub fn decode(s: &str) -> Option<Verdict> {
        let mut it = s.split(':').map(|n| n.parse::<u64>().ok());
        let allowed = match it.next()?? {
            0 => false,
            1 => true,
            _ => return None,
        };
        let v = Verdict {
            allowed,
            remaining: it.next()??,
            reset_s: it.next()??,
            retry_after_s: it.next()??,
        };
        it.next().is_none().then_some(v)
    }
}

/// The `RateLimit-Policy` value of a quota, and its name as a structured-field string; both are
/// the same for every request, so the gateway makes them once.
pub fn policy_fields(quota: &Quota) -> (HeaderValue, String) {
    let name = format!("\"{}\"", sf_key(&quota.name));
    let policy = match quota.calendar {
        // months differ in length: no one window to state
        Some(CalendarPeriod::Month) => format!("{name};q={}", quota.limit),
        _ => format!("{name};q={};w={}", quota.limit, quota.period_ms / 1000),
    };
    (
        HeaderValue::from_str(&policy).unwrap_or(HeaderValue::from_static("")),
        name,
    )
}

/// Sets `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers) from
/// [`policy_fields`] and a verdict.
pub fn set_headers_with(
    headers: &mut HeaderMap,
    policy: &HeaderValue,
    quoted_name: &str,
    verdict: &Verdict,
) {
    let (mut r, mut t) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (r, t) = (r.format(verdict.remaining), t.format(verdict.reset_s));
    // exactly sized, so the header value takes the String's bytes without a copy
    let mut state = String::with_capacity(quoted_name.len() + 6 + r.len() + t.len());
    state.push_str(quoted_name);
    state.push_str(";r=");
    state.push_str(r);
    state.push_str(";t=");
    state.push_str(t);
    if let Ok(s) = HeaderValue::from_maybe_shared(bytes::Bytes::from(state)) {
        headers.insert(
            const { HeaderName::from_static("ratelimit-policy") },
            policy.clone(),
        );
        headers.insert(const { HeaderName::from_static("ratelimit") }, s);
    }
}

/// Sets `RateLimit-Policy` and `RateLimit` for several policies, each from its
/// [`policy_fields`] and its verdict: lists, in the order given (the draft allows a list).
pub fn set_list_headers<'a>(
    headers: &mut HeaderMap,
    fields: impl Iterator<Item = (&'a (HeaderValue, String), &'a Verdict)>,
) {
    let (mut policies, mut states) = (Vec::new(), String::new());
    for ((policy, name), verdict) in fields {
        if !policies.is_empty() {
            policies.extend_from_slice(b", ");
            states.push_str(", ");
        }
        policies.extend_from_slice(policy.as_bytes());
        let (mut r, mut t) = (itoa::Buffer::new(), itoa::Buffer::new());
        states.push_str(name);
        states.push_str(";r=");
        states.push_str(r.format(verdict.remaining));
        states.push_str(";t=");
        states.push_str(t.format(verdict.reset_s));
    }
    if let (Ok(p), Ok(s)) = (
        HeaderValue::from_bytes(&policies),
        HeaderValue::from_str(&states),
    ) {
        headers.insert(const { HeaderName::from_static("ratelimit-policy") }, p);
        headers.insert(const { HeaderName::from_static("ratelimit") }, s);
    }
}

/// Sets `RateLimit-Policy` and `RateLimit` for a quota and a verdict.
pub fn set_headers(headers: &mut HeaderMap, quota: &Quota, verdict: &Verdict) {
    let (policy, name) = policy_fields(quota);
    set_headers_with(headers, &policy, &name, verdict);
}

/// Keeps a policy name safe inside a structured-field string.
fn sf_key(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .collect()
}

impl Quota {
    /// Checks and builds rate limit `name`.
    pub(crate) fn compile(e: &mut Errs<'_>, name: &str, q: &raw::RateLimitPolicy) -> Quota {
        let path = format!("rate_limits.{name}");
        let key = LimitKey::parse(&q.key)
            .map_err(|m| refuse!(e, format!("{path}.key"), m))
            .ok();
        if q.limit == 0 || q.limit > 1_000_000_000 {
            refuse!(
                e,
                format!("{path}.limit"),
                "must be between 1 and 1000000000"
            );
        }
        let period_ms = match (q.period_s, q.period) {
            (Some(s @ 1..=31_536_000), None) => s * 1000,
            (Some(_), None) => {
                refuse!(
                    e,
                    format!("{path}.period_s"),
                    "must be between 1 and 31536000 (a year)",
                );
                1000
            }
            (None, Some(CalendarPeriod::Day)) => 86_400_000,
            (None, Some(CalendarPeriod::Month)) => 31 * 86_400_000,
            (Some(_), Some(_)) => {
                refuse!(
                    e,
                    format!("{path}.period"),
                    "give `period_s` or `period`, not both"
                );
                1000
            }
            (None, None) => {
                refuse!(
                    e,
                    &path,
                    "needs `period_s` (seconds) or `period` (\"day\" or \"month\")"
                );
                1000
            }
        };
        if q.period.is_some() && q.algorithm != LimitAlgorithm::Gcra {
            refuse!(
                e,
                format!("{path}.algorithm"),
                "a calendar `period` counts each day or month afresh: `algorithm` is for `period_s`",
            );
        }
        if q.burst == Some(0) {
            refuse!(e, format!("{path}.burst"), "must be greater than 0");
        } else if q.burst.is_some() && q.algorithm == LimitAlgorithm::SlidingWindow {
            refuse!(
                e,
                format!("{path}.burst"),
                "a sliding window admits up to `limit` at once: `burst` is for `gcra`",
            );
        } else if q.burst.is_some() && q.period.is_some() {
            refuse!(
                e,
                format!("{path}.burst"),
                "a calendar quota admits up to `limit` at once: `burst` is for `gcra`",
            );
        }
        let shards = q.shards.unwrap_or(1);
        let burst = q.burst.unwrap_or(q.limit);
        if !(1..=MAX_SHARDS).contains(&shards) {
            refuse!(
                e,
                format!("{path}.shards"),
                format!("must be between 1 and {}", MAX_SHARDS),
            );
        } else if u64::from(shards) > q.limit.min(burst) && q.limit > 0 && burst > 0 {
            refuse!(
                e,
                format!("{path}.shards"),
                format!(
                    "{shards} shards cannot each hold a part of limit {} and burst {burst}: \
                     use at most {}",
                    q.limit,
                    q.limit.min(burst)
                ),
            );
        }
        for (field, v, max) in [
            ("ipv4_prefix", q.ipv4_prefix, 32),
            ("ipv6_prefix", q.ipv6_prefix, 128),
        ] {
            if v.is_some_and(|v| v == 0 || v > max) {
                refuse!(
                    e,
                    format!("{path}.{field}"),
                    format!("must be between 1 and {max}"),
                );
            }
        }
        let defaults = IpPrefix::default();
        Quota {
            ip_prefix: IpPrefix {
                v4: q.ipv4_prefix.unwrap_or(defaults.v4),
                v6: q.ipv6_prefix.unwrap_or(defaults.v6),
            },
            name: name.to_string(),
            limit: q.limit,
            period_ms,
            algorithm: q.algorithm,
            calendar: q.period,
            burst,
            shards,
            key: key.unwrap_or(LimitKey::Ip),
            fail_open: q.fail == raw::FailMode::Open,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Kind;
    use proptest::prelude::*;

    pub(super) fn quota(limit: u64, period_s: u64, burst: u64) -> Quota {
        Quota {
            name: "q".into(),
            limit,
            period_ms: period_s * 1000,
            algorithm: LimitAlgorithm::Gcra,
            calendar: None,
            burst,
            shards: 1,
            key: LimitKey::Ip,
            ip_prefix: IpPrefix::default(),
            fail_open: true,
        }
    }

    #[test]
    fn wire_forms_round_trip_and_reject_garbage() {
        let q = quota(50, 60, 5);
        let r = AdmitRequest::new(&q, 2);
        assert_eq!(r.encode(), "50:60000:5:2");
        assert_eq!(AdmitRequest::decode(&r.encode()), Some(r));
        let sliding = Quota {
            algorithm: LimitAlgorithm::SlidingWindow,
            ..quota(50, 60, 50)
        };
        let w = AdmitRequest::new(&sliding, 2);
        assert_eq!(w.encode(), "50:60000:50:2:w");
        assert_eq!(AdmitRequest::decode(&w.encode()), Some(w));
        assert_eq!(w.apply(None, 1_000), admit(&sliding, None, 1_000, 2));
        for bad in [
            "",
            ":w",
            "50:60000:5:w",
            "50:60000:5:2:x",
            "50:60000:5:2:w:w",
            "50:60000:5",
            "50:60000:5:2:9",
            "0:60000:5:2",
            "a:1:1:1",
            "1:1:1:99999999999",
        ] {
            assert_eq!(AdmitRequest::decode(bad), None, "{bad:?}");
        }
        assert_eq!(r.apply(None, 1_000), admit(&q, None, 1_000, 2));
        let (v, _) = admit(&q, None, 1_000, 1);
        assert_eq!(v.encode(), "1:4:2:0");
        assert_eq!(Verdict::decode(&v.encode()), Some(v));
        for bad in ["", "2:1:1:1", "1:1:1", "1:1:1:1:1", "1:x:1:1"] {
            assert_eq!(Verdict::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_remembered_refusal_answers_until_the_state_would_admit() {
        let q = quota(2, 60, 2); // one request per 30 s, two at once
        let mut memo = RefusalMemo::new(8);
        let (_, s) = admit(&q, None, 0, 1);
        let (_, s) = admit(&q, Some(s), 0, 1);
        let (refused, s) = admit(&q, Some(s), 0, 1);
        assert!(!refused.allowed);
        memo.remember("k", s, 0);
        // answered from memory with the counter's own numbers, as long as it refuses
        assert_eq!(memo.refusal("k", &q, 0, 1), Some(refused));
        assert_eq!(memo.refusal("other", &q, 0, 1), None);
        // for at most MEMO_HOLD_MS: then the counter is asked again (a refund may have come)
        assert!(memo.refusal("k", &q, MEMO_HOLD_MS - 1, 1).is_some());
        assert_eq!(memo.refusal("k", &q, MEMO_HOLD_MS, 1), None);
        assert!(memo.is_empty());
        // from the moment the state would admit, the counter is asked again and the entry goes
        memo.remember("k", s, 29_500);
        assert_eq!(
            memo.refusal("k", &q, 29_999, 1).map(|v| v.retry_after_s),
            Some(1)
        );
        assert_eq!(memo.refusal("k", &q, 30_000, 1), None);
        assert!(memo.is_empty());
    }

    #[test]
    fn a_full_refusal_memo_drops_expired_states_first_then_all() {
        let q = quota(1, 60, 1);
        let state_at = |t: u64| admit(&q, None, t, 1).1; // expires 60 s after t
        let mut memo = RefusalMemo::new(2);
        memo.remember("a", state_at(0), 0);
        memo.remember("b", state_at(100_000), 100_000);
        // "a" has expired by 100 s: it makes room for "c"
        memo.remember("c", state_at(100_000), 100_000);
        assert_eq!(memo.len(), 2);
        assert!(memo.refusal("b", &q, 100_000, 1).is_some());
        assert!(memo.refusal("c", &q, 100_000, 1).is_some());
        // nothing has expired: the memo starts over with the newcomer
        memo.remember("d", state_at(100_000), 100_000);
        assert_eq!(memo.len(), 1);
        assert!(memo.refusal("d", &q, 100_000, 1).is_some());
        // a memo of no keys remembers nothing
        let mut none = RefusalMemo::new(0);
        none.remember("a", state_at(0), 0);
        assert!(none.is_empty());
    }

    #[test]
    fn shards_split_limit_and_burst_into_parts_that_add_up() {
        let q = Quota {
            shards: 4,
            ..quota(10, 60, 7)
        };
        let parts: Vec<(u64, u64, u32)> = (0..4)
            .map(|i| q.shard(i))
            .map(|s| (s.limit, s.burst, s.shards))
            .collect();
        assert_eq!(parts, [(3, 2, 1), (3, 2, 1), (2, 2, 1), (2, 1, 1)]);
        // the index wraps, and an unsharded quota is its own only shard
        assert_eq!(q.shard(5), q.shard(1));
        let one = quota(10, 60, 7);
        assert_eq!(
            one.shard(0),
            Quota {
                shards: 1,
                ..one.clone()
            }
        );
        // each shard refills at its own part of the rate: 3 per minute is one per 20 s
        let s0 = q.shard(0);
        assert_eq!(
            run(&s0, &[0, 0, 0, 19_999, 20_000]),
            [true, true, false, false, true]
        );
    }

    #[test]
    fn a_sharded_key_names_the_counter_it_is_charged_to() {
        let q = Quota {
            shards: 3,
            ..quota(9, 60, 9)
        };
        let shards: Vec<Quota> = (0..3).map(|i| q.shard(i)).collect();
        let pick = |random: u64| {
            let mut key = StoreKey::new(Kind::RateLimit, "q:192.0.2.1");
            let charged = pick_shard(&q, &shards, &mut key, || random);
            (key.as_str().to_string(), charged.limit)
        };
        assert_eq!(pick(7), ("rl:q:192.0.2.1#1".to_string(), 3));
        assert_eq!(pick(u64::MAX), ("rl:q:192.0.2.1#0".to_string(), 3));
        // unsharded: the quota itself, and no random number drawn
        let mut key = StoreKey::new(Kind::RateLimit, "q:x");
        let charged = pick_shard(&q, &[], &mut key, || unreachable!());
        assert_eq!((key.as_str(), charged), ("rl:q:x", &q));
    }

    fn run(q: &Quota, times: &[u64]) -> Vec<bool> {
        let mut state = None;
        times
            .iter()
            .map(|&t| {
                let (v, s) = admit(q, state, t, 1);
                state = Some(s);
                v.allowed
            })
            .collect()
    }

    #[test]
    fn burst_then_refusal_then_refill() {
        let q = quota(3, 60, 3);
        // three at once pass, the fourth waits 20 s (one emission interval)
        assert_eq!(
            run(&q, &[0, 0, 0, 0, 19_999, 20_000]),
            [true, true, true, false, false, true]
        );
    }

    #[test]
    fn verdict_fields() {
        let q = quota(10, 60, 10);
        let (v, s) = admit(&q, None, 1_000_000, 1);
        assert_eq!(
            v,
            Verdict {
                allowed: true,
                remaining: 9,
                reset_s: 6,
                retry_after_s: 0
            }
        );
        let (v, s) = admit(&q, Some(s), 1_000_000, 9);
        assert_eq!(
            v,
            Verdict {
                allowed: true,
                remaining: 0,
                reset_s: 60,
                retry_after_s: 0
            }
        );
        let (v, _) = admit(&q, Some(s), 1_000_000, 1);
        assert_eq!(
            v,
            Verdict {
                allowed: false,
                remaining: 0,
                reset_s: 60,
                retry_after_s: 6
            }
        );
    }

    #[test]
    fn state_round_trips_and_rejects_garbage() {
        let (_, s) = admit(&quota(7, 1, 7), None, 123_456, 1);
        assert_eq!(LimitState::decode(&s.encode()), Some(s));
        for bad in ["", "1", "x:1", "1:0", "1:-1", "1:2:3"] {
            assert_eq!(LimitState::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_refund_undoes_the_charge_exactly_or_leaves_it() {
        for q in [
            quota(3, 60, 3),
            Quota {
                algorithm: LimitAlgorithm::SlidingWindow,
                ..quota(3, 60, 3)
            },
        ] {
            let (_, before) = admit(&q, None, 1_000, 1);
            let (_, charged) = admit(&q, Some(before), 1_000, 2);
            // given back at once: as though the charge of 2 had never been
            let back = refund(&q, Some(charged), 2, charged);
            assert_eq!(back, Some(before), "{:?}", q.algorithm);
            // nothing stored, or a state of the other algorithm: nothing to give back
            assert_eq!(refund(&q, None, 2, charged), None);
        }
        // GCRA, after another request moved the state: the charge stays
        let q = quota(3, 60, 3);
        let (_, charged) = admit(&q, None, 1_000, 1);
        let (_, moved) = admit(&q, Some(charged), 50_000, 1);
        assert_eq!(refund(&q, Some(moved), 1, charged), None);
        // a sliding window, after others and a new period: taken from the period it was in
        let w = Quota {
            algorithm: LimitAlgorithm::SlidingWindow,
            ..q
        };
        let (_, charged) = admit(&w, None, 1_000, 2);
        let (_, moved) = admit(&w, Some(charged), 61_000, 1);
        let back = refund(&w, Some(moved), 2, charged).unwrap();
        assert_eq!(back.encode(), "w:60000:1:1:0");
        // two periods on, it no longer counts
        let (_, later) = admit(&w, Some(charged), 121_000, 1);
        assert_eq!(refund(&w, Some(later), 2, charged), None);
    }

    #[test]
    fn key_parsing() {
        assert_eq!(
            LimitKey::parse("claim:sub"),
            Ok(LimitKey::Claim("sub".into()))
        );
        assert_eq!(LimitKey::parse("ip"), Ok(LimitKey::Ip));
        assert!(LimitKey::parse("claim:").is_err());
        assert_eq!(
            LimitKey::parse("header:bad name"),
            Err("\"bad name\" is not a valid header name".into())
        );
    }

    #[test]
    fn headers_follow_the_draft() {
        let mut h = HeaderMap::new();
        let q = quota(100, 60, 100);
        set_headers(
            &mut h,
            &q,
            &Verdict {
                allowed: true,
                remaining: 42,
                reset_s: 5,
                retry_after_s: 0,
            },
        );
        assert_eq!(h["ratelimit-policy"], "\"q\";q=100;w=60");
        assert_eq!(h["ratelimit"], "\"q\";r=42;t=5");
    }

    proptest! {
        /// In any window of length W the limiter admits at most burst + floor(W × limit / period).
        #[test]
        fn never_admits_more_than_the_quota(
            limit in 1u64..50, period_s in 1u64..120, extra_burst in 0u64..5,
            gaps in proptest::collection::vec(0u64..5_000, 1..300),
        ) {
            let q = quota(limit, period_s, limit + extra_burst);
            let mut t = 1_700_000_000_000u64;
            let times: Vec<u64> = gaps.iter().map(|g| { t += g; t }).collect();
            let allowed: Vec<u64> = times.iter().zip(run(&q, &times)).filter(|(_, a)| *a).map(|(t, _)| *t).collect();
            for (i, start) in allowed.iter().enumerate() {
                for (j, end) in allowed.iter().enumerate().skip(i) {
                    let w = u128::from(end - start);
                    let bound = u128::from(q.burst) + w * u128::from(limit) / u128::from(q.period_ms);
                    prop_assert!((j - i + 1) as u128 <= bound, "{} admitted in {} ms", j - i + 1, w);
                }
            }
        }

        /// Requests of any mix of costs (routes sharing one policy at different weights): the
        /// units admitted in any window W are at most burst + floor(W × limit / period), and a
        /// refused request charges nothing.
        #[test]
        fn weighted_requests_never_admit_more_units_than_the_quota(
            limit in 1u64..50, period_s in 1u64..120, extra_burst in 0u64..5,
            requests in proptest::collection::vec((0u64..5_000, 1u32..8), 1..300),
        ) {
            let q = quota(limit, period_s, limit + extra_burst);
            let (mut t, mut state) = (1_700_000_000_000u64, None);
            let mut admitted: Vec<(u64, u64)> = Vec::new(); // (time, cost)
            for (gap, cost) in requests {
                t += gap;
                let (verdict, next) = admit(&q, state, t, cost);
                if verdict.allowed {
                    admitted.push((t, u64::from(cost)));
                } else {
                    // the state only catches up with now (its unit is 1/limit ms)
                    let now_t = u128::from(t) * u128::from(limit);
                    let tat = |s: Option<LimitState>| match s {
                        Some(LimitState::Gcra(g)) => g.tat,
                        _ => 0,
                    };
                    prop_assert_eq!(tat(Some(next)), tat(state).max(now_t));
                }
                state = Some(next);
            }
            for i in 0..admitted.len() {
                let mut units = 0u128;
                for j in i..admitted.len() {
                    units += u128::from(admitted[j].1);
                    let w = u128::from(admitted[j].0 - admitted[i].0);
                    let bound = u128::from(q.burst) + w * u128::from(limit) / u128::from(q.period_ms);
                    prop_assert!(units <= bound, "{} units admitted in {} ms", units, w);
                }
            }
        }

        /// Split over shards, with each request charged to any shard, the limiter still admits
        /// at most burst + floor(W × limit / period) in any window W.
        #[test]
        fn shards_together_never_admit_more_than_the_quota(
            limit in 1u64..50, period_s in 1u64..120, extra_burst in 0u64..5, shards in 1u32..8,
            requests in proptest::collection::vec((0u64..5_000, 0u32..8), 1..300),
        ) {
            let q = Quota { shards: shards.min(limit as u32), ..quota(limit, period_s, limit + extra_burst) };
            let mut states = [None; 8];
            let mut t = 1_700_000_000_000u64;
            let mut allowed = Vec::new();
            for (gap, pick) in requests {
                t += gap;
                let i = pick % q.shards;
                let (v, s) = admit(&q.shard(i), states[i as usize], t, 1);
                states[i as usize] = Some(s);
                if v.allowed {
                    allowed.push(t);
                }
            }
            for (i, start) in allowed.iter().enumerate() {
                for (j, end) in allowed.iter().enumerate().skip(i) {
                    let w = u128::from(end - start);
                    let bound = u128::from(q.burst) + w * u128::from(limit) / u128::from(q.period_ms);
                    prop_assert!((j - i + 1) as u128 <= bound, "{} admitted in {} ms", j - i + 1, w);
                }
            }
        }

        /// Isolates that answer remembered refusals themselves decide every request exactly as
        /// the counter alone would, with either algorithm: the same requests are admitted, in
        /// any interleaving and with any mix of costs.
        #[test]
        fn remembered_refusals_decide_as_the_counter_would(
            limit in 1u64..20, period_s in 1u64..30, extra_burst in 0u64..4, sliding: bool,
            requests in proptest::collection::vec((0u64..3_000, 0usize..3, 1u32..4), 1..300),
        ) {
            let q = match sliding {
                true => Quota { algorithm: LimitAlgorithm::SlidingWindow, ..quota(limit, period_s, limit) },
                false => quota(limit, period_s, limit + extra_burst),
            };
            let (mut alone, mut shared) = (None, None);
            let mut memos: Vec<RefusalMemo> = (0..3).map(|_| RefusalMemo::new(4)).collect();
            let mut t = 1_700_000_000_000u64;
            for (gap, isolate, cost) in requests {
                t += gap;
                let (expected, next) = admit(&q, alone, t, cost);
                alone = Some(next);
                let memo = &mut memos[isolate];
                let allowed = match memo.refusal("k", &q, t, cost) {
                    Some(v) => v.allowed,
                    None => {
                        let (v, next) = admit(&q, shared, t, cost);
                        shared = Some(next);
                        if !v.allowed {
                            memo.remember("k", next, t);
                        }
                        v.allowed
                    }
                };
                prop_assert_eq!(allowed, expected.allowed);
            }
        }

        /// A route with two limits (a GCRA and a sliding window, charged in either order, the
        /// first given back when the second refuses), interleaved with routes that charge one of
        /// them and with other requests between a charge and its refund: neither policy ever
        /// admits more than its bound.
        #[test]
        fn several_limits_never_admit_more_than_any_policy(
            limit_a in 1u64..20, period_a in 1u64..20, limit_b in 1u64..20, period_b in 1u64..20,
            ops in proptest::collection::vec((0u64..2_000, 0u8..4, any::<bool>(), 1u32..3), 1..300),
        ) {
            let quotas = [
                quota(limit_a, period_a, limit_a),
                Quota { algorithm: LimitAlgorithm::SlidingWindow, ..quota(limit_b, period_b, limit_b) },
            ];
            let mut states: [Option<LimitState>; 2] = [None, None];
            let mut admitted: [Vec<(u64, u64)>; 2] = [Vec::new(), Vec::new()]; // (time, cost)
            // routes with both limits that have charged their first: (first, when, charged state)
            let mut pending: Vec<(usize, u64, LimitState, u32)> = Vec::new();
            let mut t = 1_700_000_000_000u64;
            let charge = |i: usize, t: u64, cost: u32, states: &mut [Option<LimitState>; 2]| {
                let (v, next) = admit(&quotas[i], states[i], t, cost);
                states[i] = Some(next);
                v.allowed.then_some(next)
            };
            for (gap, op, b_first, cost) in ops {
                t += gap;
                match op {
                    0 | 1 => {
                        let i = usize::from(op);
                        if charge(i, t, cost, &mut states).is_some() {
                            admitted[i].push((t, u64::from(cost)));
                        }
                    }
                    2 => {
                        let first = usize::from(b_first);
                        if let Some(state) = charge(first, t, cost, &mut states) {
                            pending.push((first, t, state, cost));
                        }
                    }
                    _ => {
                        if pending.is_empty() {
                            continue;
                        }
                        let (first, at, charged, cost) = pending.remove(0);
                        let second = 1 - first;
                        if charge(second, t, cost, &mut states).is_some() {
                            admitted[first].push((at, u64::from(cost)));
                            admitted[second].push((t, u64::from(cost)));
                        } else if let Some(back) = refund(&quotas[first], states[first], cost, charged) {
                            states[first] = Some(back);
                        }
                    }
                }
            }
            // GCRA: in any window W, at most burst + W × limit / period units
            let a = &mut admitted[0];
            a.sort_unstable();
            for i in 0..a.len() {
                let mut units = 0u128;
                for j in i..a.len() {
                    units += u128::from(a[j].1);
                    let w = u128::from(a[j].0 - a[i].0);
                    let bound = u128::from(limit_a) + w * u128::from(limit_a) / u128::from(period_a * 1000);
                    prop_assert!(units <= bound, "GCRA: {} units in {} ms", units, w);
                }
            }
            // the sliding window: at most `limit` in each aligned period
            let w = period_b * 1000;
            for (start, _) in &admitted[1] {
                let aligned: u64 = admitted[1].iter().filter(|(at, _)| at / w == start / w).map(|(_, c)| c).sum();
                prop_assert!(aligned <= limit_b, "window: {} units in the period of {}", aligned, start);
            }
        }

        /// Exactly `burst` simultaneous requests pass, whatever the policy.
        #[test]
        fn simultaneous_requests_get_exactly_the_burst(limit in 1u64..500, period_s in 1u64..3600, n in 0usize..600) {
            let q = quota(limit, period_s, limit);
            let passed = run(&q, &vec![5_000; n]).into_iter().filter(|a| *a).count();
            prop_assert_eq!(passed as u64, (n as u64).min(limit));
        }
    }
}
