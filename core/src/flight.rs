//! One call at a time within an isolate or instance: the first caller leads and the others
//! wait until it has finished, then look again at what it left. The leader's turn ends when
//! its [`Lead`] is dropped, also when its request is cancelled mid-call.
//!
//! The others wait on timers of their own ([`Host::sleep`]), looking each time whether the turn
//! is over, rather than being woken by the leader: on Workers a task woken from another
//! request's code runs in that request's context, where its own I/O fails (the end-to-end
//! suite saw 500s). Single-threaded, like the runtimes' executors.

use crate::host::Host;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

/// How often a waiting request looks whether the call it waits for has ended.
const POLL_MS: u32 = 5;

/// Whether a call is under way.
#[derive(Default)]
pub(crate) struct Flight {
    current: RefCell<Option<Rc<Cell<bool>>>>,
}

/// Calls under way by key, one per key (the cache's misses), with when each began.
#[derive(Default)]
pub(crate) struct Flights {
    current: Current,
}

/// The calls under way by key and when they began (ms), shared with their leads (which remove
/// their key when over).
type Current = Rc<RefCell<HashMap<String, (Rc<Cell<bool>>, u64)>>>;

/// The leader's turn: over when dropped (and its key forgotten, for a keyed one).
pub(crate) struct Lead {
    over: Rc<Cell<bool>>,
    key: Option<(Current, String)>,
}

/// The turn of a call under way, to wait for.
pub(crate) struct Landing(Rc<Cell<bool>>);

impl Flight {
    /// The call under way, to wait for, if there is one.
    pub(crate) fn landing(&self) -> Option<Landing> {
        let current = self.current.borrow();
        let over = current.as_ref().filter(|over| !over.get())?;
        Some(Landing(over.clone()))
    }

    /// Starts a call: those who ask for [`Flight::landing`] until the lead is dropped wait.
    pub(crate) fn lead(&self) -> Lead {
        let over = Rc::new(Cell::new(false));
        *self.current.borrow_mut() = Some(over.clone());
        Lead { over, key: None }
    }
}

impl Flights {
    /// The call under way for `key`, to wait for, if there is one that began less than
    /// `max_ms` before `now`: an older one is taken as lost (a lead a runtime never dropped),
    /// and the next call for the key replaces it.
    pub(crate) fn landing(&self, key: &str, now: u64, max_ms: u32) -> Option<Landing> {
        let current = self.current.borrow();
        let (over, began) = current.get(key)?;
        let lost = now.saturating_sub(*began) >= u64::from(max_ms);
        (!over.get() && !lost).then(|| Landing(over.clone()))
    }

    /// Starts a call for `key` at `now`.
    pub(crate) fn lead(&self, key: &str, now: u64) -> Lead {
        let over = Rc::new(Cell::new(false));
        (self.current.borrow_mut()).insert(key.to_string(), (over.clone(), now));
        let key = Some((self.current.clone(), key.to_string()));
        Lead { over, key }
    }

    /// How many keys have a call under way.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.current.borrow().len()
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        self.over.set(true);
        if let Some((current, key)) = self.key.take() {
            let mut current = current.borrow_mut();
            // unless a later call for the key took its place
            if current
                .get(&key)
                .is_some_and(|(o, _)| Rc::ptr_eq(o, &self.over))
            {
                current.remove(&key);
            }
        }
    }
}

impl Landing {
    /// Whether the leader's turn is over.
    pub(crate) fn is_over(&self) -> bool {
        self.0.get()
    }

    /// Waits until the leader's turn is over, looking every [`POLL_MS`], for at most about
    /// `at_most_ms`.
    pub(crate) async fn wait<H: Host>(&self, host: &H, at_most_ms: u32) {
        let mut waited = 0;
        while !self.is_over() && waited < at_most_ms {
            host.sleep(POLL_MS).await;
            waited += POLL_MS;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_is_over_when_its_lead_is_dropped_and_a_new_one_may_start() {
        let flight = Flight::default();
        assert!(flight.landing().is_none(), "nothing under way");
        let lead = flight.lead();
        let landing = flight.landing().expect("under way");
        assert!(!landing.is_over());
        drop(lead);
        assert!(landing.is_over());
        assert!(flight.landing().is_none(), "over");
        let _next = flight.lead();
        assert!(flight.landing().is_some_and(|l| !l.is_over()));
        assert!(landing.is_over(), "an earlier turn stays over");
    }

    #[test]
    fn keyed_calls_are_separate_and_forgotten_when_over() {
        let flights = Flights::default();
        let a = flights.lead("a", 0);
        assert!(flights.landing("a", 0, 100).is_some());
        assert!(flights.landing("b", 0, 100).is_none(), "another key");
        let waiting = flights.landing("a", 0, 100).unwrap();
        drop(a);
        assert!(waiting.is_over());
        assert!(flights.landing("a", 0, 100).is_none());
        assert_eq!(flights.len(), 0, "forgotten");
        // a lead replaced by a later one for its key does not forget the later one
        let first = flights.lead("k", 0);
        let second = flights.lead("k", 0);
        drop(first);
        assert!(flights.landing("k", 0, 100).is_some());
        drop(second);
        assert_eq!(flights.len(), 0);
    }

    #[test]
    fn a_call_older_than_the_wait_is_taken_as_lost() {
        let flights = Flights::default();
        let lost = flights.lead("k", 1_000);
        assert!(flights.landing("k", 1_099, 100).is_some());
        assert!(flights.landing("k", 1_100, 100).is_none(), "lost");
        let next = flights.lead("k", 1_100);
        drop(lost);
        assert!(
            flights.landing("k", 1_100, 100).is_some(),
            "the new call stays"
        );
        drop(next);
    }
}
