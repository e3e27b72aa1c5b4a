//! The end-to-end suite on Spin: the component is built from `tests/e2e/gateway.toml` and served
//! by the wasmtime-based `spin-test-host` following `tests/e2e/spin.toml`, with real local
//! servers behind it. Same cases as the Workers suite (`tests/e2e/cases.rs`).

#[path = "cases.rs"]
mod cases;

use cases::{ClWithTe, CutBeforeHead, NonUtf8Header, OtherHostTarget, Platform, Suite, TwoHosts};
use portcullis_e2e::net::Reply;
use portcullis_e2e::runtime::{build_spin, build_spin_ok, e2e_files, start_spin};
use portcullis_spin::expiry::{classify, tombstone, Stored};
use std::sync::OnceLock;

fn suite() -> &'static Suite {
    static SUITE: OnceLock<Suite> = OnceLock::new();
    SUITE.get_or_init(|| {
        Suite::new(
            Platform {
                client_ip_header: "x-test-client-ip",
                non_utf8_header: NonUtf8Header::RefusedInRequests,
                cl_with_te: ClWithTe::ContentLengthDropped,
                two_hosts: TwoHosts::Passed,
                other_host_target: OtherHostTarget::ConnectionClosed,
                cut_before_head: CutBeforeHead::MayCloseWithoutHead,
                one_isolate: false,
                runtime: "spin",
            },
            |ports| {
                let (config, manifest) = e2e_files("spin", &ports.upstream, &ports.jwks);
                build_spin_ok(&config, &manifest);
                start_spin(&manifest)
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

/// A fresh client address, its key under the `brief` rate limit (5 a second per address), and
/// the Spin host's `default` store, for the cases that look into the store.
struct Brief {
    ip: String,
    key: String,
    stores: spin_test_host::StoreData,
}

impl Brief {
    fn new(s: &Suite) -> Brief {
        let ip = s.client_ip();
        Brief {
            key: format!("rl:brief:{ip}"),
            ip,
            stores: s.gw.stores.clone().expect("the Spin host shows its stores"),
        }
    }

    /// What the store holds under the key.
    fn stored(&self) -> Option<Vec<u8>> {
        self.stores
            .lock()
            .unwrap()
            .get("default")?
            .get(&self.key)
            .cloned()
    }

    /// Writes `value` under the key, as a sweeper would.
    fn put(&self, value: Vec<u8>) {
        let mut stores = self.stores.lock().unwrap();
        let store = stores.entry("default".into()).or_default();
        store.insert(self.key.clone(), value);
    }

    /// Deletes the key, as a sweeper would.
    fn delete(&self) {
        if let Some(store) = self.stores.lock().unwrap().get_mut("default") {
            store.remove(&self.key);
        }
    }

    /// Every store's keys, to show in a failure.
    fn all_keys(&self) -> Vec<(String, Vec<String>)> {
        let stores = self.stores.lock().unwrap();
        stores
            .iter()
            .map(|(label, m)| (label.clone(), m.keys().cloned().collect()))
            .collect()
    }

    fn send(&self, s: &Suite) -> Reply {
        s.send_from(&self.ip, "GET", "/brief", &[], b"")
    }
}

/// Spin's store has no TTL: an expired rate-limit state stays stored until a sweep deletes it
/// (`adapters/spin/src/expiry.rs`). The suite's manifest sweeps on every request.
#[test]
fn expired_entries_are_swept() {
    let s = suite();
    let c = Brief::new(s);
    let r = c.send(s);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        c.stored().is_some(),
        "the request stored no state under {}: {:?}",
        c.key,
        c.all_keys()
    );
    // `brief` allows 5 a second: one request's state has expired a second later; the requests
    // after that (from another address) run the sweeps
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while c.stored().is_some() && std::time::Instant::now() < deadline {
        assert_eq!(s.send("GET", "/brief", &[], b"").status, 200);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        c.stored().is_none(),
        "{} is still stored 10 s after it expired",
        c.key
    );
    // what the sweep deleted was expired: the address starts again with a full quota
    let r = c.send(s);
    assert_eq!(r.header("ratelimit"), Some("\"brief\";r=4;t=1"));
}

/// A request that meets a sweep's tombstone on its rate-limit state waits for the sweeper to
/// delete it; a tombstone its sweeper never deleted stops counting after a hold time, and the
/// request then starts from no state (a full quota) and stores its own.
#[test]
fn a_rate_limit_update_outwaits_an_abandoned_sweep_tombstone() {
    let s = suite();
    let c = Brief::new(s);
    let now_ms = cases::now_ms();
    let planted = tombstone(now_ms);
    c.put(planted.clone());
    let r = c.send(s);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("ratelimit"), Some("\"brief\";r=4;t=1"));
    let after = c.stored().expect("the request stored its state");
    assert_ne!(after, planted);
    assert_eq!(classify(&after, now_ms), Stored::Live);
}

/// While a sweeper holds a fresh tombstone on a rate-limit state, a request does not write over
/// it: it waits until the sweeper has deleted the entry, so the delete cannot erase the
/// request's admission.
#[test]
fn a_rate_limit_update_waits_for_the_sweeper_to_delete() {
    let s = suite();
    let c = Brief::new(s);
    let now_ms = cases::now_ms();
    c.put(tombstone(now_ms));
    std::thread::scope(|scope| {
        let sent = scope.spawn(|| c.send(s));
        // the sweeper's delete, well inside the hold time; a request that had written over the
        // tombstone would lose its state here
        std::thread::sleep(std::time::Duration::from_millis(300));
        c.delete();
        let r = sent.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("ratelimit"), Some("\"brief\";r=4;t=1"));
    });
    let after = c
        .stored()
        .expect("the request stored its state after the delete");
    assert_eq!(classify(&after, now_ms), Stored::Live);
}
