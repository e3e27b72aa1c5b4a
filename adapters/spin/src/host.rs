//! The core's [`Host`] port over Spin: the key-value store, outbound HTTP, stdout.

use bytes::Bytes;
use futures_util::future::{select, Either};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use portcullis_core::phase::ratelimit::{admit, Gcra, Quota, Verdict};
use portcullis_core::{FetchError, Host, HostError, UnixMillis};
use spin_sdk::experimental::wasi::keyvalue::atomics::{self, Cas, CasError};
use spin_sdk::experimental::wasi::keyvalue::store::{self, Bucket};
use spin_sdk::key_value::Store;
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
}

impl SpinHost {
    pub async fn open() -> SpinHost {
        SpinHost {
            store: Store::open_default()
                .await
                .map_err(|e| format!("key-value store \"default\": {e:?}")),
            bucket: store::open(STORE).map_err(|e| kv_error("bucket \"default\"", e).0),
            started: Instant::now(),
        }
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

fn kv_error(what: &str, e: store::Error) -> HostError {
    HostError(match e {
        store::Error::NoSuchStore => format!("key-value {what}: no such store"),
        store::Error::AccessDenied => format!("key-value {what}: access denied"),
        store::Error::Other(e) => format!("key-value {what}: {e}"),
    })
}

/// A stored value with its expiry: Spin's store has no TTL, so entries carry their own
/// (`u64` big-endian milliseconds, then the value) and expired ones read as absent.
fn wrap(value: &[u8], expires_at: UnixMillis) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&expires_at.to_be_bytes());
    out.extend_from_slice(value);
    out
}

fn unwrap_live(stored: Vec<u8>, now: UnixMillis) -> Option<Vec<u8>> {
    let (head, value) = stored.split_at_checked(8)?;
    let expires_at = u64::from_be_bytes(head.try_into().ok()?);
    (now < expires_at).then(|| value.to_vec())
}

impl Host for SpinHost {
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

    /// Compare-and-swap on `wasi:keyvalue/atomics` (Spin serves it next to `spin:key-value`, over
    /// the same stores): read the state through a `cas` handle, apply the core's GCRA, and swap
    /// the new state in only if nobody changed it meanwhile; otherwise read again. So counts are
    /// exact however many instances handle the same key at once. After [`CAS_ATTEMPTS`] lost
    /// races the call fails, and the rate limit's `fail_open` decides.
    async fn rate_limit(&self, key: &str, quota: &Quota, cost: u32) -> Result<Verdict, HostError> {
        let bucket = self.bucket()?;
        let k = format!("rl:{key}");
        for attempt in 0..CAS_ATTEMPTS {
            let now = self.now();
            let cas = Cas::new(bucket, &k).map_err(|e| kv_error("compare-and-swap", e))?;
            let state = cas
                .current()
                .map_err(|e| kv_error("compare-and-swap read", e))?
                .and_then(|v| unwrap_live(v, now))
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|s| Gcra::decode(&s));
            let (verdict, next) = admit(quota, state, now, cost);
            if state == Some(next) {
                return Ok(verdict); // refused: nothing to write
            }
            match atomics::swap(cas, &wrap(next.encode().as_bytes(), next.expires_at_ms())) {
                Ok(()) => return Ok(verdict),
                Err(CasError::StoreError(e)) => return Err(kv_error("compare-and-swap write", e)),
                Err(CasError::CasFailed(_)) => {
                    // lost a race: back off a little, growing with each loss, then read again
                    let jitter = self.random() % (u64::from(attempt) + 1);
                    spin_sdk::time::sleep(Duration::from_micros(100 * jitter)).await;
                }
            }
        }
        Err(HostError(format!(
            "rate limit {key:?}: {CAS_ATTEMPTS} compare-and-swap attempts lost to concurrent updates"
        )))
    }

    async fn store_get(&self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        let stored = self
            .store()?
            .get(key)
            .await
            .map_err(|e| HostError(format!("key-value get: {e:?}")))?;
        Ok(stored.and_then(|v| unwrap_live(v, self.now())))
    }

    async fn store_put(&self, key: &str, value: Vec<u8>, ttl_s: u32) -> Result<(), HostError> {
        let expires_at = self.now().saturating_add(u64::from(ttl_s) * 1000);
        self.store()?
            .set(key, wrap(&value, expires_at))
            .await
            .map_err(|e| HostError(format!("key-value set: {e:?}")))
    }

    async fn fetch(
        &self,
        req: Request<Bytes>,
        timeout_ms: u32,
    ) -> Result<Response<Bytes>, FetchError> {
        let (mut parts, body) = req.into_parts();
        parts.headers.remove(http::header::HOST); // wasi:http takes the authority from the URI
        let exchange = async {
            let res = spin_sdk::http::send(Request::from_parts(parts, Full::new(body)))
                .await
                .map_err(|e| FetchError::Connect(format!("{e:?}")))?;
            let (parts, body) = res.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| FetchError::Connect(format!("reading the body: {e:?}")))?
                .to_bytes();
            Ok(Response::from_parts(parts, body))
        };
        let timer = spin_sdk::time::sleep(Duration::from_millis(u64::from(timeout_ms)));
        match select(Box::pin(exchange), Box::pin(timer)).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _)) => Err(FetchError::Timeout),
        }
    }

    fn log(&self, line: &str) {
        println!("{line}");
    }
}
