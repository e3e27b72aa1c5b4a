//! The configuration reference, `docs/configuration.md`, written from the config's JSON Schema,
//! whose descriptions are the doc comments of the types in [`raw`](super::raw): one section per
//! table, one row per key. `portcullis reference` prints it; a test fails when the committed page
//! differs, so the reference cannot fall behind the code.

use super::SECTIONS;
use serde_json::{Map, Value};
use std::fmt::Write;

const INTRO: &str = "\
# Configuration reference

<!-- Written by `portcullis reference` from the doc comments of core/src/config/raw.rs; do not
edit by hand: `cargo run -p portcullis-cli -- reference > docs/configuration.md`. -->

One TOML file, checked as a whole by `portcullis check FILE` (every problem with its line,
column and key path) and embedded in the worker or component when it is built. Its JSON Schema
is `portcullis.schema.json` (`#:schema ./portcullis.schema.json` as the first line gives editors
completion). How each policy behaves is in [policies.md](policies.md); every example in
`examples/` is loaded by a test.

Named policies (`[access.NAME]`, `[auth.jwt.NAME]`, `[auth.api_keys.NAME]`,
`[rate_limits.NAME]`, `[transforms.NAME]`, `[cors.NAME]`) are referenced by routes by name.
`[defaults]` names policies for every route that does not name its own; a route opts out with
the name `\"none\"`. A key without a default is required.
";

/// The reference page for `schema` (the output of [`super::json_schema`]).
pub fn markdown(schema: &Value) -> String {
    let defs = schema.get("$defs").and_then(Value::as_object);
    let empty = Map::new();
    let mut doc = Doc {
        defs: defs.unwrap_or(&empty),
        out: String::from(INTRO),
        written: Vec::new(),
    };
    let root = schema.get("properties").and_then(Value::as_object);
    let mut keys: Vec<(&String, &Value)> = root.into_iter().flatten().collect();
    // in the order a config file is written
    let order = |k: &str| {
        SECTIONS
            .iter()
            .position(|o| *o == k)
            .unwrap_or(SECTIONS.len())
    };
    keys.sort_by_key(|(k, _)| order(k));
    for (key, prop) in keys {
        doc.table(&heading("", key, prop), prop);
    }
    doc.out
}

/// The TOML header of the table `key` holds inside the table `parent` (a header, or "" at the
/// top): `[gateway]`, `[upstreams.NAME]`, `[[routes]]`, `[routes.cache]`.
fn heading(parent: &str, key: &str, prop: &Value) -> String {
    let base = parent.trim_matches(|c| c == '[' || c == ']');
    let path = if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    };
    if prop.get("items").is_some() {
        format!("[[{path}]]")
    } else if prop
        .get("additionalProperties")
        .is_some_and(Value::is_object)
    {
        format!("[{path}.NAME]")
    } else {
        format!("[{path}]")
    }
}

struct Doc<'s> {
    defs: &'s Map<String, Value>,
    out: String,
    /// The tables written so far, by the section that has them.
    written: Vec<(&'s Value, String)>,
}

impl<'s> Doc<'s> {
    /// The definition a schema refers to (through `$ref`, an array's items, a map's values, or
    /// an optional value's `anyOf`), if it is a table with keys.
    fn table_def(&self, schema: &'s Value) -> Option<&'s Value> {
        if let Some(name) = schema.get("$ref").and_then(Value::as_str) {
            let def = self.defs.get(name.trim_start_matches("#/$defs/"))?;
            if def.get("properties").is_some() {
                return Some(def);
            }
            // a name or a table (`"int"` or `{ type = "int", min = 1 }`): the table
            return self.any_of(def).find_map(|s| self.table_def(s));
        }
        if schema.get("properties").is_some() {
            return Some(schema);
        }
        let inner = schema
            .get("items")
            .or_else(|| schema.get("additionalProperties").filter(|v| v.is_object()))?;
        self.table_def(inner)
            .or_else(|| self.any_of(inner).find_map(|s| self.table_def(s)))
    }

    fn any_of(&self, schema: &'s Value) -> impl Iterator<Item = &'s Value> {
        let list = schema.get("anyOf").or_else(|| schema.get("oneOf"));
        list.and_then(Value::as_array).into_iter().flatten()
    }

    /// A section for the table `schema` describes, then one for each table inside it.
    fn table(&mut self, this: &str, schema: &'s Value) {
        let Some(def) = self.table_def(schema).or_else(|| {
            let of = self.any_of(schema).collect::<Vec<_>>();
            of.into_iter().find_map(|s| self.table_def(s))
        }) else {
            return;
        };
        let _ = write!(self.out, "\n## `{this}`\n\n");
        if let Some((_, first)) = self.written.iter().find(|(d, _)| std::ptr::eq(*d, def)) {
            let _ = writeln!(self.out, "The same keys as `{first}`.");
            return;
        }
        self.written.push((def, this.to_string()));
        // what the table is (or, without a word on that, what the key holds)
        let text = def.get("description").or_else(|| schema.get("description"));
        if let Some(text) = text.and_then(Value::as_str) {
            let _ = write!(self.out, "{}\n\n", text.trim());
        }
        self.out
            .push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
        let required: Vec<&str> = def
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let props = def.get("properties").and_then(Value::as_object);
        let mut nested = Vec::new();
        for (key, prop) in props.into_iter().flatten() {
            let default = match prop.get("default") {
                _ if required.contains(&key.as_str()) => "required".to_string(),
                Some(Value::Object(m)) if !m.is_empty() => "see below".to_string(),
                Some(Value::Null) | None => "none".to_string(),
                Some(v) => format!("`{}`", compact(v)),
            };
            let meaning = prop
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let _ = writeln!(
                self.out,
                "| `{key}` | {} | {default} | {} |",
                self.type_name(prop),
                meaning.replace('|', "\\|")
            );
            if self.table_def(prop).is_some()
                || self.any_of(prop).any(|s| self.table_def(s).is_some())
            {
                nested.push((key, prop));
            }
        }
        for (key, prop) in nested {
            self.table(&heading(this, key, prop), prop);
        }
    }

    /// A short type: `string`, `integer`, `list of string`, `table`, `"open" \| "closed"`.
    fn type_name(&self, schema: &Value) -> String {
        if let Some(name) = schema.get("$ref").and_then(Value::as_str) {
            let def = self.defs.get(name.trim_start_matches("#/$defs/"));
            return def.map_or("table".into(), |d| self.type_name(d));
        }
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            let names: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
            return names.join(" \\| ");
        }
        let of: Vec<&Value> = self.any_of(schema).collect();
        if !of.is_empty() {
            let mut names: Vec<String> = Vec::new();
            for s in of {
                let name = match s.get("const") {
                    Some(c) => format!("`{c}`"),
                    None => self.type_name(s),
                };
                if name != "null" && !names.contains(&name) {
                    names.push(name);
                }
            }
            return names.join(" or ");
        }
        if schema.get("properties").is_some() {
            return "table".into();
        }
        let kinds: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let null = kinds.contains(&"null");
        let kind = kinds.into_iter().find(|k| *k != "null");
        let kind = kind.unwrap_or(if null { "null" } else { "any" });
        match kind {
            "array" => match schema.get("items") {
                Some(items) => format!("list of {}", self.type_name(items)),
                None => "list".into(),
            },
            "object" => match schema.get("additionalProperties") {
                Some(v) if v.is_object() => format!("table of {}", self.type_name(v)),
                _ => "table".into(),
            },
            other => other.into(),
        }
    }
}

/// A default value as TOML would write it (JSON is close enough for scalars and lists).
fn compact(v: &Value) -> String {
    match v {
        Value::Object(m) if m.is_empty() => "{}".into(),
        other => other.to_string().replace(',', ", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_table_has_a_row_per_key_and_a_section_per_inner_table() {
        let schema = json!({
            "properties": {
                "upstreams": {
                    "description": "Backends, by name.",
                    "additionalProperties": {"$ref": "#/$defs/Upstream"},
                    "type": "object"
                }
            },
            "$defs": {
                "Upstream": {
                    "description": "A backend.",
                    "properties": {
                        "fail": {"$ref": "#/$defs/Fail", "default": "open", "description": "When\n it fails."},
                        "targets": {"items": {"$ref": "#/$defs/Target"}, "type": "array"}
                    },
                    "required": ["targets"]
                },
                "Fail": {"oneOf": [{"const": "open"}, {"const": "closed"}]},
                "Target": {
                    "properties": {"url": {"type": "string", "description": "a | b"}},
                    "required": ["url"]
                }
            }
        });
        let page = markdown(&schema);
        let body = page.strip_prefix(INTRO).unwrap();
        assert_eq!(
            body,
            "\n## `[upstreams.NAME]`\n\nA backend.\n\n\
             | key | type | default | meaning |\n|---|---|---|---|\n\
             | `fail` | `\"open\"` or `\"closed\"` | `\"open\"` | When it fails. |\n\
             | `targets` | list of table | required |  |\n\
             \n## `[[upstreams.NAME.targets]]`\n\n\
             | key | type | default | meaning |\n|---|---|---|---|\n\
             | `url` | string | required | a \\| b |\n"
        );
    }
}
