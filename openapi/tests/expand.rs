//! `[openapi]` expanded into routes: the example config, and every way a section can be wrong.

use portcullis_core::Config;
use portcullis_openapi::expand;
use std::path::{Path, PathBuf};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// A directory of this test's own with `files` written in it.
fn dir_with(test: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-expand-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

const SPEC: &str = "openapi: 3.0.3
info: {title: t, version: '1'}
components:
  securitySchemes:
    key: {type: apiKey, in: header, name: X-Key}
paths:
  /items/{id}:
    get:
      operationId: getItem
      security: [{key: []}]
      parameters:
        - {name: id, in: path, required: true, schema: {type: integer}}
      responses: {'200': {description: ok}}
";

#[test]
fn the_example_expands_into_a_route_per_operation_with_its_additions() {
    let src = std::fs::read_to_string(examples().join("openapi.toml")).unwrap();
    let out = expand(&src, "examples/openapi.toml", &examples()).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.warnings.is_empty(), "{:#?}", out.warnings);
    // the config's own lines keep their numbers: the section is commented out, not removed
    let own: Vec<&str> = src.lines().collect();
    let expanded: Vec<&str> = out.toml.lines().collect();
    for (i, line) in own.iter().enumerate() {
        let kept = expanded[i] == *line || expanded[i] == format!("# {line}");
        assert!(kept, "line {}: {line:?} became {:?}", i + 1, expanded[i]);
    }
    let config = Config::from_toml(&out.toml).unwrap_or_else(|e| panic!("{}", e.render("x")));
    assert_eq!(config.route_count(), 5);
    let body: toml::Table = toml::from_str(&out.toml).unwrap();
    let routes = body["routes"].as_array().unwrap();
    let list = routes
        .iter()
        .find(|r| r["name"].as_str() == Some("listBooks"))
        .unwrap();
    assert_eq!(list["upstream"].as_str(), Some("bookshop"));
    assert_eq!(list["rate_limit"].as_str(), Some("per_client"));
    assert_eq!(list["cache"]["ttl_s"].as_integer(), Some(30));
    let health = routes
        .iter()
        .find(|r| r["name"].as_str() == Some("health"))
        .unwrap();
    assert!(
        health.get("auth").is_none(),
        "`security: []` authenticates no one"
    );
}

#[test]
fn a_config_without_the_section_is_left_as_it_is() {
    let src = std::fs::read_to_string(examples().join("gateway.toml")).unwrap();
    let out = expand(&src, "gateway.toml", &examples()).unwrap();
    assert_eq!(out.toml, src);
    assert!(out.warnings.is_empty());
}

#[test]
fn every_problem_of_a_section_is_listed_at_its_place() {
    let dir = dir_with("problems", &[("api.yaml", SPEC)]);
    let config = "[upstreams.app]\ntargets = [{ url = \"https://app.example\" }]\n\n\
                  [openapi]\nspec = \"api.yaml\"\nupstream = \"nope\"\n\n\
                  [openapi.operations.getItems]\ncache = { ttl_s = 5 }\n";
    let err = expand(config, "c.toml", &dir).unwrap_err();
    assert_eq!(
        err,
        "c.toml: openapi.upstream: no upstream \"nope\" in [upstreams]\n\
         c.toml: openapi: the document's security scheme \"key\" needs [auth.api_keys.key] in this config (or an `auth` of its own for each operation in [openapi.operations])\n\
         c.toml: openapi.operations.getItems: the document has no operation \"getItems\"\n"
    );
    // an operation's own auth replaces the document's security
    let fixed = "[upstreams.app]\ntargets = [{ url = \"https://app.example\" }]\n\n\
                 [auth.api_keys.mine]\nkeys = []\n\n\
                 [openapi]\nspec = \"api.yaml\"\nupstream = \"app\"\n\n\
                 [openapi.operations.getItem]\nauth = { api_key = \"mine\" }\n";
    let out = expand(fixed, "c.toml", &dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.toml.contains("api_key = \"mine\""), "{}", out.toml);
}

#[test]
fn a_document_problem_names_the_documents_file_line_and_pointer() {
    let broken = SPEC.replace(
        "operationId: getItem",
        "operationId: getItem\n      requestBody: 7",
    );
    let dir = dir_with(
        "document",
        &[("api.yaml", &broken), ("v2.json", "{\"swagger\": \"2.0\"}")],
    );
    let config = "[upstreams.app]\ntargets = [{ url = \"https://app.example\" }]\n\n\
                  [auth.api_keys.key]\nkeys = []\n\n\
                  [openapi]\nspec = \"v2.json\"\nupstream = \"app\"\n";
    let err = expand(config, "c.toml", &dir).unwrap_err();
    let v2 = dir.join("v2.json").display().to_string();
    assert!(
        err.starts_with(&format!(
            "{v2}:1 #/swagger: Swagger \"2.0\" is not imported"
        )),
        "{err}"
    );
    let out = expand(&config.replace("v2.json", "api.yaml"), "c.toml", &dir).unwrap();
    let api = dir.join("api.yaml").display().to_string();
    assert_eq!(out.warnings.len(), 1, "{:#?}", out.warnings);
    assert!(
        out.warnings[0].starts_with(&format!(
            "{api}:10 #/paths/~1items~1{{id}}/get/requestBody: not valid OpenAPI 3.0"
        )),
        "{:#?}",
        out.warnings
    );
    // a problem of the config's own is the loader's, at its line in the config
    let own = config
        .replace("v2.json", "api.yaml")
        .replace("https://app.example", "ftp://x");
    let err = expand(&own, "c.toml", &dir).unwrap_err();
    assert!(err.starts_with("c.toml:2:"), "{err}");
}

#[test]
fn a_section_written_inline_is_refused_with_how_to_write_it() {
    let dir = dir_with("inline", &[("api.yaml", SPEC)]);
    let config = "openapi = { spec = \"api.yaml\", upstream = \"app\" }\n\
                  [upstreams.app]\ntargets = [{ url = \"https://app.example\" }]\n\
                  [auth.api_keys.key]\nkeys = []\n";
    let err = expand(config, "c.toml", &dir).unwrap_err();
    assert!(err.contains("write the section as its own tables"), "{err}");
}

#[test]
fn the_loader_refuses_a_section_it_was_not_given_expanded() {
    let src = std::fs::read_to_string(examples().join("openapi.toml")).unwrap();
    let err = Config::from_toml(&src).unwrap_err();
    assert!(err
        .render("x")
        .contains("openapi.spec: the document's routes are added when the config is expanded"));
}
