//! Routing: which route a request is for (matchit per host, then method → 404 / 405 with
//! `Allow`), the upstream path (rewrite templates, prefix stripping), which target gets the
//! attempt (weighted, randomness passed in) and whether a failed attempt may be retried.
//!
//! Pure lookups; the gateway performs the fetch.

use crate::problem::Reject;
use http::{Method, StatusCode};
use std::collections::HashMap;

/// A path's routes: each with the methods it takes (`None`: every method).
#[derive(Debug, Clone, Default)]
struct PathEntry {
    routes: Vec<(Option<Vec<Method>>, usize)>,
}

#[derive(Clone, Default)]
struct Table {
    paths: matchit::Router<PathEntry>,
}

/// The compiled route table.
#[derive(Clone, Default)]
pub struct Router {
    hosts: HashMap<String, Table>,
    any_host: Table,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("hosts", &self.hosts.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The route a request matched, with its path parameters (still percent-encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<'p> {
    pub route: usize,
    /// The path parameters: names from the route table, values from the path (kept inline for
    /// up to three).
    pub params: matchit::Params<'p, 'p>,
}

/// One route as the router needs it.
pub struct RouteKey<'a> {
    pub index: usize,
    pub host: Option<&'a str>,
    pub path: &'a str,
    /// Empty: every method.
    pub methods: &'a [Method],
}

impl Router {
    /// Builds the table; returns every conflict, each with the index of the route it concerns.
    pub fn build<'a>(
        routes: impl IntoIterator<Item = RouteKey<'a>>,
    ) -> (Router, Vec<(usize, String)>) {
        let mut router = Router::default();
        let mut errors = Vec::new();
        // matchit cannot update a stored value, so gather entries per (host, path) first
        let mut grouped: Vec<(Option<String>, String, PathEntry)> = Vec::new();
        let mut names: HashMap<(Option<String>, String), usize> = HashMap::new();
        for r in routes {
            let host = r.host.map(|h| h.to_ascii_lowercase());
            let methods = (!r.methods.is_empty()).then(|| r.methods.to_vec());
            let slot = *names
                .entry((host.clone(), r.path.to_string()))
                .or_insert_with(|| {
                    grouped.push((host.clone(), r.path.to_string(), PathEntry::default()));
                    grouped.len() - 1
                });
            let entry = &mut grouped[slot].2;
            for (other_methods, other) in &entry.routes {
                let overlap = match (&methods, other_methods) {
                    (None, _) | (_, None) => true,
                    (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
                };
                if overlap {
                    errors.push((
                        r.index,
                        format!("conflicts with routes[{other}]: same host, path and method"),
                    ));
                }
            }
            entry.routes.push((methods, r.index));
        }
        for (host, path, entry) in grouped {
            let first = entry.routes.first().map_or(0, |r| r.1);
            let table = match &host {
                Some(h) => router.hosts.entry(h.clone()).or_default(),
                None => &mut router.any_host,
            };
            if let Err(e) = table.paths.insert(path.clone(), entry) {
                errors.push((first, format!("path {path:?}: {e}")));
            }
        }
        (router, errors)
    }

    /// Finds the route for a method, host and (normalized) path.
    pub fn find<'p>(
        &'p self,
        method: &Method,
        host: Option<&str>,
        path: &'p str,
    ) -> Result<Matched<'p>, Reject> {
        let host_table = host.and_then(|h| self.hosts.get(h));
        let found = host_table
            .and_then(|t| t.paths.at(path).ok())
            .or_else(|| self.any_host.paths.at(path).ok())
            .ok_or(Reject::NotFound)?;
        let entry = found.value;
        let route = entry
            .routes
            .iter()
            .find(|(methods, _)| {
                methods.as_ref().is_none_or(|ms| {
                    ms.contains(method) || (method == Method::HEAD && ms.contains(&Method::GET))
                })
            })
            .map(|(_, i)| *i);
        match route {
            Some(route) => Ok(Matched {
                route,
                params: found.params,
            }),
            None => {
                // sorted and without repeats; inserting the few names in place keeps a sort
                // routine out of the wasm
                let mut allow: Vec<&str> = Vec::new();
                for m in entry.routes.iter().flat_map(|(ms, _)| ms.iter().flatten()) {
                    if let Err(at) = allow.binary_search(&m.as_str()) {
                        allow.insert(at, m.as_str());
                    }
                }
                Err(Reject::MethodNotAllowed {
                    allow: allow.join(", "),
                })
            }
        }
    }
}

/// The request's host: from the URI's authority or the `Host` header, lowercase, without port
/// and without the trailing dot of a fully qualified name (`admin.test.` is `admin.test`).
/// Borrowed from the URI when it is already in that form (the common case).
pub fn request_host<'u>(
    uri: &'u http::Uri,
    headers: &http::HeaderMap,
) -> Option<std::borrow::Cow<'u, str>> {
    use std::borrow::Cow;
    if let Some(a) = uri.authority().map(|a| a.as_str()) {
        // the common case: a lowercase name with no port, user info or IPv6 brackets
        if !a.is_empty()
            && !a.ends_with('.')
            && !a
                .bytes()
                .any(|b| matches!(b, b'@' | b':' | b'[' | b'A'..=b'Z'))
        {
            return Some(Cow::Borrowed(a));
        }
    }
    let raw: Cow<'u, str> = match uri.authority() {
        Some(a) => Cow::Borrowed(a.host()),
        None => Cow::Owned(headers.get(http::header::HOST)?.to_str().ok()?.to_string()),
    };
    let end = if raw.starts_with('[') {
        raw.find(']')? + 1
    } else {
        raw.find(':').unwrap_or(raw.len())
    };
    let end = if raw[..end].ends_with('.') && end > 1 {
        end - 1
    } else {
        end
    };
    let host = match raw {
        Cow::Borrowed(s) => Cow::Borrowed(&s[..end]),
        Cow::Owned(mut s) => {
            s.truncate(end);
            Cow::Owned(s)
        }
    };
    Some(if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        host
    })
}

/// The request's authority as the gateway names it upstream and in cache keys: the host as
/// [`request_host`] gives it, then `:port` when the request names a port that is not the
/// scheme's default.
pub fn request_authority(
    uri: &http::Uri,
    headers: &http::HeaderMap,
    host: Option<&str>,
) -> Option<String> {
    let host = host?;
    let raw = match uri.authority() {
        Some(a) => a.as_str(),
        None => headers.get(http::header::HOST)?.to_str().ok()?,
    };
    let after_host = match raw.rfind(']') {
        Some(i) => &raw[i + 1..],
        None => raw.rsplit('@').next().unwrap_or(raw),
    };
    let port = after_host
        .rsplit_once(':')
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty());
    let default = match uri.scheme_str() {
        Some("https") => "443",
        _ => "80",
    };
    Some(match port {
        Some(p) if p != default && p.bytes().all(|b| b.is_ascii_digit()) => format!("{host}:{p}"),
        _ => host.to_string(),
    })
}

/// A rewrite template: literal text and `{param}` holes, with an optional query
/// (`/search?q={term}`) whose holes are filled query-safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    /// Where the query's parts start in `parts` (`parts.len()` when the template has none).
    query_at: usize,
    has_query: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Param(String),
}

impl Template {
    /// Parses `"/users/{id}"`; `{*rest}` and `{rest}` both name the catch-all `rest`.
    pub fn parse(s: &str) -> Result<Template, String> {
        if !s.starts_with('/') {
            return Err(format!("{s:?} must start with /"));
        }
        if s.contains('#') {
            return Err(format!("{s:?} has a fragment (#)"));
        }
        let (path, query) = match s.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (s, None),
        };
        let mut parts = Vec::new();
        Template::parse_into(s, path, &mut parts)?;
        let query_at = parts.len();
        if let Some(q) = query {
            Template::parse_into(s, q, &mut parts)?;
        }
        Ok(Template {
            parts,
            query_at,
            has_query: query.is_some(),
        })
    }

    fn parse_into(whole: &str, text: &str, parts: &mut Vec<Part>) -> Result<(), String> {
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Lit(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("{whole:?} has an unclosed {{"))?
                + open;
            let name = rest[open + 1..close].trim_start_matches('*');
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("{whole:?} has a bad parameter name {name:?}"));
            }
            parts.push(Part::Param(name.to_string()));
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("{whole:?} has an unopened }}"));
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(())
    }

    /// The parameter names the template uses.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Param(n) => Some(n.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// The length [`Template::render_into`] writes at least (query-safe escapes add to it), so
    /// the caller can size a buffer once.
    pub fn rendered_len<'v>(&self, param: &impl Fn(&str) -> Option<&'v str>) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Lit(l) => l.len(),
                Part::Param(n) => param(n).map_or(0, str::len),
            })
            .sum::<usize>()
            + usize::from(self.has_query)
    }

    /// Fills the template, appending to `out`. Parameter values are already percent-encoded
    /// path text; `param` looks a parameter's value up by name. In the query, a value's `&`,
    /// `=`, `+` and `#` are percent-encoded, so a value cannot add query parameters.
    pub fn render_into<'v>(&self, param: &impl Fn(&str) -> Option<&'v str>, out: &mut String) {
        for (i, p) in self.parts.iter().enumerate() {
            if i == self.query_at && self.has_query {
                out.push('?');
            }
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Param(n) if i >= self.query_at => {
                    for c in param(n).unwrap_or("").chars() {
                        match c {
                            '&' => out.push_str("%26"),
                            '=' => out.push_str("%3D"),
                            '+' => out.push_str("%2B"),
                            '#' => out.push_str("%23"),
                            c => out.push(c),
                        }
                    }
                }
                Part::Param(n) => out.push_str(param(n).unwrap_or("")),
            }
        }
        if self.has_query && self.query_at == self.parts.len() {
            out.push('?');
        }
    }
}

/// Names of the parameters a matchit pattern captures.
pub fn pattern_params(pattern: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        out.push(
            rest[open + 1..open + close]
                .trim_start_matches('*')
                .to_string(),
        );
        rest = &rest[open + close + 1..];
    }
    out
}

/// The path and query to send upstream: the path rewritten, or with the prefix stripped, or as
/// matched (`/` when that leaves nothing), then the request's query unless it is empty (after
/// `&` when the rewrite has a query of its own). Built at exactly its length when nothing needs
/// escaping, so the upstream URI can take the string's bytes without a copy.
///
/// The path sent is in normal form: a rewrite whose parameters would form a dot segment (`..`
/// captured by `/files/{name}.txt`) or an empty one is refused.
pub fn upstream_path_and_query(
    path: &str,
    params: &matchit::Params<'_, '_>,
    rewrite: Option<&Template>,
    strip_prefix: Option<&str>,
    query: Option<&str>,
) -> Result<String, Reject> {
    let query = query.filter(|q| !q.is_empty());
    let query_len = query.map_or(0, |q| q.len() + 1);
    let lookup = |name: &str| params.get(name);
    let mut out = match rewrite {
        Some(t) => {
            let len = t.rendered_len(&lookup);
            let mut out = String::with_capacity(len.max(1) + query_len);
            t.render_into(&lookup, &mut out);
            let rendered_path = out.split('?').next().unwrap_or("");
            if !is_normal_upstream_path(rendered_path) {
                return Err(Reject::BadPath(
                    "a path parameter would form a dot segment or an empty one upstream",
                ));
            }
            out
        }
        None => {
            let p = strip_prefix
                .and_then(|prefix| path.strip_prefix(prefix.trim_end_matches('/')))
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                .unwrap_or(path);
            let mut out = String::with_capacity(p.len().max(1) + query_len);
            out.push_str(p);
            out
        }
    };
    if out.is_empty() {
        out.push('/');
    }
    if let Some(q) = query {
        if !out.contains('?') {
            out.push('?');
        } else if !out.ends_with(['?', '&']) {
            out.push('&');
        }
        out.push_str(q);
    }
    Ok(out)
}

/// Whether a rendered upstream path is in normal form: it starts with `/`, and no segment but
/// the last is empty, none is `.` or `..` (also as `%2E`, also with `;` parameters), and none
/// holds a backslash.
fn is_normal_upstream_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return path.is_empty();
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    segments.iter().enumerate().all(|(i, seg)| {
        if seg.is_empty() {
            return i == last;
        }
        if seg.contains('\\') {
            return false;
        }
        let decoded = seg.replace("%2e", ".").replace("%2E", ".");
        crate::phase::validate::dot_segment(decoded.as_bytes()).is_none()
    })
}

/// Picks a target by weight from a 64-bit random number.
pub fn pick(weights: &[u32], random: u64) -> usize {
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    if total == 0 {
        return 0;
    }
    let mut x = random % total;
    for (i, w) in weights.iter().enumerate() {
        let w = u64::from(*w);
        if x < w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// Whether a request with this method may be sent again.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Whether an upstream status is worth another attempt.
pub fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 502..=504)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(Option<&str>, &str, &[Method])]) -> (Router, Vec<(usize, String)>) {
        Router::build(
            routes
                .iter()
                .enumerate()
                .map(|(index, (host, path, methods))| RouteKey {
                    index,
                    host: *host,
                    path,
                    methods,
                }),
        )
    }

    #[test]
    fn lookup() {
        let (r, errors) = router(&[
            (None, "/v1/users/{id}", &[Method::GET]),
            (None, "/v1/users/{id}", &[Method::DELETE, Method::PUT]),
            (Some("admin.example.com"), "/v1/users/{id}", &[Method::GET]),
            (None, "/files/{*rest}", &[]),
        ]);
        assert_eq!(errors, vec![]);
        let m = |method: Method, host: Option<&str>, path: &str| {
            r.find(&method, host, path).map(|m| m.route)
        };
        let rows = [
            (Method::GET, None, "/v1/users/7", Ok(0)),
            (Method::HEAD, None, "/v1/users/7", Ok(0)),
            (Method::PUT, None, "/v1/users/7", Ok(1)),
            (Method::GET, Some("admin.example.com"), "/v1/users/7", Ok(2)),
            (Method::GET, Some("other.example.com"), "/v1/users/7", Ok(0)),
            (Method::POST, Some("x"), "/files/a/b/c", Ok(3)),
            (Method::GET, None, "/v1/users", Err(Reject::NotFound)),
            (
                Method::POST,
                None,
                "/v1/users/7",
                Err(Reject::MethodNotAllowed {
                    allow: "DELETE, GET, PUT".into(),
                }),
            ),
        ];
        for (method, host, path, want) in rows {
            assert_eq!(
                m(method.clone(), host, path),
                want,
                "{method} {host:?} {path}"
            );
        }
        let found = r.find(&Method::GET, None, "/files/a/b").unwrap();
        assert_eq!(found.params.iter().collect::<Vec<_>>(), [("rest", "a/b")]);
    }

    #[test]
    fn conflicts_are_reported() {
        let (_, errors) = router(&[
            (None, "/a/{id}", &[Method::GET]),
            (None, "/a/{id}", &[Method::GET, Method::POST]),
            (None, "/a/{name}", &[Method::GET]),
            (Some("h"), "/a/{id}", &[Method::GET]),
        ]);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(
            errors[0],
            (
                1,
                "conflicts with routes[0]: same host, path and method".into()
            )
        );
        assert_eq!(errors[1].0, 2);
        assert!(
            errors[1].1.starts_with("path \"/a/{name}\": "),
            "{}",
            errors[1].1
        );
    }

    #[test]
    fn rewrite_and_strip() {
        let mut m = matchit::Router::new();
        m.insert("/v1/u/{id}/{*rest}", ()).unwrap();
        let found = m.at("/v1/u/7/x/y").unwrap();
        let t = Template::parse("/users/{id}/files/{*rest}").unwrap();
        assert_eq!(t.params().collect::<Vec<_>>(), ["id", "rest"]);
        let none = matchit::Params::new();
        let rows = [
            (
                "/v1/u/7/x/y",
                &found.params,
                Some(&t),
                None,
                None,
                "/users/7/files/x/y",
            ),
            (
                "/v1/u/7/x/y",
                &found.params,
                Some(&t),
                None,
                Some("a=1"),
                "/users/7/files/x/y?a=1",
            ),
            ("/api/v1/x", &none, None, Some("/api"), None, "/v1/x"),
            ("/api/v1/x", &none, None, Some("/api"), Some(""), "/v1/x"),
            ("/api", &none, None, Some("/api/"), None, "/"),
            ("/api", &none, None, Some("/api/"), Some("q"), "/?q"),
            ("/apix", &none, None, Some("/api"), None, "/apix"),
            ("/x", &none, None, None, Some("a=%20&b"), "/x?a=%20&b"),
        ];
        for (path, params, rewrite, strip, query, want) in rows {
            let got = upstream_path_and_query(path, params, rewrite, strip, query).unwrap();
            assert_eq!(got, want);
            assert_eq!(
                got.capacity(),
                got.len(),
                "{want} is built at its exact size"
            );
        }
        // a rewrite that renders nothing still sends a path
        let empty = Template {
            parts: vec![],
            query_at: 0,
            has_query: false,
        };
        assert_eq!(
            upstream_path_and_query("/x", &none, Some(&empty), None, None),
            Ok("/".into())
        );
        assert_eq!(
            Template::parse("users/{id}"),
            Err("\"users/{id}\" must start with /".into())
        );
        assert_eq!(
            Template::parse("/u/{id"),
            Err("\"/u/{id\" has an unclosed {".into())
        );
        assert_eq!(pattern_params("/a/{id}/b/{*rest}"), ["id", "rest"]);
    }

    /// A parameter that shares a segment with literal text can capture `..` (the path
    /// `/files/...txt` is normal); what goes upstream must still be.
    #[test]
    fn rewrites_never_send_dot_segments() {
        let mut m = matchit::Router::new();
        m.insert("/files/{name}.txt", 0).unwrap();
        m.insert("/v1/file-{name}", 1).unwrap();
        let t = Template::parse("/storage/public/{name}/content").unwrap();
        let refused = Err(Reject::BadPath(
            "a path parameter would form a dot segment or an empty one upstream",
        ));
        for (path, want) in [
            ("/files/...txt", refused.clone()),
            ("/files/..txt", refused.clone()),
            ("/files/..;x.txt", refused.clone()),
            ("/files/%2E%2E.txt", refused.clone()),
            ("/v1/file-..", refused.clone()),
            ("/files/a..txt", Ok("/storage/public/a./content")),
            ("/files/report.txt", Ok("/storage/public/report/content")),
        ] {
            let found = m.at(path).unwrap();
            let got = upstream_path_and_query(path, &found.params, Some(&t), None, None);
            assert_eq!(got, want.map(String::from), "{path}");
        }
    }

    /// A parameter substituted into a template's query cannot add parameters.
    #[test]
    fn template_queries_are_filled_query_safe() {
        let mut m = matchit::Router::new();
        m.insert("/search/{term}", ()).unwrap();
        let t = Template::parse("/v2/search?scope=public&q={term}").unwrap();
        let rows = [
            ("/search/shoes", None, "/v2/search?scope=public&q=shoes"),
            (
                "/search/shoes&scope=internal",
                None,
                "/v2/search?scope=public&q=shoes%26scope%3Dinternal",
            ),
            ("/search/a+b#", None, "/v2/search?scope=public&q=a%2Bb%23"),
            (
                "/search/x",
                Some("page=2"),
                "/v2/search?scope=public&q=x&page=2",
            ),
        ];
        for (path, query, want) in rows {
            let found = m.at(path).unwrap();
            let got = upstream_path_and_query(path, &found.params, Some(&t), None, query);
            assert_eq!(got.as_deref(), Ok(want), "{path}");
        }
        let bare = Template::parse("/v2/list?").unwrap();
        let none = matchit::Params::new();
        assert_eq!(
            upstream_path_and_query("/x", &none, Some(&bare), None, Some("a=1")).as_deref(),
            Ok("/v2/list?a=1")
        );
        assert_eq!(
            Template::parse("/a#frag"),
            Err("\"/a#frag\" has a fragment (#)".into())
        );
    }

    #[test]
    fn weighted_choice() {
        let weights = [3, 1];
        let counts = (0..4000u64).fold([0; 2], |mut c, r| {
            c[pick(&weights, r)] += 1;
            c
        });
        assert_eq!(counts, [3000, 1000]);
        assert_eq!(pick(&[0, 0], 5), 0);
    }

    #[test]
    fn retry_rules() {
        assert!(is_idempotent(&Method::GET) && is_idempotent(&Method::PUT));
        assert!(!is_idempotent(&Method::POST) && !is_idempotent(&Method::PATCH));
        for (s, want) in [
            (502, true),
            (503, true),
            (504, true),
            (500, false),
            (429, false),
        ] {
            assert_eq!(
                is_retryable_status(StatusCode::from_u16(s).unwrap()),
                want,
                "{s}"
            );
        }
    }

    #[test]
    fn authorities() {
        let h = http::HeaderMap::new();
        for (uri, want) in [
            ("http://API.example:8080/x", Some("api.example:8080")),
            ("http://api.example:80/x", Some("api.example")),
            ("https://api.example:443/x", Some("api.example")),
            ("https://api.example:80/x", Some("api.example:80")),
            ("http://[2001:db8::1]:8080/x", Some("[2001:db8::1]:8080")),
            ("http://[2001:db8::1]/x", Some("[2001:db8::1]")),
            ("http://u:p@api.example./x", Some("api.example")),
        ] {
            let uri: http::Uri = uri.parse().unwrap();
            let host = request_host(&uri, &h);
            assert_eq!(
                request_authority(&uri, &h, host.as_deref()).as_deref(),
                want,
                "{uri}"
            );
        }
        let mut h = http::HeaderMap::new();
        h.insert("host", "Admin.Test.:3000".parse().unwrap());
        let uri: http::Uri = "/x".parse().unwrap();
        let host = request_host(&uri, &h);
        assert_eq!(host.as_deref(), Some("admin.test"));
        assert_eq!(
            request_authority(&uri, &h, host.as_deref()).as_deref(),
            Some("admin.test:3000")
        );
    }

    #[test]
    fn hosts() {
        let h = http::HeaderMap::new();
        assert_eq!(
            request_host(&"http://Api.Example.com:8080/x".parse().unwrap(), &h),
            Some("api.example.com".into())
        );
        let mut h = http::HeaderMap::new();
        h.insert("host", "[::1]:8787".parse().unwrap());
        assert_eq!(
            request_host(&"/x".parse().unwrap(), &h),
            Some("[::1]".into())
        );
        h.insert("host", "[::1".parse().unwrap());
        assert_eq!(request_host(&"/x".parse().unwrap(), &h), None);
        // already lowercase and without a port: borrowed from the URI, not copied
        let uri: http::Uri = "https://gw.example/x".parse().unwrap();
        assert!(matches!(
            request_host(&uri, &h),
            Some(std::borrow::Cow::Borrowed("gw.example"))
        ));
        // user info, ports and brackets are not part of the host
        for (uri, host) in [
            ("http://user:pw@gw.example/x", "gw.example"),
            ("http://gw.example:8080/x", "gw.example"),
            ("http://[2001:db8::1]:8080/x", "[2001:db8::1]"),
            ("http://[2001:db8::1]/x", "[2001:db8::1]"),
            ("http://u@GW.example/x", "gw.example"),
            // a fully qualified name's trailing dot names the same host
            ("http://admin.test./x", "admin.test"),
            ("http://Admin.Test.:8080/x", "admin.test"),
        ] {
            let uri: http::Uri = uri.parse().unwrap();
            assert_eq!(request_host(&uri, &h).as_deref(), Some(host), "{uri}");
        }
    }
}
