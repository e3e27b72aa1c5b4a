// The build script of both adapters (included by adapters/{workers,spin}/build.rs): embeds the
// gateway config in the adapter and refuses to build from a broken one.
//
// `PORTCULLIS_CONFIG` names the TOML file (relative to the repository root, or absolute;
// default `examples/gateway.toml`). It is checked with the same code as `portcullis check`
// (`Config::embed`); any error fails the build with the same listing, so a broken config can
// never be deployed. The adapter receives the config as `'static` Rust data,
// `$OUT_DIR/config.rs` (a constant of `portcullis_core::config::emit::RawConfigStatic`, the
// `static` in `embedded_config()`), so it links no config parser and parses nothing.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    match embed() {
        Ok(_) => ExitCode::SUCCESS,
        Err(listing) => {
            eprintln!("{}", listing.trim_end());
            ExitCode::FAILURE
        }
    }
}

/// Checks the config and writes `$OUT_DIR/config.rs`; returns the config's text.
fn embed() -> Result<String, String> {
    println!("cargo::rerun-if-env-changed=PORTCULLIS_CONFIG");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let root = PathBuf::from(var("CARGO_MANIFEST_DIR")).join("../..");
    let file = std::env::var("PORTCULLIS_CONFIG").unwrap_or_else(|_| "examples/gateway.toml".into());
    let path = root.join(&file);
    println!("cargo::rerun-if-changed={}", path.display());
    let built_with = portcullis_core::config::BuildFeatures {
        json_schema: std::env::var_os("CARGO_FEATURE_JSON_SCHEMA").is_some(),
        asymmetric_jwt: std::env::var_os("CARGO_FEATURE_ASYMMETRIC_JWT").is_some(),
        hs384_hs512: std::env::var_os("CARGO_FEATURE_HS384_HS512").is_some(),
        response_cache: std::env::var_os("CARGO_FEATURE_RESPONSE_CACHE").is_some(),
        telemetry: std::env::var_os("CARGO_FEATURE_TELEMETRY").is_some(),
    };
    let src = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the gateway config {file}: {e}"))?;
    let code = portcullis_core::Config::embed(&src, &file, built_with)?;
    let out = PathBuf::from(var("OUT_DIR")).join("config.rs");
    std::fs::write(&out, code).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    Ok(src)
}
