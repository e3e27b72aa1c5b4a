//! `spin-bench`: the Spin benchmark. In one run, in one wasmtime test host process, measures
//! per-request latency (p50/p99) and throughput of Portcullis (benches/gateway.toml, via
//! benches/spin/portcullis.toml), of Portcullis with 1,000 more routes and 10,000 more CIDRs
//! (benches/spin/portcullis-large.toml) and of a pass-through component
//! (benches/spin/passthrough.toml), all in front of the same local upstream, plus the upstream
//! direct and the host's instantiation time per request. With `SPIN_BIN` set it also runs the
//! three components on that real Spin CLI, one instance per request (the case where an
//! instance's start-up is paid by every request). The test host here is a debug build (its
//! dependencies unoptimized but Cranelift), so its absolute figures are slower than real Spin's;
//! compare within one runtime. Loopback only; ROUNDS (default 3) x
//! SECONDS (default 5) per target; BENCH_PATH picks the request (default `/items/42`),
//! CONCURRENCY the number of connections (default 1). Writes
//! target/bench/spin.{md,json}. Run it with scripts/bench-spin.sh.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const UPSTREAM: &str = "127.0.0.1:18190";
const MAX_REQUESTS: usize = 20_000;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A keep-alive upstream answering a small JSON document.
fn upstream() {
    let listener = TcpListener::bind(UPSTREAM).unwrap_or_else(|e| panic!("bind {UPSTREAM}: {e}"));
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            conn.set_nodelay(true).ok();
            std::thread::spawn(move || {
                let body = r#"{"id":1,"name":"item","tags":["a","b"]}"#;
                let mut r = BufReader::new(conn.try_clone().expect("clone"));
                let mut w = conn;
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line.trim().is_empty() {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut skip = vec![0; len];
                    if r.read_exact(&mut skip).is_err() {
                        return;
                    }
                    // one write: head and body in two segments would meet Nagle and delayed ACKs
                    let answer = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nserver: bench\r\n\r\n{body}", body.len());
                    if w.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// One keep-alive connection; each call sends GET `BENCH_PATH` (default `/items/42`, the rate-limited
/// route; `/unlimited/42` is the same route without the limit) and reads the whole answer.
struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
    head: String,
}

impl Client {
    fn new(addr: &str, headers: &[(&str, &str)]) -> Client {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_nodelay(true).ok();
        let path = std::env::var("BENCH_PATH").unwrap_or_else(|_| "/items/42".into());
        let mut head = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n");
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        Client {
            r: BufReader::new(s.try_clone().expect("clone")),
            w: s,
            head,
        }
    }

    fn get(&mut self) -> u16 {
        self.w.write_all(self.head.as_bytes()).expect("send");
        let mut line = String::new();
        self.r.read_line(&mut line).expect("status line");
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut len = 0usize;
        loop {
            line.clear();
            self.r.read_line(&mut line).expect("header");
            if line.trim().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        self.r.read_exact(&mut body).expect("body");
        status
    }
}

/// A name, an address and the headers to send.
type Target<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);

struct Measured {
    n: usize,
    p50_ms: f64,
    p99_ms: f64,
    rps: f64,
}

/// `CONCURRENCY` keep-alive connections (default 1), each sending its next request when the
/// last is answered, for `seconds` or [`MAX_REQUESTS`] requests in all.
fn measure(addr: &str, headers: &[(&str, &str)], seconds: u64) -> Measured {
    let concurrency = env_num("CONCURRENCY", 1).max(1) as usize;
    let start = Instant::now();
    let per_connection = MAX_REQUESTS.div_ceil(concurrency);
    let mut lat: Vec<f64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                scope.spawn(|| {
                    let mut c = Client::new(addr, headers);
                    let mut lat = Vec::new();
                    while start.elapsed() < Duration::from_secs(seconds)
                        && lat.len() < per_connection
                    {
                        let t = Instant::now();
                        let status = c.get();
                        assert_eq!(status, 200, "{addr} answered {status}");
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    lat
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a load connection"))
            .collect()
    });
    let secs = start.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| lat[((p / 100.0) * lat.len() as f64) as usize].min(lat[lat.len() - 1]);
    Measured {
        n: lat.len(),
        p50_ms: pct(50.0),
        p99_ms: pct(99.0),
        rps: lat.len() as f64 / secs,
    }
}

/// `spin up` of `manifest` on a free port, one instance per request, its output discarded; and
/// its address once it listens, and its state directory (the key-value store's SQLite file),
/// made under `state_base`.
fn real_spin(
    spin: &str,
    root: &Path,
    manifest: &str,
    state_base: &Path,
) -> (Child, String, PathBuf) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let state = state_base.join(format!("portcullis-spin-bench-{port}"));
    let _ = std::fs::remove_dir_all(&state);
    // its own process group: `spin up` runs the trigger as a child process of its own, which
    // the end of the benchmark stops with it
    use std::os::unix::process::CommandExt;
    let child = Command::new(spin)
        .process_group(0)
        .args(["up", "--listen", &addr, "--disable-cache"])
        .args(["--max-instance-reuse-count", "1"])
        .arg("--from")
        .arg(root.join(manifest))
        .arg("--state-dir")
        .arg(&state)
        .arg("--log-dir")
        .arg(state.join("logs"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{spin} up: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "{spin} up did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (child, addr, state)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn main() {
    let rounds = env_num("ROUNDS", 3);
    let seconds = env_num("SECONDS", 5);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    upstream();
    let start = |manifest: &str| {
        spin_test_host::start(&root.join(manifest), "127.0.0.1:0", false)
            .unwrap_or_else(|e| panic!("{manifest}: {e}"))
    };
    let portcullis = start("benches/spin/portcullis.toml");
    let large = start("benches/spin/portcullis-large.toml");
    let passthrough = start("benches/spin/passthrough.toml");
    let spin = std::env::var("SPIN_BIN").ok();
    let real: Vec<(Child, String, PathBuf)> = spin
        .iter()
        .flat_map(|bin| {
            let tmp = std::env::temp_dir();
            let on = |m: &str| real_spin(bin, &root, m, &tmp);
            // Spin's SQLite store syncs each commit to its disk; on tmpfs the sync costs
            // nothing, which shows how much of the exact limit's cost is the store's disk
            let shm = Path::new("/dev/shm");
            let shm = if shm.is_dir() { shm } else { &tmp };
            [
                on("benches/spin/passthrough.toml"),
                on("benches/spin/portcullis.toml"),
                on("benches/spin/portcullis-large.toml"),
                real_spin(bin, &root, "benches/spin/portcullis.toml", shm),
            ]
        })
        .collect();
    let token =
        std::env::var("BENCH_TOKEN").expect("BENCH_TOKEN: an HS256 token for benches/gateway.toml");
    let auth = format!("Bearer {token}");
    let (p_addr, t_addr) = (portcullis.addr.to_string(), passthrough.addr.to_string());
    let l_addr = large.addr.to_string();
    let mut targets: Vec<Target> = vec![
        ("upstream", UPSTREAM, vec![]),
        ("passthrough", &t_addr, vec![]),
        ("portcullis", &p_addr, vec![("authorization", &auth)]),
        (
            "portcullis, 1,000 routes, 10,000 CIDRs",
            &l_addr,
            vec![("authorization", &auth)],
        ),
    ];
    if let [(_, pass, _), (_, small, _), (_, big, _), (_, tmpfs, _)] = real.as_slice() {
        let header = || vec![("authorization", auth.as_str())];
        targets.push(("real Spin: passthrough", pass, vec![]));
        targets.push(("real Spin: portcullis", small, header()));
        targets.push((
            "real Spin: portcullis, 1,000 routes, 10,000 CIDRs",
            big,
            header(),
        ));
        targets.push(("real Spin: portcullis, store on tmpfs", tmpfs, header()));
    }
    for (_, addr, headers) in &targets {
        let mut c = Client::new(addr, headers);
        for _ in 0..200 {
            assert_eq!(c.get(), 200, "warm-up against {addr}");
        }
    }
    let mut results: Vec<(&str, Vec<Measured>)> =
        targets.iter().map(|(n, _, _)| (*n, Vec::new())).collect();
    for round in 1..=rounds {
        for (i, (name, addr, headers)) in targets.iter().enumerate() {
            let m = measure(addr, headers, seconds);
            eprintln!(
                "round {round} {name}: p50 {:.3} ms, p99 {:.3} ms, {:.0} req/s ({} requests)",
                m.p50_ms, m.p99_ms, m.rps, m.n
            );
            results[i].1.push(m);
        }
    }
    let inst = |s: &spin_test_host::Server| {
        let mut v = s
            .instantiate_us
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        v.sort_unstable();
        (v[v.len() / 2], v[v.len() * 99 / 100], v.len())
    };
    let (pi50, pi99, pn) = inst(&portcullis);
    let (ti50, ti99, tn) = inst(&passthrough);
    let size = |file: &str| {
        std::fs::metadata(root.join(file))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let mut md = String::from("| target | p50 ms | p99 ms | req/s |\n|---|---|---|---|\n");
    let mut json = Vec::new();
    for (name, rounds) in &results {
        let (p50, p99, rps) = (
            median(rounds.iter().map(|m| m.p50_ms).collect()),
            median(rounds.iter().map(|m| m.p99_ms).collect()),
            median(rounds.iter().map(|m| m.rps).collect()),
        );
        md.push_str(&format!("| {name} | {p50:.3} | {p99:.3} | {rps:.0} |\n"));
        json.push(format!(
            r#""{name}":{{"p50_ms":{p50:.4},"p99_ms":{p99:.4},"rps":{rps:.1}}}"#
        ));
    }
    md.push_str(&format!(
        "\n{} connection(s), {}\ninstantiation per request: portcullis p50 {pi50} us / p99 {pi99} us ({pn} requests); passthrough p50 {ti50} us / p99 {ti99} us ({tn})\n",
        env_num("CONCURRENCY", 1).max(1),
        std::env::var("BENCH_PATH").unwrap_or_else(|_| "/items/42".into()),
    ));
    md.push_str(&format!(
        "component sizes: portcullis {} B, passthrough {} B (raw; gzip in scripts/bench-spin.sh output)\n",
        size("target/bench-spin/wasm32-wasip2/release/portcullis_spin.wasm"),
        size("target/bench-spin/wasm32-wasip2/release/passthrough_spin.wasm")
    ));
    let out = root.join("target/bench");
    std::fs::create_dir_all(&out).expect("target/bench");
    std::fs::write(out.join("spin.md"), &md).expect("write spin.md");
    std::fs::write(
        out.join("spin.json"),
        format!(
            r#"{{"rounds":{rounds},"seconds":{seconds},"median":{{{}}},"instantiate_us":{{"portcullis":{{"p50":{pi50},"p99":{pi99}}},"passthrough":{{"p50":{ti50},"p99":{ti99}}}}}}}"#,
            json.join(",")
        ),
    )
    .expect("write spin.json");
    println!("{md}");
    for (mut child, _, state) in real {
        let group = format!("-{}", child.id());
        let _ = Command::new("kill").args(["--", &group]).status();
        let _ = child.wait();
        let _ = std::fs::remove_dir_all(state);
    }
}
