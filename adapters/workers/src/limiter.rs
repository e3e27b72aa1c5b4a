//! The rate-limit counter: one Durable Object per limit key.
//!
//! The worker calls `admit(<AdmitRequest>)` of the object named after the key (JavaScript RPC,
//! [`RateLimiter::admit_rpc`]); the object applies the core's pure admission, GCRA or sliding
//! window ([`AdmitRequest::apply`]), to its state, which it keeps in memory after the first read. A Durable Object handles one
//! event at a time and its storage calls hold back other events (input gates), and after that
//! first read an admission does not wait on anything between reading the state and replacing
//! it, so "read, decide, update" is atomic per key: counts are exact however many isolates send
//! requests.
//!
//! Writes are never waited for (`allowUnconfirmed`: the output gate would hold the answer until
//! the write is confirmed durable), and a busy key's are coalesced: a change is written at once
//! when the object has not written in the last [`WRITE_BEHIND_MS`], and otherwise by an alarm when
//! that time is up, one write for all the admissions in between. A key that sees a request now
//! and then costs a write per change, a busy one a write a second instead of one per request,
//! and its requests do not wait behind a storage commit each (on this machine's disk that commit
//! was most of a request's time in the object). What it trades: if storage loses a write, or the
//! object is reset before its alarm runs (its machine fails, a deploy), the admissions since its
//! last durable write (at most about a second's) are forgotten and may be admitted again.
//!
//! Its answer is [`Verdict::encode`]; a refusal also carries the object's state, which the worker
//! keeps to refuse the key's next requests itself while that state refuses them. Once the state
//! has expired the alarm deletes it. `fetch` answers only the object's stored state and counts
//! (for tests and operators).

use portcullis_core::phase::ratelimit::{AdmitRequest, LimitState, Verdict};
use std::cell::{Cell, RefCell};
use worker::js_sys::{Function, Object, Promise, Reflect};
use worker::wasm_bindgen::{JsCast, JsValue};
use worker::wasm_bindgen_futures::JsFuture;
use worker::{durable_object, Date, DurableObject, Env, Request, Response, Result, State};

/// Storage key of the state inside the object (either algorithm's; the name is from when GCRA
/// was the only one, and stays so that stored states are found).
const STATE: &str = "gcra";

/// The shortest time between two writes of a key's state (see the module's notes).
pub const WRITE_BEHIND_MS: u64 = 1000;

#[durable_object]
pub struct RateLimiter {
    state: State,
    /// `None` until the stored state has been read once.
    memo: RefCell<Option<Option<LimitState>>>,
    /// Whether `memo` holds a change not yet written.
    dirty: Cell<bool>,
    /// Whether storage holds a state (so that there is something to delete).
    stored: Cell<bool>,
    /// When the object last wrote its state (ms since the epoch), if it has since it started.
    written_at: Cell<Option<u64>>,
    /// When the alarm is set for (ms since the epoch), if it is (read from storage with the state).
    alarm_at: Cell<Option<u64>>,
    /// Admit requests answered since the object started (`/calls`, for tests and operators).
    calls: Cell<u64>,
    /// States written since the object started (`/writes`, likewise).
    writes: Cell<u64>,
}

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        RateLimiter {
            state,
            memo: RefCell::new(None),
            dirty: Cell::new(false),
            stored: Cell::new(false),
            written_at: Cell::new(None),
            alarm_at: Cell::new(None),
            calls: Cell::new(0),
            writes: Cell::new(0),
        }
    }

    /// `/` answers the stored state as it is in storage (empty when there is none), `/calls`
    /// how many admissions the object has answered and `/writes` how many times it has written
    /// its state since it started, for tests and operators.
    async fn fetch(&self, req: Request) -> Result<Response> {
        let path = req.path();
        let path = path.trim_start_matches('/');
        match path {
            "" => {
                return Response::ok(self.stored_state().await?.unwrap_or_default());
            }
            "calls" => return Response::ok(self.calls.get().to_string()),
            "writes" => return Response::ok(self.writes.get().to_string()),
            _ => {}
        }
        Response::error(
            format!("unknown path {path:?}: admissions are the admit method"),
            404,
        )
    }

    /// Writes a change not yet written if the state is still live, then sets the alarm for when
    /// it expires; once it has expired (an expired state means the same as none) deletes what is
    /// stored, so keys seen once (a client address, say) do not keep storage.
    async fn alarm(&self) -> Result<Response> {
        let current = self.current().await?;
        // this alarm has run (read after `current`, which may have read it from storage)
        self.alarm_at.set(None);
        let now = Date::now().as_millis();
        match current {
            Some(state) if state.expires_at_ms() > now => {
                if self.dirty.get() {
                    self.write(state, now, false).await?;
                }
                if self.dirty.get() {
                    self.set_alarm(now.saturating_add(WRITE_BEHIND_MS), false)
                        .await?;
                } else {
                    self.set_alarm(cleanup_at(state), false).await?;
                }
            }
            _ => {
                if self.stored.get() {
                    self.state.storage().delete_all().await?;
                    self.stored.set(false);
                }
                *self.memo.borrow_mut() = Some(None);
                self.dirty.set(false);
            }
        }
        Response::ok("")
    }
}

/// A storage write's options: `allowUnconfirmed` when `unconfirmed`, so that the answer to the
/// request being handled leaves without waiting for the write to be confirmed durable.
fn write_options(unconfirmed: bool) -> Result<JsValue> {
    let options = Object::new();
    Reflect::set(&options, &"allowUnconfirmed".into(), &unconfirmed.into())?;
    Ok(options.into())
}

/// Waits for a storage call's promise; what it resolves to.
async fn settle(pending: JsValue) -> Result<JsValue> {
    Ok(JsFuture::from(pending.dyn_into::<Promise>()?).await?)
}

/// When the clean-up alarm for `state` runs: a second after it expires, so it surely has then.
fn cleanup_at(state: LimitState) -> u64 {
    state.expires_at_ms().saturating_add(1000)
}

#[worker::wasm_bindgen::prelude::wasm_bindgen(
    wasm_bindgen = ::worker::wasm_bindgen,
    wasm_bindgen_futures = ::worker::wasm_bindgen_futures,
    js_sys = ::worker::js_sys
)]
impl RateLimiter {
    /// The admission as a JavaScript RPC method of the object (`stub.admit(request)`; the class
    /// in `shim.mjs` passes it on): `request` is an [`AdmitRequest::encode`], the answer the
    /// verdict ([`Verdict::encode`]), a newline and the state ([`LimitState::encode`]): the one
    /// an admission left (a refund names it), or the one that refused. No `Request` or
    /// `Response` is made on either side, as `fetch` needs.
    #[wasm_bindgen(js_name = admit)]
    pub async fn admit_rpc(&self, request: String) -> std::result::Result<String, JsValue> {
        let Some(admit) = AdmitRequest::decode(&request) else {
            return Err(JsValue::from_str(&format!(
                "malformed admit request {request:?}"
            )));
        };
        let (verdict, state) = self.admit(admit).await.map_err(JsValue::from)?;
        Ok(format!("{}\n{}", verdict.encode(), state.encode()))
    }

    /// Gives back an admitted request (its route's other limit refused it), by JavaScript RPC
    /// (`stub.refund(request)`): `request` is the admission's [`AdmitRequest::encode`], a
    /// newline and the state the admission answered. The answer is empty.
    #[wasm_bindgen(js_name = refund)]
    pub async fn refund_rpc(&self, request: String) -> std::result::Result<String, JsValue> {
        let parsed = request.split_once('\n').and_then(|(admit, charged)| {
            Some((AdmitRequest::decode(admit)?, LimitState::decode(charged)?))
        });
        let Some((admit, charged)) = parsed else {
            return Err(JsValue::from_str(&format!(
                "malformed refund request {request:?}"
            )));
        };
        let current = self.current().await.map_err(JsValue::from)?;
        if let Some(back) = admit.refund(current, charged) {
            let now = Date::now().as_millis();
            self.keep(current, back, now).await.map_err(JsValue::from)?;
        }
        Ok(String::new())
    }
}

impl RateLimiter {
    /// One admission: the core's algorithm applied to the key's state, the new state kept (and
    /// written, see the module's notes). A refusal changes nothing. The state comes back.
    async fn admit(&self, admit: AdmitRequest) -> Result<(Verdict, LimitState)> {
        self.calls.set(self.calls.get() + 1);
        let current = self.current().await?;
        let now = Date::now().as_millis();
        let (verdict, next): (Verdict, LimitState) = admit.apply(current, now);
        if verdict.allowed {
            self.keep(current, next, now).await?;
        }
        Ok((verdict, next))
    }

    /// Replaces the state `current` by `next` in memory, and writes it now or soon (see the
    /// module's notes).
    async fn keep(&self, current: Option<LimitState>, next: LimitState, now: u64) -> Result<()> {
        *self.memo.borrow_mut() = Some(Some(next));
        if current != Some(next) {
            self.dirty.set(true);
            let next_write = self
                .written_at
                .get()
                .map(|at| at.saturating_add(WRITE_BEHIND_MS));
            match next_write {
                // written less than WRITE_BEHIND_MS ago: the alarm writes it when that is up
                Some(due) if due > now => {
                    if self.alarm_at.get().is_none_or(|at| at > due) {
                        self.set_alarm(due, true).await?;
                    }
                }
                _ => {
                    self.write(next, now, true).await?;
                    if self.alarm_at.get().is_none() {
                        self.set_alarm(cleanup_at(next), true).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes `state`, read from memory at `now`.
    async fn write(&self, state: LimitState, now: u64, unconfirmed: bool) -> Result<()> {
        let (storage, put) = self.storage_method("put")?;
        let value = JsValue::from(state.encode());
        let options = write_options(unconfirmed)?;
        settle(put.call3(&storage, &STATE.into(), &value, &options)?).await?;
        self.stored.set(true);
        self.written_at.set(Some(now));
        self.writes.set(self.writes.get() + 1);
        // an admission cannot run during the write (input gate), but should one ever, its change
        // is still unwritten
        self.dirty.set(*self.memo.borrow() != Some(Some(state)));
        Ok(())
    }

    /// Sets the alarm for `at_ms` (ms since the epoch).
    async fn set_alarm(&self, at_ms: u64, unconfirmed: bool) -> Result<()> {
        let (storage, set) = self.storage_method("setAlarm")?;
        let at = JsValue::from_f64(at_ms as f64);
        settle(set.call2(&storage, &at, &write_options(unconfirmed)?)?).await?;
        self.alarm_at.set(Some(at_ms));
        Ok(())
    }

    /// The storage object and its method `name`, to call with options the `worker` crate's
    /// wrappers do not take.
    fn storage_method(&self, name: &str) -> Result<(JsValue, Function)> {
        let storage = self.state.storage();
        let storage: JsValue = AsRef::<JsValue>::as_ref(storage.as_raw()).clone();
        let method = Reflect::get(&storage, &name.into())?.dyn_into()?;
        Ok((storage, method))
    }

    /// The state as storage holds it ([`LimitState::encode`]), if it does.
    async fn stored_state(&self) -> Result<Option<String>> {
        let (storage, get) = self.storage_method("get")?;
        Ok(settle(get.call1(&storage, &STATE.into())?)
            .await?
            .as_string())
    }

    /// The state: from memory, or read once from storage (with when the alarm is set).
    async fn current(&self) -> Result<Option<LimitState>> {
        if let Some(state) = *self.memo.borrow() {
            return Ok(state);
        }
        let stored = self.stored_state().await?;
        let alarm = self.state.storage().get_alarm().await?;
        self.alarm_at
            .set(alarm.map(|at| u64::try_from(at).unwrap_or(0)));
        self.stored.set(stored.is_some());
        let state = stored.as_deref().and_then(LimitState::decode);
        *self.memo.borrow_mut() = Some(state);
        Ok(state)
    }
}
