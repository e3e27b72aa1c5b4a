//! Typed references between the parts of a compiled config: a route names its upstream, access
//! list, rate limit, CORS policy, JWT provider and API-key set by an [`Id`] into the config's
//! [`Table`] of that kind, so an index into one table cannot be used for another.

use std::fmt;
use std::marker::PhantomData;

/// The position of a `T` in its [`Table`].
pub struct Id<T> {
    index: u32,
    of: PhantomData<fn() -> T>,
}

impl<T> Id<T> {
    /// The id of the `index`th entry (build scripts write ids as `Id::new(n)`).
    pub const fn new(index: u32) -> Id<T> {
        Id {
            index,
            of: PhantomData,
        }
    }

    /// The position, for tables kept beside the config (one JWKS cache per provider).
    pub fn index(self) -> usize {
        self.index as usize
    }
}

impl<T> Clone for Id<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Id<T> {}
impl<T> PartialEq for Id<T> {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index
    }
}
impl<T> Eq for Id<T> {}
impl<T> fmt::Debug for Id<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.index)
    }
}

/// The compiled entries of one kind, in the raw config's (name) order.
#[derive(Clone)]
pub struct Table<T> {
    items: Vec<T>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table { items: Vec::new() }
    }
}

impl<T: fmt::Debug> fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.items.fmt(f)
    }
}

impl<T> Table<T> {
    /// Adds an entry and returns its id.
    pub fn push(&mut self, item: T) -> Id<T> {
        let id = Id::new(u32::try_from(self.items.len()).unwrap_or(u32::MAX));
        self.items.push(item);
        id
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.items.iter()
    }

    /// The entries with their ids.
    pub fn entries(&self) -> impl Iterator<Item = (Id<T>, &T)> {
        (0u32..).zip(&self.items).map(|(i, t)| (Id::new(i), t))
    }
}

impl<T> std::ops::Index<Id<T>> for Table<T> {
    type Output = T;
    fn index(&self, id: Id<T>) -> &T {
        &self.items[id.index()]
    }
}

impl<'t, T> IntoIterator for &'t Table<T> {
    type Item = &'t T;
    type IntoIter = std::slice::Iter<'t, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl<T> FromIterator<T> for Table<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        Table {
            items: iter.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_finds_the_entry_it_was_given_for() {
        let mut t = Table::default();
        let a = t.push("a");
        let b = t.push("b");
        assert_eq!((t[a], t[b], b.index(), t.len()), ("a", "b", 1, 2));
        assert_eq!(
            t.entries().map(|(id, s)| (id, *s)).collect::<Vec<_>>(),
            [(a, "a"), (b, "b")]
        );
        assert_eq!(format!("{a:?}"), "#0");
    }
}
