//! The keys the gateway reads and writes through the [`Host`](crate::Host). Each key knows its
//! kind, so an adapter places, expires or sweeps entries by kind (a rate-limit state to a
//! Durable Object or a compare-and-swap, a cached response to the Cache API) without taking
//! key strings apart; only a key read back from the store (a sweep's listing) is parsed, by
//! [`Kind::of`].

use std::borrow::Cow;
use std::fmt::{self, Write};

/// What a stored entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A rate-limit counter's state (GCRA), kept by [`Host::rate_limit`](crate::Host::rate_limit).
    RateLimit,
    /// A cached response, or the mark that invalidates a URI's responses.
    Cache,
    /// A JWKS copy with its fetch and cooldown times.
    Jwks,
    /// The gateway's own bookkeeping: the cache generation.
    Gateway,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 4] = [Kind::RateLimit, Kind::Cache, Kind::Jwks, Kind::Gateway];

    /// What every key of this kind starts with in the store.
    pub const fn prefix(self) -> &'static str {
        match self {
            Kind::RateLimit => "rl:",
            Kind::Cache => "cache:",
            Kind::Jwks => "jwks:",
            Kind::Gateway => "portcullis:",
        }
    }

    /// The kind of a key read back from the store; `None` for a key the gateway does not write
    /// (another application's, or an adapter's own bookkeeping), which it must leave alone.
    pub fn of(key: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| key.starts_with(k.prefix()))
    }
}

/// A key in the store: its kind, and the text it is stored under (the kind's prefix, then a
/// name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreKey {
    kind: Kind,
    text: Cow<'static, str>,
}

impl StoreKey {
    /// The key of `kind` named `name`.
    pub fn new(kind: Kind, name: impl fmt::Display) -> StoreKey {
        StoreKey::build(kind, 48, |text| {
            let _ = write!(text, "{name}");
        })
    }

    /// The key of `kind` whose name `write` appends (no string is made on the way), in a
    /// string with room for `name_len` bytes of name.
    pub fn build(kind: Kind, name_len: usize, write: impl FnOnce(&mut String)) -> StoreKey {
        let mut text = String::with_capacity(kind.prefix().len() + name_len);
        text.push_str(kind.prefix());
        write(&mut text);
        StoreKey {
            kind,
            text: Cow::Owned(text),
        }
    }

    /// A key whose whole text is fixed, prefix included, so none is made per use (each such
    /// key's test checks that it starts with its kind's prefix).
    pub const fn fixed(kind: Kind, text: &'static str) -> StoreKey {
        StoreKey {
            kind,
            text: Cow::Borrowed(text),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The text the entry is stored under.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Appends to the name (a shard's `#N`).
    pub(crate) fn push_str(&mut self, more: &str) {
        self.text.to_mut().push_str(more);
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_starts_with_its_kinds_prefix_and_reads_back_as_that_kind() {
        for kind in Kind::ALL {
            let key = StoreKey::new(kind, "x:1");
            assert_eq!(key.as_str(), format!("{}x:1", kind.prefix()));
            assert_eq!(Kind::of(key.as_str()), Some(kind));
            assert_eq!(key.kind(), kind);
        }
        assert_eq!(
            StoreKey::new(Kind::RateLimit, "ip:10.0.0.1").as_str(),
            "rl:ip:10.0.0.1"
        );
        for foreign in ["", "rl", "cache", "portcullis", "sweep:schedule", "x:rl:1"] {
            assert_eq!(Kind::of(foreign), None, "{foreign:?}");
        }
    }

    #[test]
    fn no_prefix_is_another_kinds_prefix() {
        for a in Kind::ALL {
            for b in Kind::ALL {
                assert!(a == b || !a.prefix().starts_with(b.prefix()), "{a:?} {b:?}");
            }
        }
    }
}
