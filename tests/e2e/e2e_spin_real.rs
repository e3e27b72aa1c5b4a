//! The end-to-end suite on the real Spin CLI (`spin up`), which `SPIN_BIN` names: the component
//! built from `tests/e2e/gateway.toml`, served following `tests/e2e/spin.toml`, with the same
//! cases as the Workers suite and the wasmtime test host (`tests/e2e/cases.rs`).
//!
//! Real Spin reuses an instance for up to 128 requests (16 at once) by default, and every case
//! runs so here; `tests/e2e/e2e_spin_fresh.rs` runs the cases about state that outlives a request
//! again with one instance per request.
//!
//! Spin is in no package registry. Without `SPIN_BIN` every case here says loudly that it did
//! not run; with `PORTCULLIS_REQUIRE_SPIN=1` (CI sets it where it has a Spin) that is a failure.

#[path = "cases.rs"]
mod cases;

#[path = "real_spin.rs"]
mod real_spin;

use cases::Suite;
use std::sync::OnceLock;

fn suite() -> Option<&'static Suite> {
    static SUITE: OnceLock<Option<Suite>> = OnceLock::new();
    SUITE
        .get_or_init(|| real_spin::start("spin-real", &[]))
        .as_ref()
}

e2e_cases!(optional suite);
