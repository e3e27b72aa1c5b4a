//! Criterion benchmarks: each phase on its own, and the whole pipeline (`Gateway::handle` on the
//! in-memory host) as the route table and the deny list grow, with each JWT algorithm.
//!
//! Run: `cargo bench -p portcullis-core`. Results land in `target/criterion/`; BENCHMARKS.md
//! summarizes a run.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response};
use jwt_compact::alg::{Ed25519, Es256, Hs256, Hs256Key, ModulusBits, Rsa, RsaPublicKey};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{AlgorithmExt, Claims, Header};
use portcullis_core::config::raw::Alg;
use portcullis_core::memory::{with_header_room, MemoryHost};
use portcullis_core::phase::{access, auth, cache, observe, ratelimit, transform, validate};
use portcullis_core::{Body, Client, Config, Gateway, HEADER_ROOM};
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use std::hint::black_box;
use std::time::Duration;

const NOW: u64 = 1_700_000_000_000;
const SECRET: &str = "bench-secret-0123456789abcdef-0123456789";

fn claims() -> Claims<Map<String, Value>> {
    let m = json!({"iss": "https://issuer.bench/", "aud": "api", "sub": "user-1", "scope": "items:read", "exp": NOW / 1000 + 3600});
    Claims::new(m.as_object().unwrap().clone())
}

/// A token and the matching `[auth.jwt.main]` key line, per algorithm.
fn token_and_key(alg: Alg) -> (String, String) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let header = Header::empty().with_key_id("k");
    let (token, jwk): (String, Option<Value>) = match alg {
        Alg::HS256 => (
            Hs256
                .token(&header, &claims(), &Hs256Key::new(SECRET))
                .unwrap(),
            None,
        ),
        Alg::RS256 => {
            let (sk, _) = Rsa::generate(&mut rng, ModulusBits::TwoKibibytes).unwrap();
            let sk = sk.into_inner();
            let jwk = serde_json::to_value(JsonWebKey::from(&RsaPublicKey::from(&sk))).unwrap();
            (
                Rsa::rs256().token(&header, &claims(), &sk).unwrap(),
                Some(jwk),
            )
        }
        Alg::ES256 => {
            let sk = p256::ecdsa::SigningKey::random(&mut rng);
            let jwk = serde_json::to_value(JsonWebKey::from(sk.verifying_key())).unwrap();
            (Es256.token(&header, &claims(), &sk).unwrap(), Some(jwk))
        }
        Alg::EdDSA => {
            let (sk, pk) = Ed25519::generate(&mut rng);
            let jwk = serde_json::to_value(JsonWebKey::from(&pk)).unwrap();
            (Ed25519.token(&header, &claims(), &sk).unwrap(), Some(jwk))
        }
        other => unreachable!("{other:?} is not benchmarked"),
    };
    let key = match jwk {
        None => format!(
            r#"{{ kid = "k", alg = "{}", secret = "{SECRET}" }}"#,
            alg.name()
        ),
        Some(jwk) => {
            let fields: Vec<String> = jwk
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect();
            format!(
                r#"{{ kid = "k", alg = "{}", jwk = {{ {} }} }}"#,
                alg.name(),
                fields.join(", ")
            )
        }
    };
    (token, key)
}

/// `n` random IPv4 CIDRs (/16../32), none covering the benchmark client.
fn cidrs(n: usize) -> Vec<String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(n as u64);
    (0..n)
        .map(|_| {
            let ip: u32 = rng.gen_range(0x0B00_0000..0xC000_0000); // 11.0.0.0 .. 191.255.255.255
            let len = rng.gen_range(16..=32);
            let net = ip & (u32::MAX << (32 - len));
            format!("\"{}/{len}\"", std::net::Ipv4Addr::from(net))
        })
        .collect()
}

/// A config with `routes` routes and a deny list of `deny` CIDRs; the benchmarked route is
/// `GET /api/items/{id}` with validation, the deny list, JWT auth, a rate limit and transforms.
fn config(routes: usize, deny: usize, key: &str, token_cache: usize) -> String {
    let mut s = format!(
        r#"
[gateway]
token_cache_size = {token_cache}

[upstreams.app]
targets = [{{ url = "https://app.bench" }}]

[access.deny]
deny_ips = [{}]

[auth.jwt.main]
issuer = "https://issuer.bench/"
audiences = ["api"]
keys = [{key}]

[rate_limits.per_user]
key = "consumer"
limit = 1000000000
period_s = 1

[transforms.up]
set_headers = {{ "x-consumer" = "{{consumer}}" }}
remove_headers = ["cookie"]

[[routes]]
name = "items"
methods = ["GET"]
path = "/api/items/{{id}}"
upstream = "app"
rewrite = "/items/{{id}}"
access = "deny"
auth = {{ jwt = "main", scopes = ["items:read"] }}
rate_limit = "per_user"
validate = {{ path = {{ id = "int" }} }}
request = "up"
response = {{ remove_headers = ["server"] }}
"#,
        cidrs(deny).join(", ")
    );
    for i in 1..routes {
        s.push_str(&format!("\n[[routes]]\nname = \"r{i}\"\nmethods = [\"GET\", \"POST\"]\npath = \"/svc{}/v{}/res{i}/{{id}}\"\nupstream = \"app\"\n", i % 37, i % 5));
    }
    s
}

fn backend() -> MemoryHost {
    let host = MemoryHost::new(NOW, |_| {
        // built as an adapter builds an upstream's response: with room for the gateway's headers
        let mut res = Response::new(Bytes::from_static(b"{}"));
        *res.headers_mut() = HeaderMap::with_capacity(1 + HEADER_ROOM);
        res.headers_mut()
            .insert(header::SERVER, HeaderValue::from_static("x"));
        Ok(res)
    });
    host.record.set(false);
    host
}

/// The benchmark's request, its headers with room to spare as the adapters build them.
fn request(token: &str) -> Request<Bytes> {
    let mut req = Request::builder()
        .method("GET")
        .uri("https://gw.bench/api/items/42?x=1")
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/json")
        .header("user-agent", "bench")
        .body(Bytes::new())
        .unwrap();
    *req.headers_mut() = with_header_room(std::mem::take(req.headers_mut()));
    req
}

fn pipeline(c: &mut Criterion) {
    let client = Client::new("198.18.0.1".parse().unwrap());
    let (hs_token, hs_key) = token_and_key(Alg::HS256);
    let mut g = c.benchmark_group("pipeline/hs256-cached");
    g.throughput(Throughput::Elements(1));
    for routes in [10, 1_000, 10_000] {
        for deny in [10, 10_000, 100_000] {
            let gw =
                Gateway::new(Config::from_toml(&config(routes, deny, &hs_key, 10_000)).unwrap());
            let host = backend();
            let res = pollster::block_on(gw.handle(
                request(&hs_token).map(Body::Bytes),
                client.clone(),
                &host,
            ));
            assert_eq!(res.status(), 200, "{:?}", res.body());
            g.bench_function(
                BenchmarkId::from_parameter(format!("{routes}-routes/{deny}-cidrs")),
                |b| {
                    // the adapter hands the gateway an already-parsed request: build it untimed
                    b.iter_batched(
                        || request(&hs_token),
                        |r| {
                            pollster::block_on(gw.handle(r.map(Body::Bytes), client.clone(), &host))
                        },
                        BatchSize::SmallInput,
                    )
                },
            );
        }
    }
    g.finish();

    // every request verifies its token: the token cache is off
    let mut g = c.benchmark_group("pipeline/verify-every-time");
    for alg in [Alg::HS256, Alg::ES256, Alg::RS256, Alg::EdDSA] {
        let (token, key) = token_and_key(alg);
        let gw = Gateway::new(Config::from_toml(&config(1_000, 10_000, &key, 0)).unwrap());
        let host = backend();
        assert_eq!(
            pollster::block_on(gw.handle(request(&token).map(Body::Bytes), client.clone(), &host))
                .status(),
            200
        );
        g.bench_function(alg.name(), |b| {
            b.iter_batched(
                || request(&token),
                |r| pollster::block_on(gw.handle(r.map(Body::Bytes), client.clone(), &host)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// The pipeline with `[telemetry]` off; counting every request (`metrics`: each request's counts
/// encoded and handed to the collector, as on Spin; `metrics-isolate`: gathered in an isolate's
/// batch, as on Workers, one export after `batch_ms`); and tracing every request as well (`on`,
/// each request's spans and counts sent). The in-memory host answers the collector at once. On
/// a runtime the export itself happens after the answer; what the answer waits for is the
/// building and encoding, each row less `off`.
fn telemetry(c: &mut Criterion) {
    let client = Client::new("198.18.0.1".parse().unwrap());
    let (token, key) = token_and_key(Alg::HS256);
    let section = |keys: &str| {
        format!(
            "\n[upstreams.collector]\ntargets = [{{ url = \"https://otel.bench\" }}]\n\n\
             [telemetry]\nupstream = \"collector\"\n{keys}\n"
        )
    };
    let mut g = c.benchmark_group("pipeline/telemetry");
    let variants = [
        ("off", String::new(), false),
        ("metrics", section("traces = false"), false),
        ("metrics-isolate", section("traces = false"), true),
        ("on", section("sample = 1.0"), false),
    ];
    for (name, extra, isolate) in variants {
        let src = config(10, 10, &key, 10_000) + &extra;
        let gw = Gateway::new(Config::from_toml(&src).unwrap());
        let host = backend();
        host.shares_isolate.set(isolate);
        let run = |r: Request<Bytes>| {
            let res = pollster::block_on(gw.handle(r.map(Body::Bytes), client.clone(), &host));
            // in an isolate the batch's wait would run once a second: not per request
            let later = host.take_later();
            if !isolate {
                for later in later {
                    pollster::block_on(gw.run_later(later, &host));
                }
            }
            res
        };
        assert_eq!(run(request(&token)).status(), 200);
        g.bench_function(name, |b| {
            b.iter_batched(|| request(&token), run, BatchSize::SmallInput)
        });
    }
    g.finish();
}

fn phases(c: &mut Criterion) {
    let mut g = c.benchmark_group("phase");
    g.bench_function("validate/normalize_path", |b| {
        b.iter(|| validate::normalize_path(black_box("/api/v1/../v2/items/%7E42//x")))
    });

    for n in [10, 10_000, 100_000] {
        let set = access::IpSet::new(
            cidrs(n)
                .iter()
                .map(|c| access::parse_cidr(c.trim_matches('"')).unwrap()),
        );
        let ip = "198.18.0.1".parse().unwrap();
        g.bench_function(BenchmarkId::new("access/contains", n), |b| {
            b.iter(|| set.contains(black_box(ip)))
        });
    }

    for n in [10, 1_000, 10_000] {
        let cfg = Config::from_toml(&config(n, 10, &token_and_key(Alg::HS256).1, 0)).unwrap();
        g.bench_function(BenchmarkId::new("route/find", n), |b| {
            b.iter(|| {
                cfg.router
                    .find(&Method::GET, Some("gw.bench"), black_box("/api/items/42"))
            })
        });
    }

    let provider = Config::from_toml(&config(1, 1, &token_and_key(Alg::HS256).1, 0))
        .unwrap()
        .jwt[portcullis_core::config::Id::new(0)]
    .clone();
    for alg in [Alg::HS256, Alg::ES256, Alg::RS256, Alg::EdDSA] {
        let (token, key_line) = token_and_key(alg);
        let cfg = Config::from_toml(&config(1, 1, &key_line, 0)).unwrap();
        let keys: Vec<&auth::Key> = cfg.jwt[portcullis_core::config::Id::new(0)]
            .keys
            .iter()
            .collect();
        g.bench_function(BenchmarkId::new("auth/verify", alg.name()), |b| {
            b.iter(|| auth::verify_token(&provider, &keys, black_box(&token), NOW))
        });
    }

    let quota = ratelimit::Quota {
        name: "q".into(),
        limit: 100,
        period_ms: 60_000,
        algorithm: portcullis_core::config::raw::LimitAlgorithm::Gcra,
        calendar: None,
        burst: 100,
        shards: 1,
        key: ratelimit::LimitKey::Ip,
        ip_prefix: ratelimit::IpPrefix::default(),
        fail_open: true,
    };
    let sliding = ratelimit::Quota {
        algorithm: portcullis_core::config::raw::LimitAlgorithm::SlidingWindow,
        ..quota.clone()
    };
    let monthly = ratelimit::Quota {
        calendar: Some(portcullis_core::config::raw::CalendarPeriod::Month),
        ..quota.clone()
    };
    for (name, quota) in [
        ("ratelimit/admit", &quota),
        ("ratelimit/admit-sliding-window", &sliding),
        ("ratelimit/admit-calendar-month", &monthly),
    ] {
        let (_, state) = ratelimit::admit(quota, None, NOW, 1);
        g.bench_function(name, |b| {
            b.iter(|| ratelimit::admit(quota, black_box(Some(state)), NOW, 1))
        });
    }

    let rule = cache::CacheRule {
        ttl_s: 30,
        key_headers: vec![],
        per_consumer: false,
        fail_open: true,
        credential_headers: Vec::new(),
        credential_query: Vec::new(),
        max_bytes: 1 << 20,
        stale_if_error_s: 0,
        stale_while_revalidate_s: 0,
        tags: Vec::new(),
    };
    let req = Request::builder()
        .uri("http://gw.bench/items/42?b=2&a=1")
        .body(Bytes::new())
        .unwrap();
    let res = Response::builder()
        .header("cache-control", "max-age=60")
        .header("etag", "\"1\"")
        .body(Bytes::from_static(b"{\"id\":42}"))
        .unwrap();
    let (stored, _) = cache::store(&rule, &req, &res, NOW).unwrap();
    g.bench_function("cache/key", |b| {
        b.iter(|| cache::key(&rule, 0, "items", black_box(&req), None))
    });
    g.bench_function("cache/serve", |b| {
        // the entry read back from the store's bytes, then served
        b.iter(|| {
            let entry = cache::Stored::parse(black_box(&stored))?;
            cache::serve(&entry, &req, NOW + 1_000, None)
        })
    });

    let tr = transform::Transform {
        set_headers: vec![(
            http::HeaderName::from_static("x-consumer"),
            transform::ValueTemplate::parse("{consumer}").unwrap(),
        )],
        remove_headers: vec![http::HeaderName::from_static("cookie")],
        ..Default::default()
    };
    let headers = request("t").headers().clone();
    let vars = transform::Vars {
        consumer: "user-1",
        route: "items",
        request_id: "r",
        client_ip: "198.18.0.1",
    };
    g.bench_function("transform/headers", |b| {
        b.iter(|| {
            let mut h = headers.clone();
            transform::apply_headers(&tr, &mut h, &vars);
            h
        })
    });

    let mut log = observe::AccessLog {
        request_id: "0123456789abcdef0123456789abcdef",
        route: Some("items"),
        status: 200,
        ..Default::default()
    };
    for p in &observe::Phase::ALL[..7] {
        log.phase(*p, "pass", 0, 3);
    }
    g.bench_function("observe/to_json", |b| b.iter(|| black_box(&log).to_json()));
    // the same record through serde's generic serializer, which `to_json` replaces
    g.bench_function("observe/to_json_via_serde", |b| {
        b.iter(|| serde_json::to_string(black_box(&log)).unwrap())
    });
    g.finish();
}

fn quick() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40)
}

criterion_group! { name = benches; config = quick(); targets = phases, pipeline, telemetry }
criterion_main!(benches);
