//! The mapped parts as a config file, loaded by the gateway's own loader until it loads: a
//! route the gateway cannot express (its path, or a conflict with another route) is taken out
//! and listed.

use crate::map::{Mapped, UPSTREAM};
use crate::{Note, Refused};
use portcullis_core::Config;
use serde_json::{Map, Value};

/// How many times a config is loaded again after taking routes out.
const ROUNDS: usize = 16;

/// The config as TOML, how many routes it has, and every note; or why none could be made.
pub(crate) fn checked(mut m: Mapped, _doc: &Value) -> Result<(String, usize, Vec<Note>), Refused> {
    // a component used twice is noted twice
    let mut seen = std::collections::HashSet::new();
    m.notes
        .retain(|n| seen.insert((n.pointer.clone(), n.message.clone())));
    for _ in 0..ROUNDS {
        let body = toml_of(&m)?;
        let errors = match Config::from_toml(&body) {
            Ok(_) => {
                let text = format!("{}{body}\n", header(&m));
                return Ok((text, m.routes.len(), m.notes));
            }
            Err(e) => e.diagnostics,
        };
        // the routes the loader names go, with its reasons; anything else is this importer's
        let mut dropped: Vec<usize> = Vec::new();
        let mut other = Vec::new();
        for d in errors {
            match route_index(&d.path).filter(|i| *i < m.routes.len()) {
                Some(i) => {
                    let pointer = m.routes[i].pointer.clone();
                    let message = format!("the gateway cannot express it, left out: {}", d.message);
                    m.notes.push(Note { pointer, message });
                    dropped.push(i);
                }
                None => other.push(Note {
                    pointer: String::new(),
                    message: format!("the config made does not load: {d}"),
                }),
            }
        }
        if !other.is_empty() || dropped.is_empty() {
            return Err(Refused { problems: other });
        }
        dropped.sort_unstable();
        dropped.dedup();
        for i in dropped.into_iter().rev() {
            m.routes.remove(i);
            m.skipped += 1;
        }
    }
    Err(Refused {
        problems: vec![Note {
            pointer: String::new(),
            message: format!(
                "the config still did not load after {ROUNDS} rounds of taking routes out"
            ),
        }],
    })
}

/// `routes[12].path` → 12.
pub(crate) fn route_index(path: &str) -> Option<usize> {
    let rest = path.strip_prefix("routes[")?;
    rest[..rest.find(']')?].parse().ok()
}

/// The config's TOML text.
fn toml_of(m: &Mapped) -> Result<String, Refused> {
    let mut top = Map::new();
    let mut upstreams = Map::new();
    upstreams.insert(UPSTREAM.into(), Value::Object(m.upstream.clone()));
    top.insert("upstreams".into(), Value::Object(upstreams));
    if !m.auth.is_empty() {
        top.insert("auth".into(), Value::Object(m.auth.clone()));
    }
    let routes = m.routes.iter().map(|r| Value::Object(r.route.clone()));
    top.insert("routes".into(), Value::Array(routes.collect()));
    toml::to_string(&Value::Object(top)).map_err(|e| Refused {
        problems: vec![Note {
            pointer: String::new(),
            message: format!("the config cannot be written as TOML: {e}"),
        }],
    })
}

/// The comment block at the top: where the config came from and what did not map.
fn header(m: &Mapped) -> String {
    let mut out = format!(
        "# {} as a Portcullis config, written by `portcullis import openapi`.\n\
         # {} operations became routes; {} did not.\n",
        m.title.replace('\n', " "),
        m.routes.len(),
        m.skipped
    );
    if !m.notes.is_empty() {
        out.push_str("#\n# Not mapped, or mapped in part (JSON pointers into the document):\n");
        for n in &m.notes {
            let line = n.to_string().replace('\n', " ");
            out.push_str(&format!("#   {line}\n"));
        }
    }
    out.push('\n');
    out
}
