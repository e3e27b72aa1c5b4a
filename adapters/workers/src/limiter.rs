//! The rate-limit counter: one Durable Object per limit key.
//!
//! The worker asks `https://limiter/<AdmitRequest>` of the object named after the key; the object
//! applies the core's pure GCRA ([`AdmitRequest::apply`]) to its state and stores the new state.
//! A Durable Object handles one event at a time and its storage calls hold back other events
//! (input gates), and the state is also kept in memory after the first read, so "read, decide,
//! write" is atomic per key: counts are exact however many isolates send requests. The write is
//! not waited for (see [`RateLimiter::store`]).
//! Its answer is [`Verdict::encode`], in the [`VERDICT_HEADER`] header and in the body; the worker
//! reads the header, which it has as soon as the answer's head arrives, without waiting for the
//! body. A refusal also carries the object's state ([`STATE_HEADER`]), which the worker keeps to
//! refuse the key's next requests itself while that state refuses them. An alarm deletes the
//! state once it has expired.

use portcullis_core::phase::ratelimit::{AdmitRequest, Gcra, Verdict};
use std::cell::{Cell, RefCell};
use worker::{
    durable_object, Date, DurableObject, Env, Request, Response, Result, ScheduledTime, State,
};

/// Storage key of the state inside the object.
const STATE: &str = "gcra";

/// The response header that carries the verdict.
pub const VERDICT_HEADER: &str = "x-portcullis-verdict";

/// The response header that carries the object's state with a refusal ([`Gcra::encode`]), so
/// the worker can answer the key's next requests itself while that state still refuses them
/// ([`portcullis_core::phase::ratelimit::RefusalMemo`]).
pub const STATE_HEADER: &str = "x-portcullis-state";

#[durable_object]
pub struct RateLimiter {
    state: State,
    /// `None` until the stored state has been read once.
    memo: RefCell<Option<Option<Gcra>>>,
    /// Whether a clean-up alarm is scheduled (read from storage with the state).
    alarm_set: Cell<bool>,
    /// Admit requests answered since the object started (`/calls`, for tests and operators).
    calls: Cell<u64>,
}

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        RateLimiter {
            state,
            memo: RefCell::new(None),
            alarm_set: Cell::new(false),
            calls: Cell::new(0),
        }
    }

    /// `/<AdmitRequest>` applies a request; `/` answers the stored state as it is in storage
    /// (empty when there is none) and `/calls` how many admit requests the object has answered
    /// since it started, for tests and operators.
    async fn fetch(&self, req: Request) -> Result<Response> {
        let path = req.path();
        let path = path.trim_start_matches('/');
        if path.is_empty() {
            let stored: Option<String> = self.state.storage().get(STATE).await?;
            return Response::ok(stored.unwrap_or_default());
        }
        if path == "calls" {
            return Response::ok(self.calls.get().to_string());
        }
        let Some(admit) = AdmitRequest::decode(path) else {
            return Response::error(format!("malformed admit request {path:?}"), 400);
        };
        self.calls.set(self.calls.get() + 1);
        let current = self.current().await?;
        let (verdict, next): (Verdict, Gcra) = admit.apply(current, Date::now().as_millis());
        *self.memo.borrow_mut() = Some(Some(next));
        if current != Some(next) {
            self.store(next.encode()).await?;
            if !self.alarm_set.get() {
                self.schedule_cleanup(next.expires_at_ms()).await?;
            }
        }
        let encoded = verdict.encode();
        let headers = worker::Headers::new();
        headers.set(VERDICT_HEADER, &encoded)?;
        if !verdict.allowed {
            headers.set(STATE_HEADER, &next.encode())?;
        }
        Ok(Response::ok(encoded)?.with_headers(headers))
    }

    /// Clean-up: an expired state means the same as none, so once it has expired the object
    /// deletes its storage; keys seen once (a client address, say) do not keep storage forever.
    /// A state still live moves the alarm to its new expiry.
    async fn alarm(&self) -> Result<Response> {
        self.alarm_set.set(false);
        match self.current().await? {
            Some(state) if state.expires_at_ms() > Date::now().as_millis() => {
                self.schedule_cleanup(state.expires_at_ms()).await?;
            }
            _ => {
                self.state.storage().delete_all().await?;
                *self.memo.borrow_mut() = Some(None);
            }
        }
        Response::ok("")
    }
}

impl RateLimiter {
    /// Sets the clean-up alarm for a state expiring at `expires_at_ms`: one second after it, so
    /// the state has surely expired when the alarm runs.
    async fn schedule_cleanup(&self, expires_at_ms: u64) -> Result<()> {
        let offset = expires_at_ms
            .saturating_add(1000)
            .saturating_sub(Date::now().as_millis());
        let at = ScheduledTime::from(i64::try_from(offset).unwrap_or(i64::MAX));
        self.state.storage().set_alarm(at).await?;
        self.alarm_set.set(true);
        Ok(())
    }

    /// The state: from memory, or read once from storage (with whether an alarm is set).
    async fn current(&self) -> Result<Option<Gcra>> {
        if let Some(state) = *self.memo.borrow() {
            return Ok(state);
        }
        let storage = self.state.storage();
        let stored: Option<String> = storage.get(STATE).await?;
        self.alarm_set.set(storage.get_alarm().await?.is_some());
        let state = stored.as_deref().and_then(Gcra::decode);
        *self.memo.borrow_mut() = Some(state);
        Ok(state)
    }

    /// Writes the state with `allowUnconfirmed`: the answer leaves without waiting for the write
    /// to be confirmed durable (the output gate would hold it for that; it was most of the time a
    /// request spent in the object). Exactness does not depend on it: the object answers from
    /// `memo`, one event at a time. What it trades: if storage loses a write the runtime resets
    /// the object, and the requests admitted since the last durable write are admitted again.
    async fn store(&self, value: String) -> Result<()> {
        use worker::js_sys::{Function, Object, Promise, Reflect};
        use worker::wasm_bindgen::{JsCast, JsValue};
        use worker::wasm_bindgen_futures::JsFuture;
        let storage = self.state.storage();
        let raw: &JsValue = storage.as_raw().as_ref();
        let put: Function = Reflect::get(raw, &"put".into())?.dyn_into()?;
        let options = Object::new();
        Reflect::set(&options, &"allowUnconfirmed".into(), &JsValue::TRUE)?;
        let written: Promise = put
            .call3(raw, &STATE.into(), &value.into(), &options)?
            .dyn_into()?;
        JsFuture::from(written).await?;
        Ok(())
    }
}
