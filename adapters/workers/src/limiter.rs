//! The rate-limit counter: one Durable Object per limit key.
//!
//! The worker asks `https://limiter/<AdmitRequest>` of the object named after the key; the object
//! applies the core's pure GCRA ([`AdmitRequest::apply`]) to its state and stores the new state.
//! A Durable Object handles one event at a time and its storage calls hold back other events
//! (input gates), and the state is also kept in memory after the first read, so "read, decide,
//! write" is atomic per key: counts are exact however many isolates send requests. The write is
//! not waited for (see [`RateLimiter::store`]).
//! Its answer is [`Verdict::encode`].

use portcullis_core::phase::ratelimit::{AdmitRequest, Gcra, Verdict};
use std::cell::RefCell;
use worker::{durable_object, Date, DurableObject, Env, Request, Response, Result, State};

/// Storage key of the state inside the object.
const STATE: &str = "gcra";

#[durable_object]
pub struct RateLimiter {
    state: State,
    /// `None` until the stored state has been read once.
    memo: RefCell<Option<Option<Gcra>>>,
}

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        RateLimiter {
            state,
            memo: RefCell::new(None),
        }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let path = req.path();
        let Some(admit) = AdmitRequest::decode(path.trim_start_matches('/')) else {
            return Response::error(format!("malformed admit request {path:?}"), 400);
        };
        let memo = *self.memo.borrow();
        let current = match memo {
            Some(state) => state,
            None => {
                let stored: Option<String> = self.state.storage().get(STATE).await?;
                stored.as_deref().and_then(Gcra::decode)
            }
        };
        let (verdict, next): (Verdict, Gcra) = admit.apply(current, Date::now().as_millis());
        *self.memo.borrow_mut() = Some(Some(next));
        if current != Some(next) {
            self.store(next.encode()).await?;
        }
        Response::ok(verdict.encode())
    }
}

impl RateLimiter {
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
