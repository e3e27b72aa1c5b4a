//! The mapped parts as a config file, loaded by the gateway's own loader until it loads: a
//! route the gateway cannot express (its path, or a conflict with another route) is taken out
//! and listed.

use crate::map::{Mapped, Route, UPSTREAM};
use crate::{Note, Refused};
use portcullis_core::{Config, Diagnostic};
use serde_json::{Map, Value};

/// How many times a config is loaded again after taking routes out.
const ROUNDS: usize = 16;

/// The config as TOML, how many routes it has, and every note; or why none could be made.
pub(crate) fn checked(mut m: Mapped) -> Result<(String, usize, Vec<Note>), Refused> {
    let refused = |message: String| Refused {
        problems: vec![Note {
            pointer: String::new(),
            message,
        }],
    };
    let before = m.routes.len();
    let (upstream, auth) = (&m.upstream, &m.auth);
    let loaded = load_taking_out(&mut m.routes, 0, |routes| toml_of(upstream, auth, routes));
    let (body, notes) = loaded.map_err(|failure| match failure {
        Unloadable::Config(diagnostics) => Refused {
            problems: (diagnostics.iter())
                .map(|d| Note {
                    pointer: String::new(),
                    message: format!("the config made does not load: {d}"),
                })
                .collect(),
        },
        Unloadable::Text(e) => refused(format!("the config cannot be written as TOML: {e}")),
        Unloadable::Rounds => refused(format!(
            "the config still did not load after {ROUNDS} rounds of taking routes out"
        )),
    })?;
    m.skipped += before - m.routes.len();
    m.notes.extend(notes);
    let text = format!("{}{body}\n", header(&m));
    Ok((text, m.routes.len(), m.notes))
}

/// Why [`load_taking_out`] gave up.
pub(crate) enum Unloadable {
    /// The loader's problems that are not the routes' (the caller's, or this crate's).
    Config(Vec<Diagnostic>),
    /// The text could not be written.
    Text(String),
    /// Still refused after [`ROUNDS`] rounds.
    Rounds,
}

/// Loads `text_of(routes)` with the gateway's loader until it loads, taking out each of
/// `routes` it refuses (the config's routes from index `own` on) with a note saying why: its
/// path, or a conflict with another route. The text that loaded and those notes.
pub(crate) fn load_taking_out(
    routes: &mut Vec<Route>,
    own: usize,
    text_of: impl Fn(&[Route]) -> Result<String, String>,
) -> Result<(String, Vec<Note>), Unloadable> {
    let mut notes = Vec::new();
    for _ in 0..ROUNDS {
        let text = text_of(routes).map_err(Unloadable::Text)?;
        let errors = match Config::from_toml(&text) {
            Ok(_) => return Ok((text, notes)),
            Err(e) => e.diagnostics,
        };
        let mut dropped: Vec<usize> = Vec::new();
        let mut theirs = Vec::new();
        for d in errors {
            let index = route_index(&d.path).and_then(|i| i.checked_sub(own));
            match index.filter(|i| *i < routes.len()) {
                Some(i) => {
                    let pointer = routes[i].pointer.clone();
                    let message = format!("the gateway cannot express it, left out: {}", d.message);
                    notes.push(Note { pointer, message });
                    dropped.push(i);
                }
                None => theirs.push(d),
            }
        }
        if !theirs.is_empty() || dropped.is_empty() {
            return Err(Unloadable::Config(theirs));
        }
        dropped.sort_unstable();
        dropped.dedup();
        for i in dropped.into_iter().rev() {
            routes.remove(i);
        }
    }
    Err(Unloadable::Rounds)
}

/// `routes[12].path` → 12.
fn route_index(path: &str) -> Option<usize> {
    let rest = path.strip_prefix("routes[")?;
    rest[..rest.find(']')?].parse().ok()
}

/// The config's TOML text.
fn toml_of(
    upstream: &Map<String, Value>,
    auth: &Map<String, Value>,
    routes: &[Route],
) -> Result<String, String> {
    let mut top = Map::new();
    let mut upstreams = Map::new();
    upstreams.insert(UPSTREAM.into(), Value::Object(upstream.clone()));
    top.insert("upstreams".into(), Value::Object(upstreams));
    if !auth.is_empty() {
        top.insert("auth".into(), Value::Object(auth.clone()));
    }
    top.insert("routes".into(), routes_value(routes));
    toml::to_string(&Value::Object(top)).map_err(|e| e.to_string())
}

/// The routes as a JSON array of tables.
pub(crate) fn routes_value(routes: &[Route]) -> Value {
    Value::Array(
        routes
            .iter()
            .map(|r| Value::Object(r.route.clone()))
            .collect(),
    )
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
