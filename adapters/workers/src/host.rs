//! The core's [`Host`] port over Workers: KV, Durable Objects, the Cache API and `fetch`.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Request, Response, StatusCode};
use portcullis_core::phase::ratelimit::{AdmitRequest, Gcra, Quota, RefusalMemo, Verdict};
use portcullis_core::{BodyUse, FetchError, Host, HostError, UnixMillis};
use std::cell::RefCell;
use wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{Date, Env};

/// KV namespace binding: the shared cache, JWKS copies and the cache generation.
const KV: &str = "PORTCULLIS_KV";
/// Durable Object namespace binding of [`crate::limiter::RateLimiter`].
const LIMITER: &str = "RATE_LIMITER";
/// `"kv"` (default) or `"cache-api"`: where cached responses live.
const CACHE_VAR: &str = "PORTCULLIS_CACHE";
/// Workers KV refuses an `expirationTtl` under 60 s.
const KV_MIN_TTL_S: u32 = 60;
/// Where the Cache API keeps entries (a name, never fetched).
const CACHE_API_ORIGIN: &str = "https://portcullis.cache.invalid/";

/// The longest body (by its declared length) that goes to the client as the upstream's own
/// stream; see [`WorkersHost::fetch`]'s notes.
const STREAM_MAX_BYTES: u64 = 64 * 1024;

/// How many keys an isolate remembers refusals for.
const REFUSAL_MEMO_KEYS: usize = 10_000;

thread_local! {
    /// Random values not yet used: a request takes five (its id and its trace context), and each
    /// `crypto.getRandomValues` call is a crossing of the JS boundary, so they come 32 at a time.
    /// The bytes, and how many of them are used (all of them at first).
    static RANDOM: RefCell<([u8; 256], usize)> = const { RefCell::new(([0; 256], 256)) };
    /// Refusals this isolate remembers: a key over its limit is refused here, without a Durable
    /// Object call, until the object's state at its last refusal would admit the request
    /// ([`RefusalMemo`]). Never an admission, so the count stays the object's.
    static REFUSALS: RefCell<RefusalMemo> = RefCell::new(RefusalMemo::new(REFUSAL_MEMO_KEYS));
}

pub struct WorkersHost {
    env: Env,
    /// Cached responses (`cache:` keys) go to the colo-local Cache API instead of KV.
    cache_api: bool,
    /// The last upstream answer's body when [`Host::fetch`] left it out to pass it on as it is,
    /// with that answer's status.
    stream: RefCell<Option<(StatusCode, web_sys::ReadableStream)>>,
    /// The access-log lines of this request not yet written, each but the last followed by a
    /// newline (a line is JSON, which has none of its own).
    log_lines: RefCell<String>,
}

impl WorkersHost {
    pub fn new(env: Env) -> WorkersHost {
        let cache_api = env
            .var(CACHE_VAR)
            .map(|v| v.to_string() == "cache-api")
            .unwrap_or(false);
        WorkersHost {
            env,
            cache_api,
            stream: RefCell::new(None),
            log_lines: RefCell::new(String::new()),
        }
    }

    /// The log lines [`Host::log`] was given, to write with `console.log` one by one.
    pub fn take_log_lines(&self) -> String {
        std::mem::take(&mut *self.log_lines.borrow_mut())
    }

    /// The body of `res`, the gateway's answer, when it is the upstream's stream: the last
    /// answer [`Host::fetch`] left its body out of (with [`BodyUse::PassOn`] the gateway answers
    /// with that answer once it has it; each fetch drops the stream of the one before, an answer
    /// dropped for a retry). Checked against the answer's status and empty body, so a stream
    /// never goes out with any other answer.
    pub fn take_stream(&self, res: &Response<Bytes>) -> Option<web_sys::ReadableStream> {
        let (status, stream) = self.stream.borrow_mut().take()?;
        (status == res.status() && res.body().is_empty()).then_some(stream)
    }

    fn kv(&self) -> Result<worker::KvStore, HostError> {
        self.env
            .kv(KV)
            .map_err(|e| HostError(format!("KV binding {KV}: {e}")))
    }

    fn in_cache_api(&self, key: &str) -> bool {
        self.cache_api && key.starts_with("cache:")
    }
}

fn host_err(what: &str, e: impl std::fmt::Display) -> HostError {
    HostError(format!("{what}: {e}"))
}

impl Host for WorkersHost {
    fn now(&self) -> UnixMillis {
        Date::now().as_millis()
    }

    fn monotonic_us(&self) -> u64 {
        // workerd advances its clocks only across IO, so this measures IO time; that is the
        // platform's deliberate timer coarsening, not a bug
        (js_sys::Date::now() * 1000.0) as u64
    }

    fn random(&self) -> u64 {
        RANDOM.with(|pool| {
            let (bytes, used) = &mut *pool.borrow_mut();
            if *used == bytes.len() {
                // crypto.getRandomValues cannot fail for 256 bytes; zeros are still valid (if
                // poor) ids
                let _ = getrandom::getrandom(bytes);
                *used = 0;
            }
            let mut value = [0u8; 8];
            value.copy_from_slice(&bytes[*used..*used + 8]);
            *used += 8;
            u64::from_le_bytes(value)
        })
    }

    async fn rate_limit(&self, key: &str, quota: &Quota, cost: u32) -> Result<Verdict, HostError> {
        let now = self.now();
        if let Some(refused) = REFUSALS.with(|m| m.borrow_mut().refusal(key, quota, now, cost)) {
            return Ok(refused);
        }
        let stub = self
            .env
            .durable_object(LIMITER)
            .and_then(|ns| ns.get_by_name(key))
            .map_err(|e| host_err("rate limiter", e))?;
        let url = format!(
            "https://limiter/{}",
            AdmitRequest::new(quota, cost).encode()
        );
        let mut res = stub
            .fetch_with_str(&url)
            .await
            .map_err(|e| host_err("rate limiter", e))?;
        // the verdict is in a header, there as soon as the answer's head is; the body is read
        // only for an error, whose reason it holds
        let header = res
            .headers()
            .get(crate::limiter::VERDICT_HEADER)
            .ok()
            .flatten();
        let Some(header) = header.filter(|_| res.status_code() == 200) else {
            let text = res.text().await.map_err(|e| host_err("rate limiter", e))?;
            return Err(HostError(format!(
                "rate limiter answered {}: {text}",
                res.status_code()
            )));
        };
        let verdict = Verdict::decode(&header)
            .ok_or_else(|| HostError(format!("rate limiter answered {header:?}")))?;
        if !verdict.allowed {
            if let Ok(Some(state)) = res.headers().get(crate::limiter::STATE_HEADER) {
                if let Some(state) = Gcra::decode(&state) {
                    REFUSALS.with(|m| m.borrow_mut().remember(key, state, now));
                }
            }
        }
        Ok(verdict)
    }

    async fn store_get(&self, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        if self.in_cache_api(key) {
            let url = format!("{CACHE_API_ORIGIN}{key}");
            let hit = worker::Cache::default()
                .get(url.as_str(), false)
                .await
                .map_err(|e| host_err("Cache API get", e))?;
            return match hit {
                Some(res) => body_bytes(&res.into())
                    .await
                    .map(Some)
                    .map_err(|e| HostError(format!("Cache API read: {e:?}"))),
                None => Ok(None),
            };
        }
        self.kv()?
            .get(key)
            .bytes()
            .await
            .map_err(|e| host_err("KV get", e))
    }

    async fn store_put(&self, key: &str, value: Vec<u8>, ttl_s: u32) -> Result<(), HostError> {
        if self.in_cache_api(key) {
            let url = format!("{CACHE_API_ORIGIN}{key}");
            let headers = worker::Headers::new();
            headers
                .set("cache-control", &format!("max-age={}", ttl_s.max(1)))
                .map_err(|e| host_err("Cache API put", e))?;
            let res = worker::Response::from_bytes(value)
                .map_err(|e| host_err("Cache API put", e))?
                .with_headers(headers);
            return worker::Cache::default()
                .put(url.as_str(), res)
                .await
                .map_err(|e| host_err("Cache API put", e));
        }
        // KV keeps an entry at least 60 s; the core stores its own expiry inside cache entries
        // and JWKS copies, so a longer life here never serves anything stale
        self.kv()?
            .put_bytes(key, &value)
            .map_err(|e| host_err("KV put", e))?
            .expiration_ttl(u64::from(ttl_s.max(KV_MIN_TTL_S)))
            .execute()
            .await
            .map_err(|e| host_err("KV put", e))
    }

    async fn fetch(
        &self,
        req: Request<Bytes>,
        timeout_ms: u32,
        max_body_bytes: usize,
        body_use: BodyUse,
    ) -> Result<Response<Bytes>, FetchError> {
        self.stream.borrow_mut().take();
        // the platform's own timer: when it fires, the fetch or the reading of its body fails and
        // the runtime lets go of the upstream's connection (no Rust timer, no `AbortController`)
        let signal = web_sys::AbortSignal::timeout_with_u32(timeout_ms);
        let init = web_sys::RequestInit::new();
        init.set_method(req.method().as_str());
        init.set_redirect(web_sys::RequestRedirect::Manual);
        init.set_signal(Some(&signal));
        // the runtime sets Host from the URL
        let headers = js_headers(req.headers(), Some(&http::header::HOST))
            .map_err(js_err(FetchError::Other))?;
        init.set_headers(&headers);
        if !req.body().is_empty() {
            init.set_body(&js_sys::Uint8Array::from(&req.body()[..]));
        }
        // `fetch(url, init)` itself: `worker::Fetch` would build the request a second time, from
        // an init whose `signal` is null, which by the Fetch standard replaces the abort signal
        // set here (the runtime still cancels a fetch when the request ends, which for a
        // timeout is right away)
        let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
        let pending = global.fetch_with_str_and_init(&req.uri().to_string(), &init);
        // a failure once the signal has fired is the timeout, whatever the runtime calls it
        let failed = |what: &str, e: JsValue| {
            if signal.aborted() {
                FetchError::Timeout
            } else {
                FetchError::Connect(format!("{what}{}", worker::Error::from(e)))
            }
        };
        let res: web_sys::Response = JsFuture::from(pending)
            .await
            .and_then(|r| r.dyn_into())
            .map_err(|e| failed("", e))?;
        let status = StatusCode::from_u16(res.status())
            .map_err(|_| FetchError::Other(format!("invalid status {}", res.status())))?;
        let headers = header_map(&res.headers());
        let too_large = FetchError::TooLarge {
            limit: max_body_bytes,
        };
        // a body announced as too long is not read: dropping the response lets the runtime
        // close the upstream's stream
        let announced = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if announced.is_some_and(|n| n > max_body_bytes as u64) {
            return Err(too_large);
        }
        // A short body of a declared length that the gateway passes on untouched goes to the
        // client as the upstream's own stream, the answer made around it: not copied into the
        // isolate and out again (about 0.05 ms of a proxied request here, BENCHMARKS.md). What
        // that changes: a body the upstream cuts short reaches the client cut short (its
        // connection is reset) instead of as a 502. Longer bodies are held whole, so that the
        // upstream's timeout, which also ends the stream, cannot cut off a slow client; so are
        // encoded ones, whose declared length is not the length of the decoded stream.
        let streamable = announced.is_some_and(|n| n <= STREAM_MAX_BYTES)
            && !headers.contains_key(http::header::CONTENT_ENCODING);
        if body_use == BodyUse::PassOn && streamable {
            if let Some(stream) = res.body() {
                *self.stream.borrow_mut() = Some((status, stream));
                let mut out = Response::new(Bytes::new());
                *out.status_mut() = status;
                *out.headers_mut() = headers;
                return Ok(out);
            }
        }
        let body = body_bytes(&res)
            .await
            .map_err(|e| failed("reading the body: ", e))?;
        // one without a length (chunked) is read whole by `arrayBuffer()`, then refused
        if body.len() > max_body_bytes {
            return Err(too_large);
        }
        let mut out = Response::new(Bytes::from(body));
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }

    /// Kept for the entry to write once the answer has gone ([`WorkersHost::take_log_lines`]).
    fn log(&self, line: &str) {
        let mut lines = self.log_lines.borrow_mut();
        if !lines.is_empty() {
            lines.push('\n');
        }
        lines.push_str(line);
    }
}

/// A response's whole body, read at once with `arrayBuffer()`. Reading it as a stream (the
/// `worker` crate's `bytes()`) takes a reader and gives it back per chunk, which a CPU profile put
/// above everything else the adapter does for a proxied request (BENCHMARKS.md).
async fn body_bytes(res: &web_sys::Response) -> Result<Vec<u8>, JsValue> {
    let buffer = JsFuture::from(res.array_buffer()?).await?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// The `http` header map of a JS `Headers`, read in one crossing ([`crate::bytestring::header_map`]).
pub(crate) fn header_map(headers: &web_sys::Headers) -> HeaderMap {
    let flat = js_sys::Array::from(headers).flat(1).join("\0");
    crate::bytestring::header_map(&String::from(flat))
}

/// A JS `Headers` holding `headers` but `leave_out` ([`crate::bytestring`]), made in one crossing
/// of the JS boundary from [`crate::bytestring::flatten`]'s string (two per header with
/// `append`).
pub(crate) fn js_headers(
    headers: &HeaderMap,
    leave_out: Option<&HeaderName>,
) -> Result<web_sys::Headers, JsValue> {
    headers_from_flat(&crate::bytestring::flatten(headers, leave_out))
}

#[wasm_bindgen::prelude::wasm_bindgen(inline_js = r#"
export function headersFromFlat(flat) {
  const headers = new Headers();
  if (flat === "") return headers;
  const parts = flat.split("\0");
  for (let i = 0; i + 1 < parts.length; i += 2) headers.append(parts[i], parts[i + 1]);
  return headers;
}"#)]
extern "C" {
    /// `Headers` from names and values each followed by NUL, the last one not.
    #[wasm_bindgen(js_name = headersFromFlat, catch)]
    fn headers_from_flat(flat: &str) -> Result<web_sys::Headers, JsValue>;
}

fn js_err(kind: fn(String) -> FetchError) -> impl Fn(JsValue) -> FetchError {
    move |e| kind(format!("{e:?}"))
}
