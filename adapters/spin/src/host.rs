//! The core's [`Host`] port over Spin: the key-value store, outbound HTTP, stdout.

use bytes::Bytes;
use futures_util::future::{select, Either};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use portcullis_core::phase::ratelimit::{admit, Gcra, Quota, Verdict};
use portcullis_core::{FetchError, Host, HostError, UnixMillis};
use spin_sdk::key_value::Store;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub struct SpinHost {
    /// The `default` store, or why it could not be opened (every store call then fails, and
    /// the rate limit's and cache rule's fail modes decide).
    store: Result<Store, String>,
    started: Instant,
}

impl SpinHost {
    pub async fn open() -> SpinHost {
        SpinHost {
            store: Store::open_default()
                .await
                .map_err(|e| format!("key-value store \"default\": {e:?}")),
            started: Instant::now(),
        }
    }

    fn store(&self) -> Result<&Store, HostError> {
        self.store.as_ref().map_err(|e| HostError(e.clone()))
    }
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

    /// Read, apply, write. Spin's key-value API has no compare-and-swap, so two instances
    /// handling the same key at the same moment can both read the old state: under
    /// concurrency a key can admit up to (concurrent requests − 1) more than its quota.
    /// README.md ("Fermyon Spin") says so.
    async fn rate_limit(&self, key: &str, quota: &Quota, cost: u32) -> Result<Verdict, HostError> {
        let store = self.store()?;
        let k = format!("rl:{key}");
        let now = self.now();
        let state = store
            .get(&k)
            .await
            .map_err(|e| HostError(format!("key-value get: {e:?}")))?
            .and_then(|v| unwrap_live(v, now))
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| Gcra::decode(&s));
        let (verdict, next) = admit(quota, state, now, cost);
        if state != Some(next) {
            store
                .set(&k, wrap(next.encode().as_bytes(), next.expires_at_ms()))
                .await
                .map_err(|e| HostError(format!("key-value set: {e:?}")))?;
        }
        Ok(verdict)
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
