//! The rate-limit counter: one Durable Object per limit key.
//!
//! The worker asks `https://limiter/<AdmitRequest>` of the object named after the key; the object
//! applies the core's pure GCRA ([`AdmitRequest::apply`]) to its state, which it keeps in memory
//! after the first read. A Durable Object handles one event at a time and its storage calls hold
//! back other events (input gates), and after that first read an admission does not wait on
//! anything between reading the state and replacing it, so "read, decide, update" is atomic per
//! key: counts are exact however many isolates send requests.
//!
//! The state is written behind the answers: an alarm writes it [`WRITE_BEHIND_MS`] after the
//! first change since the last write, one write for every admission in between. No request waits
//! for a storage commit (on this machine's disk that commit was most of a request's time in the
//! object), and a busy key costs one stored row a second instead of one per request. A state that
//! has expired by then is not written at all. What it trades: if the object is reset before its
//! alarm runs (its machine fails, a deploy), the admissions of that last second are forgotten and
//! may be admitted again.
//!
//! Its answer is [`Verdict::encode`] in the [`VERDICT_HEADER`] header, with no body: the worker
//! has it as soon as the answer's head arrives. A refusal also carries the object's state ([`STATE_HEADER`]), which the worker keeps to
//! refuse the key's next requests itself while that state refuses them. Once the state has
//! expired the alarm deletes it.

use portcullis_core::phase::ratelimit::{AdmitRequest, Gcra, Verdict};
use std::cell::{Cell, RefCell};
use worker::{
    durable_object, Date, DurableObject, Env, Request, Response, Result, ScheduledTime, State,
};

/// Storage key of the state inside the object.
const STATE: &str = "gcra";

/// How long after a change the object writes its state (see the module's notes).
pub const WRITE_BEHIND_MS: u64 = 1000;

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
    /// Whether `memo` holds a change not yet written.
    dirty: Cell<bool>,
    /// Whether storage holds a state (so that there is something to delete).
    stored: Cell<bool>,
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
            alarm_at: Cell::new(None),
            calls: Cell::new(0),
            writes: Cell::new(0),
        }
    }

    /// `/<AdmitRequest>` applies a request; `/` answers the stored state as it is in storage
    /// (empty when there is none), `/calls` how many admit requests the object has answered and
    /// `/writes` how many times it has written its state since it started, for tests and
    /// operators.
    async fn fetch(&self, req: Request) -> Result<Response> {
        let path = req.path();
        let path = path.trim_start_matches('/');
        match path {
            "" => {
                let stored: Option<String> = self.state.storage().get(STATE).await?;
                return Response::ok(stored.unwrap_or_default());
            }
            "calls" => return Response::ok(self.calls.get().to_string()),
            "writes" => return Response::ok(self.writes.get().to_string()),
            _ => {}
        }
        let Some(admit) = AdmitRequest::decode(path) else {
            return Response::error(format!("malformed admit request {path:?}"), 400);
        };
        self.calls.set(self.calls.get() + 1);
        let current = self.current().await?;
        let now = Date::now().as_millis();
        let (verdict, next): (Verdict, Gcra) = admit.apply(current, now);
        *self.memo.borrow_mut() = Some(Some(next));
        if current != Some(next) {
            self.dirty.set(true);
            let due = now.saturating_add(WRITE_BEHIND_MS);
            if self.alarm_at.get().is_none_or(|at| at > due) {
                self.set_alarm(due).await?;
            }
        }
        let headers = worker::Headers::new();
        headers.set(VERDICT_HEADER, &verdict.encode())?;
        if !verdict.allowed {
            headers.set(STATE_HEADER, &next.encode())?;
        }
        Ok(Response::empty()?.with_headers(headers))
    }

    /// Writes a changed state that is still live, then sets the alarm for when it expires; once
    /// it has expired (an expired state means the same as none) deletes what is stored, so keys
    /// seen once (a client address, say) do not keep storage.
    async fn alarm(&self) -> Result<Response> {
        let current = self.current().await?;
        // this alarm has run (read after `current`, which may have read it from storage)
        self.alarm_at.set(None);
        let now = Date::now().as_millis();
        match current {
            Some(state) if state.expires_at_ms() > now => {
                if self.dirty.get() {
                    self.state.storage().put_raw(STATE, state.encode()).await?;
                    self.stored.set(true);
                    self.writes.set(self.writes.get() + 1);
                    // an admission cannot run during the write (input gate), but should one
                    // ever, its change is still unwritten and keeps its own due time
                    self.dirty.set(*self.memo.borrow() != Some(Some(state)));
                }
                if self.dirty.get() {
                    self.set_alarm(now.saturating_add(WRITE_BEHIND_MS)).await?;
                } else {
                    // one second after the expiry, so the state has surely expired then
                    self.set_alarm(state.expires_at_ms().saturating_add(1000))
                        .await?;
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

impl RateLimiter {
    /// Sets the alarm for `at_ms` (ms since the epoch).
    async fn set_alarm(&self, at_ms: u64) -> Result<()> {
        let date = worker::js_sys::Date::new(&(at_ms as f64).into());
        self.state
            .storage()
            .set_alarm(ScheduledTime::new(date))
            .await?;
        self.alarm_at.set(Some(at_ms));
        Ok(())
    }

    /// The state: from memory, or read once from storage (with when the alarm is set).
    async fn current(&self) -> Result<Option<Gcra>> {
        if let Some(state) = *self.memo.borrow() {
            return Ok(state);
        }
        let storage = self.state.storage();
        let stored: Option<String> = storage.get(STATE).await?;
        let alarm = storage.get_alarm().await?;
        self.alarm_at
            .set(alarm.map(|at| u64::try_from(at).unwrap_or(0)));
        self.stored.set(stored.is_some());
        let state = stored.as_deref().and_then(Gcra::decode);
        *self.memo.borrow_mut() = Some(state);
        Ok(state)
    }
}
