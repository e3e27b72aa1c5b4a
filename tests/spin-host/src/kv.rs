//! `spin:key-value@3.0.0` over one in-memory map shared by all instances. Only the labels the
//! manifest grants (`key_value_stores`) open; any other is `access-denied`, as under Spin.
//!
//! Each opened store is a write-behind cache over the map, as Spin's (`CachingStore` in
//! spin-factor-key-value): a write lands in the handle's cache at once and in the map later, on
//! a thread of its own, in the order written; a read is answered from
//! the handle's cache when it holds the key (never refreshed from the map), else from the map
//! after the handle's writes have landed. So another instance does not see a write the moment
//! it returns, as under Spin, where a test host that wrote at once hid a lost admission.

wasmtime::component::bindgen!({
    path: "wit/key-value.wit",
    world: "spin:key-value/kvworld",
});

use spin::key_value::key_value::{Error, Host, HostStore, HostStoreWithStore, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::component::{Accessor, HasData, Linker, Resource};

/// The data behind every store label, shared by every instance.
pub type Shared = Arc<Mutex<HashMap<String, HashMap<String, Vec<u8>>>>>;

/// One opened store: its label, what this handle has read or written, its writes on their way
/// to the map (each waits for the one before it), and how long each waits first.
pub struct Opened {
    label: String,
    cache: HashMap<String, Option<Vec<u8>>>,
    pending: Option<JoinHandle<()>>,
    delay: Duration,
}

impl Opened {
    /// A handle whose writes start for the map at once (Spin spawns a task for each: it runs
    /// soon on an idle host, later on a busy one).
    pub fn new(label: String) -> Opened {
        Opened::with_delay(label, Duration::ZERO)
    }

    /// A handle whose writes wait `delay` before they start for the map.
    pub fn with_delay(label: String, delay: Duration) -> Opened {
        Opened {
            label,
            cache: HashMap::new(),
            pending: None,
            delay,
        }
    }

    /// Waits until this handle's writes have reached the map.
    pub fn flush(&mut self) {
        if let Some(pending) = self.pending.take() {
            let _ = pending.join();
        }
    }

    /// Runs `f` on the map, after this handle's writes have reached it.
    pub fn on_map<R>(
        &mut self,
        data: &Shared,
        f: impl FnOnce(&mut HashMap<String, Vec<u8>>) -> R,
    ) -> Result<R, String> {
        self.flush();
        let mut data = data.lock().map_err(|_| "poisoned".to_string())?;
        Ok(f(data.entry(self.label.clone()).or_default()))
    }

    /// A value: this handle's copy when it has one, else the map's (then copied).
    pub fn get(&mut self, data: &Shared, key: &str) -> Result<Option<Vec<u8>>, String> {
        if let Some(v) = self.cache.get(key) {
            return Ok(v.clone());
        }
        let v = self.on_map(data, |map| map.get(key).cloned())?;
        self.cache.insert(key.to_string(), v.clone());
        Ok(v)
    }

    /// Remembers what the map holds for `key` now (a compare-and-swap read or write).
    pub fn saw(&mut self, key: &str, value: Option<Vec<u8>>) {
        self.cache.insert(key.to_string(), value);
    }

    /// Sets (`Some`) or deletes (`None`) `key`: in this handle's cache now, in the map later.
    pub fn write(&mut self, data: &Shared, key: String, value: Option<Vec<u8>>) {
        self.cache.insert(key.clone(), value.clone());
        let (before, data, label) = (self.pending.take(), data.clone(), self.label.clone());
        let delay = self.delay;
        self.pending = Some(std::thread::spawn(move || {
            if let Some(before) = before {
                let _ = before.join();
            }
            std::thread::sleep(delay);
            if let Ok(mut data) = data.lock() {
                let map = data.entry(label).or_default();
                match value {
                    Some(v) => map.insert(key, v),
                    None => map.remove(&key),
                };
            }
        }));
    }
}

/// One instance's view: the labels it may open, and the open stores (by resource rep).
pub struct State {
    granted: Vec<String>,
    open: Vec<Opened>,
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

/// Runs `f` on the handle behind an open store and the shared map.
fn with_opened<R>(
    accessor: &Accessor<super::Ctx, Kv>,
    store: &Resource<Store>,
    f: impl FnOnce(&mut Opened, &Shared) -> Result<R, String>,
) -> Result<R, Error> {
    accessor.with(|mut access| {
        let state = access.get();
        let data = state.data.clone();
        let opened = (state.open)
            .get_mut(store.rep() as usize)
            .ok_or_else(|| Error::Other("unknown store handle".into()))?;
        f(opened, &data).map_err(Error::Other)
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
            state.open.push(Opened::new(label));
            Ok(Resource::new_own((state.open.len() - 1) as u32))
        })
    }

    async fn get(
        accessor: &Accessor<super::Ctx, Self>,
        store: Resource<Store>,
        key: String,
    ) -> Result<Option<Vec<u8>>, Error> {
        with_opened(accessor, &store, |opened, data| opened.get(data, &key))
    }

    async fn set(
        accessor: &Accessor<super::Ctx, Self>,
        store: Resource<Store>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), Error> {
        with_opened(accessor, &store, |opened, data| {
            opened.write(data, key, Some(value));
            Ok(())
        })
    }

    async fn delete(
        accessor: &Accessor<super::Ctx, Self>,
        store: Resource<Store>,
        key: String,
    ) -> Result<(), Error> {
        with_opened(accessor, &store, |opened, data| {
            opened.write(data, key, None);
            Ok(())
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
