//! The importer against documents no one here wrote, from npm packages (`npm ci --prefix
//! openapi/specs`, which `.ci/run` and the README's test command do): every OpenAPI 3.x
//! document in `@readme/oas-examples` and GitHub's REST description in `@octokit/openapi`
//! import, load, and route a request to each sampled operation's route.

use bytes::Bytes;
use portcullis_core::memory::MemoryHost;
use portcullis_core::{Body, Client, Config, Gateway};
use portcullis_openapi::{import, Import, Options, Version};
use std::path::{Path, PathBuf};

fn packages() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("specs/node_modules");
    assert!(
        dir.is_dir(),
        "the OpenAPI documents these tests read are not installed: run `npm ci --prefix openapi/specs`"
    );
    dir
}

/// Every file under `dir` whose name ends in one of `exts`, sorted.
fn files(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path, exts));
        } else if exts.iter().any(|e| path.to_string_lossy().ends_with(e)) {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// A request path for a route's template: each parameter takes a value its check admits
/// where one is easy to make (the first of its `enum`, a number, a UUID), else `x`.
fn concrete(route: &serde_json::Value) -> String {
    let template = route["path"].as_str().unwrap();
    let checks = &route["validate"]["path"];
    let segments = template.split('/').map(|s| {
        let Some(name) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            return s.to_string();
        };
        let check = &checks[name];
        let kind = check["type"]
            .as_str()
            .or(check.as_str())
            .unwrap_or("string");
        match (check["enum"][0].as_str(), kind) {
            (Some(first), _) => first.to_string(),
            (None, "int" | "number") => "1".into(),
            (None, "uuid") => "123e4567-e89b-12d3-a456-426614174000".into(),
            (None, "bool") => "true".into(),
            _ => "x".into(),
        }
    });
    segments.collect::<Vec<_>>().join("/")
}

/// Sends one request per `every`th route of the imported config through the gateway (as
/// `portcullis explain` does) and checks that each lands on its route. The number sent.
fn explain_sample(imported: &Import, every: usize) -> usize {
    let config =
        Config::from_toml(&imported.toml).unwrap_or_else(|e| panic!("{}", e.render("imported")));
    let raw: toml::Value = toml::from_str(&imported.toml).unwrap();
    let raw = serde_json::to_value(raw).unwrap();
    let gateway = Gateway::new(config);
    let host = MemoryHost::new(1_700_000_000_000, |_| Ok(http::Response::new(Bytes::new())));
    let mut sent = 0;
    for route in raw["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .step_by(every)
    {
        let method = route["methods"][0].as_str().unwrap();
        let path = concrete(route);
        let req = http::Request::builder()
            .method(method)
            .uri(&path)
            .body(Body::Bytes(Bytes::new()))
            .unwrap();
        let res =
            pollster::block_on(gateway.handle(req, Client::new([192, 0, 2, 1].into()), &host));
        let log = host.log_records().pop().unwrap();
        assert_eq!(
            log["route"],
            route["name"],
            "{method} {path} answered {}",
            res.status()
        );
        sent += 1;
    }
    sent
}

#[test]
fn every_openapi_3_example_of_readme_imports_loads_and_routes() {
    let root = packages().join("@readme/oas-examples");
    let mut imported = 0;
    for version in ["3.0", "3.1"] {
        for file in files(&root.join(version), &[".json", ".yaml", ".yml"]) {
            let src = std::fs::read_to_string(&file).unwrap();
            let out = import(&src, &Options::default())
                .unwrap_or_else(|e| panic!("{}: refused:\n{e}", file.display()));
            let expected = if version == "3.0" {
                Version::V3_0
            } else {
                Version::V3_1
            };
            assert_eq!(out.version, expected, "{}", file.display());
            explain_sample(&out, 1);
            imported += 1;
        }
    }
    // 3.0 and 3.1, each in JSON and YAML
    assert!(imported >= 100, "{imported} documents");
}

#[test]
fn swagger_2_examples_of_readme_are_refused_with_the_way_forward() {
    let root = packages().join("@readme/oas-examples/2.0");
    let found = files(&root, &[".json", ".yaml"]);
    assert!(!found.is_empty());
    for file in found {
        let src = std::fs::read_to_string(&file).unwrap();
        let refused = import(&src, &Options::default()).unwrap_err();
        assert_eq!(
            refused.problems[0].pointer,
            "/swagger",
            "{}",
            file.display()
        );
        assert!(refused.problems[0]
            .message
            .contains("convert it to OpenAPI 3 first"));
    }
}

#[test]
fn githubs_rest_description_imports_about_a_thousand_operations() {
    let file = packages().join("@octokit/openapi/generated/api.github.com.json");
    let src = std::fs::read_to_string(&file).unwrap();
    let out = import(&src, &Options::default()).unwrap_or_else(|e| panic!("refused:\n{e}"));
    assert_eq!(out.version, Version::V3_0);
    assert!(out.operations >= 1_000, "{} operations", out.operations);
    // each operation the gateway cannot express is listed, with why
    let left_out = out
        .notes
        .iter()
        .filter(|n| n.message.contains("left out"))
        .count();
    assert_eq!(out.routes + left_out, out.operations, "{:#?}", out.notes);
    assert!(
        out.routes * 100 >= out.operations * 99,
        "{} of {}",
        out.routes,
        out.operations
    );
    assert!(out.toml.contains("url = \"https://api.github.com\""));
    assert!(explain_sample(&out, 10) >= 100);
}
