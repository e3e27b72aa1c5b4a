//! The baseline for the Spin benchmark: forwards every request to `UPSTREAM` (an environment
//! variable) with the same method, path, headers and body, and returns the answer whole. No
//! policy, so "Portcullis minus this" is what the gateway's phases cost in the same host.
#![cfg(target_arch = "wasm32")]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

#[spin_sdk::http_service]
async fn handle(
    req: spin_sdk::http::Request,
) -> Result<http::Response<Full<Bytes>>, spin_sdk::http::Error> {
    let upstream = std::env::var("UPSTREAM")
        .map_err(|_| spin_sdk::http::Error::other("UPSTREAM is not set"))?;
    let (mut parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| spin_sdk::http::Error::other(format!("{e:?}")))?
        .to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    parts.uri = format!("{upstream}{path}")
        .parse()
        .map_err(|e| spin_sdk::http::Error::other(format!("{e}")))?;
    parts.headers.remove(http::header::HOST);
    let res = spin_sdk::http::send(http::Request::from_parts(parts, Full::new(body))).await?;
    let (parts, body) = res.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| spin_sdk::http::Error::other(format!("{e:?}")))?
        .to_bytes();
    Ok(http::Response::from_parts(parts, Full::new(body)))
}
