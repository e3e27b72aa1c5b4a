//! The core's [`Host`] port over Spin: the key-value store, outbound HTTP, stdout.

use crate::expiry::{self, classify, tombstone, unwrap_live, wrap, Schedule, Stored, Sweep};
use crate::stream::{read_capped, SpinStream};
use bytes::Bytes;
use futures_util::future::{select, Either};
use http::{Request, Response};
use portcullis_core::body::declared_length;
use portcullis_core::phase::ratelimit::{admit, refund, LimitState, Quota, Verdict};
use portcullis_core::store::StoreKey;
use portcullis_core::{
    Body, BodyUse, Exchange, FetchError, Host, HostError, Later, ReadError, Tee, UnixMillis,
    HEADER_ROOM,
};
use spin_sdk::experimental::wasi::keyvalue::atomics::{self, Cas, CasError};
use spin_sdk::experimental::wasi::keyvalue::store::{self, Bucket};
use spin_sdk::key_value::Store;
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How many times a rate-limit update retries after losing a compare-and-swap race.
const CAS_ATTEMPTS: u32 = 64;

pub struct SpinHost {
    /// The `default` store, or why it could not be opened (every store call then fails, and
    /// the rate limit's and cache rule's fail modes decide).
    store: Result<Store, String>,
    /// The same store as a `wasi:keyvalue` bucket, for compare-and-swap.
    bucket: Result<Bucket, String>,
    started: Instant,
    /// Work the gateway left for after the answer ([`Host::defer`]).
    later: std::cell::RefCell<Vec<Later>>,
}

impl SpinHost {
    pub async fn open() -> SpinHost {
        SpinHost {
            store: Store::open_default()
                .await
                .map_err(|e| format!("key-value store \"default\": {e:?}")),
            bucket: store::open(STORE).map_err(|e| kv_error("bucket \"default\"", e).0),
            started: Instant::now(),
            later: Default::default(),
        }
    }

    /// The work the gateway left for after the answer, for the entry to run after its last
    /// byte.
    pub fn take_later(&self) -> Vec<Later> {
        std::mem::take(&mut *self.later.borrow_mut())
    }

    fn store(&self) -> Result<&Store, HostError> {
        self.store.as_ref().map_err(|e| HostError(e.clone()))
    }

    fn bucket(&self) -> Result<&Bucket, HostError> {
        self.bucket.as_ref().map_err(|e| HostError(e.clone()))
    }
}

/// The store the gateway uses (granted in spin.toml's `key_value_stores`).
const STORE: &str = "default";

/// What a rate-limit key's creation counter is stored under (see [`creation_turn`]).
pub const CREATION_SUFFIX: &str = "~new";

/// How many times (1 ms apart, so at least that many milliseconds) a request reads a key
/// another request is creating before it takes the creation over: that request may have
/// stopped between its turn and its write. A creator that is merely slow and loses its turn so
/// costs one extra admission; the wait is long enough for that to need a stalled instance.
const CREATION_WAITS: u32 = 250;

/// The key of `key`'s creation counter.
fn creation_counter(key: &str) -> String {
    format!("{key}{CREATION_SUFFIX}")
}

/// Whether this request creates the rate-limit entry `key`, which it found absent: the one that
/// `increment` on `key~new` (atomic in every Spin store) answers 1 does; the counter stays until
/// the sweeper deletes the entry, and the counter with it. A request that has waited
/// [`CREATION_WAITS`] reads (its `waited`) for an entry that never came resets the counter, so
/// a creator that stopped halfway blocks the key for milliseconds, not for good.
fn creation_turn(bucket: &Bucket, key: &str, waited: u32) -> Result<bool, HostError> {
    let counter = creation_counter(key);
    if waited == CREATION_WAITS {
        bucket
            .delete(&counter)
            .map_err(|e| kv_error("creation counter reset", e))?;
    }
    let turn =
        atomics::increment(bucket, &counter, 1).map_err(|e| kv_error("creation counter", e))?;
    Ok(turn == 1)
}

/// Swaps `value` in through `cas`: `true` when done, `false` when the entry changed since `cas`
/// read it (a lost race).
fn swapped(cas: Cas, value: &[u8], what: &str) -> Result<bool, HostError> {
    match atomics::swap(cas, value) {
        Ok(()) => Ok(true),
        Err(CasError::CasFailed(_)) => Ok(false),
        Err(CasError::StoreError(e)) => Err(kv_error(what, e)),
    }
}

fn kv_error(what: &str, e: store::Error) -> HostError {
    HostError(match e {
        store::Error::NoSuchStore => format!("key-value {what}: no such store"),
        store::Error::AccessDenied => format!("key-value {what}: access denied"),
        store::Error::Other(e) => format!("key-value {what}: {e}"),
    })
}

impl SpinHost {
    /// Sweeps if a sweep is due (the caller drew this request for it; see `expiry.rs`).
    /// Returns how many expired entries it deleted.
    pub async fn sweep_if_due(&self, sweep: &Sweep) -> Result<usize, HostError> {
        let bucket = self.bucket()?;
        let now = self.now();
        let cas =
            Cas::new(bucket, expiry::SCHEDULE_KEY).map_err(|e| kv_error("sweep schedule", e))?;
        let schedule = cas
            .current()
            .map_err(|e| kv_error("sweep schedule read", e))?
            .and_then(|v| Schedule::decode(&v));
        if schedule.as_ref().is_some_and(|s| s.due_ms > now) {
            return Ok(0);
        }
        let cursor = schedule.and_then(|s| s.cursor);
        // claim this sweep first, so the instances that find it due at the same moment do not
        // all list the store
        let due_ms = now.saturating_add(sweep.interval_ms);
        let claim = Schedule {
            due_ms,
            cursor: cursor.clone(),
        };
        if !swapped(cas, &claim.encode(), "sweep schedule write")? {
            return Ok(0); // another instance claimed it
        }
        // one page of keys: the first, or the one after where the previous sweep stopped
        let page = bucket
            .list_keys(cursor.as_deref())
            .map_err(|e| kv_error("sweep list", e))?;
        if page.cursor != cursor {
            let next = Schedule {
                due_ms,
                cursor: page.cursor,
            };
            bucket
                .set(expiry::SCHEDULE_KEY, &next.encode())
                .map_err(|e| kv_error("sweep schedule write", e))?;
        }
        // from a random place in the page, so a page longer than the batch is covered over time
        let keys: Vec<&String> = page.keys.iter().filter(|k| expiry::is_own(k)).collect();
        let start = match keys.len() {
            0 => 0,
            n => (self.random() % n as u64) as usize,
        };
        let mut deleted = 0;
        for key in keys
            .iter()
            .cycle()
            .skip(start)
            .take(keys.len().min(sweep.batch))
        {
            if self.sweep_key(bucket, key, now).await? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Deletes `key` if its entry has expired; rate-limit states go through a tombstone.
    async fn sweep_key(
        &self,
        bucket: &Bucket,
        key: &str,
        now: UnixMillis,
    ) -> Result<bool, HostError> {
        if key.ends_with(CREATION_SUFFIX) {
            return Ok(false); // deleted with its entry, below
        }
        if !expiry::is_rate_limit(key) {
            let stored = bucket.get(key).map_err(|e| kv_error("sweep get", e))?;
            if stored.is_some_and(|v| classify(&v, now) == Stored::Expired) {
                // a put racing this delete loses a cache entry or JWKS copy: a later miss, no more
                bucket
                    .delete(key)
                    .map_err(|e| kv_error("sweep delete", e))?;
                return Ok(true);
            }
            return Ok(false);
        }
        let cas = Cas::new(bucket, key).map_err(|e| kv_error("sweep compare-and-swap", e))?;
        let stored = cas
            .current()
            .map_err(|e| kv_error("sweep compare-and-swap read", e))?;
        if !matches!(
            stored.as_deref().map(|v| classify(v, now)),
            Some(Stored::Expired | Stored::Tombstone { fresh: false })
        ) {
            return Ok(false);
        }
        let marked = self.now();
        if !swapped(cas, &tombstone(marked), "sweep tombstone")? {
            return Ok(false); // a request wrote it meanwhile
        }
        // requests wait on the tombstone only so long; past half of that, leave it to them
        if self.now().saturating_sub(marked) >= expiry::TOMBSTONE_HOLD_MS / 2 {
            return Ok(false);
        }
        // the creation counter first: a request that finds the entry gone then takes the first
        // turn; one that finds the tombstone waits
        bucket
            .delete(&creation_counter(key))
            .map_err(|e| kv_error("sweep delete", e))?;
        bucket
            .delete(key)
            .map_err(|e| kv_error("sweep delete", e))?;
        Ok(true)
    }
}

impl SpinHost {
    /// Compare-and-swap on `wasi:keyvalue/atomics` (Spin serves it next to `spin:key-value`, over
    /// the same stores): read the rate-limit state through a `cas` handle, apply `change` (the
    /// core's admission or refund: what to answer, and the state to store, if any), and swap the
    /// new state in only if nobody changed it meanwhile; otherwise read again. So counts are
    /// exact however many instances handle the same key at once. After [`CAS_ATTEMPTS`] lost
    /// races the call fails, and the rate limit's `fail_open` decides. A fresh sweep tombstone
    /// (`expiry.rs`) is waited out: it is gone once the sweeper deletes it, and reads as no state
    /// once it is older than `TOMBSTONE_HOLD_MS`, so the wait ends either way.
    ///
    /// A key with no entry at all is never swapped: Spin 4.1's SQLite store turns a swap from "no
    /// entry" into a blind write (`INSERT … ON CONFLICT DO UPDATE`), so two requests that both
    /// found none would both be admitted as the first. One request creates the entry: the one
    /// its creation counter ([`creation_turn`]) gives the first turn; the others wait for it.
    async fn update_limit<R>(
        &self,
        key: &StoreKey,
        change: impl Fn(Option<LimitState>, UnixMillis) -> (R, Option<LimitState>),
    ) -> Result<R, HostError> {
        let key = key.as_str();
        let bucket = self.bucket()?;
        let (mut lost, mut waited) = (0, 0);
        while lost < CAS_ATTEMPTS && waited <= 2 * CREATION_WAITS {
            let cas = Cas::new(bucket, key).map_err(|e| kv_error("compare-and-swap", e))?;
            let stored = cas
                .current()
                .map_err(|e| kv_error("compare-and-swap read", e))?;
            // the clock after the read: whoever wrote the state read it before writing, so this
            // request never applies an earlier time to a later state (which would show it one
            // fewer remaining than it has)
            let now = self.now();
            let creating = stored.is_none();
            if let Some(Stored::Tombstone { fresh: true }) =
                stored.as_deref().map(|v| classify(v, now))
            {
                spin_sdk::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            let state = stored
                .and_then(|v| unwrap_live(v, now))
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|s| LimitState::decode(&s));
            let (answer, next) = change(state, now);
            let Some(next) = next else {
                return Ok(answer); // nothing to write
            };
            if creating && !creation_turn(bucket, key, waited)? {
                // another request is creating it: read again shortly
                waited += 1;
                spin_sdk::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            let value = wrap(next.encode().as_bytes(), next.expires_at_ms());
            // a creator swaps too, though from "no entry" Spin 4.1 writes as blindly as `set`:
            // its turn makes it the only writer, and a swap reaches the store before it returns,
            // where Spin's `set` is write-behind (queued in the instance, done later), so the
            // others could wait out their turn before the entry was there
            if swapped(cas, &value, "compare-and-swap write")? {
                return Ok(answer);
            }
            // lost a race: back off a little, growing with each loss, then read again
            lost += 1;
            let jitter = self.random() % u64::from(lost);
            spin_sdk::time::sleep(Duration::from_micros(100 * jitter)).await;
        }
        Err(HostError(format!(
            "rate limit {key:?}: {lost} compare-and-swap attempts lost to concurrent updates, \
             {waited} reads waiting for its creation"
        )))
    }
}

impl Host for SpinHost {
    type Stream = SpinStream;

    fn now(&self) -> UnixMillis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn monotonic_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    fn random(&self) -> u64 {
        let bytes = spin_sdk::wasip3::random::random::get_random_bytes(8);
        let mut b = [0u8; 8];
        b[..bytes.len().min(8)].copy_from_slice(&bytes[..bytes.len().min(8)]);
        u64::from_le_bytes(b)
    }

    /// Applies the core's admission to the key's state by [`SpinHost::update_limit`].
    async fn rate_limit(
        &self,
        key: &StoreKey,
        quota: &Quota,
        cost: u32,
    ) -> Result<(Verdict, Option<LimitState>), HostError> {
        self.update_limit(key, |state, now| {
            let (verdict, next) = admit(quota, state, now, cost);
            // a refusal changes nothing: nothing to write
            let next = verdict.allowed.then_some(next);
            ((verdict, next), next)
        })
        .await
    }

    /// Applies the core's refund to the key's state by [`SpinHost::update_limit`].
    async fn rate_limit_refund(
        &self,
        key: &StoreKey,
        quota: &Quota,
        cost: u32,
        charged: LimitState,
    ) -> Result<(), HostError> {
        self.update_limit(key, |state, _| ((), refund(quota, state, cost, charged)))
            .await
    }

    async fn store_get(&self, key: &StoreKey) -> Result<Option<Vec<u8>>, HostError> {
        let key = key.as_str();
        let stored = self
            .store()?
            .get(key)
            .await
            .map_err(|e| HostError(format!("key-value get: {e:?}")))?;
        Ok(stored.and_then(|v| unwrap_live(v, self.now())))
    }

    async fn store_put(&self, key: &StoreKey, value: Vec<u8>, ttl_s: u32) -> Result<(), HostError> {
        let key = key.as_str();
        let expires_at = self.now().saturating_add(u64::from(ttl_s) * 1000);
        self.store()?
            .set(key, wrap(&value, expires_at))
            .await
            .map_err(|e| HostError(format!("key-value set: {e:?}")))
    }

    async fn read_stream(&self, stream: SpinStream, limit: usize) -> Result<Bytes, ReadError> {
        read_capped(stream, limit).await
    }

    async fn fetch(
        &self,
        req: Request<Body<SpinStream>>,
        exchange: &Exchange<'_>,
    ) -> Result<Response<Body<SpinStream>>, FetchError> {
        let (mut parts, body) = req.into_parts();
        parts.headers.remove(http::header::HOST); // wasi:http takes the authority from the URI
                                                  // wasi:http has no upgrades: a WebSocket handshake goes as a plain GET, and the
                                                  // upstream's refusal (426, 400) is the answer
        parts.headers.remove(http::header::UPGRADE);
        let over = Rc::new(Cell::new(false));
        let body = match body {
            Body::Bytes(b) => SpinStream::bytes(b),
            // a declared length is held by the runtime; a stream without one is cut past the limit
            Body::Stream(s) => s.capped(exchange.max_request_bytes as u64, over.clone()),
        };
        let url = parts.uri.to_string();
        // the timer covers the time to the response's head; the body has the idle timeout
        let sent = spin_sdk::http::send(Request::from_parts(parts, body));
        let timer = spin_sdk::time::sleep(Duration::from_millis(u64::from(exchange.timeout_ms)));
        let res = match select(Box::pin(sent), Box::pin(timer)).await {
            Either::Left((Ok(res), _)) => res,
            Either::Left((Err(_), _)) if over.get() => {
                return Err(FetchError::RequestTooLarge {
                    limit: exchange.max_request_bytes,
                })
            }
            Either::Left((Err(e), _)) => return Err(FetchError::Connect(format!("{e:?}"))),
            Either::Right(((), _)) => return Err(FetchError::Timeout),
        };
        let (mut parts, body) = res.into_parts();
        // room for the headers the gateway adds to the answer (rate-limit fields, CORS, …)
        let _ = parts.headers.try_reserve(HEADER_ROOM);
        // JSON by serde_json, as the access log's other lines are JSON (`{:?}` is Rust's escaping)
        let cut = serde_json::json!({
            "request_id": exchange.request_id,
            "event": "stream-cut",
            "reason": "idle",
            "idle_timeout_ms": exchange.idle_timeout_ms,
            "upstream": url,
        })
        .to_string();
        let stream = SpinStream::new(body).watched(
            Duration::from_millis(u64::from(exchange.idle_timeout_ms)),
            cut,
        );
        let body = match exchange.body {
            BodyUse::PassOn => Body::Stream(stream),
            BodyUse::Read => {
                let limit = exchange.max_response_bytes;
                if declared_length(&parts.headers).is_some_and(|n| n > limit as u64) {
                    return Err(FetchError::TooLarge { limit });
                }
                Body::Bytes(read_capped(stream, limit).await?)
            }
        };
        Ok(Response::from_parts(parts, body))
    }

    fn tee(&self, stream: SpinStream, tee: Tee) -> SpinStream {
        stream.teed(tee)
    }

    async fn sleep(&self, ms: u32) {
        spin_sdk::time::sleep(Duration::from_millis(u64::from(ms))).await;
    }

    fn runtime(&self) -> &'static str {
        "spin"
    }

    fn defer(&self, later: Later) {
        self.later.borrow_mut().push(later);
    }

    fn log(&self, line: &str) {
        println!("{line}");
    }
}
