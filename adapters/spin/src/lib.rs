//! Portcullis on Fermyon Spin (a `wasm32-wasip2` component, spin-sdk 7, Spin 4.1 or newer).
//!
//! The entry point turns Spin's request into `http` types, hands it to
//! [`portcullis_core::Gateway::handle`] with a [`host::SpinHost`], and returns the answer.
//!
//! | core port          | Spin                                                              |
//! |--------------------|-------------------------------------------------------------------|
//! | `rate_limit`       | `wasi:keyvalue/atomics` compare-and-swap on the same store: exact |
//! | `store_get/put`    | the key-value store (`default`)                                   |
//! | `fetch`            | outbound HTTP, abandoned at the timeout                           |
//! | `log`              | one JSON line on stdout                                           |
//! | client identity    | `spin-client-addr`, or trusted headers named in the environment   |
//! | (housekeeping)     | now and then a request deletes expired entries ([`expiry`])       |
//!
//! The config is embedded at build time by `build.rs`, which also checks `spin.toml`'s
//! `allowed_outbound_hosts` against it.

pub mod client;
pub mod expiry;

#[cfg(target_arch = "wasm32")]
mod entry;
#[cfg(target_arch = "wasm32")]
mod host;
#[cfg(target_arch = "wasm32")]
mod stream;

/// The config this component was built with: `build.rs` checked it and wrote it as `'static` data
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
