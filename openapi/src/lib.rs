//! `portcullis import openapi`: an OpenAPI 3.0 or 3.1 document (YAML or JSON) as a Portcullis
//! config, a route per operation.
//!
//! What it trusts: nothing in the document. It is parsed by well-kept crates (`serde_json`,
//! `serde_norway` for YAML), checked against the OpenAPI object model of its version
//! (`openapiv3` for 3.0, `oas3` for 3.1; a departure is listed and the import goes on as far as
//! the document maps), and every `$ref` is followed only inside the
//! document (a reference to another file is listed, not fetched). The config it writes is loaded
//! by the gateway's own loader before it is handed out: what the gateway cannot express (a
//! path its router refuses, two operations matching the same requests) is left out and listed,
//! never dropped silently.
//!
//! The mapping: `operationId` names the route (else the method and path); path, query and
//! header parameters keep their type, `enum`, bounds, lengths, `pattern` and `required`; the
//! request body's media types become `content_types`, and its JSON schema `body_schema`, with
//! the component schemas it uses under `$defs` (recursive ones included) and 3.0's dialect
//! (`nullable`, boolean exclusive bounds) turned into JSON Schema 2020-12; HTTP bearer,
//! OAuth 2 and OpenID Connect schemes become JWT providers to complete, `apiKey` in a header
//! or the query an API-key set; the first server is the upstream.

mod emit;
mod expand;
mod map;
mod parse;
mod schema;

pub use expand::{expand, Expanded};
pub use parse::Version;

/// What the import is told besides the document.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The upstream's URL, instead of the document's first server.
    pub upstream: Option<String>,
}

/// Something in the document, at a JSON pointer (RFC 6901) into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub pointer: String,
    pub message: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pointer.is_empty() {
            true => write!(f, "{}", self.message),
            false => write!(f, "#{}: {}", self.pointer, self.message),
        }
    }
}

/// A config made from a document.
#[derive(Debug, Clone)]
pub struct Import {
    /// The config as TOML, with what was not mapped listed in comments at its top.
    pub toml: String,
    /// What was not mapped, or mapped only in part.
    pub notes: Vec<Note>,
    /// How many operations became routes, and how many the document has.
    pub routes: usize,
    pub operations: usize,
    pub version: Version,
}

/// Why a document was not imported: every problem found, each at its place.
#[derive(Debug, Clone)]
pub struct Refused {
    pub problems: Vec<Note>,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Imports `src`, an OpenAPI 3.0 or 3.1 document in YAML or JSON.
pub fn import(src: &str, options: &Options) -> Result<Import, Refused> {
    let (doc, version, departure) = parse::document(src)?;
    let mut mapped = map::config(&doc, options, true)?;
    mapped.notes.splice(0..0, departure);
    let operations = mapped.routes.len() + mapped.skipped;
    let (toml, routes, notes) = emit::checked(mapped)?;
    Ok(Import {
        toml,
        notes,
        routes,
        operations,
        version,
    })
}

/// A JSON pointer's escaped form of one reference token (RFC 6901 §3).
pub(crate) fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests;
