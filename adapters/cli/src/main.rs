//! `portcullis`: check a config, explain what the gateway would do with a request, print the
//! config's JSON Schema, convert a config to the JSON the adapters embed, import an OpenAPI
//! document as a config, or draw a report of the traffic from access-log lines.
//!
//! This is an adapter like the Workers and Spin ones: it owns the clock and the files, and runs
//! the core on its in-memory host.

mod report;

use bytes::Bytes;
use portcullis_core::memory::MemoryHost;
use portcullis_core::{Client, Config, Gateway};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

const USAGE: &str = "usage:
  portcullis check FILE
      Loads FILE and lists every problem; exit 1 if there is any.
  portcullis explain FILE METHOD PATH [-H 'name: value']... [--body TEXT] [--client-ip IP] [--country CC] [--asn N]
      Runs one request through every phase on the in-memory host and prints each decision.
      Upstreams are not contacted: a 200 with an empty body stands in for them.
  portcullis schema
      Prints the JSON Schema of the config file.
  portcullis reference
      Prints the configuration reference (docs/configuration.md) written from the schema.
  portcullis json FILE
      Checks FILE and prints it as JSON (what the adapters embed).
  portcullis expand FILE [-o OUT]
      Prints FILE (or writes OUT) with its [openapi] section expanded into routes, as check,
      explain, json and the Workers build see it.
  portcullis import openapi SPEC [--upstream URL] [-o OUT]
      Writes a config with a route per operation of SPEC (OpenAPI 3.0 or 3.1, YAML or JSON) to
      OUT or stdout; what does not map is listed in its comments and on stderr.
  portcullis report [FILE|-]... [-o OUT] [--bucket SECONDS]
      Reads access-log lines (the gateway's JSON lines, e.g. `spin up`'s output, or
      `wrangler tail --format json`) from the FILEs or stdin and writes one self-contained HTML
      page of charts and tables to OUT or stdout.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("check") => check(&args[1..]),
        Some("explain") => explain(&args[1..]),
        Some("schema") => {
            println!(
                "{}",
                serde_json::to_string_pretty(&portcullis_core::config::json_schema())
                    .unwrap_or_default()
            );
            Ok(())
        }
        Some("reference") => {
            let schema = portcullis_core::config::json_schema();
            print!("{}", portcullis_core::config::reference::markdown(&schema));
            Ok(())
        }
        Some("json") => to_json(&args[1..]),
        Some("import") => import(&args[1..]),
        Some("expand") => expand(&args[1..]),
        Some("report") => report::run(&args[1..])
            .map_err(Failure::Usage)
            .and_then(|done| done.map_err(Failure::Io)),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(Failure::Usage("expected a command".into())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("portcullis: {m}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Config(listing)) => {
            eprint!("{listing}");
            ExitCode::from(1)
        }
        Err(Failure::Io(m)) => {
            eprintln!("portcullis: {m}");
            ExitCode::from(1)
        }
    }
}

enum Failure {
    Usage(String),
    Config(String),
    Io(String),
}

fn read(path: Option<&String>) -> Result<(String, String), Failure> {
    let path = path.ok_or_else(|| Failure::Usage("expected a config FILE".into()))?;
    let src = std::fs::read_to_string(path)
        .map_err(|e| Failure::Io(format!("cannot read {path}: {e}")))?;
    Ok((path.clone(), src))
}

/// A config file, its `[openapi]` section expanded into routes (what the document has that
/// does not map is said on stderr).
fn read_config(path: Option<&String>) -> Result<(String, String), Failure> {
    let (path, src) = read(path)?;
    let dir = std::path::Path::new(&path)
        .parent()
        .unwrap_or(std::path::Path::new("."));
    let expanded = portcullis_openapi::expand(&src, &path, dir).map_err(Failure::Config)?;
    for w in &expanded.warnings {
        eprintln!("warning: {w}");
    }
    Ok((path, expanded.toml))
}

fn expand(args: &[String]) -> Result<(), Failure> {
    let (_, src) = read_config(args.first())?;
    match (args.get(1).map(String::as_str), args.get(2)) {
        (None, _) => {
            print!("{src}");
            Ok(())
        }
        (Some("-o" | "--out"), Some(out)) => {
            std::fs::write(out, src).map_err(|e| Failure::Io(format!("cannot write {out}: {e}")))
        }
        _ => Err(Failure::Usage("expand takes FILE [-o OUT]".into())),
    }
}

fn check(args: &[String]) -> Result<(), Failure> {
    if args.len() != 1 {
        return Err(Failure::Usage("check takes exactly one FILE".into()));
    }
    let (path, src) = read_config(args.first())?;
    let config = Config::from_toml(&src).map_err(|e| Failure::Config(e.render(&path)))?;
    println!("ok: {}", config.summary());
    // the config is valid, so it parses; the keys whose secret is read when the gateway starts
    let raw = Config::raw_from_toml(&src).map_err(|e| Failure::Config(e.render(&path)))?;
    // settings that work but that a careful operator would not deploy: said, not refused
    for w in portcullis_core::config::warnings(&raw) {
        eprintln!("warning: {path}: {w}");
    }
    for (provider, jwt) in &raw.auth.jwt {
        for (i, key) in jwt.keys.iter().enumerate() {
            if let Some(name) = &key.secret_env {
                println!(
                    "secret: auth.jwt.{provider}.keys[{i}] reads {name} from the environment when the gateway starts"
                );
            }
        }
    }
    Ok(())
}

fn to_json(args: &[String]) -> Result<(), Failure> {
    let (path, src) = read_config(args.first())?;
    let raw = Config::raw_from_toml(&src).map_err(|e| Failure::Config(e.render(&path)))?;
    println!(
        "{}",
        serde_json::to_string(&raw).map_err(|e| Failure::Io(e.to_string()))?
    );
    Ok(())
}

fn import(args: &[String]) -> Result<(), Failure> {
    if args.first().map(String::as_str) != Some("openapi") {
        return Err(Failure::Usage("import takes `openapi SPEC`".into()));
    }
    let (path, src) = read(args.get(1))?;
    let mut options = portcullis_openapi::Options::default();
    let mut out = None;
    let mut rest = args[2..].iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .cloned()
            .ok_or_else(|| Failure::Usage(format!("{flag} needs a value")))?;
        match flag.as_str() {
            "--upstream" => options.upstream = Some(value),
            "-o" | "--out" => out = Some(value),
            other => return Err(Failure::Usage(format!("unknown option {other:?}"))),
        }
    }
    let imported = portcullis_openapi::import(&src, &options).map_err(|refused| {
        let listing = refused.problems.iter().map(|p| format!("{path}: {p}\n"));
        Failure::Config(listing.collect())
    })?;
    for note in &imported.notes {
        eprintln!("note: {path}: {note}");
    }
    eprintln!(
        "imported {} of {} operations as routes",
        imported.routes, imported.operations
    );
    match out {
        Some(file) => std::fs::write(&file, &imported.toml)
            .map_err(|e| Failure::Io(format!("cannot write {file}: {e}"))),
        None => {
            print!("{}", imported.toml);
            Ok(())
        }
    }
}

fn explain(args: &[String]) -> Result<(), Failure> {
    // the request really runs, so `secret_env` keys read this process's environment
    let (file, src) = read_config(args.first())?;
    let config = Config::from_toml_with_secrets(&src, &|name| std::env::var(name).ok())
        .map_err(|e| Failure::Config(e.render(&file)))?;
    let (method, path) = match (args.get(1), args.get(2)) {
        (Some(m), Some(p)) => (m.clone(), p.clone()),
        _ => return Err(Failure::Usage("explain needs FILE METHOD PATH".into())),
    };
    let mut builder = http::Request::builder()
        .method(method.as_str())
        .uri(path.as_str());
    let mut body = String::new();
    let mut client = Client::new([192, 0, 2, 1].into());
    let mut rest = args[3..].iter();
    while let Some(flag) = rest.next() {
        let mut value = || {
            rest.next()
                .cloned()
                .ok_or_else(|| Failure::Usage(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "-H" | "--header" => {
                let h = value()?;
                let (k, v) = h
                    .split_once(':')
                    .ok_or_else(|| Failure::Usage(format!("header {h:?} is not 'name: value'")))?;
                builder = builder.header(k.trim(), v.trim());
            }
            "--body" => body = value()?,
            "--client-ip" => {
                let v = value()?;
                client.ip = v
                    .parse()
                    .map_err(|_| Failure::Usage(format!("{v:?} is not an IP address")))?;
            }
            "--country" => client.country = Some(value()?.to_ascii_uppercase()),
            "--asn" => {
                let v = value()?;
                client.asn = Some(
                    v.parse()
                        .map_err(|_| Failure::Usage(format!("{v:?} is not an ASN")))?,
                );
            }
            other => return Err(Failure::Usage(format!("unknown option {other:?}"))),
        }
    }
    let request = builder
        .body(Bytes::from(body))
        .map_err(|e| Failure::Usage(format!("bad request: {e}")))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let host = MemoryHost::new(now, |_| {
        Ok(http::Response::builder()
            .header("x-portcullis-explain", "upstream not contacted")
            .body(Bytes::new())
            .unwrap_or_default())
    });
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    host.seed(nanos ^ u64::from(std::process::id()));
    let gateway = Gateway::new(config);
    println!("request   {method} {path} from {}", client.ip);
    let request = request.map(portcullis_core::Body::Bytes);
    let response = pollster::block_on(gateway.handle(request, client, &host));
    let response = response.map(|b| portcullis_core::memory::body_bytes(&b));
    let log = host.log_records().pop().unwrap_or_default();
    if let Some(route) = log["route"].as_str() {
        println!("matched   {route}");
    }
    for p in log["phases"].as_array().into_iter().flatten() {
        println!(
            "{:<9} {}",
            p["phase"].as_str().unwrap_or("?"),
            p["decision"].as_str().unwrap_or("?")
        );
    }
    for sent in host.sent.borrow().iter() {
        println!("upstream  {} {} (not sent)", sent.method(), sent.uri());
        for (k, v) in sent.headers() {
            println!("            {k}: {}", v.to_str().unwrap_or("<binary>"));
        }
    }
    println!("response  {}", response.status());
    for (k, v) in response.headers() {
        println!("            {k}: {}", v.to_str().unwrap_or("<binary>"));
    }
    if !response.body().is_empty() {
        println!("\n{}", String::from_utf8_lossy(response.body()));
    }
    Ok(())
}
