//! The fetch handler: platform request → `http::Request<Body>` → `Gateway::handle` → response.
//! Bodies stay the platform's `ReadableStream`s unless the gateway reads one.

use crate::host::{WorkersBody, WorkersHost};
use portcullis_core::{Body, Gateway, Reject};
use std::rc::Rc;
use wasm_bindgen::JsValue;
use worker::worker_sys::ext::RequestExt;
use worker::{event, Context, Env};

thread_local! {
    /// The gateway, built when the isolate starts ([`start_gateway`]; else on the first request
    /// an instance serves) and kept for its life: verified tokens and JWKS stay warm between
    /// requests.
    static GATEWAY: std::cell::OnceCell<Result<Rc<Gateway>, String>> = const { std::cell::OnceCell::new() };
}

/// `secret_env` keys read the worker's secrets and `[vars]`, which are strings on `env`.
fn gateway(env: &JsValue) -> Result<Rc<Gateway>, String> {
    let read = |name: &str| {
        js_sys::Reflect::get(env, &JsValue::from_str(name))
            .ok()
            .and_then(|v| v.as_string())
    };
    GATEWAY.with(|g| {
        g.get_or_init(|| Gateway::from_embedded(crate::embedded_config(), &read).map(Rc::new))
            .clone()
    })
}

/// Builds the gateway while the isolate starts: the entry module (`shim.mjs`) calls this at its
/// top level with the worker's `env`. Workers starts an isolate while the client's TLS handshake
/// is under way, so this work is off the first request's path. A gateway that cannot start (a
/// missing secret) is kept as that error, which every request then reports; an instance made
/// afresh after a panic builds the gateway on its first request instead.
#[wasm_bindgen::prelude::wasm_bindgen(js_name = startGateway)]
pub fn start_gateway(env: JsValue) {
    let _ = gateway(&env);
}

#[event(fetch)]
async fn fetch(req: web_sys::Request, env: Env, ctx: Context) -> worker::Result<web_sys::Response> {
    let gateway = gateway(env.as_ref()).map_err(|listing| {
        // a gateway that cannot start (a missing secret): every request says why in the log
        worker::console_error!("portcullis cannot start: {listing}");
        worker::Error::RustError(listing)
    })?;
    let Some(head) = request_head(&req) else {
        // workerd hands over only requests with a valid method and URL, so this is a guard
        let reject = Reject::BadPath("the request line could not be read");
        return Ok(to_platform(reject.to_response("").map(Body::Bytes))?);
    };
    // `request.cf` is made into a JS object on first use, a few percent of a proxied request's
    // CPU: read only when an access list names countries or ASNs, or the log asks for them
    let cf = if gateway.config().needs_client_geo() {
        RequestExt::cf(&req)
    } else {
        None
    };
    // read as a plain property: the `worker` crate's `colo()` panics when it is missing
    let colo = cf
        .as_ref()
        .and_then(|cf| js_sys::Reflect::get(cf, &JsValue::from_str("colo")).ok())
        .and_then(|v| v.as_string());
    let cf = cf.map(worker::Cf::from);
    let client = crate::client::from_edge(
        head.headers
            .get("cf-connecting-ip")
            .and_then(|v| v.to_str().ok()),
        cf.as_ref().and_then(|cf| cf.country()),
        cf.as_ref().and_then(|cf| cf.asn()),
        colo,
    );
    let body = match req.body() {
        Some(stream) => Body::Stream(WorkersBody::Stream(stream)),
        None => Body::default(),
    };
    let context: &JsValue = ctx.as_ref();
    let host = WorkersHost::new(env, context.clone());
    let res = gateway
        .handle(http::Request::from_parts(head, body), client, &host)
        .await;
    let lines = host.take_log_lines();
    if !lines.is_empty() {
        let _ = log_once_answered(ctx.as_ref(), &lines);
    }
    // the work left for after the answer (a stale entry's refresh, spans to export), on the
    // request's host
    #[cfg(any(feature = "response-cache", feature = "telemetry"))]
    let later = host.take_later();
    #[cfg(any(feature = "response-cache", feature = "telemetry"))]
    if !later.is_empty() {
        ctx.wait_until(async move {
            for later in later {
                gateway.run_later(later, &host).await;
            }
            for line in host.take_log_lines().lines() {
                worker::console_log!("{line}");
            }
        });
    }
    Ok(to_platform(res)?)
}

#[wasm_bindgen::prelude::wasm_bindgen(inline_js = r#"
export function logOnceAnswered(ctx, lines) {
  ctx.waitUntil(new Promise((done) => setTimeout(() => {
    for (const line of lines.split("\n")) console.log(line);
    done();
  }, 0)));
}"#)]
extern "C" {
    /// Writes `lines` (separated by newlines) with `console.log` once the answer has gone: a
    /// timer's turn later, so the answer does not wait for the log (about 0.04 ms of a request
    /// on the local workerd, BENCHMARKS.md); `waitUntil` keeps the request alive until then.
    #[wasm_bindgen(js_name = logOnceAnswered, catch)]
    fn log_once_answered(ctx: &JsValue, lines: &str) -> Result<(), JsValue>;
}

/// The request's method, URL and headers as `http` parts, made here rather than by the `worker`
/// crate's conversion, which crosses the JS boundary three times per header, builds a map with no
/// room for the headers the gateway adds, and reads `request.cf` whether it is needed or not; this
/// reads the headers in one crossing ([`crate::host::header_map`]). `None` for a method or URL
/// `http` cannot hold.
fn request_head(req: &web_sys::Request) -> Option<http::request::Parts> {
    let method = http::Method::from_bytes(req.method().as_bytes()).ok()?;
    let uri: http::Uri = req.url().parse().ok()?;
    let (mut head, ()) = http::Request::new(()).into_parts();
    head.method = method;
    head.uri = uri;
    head.headers = crate::host::header_map(&req.headers());
    Some(head)
}

/// The gateway's answer as the platform's response: its body is the upstream's stream, passed
/// on, or one byte array, so the runtime sends `Content-Length`. (The `worker` crate's own
/// conversion streams any `http` body through a JS `ReadableStream` that pulls from Rust: a
/// chunked response, and slower; BENCHMARKS.md, "The answer as one byte array".)
fn to_platform(res: http::Response<Body<WorkersBody>>) -> Result<web_sys::Response, JsValue> {
    let headers = crate::host::js_headers(res.headers(), None)?;
    let init = web_sys::ResponseInit::new();
    init.set_status(res.status().as_u16());
    init.set_headers(&headers);
    // the constructor refuses any body, even an empty one, with 101, 204, 205 and 304
    let null_body = matches!(res.status().as_u16(), 101 | 204 | 205 | 304);
    match res.body() {
        Body::Stream(WorkersBody::Socket(socket)) => {
            // a 101 answer is made only with its WebSocket
            js_sys::Reflect::set(&init, &JsValue::from_str("webSocket"), socket)?;
            web_sys::Response::new_with_opt_js_u8_array_and_init(None, &init)
        }
        Body::Stream(WorkersBody::Stream(stream)) if !null_body => {
            web_sys::Response::new_with_opt_readable_stream_and_init(Some(stream), &init)
        }
        Body::Bytes(body) if !null_body && !body.is_empty() => {
            let body = js_sys::Uint8Array::from(&body[..]);
            web_sys::Response::new_with_opt_js_u8_array_and_init(Some(&body), &init)
        }
        _ => web_sys::Response::new_with_opt_js_u8_array_and_init(None, &init),
    }
}
