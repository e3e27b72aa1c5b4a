//! `portcullis-build`: builds the Workers adapter the way `npx wrangler dev` and `wrangler
//! deploy` run it (wrangler.toml's `[build] command`, through `scripts/build-worker.sh`).
//!
//! ```text
//! portcullis-build worker [--opt] [--keep-names] [--profile P] [--crate DIR] [--out-dir DIR]
//! portcullis-build features [CONFIG]
//! ```
//! `worker`: `cargo build` of the crate for wasm32 with the cargo features the config
//! (`PORTCULLIS_CONFIG`, default `examples/gateway.toml`) needs, then wasm-bindgen (linked here as
//! a library, so no CLI has to be installed), then with `--opt` the npm `binaryen` package's
//! `wasm-opt`, and the entry module `adapters/workers/shim.mjs`, into `DIR/build` (or
//! `--out-dir`, relative to the crate). wrangler bundles the entry with its own esbuild.
//! `features`: prints the cargo features a config needs, comma-separated.
//!
//! What it trusts: the repository and the config file it is pointed at (the worker's own build
//! script checks the config and refuses a broken one).

use portcullis_core::config::BuildFeatures;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("worker") => Options::parse(&args[1..]).and_then(|o| build_worker(&o)),
        Some("features") => features(args.get(1).map(String::as_str)).map(|f| println!("{f}")),
        _ => Err(
            "usage: portcullis-build worker [--opt] [--keep-names] [--profile P] \
                  [--crate DIR] [--out-dir DIR] | features [CONFIG]"
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("portcullis-build: {}", message.trim_end());
            ExitCode::FAILURE
        }
    }
}

/// The repository root (this crate is `adapters/build`).
fn root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors().nth(2).unwrap_or(here).to_path_buf()
}

/// The config file the worker embeds, as its build script finds it.
fn config_file(arg: Option<&str>) -> String {
    arg.map(String::from)
        .or_else(|| std::env::var("PORTCULLIS_CONFIG").ok())
        .unwrap_or_else(|| "examples/gateway.toml".into())
}

/// The cargo features the config needs (`config::features`, the rule `check` and the worker's
/// build script apply), comma-separated.
fn features(config: Option<&str>) -> Result<String, String> {
    let file = config_file(config);
    let src = std::fs::read_to_string(root().join(&file))
        .map_err(|e| format!("cannot read the gateway config {file}: {e}"))?;
    let needed = BuildFeatures::needed_by_toml(&src).map_err(|e| e.render(&file))?;
    Ok(needed.cargo_list())
}

/// The config the worker embeds: the file, or, when it takes routes from an OpenAPI document
/// (an `[openapi]` section), the file as `portcullis expand` writes it, in
/// `target/portcullis/expanded-config.toml`. The CLI is built only then, so a build from a
/// config without the section compiles no OpenAPI parser.
fn embedded_config(root: &Path) -> Result<String, String> {
    let file = config_file(None);
    let path = root.join(&file);
    let src = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the gateway config {file}: {e}"))?;
    let has_section = src.lines().any(|l| l.trim_start().starts_with("[openapi"));
    if !has_section {
        return Ok(file);
    }
    let out = root.join("target/portcullis/expanded-config.toml");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut expand = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    expand
        .args([
            "run",
            "--quiet",
            "--locked",
            "--profile",
            "tool",
            "-p",
            "portcullis-cli",
            "--",
        ])
        .args([
            "expand",
            &path.display().to_string(),
            "-o",
            &out.display().to_string(),
        ])
        .env("CARGO_TARGET_DIR", root.join("target"))
        .current_dir(root);
    run(&mut expand, "portcullis expand")?;
    Ok(out.display().to_string())
}

struct Options {
    /// Run wasm-opt (minutes on 2 cores; `npm run deploy` and `npm run pack` ask for it).
    opt: bool,
    /// Keep the names section (function names in profiles and stack traces).
    keep_names: bool,
    profile: String,
    /// The worker crate's directory, relative to the root.
    krate: String,
    /// Where the worker goes, relative to the crate's directory (or absolute).
    out_dir: String,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            opt: false,
            keep_names: false,
            profile: "release".into(),
            krate: "adapters/workers".into(),
            out_dir: "build".into(),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().cloned().ok_or(format!("{arg} needs a value"));
            match arg.as_str() {
                "--opt" => o.opt = true,
                "--keep-names" => o.keep_names = true,
                "--profile" => o.profile = value()?,
                "--crate" => o.krate = value()?,
                "--out-dir" => o.out_dir = value()?,
                other => return Err(format!("unknown option {other}")),
            }
        }
        Ok(o)
    }
}

fn build_worker(o: &Options) -> Result<(), String> {
    let root = root();
    let crate_dir = root.join(&o.krate);
    let package = package_name(&crate_dir)?;
    // only the gateway's features depend on its config; other worker crates have none
    let config = embedded_config(&root)?;
    let features = if o.krate == "adapters/workers" {
        features(Some(&config))?
    } else {
        String::new()
    };

    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .args([
            "build",
            "--lib",
            "--target",
            "wasm32-unknown-unknown",
            "-p",
            &package,
        ])
        .args(["--profile", &o.profile])
        .current_dir(&root);
    if !features.is_empty() {
        cargo.args(["--features", &features]);
    }
    // keep the custom sections: wasm-bindgen reads `target_features` to use reference types and
    // fails ("externref table required") when the profile's `strip = true` removed it
    let profile_var = o.profile.to_uppercase().replace('-', "_");
    cargo.env(format!("CARGO_PROFILE_{profile_var}_STRIP"), "debuginfo");
    cargo.env("PORTCULLIS_CONFIG", &config);
    run(&mut cargo, "cargo build")?;

    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let profile_dir = match o.profile.as_str() {
        "dev" | "test" => "debug",
        "bench" => "release",
        other => other,
    };
    let wasm = target_dir
        .join("wasm32-unknown-unknown")
        .join(profile_dir)
        .join(format!("{}.wasm", package.replace('-', "_")));
    let out = crate_dir.join(&o.out_dir);
    bindgen(&wasm, &out)?;
    if o.opt {
        wasm_opt(&root, &out.join("index_bg.wasm"), o.keep_names)?;
    }
    let shim = root.join("adapters/workers/shim.mjs");
    std::fs::copy(&shim, out.join("shim.mjs"))
        .map_err(|e| format!("cannot copy {}: {e}", shim.display()))?;
    Ok(())
}

/// The `name` in a crate's Cargo.toml.
fn package_name(crate_dir: &Path) -> Result<String, String> {
    let manifest = crate_dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("name = \"")?.strip_suffix('"'))
        .map(String::from)
        .ok_or_else(|| format!("{} has no package name", manifest.display()))
}

/// wasm-bindgen's ES-module glue (`index.js`, `index_bg.wasm`, `snippets/`), with the
/// reset-state function and abort handler that let the glue start a fresh instance after a
/// panic aborted one.
fn bindgen(wasm: &Path, out: &Path) -> Result<(), String> {
    fn fail(e: impl std::fmt::Display) -> String {
        format!("wasm-bindgen: {e:#}")
    }
    if out.join("snippets").exists() {
        // snippets of an earlier build are named by hashes and would pile up
        std::fs::remove_dir_all(out.join("snippets")).map_err(|e| e.to_string())?;
    }
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(wasm)
        .out_name("index")
        .module(true)
        .map_err(fail)?
        .typescript(false)
        .reset_state_function(true)
        .force_enable_abort_handler(true)
        .generate(out)
        .map_err(fail)?;
    // the glue imports the wasm as a source-phase import, which neither wrangler's esbuild nor
    // Miniflare reads; a plain import gives the same WebAssembly.Module on Workers
    let glue = out.join("index.js");
    let js = std::fs::read_to_string(&glue).map_err(|e| e.to_string())?;
    std::fs::write(&glue, js.replace("import source ", "import ")).map_err(|e| e.to_string())
}

/// Shrinks the wasm with binaryen's `wasm-opt` from `npm ci`, for the features workerd runs.
fn wasm_opt(root: &Path, wasm: &Path, keep_names: bool) -> Result<(), String> {
    let bin = root.join("node_modules/.bin/wasm-opt");
    let mut cmd = Command::new(&bin);
    cmd.arg(wasm).arg("-o").arg(wasm).arg("-O");
    // binaryen inlines every function that has one caller, whatever its size: the gateway's
    // phases all became one 113 KB function, which V8 compiles whole when an isolate's first
    // request calls it, paths that request does not take included. Only small ones now: an
    // isolate's first answer came 4 ms sooner, the module 8 KB smaller (gzip), warm requests
    // no slower (BENCHMARKS.md, "Workers cold start")
    cmd.arg("--one-caller-inline-max-function-size=100");
    for feature in [
        "mutable-globals",
        "sign-ext",
        "nontrapping-float-to-int",
        "bulk-memory",
        "multivalue",
        "reference-types",
        "exception-handling",
    ] {
        cmd.arg(format!("--enable-{feature}"));
    }
    // wasm-bindgen is done with `target_features`
    cmd.args(["--strip-producers", "--strip-target-features"]);
    cmd.arg(if keep_names {
        "--debuginfo"
    } else {
        "--strip-debug"
    });
    run(&mut cmd, &format!("{} (run `npm ci`)", bin.display()))
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("{what} failed ({s})")),
        Err(e) => Err(format!("cannot run {what}: {e}")),
    }
}
