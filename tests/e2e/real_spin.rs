//! Starts the end-to-end [`Suite`] on the real Spin CLI, for `e2e_spin_real` and
//! `e2e_spin_fresh`.

use crate::cases::{
    ClWithTe, CutBeforeHead, NonUtf8Header, OtherHostTarget, Platform, Suite, TwoHosts,
};
use portcullis_e2e::runtime::{build_spin_ok, e2e_files, real_spin, start_real_spin};

/// The suite on real Spin started with `args`, or `None` (said loudly) without a Spin. `name`
/// names the suite's build (`target/e2e-config/NAME`).
pub fn start(name: &str, args: &'static [&'static str]) -> Option<Suite> {
    let Some(spin) = real_spin() else {
        let required = std::env::var("PORTCULLIS_REQUIRE_SPIN").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "PORTCULLIS_REQUIRE_SPIN=1 but SPIN_BIN is not set: no real Spin to run the suite on"
        );
        // straight to stderr: the test harness captures `eprintln!` of a passing test
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\n*** NOT RUN on real Spin: set SPIN_BIN to a Spin 4.1 CLI (see CONTRIBUTING.md) ***\n"
        );
        return None;
    };
    Some(Suite::new(
        Platform {
            client_ip_header: "x-test-client-ip",
            non_utf8_header: NonUtf8Header::RefusedInRequests,
            cl_with_te: ClWithTe::Passed,
            two_hosts: TwoHosts::Passed,
            other_host_target: OtherHostTarget::ConnectionClosed,
            cut_before_head: CutBeforeHead::MayCloseWithoutHead,
            one_isolate: false,
            runtime: "spin",
        },
        |ports| {
            let (config, manifest) = e2e_files(name, &ports.upstream, &ports.jwks);
            build_spin_ok(&config, &manifest);
            start_real_spin(&spin, &manifest, args)
        },
    ))
}
