//! Routing: which route a request is for (matchit per host, then method → 404 / 405 with
//! `Allow`), the upstream path (rewrite templates, prefix stripping), which target gets the
//! attempt (weighted, randomness passed in) and whether a failed attempt may be retried.
//!
//! The route table is data made when the config is checked ([`RouterData`]: for an adapter, a
//! `static` its build script wrote). It indexes each route by its host and its first static
//! path segments, so a request builds (once per instance) a matchit router of only the routes
//! that could match it: what an instance does before its first answer does not grow with the
//! number of routes.
//!
//! Pure lookups; the gateway performs the fetch.

use crate::problem::Reject;
use http::{Method, StatusCode};
use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

/// How many leading static path segments index a route. A request looks up this many keys
/// plus one (the routes whose first segment is a parameter).
pub const INDEX_DEPTH: usize = 3;

/// One route as the router needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteKey {
    /// Lowercase; empty: any host.
    pub host: Cow<'static, str>,
    /// The matchit pattern.
    pub path: Cow<'static, str>,
    /// Empty: every method.
    pub methods: Cow<'static, [Cow<'static, str>]>,
}

/// The routes under one host and path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// [`bucket_key`] of the host and prefix, by which the buckets are sorted.
    pub key: u64,
    /// Lowercase; empty: any host.
    pub host: Cow<'static, str>,
    /// The route paths' common static start: up to [`INDEX_DEPTH`] whole segments (`/v1/users`),
    /// or empty for routes whose first segment holds a parameter.
    pub prefix: Cow<'static, str>,
    /// Indexes into [`RouterData::keys`], ascending.
    pub routes: Cow<'static, [u32]>,
}

/// FNV-1a, 64 bits: a bucket's key is the hash of its host, a byte no UTF-8 text holds, and its
/// prefix, so a request hashes its path's prefixes in one pass and compares numbers. Not keyed:
/// a request can only pick among the buckets the config made.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn host(host: &str) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
            .bytes(host.as_bytes())
            .bytes(&[0xff])
    }

    fn bytes(mut self, bytes: &[u8]) -> Fnv {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self
    }
}

/// The key a bucket of `host` and `prefix` is sorted by.
pub fn bucket_key(host: &str, prefix: &str) -> u64 {
    Fnv::host(host).bytes(prefix.as_bytes()).0
}

/// The route table as data: every route's key, the buckets sorted by [`bucket_key`], and the
/// hosts that have routes of their own, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouterData {
    pub keys: Cow<'static, [RouteKey]>,
    pub buckets: Cow<'static, [Bucket]>,
    pub hosts: Cow<'static, [Cow<'static, str>]>,
}

/// A path's routes: each with the methods it takes (`None`: every method).
#[derive(Debug, Clone, Default)]
struct PathEntry {
    routes: Vec<(Option<Vec<Method>>, usize)>,
}

/// The matchit routers built so far, by the position of the deepest bucket they were built for.
type Built = Vec<Option<Rc<matchit::Router<PathEntry>>>>;

/// The route table: its data, and the matchit routers built from it so far.
#[derive(Clone, Default)]
pub struct Router {
    data: Cow<'static, RouterData>,
    built: RefCell<Built>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.data.keys.len())
            .field("buckets", &self.data.buckets.len())
            .finish()
    }
}

/// The path parameters of a match: names from the route's pattern, values from the request's
/// path (still percent-encoded). Up to three are kept without allocating.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Params<'p> {
    inline: [(&'p str, &'p str); 3],
    len: usize,
    more: Vec<(&'p str, &'p str)>,
}

impl<'p> Params<'p> {
    fn push(&mut self, pair: (&'p str, &'p str)) {
        if self.len < self.inline.len() {
            self.inline[self.len] = pair;
            self.len += 1;
        } else {
            self.more.push(pair);
        }
    }

    /// `(name, value)` in the pattern's order.
    pub fn iter(&self) -> impl Iterator<Item = (&'p str, &'p str)> + '_ {
        self.inline[..self.len].iter().chain(&self.more).copied()
    }

    pub fn get(&self, name: &str) -> Option<&'p str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The route a request matched, with its path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<'p> {
    pub route: usize,
    pub params: Params<'p>,
}

/// The end of the static start of `pattern` that indexes it: after at most [`INDEX_DEPTH`]
/// leading segments with no parameter (and no escaped brace).
fn indexed_prefix(pattern: &str) -> &str {
    if !pattern.starts_with('/') {
        // refused when the config is checked; indexed where every request looks
        return "";
    }
    let mut end = 0;
    for (depth, seg) in pattern.get(1..).unwrap_or("").split('/').enumerate() {
        if depth == INDEX_DEPTH || seg.contains(['{', '}']) {
            break;
        }
        end += 1 + seg.len();
    }
    &pattern[..end]
}

/// The prefixes of `path` a route's [`indexed_prefix`] can equal (empty, then each of the
/// first [`INDEX_DEPTH`] segments' ends), each with its [`bucket_key`] under `host`.
fn request_prefixes<'p>(host: &str, path: &'p str) -> impl Iterator<Item = (u64, &'p str)> {
    let mut end = Some(0);
    let mut hash = Fnv::host(host);
    std::iter::from_fn(move || {
        let at = end?;
        let prefix = &path[..at];
        let key = hash.0;
        end = (at < path.len()).then(|| {
            let from = at + 1;
            let to = path.as_bytes()[from.min(path.len())..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(path.len(), |i| from + i);
            hash = hash.bytes(&path.as_bytes()[at..to]);
            to
        });
        Some((key, prefix))
    })
    .take(INDEX_DEPTH + 1)
}

/// The names of the parameters in a matchit pattern, in order (`{{` and `}}` are literal braces).
pub fn param_names(pattern: &str) -> impl Iterator<Item = &str> {
    let mut rest = pattern;
    std::iter::from_fn(move || loop {
        // bytes, not a `char` pattern: this runs for every request that has parameters
        let open = rest.bytes().position(|b| b == b'{' || b == b'}')?;
        let tail = &rest[open..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            rest = &tail[2..];
            continue;
        }
        if let Some(after) = tail.strip_prefix('}') {
            rest = after;
            continue;
        }
        let close = tail.find('}')?;
        rest = &tail[close + 1..];
        return Some(tail[1..close].trim_start_matches('*'));
    })
}

/// Names of the parameters a matchit pattern captures.
pub fn pattern_params(pattern: &str) -> Vec<String> {
    param_names(pattern).map(String::from).collect()
}

impl RouterData {
    /// The table of `keys` (in route order), indexed.
    pub fn new(keys: Vec<RouteKey>) -> RouterData {
        let mut groups: Vec<((u64, &str, &str), u32)> = (0u32..)
            .zip(&keys)
            .map(|(i, k)| {
                let prefix = indexed_prefix(&k.path);
                ((bucket_key(&k.host, prefix), &*k.host, prefix), i)
            })
            .collect();
        groups.sort_unstable();
        let mut buckets: Vec<Bucket> = Vec::new();
        for ((key, host, prefix), i) in groups {
            match buckets.last_mut() {
                Some(b) if b.host == host && b.prefix == prefix => b.routes.to_mut().push(i),
                _ => buckets.push(Bucket {
                    key,
                    host: Cow::Owned(host.to_string()),
                    prefix: Cow::Owned(prefix.to_string()),
                    routes: Cow::Owned(vec![i]),
                }),
            }
        }
        let mut hosts: Vec<Cow<'static, str>> = buckets
            .iter()
            .filter(|b| !b.host.is_empty())
            .map(|b| b.host.clone())
            .collect();
        hosts.sort_unstable();
        hosts.dedup();
        RouterData {
            keys: Cow::Owned(keys),
            buckets: Cow::Owned(buckets),
            hosts: Cow::Owned(hosts),
        }
    }

    /// Writes this table as a constant expression, for an adapter's `static`.
    pub fn write(&self, out: &mut String) {
        use std::fmt::Write;
        out.push_str(
            "::portcullis_core::phase::route::RouterData { keys: ::std::borrow::Cow::Borrowed(&[",
        );
        for k in self.keys.iter() {
            let _ = write!(
                out,
                "::portcullis_core::phase::route::RouteKey {{ host: ::std::borrow::Cow::Borrowed({:?}), path: ::std::borrow::Cow::Borrowed({:?}), methods: ::std::borrow::Cow::Borrowed(&[",
                k.host, k.path
            );
            for m in k.methods.iter() {
                let _ = write!(out, "::std::borrow::Cow::Borrowed({m:?}),");
            }
            out.push_str("]) },");
        }
        out.push_str("]), buckets: ::std::borrow::Cow::Borrowed(&[");
        for b in self.buckets.iter() {
            let _ = write!(
                out,
                "::portcullis_core::phase::route::Bucket {{ key: {:#x}, host: ::std::borrow::Cow::Borrowed({:?}), prefix: ::std::borrow::Cow::Borrowed({:?}), routes: ::std::borrow::Cow::Borrowed(&{:?}) }},",
                b.key, b.host, b.prefix, b.routes
            );
        }
        out.push_str("]), hosts: ::std::borrow::Cow::Borrowed(&[");
        for h in self.hosts.iter() {
            let _ = write!(out, "::std::borrow::Cow::Borrowed({h:?}),");
        }
        out.push_str("]) }");
    }
}

impl Router {
    /// Builds the table; returns every conflict, each with the index of the route it concerns.
    /// This builds one matchit router of every route to find them; serving builds only the
    /// parts requests need.
    pub fn build(keys: Vec<RouteKey>) -> (Router, Vec<(usize, String)>) {
        let errors = conflicts(&keys);
        (Router::from_data(Cow::Owned(RouterData::new(keys))), errors)
    }

    /// The table from data checked when it was made (an adapter's `static`).
    pub fn from_data(data: Cow<'static, RouterData>) -> Router {
        Router {
            data,
            built: RefCell::default(),
        }
    }

    pub fn data(&self) -> &RouterData {
        &self.data
    }

    /// Finds the route for a method, host and (normalized) path.
    pub fn find<'p>(
        &'p self,
        method: &Method,
        host: Option<&str>,
        path: &'p str,
    ) -> Result<Matched<'p>, Reject> {
        let own = |h: &&str| self.data.hosts.binary_search_by(|x| (**x).cmp(h)).is_ok();
        let hosts = host.into_iter().filter(own).chain([""]);
        for table_host in hosts {
            let Some(table) = self.table(table_host, path) else {
                continue;
            };
            let Ok(found) = table.at(path) else {
                continue;
            };
            let entry = found.value;
            let route = entry.routes.iter().find(|(methods, _)| {
                methods.as_ref().is_none_or(|ms| {
                    ms.contains(method) || (method == Method::HEAD && ms.contains(&Method::GET))
                })
            });
            let Some(&(_, route)) = route else {
                return Err(Reject::MethodNotAllowed {
                    allow: allow_list(entry),
                });
            };
            let mut params = Params::default();
            let names = param_names(&self.data.keys[route].path);
            for (name, (_, value)) in names.zip(found.params.iter()) {
                params.push((name, value));
            }
            return Ok(Matched { route, params });
        }
        Err(Reject::NotFound)
    }

    /// The matchit router of the routes under `host` that could match `path`, built on first
    /// use; `None` when there are none. Which buckets a request finds follows from the deepest
    /// one (the others are those of its prefix's own prefixes), so the routers are kept by it.
    fn table(&self, host: &str, path: &str) -> Option<Rc<matchit::Router<PathEntry>>> {
        let deepest = self.deepest_bucket(host, path)?;
        let mut built = self.built.borrow_mut();
        if built.len() < self.data.buckets.len() {
            built.resize(self.data.buckets.len(), None);
        }
        let slot = &mut built[deepest];
        let table = slot.get_or_insert_with(|| {
            let keys = &self.data.keys;
            // matchit can refuse a part of a table it took whole (which insert it refuses
            // depends on the tree the others made): then the host's whole table is built
            matchit_of(keys, self.routes_in(&self.buckets_for(host, path)))
                .unwrap_or_else(|| {
                    let all = (0..keys.len()).filter(|&i| keys[i].host == host);
                    matchit_of(keys, all.collect()).unwrap_or_default()
                })
                .into()
        });
        Some(table.clone())
    }

    /// The position of the bucket of `host` and `prefix`, whose [`bucket_key`] is `key`.
    fn bucket(&self, host: &str, key: u64, prefix: &str) -> Option<usize> {
        let buckets = &self.data.buckets;
        let from = buckets.partition_point(|b| b.key < key);
        let mut same = buckets[from..].iter().take_while(|b| b.key == key);
        same.position(|b| b.host == host && b.prefix == prefix)
            .map(|at| from + at)
    }

    /// The deepest bucket under `host` whose prefix `path` starts with.
    fn deepest_bucket(&self, host: &str, path: &str) -> Option<usize> {
        let mut prefixes = [(0u64, ""); INDEX_DEPTH + 1];
        let mut n = 0;
        for p in request_prefixes(host, path) {
            prefixes[n] = p;
            n += 1;
        }
        prefixes[..n]
            .iter()
            .rev()
            .find_map(|&(key, prefix)| self.bucket(host, key, prefix))
    }

    /// Every bucket under `host` whose prefix `path` starts with.
    fn buckets_for(&self, host: &str, path: &str) -> Vec<usize> {
        request_prefixes(host, path)
            .filter_map(|(key, prefix)| self.bucket(host, key, prefix))
            .collect()
    }

    /// The routes in a set of buckets, in route order.
    fn routes_in(&self, set: &[usize]) -> Vec<usize> {
        let buckets = &self.data.buckets;
        let mut routes: Vec<usize> = set
            .iter()
            .flat_map(|&b| buckets[b].routes.iter().map(|&i| i as usize))
            .collect();
        routes.sort_unstable();
        routes
    }
}

/// The methods a route key lists; `None`: every method.
fn methods_of(key: &RouteKey) -> Option<Vec<Method>> {
    (!key.methods.is_empty()).then(|| {
        key.methods
            .iter()
            .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
            .collect()
    })
}

/// Routes grouped by path (matchit cannot update a stored value), in route order.
fn grouped(keys: &[RouteKey], routes: impl IntoIterator<Item = usize>) -> Vec<(&str, PathEntry)> {
    let mut groups: Vec<(&str, PathEntry)> = Vec::new();
    for i in routes {
        let path = &*keys[i].path;
        let entry = match groups.iter().position(|(p, _)| *p == path) {
            Some(at) => &mut groups[at].1,
            None => {
                groups.push((path, PathEntry::default()));
                &mut groups.last_mut().expect("just pushed").1
            }
        };
        entry.routes.push((methods_of(&keys[i]), i));
    }
    groups
}

/// A matchit router of `routes` (all under one host); `None` if matchit refuses one.
fn matchit_of(keys: &[RouteKey], routes: Vec<usize>) -> Option<matchit::Router<PathEntry>> {
    let mut router = matchit::Router::new();
    for (path, entry) in grouped(keys, routes) {
        router.insert(path, entry).ok()?;
    }
    Some(router)
}

/// Every conflict among `keys`: two routes for the same host, path and method, or paths
/// matchit cannot tell apart. Each with the index of the route it concerns.
fn conflicts(keys: &[RouteKey]) -> Vec<(usize, String)> {
    let mut errors = Vec::new();
    let mut hosts: Vec<&str> = keys.iter().map(|k| &*k.host).collect();
    hosts.sort_unstable();
    hosts.dedup();
    for host in hosts {
        let mut router = matchit::Router::new();
        let routes = (0..keys.len()).filter(|&i| keys[i].host == host);
        for (path, entry) in grouped(keys, routes) {
            for (n, (methods, index)) in entry.routes.iter().enumerate() {
                for (other_methods, other) in &entry.routes[..n] {
                    let overlap = match (methods, other_methods) {
                        (None, _) | (_, None) => true,
                        (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
                    };
                    if overlap {
                        errors.push((
                            *index,
                            format!("conflicts with routes[{other}]: same host, path and method"),
                        ));
                    }
                }
            }
            let first = entry.routes.first().map_or(0, |r| r.1);
            if let Err(e) = router.insert(path, entry) {
                errors.push((first, format!("path {path:?}: {e}")));
            }
        }
    }
    errors.sort_by_key(|(i, _)| *i);
    errors
}

/// The methods a path takes, sorted and without repeats, for `Allow`.
fn allow_list(entry: &PathEntry) -> String {
    // inserting the few names in place keeps a sort routine out of the wasm
    let mut allow: Vec<&str> = Vec::new();
    for m in entry.routes.iter().flat_map(|(ms, _)| ms.iter().flatten()) {
        if let Err(at) = allow.binary_search(&m.as_str()) {
            allow.insert(at, m.as_str());
        }
    }
    allow.join(", ")
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

/// The path and query to send upstream: the path rewritten, or with the prefix stripped, or as
/// matched (`/` when that leaves nothing), then the request's query unless it is empty (after
/// `&` when the rewrite has a query of its own). Built at exactly its length when nothing needs
/// escaping, so the upstream URI can take the string's bytes without a copy.
///
/// The path sent is in normal form: a rewrite whose parameters would form a dot segment (`..`
/// captured by `/files/{name}.txt`) or an empty one is refused.
pub fn upstream_path_and_query(
    path: &str,
    params: &Params<'_>,
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
    use proptest::prelude::*;

    fn key(host: Option<&str>, path: &str, methods: &[Method]) -> RouteKey {
        RouteKey {
            host: Cow::Owned(host.unwrap_or("").to_string()),
            path: Cow::Owned(path.to_string()),
            methods: methods.iter().map(|m| Cow::Owned(m.to_string())).collect(),
        }
    }

    fn router(routes: &[(Option<&str>, &str, &[Method])]) -> (Router, Vec<(usize, String)>) {
        Router::build(routes.iter().map(|(h, p, m)| key(*h, p, m)).collect())
    }

    /// A table of `paths` for any host and method, which must not conflict.
    fn table(paths: &[&str]) -> Router {
        let (r, errors) = Router::build(paths.iter().map(|p| key(None, p, &[])).collect());
        assert_eq!(errors, vec![]);
        r
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
        let m = table(&["/v1/u/{id}/{*rest}"]);
        let found = m.find(&Method::GET, None, "/v1/u/7/x/y").unwrap();
        let t = Template::parse("/users/{id}/files/{*rest}").unwrap();
        assert_eq!(t.params().collect::<Vec<_>>(), ["id", "rest"]);
        let none = Params::default();
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
        assert_eq!(pattern_params("/{{x}}/{y}.png/}}"), ["y"]);
    }

    /// A parameter that shares a segment with literal text can capture `..` (the path
    /// `/files/...txt` is normal); what goes upstream must still be.
    #[test]
    fn rewrites_never_send_dot_segments() {
        let m = table(&["/files/{name}.txt", "/v1/file-{name}"]);
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
            let found = m.find(&Method::GET, None, path).unwrap();
            let got = upstream_path_and_query(path, &found.params, Some(&t), None, None);
            assert_eq!(got, want.map(String::from), "{path}");
        }
    }

    /// A parameter substituted into a template's query cannot add parameters.
    #[test]
    fn template_queries_are_filled_query_safe() {
        let m = table(&["/search/{term}"]);
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
            let found = m.find(&Method::GET, None, path).unwrap();
            let got = upstream_path_and_query(path, &found.params, Some(&t), None, query);
            assert_eq!(got.as_deref(), Ok(want), "{path}");
        }
        let bare = Template::parse("/v2/list?").unwrap();
        let none = Params::default();
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

    /// What one matchit router of every route (per host, falling back to any host) answers: the
    /// table before it was indexed, kept here as the reference.
    fn reference(
        keys: &[RouteKey],
        method: &Method,
        host: &str,
        path: &str,
    ) -> Result<(usize, Vec<(String, String)>), Reject> {
        for table_host in [host, ""] {
            let routes = (0..keys.len()).filter(|&i| keys[i].host == table_host);
            let m = matchit_of(keys, routes.collect()).unwrap();
            let Ok(found) = m.at(path) else { continue };
            let route = found.value.routes.iter().find(|(ms, _)| {
                ms.as_ref().is_none_or(|ms| {
                    ms.contains(method) || (method == Method::HEAD && ms.contains(&Method::GET))
                })
            });
            return match route {
                Some(&(_, r)) => Ok((
                    r,
                    found
                        .params
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                )),
                None => Err(Reject::MethodNotAllowed {
                    allow: allow_list(found.value),
                }),
            };
        }
        Err(Reject::NotFound)
    }

    fn segment() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "a", "b", "ab", "", "{x}", "{y}.png", "p{z}", "{w}", "{{q}}",
        ])
    }

    fn pattern() -> impl Strategy<Value = String> {
        (prop::collection::vec(segment(), 0..5), prop::bool::ANY).prop_map(|(segs, tail)| {
            let mut p: String = segs.iter().map(|s| format!("/{s}")).collect();
            if tail || p.is_empty() {
                p.push_str(if tail { "/{*rest}" } else { "/" });
            }
            p
        })
    }

    proptest::proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        /// The indexed table answers every request exactly as one matchit router of every route
        /// does: the same route, parameters, 404 and 405.
        #[test]
        fn the_index_answers_as_one_router_of_every_route(
            routes in prop::collection::vec((prop::bool::ANY, pattern(), prop::sample::subsequence(vec!["GET", "POST"], 0..=2)), 1..12),
            requests in prop::collection::vec((prop::bool::ANY, prop::collection::vec(prop::sample::select(vec!["a", "a", "b", "b", "", "x.png", "pq", "{q}"]), 0..6), prop::bool::ANY), 1..20),
        ) {
            // the routes that do not conflict with those before them
            let mut keys: Vec<RouteKey> = Vec::new();
            for (h, p, ms) in &routes {
                keys.push(RouteKey {
                    host: Cow::Borrowed(if *h { "h" } else { "" }),
                    path: Cow::Owned(p.clone()),
                    methods: ms.iter().map(|m| Cow::Borrowed(*m)).collect(),
                });
                if !conflicts(&keys).is_empty() {
                    keys.pop();
                }
            }
            let (router, errors) = Router::build(keys.clone());
            proptest::prop_assert_eq!(errors, vec![]);
            for (h, segs, post) in &requests {
                let path: String = if segs.is_empty() { "/".into() } else { segs.iter().map(|s| format!("/{s}")).collect() };
                let method = if *post { Method::POST } else { Method::GET };
                let host = if *h { "h" } else { "other" };
                let got = router.find(&method, Some(host), &path).map(|m| {
                    (m.route, m.params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>())
                });
                proptest::prop_assert_eq!(got, reference(&keys, &method, host, &path), "{} {} {}", method, host, path);
            }
        }
    }

    #[test]
    fn a_request_builds_only_the_routes_that_could_match_it() {
        let mut keys: Vec<RouteKey> = (0..1000)
            .map(|i| {
                key(
                    None,
                    &format!("/svc{}/res{i}/{{id}}", i % 37),
                    &[Method::GET],
                )
            })
            .collect();
        keys.push(key(None, "/{tenant}/health", &[]));
        keys.push(key(Some("admin.test"), "/svc3/{*rest}", &[]));
        let (r, errors) = Router::build(keys);
        assert_eq!(errors, vec![]);
        let set = r.buckets_for("", "/svc3/res3/7");
        assert_eq!(r.routes_in(&set), [3, 1000]);
        assert_eq!(r.find(&Method::GET, None, "/svc3/res3/7").unwrap().route, 3);
        assert_eq!(
            r.find(&Method::GET, Some("admin.test"), "/svc3/res3/7")
                .unwrap()
                .route,
            1001
        );
        assert_eq!(
            r.find(&Method::GET, Some("admin.test"), "/svc4/res4/7")
                .unwrap()
                .route,
            4
        );
        assert_eq!(
            r.find(&Method::GET, None, "/t1/health").unwrap().route,
            1000
        );
        assert_eq!(
            r.built.borrow().iter().flatten().count(),
            4,
            "one router per set of buckets a request found"
        );
        assert!(r.buckets_for("nowhere.test", "/svc3/res3/7").is_empty());
    }

    /// Found by fuzzing: a path without its leading `/` (refused by the config check, which
    /// still builds the table to report conflicts) that starts with a multi-byte character.
    #[test]
    fn a_path_without_its_slash_is_indexed_without_a_panic() {
        let (r, errors) = router(&[(None, "\u{349}1/echo", &[]), (None, "/a", &[])]);
        assert_eq!(errors, vec![]);
        assert_eq!(r.find(&Method::GET, None, "/a").map(|m| m.route), Ok(1));
        assert_eq!(
            r.find(&Method::GET, None, "/b").map(|m| m.route),
            Err(Reject::NotFound)
        );
    }

    #[test]
    fn the_table_is_written_as_data_that_reads_back() {
        let (r, _) = router(&[
            (Some("h"), "/a/{id}", &[Method::GET]),
            (None, "/{*rest}", &[]),
        ]);
        let mut out = String::new();
        r.data().write(&mut out);
        assert!(out.starts_with("::portcullis_core::phase::route::RouterData { keys: ::std::borrow::Cow::Borrowed(&[::portcullis_core::phase::route::RouteKey { host: ::std::borrow::Cow::Borrowed(\"h\"), path: ::std::borrow::Cow::Borrowed(\"/a/{id}\"), methods: ::std::borrow::Cow::Borrowed(&[::std::borrow::Cow::Borrowed(\"GET\"),]) },"), "{out}");
        assert!(out.contains(&format!("::portcullis_core::phase::route::Bucket {{ key: {:#x}, host: ::std::borrow::Cow::Borrowed(\"h\"), prefix: ::std::borrow::Cow::Borrowed(\"/a\"), routes: ::std::borrow::Cow::Borrowed(&[0]) }},", bucket_key("h", "/a"))), "{out}");
    }
}
