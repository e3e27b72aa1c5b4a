//! Parameter validation: path normalization (before anything else looks at the path), request
//! size limits (414/431/413), accepted content types (415), typed path/query/header parameters and
//! JSON bodies against a JSON Schema (400).
//!
//! Pure checks over the request; never changes what goes upstream except the path, which is
//! replaced by its normalized form so that what was matched is exactly what is forwarded.

use crate::config::diag::header_name;
use crate::config::diag::{refuse, Errs};
use crate::config::raw;
use crate::problem::Reject;
use http::{HeaderMap, Uri};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Normalizes a request path: decodes percent-encoded unreserved characters, uppercases the hex
/// of the others, merges `//`, removes `.` and `..` segments; other bytes, raw UTF-8 included,
/// are kept as they are. Refuses encoded `/`, `\`, NUL and control characters, percent-encoded
/// bytes that are not UTF-8 (the overlong `%C0%AE` among them), raw `\` and control characters,
/// a dot segment with parameters (`..;`, which Tomcat, Jetty and Spring read as `..`), and paths
/// that climb above the root. A path that is already normal comes back borrowed.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, Reject> {
    if !raw.starts_with('/') {
        return Err(Reject::BadPath("the path must start with /"));
    }
    if is_normal(raw.as_bytes()) {
        return Ok(Cow::Borrowed(raw));
    }
    normalize_slow(raw).map(Cow::Owned)
}

/// The value of the two hex digits at `bytes[i + 1..i + 3]` (after a `%` at `i`).
fn percent_byte(bytes: &[u8], i: usize) -> Result<u8, Reject> {
    let hex = bytes
        .get(i + 1..i + 3)
        .ok_or(Reject::BadPath("truncated percent-encoding"))?;
    std::str::from_utf8(hex)
        .ok()
        .and_then(|h| u8::from_str_radix(h, 16).ok())
        .ok_or(Reject::BadPath("invalid percent-encoding"))
}

/// Whether a segment (already decoded) is `.` or `..`, alone or with parameters (`..;x`).
pub(crate) fn dot_segment(seg: &[u8]) -> Option<bool> {
    let (name, has_params) = match seg.iter().position(|b| *b == b';') {
        Some(at) => (&seg[..at], true),
        None => (seg, false),
    };
    matches!(name, b"." | b"..").then_some(has_params)
}

/// The full normalization, for paths that need it.
fn normalize_slow(raw: &str) -> Result<String, Reject> {
    let bytes = raw.as_bytes();
    // the path with unreserved characters decoded; `plain` is every escape decoded, to check that
    // what the escapes spell is UTF-8
    let mut decoded: Vec<u8> = Vec::with_capacity(raw.len());
    let mut plain: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let v = percent_byte(bytes, i)?;
                match v {
                    b'/' | b'\\' | 0 => return Err(Reject::BadPath("encoded /, \\ or NUL")),
                    v if v < 0x20 || v == 0x7f => {
                        return Err(Reject::BadPath("encoded control character"))
                    }
                    v if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') => {
                        decoded.push(v)
                    }
                    v => {
                        const HEX: &[u8; 16] = b"0123456789ABCDEF";
                        decoded.extend_from_slice(&[
                            b'%',
                            HEX[usize::from(v >> 4)],
                            HEX[usize::from(v & 15)],
                        ]);
                    }
                }
                plain.push(v);
                i += 3;
            }
            b'\\' => return Err(Reject::BadPath("backslash in path")),
            b if b < 0x20 || b == 0x7f => return Err(Reject::BadPath("control character in path")),
            _ => {
                decoded.push(b);
                plain.push(b);
                i += 1;
            }
        }
    }
    if std::str::from_utf8(&plain).is_err() {
        return Err(Reject::BadPath("percent-encoded bytes that are not UTF-8"));
    }
    let mut out: Vec<&[u8]> = Vec::new();
    let segments: Vec<&[u8]> = decoded.split(|b| *b == b'/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing = false;
    for (n, seg) in segments.iter().enumerate() {
        match (*seg, dot_segment(seg)) {
            (_, Some(true)) => return Err(Reject::BadPath("a dot segment with parameters")),
            (b"", _) | (b".", _) => trailing = n == last,
            (b"..", _) => {
                if out.pop().is_none() {
                    return Err(Reject::BadPath("the path climbs above the root"));
                }
                trailing = n == last;
            }
            (s, _) => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let mut path = Vec::with_capacity(decoded.len());
    for s in &out {
        path.push(b'/');
        path.extend_from_slice(s);
    }
    if path.is_empty() || trailing {
        path.push(b'/');
    }
    // only ASCII was replaced, at character boundaries, so the bytes are still UTF-8
    String::from_utf8(path).map_err(|_| Reject::BadPath("the path is not UTF-8"))
}

/// Whether a path is already in normal form: no `%`, `\\`, control bytes, empty segment or dot
/// segment, with or without parameters (the common case, answered in one pass).
pub fn is_normal(p: &[u8]) -> bool {
    let mut prev = b'/';
    for (i, &b) in p.iter().enumerate().skip(1) {
        if b == b'%' || b == b'\\' || b < 0x20 || b == 0x7f {
            return false;
        }
        if b == b'/' && prev == b'/' {
            return false;
        }
        if b == b'.' && prev == b'/' {
            let rest = &p[i..];
            let seg_end = rest.iter().position(|c| *c == b'/').unwrap_or(rest.len());
            if dot_segment(&rest[..seg_end]).is_some() {
                return false;
            }
        }
        prev = b;
    }
    true
}

/// Size limits for the whole request.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_uri_bytes: usize,
    pub max_header_bytes: usize,
    /// The longest single header line (name and value).
    pub max_header_line_bytes: usize,
    pub max_body_bytes: usize,
}

/// Checks the request target and header sizes (the body is checked per route).
pub fn check_sizes(limits: &Limits, uri: &Uri, headers: &HeaderMap) -> Result<(), Reject> {
    let target = uri.path_and_query().map_or(1, |pq| pq.as_str().len());
    if target > limits.max_uri_bytes {
        return Err(Reject::UriTooLong {
            limit: limits.max_uri_bytes,
        });
    }
    let mut header_bytes = 0;
    for (k, v) in headers {
        let line = k.as_str().len() + v.len();
        if line > limits.max_header_line_bytes {
            return Err(Reject::HeaderTooLarge {
                limit: limits.max_header_line_bytes,
            });
        }
        header_bytes += line;
    }
    if header_bytes > limits.max_header_bytes {
        return Err(Reject::HeadersTooLarge {
            limit: limits.max_header_bytes,
        });
    }
    Ok(())
}

/// Checks how the request is framed, where a gateway and the server behind it could read it
/// differently (request smuggling, host confusion): refuses more than one `Host` line,
/// `Content-Length` beside
/// `Transfer-Encoding`, and `Content-Length` values that disagree or are not numbers.
pub fn check_framing(headers: &HeaderMap) -> Result<(), Reject> {
    let mut hosts = headers.get_all(http::header::HOST).iter();
    hosts.next();
    if hosts.next().is_some() {
        return Err(Reject::BadFraming("more than one Host header"));
    }
    let mut lengths = headers.get_all(http::header::CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next() {
        if headers.contains_key(http::header::TRANSFER_ENCODING) {
            return Err(Reject::BadFraming(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        let value = |v: &http::HeaderValue| {
            let s = v.to_str().ok()?.trim();
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then_some(s.parse::<u64>().ok()?)
        };
        let n = value(first).ok_or(Reject::BadFraming("Content-Length is not a number"))?;
        if lengths.any(|v| value(v) != Some(n)) {
            return Err(Reject::BadFraming("Content-Length values disagree"));
        }
    }
    Ok(())
}

/// A parameter's value type.
pub use crate::config::raw::ParamType;

/// A compiled parameter rule.
#[derive(Debug, Clone)]
pub struct Param {
    pub kind: ParamType,
    pub required: bool,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub one_of: Vec<String>,
    pub pattern: Option<regex_lite::Regex>,
}

impl Param {
    /// Checks one value; the error completes "… parameter "x" …".
    pub fn check(&self, value: &str) -> Result<(), String> {
        let number = match self.kind {
            ParamType::String => None,
            ParamType::Int => Some(
                value
                    .parse::<i64>()
                    .map_err(|_| "must be an integer".to_string())? as f64,
            ),
            ParamType::Number => Some(
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .ok_or_else(|| "must be a number".to_string())?,
            ),
            ParamType::Bool => {
                if !matches!(value, "true" | "false") {
                    return Err("must be true or false".into());
                }
                None
            }
            ParamType::Uuid => {
                if !is_uuid(value) {
                    return Err("must be a UUID".into());
                }
                None
            }
        };
        let measure = number.unwrap_or(value.chars().count() as f64);
        let what = if number.is_some() { "" } else { "length " };
        if let Some(min) = self.min.filter(|m| measure < *m) {
            return Err(format!("{what}must be at least {min}"));
        }
        if let Some(max) = self.max.filter(|m| measure > *m) {
            return Err(format!("{what}must be at most {max}"));
        }
        if !self.one_of.is_empty() && !self.one_of.iter().any(|v| v == value) {
            return Err(format!("must be one of {}", self.one_of.join(", ")));
        }
        if let Some(p) = &self.pattern {
            if !p.is_match(value) {
                return Err("does not match the required pattern".into());
            }
        }
        Ok(())
    }
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A compiled JSON Schema for request bodies.
///
/// The validator (the `jsonschema` crate) is most of the core's wasm size, so it sits behind the
/// `json-schema` cargo feature. A build without it rejects any config that sets `body_schema`,
/// at load time: a schema is never silently skipped.
#[derive(Debug, Clone)]
pub struct BodySchema {
    #[cfg(feature = "json-schema")]
    validator: std::sync::Arc<jsonschema::Validator>,
}

impl BodySchema {
    /// Compiles `schema`, or says why it cannot be used.
    pub fn compile(schema: &serde_json::Value) -> Result<BodySchema, String> {
        #[cfg(feature = "json-schema")]
        {
            jsonschema::validator_for(schema)
                .map(|v| BodySchema {
                    validator: std::sync::Arc::new(v),
                })
                .map_err(|e| format!("invalid JSON Schema: {e}"))
        }
        #[cfg(not(feature = "json-schema"))]
        {
            let _ = schema;
            Err(
                "this build has no JSON Schema validator (cargo feature `json-schema` is off)"
                    .to_string(),
            )
        }
    }

    /// Checks a parsed body; the error names where in the document it failed.
    fn check(&self, doc: &serde_json::Value) -> Result<(), String> {
        #[cfg(feature = "json-schema")]
        if let Err(e) = self.validator.validate(doc) {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "/".to_string() } else { at };
            return Err(format!("at {at}: {e}"));
        }
        let _ = doc;
        Ok(())
    }
}

/// A route's compiled checks.
#[derive(Debug, Clone, Default)]
pub struct Validation {
    pub path: BTreeMap<String, Param>,
    pub query: BTreeMap<String, Param>,
    pub headers: Vec<(http::HeaderName, Param)>,
    pub content_types: Vec<String>,
    pub body_schema: Option<BodySchema>,
    pub max_body_bytes: usize,
}

/// Decodes a percent-encoded path parameter.
fn decode_param(raw: &str) -> Result<std::borrow::Cow<'_, str>, String> {
    if !raw.contains('%') {
        return Ok(std::borrow::Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let v = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "has invalid percent-encoding".to_string())?;
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(std::borrow::Cow::Owned)
        .map_err(|_| "is not valid UTF-8".to_string())
}

/// Checks path parameters (as matched, still percent-encoded), the query and the headers.
pub fn check_params<'a>(
    v: &Validation,
    path_params: impl Iterator<Item = (&'a str, &'a str)>,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), Reject> {
    let bad = |location: &'static str, name: &str, reason: String| Reject::InvalidParameter {
        location,
        name: name.to_string(),
        reason,
    };
    if !v.path.is_empty() {
        for (name, raw) in path_params {
            if let Some(rule) = v.path.get(name) {
                let value = decode_param(raw).map_err(|e| bad("path", name, e))?;
                rule.check(&value).map_err(|e| bad("path", name, e))?;
            }
        }
    }
    if !v.query.is_empty() {
        check_query(v, query.unwrap_or(""))?;
    }
    for (name, rule) in &v.headers {
        let mut seen = false;
        for value in headers.get_all(name) {
            seen = true;
            let value = value
                .to_str()
                .map_err(|_| bad("header", name.as_str(), "is not visible ASCII".into()))?;
            rule.check(value)
                .map_err(|e| bad("header", name.as_str(), e))?;
        }
        if !seen && rule.required {
            return Err(bad("header", name.as_str(), "is required".into()));
        }
    }
    Ok(())
}

/// The name a backend may read a query parameter's name as: ASCII lowercase, without brackets
/// and control characters (`LIMIT`, `limit[]` and `limit%00` are all `limit` to some
/// framework). ASCII folding only: Unicode case tables would cost the Workers build ~5 KB gzip,
/// and parameter names a rule constrains are ASCII.
fn loose_name(name: &str) -> impl Iterator<Item = char> + '_ {
    name.chars()
        .filter(|c| !c.is_control() && !matches!(c, '[' | ']'))
        .map(|c| c.to_ascii_lowercase())
}

/// Checks the query against the route's rules. Pairs are split at `&` and at `;` (which some
/// backends also split at), so `a=1;limit=500` holds a `limit`. A constrained parameter that
/// appears twice, or under a name that differs from it only by case, brackets or control
/// bytes, is refused: the gateway and the backend could read different values.
fn check_query(v: &Validation, query: &str) -> Result<(), Reject> {
    let bad = |name: &str, reason: &str| Reject::InvalidParameter {
        location: "query",
        name: name.to_string(),
        reason: reason.to_string(),
    };
    let pairs: Vec<(String, String)> = query
        .split(['&', ';'])
        .filter(|p| !p.is_empty())
        .flat_map(|p| form_urlencoded::parse(p.as_bytes()).into_owned())
        .collect();
    for (name, rule) in &v.query {
        let mut seen = false;
        for (k, value) in &pairs {
            if k == name {
                if seen {
                    return Err(bad(name, "appears more than once"));
                }
                seen = true;
                rule.check(value).map_err(|e| bad(name, &e))?;
            } else if loose_name(k).eq(loose_name(name)) {
                return Err(bad(name, &format!("is also given as {k:?}")));
            }
        }
        if !seen && rule.required {
            return Err(bad(name, "is required"));
        }
    }
    Ok(())
}

/// Parses JSON as strictly as the gateway and any backend can agree on it: what `serde_json`
/// accepts (no BOM, no trailing comma, nesting up to 128, no lone surrogate, numbers in range)
/// and no object with the same key twice, which first-wins and last-wins parsers read apart.
pub fn parse_json_strict(bytes: &[u8]) -> Result<serde_json::Value, String> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// A `serde_json::Value` that refuses duplicate object keys.
struct StrictValue;

impl<'de> serde::de::DeserializeSeed<'de> for StrictValue {
    type Value = serde_json::Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StrictValue {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
        serde_json::Number::from_f64(v)
            .map(serde_json::Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            out.push(v);
        }
        Ok(serde_json::Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(StrictValue)?;
            if out.insert(k.clone(), v).is_some() {
                return Err(serde::de::Error::custom(format!("duplicate key {k:?}")));
            }
        }
        Ok(serde_json::Value::Object(out))
    }
}

/// The media type of a `Content-Type` value: lowercase, without parameters.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Checks the body: size, content type and JSON Schema. `body` is `None` for a stream not read
/// (its length unknown): then the declared length and the content type are checked, and the
/// schema, which needs the body, is left to a second call with the body read.
pub fn check_body(v: &Validation, headers: &HeaderMap, body: Option<&[u8]>) -> Result<(), Reject> {
    if body.is_some_and(|b| b.len() > v.max_body_bytes) {
        return Err(Reject::BodyTooLarge {
            limit: v.max_body_bytes,
        });
    }
    let declared = crate::body::declared_length(headers);
    if declared.is_some_and(|l| l > v.max_body_bytes as u64) {
        return Err(Reject::BodyTooLarge {
            limit: v.max_body_bytes,
        });
    }
    if v.content_types.is_empty() && v.body_schema.is_none() {
        return Ok(()); // nothing looks at the content type
    }
    let media = media_type(headers);
    let has_body = body.is_none_or(|b| !b.is_empty());
    if !v.content_types.is_empty() && (has_body || media.is_some()) {
        let m = media.clone().unwrap_or_default();
        if !v.content_types.contains(&m) {
            return Err(Reject::UnsupportedMediaType(m));
        }
    }
    if let Some(schema) = &v.body_schema {
        if media
            .as_deref()
            .is_some_and(|m| m != "application/json" && !m.ends_with("+json"))
        {
            return Err(Reject::UnsupportedMediaType(media.unwrap_or_default()));
        }
        let Some(body) = body else {
            return Ok(());
        };
        let doc =
            parse_json_strict(body).map_err(|e| Reject::InvalidBody(format!("not JSON ({e})")))?;
        schema.check(&doc).map_err(Reject::InvalidBody)?;
    }
    Ok(())
}

impl Param {
    /// Checks and builds a parameter rule at `path` (one in the path is always required).
    pub(crate) fn compile(
        e: &mut Errs<'_>,
        path: &str,
        spec: &raw::ParamSpec,
        in_path: bool,
    ) -> Option<Param> {
        let rule = match spec {
            raw::ParamSpec::Type(kind) => raw::ParamRule {
                kind: *kind,
                required: false,
                min: None,
                max: None,
                one_of: vec![],
                pattern: None,
            },
            raw::ParamSpec::Rule(r) => r.clone(),
        };
        for (name, bound) in [("min", rule.min), ("max", rule.max)] {
            if bound.is_some_and(|b| !b.is_finite()) {
                refuse!(e, format!("{path}.{name}"), "must be a finite number");
                return None;
            }
        }
        if let (Some(min), Some(max)) = (rule.min, rule.max) {
            if min > max {
                refuse!(e, path, format!("min {min} is greater than max {max}"));
            }
        }
        let pattern = match &rule.pattern {
            Some(p) => match regex_lite::Regex::new(p) {
                Ok(r) => Some(r),
                Err(err) => {
                    refuse!(
                        e,
                        format!("{path}.pattern"),
                        format!("invalid regular expression: {err}"),
                    );
                    return None;
                }
            },
            None => None,
        };
        Some(Param {
            kind: rule.kind,
            required: rule.required || in_path,
            min: rule.min,
            max: rule.max,
            one_of: rule.one_of,
            pattern,
        })
    }
}

impl Validation {
    /// Checks and builds route `r`'s validation rules (at key path `vp`); `params` are its path's
    /// parameters, `max_body_bytes` the gateway's limit.
    pub(crate) fn compile(
        e: &mut Errs<'_>,
        vp: &str,
        v: &raw::Validation,
        r: &raw::Route,
        params: &[String],
        max_body_bytes: usize,
    ) -> Validation {
        let mut validation = Validation {
            max_body_bytes,
            ..Default::default()
        };
        for (name, spec) in &v.path {
            if !params.iter().any(|p| p == name) {
                refuse!(
                    e,
                    format!("{vp}.path.{name}"),
                    format!("{name:?} is not a parameter of path {:?}", r.path),
                );
            }
            if let Some(p) = Param::compile(e, &format!("{vp}.path.{name}"), spec, true) {
                validation.path.insert(name.clone(), p);
            }
        }
        for (name, spec) in &v.query {
            if let Some(p) = Param::compile(e, &format!("{vp}.query.{name}"), spec, false) {
                validation.query.insert(name.clone(), p);
            }
        }
        for (name, spec) in &v.headers {
            let hp = format!("{vp}.headers.{name}");
            if let (Some(h), Some(p)) = (
                header_name(e, &hp, name),
                Param::compile(e, &hp, spec, false),
            ) {
                validation.headers.push((h, p));
            }
        }
        validation.content_types = v
            .content_types
            .iter()
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if let Some(schema) = &v.body_schema {
            match BodySchema::compile(schema) {
                Ok(s) => validation.body_schema = Some(s),
                Err(err) => refuse!(e, format!("{vp}.body_schema"), err),
            }
        }
        if let Some(max) = v.max_body_bytes {
            if max == 0 {
                refuse!(e, format!("{vp}.max_body_bytes"), "must be greater than 0");
            }
            validation.max_body_bytes = max;
        }
        validation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The fast path only answers for paths the full normalization leaves unchanged.
        #[test]
        fn fast_path_agrees_with_the_full_normalization(segs in proptest::collection::vec("[a-z.%2Ef/~\\\\-]{0,4}", 0..6)) {
            let p = format!("/{}", segs.join("/"));
            if is_normal(p.as_bytes()) {
                proptest::prop_assert_eq!(normalize_slow(&p), Ok(p.clone()));
            }
            proptest::prop_assert!(normalize_path(&p).map(Cow::into_owned) == normalize_slow(&p));
        }
    }

    #[test]
    fn path_normalization() {
        let rows: &[(&str, Result<&str, &str>)] = &[
            ("/", Ok("/")),
            ("/.well-known/x", Ok("/.well-known/x")),
            ("/a/..b/c.", Ok("/a/..b/c.")),
            ("/a/b/.", Ok("/a/b/")),
            ("/a/b", Ok("/a/b")),
            ("//a///b", Ok("/a/b")),
            ("/a/./b", Ok("/a/b")),
            ("/a/b/../c", Ok("/a/c")),
            ("/a/%2E%2E/c", Ok("/c")),
            ("/%7Euser/%61", Ok("/~user/a")),
            ("/a%20b", Ok("/a%20b")),
            ("/a%c3%a9", Ok("/a%C3%A9")),
            ("/a/", Ok("/a/")),
            ("/a/.", Ok("/a/")),
            ("/a/b/..", Ok("/a/")),
            ("/..", Err("the path climbs above the root")),
            ("/a/%2f/b", Err("encoded /, \\ or NUL")),
            ("/a%5cb", Err("encoded /, \\ or NUL")),
            ("/a%00", Err("encoded /, \\ or NUL")),
            ("/a\\b", Err("backslash in path")),
            ("/a%zz", Err("invalid percent-encoding")),
            // `..;` is `..` to Tomcat, Jetty and Spring: refused, encoded or not
            (
                "/static/..;/admin/users",
                Err("a dot segment with parameters"),
            ),
            ("/static/.;x/admin", Err("a dot segment with parameters")),
            (
                "/static/%2e%2e;/admin",
                Err("a dot segment with parameters"),
            ),
            ("/static/%2E%2E%3B/admin", Ok("/static/..%3B/admin")),
            ("/static/..;", Err("a dot segment with parameters")),
            ("/a/x;..", Ok("/a/x;..")),
            // escapes that do not spell UTF-8, and encoded control characters
            (
                "/static/%C0%AE%C0%AE/x",
                Err("percent-encoded bytes that are not UTF-8"),
            ),
            ("/a%FF", Err("percent-encoded bytes that are not UTF-8")),
            ("/a%0D%0Ab", Err("encoded control character")),
            ("/a%7f", Err("encoded control character")),
            ("/a%c3", Err("percent-encoded bytes that are not UTF-8")),
            // raw UTF-8 keeps its bytes
            ("/static/caf\u{e9}//x", Ok("/static/caf\u{e9}/x")),
            ("/\u{65e5}/./%e6%9c%ac", Ok("/\u{65e5}/%E6%9C%AC")),
        ];
        for &(input, want) in rows {
            let got = normalize_path(input).map(Cow::into_owned);
            let want = want.map(String::from).map_err(Reject::BadPath);
            assert_eq!(got, want, "{input}");
        }
        // the common case costs no copy
        assert!(matches!(normalize_path("/a/b"), Ok(Cow::Borrowed("/a/b"))));
        assert_eq!(
            normalize_path("/a%2"),
            Err(Reject::BadPath("truncated percent-encoding"))
        );
    }

    fn p(kind: ParamType) -> Param {
        Param {
            kind,
            required: false,
            min: None,
            max: None,
            one_of: vec![],
            pattern: None,
        }
    }

    #[test]
    fn param_types() {
        let rows = [
            (p(ParamType::Int), "42", Ok(())),
            (p(ParamType::Int), "4.2", Err("must be an integer")),
            (p(ParamType::Number), "4.2", Ok(())),
            (p(ParamType::Number), "NaN", Err("must be a number")),
            (p(ParamType::Bool), "true", Ok(())),
            (p(ParamType::Bool), "yes", Err("must be true or false")),
            (
                p(ParamType::Uuid),
                "0f8fad5b-d9cb-469f-a165-70867728950e",
                Ok(()),
            ),
            (
                p(ParamType::Uuid),
                "0f8fad5b-d9cb-469f-a165-70867728950",
                Err("must be a UUID"),
            ),
            (
                Param {
                    min: Some(1.0),
                    max: Some(10.0),
                    ..p(ParamType::Int)
                },
                "11",
                Err("must be at most 10"),
            ),
            (
                Param {
                    min: Some(1.0),
                    ..p(ParamType::Int)
                },
                "0",
                Err("must be at least 1"),
            ),
            (
                Param {
                    max: Some(3.0),
                    ..p(ParamType::String)
                },
                "abcd",
                Err("length must be at most 3"),
            ),
            (
                Param {
                    one_of: vec!["asc".into(), "desc".into()],
                    ..p(ParamType::String)
                },
                "up",
                Err("must be one of asc, desc"),
            ),
            (
                Param {
                    pattern: Some(regex_lite::Regex::new("^[a-z]+$").unwrap()),
                    ..p(ParamType::String)
                },
                "ab1",
                Err("does not match the required pattern"),
            ),
        ];
        for (rule, value, want) in rows {
            assert_eq!(
                rule.check(value),
                want.map_err(String::from),
                "{value} against {rule:?}"
            );
        }
    }

    fn validation() -> Validation {
        let mut v = Validation {
            max_body_bytes: 64,
            ..Default::default()
        };
        v.path.insert("id".into(), p(ParamType::Int));
        v.query.insert(
            "limit".into(),
            Param {
                required: true,
                max: Some(100.0),
                ..p(ParamType::Int)
            },
        );
        v.headers.push((
            http::HeaderName::from_static("x-tenant"),
            p(ParamType::Uuid),
        ));
        v
    }

    #[test]
    fn params_in_every_location() {
        let v = validation();
        let h = HeaderMap::new();
        let ok = check_params(&v, [("id", "7")].into_iter(), Some("limit=5"), &h);
        assert_eq!(ok, Ok(()));
        let rows = [
            ("x", Some("limit=5"), ("path", "id", "must be an integer")),
            ("7", None, ("query", "limit", "is required")),
            (
                "7",
                Some("limit=500"),
                ("query", "limit", "must be at most 100"),
            ),
            (
                "7",
                Some("a=1&limit=x"),
                ("query", "limit", "must be an integer"),
            ),
            // the ways a backend could read another value than the one checked
            (
                "7",
                Some("a=1&limit=5&limit=500"),
                ("query", "limit", "appears more than once"),
            ),
            (
                "7",
                Some("limit=5&limit[]=500"),
                ("query", "limit", "is also given as \"limit[]\""),
            ),
            (
                "7",
                Some("limit=5&LIMIT=500"),
                ("query", "limit", "is also given as \"LIMIT\""),
            ),
            (
                "7",
                Some("limit=5&limit%00=500"),
                ("query", "limit", "is also given as \"limit\\0\""),
            ),
            (
                "7",
                Some("limit=5&a=1;limit=500"),
                ("query", "limit", "appears more than once"),
            ),
            (
                "7",
                Some("a=1;limit=500"),
                ("query", "limit", "must be at most 100"),
            ),
        ];
        for (id, q, (location, name, reason)) in rows {
            let got = check_params(&v, [("id", id)].into_iter(), q, &h);
            let want = Reject::InvalidParameter {
                location,
                name: name.into(),
                reason: reason.into(),
            };
            assert_eq!(got, Err(want), "{id} {q:?}");
        }
        let mut bad = HeaderMap::new();
        bad.insert("x-tenant", "nope".parse().unwrap());
        assert_eq!(
            check_params(&v, std::iter::empty(), Some("limit=1"), &bad),
            Err(Reject::InvalidParameter {
                location: "header",
                name: "x-tenant".into(),
                reason: "must be a UUID".into()
            })
        );
    }

    /// Bodies two JSON parsers could read differently are refused.
    #[test]
    fn strict_json() {
        let nested = format!("{}{}", "[".repeat(129), "]".repeat(129));
        for (body, ok) in [
            (&br#"{"role":"user","n":[1,2.5,null,true]}"#[..], true),
            (b"\xEF\xBB\xBF{\"a\":1}", false), // a UTF-8 BOM
            (br#"{"a":1,}"#, false),           // a trailing comma
            (br#"{"a":"\ud800"}"#, false),     // a lone surrogate
            (br#"{"a":1e400}"#, false),        // out of range
            (br#"{"is_admin":false,"is_admin":true}"#, false),
            (br#"{"a":{"b":1,"b":2}}"#, false),
            (br#"[{"b":1},{"b":2}]"#, true),
            (nested.as_bytes(), false), // nesting over 128
            (br#"{"a":1} x"#, false),
        ] {
            assert_eq!(
                parse_json_strict(body).is_ok(),
                ok,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(
            parse_json_strict(br#"{"k":1,"k":2}"#),
            Err("duplicate key \"k\" at line 1 column 13".into())
        );
    }

    #[test]
    fn framing() {
        fn h(rows: &[(&str, &str)]) -> HeaderMap {
            let mut m = HeaderMap::new();
            for (k, v) in rows {
                m.append(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            m
        }
        type Row<'a> = (&'a [(&'a str, &'a str)], Result<(), &'static str>);
        let rows: &[Row<'_>] = &[
            (&[("host", "a")], Ok(())),
            (
                &[("host", "a"), ("host", "b")],
                Err("more than one Host header"),
            ),
            (&[("host", "api.example")], Ok(())),
            (&[], Ok(())),
            (
                &[("content-length", "4"), ("transfer-encoding", "chunked")],
                Err("both Content-Length and Transfer-Encoding"),
            ),
            (
                &[("content-length", "4"), ("content-length", "5")],
                Err("Content-Length values disagree"),
            ),
            (&[("content-length", "4"), ("content-length", "4")], Ok(())),
            (
                &[("content-length", "+4")],
                Err("Content-Length is not a number"),
            ),
            (
                &[("content-length", "4, 4")],
                Err("Content-Length is not a number"),
            ),
        ];
        for (headers, want) in rows {
            assert_eq!(
                check_framing(&h(headers)),
                want.map_err(Reject::BadFraming),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn sizes() {
        let limits = Limits {
            max_uri_bytes: 10,
            max_header_bytes: 10,
            max_header_line_bytes: 8,
            max_body_bytes: 10,
        };
        let h = HeaderMap::new();
        assert_eq!(
            check_sizes(&limits, &"/0123456789".parse().unwrap(), &h),
            Err(Reject::UriTooLong { limit: 10 })
        );
        let mut big = HeaderMap::new();
        big.insert("a", "12345".parse().unwrap());
        big.insert("b", "12345".parse().unwrap());
        assert_eq!(
            check_sizes(&limits, &"/".parse().unwrap(), &big),
            Err(Reject::HeadersTooLarge { limit: 10 })
        );
        assert_eq!(check_sizes(&limits, &"/ok".parse().unwrap(), &h), Ok(()));
        // one line over its own limit, though the sum is within the total
        let mut long = HeaderMap::new();
        long.insert("x", "12345678".parse().unwrap());
        assert_eq!(
            check_sizes(&limits, &"/".parse().unwrap(), &long),
            Err(Reject::HeaderTooLarge { limit: 8 })
        );
    }

    #[test]
    #[cfg(feature = "json-schema")]
    fn bodies() {
        let schema = serde_json::json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}});
        let v = Validation {
            max_body_bytes: 64,
            content_types: vec!["application/json".into()],
            body_schema: Some(BodySchema::compile(&schema).unwrap()),
            ..Default::default()
        };
        let mut json = HeaderMap::new();
        json.insert(
            "content-type",
            "application/json; charset=utf-8".parse().unwrap(),
        );
        let mut text = HeaderMap::new();
        text.insert("content-type", "text/plain".parse().unwrap());
        assert_eq!(check_body(&v, &json, Some(br#"{"name":"a"}"#)), Ok(()));
        assert_eq!(
            check_body(&v, &text, Some(b"hi")),
            Err(Reject::UnsupportedMediaType("text/plain".into()))
        );
        assert_eq!(
            check_body(&v, &json, Some(&[b' '; 65])),
            Err(Reject::BodyTooLarge { limit: 64 })
        );
        assert_eq!(
            check_body(&v, &json, Some(br#"{"name":1}"#)),
            Err(Reject::InvalidBody(
                "at /name: 1 is not of type \"string\"".into()
            ))
        );
        assert!(
            matches!(check_body(&v, &json, Some(b"{")), Err(Reject::InvalidBody(m)) if m.starts_with("not JSON"))
        );
        // a stream not read yet: what the head says is checked, the schema waits for the body
        assert_eq!(check_body(&v, &json, None), Ok(()));
        assert_eq!(
            check_body(&v, &text, None),
            Err(Reject::UnsupportedMediaType("text/plain".into()))
        );
        json.insert("content-length", "65".parse().unwrap());
        assert_eq!(
            check_body(&v, &json, None),
            Err(Reject::BodyTooLarge { limit: 64 })
        );
    }
}
