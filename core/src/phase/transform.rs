//! Request and response processing: header, query and JSON body transforms; CORS (preflights are
//! answered at the gateway); hop-by-hop headers stripped both ways; `X-Request-Id` and W3C
//! `traceparent` carried through.
//!
//! Pure rewrites of `http` parts; header values may name `{consumer}`, `{route}`,
//! `{request_id}` and `{client_ip}`, filled from [`Vars`].

use crate::config::diag::{header_name, methods, refuse, Errs};
use crate::config::raw;
use crate::problem::Reject;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri};
use serde_json::Value;
use std::borrow::Cow;

/// Values header templates may use.
#[derive(Debug, Clone, Default)]
pub struct Vars<'a> {
    pub consumer: &'a str,
    pub route: &'a str,
    pub request_id: &'a str,
    pub client_ip: &'a str,
}

/// A header value with `{var}` holes, split once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueTemplate {
    parts: Vec<Piece>,
    /// The whole value when it has no variables.
    fixed: Option<HeaderValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Consumer,
    Route,
    RequestId,
    ClientIp,
}

const VARS: [&str; 4] = ["{consumer}", "{route}", "{request_id}", "{client_ip}"];

impl ValueTemplate {
    /// Checks the text: no CR/LF/NUL, and only known `{var}`s.
    pub fn parse(s: &str) -> Result<ValueTemplate, String> {
        if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err("header values must not contain CR, LF or NUL".into());
        }
        HeaderValue::from_str(s).map_err(|_| "not a valid header value".to_string())?;
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .map(|c| c + open)
                .ok_or("unclosed {")?;
            if open > 0 {
                parts.push(Piece::Text(rest[..open].to_string()));
            }
            parts.push(match &rest[open..=close] {
                "{consumer}" => Piece::Consumer,
                "{route}" => Piece::Route,
                "{request_id}" => Piece::RequestId,
                "{client_ip}" => Piece::ClientIp,
                var => {
                    return Err(format!(
                        "unknown variable {var}; known: {}",
                        VARS.join(", ")
                    ))
                }
            });
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Piece::Text(rest.to_string()));
        }
        let fixed = parts
            .iter()
            .all(|p| matches!(p, Piece::Text(_)))
            .then(|| HeaderValue::from_str(s).ok())
            .flatten();
        Ok(ValueTemplate { parts, fixed })
    }

    pub fn render<'a>(&'a self, v: &Vars<'a>) -> Option<HeaderValue> {
        if let Some(fixed) = &self.fixed {
            return Some(fixed.clone());
        }
        let piece = |p: &'a Piece| -> &'a str {
            match p {
                Piece::Text(t) => t,
                Piece::Consumer => v.consumer,
                Piece::Route => v.route,
                Piece::RequestId => v.request_id,
                Piece::ClientIp => v.client_ip,
            }
        };
        // exactly sized, so the header value takes the String's bytes without a copy
        let mut out = String::with_capacity(self.parts.iter().map(|p| piece(p).len()).sum());
        for p in &self.parts {
            out.push_str(piece(p));
        }
        HeaderValue::from_maybe_shared(Bytes::from(out)).ok()
    }
}

/// A compiled transform.
#[derive(Debug, Clone, Default)]
pub struct Transform {
    pub set_headers: Vec<(HeaderName, ValueTemplate)>,
    pub add_headers: Vec<(HeaderName, ValueTemplate)>,
    pub remove_headers: Vec<HeaderName>,
    pub rename_headers: Vec<(HeaderName, HeaderName)>,
    pub set_query: Vec<(String, String)>,
    pub remove_query: Vec<String>,
    pub json_set: Vec<(String, Value)>,
    pub json_remove: Vec<String>,
    pub json_rename: Vec<(String, String)>,
}

impl Transform {
    pub fn has_json(&self) -> bool {
        !(self.json_set.is_empty() && self.json_remove.is_empty() && self.json_rename.is_empty())
    }
}

/// Applies the header edits: rename, remove, set, add (in that order).
pub fn apply_headers(t: &Transform, headers: &mut HeaderMap, vars: &Vars<'_>) {
    for (from, to) in &t.rename_headers {
        let values: Vec<HeaderValue> = headers.get_all(from).iter().cloned().collect();
        if !values.is_empty() {
            headers.remove(from);
            for v in values {
                headers.append(to.clone(), v);
            }
        }
    }
    for name in &t.remove_headers {
        headers.remove(name);
    }
    for (name, value) in &t.set_headers {
        match value.render(vars) {
            Some(v) => {
                headers.insert(name.clone(), v);
            }
            // a value that cannot be a header (CR, LF, DEL in `{consumer}`): the client's own
            // value must not pass in its place
            None => {
                headers.remove(name);
            }
        }
    }
    for (name, value) in &t.add_headers {
        if let Some(v) = value.render(vars) {
            headers.append(name.clone(), v);
        }
    }
}

/// Applies the query edits to a query string (borrowed back when there are none).
pub fn apply_query<'q>(t: &Transform, query: Option<&'q str>) -> Option<Cow<'q, str>> {
    if t.set_query.is_empty() && t.remove_query.is_empty() {
        return query.map(Cow::Borrowed);
    }
    let mut pairs: Vec<(String, String)> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    pairs.retain(|(k, _)| !t.remove_query.contains(k) && !t.set_query.iter().any(|(s, _)| s == k));
    pairs.extend(t.set_query.iter().cloned());
    if pairs.is_empty() {
        return None;
    }
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &pairs {
        out.append_pair(k, v);
    }
    Some(Cow::Owned(out.finish()))
}

/// Applies JSON edits to a request body. An empty body is left as it is; one that is not JSON
/// exactly as the gateway reads it (a BOM, a trailing comma, nesting over 128, a lone surrogate,
/// a number out of range, a duplicate key) is refused: a lenient backend would read it with
/// the edits undone.
pub fn apply_request_json(t: &Transform, body: &Bytes) -> Result<Bytes, Reject> {
    if !t.has_json() || body.is_empty() {
        return Ok(body.clone());
    }
    let mut doc = crate::phase::validate::parse_json_strict(body)
        .map_err(|e| Reject::InvalidBody(format!("not JSON the transform can edit ({e})")))?;
    edit_json(t, &mut doc);
    serde_json::to_vec(&doc)
        .map(Bytes::from)
        .map_err(|e| Reject::InvalidBody(e.to_string()))
}

fn edit_json(t: &Transform, doc: &mut Value) {
    for (from, to) in &t.json_rename {
        if let Some(v) = take(doc, from) {
            put(doc, to, v);
        }
    }
    for p in &t.json_remove {
        take(doc, p);
    }
    for (p, v) in &t.json_set {
        put(doc, p, v.clone());
    }
}

/// Applies JSON edits to a response body; a body that is not JSON is returned untouched (the
/// upstream's answer is passed on as it came).
pub fn apply_json(t: &Transform, body: &Bytes) -> Bytes {
    if !t.has_json() || body.is_empty() {
        return body.clone();
    }
    let Ok(mut doc) = serde_json::from_slice::<Value>(body) else {
        return body.clone();
    };
    edit_json(t, &mut doc);
    Bytes::from(serde_json::to_vec(&doc).unwrap_or_else(|_| body.to_vec()))
}

/// Splits a JSON pointer into its unescaped tokens.
pub fn pointer_tokens(p: &str) -> Result<Vec<String>, String> {
    if p.is_empty() {
        return Err("the whole document cannot be edited; use a pointer like /field".into());
    }
    if !p.starts_with('/') {
        return Err(format!(
            "{p:?} is not a JSON pointer (it must start with /)"
        ));
    }
    Ok(p[1..]
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn take(doc: &mut Value, pointer: &str) -> Option<Value> {
    let tokens = pointer_tokens(pointer).ok()?;
    let (last, parents) = tokens.split_last()?;
    let mut cur = doc;
    for t in parents {
        cur = match cur {
            Value::Object(m) => m.get_mut(t)?,
            Value::Array(a) => a.get_mut(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    match cur {
        Value::Object(m) => m.remove(last),
        Value::Array(a) => {
            let i = last.parse::<usize>().ok().filter(|i| *i < a.len())?;
            Some(a.remove(i))
        }
        _ => None,
    }
}

/// Sets a value, creating objects on the way.
fn put(doc: &mut Value, pointer: &str, value: Value) {
    let Ok(tokens) = pointer_tokens(pointer) else {
        return;
    };
    let Some((last, parents)) = tokens.split_last() else {
        return;
    };
    let mut cur = doc;
    for t in parents {
        if cur.is_null() {
            *cur = Value::Object(Default::default());
        }
        cur = match cur {
            Value::Object(m) => m.entry(t.clone()).or_insert(Value::Null),
            Value::Array(a) => match t.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(v) => v,
                None => return,
            },
            _ => return,
        };
    }
    if cur.is_null() {
        *cur = Value::Object(Default::default());
    }
    match cur {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(value)
            } else if let Some(slot) = last.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                *slot = value
            }
        }
        _ => {}
    }
}

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether the request asks to become a WebSocket (`Upgrade: websocket`; workerd removes
/// `Connection` before the worker runs, so that header cannot be asked for as well).
pub fn is_websocket_upgrade(method: &http::Method, headers: &HeaderMap) -> bool {
    method == http::Method::GET
        && headers
            .get_all(header::UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
}

/// Removes hop-by-hop headers, and those the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // one pass over the (few) headers present; most messages carry none of these
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    for n in &HOP_BY_HOP {
        if headers.contains_key(n) {
            headers.remove(n);
        }
    }
}

/// An incoming request id worth keeping: 1–128 visible ASCII characters.
pub fn valid_request_id(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic())).then_some(s)
}

/// A new request id from 128 random bits: 32 lowercase hex digits.
pub fn new_request_id(hi: u64, lo: u64) -> [u8; 32] {
    let mut id = [0; 32];
    put_hex(&mut id[..16], hi);
    put_hex(&mut id[16..], lo);
    id
}

/// Writes `v` as 16 lowercase hex digits into `out` (16 bytes long).
fn put_hex(out: &mut [u8], v: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out.iter_mut().take(16).enumerate() {
        *b = HEX[((v >> ((15 - i) * 4)) & 15) as usize];
    }
}

/// A header value that owns `bytes` and is shared, not copied, when cloned (the request id goes
/// to the upstream and to the client).
pub fn shared_value<const N: usize>(bytes: [u8; N]) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(Bytes::from_owner(bytes)).ok()
}

/// What a valid incoming `traceparent` says besides its trace id: the caller's span id and its
/// flags, as checked lowercase hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller<'h> {
    pub parent_id: &'h str,
    pub flags: &'h str,
}

/// The trace context to send upstream: the incoming `traceparent` with a new parent id (this
/// gateway's span), or a new trace when the incoming one is absent or malformed; and, when it
/// was valid, its caller's span. [`trace_id`] reads the trace id back out of it.
pub fn traceparent(
    incoming: Option<&HeaderValue>,
    random: [u64; 3],
) -> ([u8; 55], Option<Caller<'_>>) {
    let hex = |p: &str, n: usize| {
        p.len() == n && p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let parsed = incoming.and_then(|v| v.to_str().ok()).and_then(|s| {
        let mut parts = s.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let ok = hex(version, 2)
            && version != "ff"
            && (version != "00" || parts.next().is_none())
            && hex(trace, 32)
            && trace.bytes().any(|b| b != b'0')
            && hex(parent, 16)
            && parent.bytes().any(|b| b != b'0')
            && hex(flags, 2);
        ok.then_some((
            trace,
            Caller {
                parent_id: parent,
                flags,
            },
        ))
    });
    // 00-<trace id: 32>-<parent id: 16>-<flags: 2>
    let mut tp = *b"00-________________________________-________________-__";
    match parsed {
        Some((trace, _)) => tp[3..35].copy_from_slice(trace.as_bytes()),
        None => {
            put_hex(&mut tp[3..19], random[0]);
            put_hex(&mut tp[19..35], random[1] | 1);
        }
    }
    put_hex(&mut tp[36..52], random[2] | 1);
    tp[53..].copy_from_slice(parsed.map_or("01", |(_, caller)| caller.flags).as_bytes());
    (tp, parsed.map(|(_, caller)| caller))
}

/// A `traceparent` made by [`traceparent`] as text (it is all ASCII).
pub fn traceparent_text(tp: &[u8; 55]) -> &str {
    std::str::from_utf8(tp).unwrap_or_default()
}

/// The trace id inside a `traceparent` made by [`traceparent`].
pub fn trace_id(traceparent: &str) -> &str {
    traceparent.get(3..35).unwrap_or("")
}

/// A compiled CORS policy.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    pub any_origin: bool,
    pub origins: Vec<String>,
    pub methods: Vec<Method>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age_s: Option<u32>,
    pub credentials: bool,
}

impl Cors {
    fn allowed_origin<'a>(&self, origin: &'a str) -> Option<&'a str> {
        (self.any_origin || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)))
            .then_some(origin)
    }

    fn origin_value(&self, origin: &str) -> HeaderValue {
        if self.any_origin && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            HeaderValue::from_str(origin).unwrap_or(HeaderValue::from_static("null"))
        }
    }
}

/// Whether a request is a CORS preflight.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The method a preflight asks about.
pub fn preflight_method(headers: &HeaderMap) -> Option<Method> {
    Method::from_bytes(
        headers
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)?
            .as_bytes(),
    )
    .ok()
}

/// Answers a preflight: 204 with the allowances, or 403 when the origin, method or a header is not allowed.
pub fn preflight(cors: &Cors, headers: &HeaderMap, route_methods: &[Method]) -> Response<Bytes> {
    let mut res = Response::new(Bytes::new());
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let method = preflight_method(headers);
    let methods: &[Method] = if cors.methods.is_empty() {
        route_methods
    } else {
        &cors.methods
    };
    let method_ok = method
        .as_ref()
        .is_some_and(|m| methods.is_empty() || methods.contains(m));
    let requested: Vec<String> = headers
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    let headers_ok = requested.iter().all(|h| {
        cors.allow_headers
            .iter()
            .any(|a| a == "*" && !cors.credentials || a.eq_ignore_ascii_case(h))
    });
    let h = res.headers_mut();
    h.insert(
        header::VARY,
        HeaderValue::from_static(
            "origin, access-control-request-method, access-control-request-headers",
        ),
    );
    match cors.allowed_origin(origin) {
        Some(origin) if method_ok && headers_ok => {
            *res.status_mut() = StatusCode::NO_CONTENT;
            let h = res.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                cors.origin_value(origin),
            );
            let list: Vec<&str> = if methods.is_empty() {
                method.iter().map(Method::as_str).collect()
            } else {
                methods.iter().map(Method::as_str).collect()
            };
            if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
                h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
            }
            if !requested.is_empty() {
                if let Ok(v) = HeaderValue::from_str(&requested.join(", ")) {
                    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
                }
            }
            if let Some(age) = cors.max_age_s {
                h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age));
            }
            if cors.credentials {
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
        }
        _ => *res.status_mut() = StatusCode::FORBIDDEN,
    }
    res
}

/// Adds CORS headers to an actual (non-preflight) response.
pub fn cors_response(cors: &Cors, origin: Option<&HeaderValue>, res: &mut HeaderMap) {
    let Some(origin) = origin.and_then(|v| v.to_str().ok()) else {
        return;
    };
    res.append(header::VARY, HeaderValue::from_static("origin"));
    let Some(origin) = cors.allowed_origin(origin) else {
        return;
    };
    res.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        cors.origin_value(origin),
    );
    if cors.credentials {
        res.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if !cors.expose_headers.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&cors.expose_headers.join(", ")) {
            res.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
        }
    }
}

/// An upstream target: its base URL (`https://host[:port][/base]`), with the scheme and
/// authority parsed once at load so that a request only parses its own path and query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// As configured, without a trailing `/`.
    pub url: String,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// The base path without its trailing `/` (empty for none).
    base_path: String,
}

impl Target {
    /// An absolute `http`/`https` URL without a query. The error completes a sentence that
    /// starts with the URL: `"ftp://x" must start with http:// or https://`.
    pub fn parse(url: &str) -> Result<Target, String> {
        let url = url.trim_end_matches('/');
        let uri: Uri = url.parse().map_err(|_| "is not a URL")?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err("must start with http:// or https://".into());
        }
        let parts = uri.into_parts();
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            return Err("has no host".into());
        };
        if parts
            .path_and_query
            .as_ref()
            .and_then(|p| p.query())
            .is_some()
        {
            return Err("must not have a query".into());
        }
        let base_path = parts
            .path_and_query
            .map(|p| p.path().trim_end_matches('/').to_string())
            .unwrap_or_default();
        Ok(Target {
            url: url.to_string(),
            scheme,
            authority,
            base_path,
        })
    }

    /// The host, as the URL writes it (IPv6 in brackets).
    pub fn host(&self) -> &str {
        self.authority.host()
    }
}

/// The target's base URL joined with an upstream path and query (`route::upstream_path_and_query`).
/// A target without a base path takes the string's own bytes; one with a base path copies once.
pub fn upstream_uri(target: &Target, path_and_query: String) -> Result<Uri, String> {
    let bytes = if target.base_path.is_empty() {
        Bytes::from(path_and_query)
    } else {
        let mut s = String::with_capacity(target.base_path.len() + path_and_query.len());
        s.push_str(&target.base_path);
        s.push_str(&path_and_query);
        Bytes::from(s)
    };
    let path_and_query = http::uri::PathAndQuery::from_maybe_shared(bytes)
        .map_err(|e| format!("{}: {e}", target.url))?;
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(target.scheme.clone());
    parts.authority = Some(target.authority.clone());
    parts.path_and_query = Some(path_and_query);
    Uri::from_parts(parts).map_err(|e| format!("{}: {e}", target.url))
}

impl Transform {
    /// Checks and builds a transform (named, or inline at `path`).
    pub(crate) fn compile(e: &mut Errs<'_>, path: &str, t: &raw::Transform) -> Transform {
        let mut out = Transform::default();
        let pairs =
            |e: &mut Errs<'_>, field: &str, map: &std::collections::BTreeMap<String, String>| {
                let mut v = Vec::new();
                for (name, value) in map {
                    let p = format!("{path}.{field}.{name}");
                    let h = header_name(e, &p, name);
                    match ValueTemplate::parse(value) {
                        Ok(t) => {
                            if let Some(h) = h {
                                v.push((h, t))
                            }
                        }
                        Err(m) => refuse!(e, p, m),
                    }
                }
                v
            };
        out.set_headers = pairs(e, "set_headers", &t.set_headers);
        out.add_headers = pairs(e, "add_headers", &t.add_headers);
        for (i, name) in t.remove_headers.iter().enumerate() {
            if let Some(h) = header_name(e, &format!("{path}.remove_headers[{i}]"), name) {
                out.remove_headers.push(h);
            }
        }
        for (from, to) in &t.rename_headers {
            let p = format!("{path}.rename_headers.{from}");
            if let (Some(a), Some(b)) = (header_name(e, &p, from), header_name(e, &p, to)) {
                out.rename_headers.push((a, b));
            }
        }
        out.set_query = t
            .set_query
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.remove_query = t.remove_query.clone();
        if let Some(json) = &t.json {
            let ptr = |e: &mut Errs<'_>, p: String, s: &str| match pointer_tokens(s) {
                Ok(_) => true,
                Err(m) => {
                    refuse!(e, p, m);
                    false
                }
            };
            for (p, v) in &json.set {
                if ptr(e, format!("{path}.json.set"), p) {
                    out.json_set.push((p.clone(), v.clone()));
                }
            }
            for (i, p) in json.remove.iter().enumerate() {
                if ptr(e, format!("{path}.json.remove[{i}]"), p) {
                    out.json_remove.push(p.clone());
                }
            }
            for (from, to) in &json.rename {
                let p = format!("{path}.json.rename");
                if ptr(e, p.clone(), from) && ptr(e, p, to) {
                    out.json_rename.push((from.clone(), to.clone()));
                }
            }
        }
        out
    }
}

impl Cors {
    /// Checks and builds CORS policy `name`.
    pub(crate) fn compile(e: &mut Errs<'_>, name: &str, c: &raw::CorsPolicy) -> Cors {
        let path = format!("cors.{name}");
        let any = c.allow_origins.iter().any(|o| o == "*");
        if any && c.allow_credentials {
            refuse!(
                e,
                format!("{path}.allow_credentials"),
                "cannot be true when allow_origins has \"*\"",
            );
        }
        if c.allow_origins.is_empty() {
            refuse!(
                e,
                format!("{path}.allow_origins"),
                "needs at least one origin (or \"*\")",
            );
        }
        for (i, o) in c.allow_origins.iter().enumerate() {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://"))
                || o.ends_with('/')
            {
                refuse!(
                    e,
                    format!("{path}.allow_origins[{i}]"),
                    format!("{o:?} is not an origin like https://app.example.com"),
                );
            }
        }
        let m = methods(e, &format!("{path}.allow_methods"), &c.allow_methods);
        for (field, list) in [
            ("allow_headers", &c.allow_headers),
            ("expose_headers", &c.expose_headers),
        ] {
            for (i, h) in list.iter().enumerate() {
                if h != "*" {
                    header_name(e, &format!("{path}.{field}[{i}]"), h);
                }
            }
        }
        Cors {
            any_origin: any,
            origins: c
                .allow_origins
                .iter()
                .filter(|o| *o != "*")
                .cloned()
                .collect(),
            methods: m,
            allow_headers: c.allow_headers.clone(),
            expose_headers: c.expose_headers.clone(),
            max_age_s: c.max_age_s,
            credentials: c.allow_credentials,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    fn name(s: &str) -> HeaderName {
        HeaderName::from_bytes(s.as_bytes()).unwrap()
    }

    #[test]
    fn header_edits_in_order() {
        let t = Transform {
            rename_headers: vec![(name("x-old"), name("x-new"))],
            remove_headers: vec![name("server")],
            set_headers: vec![(
                name("x-consumer"),
                ValueTemplate::parse("{consumer}@{route}").unwrap(),
            )],
            add_headers: vec![(name("x-multi"), ValueTemplate::parse("two").unwrap())],
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        h.insert("x-old", hv("1"));
        h.insert("server", hv("nginx"));
        h.insert("x-consumer", hv("forged"));
        h.insert("x-multi", hv("one"));
        apply_headers(
            &t,
            &mut h,
            &Vars {
                consumer: "alice",
                route: "r1",
                ..Default::default()
            },
        );
        assert_eq!(h.get("x-new"), Some(&hv("1")));
        assert_eq!(h.get("x-old"), None);
        assert_eq!(h.get("server"), None);
        assert_eq!(h["x-consumer"], "alice@r1");
        assert_eq!(
            h.get_all("x-multi").iter().collect::<Vec<_>>(),
            [&hv("one"), &hv("two")]
        );
    }

    #[test]
    fn template_checks() {
        assert_eq!(
            ValueTemplate::parse("a\r\nb"),
            Err("header values must not contain CR, LF or NUL".into())
        );
        assert_eq!(
            ValueTemplate::parse("{user}"),
            Err(
                "unknown variable {user}; known: {consumer}, {route}, {request_id}, {client_ip}"
                    .into()
            )
        );
    }

    #[test]
    fn query_edits() {
        let t = Transform {
            set_query: vec![("v".into(), "2".into())],
            remove_query: vec!["debug".into()],
            ..Default::default()
        };
        assert_eq!(
            apply_query(&t, Some("a=1&debug=true&v=1")),
            Some("a=1&v=2".into())
        );
        assert_eq!(apply_query(&t, None), Some("v=2".into()));
        assert_eq!(
            apply_query(&Transform::default(), Some("x=%20")),
            Some("x=%20".into())
        );
    }

    #[test]
    fn json_edits() {
        let t = Transform {
            json_rename: vec![("/user/name".into(), "/user/full_name".into())],
            json_remove: vec!["/secret".into(), "/list/0".into()],
            json_set: vec![
                ("/meta/source".into(), serde_json::json!("gw")),
                ("/a~1b".into(), serde_json::json!(1)),
            ],
            ..Default::default()
        };
        let body = Bytes::from(r#"{"user":{"name":"A"},"secret":"s","list":[1,2]}"#);
        let out: Value = serde_json::from_slice(&apply_json(&t, &body)).unwrap();
        assert_eq!(
            out,
            serde_json::json!({"user":{"full_name":"A"},"list":[2],"meta":{"source":"gw"},"a/b":1})
        );
        assert_eq!(
            apply_json(&t, &Bytes::from("not json")),
            Bytes::from("not json")
        );
        assert!(pointer_tokens("a").is_err());
    }

    #[test]
    fn hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert("connection", hv("close, x-secret"));
        h.insert("x-secret", hv("1"));
        h.insert("keep-alive", hv("5"));
        h.insert("transfer-encoding", hv("chunked"));
        h.insert("x-kept", hv("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-kept"]);
    }

    #[test]
    fn trace_context() {
        let inc = hv("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let (tp, caller) = traceparent(Some(&inc), [1, 2, 0xab]);
        let want = Caller {
            parent_id: "00f067aa0ba902b7",
            flags: "01",
        };
        assert_eq!(caller, Some(want));
        let tp = traceparent_text(&tp);
        assert_eq!(
            tp,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00000000000000ab-01"
        );
        assert_eq!(trace_id(tp), "4bf92f3577b34da6a3ce929d0e0e4736");
        // a later version may carry more fields; its flags are kept
        let later = hv("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra");
        assert_eq!(
            traceparent_text(&traceparent(Some(&later), [1, 2, 0xab]).0),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00000000000000ab-00"
        );
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            let bad_value = hv(bad);
            let (tp, caller) = traceparent(Some(&bad_value), [1, 2, 4]);
            assert_eq!(caller, None, "{bad}");
            let tp = traceparent_text(&tp);
            assert_eq!(
                tp, "00-00000000000000010000000000000003-0000000000000005-01",
                "{bad}"
            );
            assert_eq!(trace_id(tp), "00000000000000010000000000000003");
        }
    }

    #[test]
    fn request_ids() {
        assert_eq!(valid_request_id(&hv("abc-123")), Some("abc-123"));
        assert_eq!(valid_request_id(&hv("has space")), None);
        assert_eq!(valid_request_id(&hv(&"x".repeat(129))), None);
        assert_eq!(&new_request_id(1, 255), b"000000000000000100000000000000ff");
        assert_eq!(
            &new_request_id(u64::MAX, 0x0123_4567_89ab_cdef),
            b"ffffffffffffffff0123456789abcdef"
        );
        // the shared value is the id, and so are its clones
        let v = shared_value(new_request_id(1, 255)).unwrap();
        assert_eq!(v.clone(), "000000000000000100000000000000ff");
    }

    fn cors() -> Cors {
        Cors {
            origins: vec!["https://app.example".into()],
            allow_headers: vec!["content-type".into()],
            max_age_s: Some(600),
            ..Default::default()
        }
    }

    #[test]
    fn preflights() {
        let mut h = HeaderMap::new();
        h.insert("origin", hv("https://app.example"));
        h.insert("access-control-request-method", hv("PUT"));
        h.insert("access-control-request-headers", hv("Content-Type"));
        let res = preflight(&cors(), &h, &[Method::GET, Method::PUT]);
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            res.headers()["access-control-allow-origin"],
            "https://app.example"
        );
        assert_eq!(res.headers()["access-control-allow-methods"], "GET, PUT");
        assert_eq!(
            res.headers()["access-control-allow-headers"],
            "content-type"
        );
        assert_eq!(res.headers()["access-control-max-age"], "600");
        let mut wrong_method = h.clone();
        wrong_method.insert("access-control-request-method", hv("DELETE"));
        assert_eq!(
            preflight(&cors(), &wrong_method, &[Method::GET, Method::PUT]).status(),
            StatusCode::FORBIDDEN
        );
        let mut wrong_origin = h.clone();
        wrong_origin.insert("origin", hv("https://evil.example"));
        assert_eq!(
            preflight(&cors(), &wrong_origin, &[Method::PUT]).status(),
            StatusCode::FORBIDDEN
        );
        let mut wrong_header = h;
        wrong_header.insert("access-control-request-headers", hv("x-admin"));
        assert_eq!(
            preflight(&cors(), &wrong_header, &[Method::PUT]).status(),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn actual_responses() {
        let mut req = HeaderMap::new();
        req.insert("origin", hv("https://app.example"));
        let mut res = HeaderMap::new();
        cors_response(
            &Cors {
                expose_headers: vec!["x-total".into()],
                ..cors()
            },
            req.get("origin"),
            &mut res,
        );
        assert_eq!(res["access-control-allow-origin"], "https://app.example");
        assert_eq!(res["access-control-expose-headers"], "x-total");
        let mut any = HeaderMap::new();
        cors_response(
            &Cors {
                any_origin: true,
                ..Default::default()
            },
            req.get("origin"),
            &mut any,
        );
        assert_eq!(any["access-control-allow-origin"], "*");
    }

    #[test]
    fn upstream_uris() {
        let rows = [
            (
                "http://127.0.0.1:8080/base/",
                "/x?a=1",
                "http://127.0.0.1:8080/base/x?a=1",
            ),
            (
                "https://api.example",
                "/v1/u/7",
                "https://api.example/v1/u/7",
            ),
            ("https://api.example/", "/", "https://api.example/"),
            (
                "http://[::1]:9000/a/b",
                "/c?q=%20",
                "http://[::1]:9000/a/b/c?q=%20",
            ),
        ];
        for (base, path, want) in rows {
            let target = Target::parse(base).unwrap();
            assert_eq!(target.url, base.trim_end_matches('/'));
            let uri = upstream_uri(&target, path.to_string()).unwrap();
            assert_eq!(uri.to_string(), want, "{base} {path}");
            assert_eq!(uri, want.parse::<Uri>().unwrap());
        }
        let target = Target::parse("https://a.example").unwrap();
        assert!(upstream_uri(&target, "/x y".into()).is_err());
        assert_eq!(
            Target::parse("https://a.example/?x=1"),
            Err("must not have a query".into())
        );
        assert_eq!(
            Target::parse("/relative"),
            Err("must start with http:// or https://".into())
        );
        assert_eq!(
            Target::parse("ftp://a.example"),
            Err("must start with http:// or https://".into())
        );
        assert_eq!(Target::parse("http://a b"), Err("is not a URL".into()));
    }
}
