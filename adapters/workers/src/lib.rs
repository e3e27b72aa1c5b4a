//! Portcullis on Cloudflare Workers.
//!
//! The entry point turns the platform's request into `http` types, hands it to
//! [`portcullis_core::Gateway::handle`] with a [`host::WorkersHost`], and turns the answer back.
//! Everything the gateway decides is in the core; this crate only binds it to Workers:
//!
//! | core port            | Workers                                                        |
//! |----------------------|----------------------------------------------------------------|
//! | `rate_limit`         | one Durable Object per limit key ([`limiter::RateLimiter`])    |
//! | `store_get/put`      | Workers KV (`PORTCULLIS_KV`), or the Cache API for responses   |
//! | `fetch`              | outbound `fetch`, `redirect: manual`, aborted at the timeout   |
//! | `log`                | `console.log`, one JSON line per request                       |
//! | client identity      | `CF-Connecting-IP`, `request.cf.country` / `asn`               |
//!
//! The config is embedded at build time by `build.rs` (validated there, and written as data)
//! and compiled once per isolate.

pub mod bytestring;
pub mod client;

#[cfg(target_arch = "wasm32")]
mod entry;
#[cfg(target_arch = "wasm32")]
mod host;
#[cfg(target_arch = "wasm32")]
pub mod limiter;

/// The config this worker was built with: `build.rs` checked it and wrote it as `'static` data
/// (`portcullis_core::config::emit`), so no config parser is linked and nothing is parsed here.
pub fn embedded_config() -> &'static portcullis_core::config::emit::Embedded {
    portcullis_core::embedded_config!()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_embedded_config_loads() {
        // the default config has no `secret_env` key, so it needs no secrets
        let gateway = portcullis_core::Gateway::from_embedded(super::embedded_config(), &|_| None);
        assert!(gateway.is_ok(), "{:?}", gateway.err());
    }
}
