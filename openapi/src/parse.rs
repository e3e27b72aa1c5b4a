//! The document as JSON: read as JSON or YAML, its version told, and checked against the
//! OpenAPI object model of that version.

use crate::{Note, Refused};
use serde_json::{Map, Value};

/// The OpenAPI version of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// 3.0.x, whose schemas are a dialect of JSON Schema draft 4/5.
    V3_0,
    /// 3.1.x, whose schemas are JSON Schema 2020-12.
    V3_1,
}

fn refused(pointer: &str, message: impl Into<String>) -> Refused {
    Refused {
        problems: vec![Note {
            pointer: pointer.into(),
            message: message.into(),
        }],
    }
}

/// The document as JSON and its version, and every place it departs from the OpenAPI object
/// model (the import goes on: what the gateway cannot use is left out and listed); or why it
/// is not an OpenAPI 3.0 or 3.1 document at all.
pub(crate) fn document(src: &str) -> Result<(Value, Version, Vec<Note>), Refused> {
    let doc = read(src)?;
    let Some(top) = doc.as_object() else {
        return Err(refused("", "an OpenAPI document is an object"));
    };
    if let Some(swagger) = top.get("swagger") {
        return Err(refused(
            "/swagger",
            format!(
                "Swagger {swagger} is not imported: convert it to OpenAPI 3 first (for example \
                 with the swagger2openapi package), then import the result"
            ),
        ));
    }
    let version = match top.get("openapi").and_then(Value::as_str) {
        Some(v) if v.starts_with("3.0.") || v == "3.0" => Version::V3_0,
        Some(v) if v.starts_with("3.1.") || v == "3.1" => Version::V3_1,
        Some(v) => {
            return Err(refused(
                "/openapi",
                format!("OpenAPI {v:?} is not imported: 3.0.x and 3.1.x are"),
            ))
        }
        None => {
            return Err(refused(
                "/openapi",
                "no `openapi` version: not an OpenAPI 3 document",
            ))
        }
    };
    if !top.get("paths").is_none_or(Value::is_object) {
        return Err(refused("/paths", "`paths` is not an object"));
    }
    let departures = check_model(&doc, version);
    Ok((doc, version, departures))
}

/// The text as JSON: JSON when it opens with `{`, else YAML (of which JSON is a part). YAML
/// keys that are numbers or booleans (`200:` in `responses`) become strings, as in JSON.
fn read(src: &str) -> Result<Value, Refused> {
    if src.trim_start().starts_with('{') {
        return serde_json::from_str(src).map_err(|e| {
            let at = format!("line {} column {}", e.line(), e.column());
            refused("", format!("{at}: not JSON: {e}"))
        });
    }
    let yaml: serde_norway::Value = serde_norway::from_str(src).map_err(|e| {
        let at = e.location().map_or(String::new(), |l| {
            format!("line {} column {}: ", l.line(), l.column())
        });
        refused("", format!("{at}not YAML: {e}"))
    })?;
    Ok(from_yaml(yaml))
}

fn from_yaml(v: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::from(u),
            (_, Some(i), _) => Value::from(i),
            (_, _, Some(f)) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            _ => Value::Null,
        },
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(from_yaml).collect()),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    Y::Null => "null".into(),
                    other => serde_norway::to_string(&other).unwrap_or_default(),
                };
                out.insert(key, from_yaml(v));
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => from_yaml(tagged.value),
    }
}

/// Checks the document against the OpenAPI object model of its version: each operation and
/// each component on its own, so that every one that departs is listed at its place; then, if
/// none did, the document whole (its other parts), at the first place it departs.
fn check_model(doc: &Value, version: Version) -> Vec<Note> {
    let mut notes = Vec::new();
    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in methods {
            if let Some(op) = item.get(method) {
                let at = format!("/paths/{}/{method}", crate::escape(path));
                notes.extend(check_part(op, &at, version, Part::Operation));
            }
        }
    }
    let parts = [
        ("schemas", Part::Schema),
        ("parameters", Part::Parameter),
        ("requestBodies", Part::RequestBody),
        ("securitySchemes", Part::SecurityScheme),
    ];
    for (section, part) in parts {
        for (name, v) in doc["components"][section].as_object().into_iter().flatten() {
            let at = format!("/components/{section}/{}", crate::escape(name));
            notes.extend(check_part(v, &at, version, part));
        }
    }
    if notes.is_empty() {
        notes.extend(check_part(doc, "", version, Part::Document));
    }
    notes
}

/// What [`check_part`] checks a value as.
#[derive(Clone, Copy)]
enum Part {
    Document,
    Operation,
    Schema,
    Parameter,
    RequestBody,
    SecurityScheme,
}

/// Checks `v` (at `at`) as `part` of an OpenAPI document of `version`: where it departs, if it
/// does.
fn check_part(v: &Value, at: &str, version: Version, part: Part) -> Option<Note> {
    use oas3::spec as v31;
    use openapiv3 as v30;
    fn first<T: serde::de::DeserializeOwned>(v: &Value) -> Option<(String, String)> {
        let e = serde_path_to_error::deserialize::<_, T>(v).err()?;
        Some((pointer_of(e.path()), e.into_inner().to_string()))
    }
    let failed = match (version, part) {
        (Version::V3_0, Part::Document) => first::<v30::OpenAPI>(v),
        (Version::V3_0, Part::Operation) => first::<v30::Operation>(v),
        (Version::V3_0, Part::Schema) => first::<v30::ReferenceOr<v30::Schema>>(v),
        (Version::V3_0, Part::Parameter) => first::<v30::ReferenceOr<v30::Parameter>>(v),
        (Version::V3_0, Part::RequestBody) => first::<v30::ReferenceOr<v30::RequestBody>>(v),
        (Version::V3_0, Part::SecurityScheme) => first::<v30::ReferenceOr<v30::SecurityScheme>>(v),
        (Version::V3_1, Part::Document) => first::<v31::Spec>(v),
        (Version::V3_1, Part::Operation) => first::<v31::Operation>(v),
        (Version::V3_1, Part::Schema) => first::<v31::ObjectOrReference<v31::ObjectSchema>>(v),
        (Version::V3_1, Part::Parameter) => first::<v31::ObjectOrReference<v31::Parameter>>(v),
        (Version::V3_1, Part::RequestBody) => first::<v31::ObjectOrReference<v31::RequestBody>>(v),
        (Version::V3_1, Part::SecurityScheme) => {
            first::<v31::ObjectOrReference<v31::SecurityScheme>>(v)
        }
    };
    let (inner, message) = failed?;
    let name = match version {
        Version::V3_0 => "OpenAPI 3.0",
        Version::V3_1 => "OpenAPI 3.1",
    };
    Some(Note {
        pointer: format!("{at}{inner}"),
        message: format!("not valid {name} (imported as far as it maps): {message}"),
    })
}

/// A serde path (`paths./pets.get`) as a JSON pointer (`/paths/~1pets/get`).
fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } => {
                out.push('/');
                out.push_str(&crate::escape(key));
            }
            Segment::Enum { variant } => {
                out.push('/');
                out.push_str(&crate::escape(variant));
            }
            Segment::Unknown => {}
        }
    }
    out
}
