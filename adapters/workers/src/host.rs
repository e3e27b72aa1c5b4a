//! The core's [`Host`] port over Workers: KV, Durable Objects, the Cache API and `fetch`.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Request, Response, StatusCode};
use portcullis_core::body::declared_length;
use portcullis_core::phase::ratelimit::{AdmitRequest, LimitState, Quota, RefusalMemo, Verdict};
use portcullis_core::store::{Kind, StoreKey};
use portcullis_core::{
    Body, BodyUse, Exchange, FetchError, Host, HostError, Later, ReadError, Tee, UnixMillis,
};
use std::cell::RefCell;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::ReadableStream;
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

/// A body on Workers: the platform's stream, or, as the answer to a WebSocket handshake, the
/// upstream's socket, which the runtime connects to the client's.
pub enum WorkersBody {
    Stream(ReadableStream),
    Socket(JsValue),
}

pub struct WorkersHost {
    env: Env,
    /// The request's `ExecutionContext`, for `waitUntil` (a streamed answer's cache write).
    #[cfg_attr(not(feature = "response-cache"), allow(dead_code))]
    ctx: JsValue,
    /// Cached responses ([`Kind::Cache`] keys) go to the colo-local Cache API instead of KV.
    cache_api: bool,
    /// The access-log lines of this request not yet written, each but the last followed by a
    /// newline (a line is JSON, which has none of its own).
    log_lines: RefCell<String>,
    /// Work the gateway left for after the answer ([`Host::defer`]).
    later: RefCell<Vec<Later>>,
}

impl WorkersHost {
    pub fn new(env: Env, ctx: JsValue) -> WorkersHost {
        let cache_api = env
            .var(CACHE_VAR)
            .map(|v| v.to_string() == "cache-api")
            .unwrap_or(false);
        WorkersHost {
            env,
            ctx,
            cache_api,
            log_lines: RefCell::new(String::new()),
            later: RefCell::default(),
        }
    }

    /// The work the gateway left for after the answer, for the entry to run under `waitUntil`
    /// (a build without `response-cache` leaves none).
    #[cfg_attr(not(feature = "response-cache"), allow(dead_code))]
    pub fn take_later(&self) -> Vec<Later> {
        std::mem::take(&mut *self.later.borrow_mut())
    }

    /// The log lines [`Host::log`] was given, to write with `console.log` one by one.
    pub fn take_log_lines(&self) -> String {
        std::mem::take(&mut *self.log_lines.borrow_mut())
    }

    fn kv(&self) -> Result<worker::KvStore, HostError> {
        self.env
            .kv(KV)
            .map_err(|e| HostError(format!("KV binding {KV}: {e}")))
    }

    /// Whether `key` is a cached response kept in the Cache API. A build without
    /// `response-cache` has no such keys, and links none of the Cache API code.
    fn in_cache_api(&self, key: &StoreKey) -> bool {
        cfg!(feature = "response-cache") && self.cache_api && key.kind() == Kind::Cache
    }
}

fn host_err(what: &str, e: impl std::fmt::Display) -> HostError {
    HostError(format!("{what}: {e}"))
}

impl Host for WorkersHost {
    type Stream = WorkersBody;

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

    async fn rate_limit(
        &self,
        key: &StoreKey,
        quota: &Quota,
        cost: u32,
    ) -> Result<(Verdict, Option<LimitState>), HostError> {
        let key = key.as_str();
        let now = self.now();
        if let Some(refused) = REFUSALS.with(|m| m.borrow_mut().refusal(key, quota, now, cost)) {
            return Ok((refused, None));
        }
        // the object's `admit` method by JavaScript RPC (a `fetch` made a `Request` and a
        // `Response` on both sides; BENCHMARKS.md, "Workers: Portcullis against Hono")
        let request = AdmitRequest::new(quota, cost).encode();
        let answer = self.call_limiter(admit_at, key, &request).await?;
        let (verdict, state) = answer.split_once('\n').unwrap_or((&answer, ""));
        let verdict = Verdict::decode(verdict)
            .ok_or_else(|| HostError(format!("rate limiter answered {answer:?}")))?;
        let state = LimitState::decode(state);
        if let (false, Some(state)) = (verdict.allowed, state) {
            REFUSALS.with(|m| m.borrow_mut().remember(key, state, now));
        }
        Ok((verdict, state.filter(|_| verdict.allowed)))
    }

    async fn rate_limit_refund(
        &self,
        key: &StoreKey,
        quota: &Quota,
        cost: u32,
        charged: LimitState,
    ) -> Result<(), HostError> {
        let admit = AdmitRequest::new(quota, cost).encode();
        let request = format!("{admit}\n{}", charged.encode());
        self.call_limiter(refund_at, key.as_str(), &request).await?;
        Ok(())
    }

    async fn store_get(&self, key: &StoreKey) -> Result<Option<Vec<u8>>, HostError> {
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
            .get(key.as_str())
            .bytes()
            .await
            .map_err(|e| host_err("KV get", e))
    }

    async fn store_put(&self, key: &StoreKey, value: Vec<u8>, ttl_s: u32) -> Result<(), HostError> {
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
            .put_bytes(key.as_str(), &value)
            .map_err(|e| host_err("KV put", e))?
            .expiration_ttl(u64::from(ttl_s.max(KV_MIN_TTL_S)))
            .execute()
            .await
            .map_err(|e| host_err("KV put", e))
    }

    async fn read_stream(&self, body: WorkersBody, limit: usize) -> Result<Bytes, ReadError> {
        match body {
            WorkersBody::Stream(stream) => read_capped(stream, limit).await,
            WorkersBody::Socket(_) => Err(ReadError::Broken("a WebSocket has no body".into())),
        }
    }

    async fn fetch(
        &self,
        req: Request<Body<WorkersBody>>,
        exchange: &Exchange<'_>,
    ) -> Result<Response<Body<WorkersBody>>, FetchError> {
        let (head, body) = req.into_parts();
        let init = web_sys::RequestInit::new();
        init.set_method(head.method.as_str());
        init.set_redirect(web_sys::RequestRedirect::Manual);
        // the runtime sets Host from the URL
        let headers = js_headers(&head.headers, Some(&http::header::HOST))
            .map_err(js_err(FetchError::Other))?;
        init.set_headers(&headers);
        // a stream of a declared length goes as it is (the runtime holds it to that length);
        // one without is counted on its way and cut past the limit
        let declared = head.headers.contains_key(http::header::CONTENT_LENGTH);
        let (upload, cap) = match body {
            Body::Bytes(b) if !b.is_empty() => {
                init.set_body(&js_sys::Uint8Array::from(&b[..]));
                (None, 0.0)
            }
            Body::Stream(WorkersBody::Stream(s)) if declared => {
                init.set_body(&s);
                (None, 0.0)
            }
            Body::Stream(WorkersBody::Stream(s)) => (Some(s), exchange.max_request_bytes as f64),
            Body::Bytes(_) | Body::Stream(WorkersBody::Socket(_)) => (None, 0.0),
        };
        let url = head.uri.to_string();
        let pending = upstream_fetch(&url, &init, upload.as_ref(), cap, exchange.timeout_ms)
            .map_err(js_err(FetchError::Other))?;
        let res: web_sys::Response = JsFuture::from(pending)
            .await
            .and_then(|r| r.dyn_into())
            .map_err(|e| match e.as_string().as_deref() {
                Some(TIMED_OUT) => FetchError::Timeout,
                Some(REQUEST_TOO_LARGE) => FetchError::RequestTooLarge {
                    limit: exchange.max_request_bytes,
                },
                _ => FetchError::Connect(format!("{}", worker::Error::from(e))),
            })?;
        let status = StatusCode::from_u16(res.status())
            .map_err(|_| FetchError::Other(format!("invalid status {}", res.status())))?;
        let headers = header_map(&res.headers());
        if status == StatusCode::SWITCHING_PROTOCOLS {
            // a WebSocket handshake the upstream accepted: the socket goes to the client as
            // the answer's own, and the runtime passes the messages between the two
            let socket = js_sys::Reflect::get(&res, &JsValue::from_str("webSocket"))
                .ok()
                .filter(|ws| !ws.is_null() && !ws.is_undefined())
                .ok_or_else(|| FetchError::Other("101 without a WebSocket".into()))?;
            let mut out = Response::new(Body::Stream(WorkersBody::Socket(socket)));
            *out.status_mut() = status;
            *out.headers_mut() = headers;
            return Ok(out);
        }
        let declared = declared_length(&headers);
        // the length of a body the runtime decodes is not the declared one
        let length = declared
            .filter(|_| !headers.contains_key(http::header::CONTENT_ENCODING))
            .map_or(-1.0, |n| n as f64);
        // the body, watched for idling: passed on as it streams, or read
        let stream = res.body().map(|_| {
            if (0.0..=SHORT_BODY_BYTES).contains(&length) {
                // no strings cross for the common small answer
                pass_short(&res, exchange.idle_timeout_ms)
            } else {
                pass_on(
                    &res,
                    exchange.idle_timeout_ms,
                    exchange.request_id,
                    &url,
                    length,
                )
            }
        });
        let body = match (exchange.body, stream) {
            (BodyUse::PassOn, Some(stream)) => Body::Stream(WorkersBody::Stream(stream)),
            (_, None) => Body::Bytes(Bytes::new()),
            (BodyUse::Read, Some(stream)) => {
                let limit = exchange.max_response_bytes;
                // a body announced as too long is not read: cancelling the stream lets the
                // runtime close the upstream's connection
                if declared.is_some_and(|n| n > limit as u64) {
                    let _ = stream.cancel();
                    return Err(FetchError::TooLarge { limit });
                }
                Body::Bytes(read_capped(stream, limit).await?)
            }
        };
        let mut out = Response::new(body);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }

    #[cfg(not(feature = "response-cache"))]
    fn tee(&self, stream: WorkersBody, _: Tee) -> WorkersBody {
        // a build without `response-cache` has no cached routes, so the core never asks; the
        // closure below would be linked all the same (wasm-bindgen keeps closures alive)
        stream
    }

    #[cfg(feature = "response-cache")]
    fn tee(&self, body: WorkersBody, tee: Tee) -> WorkersBody {
        let WorkersBody::Stream(stream) = body else {
            return body;
        };
        let Tee {
            key,
            head,
            ttl_s,
            limit,
            declared,
            request_id,
            filling,
        } = tee;
        let (env, ctx, cache_api) = (self.env.clone(), self.ctx.clone(), self.cache_api);
        // called once: with the whole body when the stream has ended within the limit, else
        // with null; either way the key's fill is over when it returns (`filling` dropped)
        let store =
            wasm_bindgen::closure::Closure::once_into_js(move |body: JsValue| -> js_sys::Promise {
                let Ok(body) = body.dyn_into::<js_sys::Uint8Array>() else {
                    drop(filling);
                    return js_sys::Promise::resolve(&JsValue::UNDEFINED);
                };
                worker::wasm_bindgen_futures::future_to_promise(async move {
                    let _filling = filling;
                    let host = WorkersHost {
                        env,
                        ctx,
                        cache_api,
                        log_lines: RefCell::default(),
                        later: RefCell::default(),
                    };
                    let mut entry = head;
                    entry.extend(body.to_vec());
                    // a failed write only costs a later miss
                    let _ = host.store_put(&key, entry, ttl_s).await;
                    Ok(JsValue::UNDEFINED)
                })
            });
        let length = declared.map_or(-1.0, |n| n as f64);
        WorkersBody::Stream(tee_to_store(
            &stream,
            limit as f64,
            length,
            &request_id,
            &self.ctx,
            &store,
        ))
    }

    async fn sleep(&self, ms: u32) {
        // the timer is this request's: its own context wakes it
        let _ = JsFuture::from(sleep(ms)).await;
    }

    fn runtime(&self) -> &'static str {
        "cloudflare-workers"
    }

    /// One call into JavaScript; a dataset that is not bound, or a point the platform refuses,
    /// costs a log line and nothing else.
    #[cfg(feature = "telemetry")]
    fn write_data_point(&self, dataset: &str, point: &portcullis_core::telemetry::DataPoint<&str>) {
        let blobs = point.blobs.iter().map(|b| JsValue::from_str(b));
        let blobs: js_sys::Array = blobs.collect();
        let doubles = js_sys::Float64Array::from(&point.doubles[..]);
        let failed = write_data_point(self.env.as_ref(), dataset, point.index, &blobs, &doubles);
        if let Some(line) = failed {
            self.log(&line);
        }
    }

    fn shares_isolate(&self) -> bool {
        true // an isolate serves many requests, concurrently
    }

    /// Kept for the entry to run under `waitUntil` ([`WorkersHost::take_later`]).
    fn defer(&self, later: Later) {
        self.later.borrow_mut().push(later);
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

/// A response's whole body, read at once with `arrayBuffer()` (the Cache API's entries). Reading
/// it as a stream takes a reader and gives it back per chunk, which a CPU profile put above
/// everything else the adapter does for a proxied request (BENCHMARKS.md).
async fn body_bytes(res: &web_sys::Response) -> Result<Vec<u8>, JsValue> {
    let buffer = JsFuture::from(res.array_buffer()?).await?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// Reads a stream whole in JS ([`read_all`]), but never past `limit`: reading stops there and the
/// stream is cancelled, so a peer cannot make the isolate hold more than the config allows. One
/// crossing of the JS boundary for the whole body, not one per chunk.
pub(crate) async fn read_capped(stream: ReadableStream, limit: usize) -> Result<Bytes, ReadError> {
    let read = JsFuture::from(read_all(&stream, limit as f64))
        .await
        .map_err(|e| ReadError::Broken(format!("{}", worker::Error::from(e))))?;
    if read.is_null() {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(js_sys::Uint8Array::new(&read).to_vec().into())
}

/// The longest body, by its declared length, that passes as the upstream's own stream
/// ([`pass_short`]); a longer one is read through JS ([`pass_on`]).
const SHORT_BODY_BYTES: f64 = 65_536.0;

/// What [`upstream_fetch`] rejects with when its head timer fires.
const TIMED_OUT: &str = "portcullis:timeout";
/// What [`upstream_fetch`] rejects with when an upload passes its limit.
const REQUEST_TOO_LARGE: &str = "portcullis:request-too-large";

#[wasm_bindgen::prelude::wasm_bindgen(inline_js = r#"
const aborts = new WeakMap(); // response → the AbortController of its fetch

export function upstreamFetch(url, init, upload, cap, headMs) {
  const abort = new AbortController();
  let why = null;
  if (upload) {
    let n = 0;
    init.body = upload.pipeThrough(new TransformStream({
      transform(chunk, out) {
        n += chunk.byteLength;
        if (n > cap) {
          why = "portcullis:request-too-large";
          abort.abort();
          out.error(new Error(why));
        } else out.enqueue(chunk);
      },
    }));
  }
  init.signal = abort.signal;
  const timer = setTimeout(() => { why = "portcullis:timeout"; abort.abort(); }, headMs);
  return fetch(url, init).then(
    (res) => { clearTimeout(timer); aborts.set(res, abort); return res; },
    (e) => { clearTimeout(timer); throw why || String(e); },
  );
}

function concat(parts, n) {
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.byteLength; }
  return out;
}

export async function readAll(stream, limit) {
  const reader = stream.getReader();
  const parts = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.byteLength;
    if (n > limit) {
      reader.cancel("over the limit").catch(() => {});
      return null;
    }
    parts.push(value);
  }
  return concat(parts, n);
}

function keepLength(stream, length) {
  if (length < 0) return stream;
  // a declared length goes on to the client (a plain stream would be sent chunked)
  const fixed = new FixedLengthStream(length);
  stream.pipeTo(fixed.writable).catch(() => {});
  return fixed.readable;
}

export function teeToStore(body, limit, length, requestId, ctx, store) {
  const reader = body.getReader();
  let parts = [];
  let n = 0;
  const skip = (reason) => {
    if (!parts) return;
    parts = null;
    console.log(JSON.stringify({ request_id: requestId, event: "cache-skip", reason, limit }));
    // nothing to store: the call ends the key's fill (and frees the closure)
    store(null);
  };
  const copied = new ReadableStream({
    async pull(out) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        skip("broken");
        out.error(e);
        return;
      }
      if (chunk.done) {
        if (parts) {
          const all = concat(parts, n);
          parts = null;
          // stored before the end reaches the client, as on Spin: the next request finds it
          const written = store(all);
          ctx.waitUntil(written);
          await written.catch(() => {});
        }
        out.close();
        return;
      }
      const v = chunk.value;
      if (parts) {
        n += v.byteLength;
        if (n > limit) skip("too-large");
        else parts.push(v.slice());
      }
      out.enqueue(v);
    },
    cancel(reason) {
      skip("cancelled");
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
  return keepLength(copied, length);
}

export function passShort(res, idleMs) {
  // a short body of a declared length comes with the head or right after it: it passes as the
  // upstream's own stream (no copy through JS, its length kept) and must be whole within idleMs
  // (aborting a finished fetch does nothing; a cut here is not logged, since nothing here sees
  // whether the body had finished)
  const abort = aborts.get(res);
  setTimeout(() => abort.abort(), idleMs);
  return res.body;
}

export function passOn(res, idleMs, requestId, url, length) {
  const body = res.body;
  const abort = aborts.get(res);
  const cut = () => {
    console.log(JSON.stringify({ request_id: requestId, event: "stream-cut", reason: "idle", idle_timeout_ms: idleMs, upstream: url }));
    abort.abort();
  };
  // a longer one is read into large buffers (as much as has come, up to 256 KiB a read: fewer
  // turns through JS than the transport's own chunks), each read noting the time; a timer
  // looks for an idle gap now and then
  let last = Date.now();
  let done = false;
  const every = Math.max(10, Math.min(1000, idleMs / 4));
  const timer = setInterval(() => {
    if (done) return clearInterval(timer);
    if (Date.now() - last > idleMs) { clearInterval(timer); cut(); }
  }, every);
  const finish = () => { done = true; clearInterval(timer); };
  const reader = body.getReader({ mode: "byob" });
  const watched = new ReadableStream({
    async pull(out) {
      try {
        const { done: end, value } = await reader.read(new Uint8Array(256 << 10));
        last = Date.now();
        if (end) { finish(); out.close(); } else out.enqueue(value);
      } catch (e) {
        finish();
        out.error(e);
      }
    },
    cancel(reason) { finish(); return reader.cancel(reason); },
  }, { highWaterMark: 0 });
  return keepLength(watched, length);
}"#)]
extern "C" {
    /// `fetch(url, init)` whose timer covers the time to the response's head only (the
    /// platform's `AbortSignal.timeout` would also cut the body): it rejects with [`TIMED_OUT`]
    /// when the timer fires first. `upload`, a stream without a declared length, becomes the
    /// body, counted on its way and cut past `cap` bytes ([`REQUEST_TOO_LARGE`]).
    #[wasm_bindgen(js_name = upstreamFetch, catch)]
    fn upstream_fetch(
        url: &str,
        init: &web_sys::RequestInit,
        upload: Option<&ReadableStream>,
        cap: f64,
        head_ms: u32,
    ) -> Result<js_sys::Promise, JsValue>;

    /// The whole stream as one `Uint8Array`, or `null` once it passes `limit` bytes (then it is
    /// cancelled); rejects when the stream errors.
    #[wasm_bindgen(js_name = readAll)]
    fn read_all(stream: &ReadableStream, limit: f64) -> js_sys::Promise;

    /// `body` passed on as it is (its declared `length` kept when 0 or more) while a copy of
    /// up to `limit` bytes is kept: at its end, `store` is called with the copy, and the end
    /// reaches the client once it is stored (under `ctx.waitUntil` too). Past the limit, broken
    /// off or cancelled, nothing is stored, a `cache-skip` line is logged and `store` is called
    /// with null.
    #[wasm_bindgen(js_name = teeToStore)]
    fn tee_to_store(
        body: &ReadableStream,
        limit: f64,
        length: f64,
        request_id: &str,
        ctx: &JsValue,
        store: &JsValue,
    ) -> ReadableStream;

    /// The body of `res` (an answer of [`upstream_fetch`]) as a stream that gives each chunk on
    /// as it comes and is cut (its fetch aborted), with a log line, when the upstream sends
    /// nothing for `idle_ms`: each chunk notes the time and a timer looks every `idle_ms / 4`
    /// (at most a second). A `length` of 0 or more is the body's declared length, which the
    /// stream keeps (a body that ends short of it errors, and the client's connection is
    /// reset).
    /// The body of `res`, of a declared length up to [`SHORT_BODY_BYTES`], passed on as the
    /// upstream's own stream (no copy through JS), and cut (not logged) unless whole within
    /// `idle_ms` of the head.
    #[wasm_bindgen(js_name = passShort)]
    fn pass_short(res: &web_sys::Response, idle_ms: u32) -> ReadableStream;

    #[wasm_bindgen(js_name = passOn)]
    fn pass_on(
        res: &web_sys::Response,
        idle_ms: u32,
        request_id: &str,
        url: &str,
        length: f64,
    ) -> ReadableStream;
}

/// The `http` header map of a JS `Headers`, read in one crossing ([`crate::bytestring::header_map`]).
pub(crate) fn header_map(headers: &web_sys::Headers) -> HeaderMap {
    crate::bytestring::header_map(&flat_headers(headers))
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
export function admitAt(namespace, key, request) {
  return namespace.getByName(key).admit(request);
}

export function refundAt(namespace, key, request) {
  return namespace.getByName(key).refund(request);
}

export function sleep(ms) {
  return new Promise((done) => setTimeout(done, ms));
}

export function flatHeaders(headers) {
  const parts = [];
  for (const [name, value] of headers) parts.push(name, value);
  return parts.join("\0");
}

export function headersFromFlat(flat) {
  const headers = new Headers();
  if (flat === "") return headers;
  const parts = flat.split("\0");
  for (let i = 0; i + 1 < parts.length; i += 2) headers.append(parts[i], parts[i + 1]);
  return headers;
}"#)]
extern "C" {
    /// `admit(request)` of the rate-limit object named `key` in `namespace`, by JavaScript RPC
    /// ([`crate::limiter::RateLimiter::admit_rpc`]).
    #[wasm_bindgen(js_name = admitAt, catch)]
    fn admit_at(namespace: &JsValue, key: &str, request: &str) -> Result<js_sys::Promise, JsValue>;

    /// `refund(request)` of the rate-limit object named `key` in `namespace`, by JavaScript RPC
    /// ([`crate::limiter::RateLimiter::refund_rpc`]).
    #[wasm_bindgen(js_name = refundAt, catch)]
    fn refund_at(namespace: &JsValue, key: &str, request: &str)
        -> Result<js_sys::Promise, JsValue>;

    /// A promise resolved by a timer of the calling request after `ms` milliseconds.
    fn sleep(ms: u32) -> js_sys::Promise;

    /// A `Headers`' names and values each followed by NUL, the last one not, made in JS: one
    /// crossing, where `Array.from(headers).flat(1).join("\0")` took three and an array more.
    #[wasm_bindgen(js_name = flatHeaders)]
    fn flat_headers(headers: &web_sys::Headers) -> String;

    /// `Headers` from names and values each followed by NUL, the last one not.
    #[wasm_bindgen(js_name = headersFromFlat, catch)]
    fn headers_from_flat(flat: &str) -> Result<web_sys::Headers, JsValue>;
}

impl WorkersHost {
    /// Calls a method of the rate-limit object named `key` by JavaScript RPC (`call`: one of the
    /// functions above); its answer as text.
    async fn call_limiter(
        &self,
        call: fn(&JsValue, &str, &str) -> Result<js_sys::Promise, JsValue>,
        key: &str,
        request: &str,
    ) -> Result<String, HostError> {
        let env: &JsValue = self.env.as_ref();
        let namespace = js_sys::Reflect::get(env, &JsValue::from_str(LIMITER))
            .ok()
            .filter(|ns| !ns.is_undefined())
            .ok_or_else(|| HostError(format!("rate limiter: no {LIMITER} binding")))?;
        let failed = |e: JsValue| HostError(format!("rate limiter: {e:?}"));
        JsFuture::from(call(&namespace, key, request).map_err(failed)?)
            .await
            .map_err(failed)?
            .as_string()
            .ok_or_else(|| HostError("rate limiter answered no text".into()))
    }
}

fn js_err(kind: fn(String) -> FetchError) -> impl Fn(JsValue) -> FetchError {
    move |e| kind(format!("{e:?}"))
}

#[cfg(feature = "telemetry")]
#[wasm_bindgen::prelude::wasm_bindgen(inline_js = r#"
export function writeDataPoint(env, name, index, blobs, doubles) {
  try {
    const dataset = env[name];
    if (!dataset || typeof dataset.writeDataPoint !== "function") {
      throw `no Workers Analytics Engine dataset is bound as ${name} (wrangler.toml)`;
    }
    dataset.writeDataPoint({ indexes: [index], blobs, doubles: Array.from(doubles) });
  } catch (e) {
    return JSON.stringify({ event: "analytics-engine", outcome: "failed", dataset: name, reason: String(e) });
  }
}"#)]
extern "C" {
    /// Writes one data point to the dataset bound as `name` on `env`; when it cannot, the log
    /// line that says why.
    #[wasm_bindgen(js_name = writeDataPoint)]
    fn write_data_point(
        env: &JsValue,
        name: &str,
        index: &str,
        blobs: &js_sys::Array,
        doubles: &js_sys::Float64Array,
    ) -> Option<String>;
}
