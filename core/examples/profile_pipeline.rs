//! Runs the benchmark's main request N times (default 20,000) for a profiler, with ROUTES extra
//! routes and CIDRS deny-list entries (default 0 and 2):
//! `valgrind --tool=callgrind target/release/examples/profile_pipeline 20000 1000 10000`;
//! add `--toggle-collect=profile_pipeline::handle` to count only the gateway's work. A fourth
//! argument names a config file whose upstreams and routes are loaded beside the benchmark's
//! (an imported OpenAPI document's: `portcullis import openapi`), instead of the ROUTES; a
//! fifth, the path and query to send instead of the benchmark's (then any status counts).

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response};
use portcullis_core::memory::{with_header_room, MemoryHost};
use portcullis_core::{Body, Client, Config, Gateway, HEADER_ROOM};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The system allocator, counting allocations so the run can report them per request.
struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size(), Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size, Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CONFIG: &str = r#"
[upstreams.app]
targets = [{ url = "https://app.bench" }]

[access.deny]
deny_ips = ["203.0.113.0/24", "198.51.100.0/24"]

[auth.jwt.main]
issuer = "https://issuer.bench/"
audiences = ["api"]
keys = [{ kid = "k", alg = "HS256", secret = "bench-secret-0123456789abcdef-0123456789" }]

[rate_limits.per_user]
key = "consumer"
limit = 1000000000
period_s = 1

[[routes]]
name = "items"
methods = ["GET"]
path = "/api/items/{id}"
upstream = "app"
rewrite = "/items/{id}"
access = "deny"
auth = { jwt = "main", scopes = ["items:read"] }
rate_limit = "per_user"
validate = { path = { id = "int" } }
request = { set_headers = { "x-consumer" = "{consumer}" }, remove_headers = ["cookie"] }
response = { remove_headers = ["server"] }
"#;

fn token() -> String {
    use jwt_compact::{alg::Hs256, alg::Hs256Key, AlgorithmExt, Claims, Header};
    let claims = serde_json::json!({"iss": "https://issuer.bench/", "aud": "api", "sub": "user-1", "scope": "items:read", "exp": 4_102_444_800u64});
    let claims = Claims::new(claims.as_object().cloned().unwrap_or_default());
    let key = Hs256Key::new("bench-secret-0123456789abcdef-0123456789");
    Hs256
        .token(&Header::empty().with_key_id("k"), &claims, &key)
        .expect("token")
}

/// One request through the gateway, response dropped; a symbol of its own so a profiler can
/// count just this (`--toggle-collect=profile_pipeline::handle`).
#[inline(never)]
fn handle(gw: &Gateway, req: Request<Bytes>, client: &Client, host: &MemoryHost) -> u16 {
    pollster::block_on(gw.handle(req.map(Body::Bytes), client.clone(), host))
        .status()
        .as_u16()
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let routes: usize = std::env::args()
        .nth(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let cidrs: usize = std::env::args()
        .nth(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    let mut config = CONFIG.to_string();
    if cidrs > 0 {
        // deterministic /24s spread over 11.0.0.0/8..190.0.0.0/8, never the client's 198.18/15
        let list: Vec<String> = (0..cidrs as u32)
            .map(|i| {
                format!(
                    "\"{}.{}.{}.0/24\"",
                    11 + i % 180,
                    (i / 180) % 256,
                    (i * 7) % 256
                )
            })
            .collect();
        config = config.replace(
            r#"deny_ips = ["203.0.113.0/24", "198.51.100.0/24"]"#,
            &format!("deny_ips = [{}]", list.join(", ")),
        );
    }
    if let Some(file) = std::env::args().nth(4) {
        let beside = std::fs::read_to_string(&file).expect("the routes file");
        config = format!("{beside}\n{config}");
    }
    for i in 0..routes {
        config.push_str(&format!("\n[[routes]]\nname = \"r{i}\"\nmethods = [\"GET\"]\npath = \"/svc{}/res{i}/{{id}}\"\nupstream = \"app\"\n", i % 37));
    }
    let gw = Gateway::new(Config::from_toml(&config).expect("config"));
    let host = MemoryHost::new(1_700_000_000_000, |_| {
        // built as an adapter builds an upstream's response: with room for the gateway's headers
        let mut res = Response::new(Bytes::from_static(b"{}"));
        *res.headers_mut() = HeaderMap::with_capacity(1 + HEADER_ROOM);
        res.headers_mut()
            .insert(header::SERVER, HeaderValue::from_static("x"));
        Ok(res)
    });
    host.record.set(false);
    let client = Client::new("198.18.0.1".parse().unwrap());
    let token = token();
    let target = std::env::args().nth(5);
    let uri = format!(
        "https://gw.bench{}",
        target.as_deref().unwrap_or("/api/items/42?x=1")
    );
    // requests are built first: an adapter hands the gateway a parsed request
    let requests: Vec<Request<Bytes>> = (0..n)
        .map(|_| {
            let mut req = Request::builder()
                .uri(uri.as_str())
                .header("authorization", format!("Bearer {token}"))
                .header("accept", "application/json")
                .header("user-agent", "bench")
                .body(Bytes::new())
                .unwrap();
            // its headers with room to spare, as the adapters build them
            *req.headers_mut() = with_header_room(std::mem::take(req.headers_mut()));
            req
        })
        .collect();
    let mut ok = 0;
    let (allocs, bytes) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
    #[allow(clippy::disallowed_methods)] // a harness, like an adapter: it owns the clock
    let start = std::time::Instant::now();
    for req in requests {
        ok += usize::from(handle(&gw, req, &client, &host) == 200);
    }
    let elapsed = start.elapsed();
    assert!(ok == n || target.is_some(), "{ok} of {n} answered 200");
    eprintln!(
        "{n} requests through handle: {:.3} µs each, {:.1} allocations ({:.0} bytes) each",
        elapsed.as_secs_f64() * 1e6 / n as f64,
        (ALLOCS.load(Relaxed) - allocs) as f64 / n as f64,
        (BYTES.load(Relaxed) - bytes) as f64 / n as f64,
    );
}
