//! An in-memory [`Host`] for tests, benchmarks and the CLI: a settable clock, a seeded random
//! source, exact counters and a key-value store in maps, and outbound requests answered by a
//! function the caller supplies (a test backend). Single-threaded, like a wasm isolate.

use crate::body::{Body, ReadError};
use crate::host::{
    BodyUse, Exchange, FetchError, Host, HostError, Later, Tee, UnixMillis, HEADER_ROOM,
};
use crate::phase::ratelimit::{self, LimitState, Quota, Verdict};
use crate::store::StoreKey;
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

/// This host's stream: the chunks of a body, in order, and whether it breaks off after them
/// (the peer cut it short).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStream {
    pub chunks: Vec<Bytes>,
    pub broken: bool,
}

impl MemoryStream {
    /// A whole body in chunks of at most `size` bytes.
    pub fn chunked(body: &Bytes, size: usize) -> MemoryStream {
        let chunks = (0..body.len())
            .step_by(size.max(1))
            .map(|i| body.slice(i..(i + size).min(body.len())))
            .collect();
        MemoryStream {
            chunks,
            broken: false,
        }
    }

    /// Its bytes, read to the end (`Err` with what came when it breaks off).
    pub fn concat(&self) -> Result<Bytes, Bytes> {
        let all: Vec<u8> = self.chunks.iter().flat_map(|c| c.iter().copied()).collect();
        if self.broken {
            Err(all.into())
        } else {
            Ok(all.into())
        }
    }
}

/// A body's bytes as this host holds them: a stream read to its end (or where it broke off).
pub fn body_bytes(body: &Body<MemoryStream>) -> Bytes {
    match body {
        Body::Bytes(b) => b.clone(),
        Body::Stream(s) => s.concat().unwrap_or_else(|cut| cut),
    }
}

/// The in-memory host.
pub struct MemoryHost {
    now_ms: Cell<u64>,
    mono_us: Cell<u64>,
    rng: Cell<u64>,
    counters: RefCell<HashMap<String, LimitState>>,
    store: RefCell<HashMap<String, (Vec<u8>, u64)>>,
    backend: Backend,
    /// Requests sent upstream, in order (a streamed body read to its end).
    pub sent: RefCell<Vec<Request<Bytes>>>,
    /// What the gateway said it would do with each answer's body, in the same order: this host
    /// answers `PassOn` with the body as a stream of [`MemoryHost::chunk_bytes`] chunks.
    pub body_uses: RefCell<Vec<BodyUse>>,
    /// Whether each request's body went upstream as a stream, in the same order.
    pub streamed: RefCell<Vec<bool>>,
    /// The size of the chunks of a body this host streams.
    pub chunk_bytes: Cell<usize>,
    /// Access-log lines, in order.
    pub logs: RefCell<Vec<String>>,
    /// Make every store and counter call fail (to test fail-open/closed).
    pub fail_store: Cell<bool>,
    /// Keep `sent` and `logs` (on by default; benchmarks turn it off so memory stays flat).
    pub record: Cell<bool>,
    /// Make every fetch wait once (pending, woken at once) before it is answered, as a real
    /// one waits for the network: other requests polled alongside then run meanwhile.
    pub fetch_yields: Cell<bool>,
    /// Whether requests share this host as an isolate's (Workers): then traced requests'
    /// spans wait for each other ([`Host::shares_isolate`]). Off by default.
    pub shares_isolate: Cell<bool>,
    /// Work the gateway left for after its answers ([`Host::defer`]), in order.
    later: RefCell<Vec<Later>>,
    /// Analytics Engine data points, with their dataset's binding, in order (kept as `record`
    /// says).
    #[cfg(feature = "telemetry")]
    pub data_points: RefCell<Vec<(String, crate::telemetry::DataPoint)>>,
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
            streamed: RefCell::default(),
            chunk_bytes: Cell::new(16 * 1024),
            logs: RefCell::default(),
            fail_store: Cell::new(false),
            record: Cell::new(true),
            fetch_yields: Cell::new(false),
            shares_isolate: Cell::new(false),
            later: RefCell::default(),
            #[cfg(feature = "telemetry")]
            data_points: RefCell::default(),
        }
    }

    /// Takes the work the gateway left for after its answers, for the test to run with
    /// [`crate::Gateway::run_later`] as an adapter would.
    pub fn take_later(&self) -> Vec<Later> {
        std::mem::take(&mut self.later.borrow_mut())
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

/// Pending once (woken at once), then ready.
async fn yield_once() {
    let mut waited = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut waited, true) {
            return std::task::Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}

impl Host for MemoryHost {
    type Stream = MemoryStream;

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

    async fn rate_limit(
        &self,
        key: &StoreKey,
        quota: &Quota,
        cost: u32,
    ) -> Result<(Verdict, Option<LimitState>), HostError> {
        self.check_store()?;
        let key = key.as_str();
        let mut counters = self.counters.borrow_mut();
        // one lookup for a key seen before; the key is copied only when it is new
        if let Some(slot) = counters.get_mut(key) {
            let (verdict, state) = ratelimit::admit(quota, Some(*slot), self.now(), cost);
            *slot = state;
            return Ok((verdict, verdict.allowed.then_some(state)));
        }
        let (verdict, state) = ratelimit::admit(quota, None, self.now(), cost);
        counters.insert(key.to_string(), state);
        Ok((verdict, verdict.allowed.then_some(state)))
    }

    async fn rate_limit_refund(
        &self,
        key: &StoreKey,
        quota: &Quota,
        cost: u32,
        charged: LimitState,
    ) -> Result<(), HostError> {
        self.check_store()?;
        let mut counters = self.counters.borrow_mut();
        if let Some(slot) = counters.get_mut(key.as_str()) {
            if let Some(back) = ratelimit::refund(quota, Some(*slot), cost, charged) {
                *slot = back;
            }
        }
        Ok(())
    }

    async fn store_get(&self, key: &StoreKey) -> Result<Option<Vec<u8>>, HostError> {
        self.check_store()?;
        let now = self.now();
        Ok(self
            .store
            .borrow()
            .get(key.as_str())
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| v.clone()))
    }

    async fn store_put(&self, key: &StoreKey, value: Vec<u8>, ttl_s: u32) -> Result<(), HostError> {
        self.check_store()?;
        let expires = self.now() + u64::from(ttl_s) * 1000;
        self.store
            .borrow_mut()
            .insert(key.as_str().to_string(), (value, expires));
        Ok(())
    }

    async fn read_stream(&self, stream: MemoryStream, limit: usize) -> Result<Bytes, ReadError> {
        let mut out = Vec::new();
        for chunk in &stream.chunks {
            if out.len() + chunk.len() > limit {
                return Err(ReadError::TooLarge { limit });
            }
            out.extend_from_slice(chunk);
        }
        if stream.broken {
            return Err(ReadError::Broken("the stream broke off".into()));
        }
        Ok(out.into())
    }

    async fn fetch(
        &self,
        req: Request<Body<MemoryStream>>,
        exchange: &Exchange<'_>,
    ) -> Result<Response<Body<MemoryStream>>, FetchError> {
        if self.fetch_yields.get() {
            yield_once().await;
        }
        let (head, body) = req.into_parts();
        let streamed = matches!(body, Body::Stream(_));
        if let Body::Stream(s) = &body {
            // the upload is cut where it passes the limit, as the adapters cut it
            let sent: usize = s.chunks.iter().map(Bytes::len).sum();
            if sent > exchange.max_request_bytes {
                return Err(FetchError::RequestTooLarge {
                    limit: exchange.max_request_bytes,
                });
            }
        }
        let req = Request::from_parts(head, body_bytes(&body));
        let res = (self.backend)(&req);
        if self.record.get() {
            self.sent.borrow_mut().push(req);
            self.body_uses.borrow_mut().push(exchange.body);
            self.streamed.borrow_mut().push(streamed);
        }
        let res = res?;
        match exchange.body {
            BodyUse::Read if res.body().len() > exchange.max_response_bytes => {
                Err(FetchError::TooLarge {
                    limit: exchange.max_response_bytes,
                })
            }
            BodyUse::Read => Ok(res.map(Body::Bytes)),
            BodyUse::PassOn => {
                let size = self.chunk_bytes.get();
                Ok(res.map(|b| Body::Stream(MemoryStream::chunked(&b, size))))
            }
        }
    }

    /// Yields once (woken at once), so that requests polled alongside run meanwhile; the
    /// clock is the test's and does not move.
    async fn sleep(&self, _ms: u32) {
        yield_once().await;
    }

    fn tee(&self, stream: MemoryStream, tee: Tee) -> MemoryStream {
        // the whole stream is here already: store it now, as an adapter does at its end
        let skip = match stream.concat() {
            Ok(_) if self.check_store().is_err() => Some("store-error"),
            Ok(body) if body.len() <= tee.limit => {
                let mut entry = tee.head;
                entry.extend_from_slice(&body);
                let expires = self.now() + u64::from(tee.ttl_s) * 1000;
                let key = tee.key.as_str().to_string();
                self.store.borrow_mut().insert(key, (entry, expires));
                None
            }
            Ok(_) => Some("too-large"),
            Err(_) => Some("broken"),
        };
        if let Some(reason) = skip {
            let line = serde_json::json!({"request_id": tee.request_id, "event": "cache-skip", "reason": reason});
            self.log(&line.to_string());
        }
        stream
    }

    fn runtime(&self) -> &'static str {
        "memory"
    }

    #[cfg(feature = "telemetry")]
    fn write_data_point(&self, dataset: &str, point: &crate::telemetry::DataPoint<&str>) {
        if self.record.get() {
            let point = (dataset.to_string(), point.owned());
            self.data_points.borrow_mut().push(point);
        }
    }

    fn shares_isolate(&self) -> bool {
        self.shares_isolate.get()
    }

    fn defer(&self, later: Later) {
        self.later.borrow_mut().push(later);
    }

    fn log(&self, line: &str) {
        if self.record.get() {
            self.logs.borrow_mut().push(line.to_string());
        }
    }
}
