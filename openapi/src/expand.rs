//! A config's `[openapi]` section expanded: the document's operations as routes appended to the
//! config's own, each with what `[openapi.operations.ID]` adds, and the section itself commented
//! out, so every other line keeps its number and the gateway's loader reports the config's own
//! problems where they are. Problems of the document are reported at its file, line and JSON
//! pointer.
//!
//! What it trusts: the config file (the operator's) names the document; the document is read
//! as the importer reads any (see the crate's documentation). Routes ask for auth providers by
//! the document's security scheme names, which the config must define: the importer's
//! placeholders are never deployed.

use crate::emit::{self, Unloadable};
use crate::map::{self, Mapped, Route};
use crate::{Note, Options};
use portcullis_core::config::raw::OpenApiSource;
use portcullis_core::ConfigErrors;
use serde_json::{Map, Value};
use std::path::Path;

/// A config with its `[openapi]` section expanded.
#[derive(Debug, Clone)]
pub struct Expanded {
    /// The config as the loader takes it (the same text when it has no `[openapi]`).
    pub toml: String,
    /// What the document has that did not map (`file:line #pointer: message`).
    pub warnings: Vec<String>,
}

/// Expands the config `src` (read from `file`, whose directory `dir` the document's path is
/// relative to). A config without `[openapi]`, or one that does not parse (the loader says
/// why), comes back as it is. The error is the listing of every problem, one per line.
pub fn expand(src: &str, file: &str, dir: &Path) -> Result<Expanded, String> {
    let unchanged = || Expanded {
        toml: src.to_string(),
        warnings: Vec::new(),
    };
    let Ok(table) = toml::from_str::<toml::Table>(src) else {
        return Ok(unchanged());
    };
    let Some(section) = table.get("openapi") else {
        return Ok(unchanged());
    };
    let source: OpenApiSource = section
        .clone()
        .try_into()
        .map_err(|e| format!("{file}: openapi: {e}\n"))?;
    let spec_file = dir.join(&source.spec);
    let spec_name = spec_file.display().to_string();
    let spec = std::fs::read_to_string(&spec_file)
        .map_err(|e| format!("{file}: openapi.spec: cannot read {spec_name}: {e}\n"))?;
    let at = |n: &Note| format!("{spec_name}:{} {n}", line_of(&spec, &n.pointer));
    let listing = |notes: &[Note]| notes.iter().map(|n| at(n) + "\n").collect::<String>();
    let (doc, _, departure) = crate::parse::document(&spec).map_err(|r| listing(&r.problems))?;
    let mut mapped =
        map::config(&doc, &Options::default(), false).map_err(|r| listing(&r.problems))?;
    mapped.notes.splice(0..0, departure);
    let mut problems = check_refs(&source, &table, &mapped, file);
    let own = table
        .get("routes")
        .and_then(|r| r.as_array())
        .map_or(0, Vec::len);
    let mut routes = with_additions(&source, &mut mapped, file, &mut problems);
    if !problems.is_empty() {
        return Err(problems.concat());
    }
    let own_text = comment_out_openapi(src, &table).ok_or_else(|| {
        format!("{file}: openapi: write the section as its own tables (`[openapi]`, `[openapi.operations.ID]`)\n")
    })?;
    let appended = |routes: &[Route]| {
        let mut top = Map::new();
        top.insert("routes".into(), emit::routes_value(routes));
        let routes = toml::to_string(&Value::Object(top)).map_err(|e| e.to_string())?;
        Ok(format!(
            "{own_text}\n# The routes of [openapi] (`portcullis expand`).\n{routes}\n"
        ))
    };
    let (text, mut notes) =
        emit::load_taking_out(&mut routes, own, appended).map_err(|failure| match failure {
            Unloadable::Config(diagnostics) => ConfigErrors { diagnostics }.render(file),
            Unloadable::Text(e) => {
                format!("{file}: openapi: the routes cannot be written as TOML: {e}\n")
            }
            Unloadable::Rounds => {
                format!("{file}: openapi: the routes still did not load after taking routes out\n")
            }
        })?;
    notes.splice(0..0, mapped.notes);
    Ok(Expanded {
        toml: text,
        warnings: notes.iter().map(at).collect(),
    })
}

/// The config's own references the expansion needs: its upstream, and a provider for each
/// security scheme a route asks for (unless the operation's `auth` replaces it).
fn check_refs(source: &OpenApiSource, table: &toml::Table, m: &Mapped, file: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let has = |kind: &str, name: &str| {
        let t = table.get(kind).and_then(|t| t.as_table());
        t.is_some_and(|t| t.contains_key(name))
    };
    if !has("upstreams", &source.upstream) {
        problems.push(format!(
            "{file}: openapi.upstream: no upstream {:?} in [upstreams]\n",
            source.upstream
        ));
    }
    let auth = table.get("auth").and_then(|t| t.as_table());
    let provider = |kind: &str, name: &str| {
        let set = auth.and_then(|a| a.get(kind)).and_then(|t| t.as_table());
        set.is_some_and(|t| t.contains_key(name))
    };
    let mut said = std::collections::HashSet::new();
    for r in &m.routes {
        let name = r.route["name"].as_str().unwrap_or("");
        if source
            .operations
            .get(name)
            .is_some_and(|o| o.auth.is_some())
        {
            continue;
        }
        for (kind, section) in [("jwt", "jwt"), ("api_key", "api_keys")] {
            let Some(scheme) = r.route.get("auth").and_then(|a| a[kind].as_str()) else {
                continue;
            };
            if !provider(section, scheme) && said.insert(scheme.to_string()) {
                problems.push(format!(
                    "{file}: openapi: the document's security scheme {scheme:?} needs \
                     [auth.{section}.{scheme}] in this config (or an `auth` of its own for each \
                     operation in [openapi.operations])\n"
                ));
            }
        }
    }
    problems
}

/// The routes, each going to the section's upstream with its operation's additions; an
/// addition for an operation the document lacks is a problem.
fn with_additions(
    source: &OpenApiSource,
    m: &mut Mapped,
    file: &str,
    problems: &mut Vec<String>,
) -> Vec<Route> {
    let names: std::collections::HashSet<&str> = m
        .routes
        .iter()
        .filter_map(|r| r.route["name"].as_str())
        .collect();
    for id in source.operations.keys() {
        if !names.contains(id.as_str()) {
            problems.push(format!(
                "{file}: openapi.operations.{id}: the document has no operation {id:?}\n"
            ));
        }
    }
    let mut out = Vec::new();
    for r in std::mem::take(&mut m.routes) {
        let mut route = r.route;
        route.insert("upstream".into(), Value::String(source.upstream.clone()));
        let name = route["name"].as_str().unwrap_or("").to_string();
        if let Some(extra) = source.operations.get(&name) {
            if let Ok(Value::Object(extra)) = serde_json::to_value(extra) {
                route.extend(
                    extra
                        .into_iter()
                        .filter_map(|(k, v)| Some((k, without_nulls(v)?))),
                );
            }
        }
        out.push(Route {
            route,
            pointer: r.pointer,
        });
    }
    out
}

/// The config's text with every line of its `openapi` section made a comment, or `None` when
/// the section is not written as tables of its own (then the lines cannot be told apart). The
/// result is parsed again and must equal the config without the section.
fn comment_out_openapi(src: &str, table: &toml::Table) -> Option<String> {
    let mut out = String::with_capacity(src.len() + 64);
    let mut inside = false;
    for line in src.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            let header = t.trim_start_matches('[').trim_start();
            inside = header.starts_with("openapi]")
                || header.starts_with("openapi.")
                || header.starts_with("openapi ");
        }
        if inside {
            out.push_str("# ");
        }
        out.push_str(line);
        out.push('\n');
    }
    let mut without = table.clone();
    without.remove("openapi");
    let reparsed: toml::Table = toml::from_str(&out).ok()?;
    (reparsed == without).then_some(out)
}

/// The line (1-based) of the value a JSON pointer names in a JSON or YAML text, found by
/// looking for each key of the pointer in turn after the previous one (array indexes are
/// skipped): the line of the deepest key found.
pub(crate) fn line_of(src: &str, pointer: &str) -> usize {
    let mut at = 0;
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        if token.parse::<usize>().is_ok() {
            continue;
        }
        let forms = [format!("\"{token}\""), format!("'{token}'"), token];
        let found = forms.iter().filter_map(|form| key_at(src, at, form)).min();
        match found {
            Some(i) => at = i,
            None => break,
        }
    }
    src[..at].matches('\n').count() + 1
}

/// Where `key` next appears after `from` as a key (followed by `:`).
fn key_at(src: &str, from: usize, key: &str) -> Option<usize> {
    let mut start = from;
    while let Some(i) = src.get(start..)?.find(key) {
        let i = start + i;
        let after = src[i + key.len()..].trim_start_matches([' ', '\t']);
        if after.starts_with(':') {
            return Some(i);
        }
        start = i + key.len();
    }
    None
}

/// `v` without the `null`s an unset optional setting serializes to (TOML has none).
fn without_nulls(v: Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(o) => {
            let o = o
                .into_iter()
                .filter_map(|(k, v)| Some((k, without_nulls(v)?)));
            Some(Value::Object(o.collect()))
        }
        Value::Array(a) => Some(Value::Array(
            a.into_iter().filter_map(without_nulls).collect(),
        )),
        other => Some(other),
    }
}
