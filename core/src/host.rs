//! The port the adapters implement: clock, randomness, the rate-limit counter store, a key-value
//! store for the cache and JWKS, outbound fetch and the log sink.
//!
//! The core calls these and nothing else for IO. Futures are not `Send`: wasm runtimes are
//! single-threaded, and the adapters' futures hold JS or WASI handles.

use crate::phase::ratelimit::{Quota, Verdict};
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
    /// The timeout passed.
    #[error("timed out")]
    Timeout,
    /// The response's body is longer than the caller's limit (its head may say so, or reading
    /// stopped there).
    #[error("the response body is over {limit} bytes")]
    TooLarge { limit: usize },
    /// Anything else.
    #[error("fetch error: {0}")]
    Other(String),
}

/// What the gateway does with the body of the response [`Host::fetch`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyUse {
    /// Reads it (a JWKS document, a response to cache or whose JSON is transformed): the answer
    /// holds it whole.
    Read,
    /// Passes it on untouched as the body of its own answer. A host may then leave it out of the
    /// answer (empty) and send the upstream's own body to the client itself, as the Workers
    /// adapter does for short bodies of a declared length. A host that holds every body whole
    /// treats this as `Read`.
    PassOn,
}

/// What a runtime gives the gateway.
#[allow(async_fn_in_trait)] // deliberately not Send: wasm futures are single-threaded
pub trait Host {
    /// Wall-clock time.
    fn now(&self) -> UnixMillis;
    /// A monotonic reading in microseconds, for durations only.
    fn monotonic_us(&self) -> u64;
    /// 64 random bits (request ids, target choice).
    fn random(&self) -> u64;
    /// Applies one request of `cost` to the counter `key` under `quota`, atomically: the host
    /// reads the state, calls [`crate::phase::ratelimit::admit`], stores the new state and returns
    /// the verdict, with no other request for the same key in between.
    async fn rate_limit(&self, key: &str, quota: &Quota, cost: u32) -> Result<Verdict, HostError>;
    /// Reads a value from the shared key-value store.
    async fn store_get(&self, key: &str) -> Result<Option<Vec<u8>>, HostError>;
    /// Writes a value that expires after `ttl_s` seconds.
    async fn store_put(&self, key: &str, value: Vec<u8>, ttl_s: u32) -> Result<(), HostError>;
    /// Sends a request; redirects are not followed. A body over `max_body_bytes` is not read to
    /// its end: the answer is [`FetchError::TooLarge`]. `body` says whether the host may leave
    /// the body out and send it on itself ([`BodyUse::PassOn`]).
    async fn fetch(
        &self,
        req: Request<Bytes>,
        timeout_ms: u32,
        max_body_bytes: usize,
        body: BodyUse,
    ) -> Result<Response<Bytes>, FetchError>;
    /// Writes one access-log line (a JSON object).
    fn log(&self, line: &str);
}
