//! The end-to-end cases about state that must outlive a request (JWKS cooldowns and last good
//! keys, rate-limit counters), on the real Spin CLI with one instance per request
//! (`--max-instance-reuse-count 1`): what Spin does for wasi:http 0.2 components and may do for
//! any. `tests/e2e/e2e_spin_real.rs` says how Spin is found.

#[allow(dead_code)] // only the cases listed below run here
#[path = "cases.rs"]
mod cases;

#[path = "real_spin.rs"]
mod real_spin;

use cases::Suite;
use std::sync::OnceLock;

fn suite() -> Option<&'static Suite> {
    static SUITE: OnceLock<Option<Suite>> = OnceLock::new();
    SUITE
        .get_or_init(|| real_spin::start("spin-fresh", &["--max-instance-reuse-count", "1"]))
        .as_ref()
}

e2e_cases!(@optional suite;
    jwt_auth_rotation_and_outage,
    exact_rate_limit_under_concurrency, sharded_rate_limit_under_concurrency,
    forged_client_addresses_are_ignored);
// takes the suite alone itself
e2e_cases!(@optional alone suite; unknown_kids_share_one_jwks_fetch);
