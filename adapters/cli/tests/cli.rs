//! The `portcullis` binary, run as a user would.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn check_accepts_the_examples() {
    let (code, out, _) = run(&["check", "examples/gateway.toml"]);
    assert_eq!((code, out.as_str()), (0, "ok: 5 routes, 0 upstreams, 0 access lists, 1 JWT providers, 1 API-key sets, 2 rate limits, 0 plans\n"));
}

#[test]
fn check_names_the_secrets_read_at_start() {
    let (code, out, _) = run(&["check", "examples/edge.toml"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(code, 0, "{out}");
    assert!(lines[0].starts_with("ok: "), "{out}");
    assert_eq!(
        &lines[1..],
        ["secret: auth.jwt.internal.keys[0] reads INTERNAL_JWT_SECRET from the environment when the gateway starts"]
    );
}

#[test]
fn check_lists_every_error_and_fails() {
    let (code, out, err) = run(&["check", "core/tests/fixtures/broken.toml"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.starts_with("core/tests/fixtures/broken.toml:2:34 gateway.trusted_proxies[1]: "),
        "{err}"
    );
    assert!(err.ends_with("18 errors; nothing was loaded\n"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["check"],
        &["explain", "examples/gateway.toml", "GET"],
    ] {
        let (code, _, err) = run(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("usage:"), "{err}");
    }
    let (code, _, err) = run(&["check", "no/such/file.toml"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("portcullis: cannot read no/such/file.toml: "),
        "{err}"
    );
}

#[test]
fn explain_shows_each_phase_and_the_answer() {
    let (code, out, _) = run(&["explain", "examples/gateway.toml", "GET", "/v1/me"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "request   GET /v1/me from 192.0.2.1");
    assert_eq!(lines[1], "matched   me");
    assert_eq!(lines[2], "validate  pass");
    assert_eq!(lines[3], "auth      unauthenticated");
    assert!(out.contains("response  401 Unauthorized\n"), "{out}");
    assert!(
        out.contains("\"type\":\"urn:portcullis:problem:unauthenticated\""),
        "{out}"
    );

    let (_, out, _) = run(&[
        "explain",
        "examples/proxy.toml",
        "GET",
        "/public/a/../b",
        "-H",
        "accept-language: fr",
        "--client-ip",
        "198.18.0.1",
    ]);
    assert!(
        out.contains("upstream  GET http://127.0.0.1:8080/b (not sent)\n"),
        "{out}"
    );
    assert!(out.contains("response  200 OK\n"), "{out}");
}

#[test]
fn schema_and_json() {
    let (code, out, _) = run(&["schema"]);
    assert_eq!(code, 0);
    let schema: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(schema["title"], "RawConfig");
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../portcullis.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(schema, committed, "portcullis.schema.json is out of date: run `cargo run -p portcullis-cli -- schema > portcullis.schema.json`");
    let (code, out, _) = run(&["json", "examples/gateway.toml"]);
    assert_eq!(code, 0);
    assert!(portcullis_core::Config::from_json(out.trim()).is_ok());
}

#[test]
fn the_configuration_reference_is_written_from_the_schema() {
    let (code, out, _) = run(&["reference"]);
    assert_eq!(code, 0);
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/configuration.md"
    ))
    .unwrap_or_default();
    assert!(
        out == committed,
        "docs/configuration.md is out of date: run `cargo run -p portcullis-cli -- reference > docs/configuration.md`"
    );
    // every key of every table has its row
    let schema = portcullis_core::config::json_schema();
    for def in schema["$defs"].as_object().unwrap().values() {
        for key in def["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|p| p.0)
        {
            assert!(out.contains(&format!("| `{key}` |")), "no row for {key}");
        }
    }
}

#[test]
fn explain_reads_secret_env_keys_from_the_environment_and_check_does_not_need_them() {
    // the end-to-end config's `env` provider takes its HS256 secret from this variable
    let config = "tests/e2e/gateway.toml";
    let (code, out, _) = run(&["check", config]);
    assert_eq!((code, out.starts_with("ok: ")), (0, true), "{out}");
    let (code, _, err) = run(&["explain", config, "GET", "/env-secret"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "auth.jwt.env.keys[0].secret_env: the environment has no PORTCULLIS_E2E_HS_SECRET"
        ),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["explain", config, "GET", "/env-secret"])
        .env("PORTCULLIS_E2E_HS_SECRET", "s".repeat(32))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .unwrap();
    // the gateway starts; the request without a token is then refused by the provider
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("urn:portcullis:problem:unauthenticated"),
        "{text}"
    );
}

#[test]
fn a_config_with_an_openapi_section_is_checked_and_explained_expanded() {
    let (code, out, err) = run(&["check", "examples/openapi.toml"]);
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert!(out.starts_with("ok: 5 routes, 1 upstreams"), "{out}");
    let (code, out, _) = run(&[
        "explain",
        "examples/openapi.toml",
        "GET",
        "/books/not-a-uuid",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("matched   getBook\n"), "{out}");
    assert!(out.contains("response  400 Bad Request\n"), "{out}");
    let (code, out, _) = run(&["expand", "examples/openapi.toml"]);
    assert_eq!(code, 0);
    assert!(out.contains("# [openapi]\n"), "{out}");
    assert!(out.contains("name = \"deleteBook\""), "{out}");
}

#[test]
fn import_openapi_writes_a_config_that_checks_and_lists_what_did_not_map() {
    let out_file =
        std::env::temp_dir().join(format!("portcullis-import-{}.toml", std::process::id()));
    let out_path = out_file.display().to_string();
    let (code, _, err) = run(&[
        "import",
        "openapi",
        "examples/openapi/bookshop.yaml",
        "--upstream",
        "https://books.internal.example",
        "-o",
        &out_path,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("JWT provider `bearer`: complete its jwks_url"),
        "{err}"
    );
    assert!(
        err.ends_with("imported 5 of 5 operations as routes\n"),
        "{err}"
    );
    let (code, out, _) = run(&["check", &out_path]);
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(
        text.contains("url = \"https://books.internal.example\""),
        "{text}"
    );
    std::fs::remove_file(&out_file).unwrap();
    let (code, _, err) = run(&["import", "openapi", "Cargo.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("not YAML"), "{err}");
}
