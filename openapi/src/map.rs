//! The document's parts as config parts: the upstream, the auth providers, a route per
//! operation with its parameters, body and security.

use crate::schema::Converter;
use crate::{escape, Note, Options, Refused, Version};
use serde_json::{json, Map, Value};

/// The methods an OpenAPI path item may have operations for, in its order.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The name of the one upstream an import writes.
pub(crate) const UPSTREAM: &str = "api";

/// A route made from an operation, and where the operation is.
pub(crate) struct Route {
    pub route: Map<String, Value>,
    pub pointer: String,
}

/// The config's parts, and what did not map.
pub(crate) struct Mapped {
    pub upstream: Map<String, Value>,
    pub auth: Map<String, Value>,
    pub routes: Vec<Route>,
    /// Operations that became no route.
    pub skipped: usize,
    pub notes: Vec<Note>,
    pub title: String,
}

/// How a security scheme maps: the provider kind and name a route names.
#[derive(Clone)]
enum Scheme {
    Jwt(String),
    ApiKey(String),
}

struct Mapper<'d> {
    doc: &'d Value,
    version: Version,
    /// Whether the config gets the importer's providers to complete (else it has its own).
    placeholders: bool,
    schemes: Vec<(String, Scheme)>,
    notes: Vec<Note>,
}

/// Maps the whole document; with `placeholders`, the auth providers are the importer's, to
/// complete.
pub(crate) fn config(
    doc: &Value,
    options: &Options,
    placeholders: bool,
) -> Result<Mapped, Refused> {
    let version = match doc["openapi"].as_str() {
        Some(v) if v.starts_with("3.0") => Version::V3_0,
        _ => Version::V3_1,
    };
    let mut m = Mapper {
        doc,
        version,
        placeholders,
        schemes: Vec::new(),
        notes: Vec::new(),
    };
    let upstream = m.upstream(options);
    let auth = m.auth();
    let mut routes = Vec::new();
    let mut skipped = 0;
    let mut names = std::collections::HashSet::new();
    // the first path of each shape (parameters unnamed), whose parameter names the others take
    let mut shapes: std::collections::HashMap<String, String> = Default::default();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        let at = format!("/paths/{}", escape(path));
        let first = shapes
            .entry(shape(path))
            .or_insert_with(|| path.clone())
            .clone();
        let (item, item_at) = m.resolve(item, &at);
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let op_at = format!("{item_at}/{method}");
            if !op.is_object() {
                m.note(&op_at, "not an operation object: left out");
                skipped += 1;
                continue;
            }
            match m.route(path, method, item, op, &op_at, &mut names) {
                Some(mut route) => {
                    if first != *path {
                        m.rename_parameters(&mut route, path, &first, &op_at);
                    }
                    routes.push(Route {
                        route,
                        pointer: op_at,
                    })
                }
                None => skipped += 1,
            }
        }
    }
    if routes.is_empty() && skipped == 0 {
        m.note("/paths", "no operations: the config has no routes");
    }
    let title = doc["info"]["title"]
        .as_str()
        .unwrap_or("an API")
        .to_string();
    // a component used by several operations is noted once
    let mut seen = std::collections::HashSet::new();
    m.notes
        .retain(|n| seen.insert((n.pointer.clone(), n.message.clone())));
    Ok(Mapped {
        upstream,
        auth,
        routes,
        skipped,
        notes: m.notes,
        title,
    })
}

impl<'d> Mapper<'d> {
    fn note(&mut self, pointer: &str, message: impl Into<String>) {
        self.notes.push(Note {
            pointer: pointer.into(),
            message: message.into(),
        });
    }

    /// `v`, or what its `$ref` names inside the document (followed up to 8 times), and where.
    fn resolve(&mut self, v: &'d Value, at: &str) -> (&'d Value, String) {
        let (mut v, mut at) = (v, at.to_string());
        for _ in 0..8 {
            let Some(target) = v.get("$ref").and_then(Value::as_str) else {
                return (v, at);
            };
            match target.strip_prefix('#').and_then(|p| self.doc.pointer(p)) {
                Some(found) => {
                    at = target[1..].to_string();
                    v = found;
                }
                None => {
                    self.note(&at, format!("{target} is not in this document: left out"));
                    return (&Value::Null, at);
                }
            }
        }
        self.note(&at, "references nested too deep: left out");
        (&Value::Null, at)
    }

    /// Gives `route` (made for `path`) the path `first`, which matches the same requests with
    /// other parameter names (the router takes one name per place), its checks renamed to
    /// match.
    fn rename_parameters(
        &mut self,
        route: &mut Map<String, Value>,
        path: &str,
        first: &str,
        at: &str,
    ) {
        let names = |p: &str| -> Vec<String> {
            let params = p.split('/').filter_map(whole_parameter);
            params.map(str::to_string).collect()
        };
        let (old, new) = (names(path), names(first));
        if old.len() != new.len() {
            return;
        }
        route.insert("path".into(), Value::String(first.to_string()));
        if let Some(Value::Object(checks)) =
            route.get_mut("validate").and_then(|v| v.get_mut("path"))
        {
            let renamed = old
                .iter()
                .zip(&new)
                .filter_map(|(o, n)| Some((n.clone(), checks.remove(o)?)));
            let renamed: Vec<(String, Value)> = renamed.collect();
            checks.extend(renamed);
        }
        self.note(
            at,
            format!(
                "its path parameters take the names of {first:?}, which matches the same requests"
            ),
        );
    }

    /// The upstream: `--upstream`, else the first server with its variables' defaults.
    fn upstream(&mut self, options: &Options) -> Map<String, Value> {
        let server = self.doc["servers"][0].clone();
        let url = match &options.upstream {
            Some(url) => url.clone(),
            None => {
                let mut url = server["url"].as_str().unwrap_or("").to_string();
                for (name, var) in server["variables"].as_object().into_iter().flatten() {
                    let value = var["default"].as_str().unwrap_or("");
                    url = url.replace(&format!("{{{name}}}"), value);
                }
                url
            }
        };
        let url = url.trim_end_matches('/').to_string();
        let absolute = url.starts_with("https://") || url.starts_with("http://");
        let url = if absolute {
            url
        } else {
            let why = match url.is_empty() {
                true => "no server URL".to_string(),
                false => format!("the server URL {url:?} is not absolute"),
            };
            if self.placeholders {
                let message = format!("{why}: set the upstream (`--upstream URL`)");
                self.note("/servers", message);
            }
            "https://upstream.invalid".into()
        };
        let mut upstream = Map::new();
        let host = url
            .split("://")
            .nth(1)
            .unwrap_or("")
            .split(['/', ':'])
            .next();
        let local = host.is_some_and(|h| {
            h == "localhost" || h.starts_with("127.") || h.starts_with("10.") || h == "["
        });
        upstream.insert("targets".into(), json!([{ "url": url }]));
        if local {
            upstream.insert("allow_private".into(), Value::Bool(true));
            if self.placeholders {
                let message = "the upstream is a local address: allow_private is on";
                self.note("/servers", message);
            }
        }
        upstream
    }

    /// The security schemes as auth providers, where they map.
    fn auth(&mut self) -> Map<String, Value> {
        let (mut jwt, mut api_keys) = (Map::new(), Map::new());
        let schemes = self.doc["components"]["securitySchemes"].as_object();
        for (name, scheme) in schemes.into_iter().flatten() {
            let at = format!("/components/securitySchemes/{}", escape(name));
            let (scheme, at) = self.resolve(scheme, &at);
            let kind = scheme["type"].as_str().unwrap_or("");
            let http = scheme["scheme"].as_str().unwrap_or("").to_ascii_lowercase();
            match (kind, http.as_str(), scheme["in"].as_str()) {
                ("http", "bearer", _) | ("oauth2", ..) | ("openIdConnect", ..) => {
                    let provider = json!({ "jwks_url": "https://issuer.invalid/.well-known/jwks.json" });
                    jwt.insert(name.clone(), provider);
                    self.schemes.push((name.clone(), Scheme::Jwt(name.clone())));
                    if self.placeholders {
                        self.note(&at, format!("JWT provider `{name}`: complete its jwks_url (and issuer, audiences)"));
                    }
                }
                ("apiKey", _, Some(place @ ("header" | "query"))) => {
                    let key_name = scheme["name"].as_str().unwrap_or("x-api-key");
                    let field = if place == "header" { "header" } else { "query" };
                    let set = json!({ field: key_name.to_ascii_lowercase(), "keys": [] });
                    api_keys.insert(name.clone(), set);
                    self.schemes.push((name.clone(), Scheme::ApiKey(name.clone())));
                    if self.placeholders {
                        self.note(&at, format!("API-key set `{name}`: add its keys (SHA-256 of each)"));
                    }
                }
                _ => self.note(&at, format!("security scheme `{name}` ({kind} {http}) has no counterpart: routes requiring only it do not authenticate")),
            }
        }
        let mut auth = Map::new();
        if !jwt.is_empty() {
            auth.insert("jwt".into(), Value::Object(jwt));
        }
        if !api_keys.is_empty() {
            auth.insert("api_keys".into(), Value::Object(api_keys));
        }
        auth
    }

    /// One operation as a route (`None` when it cannot be one).
    fn route(
        &mut self,
        path: &str,
        method: &str,
        item: &'d Value,
        op: &'d Value,
        at: &str,
        names: &mut std::collections::HashSet<String>,
    ) -> Option<Map<String, Value>> {
        if !path.starts_with('/') {
            self.note(
                at,
                format!("the path {path:?} does not start with /: left out"),
            );
            return None;
        }
        let mut name = op["operationId"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| slug(method, path));
        if !names.insert(name.clone()) {
            let unique = (2..)
                .map(|n| format!("{name}-{n}"))
                .find(|n| !names.contains(n));
            let unique = unique.unwrap_or_default();
            self.note(
                at,
                format!("the name {name:?} is taken: the route is {unique:?}"),
            );
            names.insert(unique.clone());
            name = unique;
        }
        let mut route = Map::new();
        route.insert("name".into(), Value::String(name));
        route.insert("methods".into(), json!([method.to_ascii_uppercase()]));
        route.insert("path".into(), Value::String(path.to_string()));
        route.insert("upstream".into(), Value::String(UPSTREAM.into()));
        let validate = self.validation(item, op, at);
        if !validate.is_empty() {
            route.insert("validate".into(), Value::Object(validate));
        }
        if let Some(auth) = self.security(op, at) {
            route.insert("auth".into(), auth);
        }
        Some(route)
    }

    /// The route's checks: its parameters and its body.
    fn validation(&mut self, item: &'d Value, op: &'d Value, at: &str) -> Map<String, Value> {
        let mut by_place: [Map<String, Value>; 3] = Default::default();
        // the operation's parameters replace the path item's of the same name and place
        let item_params = item["parameters"].as_array().into_iter().flatten();
        let op_params = op["parameters"].as_array().into_iter().flatten();
        let item_at = at.rsplit_once('/').map_or("", |(p, _)| p).to_string();
        let all = (item_params
            .enumerate()
            .map(|(i, p)| (p, format!("{item_at}/parameters/{i}"))))
        .chain(
            op_params
                .enumerate()
                .map(|(i, p)| (p, format!("{at}/parameters/{i}"))),
        );
        for (p, p_at) in all {
            let (p, p_at) = self.resolve(p, &p_at);
            if let Some((slot, name, spec)) = self.parameter(p, &p_at) {
                by_place[slot].insert(name, spec);
            }
        }
        let mut validate = Map::new();
        for (slot, key) in ["path", "query", "headers"].into_iter().enumerate() {
            if !by_place[slot].is_empty() {
                let place = std::mem::take(&mut by_place[slot]);
                validate.insert(key.into(), Value::Object(place));
            }
        }
        if let Some(body) = op.get("requestBody") {
            let (body, body_at) = self.resolve(body, &format!("{at}/requestBody"));
            self.body(body, &body_at, &mut validate);
        }
        validate
    }

    /// One parameter as a check: its place (0 path, 1 query, 2 header), name and rule.
    fn parameter(&mut self, p: &'d Value, at: &str) -> Option<(usize, String, Value)> {
        let name = p["name"].as_str()?;
        let slot = match p["in"].as_str() {
            Some("path") => 0,
            Some("query") => 1,
            Some("header") => {
                // OpenAPI ignores these as parameters (they have their own fields)
                let ignored = ["accept", "content-type", "authorization"];
                if ignored.contains(&name.to_ascii_lowercase().as_str()) {
                    return None;
                }
                2
            }
            place => {
                let place = place.unwrap_or("nowhere");
                self.note(at, format!("{place} parameter `{name}`: not checked"));
                return None;
            }
        };
        let schema = match (p.get("schema"), p.get("content")) {
            (Some(s), _) => self.resolve(s, &format!("{at}/schema")).0,
            (None, Some(content)) => {
                self.note(
                    at,
                    format!("parameter `{name}` is described by `content`: checked as a string"),
                );
                let first = content.as_object().and_then(|c| c.values().next());
                first.map_or(&Value::Null, |m| &m["schema"])
            }
            (None, None) => &Value::Null,
        };
        let required = slot == 0 || p["required"].as_bool() == Some(true);
        let name = if slot == 2 {
            name.to_ascii_lowercase()
        } else {
            name.to_string()
        };
        Some((slot, name.clone(), self.rule(schema, required, &name, at)))
    }

    /// A parameter schema as a rule: the short form (`"int"`) when it is only a type.
    fn rule(&mut self, schema: &Value, required: bool, name: &str, at: &str) -> Value {
        let types: Vec<&str> = match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect(),
            _ => vec![],
        };
        let kind = match (types.as_slice(), schema["format"].as_str()) {
            (["integer"], _) => "int",
            (["number"], _) => "number",
            (["boolean"], _) => "bool",
            (["string"], Some("uuid")) => "uuid",
            (["string"] | [], _) => "string",
            (["array" | "object"], _) => {
                self.note(
                    at,
                    format!(
                        "parameter `{name}` is an {}: its items are not checked",
                        types[0]
                    ),
                );
                "string"
            }
            _ => {
                self.note(
                    at,
                    format!("parameter `{name}` has several types: checked as a string"),
                );
                "string"
            }
        };
        let structured = types.iter().any(|t| matches!(*t, "array" | "object"));
        let mut rule = Map::new();
        rule.insert("type".into(), Value::String(kind.into()));
        if required {
            rule.insert("required".into(), Value::Bool(true));
        }
        if !structured {
            self.bounds(schema, kind, &mut rule, name, at);
        }
        if rule.len() == 1 {
            return Value::String(kind.into());
        }
        Value::Object(rule)
    }

    /// A parameter's `enum`, bounds, lengths and `pattern`.
    fn bounds(
        &mut self,
        schema: &Value,
        kind: &str,
        rule: &mut Map<String, Value>,
        name: &str,
        at: &str,
    ) {
        let values: Vec<Value> = (schema["enum"].as_array().into_iter().flatten())
            .filter_map(|v| match v {
                Value::String(s) => Some(Value::String(s.clone())),
                Value::Number(n) => Some(Value::String(n.to_string())),
                Value::Bool(b) => Some(Value::String(b.to_string())),
                _ => None,
            })
            .collect();
        if !values.is_empty() {
            rule.insert("enum".into(), Value::Array(values));
        }
        let numeric = matches!(kind, "int" | "number");
        let (low, high) = match numeric {
            true => ("minimum", "maximum"),
            false => ("minLength", "maxLength"),
        };
        for (key, out, exclusive) in [
            (low, "min", "exclusiveMinimum"),
            (high, "max", "exclusiveMaximum"),
        ] {
            let mut bound = schema[key].as_f64();
            // 3.1: a number of its own; 3.0: a flag on the bound
            match (&schema[exclusive], numeric) {
                (Value::Number(n), true) => bound = n.as_f64().map(|b| step(b, kind, out)),
                (Value::Bool(true), true) => bound = bound.map(|b| step(b, kind, out)),
                _ => {}
            }
            if kind == "number" && !schema[exclusive].is_null() && schema[exclusive] != false {
                self.note(
                    at,
                    format!("parameter `{name}`: an exclusive bound is checked as inclusive"),
                );
            }
            if let Some(b) = bound {
                rule.insert(out.into(), json!(b));
            }
        }
        if let Some(pattern) = schema["pattern"].as_str() {
            rule.insert("pattern".into(), Value::String(pattern.into()));
        }
    }

    /// The body's media types and JSON schema.
    fn body(&mut self, body: &'d Value, at: &str, validate: &mut Map<String, Value>) {
        let Some(content) = body["content"].as_object() else {
            return;
        };
        let types: Vec<String> = content.keys().map(|t| t.to_ascii_lowercase()).collect();
        if types.iter().any(|t| t.contains('*')) {
            self.note(at, "a wildcard media type: any content type is accepted");
        } else if !types.is_empty() {
            let media = types
                .iter()
                .map(|t| t.split(';').next().unwrap_or("").trim().to_string());
            let mut media: Vec<String> = media.collect();
            media.dedup();
            validate.insert("content_types".into(), json!(media));
        }
        let json_types = content.iter().filter(|(t, _)| is_json(t));
        let schemas: Vec<(&String, &Value)> = json_types
            .filter_map(|(t, m)| Some((t, m.get("schema")?)))
            .collect();
        let Some((media, schema)) = schemas.first() else {
            return;
        };
        if schemas.len() > 1 {
            self.note(
                at,
                format!("several JSON media types: the body is checked against {media}'s schema"),
            );
        }
        let schema_at = format!("{at}/content/{}/schema", escape(media));
        let (converted, notes) =
            Converter::new(self.doc, self.version).body_schema(schema, &schema_at);
        self.notes.extend(notes);
        if converted != Value::Bool(true) {
            validate.insert("body_schema".into(), converted);
        }
    }

    /// The route's `auth`, from the operation's security or the document's.
    fn security(&mut self, op: &Value, at: &str) -> Option<Value> {
        let (requirements, req_at) = match op.get("security") {
            Some(s) => (s, format!("{at}/security")),
            None => (&self.doc["security"], "/security".to_string()),
        };
        let alternatives = requirements.as_array()?;
        if alternatives.is_empty()
            || alternatives
                .iter()
                .any(|r| r.as_object().is_some_and(Map::is_empty))
        {
            return None;
        }
        // the first alternative naming one scheme that maps
        let found = alternatives.iter().find_map(|r| {
            let r = r.as_object()?;
            let (name, scopes) = r.iter().next().filter(|_| r.len() == 1)?;
            let scheme = self.schemes.iter().find(|(n, _)| n == name)?.1.clone();
            Some((scheme, scopes.clone()))
        });
        let Some((scheme, scopes)) = found else {
            self.note(&req_at, "no alternative of its security maps to one provider: the route does not authenticate");
            return None;
        };
        if alternatives.len() > 1 {
            self.note(
                &req_at,
                format!(
                    "{} security alternatives: the route requires the first that maps",
                    alternatives.len()
                ),
            );
        }
        let mut auth = match &scheme {
            Scheme::Jwt(p) => json!({ "jwt": p }),
            Scheme::ApiKey(p) => json!({ "api_key": p }),
        };
        let scopes: Vec<Value> = (scopes.as_array().into_iter().flatten())
            .filter(|s| s.is_string())
            .cloned()
            .collect();
        if !scopes.is_empty() {
            if let Scheme::Jwt(_) = scheme {
                auth["scopes"] = Value::Array(scopes);
            }
        }
        Some(auth)
    }
}

/// An exclusive bound as the inclusive one next to it, for integers (`min` up, `max` down);
/// a number's stays where it is.
fn step(bound: f64, kind: &str, out: &str) -> f64 {
    match (kind, out) {
        ("int", "min") => bound.floor() + 1.0,
        ("int", _) => bound.ceil() - 1.0,
        _ => bound,
    }
}

/// Whether a media type carries JSON (`application/json`, `*/*+json`).
fn is_json(media: &str) -> bool {
    let media = media
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || media.ends_with("+json")
}

/// A route name for an operation without an `operationId`: `get-pets-petId`.
fn slug(method: &str, path: &str) -> String {
    let words = path.split(|c: char| !c.is_ascii_alphanumeric() && c != '_');
    let words: Vec<&str> = words.filter(|w| !w.is_empty()).collect();
    std::iter::once(method)
        .chain(words)
        .collect::<Vec<_>>()
        .join("-")
}

/// A path with its whole-segment parameters unnamed: `/users/{}/keys`.
fn shape(path: &str) -> String {
    let segments = path.split('/').map(|s| match whole_parameter(s) {
        Some(_) => "{}",
        None => s,
    });
    segments.collect::<Vec<_>>().join("/")
}

/// The name of a segment that is one parameter (`{id}`), not part of one (`{a}...{b}`).
fn whole_parameter(segment: &str) -> Option<&str> {
    let name = segment.strip_prefix('{')?.strip_suffix('}')?;
    (!name.contains(['{', '}'])).then_some(name)
}
