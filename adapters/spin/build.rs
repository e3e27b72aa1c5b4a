//! Embeds the gateway config in the component (`adapters/embed-config.rs`), and checks that
//! `spin.toml` lets the component reach every upstream and JWKS host the config names: Spin
//! refuses outbound calls to hosts missing from `allowed_outbound_hosts`, and that is better
//! found here than as a 502 in production.

#[allow(dead_code)] // its `main` is the Workers adapter's build script; this one calls `embed`
mod embed {
    include!("../embed-config.rs");
    pub fn run() -> Result<String, String> {
        embed()
    }
}

use std::process::ExitCode;

fn main() -> ExitCode {
    let config_src = match embed::run() {
        Ok(src) => src,
        Err(listing) => {
            eprintln!("{}", listing.trim_end());
            return ExitCode::FAILURE;
        }
    };
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default())
        .join("../..");
    // SPIN_MANIFEST: another manifest to check against (relative to the repository root)
    println!("cargo::rerun-if-env-changed=SPIN_MANIFEST");
    let file = std::env::var("SPIN_MANIFEST").unwrap_or_else(|_| "spin.toml".into());
    let manifest = root.join(&file);
    println!("cargo::rerun-if-changed={}", manifest.display());
    let check = || -> Result<(), String> {
        let src = std::fs::read_to_string(&manifest)
            .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
        // checked by `embed` already, so this cannot fail on the config itself
        let config =
            portcullis_core::Config::from_toml(&config_src).map_err(|e| e.render("config"))?;
        let name = std::path::Path::new(&file)
            .file_name()
            .and_then(|n| n.to_str());
        config.check_spin_manifest(&src, name.unwrap_or("spin.toml"), "portcullis")
    };
    match check() {
        Ok(()) => ExitCode::SUCCESS,
        Err(listing) => {
            eprintln!("{}", listing.trim_end());
            ExitCode::FAILURE
        }
    }
}
