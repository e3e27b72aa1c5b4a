//! Builds the gateway for a real runtime and runs it on 127.0.0.1 for the end-to-end suite.
//!
//! Workers: `scripts/build-worker.sh` (as `wrangler dev` runs it) with the suite's config, then
//! `tests/e2e/workers/serve.mjs` runs the build on workerd through Miniflare.
//! Spin: `cargo build --target wasm32-wasip2` with the suite's config and manifest, then the
//! wasmtime-based `spin-test-host` serves the component in-process, following the manifest.
//! A missing tool is a failure with the tool's own error, never a skip.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};

/// The repository root.
pub fn repo_root() -> PathBuf {
    let e2e = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    e2e.ancestors()
        .nth(2)
        .expect("tests/e2e is two levels down")
        .to_path_buf()
}

/// The placeholders for the servers' addresses in `tests/e2e/gateway.toml` and
/// `tests/e2e/spin.toml`.
const PLACEHOLDERS: [&str; 2] = ["127.0.0.1:18181", "127.0.0.1:18182"];

/// Writes the end-to-end config and Spin manifest for one suite into `target/e2e-config/SUITE/`,
/// with the upstream's and the JWKS server's addresses (ports the OS picked) in place of the
/// committed files' placeholders, and the manifest's component path made absolute. Returns
/// both paths, relative to the repository root, for the builds.
pub fn e2e_files(suite: &str, upstream: &str, jwks: &str) -> (String, String) {
    let root = repo_root();
    let dir = format!("target/e2e-config/{suite}");
    std::fs::create_dir_all(root.join(&dir)).expect("create target/e2e-config");
    let fill = |text: String| {
        text.replace(PLACEHOLDERS[0], upstream)
            .replace(PLACEHOLDERS[1], jwks)
    };
    let read = |file: &str| std::fs::read_to_string(root.join(file)).expect("read an e2e file");
    let config = fill(read("tests/e2e/gateway.toml"));
    let built = root.join("target/e2e-spin/wasm32-wasip2/wasm-dev/portcullis_spin.wasm");
    let manifest = fill(read("tests/e2e/spin.toml")).replace(
        "../../target/e2e-spin/wasm32-wasip2/wasm-dev/portcullis_spin.wasm",
        &built.display().to_string(),
    );
    let (config_file, manifest_file) = (format!("{dir}/gateway.toml"), format!("{dir}/spin.toml"));
    std::fs::write(root.join(&config_file), config).expect("write the suite's config");
    std::fs::write(root.join(&manifest_file), manifest).expect("write the suite's manifest");
    (config_file, manifest_file)
}

/// Builds the Workers adapter with `config` (relative to the repository root) into
/// `adapters/workers/OUT_DIR`. Uses its own cargo target directory, so it never waits on the
/// `cargo test` that runs it.
pub fn build_worker(config: &str, out_dir: &str) -> Output {
    let root = repo_root();
    Command::new("sh")
        .arg("scripts/build-worker.sh")
        .arg("--dev")
        .current_dir(&root)
        .env("PORTCULLIS_CONFIG", config)
        .env("WORKER_OUT_DIR", out_dir)
        .env("CARGO_TARGET_DIR", root.join("target/e2e"))
        .output()
        .expect("run scripts/build-worker.sh")
}

/// A gateway running in a runtime, and the access-log lines it has written.
pub struct Running {
    pub addr: String,
    pub logs: Arc<Mutex<Vec<String>>>,
    /// The key-value stores, when the runtime's host runs in-process (Spin) and so can show them.
    pub stores: Option<spin_test_host::StoreData>,
    /// The runtime's process, when it runs in one (Workers, real Spin); the Spin test host runs
    /// in-process.
    child: Option<Child>,
    /// Whether closing the process's stdin stops it (the Miniflare runner, real Spin's wrapper).
    stops_on_eof: bool,
}

impl Running {
    /// The resident memory of the runtime's processes (its process and every descendant: the
    /// Miniflare runner's workerd, real Spin under its wrapper), in KiB, from Linux's `/proc`.
    /// `None` for a runtime that runs in this process (the Spin test host), whose memory the
    /// suite's own servers and parallel cases share, or where `/proc` cannot be read.
    pub fn rss_kib(&self) -> Option<u64> {
        let root = self.child.as_ref()?.id();
        let mut parents = Vec::new();
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // the parent is the second field after the command, which ends with the last ')'
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parents.push((pid, ppid));
            }
        }
        let mut tree = vec![root];
        let mut i = 0;
        while i < tree.len() {
            let p = tree[i];
            tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
            i += 1;
        }
        let rss = |pid: u32| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        };
        Some(tree.into_iter().filter_map(rss).sum())
    }

    /// Access-log records that mention `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// [`Running::log_lines_with`], waiting up to 5 s for the first such line to arrive (the
    /// runtime writes its log apart from the answer).
    pub fn await_log_lines_with(&self, needle: &str) -> Vec<serde_json::Value> {
        let mut records = Vec::new();
        for _ in 0..50 {
            records = self.log_lines_with(needle);
            if !records.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        records
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // only the process this suite started. Closing its stdin stops it the clean way, which
        // lets a Miniflare runner stop its workerd (killed outright, it leaves workerd running);
        // it is killed only if it has not stopped within five seconds.
        if let Some(child) = &mut self.child {
            drop(child.stdin.take());
            let wait_s = if self.stops_on_eof { 5 } else { 0 };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait_s);
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Appends each line a process writes to `logs`, from a thread of its own, until the pipe ends.
fn collect_lines(
    lines: impl Iterator<Item = std::io::Result<String>> + Send + 'static,
    logs: &Arc<Mutex<Vec<String>>>,
) {
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
}

/// Runs the worker built into `adapters/workers/OUT_DIR` on workerd (Miniflare), on a free port.
pub fn start_workers(out_dir: &str) -> Running {
    start_workers_with(out_dir, &[])
}

/// [`start_workers`] with environment variables for `tests/e2e/workers/options.mjs`, e.g.
/// `PORTCULLIS_CACHE`.
pub fn start_workers_with(out_dir: &str, env: &[(&str, &str)]) -> Running {
    let root = repo_root();
    let mut child = Command::new("node")
        .arg("tests/e2e/workers/serve.mjs")
        .arg(root.join("adapters/workers").join(out_dir))
        .envs(env.iter().copied())
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start node tests/e2e/workers/serve.mjs (is Node installed and `npm ci` run?)");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let addr = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("ready http://") {
                    break url.trim_end_matches('/').to_string();
                }
            }
            _ => panic!("the Miniflare runner exited before it was ready"),
        }
    };
    let logs = Arc::new(Mutex::new(Vec::new()));
    collect_lines(lines, &logs);
    Running {
        addr,
        logs,
        stores: None,
        child: Some(child),
        stops_on_eof: true,
    }
}

/// Builds the Spin component with `config`, checked against `manifest` (both relative to the
/// repository root), into `target/e2e-spin` with the `wasm-dev` profile.
pub fn build_spin(config: &str, manifest: &str) -> Output {
    let root = repo_root();
    Command::new(env!("CARGO"))
        .args([
            "build",
            "-p",
            "portcullis-spin",
            "--target",
            "wasm32-wasip2",
            "--profile",
            "wasm-dev", // no LTO: the suites build for several configs
            "--locked",
        ])
        .current_dir(&root)
        .env("PORTCULLIS_CONFIG", config)
        .env("SPIN_MANIFEST", manifest)
        .env("CARGO_TARGET_DIR", root.join("target/e2e-spin"))
        .output()
        .expect("run cargo build for the Spin component")
}

/// [`build_spin`], failing with the build's own messages when it fails.
pub fn build_spin_ok(config: &str, manifest: &str) {
    let out = build_spin(config, manifest);
    assert!(
        out.status.success(),
        "building the component failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Serves the component `manifest` names with the wasmtime test host, on a free port.
pub fn start_spin(manifest: &str) -> Running {
    let server = spin_test_host::start(&repo_root().join(manifest), "127.0.0.1:0", false)
        .unwrap_or_else(|e| panic!("spin-test-host: {e}"));
    Running {
        addr: server.addr.to_string(),
        logs: server.logs,
        stores: Some(server.stores),
        child: None,
        stops_on_eof: false,
    }
}

/// The real Spin CLI named by `SPIN_BIN`, or `None` when the variable is unset. Spin is in no
/// package registry; `../shared/tools/SPIN.md` on the project's machines says where one is.
pub fn real_spin() -> Option<PathBuf> {
    let bin = PathBuf::from(std::env::var_os("SPIN_BIN")?);
    let bin = if bin.is_relative() {
        repo_root().join(bin)
    } else {
        bin
    };
    assert!(
        bin.is_file(),
        "SPIN_BIN names {}, which is not a file",
        bin.display()
    );
    Some(bin)
}

/// Serves the component `manifest` names with the real Spin CLI (`spin up`) on a free port,
/// with a fresh state directory (so a fresh key-value store) and `args` added (instance reuse
/// settings, say). The component's output, which Spin prints on its stderr, becomes the log.
pub fn start_real_spin(spin: &std::path::Path, manifest: &str, args: &[&str]) -> Running {
    let root = repo_root();
    // a free port: bound, read and let go (spin's own --find-free-port prints no parseable line)
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let state = std::env::temp_dir().join(format!("portcullis-spin-{}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    // Spin does not stop when its stdin closes, and a suite's `Running` lives in a static that
    // is never dropped: a shell runs it and stops it once the test process's end closes the
    // pipe, as the Miniflare runner stops itself; the shell ends when Spin does
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"exec 3<&0; "$0" "$@" & spin=$!; (cat <&3 >/dev/null; kill "$spin" 2>/dev/null) & wait "$spin""#)
        .arg(spin)
        .arg("up")
        .arg("--from")
        .arg(root.join(manifest))
        .arg("--listen")
        .arg(&addr)
        .arg("--state-dir")
        .arg(&state)
        .arg("--log-dir")
        .arg(state.join("logs"))
        .arg("--disable-cache")
        .args(args)
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {} up: {e}", spin.display()));
    let logs = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    collect_lines(BufReader::new(stdout).lines(), &logs);
    collect_lines(BufReader::new(stderr).lines(), &logs);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(&addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "spin up exited ({status}) before it listened:\n{}",
                logs.lock().unwrap().join("\n")
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "spin up did not listen on {addr} within 60 s:\n{}",
            logs.lock().unwrap().join("\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Running {
        addr,
        logs,
        stores: None,
        child: Some(child),
        stops_on_eof: true,
    }
}
