//! An operation's request-body schema as the JSON Schema 2020-12 document `body_schema` takes:
//! references to component schemas kept as references into the document's own `$defs` (so a
//! recursive schema stays finite), other references inside the document followed, annotations
//! dropped (they assert nothing, and cost bytes in the worker), 3.0's dialect translated, and
//! `null` (which TOML cannot write) expressed as the type `"null"`.

use crate::{Note, Version};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Keywords that only annotate: dropped.
const ANNOTATIONS: [&str; 14] = [
    "description",
    "title",
    "example",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "xml",
    "externalDocs",
    "discriminator",
    "$comment",
    "contentMediaType",
    "contentEncoding",
];

/// Keywords whose value is a schema.
const ONE_SCHEMA: [&str; 11] = [
    "items",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "additionalItems",
];

/// Keywords whose value is a list of schemas.
const SCHEMA_LISTS: [&str; 4] = ["allOf", "anyOf", "oneOf", "prefixItems"];

/// Keywords whose value maps names to schemas.
const SCHEMA_MAPS: [&str; 5] = [
    "properties",
    "patternProperties",
    "dependentSchemas",
    "$defs",
    "definitions",
];

/// How deep references inside the document (other than to component schemas) are followed.
const MAX_DEPTH: usize = 32;

/// What converting a schema needs: the document, its version, and the component schemas used
/// so far (by name, converted once each).
pub(crate) struct Converter<'d> {
    doc: &'d Value,
    version: Version,
    defs: BTreeMap<String, Value>,
    wanted: Vec<String>,
    pub notes: Vec<Note>,
}

impl<'d> Converter<'d> {
    pub(crate) fn new(doc: &'d Value, version: Version) -> Converter<'d> {
        Converter {
            doc,
            version,
            defs: BTreeMap::new(),
            wanted: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// The `body_schema` for the schema at `at`, with the component schemas it uses under
    /// `$defs`.
    pub(crate) fn body_schema(mut self, schema: &Value, at: &str) -> (Value, Vec<Note>) {
        let mut out = self.convert(schema, at, 0);
        while let Some(name) = self.wanted.pop() {
            if self.defs.contains_key(&name) {
                continue;
            }
            let pointer = format!("/components/schemas/{}", crate::escape(&name));
            // placed first, so that a schema that refers to itself is not converted again
            self.defs.insert(name.clone(), Value::Bool(true));
            let converted = match self.doc.pointer(&pointer) {
                Some(def) => self.convert(def, &pointer, 0),
                None => {
                    self.note(
                        &pointer,
                        "referenced but not in the document: accepts anything",
                    );
                    Value::Bool(true)
                }
            };
            self.defs.insert(name, converted);
        }
        if !self.defs.is_empty() {
            let defs: Map<String, Value> = std::mem::take(&mut self.defs).into_iter().collect();
            out = match out {
                Value::Object(mut o) => {
                    o.insert("$defs".into(), Value::Object(defs));
                    Value::Object(o)
                }
                other => {
                    let mut o = Map::new();
                    o.insert("allOf".into(), Value::Array(vec![other]));
                    o.insert("$defs".into(), Value::Object(defs));
                    Value::Object(o)
                }
            };
        }
        (out, self.notes)
    }

    fn note(&mut self, pointer: &str, message: &str) {
        self.notes.push(Note {
            pointer: pointer.into(),
            message: message.into(),
        });
    }

    /// One schema (an object or, in 3.1, a boolean), converted.
    fn convert(&mut self, schema: &Value, at: &str, depth: usize) -> Value {
        match schema {
            Value::Bool(b) => Value::Bool(*b),
            Value::Object(o) => match o.get("$ref").and_then(Value::as_str) {
                Some(target) => self.reference(o, target, at, depth),
                None => self.object(o, at, depth),
            },
            _ => {
                self.note(at, "not a schema: accepts anything");
                Value::Bool(true)
            }
        }
    }

    /// A `$ref`: to a component schema, kept as a reference into `$defs`; elsewhere in the
    /// document, followed; outside it, not followed.
    fn reference(&mut self, o: &Map<String, Value>, target: &str, at: &str, depth: usize) -> Value {
        let converted = if let Some(name) = target.strip_prefix("#/components/schemas/") {
            let name = unescape(name);
            if !self.wanted.contains(&name) {
                self.wanted.push(name.clone());
            }
            let mut r = Map::new();
            let token = crate::escape(&name);
            r.insert("$ref".into(), Value::String(format!("#/$defs/{token}")));
            Value::Object(r)
        } else if let Some(pointer) = target.strip_prefix('#') {
            match self.doc.pointer(pointer) {
                Some(found) if depth < MAX_DEPTH => self.convert(found, pointer, depth + 1),
                Some(_) => {
                    self.note(at, "references nested too deep: accepts anything there");
                    Value::Bool(true)
                }
                None => {
                    self.note(
                        at,
                        &format!("{target} is not in the document: accepts anything"),
                    );
                    Value::Bool(true)
                }
            }
        } else {
            let message =
                format!("{target} is in another document, not followed: accepts anything");
            self.note(at, &message);
            Value::Bool(true)
        };
        // 3.1's siblings of `$ref` apply with it; 3.0's are ignored
        if self.version == Version::V3_0 || o.len() == 1 {
            return converted;
        }
        let mut rest = o.clone();
        rest.remove("$ref");
        match self.object(&rest, at, depth) {
            Value::Object(siblings) if siblings.is_empty() => converted,
            siblings => {
                let mut both = Map::new();
                both.insert("allOf".into(), Value::Array(vec![converted, siblings]));
                Value::Object(both)
            }
        }
    }

    /// A schema object, keyword by keyword.
    fn object(&mut self, o: &Map<String, Value>, at: &str, depth: usize) -> Value {
        let mut out = Map::new();
        let mut nullable = false;
        for (key, value) in o {
            let here = format!("{at}/{}", crate::escape(key));
            let k = key.as_str();
            if ANNOTATIONS.contains(&k) || k.starts_with("x-") {
                continue;
            }
            if k == "nullable" && self.version == Version::V3_0 {
                nullable = value.as_bool() == Some(true);
                continue;
            }
            let converted = if ONE_SCHEMA.contains(&k) && !value.is_array() {
                self.convert(value, &here, depth)
            } else if SCHEMA_LISTS.contains(&k) || (k == "items" && value.is_array()) {
                let items = value.as_array().into_iter().flatten().enumerate();
                let items = items.map(|(i, s)| self.convert(s, &format!("{here}/{i}"), depth));
                Value::Array(items.collect())
            } else if SCHEMA_MAPS.contains(&k) {
                let entries = value.as_object().into_iter().flatten();
                let entries = entries.map(|(name, s)| {
                    let there = format!("{here}/{}", crate::escape(name));
                    (name.clone(), self.convert(s, &there, depth))
                });
                Value::Object(entries.collect())
            } else if value.is_null() {
                continue;
            } else {
                value.clone()
            };
            out.insert(key.clone(), converted);
        }
        // 3.0's boolean forms (also found in 3.1 documents, where they are not valid)
        exclusive_bounds(&mut out);
        let null_allowed = nulls_out_of_values(&mut out) || nullable;
        if null_allowed {
            return with_null(out);
        }
        Value::Object(out)
    }
}

/// 3.0's boolean `exclusiveMinimum`/`exclusiveMaximum` as 2020-12's numbers.
fn exclusive_bounds(out: &mut Map<String, Value>) {
    for (flag, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        match out.get(flag) {
            Some(Value::Bool(true)) => match out.remove(bound) {
                Some(b) => {
                    out.insert(flag.into(), b);
                }
                None => {
                    out.remove(flag);
                }
            },
            Some(Value::Bool(false)) => {
                out.remove(flag);
            }
            _ => {}
        }
    }
}

/// Takes `null` out of `enum` and `const` (TOML has no null); whether it allowed one.
fn nulls_out_of_values(out: &mut Map<String, Value>) -> bool {
    let mut allowed = false;
    if let Some(Value::Array(values)) = out.get_mut("enum") {
        let before = values.len();
        values.retain(|v| !v.is_null());
        allowed = values.len() < before;
        if values.is_empty() {
            out.remove("enum");
            out.insert("not".into(), Value::Bool(true));
        }
    }
    if out.get("const").is_some_and(Value::is_null) {
        out.remove("const");
        out.insert("not".into(), Value::Bool(true));
        allowed = true;
    }
    allowed
}

/// A schema that also accepts `null`: the type `"null"` added to its `type`, or, where it
/// constrains otherwise (`enum`, no `type`), either it or `null`.
fn with_null(mut out: Map<String, Value>) -> Value {
    let null = Value::String("null".into());
    let simple = !out.contains_key("enum") && !out.contains_key("not");
    match out.get_mut("type") {
        Some(Value::String(t)) if simple => {
            let t = Value::String(std::mem::take(t));
            out.insert("type".into(), Value::Array(vec![t, null]));
            Value::Object(out)
        }
        Some(Value::Array(types)) if simple => {
            if !types.contains(&null) {
                types.push(null);
            }
            Value::Object(out)
        }
        _ => {
            let mut null_type = Map::new();
            null_type.insert("type".into(), null);
            let mut either = Map::new();
            let options = vec![Value::Object(out), Value::Object(null_type)];
            either.insert("anyOf".into(), Value::Array(options));
            Value::Object(either)
        }
    }
}

/// A JSON pointer's reference token, unescaped (RFC 6901 §4).
fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}
