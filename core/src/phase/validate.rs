//! Parameter validation: path normalization (before anything else looks at the path), request
//! size limits (414/431/413), accepted content types (415), typed path/query/header parameters and
//! JSON bodies against a JSON Schema (400).
//!
//! Pure checks over the request; never changes what goes upstream except the path, which is
//! replaced by its normalized form so that what was matched is exactly what is forwarded.

use crate::problem::Reject;
use http::{HeaderMap, Uri};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Normalizes a request path: decodes percent-encoded unreserved characters, uppercases the hex
/// of the others, merges `//`, removes `.` and `..` segments. Refuses encoded `/`, `\` and NUL,
/// raw `\` and control characters, and paths that climb above the root.
/// A path that is already normal comes back borrowed.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, Reject> {
    if !raw.starts_with('/') {
        return Err(Reject::BadPath("the path must start with /"));
    }
    if is_normal(raw.as_bytes()) {
        return Ok(Cow::Borrowed(raw));
    }
    normalize_slow(raw).map(Cow::Owned)
}

/// The full normalization, for paths that need it.
fn normalize_slow(raw: &str) -> Result<String, Reject> {
    let bytes = raw.as_bytes();
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .ok_or(Reject::BadPath("truncated percent-encoding"))?;
                let v = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(Reject::BadPath("invalid percent-encoding"))?;
                match v {
                    b'/' | b'\\' | 0 => return Err(Reject::BadPath("encoded /, \\ or NUL")),
                    b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                        decoded.push(b as char)
                    }
                    b => {
                        decoded.push('%');
                        decoded.push_str(&format!("{b:02X}"));
                    }
                }
                i += 3;
            }
            b'\\' => return Err(Reject::BadPath("backslash in path")),
            b if b < 0x20 || b == 0x7f => return Err(Reject::BadPath("control character in path")),
            _ => {
                decoded.push(b as char);
                i += 1;
            }
        }
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing = false;
    for (n, seg) in segments.iter().enumerate() {
        match *seg {
            "" => trailing = n == last,
            "." => trailing = n == last,
            ".." => {
                if out.pop().is_none() {
                    return Err(Reject::BadPath("the path climbs above the root"));
                }
                trailing = n == last;
            }
            s => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for s in &out {
        path.push('/');
        path.push_str(s);
    }
    if path.is_empty() || trailing {
        path.push('/');
    }
    Ok(path)
}

/// Whether a path is already in normal form: no `%`, `\\`, control bytes, empty segment or dot
/// segment (the common case, answered in one pass).
fn is_normal(p: &[u8]) -> bool {
    let mut prev = b'/';
    for (i, &b) in p.iter().enumerate().skip(1) {
        if b == b'%' || b == b'\\' || b < 0x20 || b == 0x7f {
            return false;
        }
        if b == b'/' && prev == b'/' {
            return false;
        }
        if b == b'.' && prev == b'/' {
            // "." or ".." as a whole segment
            let rest = &p[i..];
            let seg_end = rest.iter().position(|c| *c == b'/').unwrap_or(rest.len());
            if matches!(&rest[..seg_end], b"." | b"..") {
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
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > limits.max_header_bytes {
        return Err(Reject::HeadersTooLarge {
            limit: limits.max_header_bytes,
        });
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
        let pairs: Vec<(String, String)> = query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        for (name, rule) in &v.query {
            let mut seen = false;
            for (_, value) in pairs.iter().filter(|(k, _)| k == name) {
                seen = true;
                rule.check(value).map_err(|e| bad("query", name, e))?;
            }
            if !seen && rule.required {
                return Err(bad("query", name, "is required".into()));
            }
        }
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

/// Checks the body: size, content type and JSON Schema.
pub fn check_body(v: &Validation, headers: &HeaderMap, body: &[u8]) -> Result<(), Reject> {
    if body.len() > v.max_body_bytes {
        return Err(Reject::BodyTooLarge {
            limit: v.max_body_bytes,
        });
    }
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| l.parse::<u64>().ok());
    if declared.is_some_and(|l| l > v.max_body_bytes as u64) {
        return Err(Reject::BodyTooLarge {
            limit: v.max_body_bytes,
        });
    }
    if v.content_types.is_empty() && v.body_schema.is_none() {
        return Ok(()); // nothing looks at the content type
    }
    let media = media_type(headers);
    if !v.content_types.is_empty() && (!body.is_empty() || media.is_some()) {
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
        let doc: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| Reject::InvalidBody(format!("not JSON ({e})")))?;
        schema.check(&doc).map_err(Reject::InvalidBody)?;
    }
    Ok(())
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
        let rows: [(&str, Result<&str, &str>); 21] = [
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
        ];
        for (input, want) in rows {
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
                Some("a=1&limit=5&limit=x"),
                ("query", "limit", "must be an integer"),
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

    #[test]
    fn sizes() {
        let limits = Limits {
            max_uri_bytes: 10,
            max_header_bytes: 10,
            max_body_bytes: 10,
        };
        let h = HeaderMap::new();
        assert_eq!(
            check_sizes(&limits, &"/0123456789".parse().unwrap(), &h),
            Err(Reject::UriTooLong { limit: 10 })
        );
        let mut big = HeaderMap::new();
        big.insert("x-long", "123456".parse().unwrap());
        assert_eq!(
            check_sizes(&limits, &"/".parse().unwrap(), &big),
            Err(Reject::HeadersTooLarge { limit: 10 })
        );
        assert_eq!(check_sizes(&limits, &"/ok".parse().unwrap(), &h), Ok(()));
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
        assert_eq!(check_body(&v, &json, br#"{"name":"a"}"#), Ok(()));
        assert_eq!(
            check_body(&v, &text, b"hi"),
            Err(Reject::UnsupportedMediaType("text/plain".into()))
        );
        assert_eq!(
            check_body(&v, &json, &[b' '; 65]),
            Err(Reject::BodyTooLarge { limit: 64 })
        );
        assert_eq!(
            check_body(&v, &json, br#"{"name":1}"#),
            Err(Reject::InvalidBody(
                "at /name: 1 is not of type \"string\"".into()
            ))
        );
        assert!(
            matches!(check_body(&v, &json, b"{"), Err(Reject::InvalidBody(m)) if m.starts_with("not JSON"))
        );
    }
}
