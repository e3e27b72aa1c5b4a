//! The HTTP handler: Spin request → `http::Request<Body>` → `Gateway::handle` → response.
//! Bodies stay wasi:http streams unless the gateway reads one.

use crate::client::{identify, remove_runtime_headers, Trusted};
use crate::expiry::Sweep;
use crate::host::SpinHost;
use crate::stream::SpinStream;
use portcullis_core::{Body, Gateway, Host, HEADER_ROOM};
use std::rc::Rc;

thread_local! {
    /// Built on the first request an instance serves (Spin may reuse an instance).
    static GATEWAY: std::cell::OnceCell<Result<Rc<Gateway>, String>> = const { std::cell::OnceCell::new() };
}

fn gateway() -> Result<Rc<Gateway>, String> {
    GATEWAY.with(|g| {
        // `secret_env` keys read the component's environment (`spin up -e NAME=...`)
        g.get_or_init(|| {
            Gateway::from_embedded(crate::embedded_config(), &|name| std::env::var(name).ok())
                .map(Rc::new)
        })
        .clone()
    })
}

#[spin_sdk::http_service]
async fn handle(
    req: spin_sdk::http::Request,
) -> Result<http::Response<SpinStream>, spin_sdk::http::Error> {
    let gateway = gateway().map_err(|listing| {
        // a gateway that cannot start (a missing secret): every request says why in the log
        eprintln!("portcullis cannot start: {listing}");
        spin_sdk::http::Error::other(listing)
    })?;
    let (mut parts, body) = req.into_parts();
    // room for the headers the gateway adds, so that adding them does not regrow the map (a
    // map already at `http`'s size limit keeps its size; the header byte limit refuses it)
    let _ = parts.headers.try_reserve(HEADER_ROOM);
    let trusted = Trusted::from_env(|v| std::env::var(v).ok());
    let client = identify(&parts.headers, &trusted);
    remove_runtime_headers(&mut parts.headers);
    let body = if has_body(&parts.headers) {
        Body::Stream(SpinStream::new(body))
    } else {
        Body::default()
    };
    let host = SpinHost::open().await;
    let res = gateway
        .handle(http::Request::from_parts(parts, body), client, &host)
        .await;
    // now and then a request deletes expired entries before it answers (expiry.rs); what goes
    // wrong there is reported on stderr, apart from the access log, and changes no answer
    let (sweep, errors) = Sweep::from_env(|v| std::env::var(v).ok());
    if sweep.draws(host.random()) {
        for e in errors {
            eprintln!("portcullis: {e}");
        }
        if let Err(e) = host.sweep_if_due(&sweep).await {
            eprintln!("portcullis: sweeping expired entries: {}", e.0);
        }
    }
    let later = host.take_later();
    let (mut head, body) = res.into_parts();
    let body = match body {
        Body::Stream(stream) => stream,
        Body::Bytes(bytes) => {
            if !later.is_empty() && !bytes.is_empty() {
                // the client knows when it has the answer whole, though the instance lives on
                // for the work beside it
                head.headers
                    .insert(http::header::CONTENT_LENGTH, bytes.len().into());
            }
            SpinStream::bytes(bytes)
        }
    };
    if !later.is_empty() {
        // the work left for after the answer (a stale entry's refresh, this request's spans and
        // counts) runs in this request's component-model task after the handler has returned,
        // beside the answer's body: neither waits for the other, and the task (so the instance,
        // which may live for this request only) lasts until both are done
        spin_sdk::wasip3::spawn(async move {
            for later in later {
                gateway.run_later(later, &host).await;
            }
        });
    }
    Ok(http::Response::from_parts(head, body))
}

/// Whether a request has a body (RFC 9112 §6.3: a length above 0, or a transfer coding).
fn has_body(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}
