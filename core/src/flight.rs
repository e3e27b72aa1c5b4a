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
use std::rc::Rc;

/// Whether a call is under way.
#[derive(Default)]
pub(crate) struct Flight {
    current: RefCell<Option<Rc<Cell<bool>>>>,
}

/// The leader's turn: over when dropped.
pub(crate) struct Lead(Rc<Cell<bool>>);

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
        Lead(over)
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

impl Landing {
    /// Whether the leader's turn is over.
    pub(crate) fn is_over(&self) -> bool {
        self.0.get()
    }

    /// Waits until the leader's turn is over, looking every `every_ms`, for at most about
    /// `at_most_ms`; whether it ended.
    pub(crate) async fn wait<H: Host>(&self, host: &H, every_ms: u32, at_most_ms: u32) -> bool {
        let mut waited = 0;
        while !self.is_over() && waited < at_most_ms {
            host.sleep(every_ms).await;
            waited += every_ms;
        }
        self.is_over()
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
}
