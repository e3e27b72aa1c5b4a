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

#[derive(serde::Deserialize)]
struct Manifest {
    component: std::collections::BTreeMap<String, Component>,
}

#[derive(serde::Deserialize)]
struct Component {
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
}

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
    let manifest = root.join(std::env::var("SPIN_MANIFEST").unwrap_or_else(|_| "spin.toml".into()));
    println!("cargo::rerun-if-changed={}", manifest.display());
    let check = || -> Result<Vec<String>, String> {
        let src = std::fs::read_to_string(&manifest)
            .map_err(|e| format!("cannot read {}: {e}", manifest.display()))?;
        let m: Manifest = toml::from_str(&src).map_err(|e| format!("spin.toml: {e}"))?;
        let allowed = m
            .component
            .get("portcullis")
            .ok_or("spin.toml: no [component.portcullis]")?
            .allowed_outbound_hosts
            .clone();
        // checked by `embed` already, so this cannot fail on the config itself
        let config =
            portcullis_core::Config::from_toml(&config_src).map_err(|e| e.render("config"))?;
        Ok(config.outbound_origins_not_in(&allowed))
    };
    match check() {
        Ok(missing) if missing.is_empty() => ExitCode::SUCCESS,
        Ok(missing) => {
            for origin in &missing {
                eprintln!("spin.toml: component.portcullis.allowed_outbound_hosts: add \"{origin}\" (the gateway config calls it)");
            }
            eprintln!(
                "{} error{}; nothing was built",
                missing.len(),
                if missing.len() == 1 { "" } else { "s" }
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
