//! Embeds the gateway config in the worker, and refuses to build a worker from a broken one.
//!
//! `PORTCULLIS_CONFIG` names the TOML file (relative to the repository root, or absolute;
//! default `examples/gateway.toml`). It is loaded with the same code as `portcullis check`; any
//! error fails the build with the same listing, so a broken config can never be deployed. The
//! worker receives it as JSON (`$OUT_DIR/config.json`), which it parses once per isolate.

use portcullis_core::Config;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    println!("cargo::rerun-if-env-changed=PORTCULLIS_CONFIG");
    let root = PathBuf::from(env("CARGO_MANIFEST_DIR")).join("../..");
    let file =
        std::env::var("PORTCULLIS_CONFIG").unwrap_or_else(|_| "examples/gateway.toml".into());
    let path = root.join(&file);
    println!("cargo::rerun-if-changed={}", path.display());
    let src = match std::fs::read_to_string(&path) {
        Ok(src) => src,
        Err(e) => return fail(&format!("cannot read the gateway config {file}: {e}")),
    };
    if let Err(errors) = Config::from_toml(&src) {
        return fail(
            &errors
                .render(&file)
                .replace("nothing was loaded", "nothing was built"),
        );
    }
    let raw = match Config::raw_from_toml(&src) {
        Ok(raw) => raw,
        Err(errors) => return fail(&errors.render(&file)),
    };
    if std::env::var_os("CARGO_FEATURE_JSON_SCHEMA").is_none() {
        let with_schema: Vec<String> = raw
            .routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.validate.as_ref().is_some_and(|v| v.body_schema.is_some()))
            .map(|(i, _)| format!("{file}: routes[{i}].validate.body_schema: this worker is built without the `json-schema` feature"))
            .collect();
        if !with_schema.is_empty() {
            return fail(&format!(
                "{}\nbuild with the default features, or remove the schemas; nothing was built",
                with_schema.join("\n")
            ));
        }
    }
    let json = match serde_json::to_string(&raw) {
        Ok(json) => json,
        Err(e) => return fail(&format!("cannot convert {file} to JSON: {e}")),
    };
    let out = PathBuf::from(env("OUT_DIR")).join("config.json");
    if let Err(e) = std::fs::write(&out, json) {
        return fail(&format!("cannot write {}: {e}", out.display()));
    }
    ExitCode::SUCCESS
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

fn fail(listing: &str) -> ExitCode {
    eprintln!("{listing}");
    ExitCode::FAILURE
}
