//! Helpers shared by the scenario suites: requests, a scriptable backend, token minting (also used
//! by the end-to-end suites in `tests/e2e`, which add real servers and runtimes).

use bytes::Bytes;
use http::{Request, Response};
use jwt_compact::alg::{Es256, Hs256, Hs256Key};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{AlgorithmExt, Claims, Header};
use portcullis_core::host::FetchError;
use portcullis_core::memory::{self, MemoryHost, MemoryStream};
use portcullis_core::{Body, Client, Config, Gateway};
use serde_json::{json, Map, Value};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

/// 2023-11-14T22:13:20Z, the scenarios' "now".
pub const NOW_MS: u64 = 1_700_000_000_000;

/// A gateway from TOML, panicking with the full listing if it does not load.
pub fn gateway(toml: &str) -> Gateway {
    match Config::from_toml(toml) {
        Ok(c) => Gateway::new(c),
        Err(e) => panic!("{}", e.render("test.toml")),
    }
}

/// What the scripted backend answers.
pub type Answer = Result<Response<Bytes>, FetchError>;

/// A backend whose answers are queued by the test; with the queue empty it answers 200 and
/// echoes the request path in the body.
#[derive(Clone, Default)]
pub struct Backend {
    queue: Rc<RefCell<VecDeque<Answer>>>,
    /// A JWKS document served at `/.well-known/jwks.json`, or `None` for an outage (503).
    pub jwks: Rc<RefCell<Option<Value>>>,
    pub jwks_max_age: Rc<RefCell<u32>>,
}

impl Backend {
    pub fn push(&self, answer: Answer) {
        self.queue.borrow_mut().push_back(answer);
    }

    /// A host at [`NOW_MS`] served by this backend.
    pub fn host(&self) -> MemoryHost {
        let me = self.clone();
        MemoryHost::new(NOW_MS, move |req| me.answer(req))
    }

    fn answer(&self, req: &Request<Bytes>) -> Answer {
        if req.uri().path() == "/.well-known/jwks.json" {
            return Ok(match &*self.jwks.borrow() {
                Some(doc) => Response::builder()
                    .header("content-type", "application/json")
                    .header(
                        "cache-control",
                        format!("max-age={}", self.jwks_max_age.borrow()),
                    )
                    .body(Bytes::from(doc.to_string()))
                    .unwrap(),
                None => Response::builder().status(503).body(Bytes::new()).unwrap(),
            });
        }
        if let Some(a) = self.queue.borrow_mut().pop_front() {
            return a;
        }
        Ok(Response::builder()
            .header("content-type", "text/plain")
            .body(Bytes::from(format!(
                "echo {}",
                req.uri().path_and_query().map_or("", |p| p.as_str())
            )))
            .unwrap())
    }
}

/// A plain 200 response with headers.
pub fn ok(body: &str, headers: &[(&str, &str)]) -> Answer {
    let mut b = Response::builder().status(200);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    Ok(b.body(Bytes::from(body.to_string())).unwrap())
}

/// A response with a status and no body.
pub fn status(code: u16) -> Answer {
    Ok(Response::builder().status(code).body(Bytes::new()).unwrap())
}

/// A request builder with headers.
pub fn req(method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Request<Bytes> {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(Bytes::from(body.to_string())).unwrap()
}

/// The client the adapter would report.
pub fn client(ip: &str) -> Client {
    Client::new(ip.parse().unwrap())
}

/// Runs one request.
pub fn send(gw: &Gateway, host: &MemoryHost, r: Request<Bytes>, from: &str) -> Response<Bytes> {
    send_as(gw, host, r, client(from))
}

/// Runs one request from `client`, as an adapter hands it over: a body as the platform's stream
/// (in 4 KiB chunks) when its `Content-Length`, if any, is its length (a runtime hands over no
/// other stream), else as bytes; none as empty bytes. The answer's body is read to its end,
/// then the work the gateway left for after it runs ([`run_later`]).
pub fn send_as(
    gw: &Gateway,
    host: &MemoryHost,
    r: Request<Bytes>,
    client: Client,
) -> Response<Bytes> {
    let declared = r.headers().get(http::header::CONTENT_LENGTH);
    let framed = declared.is_none_or(|cl| cl.as_bytes() == r.body().len().to_string().as_bytes());
    let r = r.map(|b| match b.is_empty() || !framed {
        true => Body::Bytes(b),
        false => Body::Stream(MemoryStream::chunked(&b, 4096)),
    });
    let res = pollster::block_on(gw.handle(r, client, host));
    let res = res.map(|b| memory::body_bytes(&b));
    run_later(gw, host);
    res
}

/// Runs the work the gateway left for after its answers ([`portcullis_core::Host::defer`]), as
/// an adapter does once an answer is on its way.
pub fn run_later(gw: &Gateway, host: &MemoryHost) {
    for later in host.take_later() {
        pollster::block_on(gw.run_later(later, host));
    }
}

/// Runs bodiless requests together, as concurrent requests share an isolate: each is polled in
/// turn until all have answered (with [`MemoryHost::fetch_yields`], one waits on its fetch
/// while the others run). The answers, in the requests' order.
pub fn send_together(
    gw: &Gateway,
    host: &MemoryHost,
    requests: Vec<Request<Bytes>>,
    from: &str,
) -> Vec<Response<Bytes>> {
    let mut running: Vec<_> = requests
        .into_iter()
        .map(|r| Box::pin(gw.handle(r.map(Body::Bytes), client(from), host)))
        .collect();
    let mut answers: Vec<Option<Response<Bytes>>> = running.iter().map(|_| None).collect();
    pollster::block_on(std::future::poll_fn(|cx| {
        for (f, answer) in running.iter_mut().zip(answers.iter_mut()) {
            if answer.is_none() {
                if let std::task::Poll::Ready(res) = std::future::Future::poll(f.as_mut(), cx) {
                    *answer = Some(res.map(|b| memory::body_bytes(&b)));
                }
            }
        }
        match answers.iter().all(Option::is_some) {
            true => std::task::Poll::Ready(()),
            false => std::task::Poll::Pending,
        }
    }));
    run_later(gw, host);
    answers.into_iter().flatten().collect()
}

/// The response body as JSON.
pub fn json_body(res: &Response<Bytes>) -> Value {
    serde_json::from_slice(res.body()).unwrap_or(Value::Null)
}

/// The shared secret of the scenarios' HS256 provider.
pub const HS_SECRET: &str = "scenario-secret-0123456789abcdef-xyz";

/// An HS256 token with standard claims for `sub`, plus `extra`, valid for 10 minutes from `now_ms`.
pub fn hs_token(sub: &str, extra: Value, now_ms: u64) -> String {
    hs_token_signed_with(HS_SECRET, sub, extra, now_ms)
}

/// [`hs_token`], signed with `secret` instead of [`HS_SECRET`].
pub fn hs_token_signed_with(secret: &str, sub: &str, extra: Value, now_ms: u64) -> String {
    let claims = claims(sub, extra, now_ms);
    Hs256
        .token(
            &Header::empty().with_key_id("hs"),
            &claims,
            &Hs256Key::new(secret),
        )
        .unwrap()
}

fn claims(sub: &str, extra: Value, now_ms: u64) -> Claims<Map<String, Value>> {
    let mut m = json!({"iss": "https://issuer.test/", "aud": "api", "sub": sub, "exp": now_ms / 1000 + 600});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        m[k] = v;
    }
    Claims::new(m.as_object().unwrap().clone())
}

/// An ES256 signing key with its public JWK (carrying `kid` and `alg`).
pub struct EcKey {
    pub kid: String,
    signing: p256::ecdsa::SigningKey,
}

impl EcKey {
    pub fn new(kid: &str) -> EcKey {
        EcKey {
            kid: kid.into(),
            signing: p256::ecdsa::SigningKey::random(&mut rand::thread_rng()),
        }
    }

    pub fn jwk(&self) -> Value {
        let mut v = serde_json::to_value(JsonWebKey::from(self.signing.verifying_key())).unwrap();
        v["kid"] = json!(self.kid);
        v["alg"] = json!("ES256");
        v["use"] = json!("sig");
        v
    }

    pub fn token(&self, sub: &str, extra: Value, now_ms: u64) -> String {
        Es256
            .token(
                &Header::empty().with_key_id(&self.kid),
                &claims(sub, extra, now_ms),
                &self.signing,
            )
            .unwrap()
    }
}

/// A JWKS document of these keys.
pub fn jwks(keys: &[&EcKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()})
}
