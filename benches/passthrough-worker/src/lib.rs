//! The baseline for the Workers load benchmark: forwards every request to `UPSTREAM` (a var)
//! with the same method, path, headers and body, `redirect: manual`, and returns the answer.
//! No policy at all, so "Portcullis minus this" is what the gateway's phases cost.
#![cfg(target_arch = "wasm32")]

use worker::{event, Context, Env, Fetch, Request, RequestInit, RequestRedirect, Response, Result};

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let upstream = env.var("UPSTREAM")?.to_string();
    let url = req.url()?;
    let target = match url.query() {
        Some(q) => format!("{upstream}{}?{q}", url.path()),
        None => format!("{upstream}{}", url.path()),
    };
    let body = req.bytes().await?;
    let mut init = RequestInit::new();
    init.with_method(req.method())
        .with_headers(req.headers().clone())
        .with_redirect(RequestRedirect::Manual);
    if !body.is_empty() {
        init.with_body(Some(js_sys::Uint8Array::from(&body[..]).into()));
    }
    Fetch::Request(Request::new_with_init(&target, &init)?)
        .send()
        .await
}
