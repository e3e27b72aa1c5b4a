//! TOML loading with positions: parses the document once with spans, deserializes each section
//! (and each route, upstream, policy…) on its own so that one bad entry does not hide the next,
//! and maps key paths such as `routes[2].auth.jwt` back to a line and column.

use super::raw::{AuthProviders, RawConfig};
use super::{ConfigErrors, Diagnostic, SECTIONS};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

/// Finds positions in the parsed document.
pub(super) struct Locator<'a> {
    src: &'a str,
    root: Spanned<DeTable<'a>>,
}

/// 1-based line and column of a byte offset.
pub(super) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

enum Seg<'p> {
    Key(&'p str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                out.push(Seg::Key(&rest[..open]));
            }
            rest = &rest[open..];
            while let Some(r) = rest.strip_prefix('[') {
                let Some(close) = r.find(']') else { break };
                if let Ok(i) = r[..close].parse() {
                    out.push(Seg::Index(i));
                }
                rest = &r[close + 1..];
            }
        } else {
            out.push(Seg::Key(rest));
        }
    }
    out
}

fn table_get<'t, 'i>(t: &'t DeTable<'i>, key: &str) -> Option<&'t Spanned<DeValue<'i>>> {
    t.iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(_, v)| v)
}

impl Locator<'_> {
    /// The position of the deepest node of `path` that exists.
    pub(super) fn find(&self, path: &str) -> Option<(usize, usize)> {
        let mut span = self.root.span();
        let mut table: Option<&DeTable<'_>> = Some(self.root.get_ref());
        let mut value: Option<&DeValue<'_>> = None;
        for seg in segments(path) {
            let next = match (seg, table, value) {
                (Seg::Key(k), Some(t), _) => table_get(t, k),
                (Seg::Index(i), _, Some(DeValue::Array(a))) => a.get(i),
                _ => None,
            };
            let Some(next) = next else { break };
            span = next.span();
            value = Some(next.get_ref());
            table = next.get_ref().as_table();
        }
        Some(line_col(self.src, span.start))
    }
}

struct Loader<'a> {
    src: &'a str,
    errors: Vec<Diagnostic>,
}

impl<'a> Loader<'a> {
    fn one<T: DeserializeOwned>(&mut self, path: &str, v: &Spanned<DeValue<'a>>) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(ValueDeserializer::from(v.clone())) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = e.path().to_string();
                let full = match (path.is_empty(), inner.as_str()) {
                    (_, ".") | (_, "") => path.to_string(),
                    (true, p) => p.to_string(),
                    (false, p) if p.starts_with('[') => format!("{path}{p}"),
                    (false, p) => format!("{path}.{p}"),
                };
                let at = e.inner().span().unwrap_or(v.span()).start;
                self.errors.push(Diagnostic {
                    path: full,
                    line_col: Some(line_col(self.src, at)),
                    message: e.inner().message().trim().to_string(),
                });
                None
            }
        }
    }

    fn map<T: DeserializeOwned>(
        &mut self,
        path: &str,
        v: &Spanned<DeValue<'a>>,
    ) -> BTreeMap<String, T> {
        let mut out = BTreeMap::new();
        let Some(t) = v.get_ref().as_table() else {
            self.type_error(path, v, "a table");
            return out;
        };
        for (k, entry) in t.iter() {
            let key = k.get_ref().to_string();
            if let Some(parsed) = self.one(&format!("{path}.{key}"), entry) {
                out.insert(key, parsed);
            }
        }
        out
    }

    fn type_error(&mut self, path: &str, v: &Spanned<DeValue<'a>>, want: &str) {
        self.errors.push(Diagnostic {
            path: path.to_string(),
            line_col: Some(line_col(self.src, v.span().start)),
            message: format!("expected {want}, found {}", v.get_ref().type_str()),
        });
    }
}

/// Parses a TOML config into its raw form, collecting every syntax and shape error.
pub(super) fn parse_toml(src: &str) -> Result<(RawConfig, Locator<'_>), ConfigErrors> {
    let (root, syntax) = DeTable::parse_recoverable(src);
    if !syntax.is_empty() {
        let diagnostics = syntax
            .iter()
            .map(|e| Diagnostic {
                path: String::new(),
                line_col: e.span().map(|s| line_col(src, s.start)),
                message: format!("TOML syntax: {}", e.message().trim()),
            })
            .collect();
        return Err(ConfigErrors { diagnostics });
    }
    let mut l = Loader {
        src,
        errors: Vec::new(),
    };
    let mut raw = RawConfig::default();
    for (k, v) in root.get_ref().iter() {
        let key = k.get_ref().as_ref();
        match key {
            "gateway" => raw.gateway = l.one(key, v).unwrap_or_default(),
            "defaults" => raw.defaults = l.one(key, v).unwrap_or_default(),
            "upstreams" => raw.upstreams = l.map(key, v),
            "access" => raw.access = l.map(key, v),
            "rate_limits" => raw.rate_limits = l.map(key, v),
            "plans" => raw.plans = l.map(key, v),
            "transforms" => raw.transforms = l.map(key, v),
            "cors" => raw.cors = l.map(key, v),
            "openapi" => raw.openapi = l.one(key, v),
            "telemetry" => raw.telemetry = l.one(key, v),
            "auth" => match v.get_ref().as_table() {
                Some(t) => {
                    let mut auth = AuthProviders::default();
                    for (kind, providers) in t.iter() {
                        match kind.get_ref().as_ref() {
                            "jwt" => auth.jwt = l.map("auth.jwt", providers),
                            "api_keys" => auth.api_keys = l.map("auth.api_keys", providers),
                            other => l.errors.push(Diagnostic {
                                path: format!("auth.{other}"),
                                line_col: Some(line_col(src, kind.span().start)),
                                message: format!(
                                    "unknown provider kind {other:?}; expected jwt or api_keys"
                                ),
                            }),
                        }
                    }
                    raw.auth = auth;
                }
                None => l.type_error("auth", v, "a table"),
            },
            "routes" => match v.get_ref().as_array() {
                Some(list) => {
                    for (i, r) in list.iter().enumerate() {
                        if let Some(route) = l.one(&format!("routes[{i}]"), r) {
                            raw.routes.push(route);
                        }
                    }
                }
                None => l.type_error("routes", v, "an array of tables ([[routes]])"),
            },
            other => {
                let hint = super::compile::did_you_mean(other, SECTIONS.iter().copied());
                l.errors.push(Diagnostic {
                    path: other.to_string(),
                    line_col: Some(line_col(src, k.span().start)),
                    message: format!(
                        "unknown section{hint}; expected one of {}",
                        SECTIONS.join(", ")
                    ),
                })
            }
        }
    }
    if !l.errors.is_empty() {
        return Err(ConfigErrors::in_file_order(l.errors));
    }
    Ok((raw, Locator { src, root }))
}
