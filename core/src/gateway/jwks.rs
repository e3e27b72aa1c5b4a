//! JWKS key sets for the JWT providers that have a `jwks_url`: fetched, kept per isolate, and
//! mirrored in the host's store with their cooldown times, so that what must outlive a request
//! (the last good keys, when the last fetch was forced or failed) does on runtimes whose
//! instances serve one request (Spin).
//!
//! A component built without the config parser (`toml`) runs the config its build embedded,
//! and `Config::embed` refuses a `jwks_url` unless `asymmetric-jwt` is on: without either, no
//! provider has one, and this code is left out (about 3 KB of the default worker, gzip).
#![cfg_attr(
    not(any(feature = "toml", feature = "asymmetric-jwt")),
    allow(dead_code, unused_imports)
)]

use super::Gateway;
use crate::body::Body;
use crate::config::Id;
use crate::flight::Flight;
use crate::host::{BodyUse, Exchange, Host};
use crate::phase::auth::{self, JwtProvider, Key};
use crate::store::{Kind, StoreKey};
use bytes::Bytes;
use http::{header, HeaderValue, Request};
use std::rc::Rc;

/// Per-provider JWKS state, kept in isolate memory and mirrored whole in the host's store
/// ([`JwksRecord`]): an instance may serve one request only (Spin), so the last good key set
/// and the cooldown times must outlive it.
#[derive(Default)]
pub(super) struct Jwks {
    keys: Rc<Vec<Key>>,
    /// The key set's document as fetched, to write back with new cooldown times.
    body: Bytes,
    loaded: bool,
    /// Whether the store's copy was read (a new isolate or instance reads it once).
    read_store: bool,
    expires_at: u64,
    /// When the last refetch for an unknown `kid` was made.
    last_forced: Option<u64>,
    /// When the last fetch failed, or one began that has not succeeded (cleared by a success).
    last_failure: Option<u64>,
    /// The fetch under way in this isolate or instance, which others needing new keys wait for.
    flight: Flight,
}

/// How long the store keeps a provider's JWKS record: the last good keys serve through an
/// identity provider's outage of up to this long, whatever their own TTL.
const JWKS_RECORD_TTL_S: u32 = 30 * 86_400;

/// How long a JWKS fetch may take.
const JWKS_TIMEOUT_MS: u32 = 5_000;

/// The largest JWKS read (a key set of a hundred RSA keys is about 150 KB).
const JWKS_MAX_BYTES: usize = 1 << 20;

impl Gateway {
    /// The provider's JWKS keys: from memory, the shared store, or a fetch. `force` asks for a
    /// refetch because of an unknown `kid`; that happens at most once per cooldown. After a
    /// failed fetch the next try also waits a cooldown, and the keys already known are served
    /// meanwhile, however stale. The cooldown times and the last good key set are written to
    /// the store before and after each fetch, so they hold for instances that live one request.
    /// `None`: no keys could be had at all.
    #[cfg(any(feature = "toml", feature = "asymmetric-jwt"))]
    pub(super) async fn jwks_keys<H: Host>(
        &self,
        pi: Id<JwtProvider>,
        force: bool,
        host: &H,
    ) -> Option<Rc<Vec<Key>>> {
        let provider = &self.config.jwt[pi];
        let url = provider.jwks_url.as_ref()?;
        let now = host.now();
        let cooldown = u64::from(provider.jwks_cooldown_s) * 1000;
        let store_key = &self.jwks_store_keys[pi.index()];
        if !self.jwks.borrow()[pi.index()].read_store {
            // a new isolate or instance: start from the record another one stored
            let stored = host.store_get(store_key).await.ok().flatten();
            let mut all = self.jwks.borrow_mut();
            let s = &mut all[pi.index()];
            s.read_store = true;
            if let Some(record) = stored.as_deref().and_then(JwksRecord::decode) {
                if let Ok(keys) = auth::parse_jwks(&record.body) {
                    s.keys = Rc::new(keys);
                    s.body = Bytes::copy_from_slice(&record.body);
                    s.loaded = true;
                    s.expires_at = record.expires_at;
                }
                s.last_forced = record.last_forced;
                s.last_failure = record.last_failure;
            }
        }
        let (current, landing) = {
            let s = &self.jwks.borrow()[pi.index()];
            (s.loaded.then(|| s.keys.clone()), s.flight.landing())
        };
        if let Some(landing) = landing {
            // one fetch at a time: a request that needs new keys (it has none, or its token
            // names an unknown `kid`) waits for the one under way and takes what it got; one
            // that only finds its keys expired goes on with them meanwhile
            if force || current.is_none() {
                landing.wait(host, JWKS_TIMEOUT_MS).await;
                let s = &self.jwks.borrow()[pi.index()];
                return s.loaded.then(|| s.keys.clone());
            }
            return current;
        }
        let must_fetch = {
            let s = &self.jwks.borrow()[pi.index()];
            let within = |t: Option<u64>| t.is_some_and(|t| now < t.saturating_add(cooldown));
            if force {
                !within(s.last_forced) && !within(s.last_failure)
            } else {
                let fresh = s.loaded && now < s.expires_at;
                !fresh && !within(s.last_failure)
            }
        };
        if !must_fetch {
            return current;
        }
        let _lead = self.jwks.borrow()[pi.index()].flight.lead();
        if force || current.is_some() {
            // the marks go to the store before the fetch, so that other instances wait a
            // cooldown rather than each fetch: an unknown `kid` marks a forced refetch, and a
            // refresh counts as failed until it succeeds (a cold start with no keys at all
            // lets every request try)
            {
                let mut all = self.jwks.borrow_mut();
                let s = &mut all[pi.index()];
                if force {
                    s.last_forced = Some(now);
                } else {
                    s.last_failure = Some(now);
                }
            }
            self.write_jwks_record(pi, host).await;
        }
        let mut req = Request::new(Body::default());
        *req.uri_mut() = url.parse().ok()?;
        req.headers_mut()
            .insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let exchange = Exchange {
            timeout_ms: JWKS_TIMEOUT_MS,
            idle_timeout_ms: JWKS_TIMEOUT_MS,
            max_response_bytes: JWKS_MAX_BYTES,
            max_request_bytes: 0,
            body: BodyUse::Read,
            request_id: "",
        };
        let fetched = match host.fetch(req, &exchange).await {
            Ok(res) if res.status().is_success() => {
                let (head, body) = res.into_parts();
                // asked to read it, a host answers with the bytes
                let body = body.bytes().cloned().unwrap_or_default();
                auth::parse_jwks(&body).ok().map(|keys| {
                    let ttl = auth::jwks_ttl_s(
                        &head.headers,
                        provider.jwks_min_ttl_s,
                        provider.jwks_max_ttl_s,
                    );
                    (keys, ttl, body)
                })
            }
            _ => None,
        };
        let Some((keys, ttl, body)) = fetched else {
            self.jwks.borrow_mut()[pi.index()].last_failure = Some(now);
            self.write_jwks_record(pi, host).await;
            return current;
        };
        let keys = Rc::new(keys);
        {
            let mut all = self.jwks.borrow_mut();
            let s = &mut all[pi.index()];
            s.keys = keys.clone();
            s.body = body;
            s.loaded = true;
            s.expires_at = now + u64::from(ttl) * 1000;
            s.last_failure = None;
        }
        self.write_jwks_record(pi, host).await;
        Some(keys)
    }

    /// Writes provider `pi`'s JWKS state to the store; a failed write only means the next
    /// instance knows less.
    async fn write_jwks_record<H: Host>(&self, pi: Id<JwtProvider>, host: &H) {
        let record = {
            let s = &self.jwks.borrow()[pi.index()];
            JwksRecord {
                expires_at: s.expires_at,
                last_forced: s.last_forced,
                last_failure: s.last_failure,
                body: s.body.to_vec(),
            }
            .encode()
        };
        let key = &self.jwks_store_keys[pi.index()];
        let _ = host.store_put(key, record, JWKS_RECORD_TTL_S).await;
    }

    /// See the module's notes: no provider has a `jwks_url` in this build.
    #[cfg(not(any(feature = "toml", feature = "asymmetric-jwt")))]
    pub(super) async fn jwks_keys<H: Host>(
        &self,
        _: Id<JwtProvider>,
        _: bool,
        _: &H,
    ) -> Option<Rc<Vec<Key>>> {
        None
    }
}

/// A provider's JWKS state as stored: `v2 <expires_at> <last_forced> <last_failure>` (ms, `-`
/// for none), a newline, then the key set's document as fetched (empty before the first
/// success).
struct JwksRecord {
    expires_at: u64,
    last_forced: Option<u64>,
    last_failure: Option<u64>,
    body: Vec<u8>,
}

impl JwksRecord {
    fn encode(&self) -> Vec<u8> {
        let opt = |t: Option<u64>| t.map_or("-".to_string(), |t| t.to_string());
        let mut out = format!(
            "v2 {} {} {}\n",
            self.expires_at,
            opt(self.last_forced),
            opt(self.last_failure)
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    fn decode(bytes: &[u8]) -> Option<JwksRecord> {
        let split = bytes.iter().position(|b| *b == b'\n')?;
        let head = std::str::from_utf8(&bytes[..split]).ok()?;
        let mut fields = head.split(' ');
        if fields.next()? != "v2" {
            return None;
        }
        let mut time = || -> Option<Option<u64>> {
            match fields.next()? {
                "-" => Some(None),
                t => t.parse().ok().map(Some),
            }
        };
        let expires_at = time()?.unwrap_or(0);
        let (last_forced, last_failure) = (time()?, time()?);
        Some(JwksRecord {
            expires_at,
            last_forced,
            last_failure,
            body: bytes[split + 1..].to_vec(),
        })
    }
}

/// The store key of a provider's JWKS record: its name and a digest of the URL the keys come
/// from, so a copy never outlives a change of `jwks_url` and two configs that share a store
/// and a provider name never share keys.
pub(super) fn jwks_store_key(name: &str, url: &str) -> StoreKey {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(url.as_bytes());
    let url = hex::encode(&digest[..16]);
    StoreKey::new(Kind::Jwks, format_args!("{name}:{url}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_records_read_back() {
        let r = JwksRecord {
            expires_at: 5,
            last_forced: None,
            last_failure: Some(7),
            body: b"{\"keys\":[]}".to_vec(),
        };
        let back = JwksRecord::decode(&r.encode()).unwrap();
        assert_eq!(
            (
                back.expires_at,
                back.last_forced,
                back.last_failure,
                back.body
            ),
            (5, None, Some(7), r.body.clone())
        );
        assert!(
            JwksRecord::decode(b"5\n{}").is_none(),
            "the old format is not read"
        );
    }

    #[test]
    fn jwks_copies_are_keyed_by_their_source() {
        let a = jwks_store_key("main", "https://idp.example/jwks");
        assert!(a.as_str().starts_with("jwks:main:"));
        assert_ne!(a, jwks_store_key("main", "https://other.example/jwks"));
        assert_ne!(a, jwks_store_key("main2", "https://idp.example/jwks"));
    }
}
