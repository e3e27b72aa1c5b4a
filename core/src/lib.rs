//! Portcullis core: an API gateway's request pipeline as pure phases over `http` types.
//!
//! The core reads no clock, no environment and no randomness, and does no IO: all of that comes
//! through the [`Host`] port, which the Workers and Spin adapters implement. Start at
//! [`Gateway::handle`]; each phase of the request's journey is a module under [`phase`].
#![forbid(unsafe_code)]

pub mod body;
pub mod config;
// used by JWKS fetches (left out of a build without `toml` or `asymmetric-jwt`) and the
// response cache
#[cfg_attr(
    not(all(
        any(feature = "toml", feature = "asymmetric-jwt"),
        feature = "response-cache"
    )),
    allow(dead_code)
)]
mod flight;
pub mod gateway;
pub mod host;
#[cfg(feature = "memory")]
pub mod memory;
pub mod phase;
pub mod problem;
pub mod store;
#[cfg(feature = "telemetry")]
pub mod telemetry;

pub use body::{Body, ReadError};
pub use config::{Config, ConfigErrors, Diagnostic, Secrets};
pub use gateway::Gateway;
pub use host::{
    BodyUse, Exchange, FetchError, Host, HostError, Later, Tee, UnixMillis, HEADER_ROOM,
};
pub use phase::access::Client;
pub use problem::Reject;

// RSA signing (never used: the gateway only verifies) links `getrandom`; on
// wasm32-unknown-unknown there is no OS source, so it reports "unsupported" rather than pretend.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
mod no_os_random {
    fn unsupported(_: &mut [u8]) -> Result<(), getrandom::Error> {
        Err(getrandom::Error::UNSUPPORTED)
    }
    getrandom::register_custom_getrandom!(unsupported);
}
