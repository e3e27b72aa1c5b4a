//! `spin:key-value@3.0.0` over one in-memory map shared by all instances. Only the labels the
//! manifest grants (`key_value_stores`) open; any other is `access-denied`, as under Spin.

wasmtime::component::bindgen!({
    path: "wit/key-value.wit",
    world: "spin:key-value/kvworld",
});

use spin::key_value::key_value::{Error, Host, HostStore, HostStoreWithStore, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wasmtime::component::{Accessor, HasData, Linker, Resource};

/// The data behind every store label, shared by every instance.
pub type Shared = Arc<Mutex<HashMap<String, HashMap<String, Vec<u8>>>>>;

/// One instance's view: the labels it may open, and the open stores (by resource rep).
pub struct State {
    granted: Vec<String>,
    open: Vec<String>,
    data: Shared,
}

impl State {
    pub fn new(granted: Vec<String>, data: Shared) -> State {
        State {
            granted,
            open: Vec::new(),
            data,
        }
    }
}

impl State {
    /// Whether the manifest grants the store `label`.
    pub fn grants(&self, label: &str) -> bool {
        self.granted.iter().any(|g| g == label)
    }

    /// The data of every store.
    pub fn data(&self) -> &Shared {
        &self.data
    }
}

struct Kv;

impl HasData for Kv {
    type Data<'a> = &'a mut State;
}

impl HostStore for State {
    fn drop(&mut self, _rep: Resource<Store>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl Host for State {}

/// Runs `f` on the map behind an open store handle.
fn with_map<R>(
    accessor: &Accessor<super::Ctx, Kv>,
    store: &Resource<Store>,
    f: impl FnOnce(&mut HashMap<String, Vec<u8>>) -> R,
) -> Result<R, Error> {
    accessor.with(|mut access| {
        let state = access.get();
        let label = state
            .open
            .get(store.rep() as usize)
            .cloned()
            .ok_or_else(|| Error::Other("unknown store handle".into()))?;
        let mut data = state
            .data
            .lock()
            .map_err(|_| Error::Other("poisoned".into()))?;
        Ok(f(data.entry(label).or_default()))
    })
}

impl HostStoreWithStore<super::Ctx> for Kv {
    async fn open(
        accessor: &Accessor<super::Ctx, Self>,
        label: String,
    ) -> Result<Resource<Store>, Error> {
        accessor.with(|mut access| {
            let state = access.get();
            if !state.grants(&label) {
                return Err(Error::AccessDenied);
            }
            state.open.push(label);
            Ok(Resource::new_own((state.open.len() - 1) as u32))
        })
    }

    async fn get(
        accessor: &Accessor<super::Ctx, Self>,
        store: Resource<Store>,
        key: String,
    ) -> Result<Option<Vec<u8>>, Error> {
        with_map(accessor, &store, |map| map.get(&key).cloned())
    }

    async fn set(
        accessor: &Accessor<super::Ctx, Self>,
        store: Resource<Store>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Error> {
        with_map(accessor, &store, |map| {
            map.insert(key, value);
        })
    }

    async fn delete(
        accessor: &Accessor<super::Ctx, Self>,
        store: Resource<Store>,
        key: String,
    ) -> Result<(), Error> {
        with_map(accessor, &store, |map| {
            map.remove(&key);
        })
    }

    async fn exists(
        accessor: &Accessor<super::Ctx, Self>,
        store: Resource<Store>,
        key: String,
    ) -> Result<bool, Error> {
        Self::get(accessor, store, key).await.map(|v| v.is_some())
    }

    async fn get_keys(
        _accessor: &Accessor<super::Ctx, Self>,
        _store: Resource<Store>,
    ) -> (
        wasmtime::component::StreamReader<String>,
        wasmtime::component::FutureReader<Result<(), Error>>,
    ) {
        // the gateway never lists keys; a host that cannot is a trap, not a wrong answer
        panic!("spin-test-host does not implement key-value get-keys")
    }
}

pub fn add_to_linker(linker: &mut Linker<super::Ctx>) -> wasmtime::Result<()> {
    spin::key_value::key_value::add_to_linker::<super::Ctx, Kv>(linker, |ctx| &mut ctx.kv)
}
