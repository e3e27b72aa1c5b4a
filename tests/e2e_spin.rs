//! The end-to-end suite on Spin: the component is built from `tests/e2e/gateway.toml` and served
//! by the wasmtime-based `spin-test-host` following `tests/e2e/spin.toml`, with real local
//! servers behind it. Same cases as the Workers suite (`tests/e2e/cases.rs`).

#[path = "e2e/cases.rs"]
mod cases;

use cases::{Platform, Suite};
use portcullis_tests::runtime::{build_spin, start_spin};
use std::sync::OnceLock;

fn suite() -> &'static Suite {
    static SUITE: OnceLock<Suite> = OnceLock::new();
    SUITE.get_or_init(|| {
        Suite::new(
            Platform {
                client_ip_header: "x-test-client-ip",
            },
            || {
                let out = build_spin("tests/e2e/gateway.toml", "tests/e2e/spin.toml");
                assert!(
                    out.status.success(),
                    "building the component failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                start_spin("tests/e2e/spin.toml")
            },
        )
    })
}

e2e_cases!(suite);

/// An upstream the manifest does not allow fails the build, naming what to add.
#[test]
fn a_manifest_missing_an_upstream_fails_the_build() {
    let out = build_spin("tests/e2e/gateway.toml", "spin.toml");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for origin in ["http://127.0.0.1:18181", "http://127.0.0.1:18182"] {
        let line = format!("spin.toml: component.portcullis.allowed_outbound_hosts: add \"{origin}\" (the gateway config calls it)");
        assert!(stderr.contains(&line), "missing {line:?} in:\n{stderr}");
    }
    assert!(stderr.contains("2 errors; nothing was built"), "{stderr}");
}
