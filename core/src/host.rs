//! The port the adapters implement: clock, randomness, the rate-limit counter store, a key-value
//! store for the cache and JWKS, outbound fetch and the log sink.
//!
//! The core calls these and nothing else for IO. Futures are not `Send`: wasm runtimes are
//! single-threaded, and the adapters' futures hold JS or WASI handles.

use crate::body::{Body, ReadError};
use crate::phase::ratelimit::{LimitState, Quota, Verdict};
use crate::store::StoreKey;
use bytes::Bytes;
use http::{Request, Response};

/// Room an adapter leaves in the header maps it hands the gateway (the request's, an upstream
/// response's) for the headers the gateway adds (request id, trace context, `X-Forwarded-*`,
/// rate-limit fields, CORS, a transform's own): the Workers adapter builds its maps with
/// `HeaderMap::with_capacity(count + HEADER_ROOM)`, the Spin adapter reserves it in the maps
/// spin-sdk built. A map that has to grow is copied whole, which costs about 1,900 instructions
/// natively (BENCHMARKS.md).
pub const HEADER_ROOM: usize = 8;

/// Milliseconds since the Unix epoch.
pub type UnixMillis = u64;

/// A store or counter operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("store error: {0}")]
pub struct HostError(pub String);

/// An outbound request failed before a response arrived.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// No connection could be made (refused, reset, DNS): safe to retry.
    #[error("connect error: {0}")]
    Connect(String),
    /// The timeout passed before the response's head arrived.
    #[error("timed out")]
    Timeout,
    /// The response's body is longer than [`Exchange::max_response_bytes`] (its head may say
    /// so, or reading stopped there).
    #[error("the response body is over {limit} bytes")]
    TooLarge { limit: usize },
    /// The request's streamed body went past [`Exchange::max_request_bytes`]: the upload was
    /// aborted there, before any answer.
    #[error("the request body is over {limit} bytes")]
    RequestTooLarge { limit: usize },
    /// Anything else.
    #[error("fetch error: {0}")]
    Other(String),
}

/// A response body that could not be read whole is a failed fetch.
impl From<ReadError> for FetchError {
    fn from(e: ReadError) -> FetchError {
        match e {
            ReadError::TooLarge { limit } => FetchError::TooLarge { limit },
            ReadError::Broken(why) => FetchError::Connect(format!("reading the body: {why}")),
        }
    }
}

/// What the gateway does with the body of the response [`Host::fetch`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyUse {
    /// Reads it (a JWKS document, a response to cache or whose JSON is transformed): the answer
    /// holds it whole, as [`Body::Bytes`], or the fetch fails with [`FetchError::TooLarge`].
    Read,
    /// Passes it on untouched as the body of its own answer: the host answers with its stream
    /// ([`Body::Stream`]), of any length, and cuts it when it idles longer than
    /// [`Exchange::idle_timeout_ms`].
    PassOn,
}

/// The terms of one outbound exchange.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    /// Time allowed until the response's head: past it, [`FetchError::Timeout`].
    pub timeout_ms: u32,
    /// Longest gap between two chunks of a passed-on body: past it the stream is cut (the
    /// client sees a body cut short) and the host logs that it was.
    pub idle_timeout_ms: u32,
    /// The longest response body read ([`BodyUse::Read`]).
    pub max_response_bytes: usize,
    /// The longest request body streamed upstream: the upload is aborted past it
    /// ([`FetchError::RequestTooLarge`]).
    pub max_request_bytes: usize,
    pub body: BodyUse,
    /// The request's id, for the line the host logs when it cuts a stream.
    pub request_id: &'a str,
}

/// A response to store while it streams to the client ([`Host::tee`]).
pub struct Tee {
    /// The store key of the entry.
    pub key: StoreKey,
    /// The start of the entry; the body follows it.
    pub head: Vec<u8>,
    pub ttl_s: u32,
    /// The longest body stored: a longer one is passed on whole and not stored.
    pub limit: usize,
    /// The body's declared length, which the passed-on stream keeps (`None` when it has none,
    /// or is encoded: a runtime that decodes it may count it differently).
    pub declared: Option<u64>,
    /// The request's id, for the line the host logs when it does not store the body.
    pub request_id: String,
    /// Held until the entry is written or given up: a host drops it then (dropping the `Tee`
    /// does), and requests that missed the same key meanwhile look again.
    pub filling: Filling,
}

/// Held while a cache entry is being filled: other requests of the isolate or instance that
/// miss the same key wait (on timers of their own, for at most the upstream's timeout) until it
/// is dropped, then look again, instead of each calling the upstream.
pub struct Filling(
    // never read: held for what dropping it does
    #[allow(dead_code)] pub(crate) Option<crate::flight::Lead>,
);

/// Work the gateway leaves for after its answer: refreshing a stale cache entry it served
/// (`stale-while-revalidate`), sending a traced request's spans (`[telemetry]`). The adapter
/// runs it with [`crate::Gateway::run_later`] once the answer is on its way, on a host of its
/// own: on Workers under `waitUntil`, on Spin in the request's component-model task after the
/// handler has returned (beside the answer's body, which does not wait for it). Dropping it unrun
/// gives up the refresh (another request starts one) or the spans.
pub struct Later(pub(crate) LaterWork);

/// What [`Later`] holds (nothing, in a build with neither part).
pub(crate) enum LaterWork {
    #[cfg(feature = "response-cache")]
    Refresh(Box<crate::gateway::Refresh>),
    #[cfg(feature = "telemetry")]
    Export(Box<crate::telemetry::Export>),
    /// Wait `batch_ms`, then send the isolate's batch of spans; the request's id.
    #[cfg(feature = "telemetry")]
    Flush(crate::telemetry::Waiting, String),
}

/// What a runtime gives the gateway.
#[allow(async_fn_in_trait)] // deliberately not Send: wasm futures are single-threaded
pub trait Host {
    /// The platform's body stream, which the gateway passes on untouched.
    type Stream;
    /// Wall-clock time.
    fn now(&self) -> UnixMillis;
    /// A monotonic reading in microseconds, for durations only.
    fn monotonic_us(&self) -> u64;
    /// 64 random bits (request ids, target choice).
    fn random(&self) -> u64;
    /// Applies one request of `cost` to the counter `key` under `quota`, atomically: the host
    /// reads the state, calls [`crate::phase::ratelimit::admit`], stores the new state and returns
    /// the verdict, with no other request for the same key in between. An admission also returns
    /// the state it stored, which a refund of the request names.
    async fn rate_limit(
        &self,
        key: &StoreKey,
        quota: &Quota,
        cost: u32,
    ) -> Result<(Verdict, Option<LimitState>), HostError>;
    /// Gives back a request of `cost` that [`Host::rate_limit`] admitted, leaving the state
    /// `charged`, atomically in the same way: the host reads the state, calls
    /// [`crate::phase::ratelimit::refund`] and stores what it returns (when it returns one).
    async fn rate_limit_refund(
        &self,
        key: &StoreKey,
        quota: &Quota,
        cost: u32,
        charged: LimitState,
    ) -> Result<(), HostError>;
    /// Reads a value from the shared key-value store.
    async fn store_get(&self, key: &StoreKey) -> Result<Option<Vec<u8>>, HostError>;
    /// Writes a value that expires after `ttl_s` seconds.
    async fn store_put(&self, key: &StoreKey, value: Vec<u8>, ttl_s: u32) -> Result<(), HostError>;
    /// Reads a stream whole, but never more than one byte past `limit`
    /// ([`ReadError::TooLarge`]).
    async fn read_stream(&self, stream: Self::Stream, limit: usize) -> Result<Bytes, ReadError>;
    /// Sends a request, on the terms of `exchange`; redirects are not followed. A streamed
    /// request body goes upstream as the client sends it.
    async fn fetch(
        &self,
        req: Request<Body<Self::Stream>>,
        exchange: &Exchange<'_>,
    ) -> Result<Response<Body<Self::Stream>>, FetchError>;
    /// Passes `stream` on untouched while keeping a copy: when it ends whole within `tee.limit`
    /// bytes, the host stores `tee.head` followed by the body under `tee.key` for `tee.ttl_s`
    /// (a failed write only costs a later miss). A client that asks again once it has the answer
    /// whole must find it stored: the host holds the last bytes back until the write is done, or
    /// (in one isolate) keeps the key's fill (`tee.filling`) until then. A stream that passes
    /// the limit, breaks off or is cancelled is not stored, and the host logs a `cache-skip`
    /// line with the reason.
    fn tee(&self, stream: Self::Stream, tee: Tee) -> Self::Stream;
    /// Waits about `ms` milliseconds on a timer of this request's own. Nothing another request
    /// does may end the wait: on Workers, a request woken from another request's code runs in
    /// that request's context, and its own I/O then fails.
    async fn sleep(&self, ms: u32);
    /// Keeps `later` for the adapter to run once the answer is on its way ([`Later`]).
    fn defer(&self, later: Later);
    /// Writes one request's data point to the Workers Analytics Engine dataset bound as
    /// `dataset` (`[telemetry] analytics_engine`). A runtime without such datasets writes
    /// nothing: the setting is documented as Workers' only.
    #[cfg(feature = "telemetry")]
    fn write_data_point(&self, dataset: &str, point: &crate::telemetry::DataPoint<&str>) {
        let _ = (dataset, point);
    }
    /// The runtime's name, for the traces' resource (`portcullis.runtime`).
    fn runtime(&self) -> &'static str {
        "unknown"
    }
    /// Whether requests share this host's memory for a while (a Workers isolate), so that
    /// traced requests' spans can wait for each other to share one export. `false` where an
    /// instance may live for one request only (Spin).
    fn shares_isolate(&self) -> bool {
        false
    }
    /// Writes one access-log line (a JSON object).
    fn log(&self, line: &str);
}
