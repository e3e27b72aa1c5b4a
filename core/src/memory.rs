//! An in-memory [`Host`] for tests, benchmarks and the CLI: a settable clock, a seeded random
//! source, exact counters and a key-value store in maps, and outbound requests answered by a
//! function the caller supplies (a test backend). Single-threaded, like a wasm isolate.

use crate::host::{BodyUse, FetchError, Host, HostError, UnixMillis, HEADER_ROOM};
use crate::phase::ratelimit::{self, Gcra, Quota, Verdict};
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// `headers` moved into a map with [`HEADER_ROOM`] to spare, as an adapter builds the maps it
/// hands the gateway (benchmarks use it so that they measure what a deployed gateway does).
pub fn with_header_room(headers: HeaderMap) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len() + HEADER_ROOM);
    map.extend(headers);
    map
}

type Backend = Box<dyn Fn(&Request<Bytes>) -> Result<Response<Bytes>, FetchError>>;

/// The in-memory host.
pub struct MemoryHost {
    now_ms: Cell<u64>,
    mono_us: Cell<u64>,
    rng: Cell<u64>,
    counters: RefCell<HashMap<String, Gcra>>,
    store: RefCell<HashMap<String, (Vec<u8>, u64)>>,
    backend: Backend,
    /// Requests sent upstream, in order.
    pub sent: RefCell<Vec<Request<Bytes>>>,
    /// What the gateway said it would do with each answer's body, in the same order (this host
    /// always answers with the body whole).
    pub body_uses: RefCell<Vec<BodyUse>>,
    /// Access-log lines, in order.
    pub logs: RefCell<Vec<String>>,
    /// Make every store and counter call fail (to test fail-open/closed).
    pub fail_store: Cell<bool>,
    /// Keep `sent` and `logs` (on by default; benchmarks turn it off so memory stays flat).
    pub record: Cell<bool>,
}

impl MemoryHost {
    /// A host at time `now_ms` whose outbound requests are answered by `backend`.
    pub fn new(
        now_ms: UnixMillis,
        backend: impl Fn(&Request<Bytes>) -> Result<Response<Bytes>, FetchError> + 'static,
    ) -> MemoryHost {
        MemoryHost {
            now_ms: Cell::new(now_ms),
            mono_us: Cell::new(0),
            rng: Cell::new(0x9e37_79b9_7f4a_7c15),
            counters: RefCell::default(),
            store: RefCell::default(),
            backend: Box::new(backend),
            sent: RefCell::default(),
            body_uses: RefCell::default(),
            logs: RefCell::default(),
            fail_store: Cell::new(false),
            record: Cell::new(true),
        }
    }

    /// The keys of the rate-limit counters, sorted.
    pub fn counter_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.counters.borrow().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Moves the clock forward.
    pub fn advance(&self, ms: u64) {
        self.now_ms.set(self.now_ms.get() + ms);
        self.mono_us.set(self.mono_us.get() + ms * 1000);
    }

    /// Sets the clock.
    pub fn set_now(&self, now_ms: UnixMillis) {
        self.now_ms.set(now_ms);
    }

    /// Seeds the random source.
    pub fn seed(&self, seed: u64) {
        self.rng.set(seed);
    }

    /// The log lines parsed as JSON.
    pub fn log_records(&self) -> Vec<serde_json::Value> {
        self.logs
            .borrow()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn check_store(&self) -> Result<(), HostError> {
        if self.fail_store.get() {
            Err(HostError("store unavailable (fail_store is set)".into()))
        } else {
            Ok(())
        }
    }
}

impl Host for MemoryHost {
    fn now(&self) -> UnixMillis {
        self.now_ms.get()
    }

    fn monotonic_us(&self) -> u64 {
        // every reading moves one microsecond, so durations are never all zero
        let t = self.mono_us.get() + 1;
        self.mono_us.set(t);
        t
    }

    fn random(&self) -> u64 {
        // splitmix64
        let s = self.rng.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        self.rng.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    async fn rate_limit(&self, key: &str, quota: &Quota, cost: u32) -> Result<Verdict, HostError> {
        self.check_store()?;
        let mut counters = self.counters.borrow_mut();
        // one lookup for a key seen before; the key is copied only when it is new
        if let Some(slot) = counters.get_mut(key) {
            let (verdict, state) = ratelimit::admit(quota, Some(*slot), self.now(), cost);
            *slot = state;
            return Ok(verdict);
        }
        let (verdict, state) = ratelimit::admit(quota, None, self.now(), cost);
        counters.insert(key.to_string(), state);
        Ok(verdict)
    }

    async fn store_get(&self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        self.check_store()?;
        let now = self.now();
        Ok(self
            .store
            .borrow()
            .get(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| v.clone()))
    }

    async fn store_put(&self, key: &str, value: Vec<u8>, ttl_s: u32) -> Result<(), HostError> {
        self.check_store()?;
        let expires = self.now() + u64::from(ttl_s) * 1000;
        self.store
            .borrow_mut()
            .insert(key.to_string(), (value, expires));
        Ok(())
    }

    async fn fetch(
        &self,
        req: Request<Bytes>,
        _timeout_ms: u32,
        max_body_bytes: usize,
        body: BodyUse,
    ) -> Result<Response<Bytes>, FetchError> {
        let res = (self.backend)(&req);
        if self.record.get() {
            self.sent.borrow_mut().push(req);
            self.body_uses.borrow_mut().push(body);
        }
        match res {
            Ok(r) if r.body().len() > max_body_bytes => Err(FetchError::TooLarge {
                limit: max_body_bytes,
            }),
            other => other,
        }
    }

    fn log(&self, line: &str) {
        if self.record.get() {
            self.logs.borrow_mut().push(line.to_string());
        }
    }
}
