//! The config as Rust code: what the adapters' build scripts embed instead of a serialized form.
//!
//! [`rust_expr`] writes a block expression that builds the [`RawConfig`] it was given, field by
//! field. The adapter `include!`s it and hands the value to [`crate::Gateway::from_embedded`], so
//! the deployed wasm links no config parser and none of the raw types' `Deserialize` code
//! (BENCHMARKS.md, "Workers: size"), and an isolate or a Spin instance starts without parsing.
//!
//! Every struct is written through an exhaustive destructuring pattern: a field added to a raw
//! type and not to the list here fails to compile, so the emitted code cannot silently drop it.

use super::raw::*;
use std::collections::BTreeMap;
use std::fmt::Write;

/// A Rust expression, written with the names `use portcullis_core::config::raw::*` brings in.
pub trait Emit {
    fn emit(&self, out: &mut String);
}

/// The block expression that builds `raw`, for `include!` in an adapter.
pub fn rust_expr(raw: &RawConfig) -> String {
    let mut out = String::from(
        "// Written by portcullis_core::config::emit from the checked config; do not edit.\n{\n\
         #[allow(unused_imports)]\nuse ::portcullis_core::config::raw::*;\n\
         #[allow(unused_imports)]\nuse ::std::collections::BTreeMap;\n",
    );
    raw.emit(&mut out);
    out.push_str("\n}\n");
    out
}

impl Emit for bool {
    fn emit(&self, out: &mut String) {
        out.push_str(if *self { "true" } else { "false" });
    }
}

macro_rules! emit_int {
    ($($t:ty),*) => {$(
        impl Emit for $t {
            fn emit(&self, out: &mut String) {
                let _ = write!(out, "{}{}", self, stringify!($t));
            }
        }
    )*};
}
emit_int!(u16, u32, u64, usize);

impl Emit for f64 {
    fn emit(&self, out: &mut String) {
        if self.is_nan() {
            out.push_str("f64::NAN");
        } else if self.is_infinite() {
            out.push_str(if *self > 0.0 {
                "f64::INFINITY"
            } else {
                "f64::NEG_INFINITY"
            });
        } else {
            // `{:?}` is the shortest text that reads back as the same f64
            let _ = write!(out, "{self:?}f64");
        }
    }
}

impl Emit for String {
    fn emit(&self, out: &mut String) {
        // a str's Debug form is a valid Rust string literal (quotes and escapes)
        let _ = write!(out, "String::from({self:?})");
    }
}

impl<T: Emit> Emit for Option<T> {
    fn emit(&self, out: &mut String) {
        match self {
            None => out.push_str("None"),
            Some(v) => {
                out.push_str("Some(");
                v.emit(out);
                out.push(')');
            }
        }
    }
}

impl<T: Emit> Emit for Box<T> {
    fn emit(&self, out: &mut String) {
        out.push_str("Box::new(");
        (**self).emit(out);
        out.push(')');
    }
}

impl<T: Emit> Emit for Vec<T> {
    fn emit(&self, out: &mut String) {
        if self.is_empty() {
            return out.push_str("Vec::new()");
        }
        out.push_str("vec![");
        for v in self {
            v.emit(out);
            out.push(',');
        }
        out.push(']');
    }
}

impl<V: Emit> Emit for BTreeMap<String, V> {
    fn emit(&self, out: &mut String) {
        if self.is_empty() {
            return out.push_str("BTreeMap::new()");
        }
        out.push_str("BTreeMap::from([");
        pairs(self, out);
        out.push_str("])");
    }
}

fn pairs<'a, V: Emit + 'a>(
    entries: impl IntoIterator<Item = (&'a String, &'a V)>,
    out: &mut String,
) {
    for (k, v) in entries {
        out.push('(');
        k.emit(out);
        out.push(',');
        v.emit(out);
        out.push_str("),");
    }
}

impl Emit for Value {
    fn emit(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("Value::Null"),
            Value::Bool(b) => {
                out.push_str("Value::Bool(");
                b.emit(out);
                out.push(')');
            }
            Value::Number(n) => {
                out.push_str("Value::from(");
                if let Some(u) = n.as_u64() {
                    u.emit(out);
                } else if let Some(i) = n.as_i64() {
                    let _ = write!(out, "{i}i64");
                } else {
                    // a JSON number is finite; Value::from(NaN) would be null, as serde_json has it
                    n.as_f64().unwrap_or(f64::NAN).emit(out);
                }
                out.push(')');
            }
            Value::String(s) => {
                out.push_str("Value::String(");
                s.emit(out);
                out.push(')');
            }
            Value::Array(items) => {
                out.push_str("Value::Array(");
                items.emit(out);
                out.push(')');
            }
            Value::Object(map) => {
                out.push_str("Value::Object(Map::from_iter([");
                pairs(map, out);
                out.push_str("]))");
            }
        }
    }
}

/// Field-less enums: the variant's name is its `Debug` form.
macro_rules! emit_unit_enum {
    ($($t:ident),*) => {$(
        impl Emit for $t {
            fn emit(&self, out: &mut String) {
                let _ = write!(out, "{}::{:?}", stringify!($t), self);
            }
        }
    )*};
}
emit_unit_enum!(FailMode, Alg, AdminAction, ParamType);

impl Emit for TransformRef {
    fn emit(&self, out: &mut String) {
        match self {
            TransformRef::Named(name) => {
                out.push_str("TransformRef::Named(");
                name.emit(out);
            }
            TransformRef::Inline(t) => {
                out.push_str("TransformRef::Inline(");
                t.emit(out);
            }
        }
        out.push(')');
    }
}

impl Emit for ParamSpec {
    fn emit(&self, out: &mut String) {
        match self {
            ParamSpec::Type(t) => {
                out.push_str("ParamSpec::Type(");
                t.emit(out);
            }
            ParamSpec::Rule(r) => {
                out.push_str("ParamSpec::Rule(");
                r.emit(out);
            }
        }
        out.push(')');
    }
}

/// Structs: every field, by name; the pattern is exhaustive, so a new field must be listed.
macro_rules! emit_struct {
    ($($t:ident { $($field:ident),* $(,)? })*) => {$(
        impl Emit for $t {
            fn emit(&self, out: &mut String) {
                let $t { $($field),* } = self;
                out.push_str(concat!(stringify!($t), " {"));
                $(
                    out.push_str(concat!(stringify!($field), ": "));
                    $field.emit(out);
                    out.push(',');
                )*
                out.push('}');
            }
        }
    )*};
}

emit_struct! {
    RawConfig { gateway, defaults, upstreams, access, auth, rate_limits, transforms, cors, routes }
    GatewaySettings { trusted_proxies, request_id_header, server_timing, log_client_geo, limits, token_cache_size }
    Limits { max_uri_bytes, max_header_bytes, max_body_bytes }
    RouteDefaults { access, rate_limit, cors, request, response }
    Upstream { targets, timeout_ms, retries, allow_private, max_response_bytes }
    Target { url, weight }
    AccessList { allow_ips, deny_ips, allow_countries, deny_countries, allow_asns, deny_asns }
    AuthProviders { jwt, api_keys }
    JwtProvider {
        issuer, audiences, jwks_url, keys, leeway_s, require_exp, header, jwks_min_ttl_s,
        jwks_max_ttl_s, jwks_cooldown_s, allow_private, fail,
    }
    InlineKey { kid, alg, secret, secret_base64, secret_env, jwk }
    ApiKeySet { header, query, keys }
    ApiKey { consumer, sha256, scopes }
    RateLimitPolicy { key, limit, period_s, burst, shards, fail }
    Transform { set_headers, add_headers, remove_headers, rename_headers, set_query, remove_query, json }
    JsonEdit { set, remove, rename }
    CorsPolicy { allow_origins, allow_methods, allow_headers, expose_headers, max_age_s, allow_credentials }
    Route {
        name, methods, host, path, upstream, respond, admin, rewrite, strip_prefix, auth, access,
        rate_limit, cors, cache, validate, request, response,
    }
    Respond { status, body, headers }
    RouteAuth { jwt, api_key, scopes, claims }
    RouteCache { ttl_s, key_headers, per_consumer, fail }
    Validation { path, query, headers, content_types, body_schema, max_body_bytes }
    ParamRule { kind, required, min, max, one_of, pattern }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text<T: Emit>(v: &T) -> String {
        let mut out = String::new();
        v.emit(&mut out);
        out
    }

    #[test]
    fn scalars_are_written_as_typed_literals() {
        let rows: [(String, &str); 9] = [
            (text(&true), "true"),
            (text(&8192usize), "8192usize"),
            (text(&u64::MAX), "18446744073709551615u64"),
            (text(&0.5f64), "0.5f64"),
            (text(&-1e300f64), "-1e300f64"),
            (text(&f64::NAN), "f64::NAN"),
            (text(&f64::NEG_INFINITY), "f64::NEG_INFINITY"),
            (
                text(&String::from("a \"q\"\n\\")),
                r#"String::from("a \"q\"\n\\")"#,
            ),
            (text(&None::<u32>), "None"),
        ];
        for (got, want) in rows {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn json_values_are_written_with_their_constructors() {
        let v = serde_json::json!({"a": [null, true, 1, -2, 2.5, "s"], "b": {}});
        assert_eq!(
            text(&v),
            "Value::Object(Map::from_iter([(String::from(\"a\"),Value::Array(vec![Value::Null,\
             Value::Bool(true),Value::from(1u64),Value::from(-2i64),Value::from(2.5f64),\
             Value::String(String::from(\"s\")),])),(String::from(\"b\"),Value::Object(\
             Map::from_iter([]))),]))"
        );
    }

    #[test]
    fn untagged_enums_and_renamed_fields_are_written_by_their_rust_names() {
        let spec = ParamSpec::Rule(ParamRule {
            kind: ParamType::Int,
            required: true,
            min: Some(1.0),
            max: None,
            one_of: vec![],
            pattern: None,
        });
        assert_eq!(
            text(&spec),
            "ParamSpec::Rule(ParamRule {kind: ParamType::Int,required: true,min: Some(1.0f64),\
             max: None,one_of: Vec::new(),pattern: None,})"
        );
        assert_eq!(
            text(&Some(TransformRef::Named("t".into()))),
            "Some(TransformRef::Named(String::from(\"t\")))"
        );
        assert_eq!(
            text(&BTreeMap::from([("k".to_string(), FailMode::Open)])),
            "BTreeMap::from([(String::from(\"k\"),FailMode::Open),])"
        );
    }
}
