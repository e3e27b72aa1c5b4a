//! How the config's compilation reports problems, shared by the phases that compile their own
//! policies: [`Errs`] collects them with their key paths, [`refuse!`] reports one only in a
//! build that checks ([`CHECKS`]), and the small readers every phase needs.

use super::Diagnostic;
use http::{HeaderName, Method};

/// Whether this build reports what is wrong with a config. A build without the config parser
/// (`toml`: the Workers and Spin components) only loads the config its build script embedded,
/// and that script compiled the same config with every check (`Config::embed`), so the
/// component does not carry the checks' messages and pure checks again (about 6 KB of the
/// default worker, gzip). What only the runtime knows, a `secret_env` value, is checked and
/// reported in every build.
pub(crate) const CHECKS: bool = cfg!(feature = "toml");

/// `e.push(path, message)` in a build that checks ([`CHECKS`]); in one that does not, nothing,
/// and the check's message is compiled out.
macro_rules! refuse {
    ($e:expr, $path:expr, $message:expr $(,)?) => {
        if $crate::config::diag::CHECKS {
            $e.push($path, $message)
        }
    };
}
pub(crate) use refuse;

/// Collects problems.
pub(crate) struct Errs<'l> {
    pub(crate) list: Vec<Diagnostic>,
    pub(crate) locate: &'l dyn Fn(&str) -> Option<(usize, usize)>,
}

impl Errs<'_> {
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push_owned(path.into(), message.into());
    }

    /// The body of `push`, once: not copied for each pair of argument types it is called with.
    #[inline(never)]
    fn push_owned(&mut self, path: String, message: String) {
        let line_col = (self.locate)(&path);
        self.list.push(Diagnostic {
            path,
            line_col,
            message,
        });
    }
}

/// A header name, or the reason it is not one.
pub(crate) fn header_name(e: &mut Errs<'_>, path: &str, name: &str) -> Option<HeaderName> {
    match HeaderName::from_bytes(name.as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            refuse!(e, path, format!("{name:?} is not a valid header name"));
            None
        }
    }
}

/// HTTP methods, read in any case.
pub(crate) fn methods(e: &mut Errs<'_>, path: &str, list: &[String]) -> Vec<Method> {
    let mut out = Vec::new();
    for (i, m) in list.iter().enumerate() {
        let upper = m.to_ascii_uppercase();
        match Method::from_bytes(upper.as_bytes()) {
            Ok(method) if m.bytes().all(|b| b.is_ascii_alphabetic()) => out.push(method),
            _ => refuse!(
                e,
                format!("{path}[{i}]"),
                format!("{m:?} is not an HTTP method"),
            ),
        }
    }
    out
}
