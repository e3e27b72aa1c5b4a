//! Runs the benchmark's main request N times (default 20,000) for a profiler:
//! `valgrind --tool=callgrind target/release/examples/profile_pipeline 20000`.

use bytes::Bytes;
use http::{Request, Response};
use portcullis_core::memory::MemoryHost;
use portcullis_core::{Client, Config, Gateway};

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

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let gw = Gateway::new(Config::from_toml(CONFIG).expect("config"));
    let host = MemoryHost::new(1_700_000_000_000, |_| {
        Ok(Response::builder()
            .header("server", "x")
            .body(Bytes::from_static(b"{}"))
            .unwrap())
    });
    host.record.set(false);
    let client = Client::new("198.18.0.1".parse().unwrap());
    let token = token();
    let mut ok = 0;
    for _ in 0..n {
        let req = Request::builder()
            .uri("https://gw.bench/api/items/42?x=1")
            .header("authorization", format!("Bearer {token}"))
            .header("accept", "application/json")
            .body(Bytes::new())
            .unwrap();
        ok +=
            usize::from(pollster::block_on(gw.handle(req, client.clone(), &host)).status() == 200);
    }
    assert_eq!(ok, n);
}
