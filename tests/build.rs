//! Writes `$OUT_DIR/emitted.rs`: for every config the suites load (the examples, the end-to-end
//! and benchmark configs, `fixtures/emit.toml`), the `static` `Config::embed` writes for an
//! adapter, so that `tests/examples.rs` compiles it and compares what it builds with the file.

use std::fmt::Write;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files: Vec<String> = match std::fs::read_dir(root.join("examples")) {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".toml"))
            .map(|n| format!("examples/{n}"))
            .collect(),
        Err(e) => {
            eprintln!("cannot list examples/: {e}");
            return ExitCode::FAILURE;
        }
    };
    files.sort();
    files.extend(
        [
            "tests/e2e/gateway.toml",
            "benches/gateway.toml",
            "fuzz/gateway.toml",
            "fuzz/jwt.toml",
            "tests/fixtures/emit.toml",
        ]
        .map(String::from),
    );
    println!(
        "cargo::rerun-if-changed={}",
        root.join("examples").display()
    );
    let mut out = String::from(
        "/// (file, its embedded form) for every config the suites load.\n\
         pub static EMITTED: &[(&str, portcullis_core::config::emit::Embedded)] = &[\n",
    );
    for file in &files {
        let path = root.join(file);
        println!("cargo::rerun-if-changed={}", path.display());
        let code = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {file}: {e}"))
            .and_then(|src| {
                // a config with `[openapi]` is embedded expanded, as the Workers build does
                let dir = path.parent().unwrap_or(&root);
                portcullis_openapi::expand(&src, file, dir)
            })
            .and_then(|expanded| {
                portcullis_core::Config::embed(
                    &expanded.toml,
                    file,
                    portcullis_core::config::BuildFeatures::ALL,
                )
            });
        match code {
            Ok(code) => {
                let _ = writeln!(out, "({file:?}, {code}),");
            }
            Err(listing) => {
                eprintln!("{}", listing.trim_end());
                return ExitCode::FAILURE;
            }
        }
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR").unwrap_or_default()).join("emitted.rs");
    match std::fs::write(&target, out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot write {}: {e}", target.display());
            ExitCode::FAILURE
        }
    }
}
