//! `wasi:keyvalue@0.2.0-draft2` (`store` and `atomics`), which Spin serves next to
//! `spin:key-value`, over the same in-memory map: a bucket named "default" is the store labelled
//! "default". Only the labels the manifest grants open. Each open bucket is a write-behind cache
//! as Spin's are ([`kv::Opened`]): `set` and `delete` reach the map later; a compare-and-swap
//! and `increment` go to the map at once, after the bucket's own writes. Compare-and-swap is
//! exact: a swap succeeds only if the key still holds what its `cas` handle read, checked and
//! written under the map's lock.

wasmtime::component::bindgen!({
    path: "wit/wasi-keyvalue",
    world: "wasi:keyvalue/host",
    with: {
        "wasi:keyvalue/store.bucket": Bucket,
        "wasi:keyvalue/atomics.cas": Cas,
    },
});

use super::kv;
use wasi::keyvalue::atomics::{self, CasError};
use wasi::keyvalue::store::{self, Error, KeyResponse};
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

/// An open bucket: the store it names, as this handle sees it.
pub struct Bucket {
    opened: kv::Opened,
}

/// A compare-and-swap handle: its bucket (by resource rep), the key and the value it read when
/// it was made.
pub struct Cas {
    bucket: u32,
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
    /// Runs `f` on the bucket's handle (by resource rep) and the shared map.
    fn on_rep<R>(
        &mut self,
        rep: u32,
        f: impl FnOnce(&mut kv::Opened, &kv::Shared) -> Result<R, String>,
    ) -> Result<R, Error> {
        let data = self.kv.data().clone();
        let bucket = (self.table)
            .get_mut(&Resource::<Bucket>::new_borrow(rep))
            .map_err(other)?;
        f(&mut bucket.opened, &data).map_err(Error::Other)
    }

    fn on_bucket<R>(
        &mut self,
        bucket: &Resource<Bucket>,
        f: impl FnOnce(&mut kv::Opened, &kv::Shared) -> Result<R, String>,
    ) -> Result<R, Error> {
        self.on_rep(bucket.rep(), f)
    }
}

impl store::Host for View<'_> {
    fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, Error> {
        if !self.kv.grants(&identifier) {
            return Err(Error::AccessDenied);
        }
        let opened = kv::Opened::new(identifier);
        self.table.push(Bucket { opened }).map_err(other)
    }
}

impl store::HostBucket for View<'_> {
    fn get(&mut self, bucket: Resource<Bucket>, key: String) -> Result<Option<Vec<u8>>, Error> {
        self.on_bucket(&bucket, |opened, data| opened.get(data, &key))
    }

    fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> Result<(), Error> {
        self.on_bucket(&bucket, |opened, data| {
            opened.write(data, key, Some(value));
            Ok(())
        })
    }

    fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), Error> {
        self.on_bucket(&bucket, |opened, data| {
            opened.write(data, key, None);
            Ok(())
        })
    }

    fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, Error> {
        self.on_bucket(&bucket, |opened, data| {
            Ok(opened.get(data, &key)?.is_some())
        })
    }

    /// Every key at once, sorted (no paging: the cursor is always none), after the bucket's
    /// writes have landed.
    fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        _cursor: Option<String>,
    ) -> Result<KeyResponse, Error> {
        let mut keys = self.on_bucket(&bucket, |opened, data| {
            opened.on_map(data, |map| map.keys().cloned().collect::<Vec<_>>())
        })?;
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
        self.on_bucket(&bucket, |opened, data| {
            let next = opened.on_map(data, |map| {
                let current = match map.get(&key) {
                    None => 0,
                    Some(v) => std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .ok_or_else(|| format!("{key:?} does not hold a number"))?,
                };
                let next = current
                    .checked_add(delta)
                    .ok_or_else(|| "increment overflows".to_string())?;
                map.insert(key.clone(), next.to_string().into_bytes());
                Ok::<i64, String>(next)
            })??;
            opened.saw(&key, Some(next.to_string().into_bytes()));
            Ok(next)
        })
    }

    fn swap(&mut self, cas: Resource<Cas>, value: Vec<u8>) -> Result<(), CasError> {
        let handle = self
            .table
            .delete(cas)
            .map_err(|e| CasError::StoreError(other(e)))?;
        // as Spin 4.1's SQLite store does: a handle that read a value swaps only if the value is
        // still that one (`UPDATE … WHERE value = old`), but one that read no entry writes
        // blindly (`INSERT … ON CONFLICT DO UPDATE`), over whatever another writer put there
        let (read, key) = (handle.read.clone(), handle.key.clone());
        let swapped = self
            .on_rep(handle.bucket, |opened, data| {
                let done = opened.on_map(data, |map| {
                    if read.is_some() && map.get(&key) != read.as_ref() {
                        return false;
                    }
                    map.insert(key.clone(), value.clone());
                    true
                })?;
                if done {
                    opened.saw(&key, Some(value));
                }
                Ok(done)
            })
            .map_err(CasError::StoreError)?;
        if swapped {
            return Ok(());
        }
        // a fresh handle on the value that won, as the interface asks
        let read = self
            .on_rep(handle.bucket, |opened, data| {
                let now = opened.on_map(data, |map| map.get(&handle.key).cloned())?;
                opened.saw(&handle.key, now.clone());
                Ok(now)
            })
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
        let read = self.on_bucket(&bucket, |opened, data| {
            let now = opened.on_map(data, |map| map.get(&key).cloned())?;
            opened.saw(&key, now.clone());
            Ok(now)
        })?;
        let bucket = bucket.rep();
        self.table.push(Cas { bucket, key, read }).map_err(other)
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

    /// As under Spin: a bucket reads its own writes at once, another bucket sees them only once
    /// they have landed, and a value a bucket has read is not read again from the map.
    #[test]
    fn set_is_write_behind_and_each_bucket_keeps_what_it_saw() {
        let kv = state(&["default"]);
        let mut table = ResourceTable::new();
        let mut view = View {
            table: &mut table,
            kv: &kv,
        };
        let writer = view.open("default".into()).unwrap();
        let slow = kv::Opened::with_delay("default".into(), std::time::Duration::from_millis(50));
        view.table.get_mut(&writer).unwrap().opened = slow;
        let reader = view.open("default".into()).unwrap();
        let w = || Resource::<Bucket>::new_borrow(writer.rep());
        let r = || Resource::<Bucket>::new_borrow(reader.rep());
        view.set(w(), "k".into(), b"1".to_vec()).unwrap();
        assert_eq!(view.get(w(), "k".into()).unwrap(), Some(b"1".to_vec()));
        assert_eq!(view.get(r(), "k".into()).unwrap(), None, "not landed yet");
        std::thread::sleep(std::time::Duration::from_millis(200));
        // landed, but the reader keeps what it read; a new handle sees it
        assert_eq!(view.get(r(), "k".into()).unwrap(), None);
        let fresh = view.open("default".into()).unwrap();
        let f = || Resource::<Bucket>::new_borrow(fresh.rep());
        assert_eq!(view.get(f(), "k".into()).unwrap(), Some(b"1".to_vec()));
        // a compare-and-swap reads the map itself, after its bucket's own writes
        view.delete(w(), "k".into()).unwrap();
        let cas = view.new(w(), "k".into()).unwrap();
        assert_eq!(view.current(Resource::new_borrow(cas.rep())).unwrap(), None);
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
