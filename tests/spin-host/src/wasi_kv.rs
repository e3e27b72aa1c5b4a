//! `wasi:keyvalue@0.2.0-draft2` (`store` and `atomics`), which Spin serves next to
//! `spin:key-value`, over the same in-memory map: a bucket named "default" is the store labelled
//! "default". Only the labels the manifest grants open. Compare-and-swap is exact: a swap
//! succeeds only if the key still holds what its `cas` handle read, checked and written under
//! the map's lock.

wasmtime::component::bindgen!({
    path: "wit/wasi-keyvalue",
    world: "wasi:keyvalue/host",
    with: {
        "wasi:keyvalue/store.bucket": Bucket,
        "wasi:keyvalue/atomics.cas": Cas,
    },
});

use super::kv;
use std::collections::HashMap;
use wasi::keyvalue::atomics::{self, CasError};
use wasi::keyvalue::store::{self, Error, KeyResponse};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

/// An open bucket: the store label it names.
pub struct Bucket {
    label: String,
}

/// A compare-and-swap handle: the key and the value it read when it was made.
pub struct Cas {
    label: String,
    key: String,
    read: Option<Vec<u8>>,
}

/// What the interfaces see of an instance's state.
pub struct View<'a> {
    table: &'a mut ResourceTable,
    kv: &'a kv::State,
}

struct WasiKv;

impl HasData for WasiKv {
    type Data<'a> = View<'a>;
}

fn other(e: impl std::fmt::Display) -> Error {
    Error::Other(e.to_string())
}

impl View<'_> {
    /// Runs `f` on the map behind a bucket label.
    fn with_map<R>(
        &self,
        label: &str,
        f: impl FnOnce(&mut HashMap<String, Vec<u8>>) -> R,
    ) -> Result<R, Error> {
        let mut data = self.kv.data().lock().map_err(|_| other("poisoned"))?;
        Ok(f(data.entry(label.to_string()).or_default()))
    }

    fn label(&self, bucket: &Resource<Bucket>) -> Result<String, Error> {
        Ok(self.table.get(bucket).map_err(other)?.label.clone())
    }

    fn on_bucket<R>(
        &self,
        bucket: &Resource<Bucket>,
        f: impl FnOnce(&mut HashMap<String, Vec<u8>>) -> R,
    ) -> Result<R, Error> {
        let label = self.label(bucket)?;
        self.with_map(&label, f)
    }
}

impl store::Host for View<'_> {
    fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, Error> {
        if !self.kv.grants(&identifier) {
            return Err(Error::AccessDenied);
        }
        self.table.push(Bucket { label: identifier }).map_err(other)
    }
}

impl store::HostBucket for View<'_> {
    fn get(&mut self, bucket: Resource<Bucket>, key: String) -> Result<Option<Vec<u8>>, Error> {
        self.on_bucket(&bucket, |map| map.get(&key).cloned())
    }

    fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> Result<(), Error> {
        self.on_bucket(&bucket, |map| {
            map.insert(key, value);
        })
    }

    fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), Error> {
        self.on_bucket(&bucket, |map| {
            map.remove(&key);
        })
    }

    fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, Error> {
        self.on_bucket(&bucket, |map| map.contains_key(&key))
    }

    /// Every key at once, sorted (no paging: the cursor is always none).
    fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        _cursor: Option<String>,
    ) -> Result<KeyResponse, Error> {
        let mut keys = self.on_bucket(&bucket, |map| map.keys().cloned().collect::<Vec<_>>())?;
        keys.sort();
        Ok(KeyResponse { keys, cursor: None })
    }

    fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for View<'_> {
    /// Counters are kept as decimal text (the interface leaves the encoding to the host; the
    /// gateway does not use counters).
    fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> Result<i64, Error> {
        self.on_bucket(&bucket, |map| {
            let current = match map.get(&key) {
                None => 0,
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| other(format!("{key:?} does not hold a number")))?,
            };
            let next = current
                .checked_add(delta)
                .ok_or_else(|| other("increment overflows"))?;
            map.insert(key, next.to_string().into_bytes());
            Ok(next)
        })?
    }

    fn swap(&mut self, cas: Resource<Cas>, value: Vec<u8>) -> Result<(), CasError> {
        let handle = self
            .table
            .delete(cas)
            .map_err(|e| CasError::StoreError(other(e)))?;
        // as Spin 4.1's SQLite store does: a handle that read a value swaps only if the value is
        // still that one (`UPDATE … WHERE value = old`), but one that read no entry writes
        // blindly (`INSERT … ON CONFLICT DO UPDATE`), over whatever another writer put there
        let swapped = self
            .with_map(&handle.label, |map| {
                if handle.read.is_some() && map.get(&handle.key) != handle.read.as_ref() {
                    return false;
                }
                map.insert(handle.key.clone(), value);
                true
            })
            .map_err(CasError::StoreError)?;
        if swapped {
            return Ok(());
        }
        // a fresh handle on the value that won, as the interface asks
        let read = self
            .with_map(&handle.label, |map| map.get(&handle.key).cloned())
            .map_err(CasError::StoreError)?;
        let fresh = Cas { read, ..handle };
        let fresh = self
            .table
            .push(fresh)
            .map_err(|e| CasError::StoreError(other(e)))?;
        Err(CasError::CasFailed(fresh))
    }
}

impl atomics::HostCas for View<'_> {
    fn new(&mut self, bucket: Resource<Bucket>, key: String) -> Result<Resource<Cas>, Error> {
        let label = self.label(&bucket)?;
        let read = self.with_map(&label, |map| map.get(&key).cloned())?;
        self.table.push(Cas { label, key, read }).map_err(other)
    }

    fn current(&mut self, cas: Resource<Cas>) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.table.get(&cas).map_err(other)?.read.clone())
    }

    fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

pub fn add_to_linker(linker: &mut Linker<super::Ctx>) -> wasmtime::Result<()> {
    fn view(ctx: &mut super::Ctx) -> View<'_> {
        View {
            table: &mut ctx.table,
            kv: &ctx.kv,
        }
    }
    store::add_to_linker::<super::Ctx, WasiKv>(linker, view)?;
    atomics::add_to_linker::<super::Ctx, WasiKv>(linker, view)
}

#[cfg(test)]
mod tests {
    use super::*;
    use atomics::{Host as _, HostCas as _};
    use store::{Host as _, HostBucket as _};

    fn state(granted: &[&str]) -> kv::State {
        kv::State::new(
            granted.iter().map(|g| g.to_string()).collect(),
            kv::Shared::default(),
        )
    }

    #[test]
    fn swap_succeeds_only_if_the_value_is_still_what_the_handle_read() {
        let kv = state(&["default"]);
        let mut table = ResourceTable::new();
        let mut view = View {
            table: &mut table,
            kv: &kv,
        };
        let b = view.open("default".into()).unwrap();
        let bucket = || Resource::<Bucket>::new_borrow(b.rep());

        // a new key: the handle reads none, and the first swap creates it
        let cas = view.new(bucket(), "k".into()).unwrap();
        assert_eq!(view.current(Resource::new_borrow(cas.rep())).unwrap(), None);
        assert!(view.swap(cas, b"1".to_vec()).is_ok());
        assert_eq!(view.get(bucket(), "k".into()).unwrap(), Some(b"1".to_vec()));

        // someone writes between the read and the swap: the swap fails, writes nothing,
        // and hands back a handle that has read the winning value
        let cas = view.new(bucket(), "k".into()).unwrap();
        view.set(bucket(), "k".into(), b"2".to_vec()).unwrap();
        let Err(CasError::CasFailed(fresh)) = view.swap(cas, b"3".to_vec()) else {
            panic!("the swap should have failed");
        };
        assert_eq!(view.get(bucket(), "k".into()).unwrap(), Some(b"2".to_vec()));
        assert_eq!(
            view.current(Resource::new_borrow(fresh.rep())).unwrap(),
            Some(b"2".to_vec())
        );
        assert!(view.swap(fresh, b"3".to_vec()).is_ok());

        // as in Spin 4.1: a handle that read no entry writes blindly, over a value another
        // writer put there meanwhile (so two "first" writers both succeed)
        let first = view.new(bucket(), "new".into()).unwrap();
        let second = view.new(bucket(), "new".into()).unwrap();
        assert!(view.swap(first, b"a".to_vec()).is_ok());
        assert!(view.swap(second, b"b".to_vec()).is_ok());
        assert_eq!(
            view.get(bucket(), "new".into()).unwrap(),
            Some(b"b".to_vec())
        );
        assert_eq!(view.get(bucket(), "k".into()).unwrap(), Some(b"3".to_vec()));
    }

    #[test]
    fn only_granted_stores_open_and_increment_counts_in_decimal_text() {
        let kv = state(&["default"]);
        let mut table = ResourceTable::new();
        let mut view = View {
            table: &mut table,
            kv: &kv,
        };
        assert!(matches!(
            view.open("other".into()),
            Err(Error::AccessDenied)
        ));
        let b = view.open("default".into()).unwrap();
        let bucket = || Resource::<Bucket>::new_borrow(b.rep());
        assert_eq!(view.increment(bucket(), "n".into(), 5).unwrap(), 5);
        assert_eq!(view.increment(bucket(), "n".into(), -2).unwrap(), 3);
        assert_eq!(view.get(bucket(), "n".into()).unwrap(), Some(b"3".to_vec()));
        view.set(bucket(), "s".into(), b"x".to_vec()).unwrap();
        assert!(matches!(
            view.increment(bucket(), "s".into(), 1),
            Err(Error::Other(m)) if m == "\"s\" does not hold a number"
        ));
    }
}
