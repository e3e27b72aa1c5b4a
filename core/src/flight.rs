//! One call at a time within an isolate or instance: the first caller leads and the others
//! wait until it has finished, then look again at what it left. The leader's turn ends when
//! its [`Lead`] is dropped, also when its request is cancelled mid-call, so no one waits on a
//! call that will never end. Single-threaded, like the runtimes' executors.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// Whether a call is under way, and who waits for it.
#[derive(Default)]
pub(crate) struct Flight {
    current: RefCell<Option<Rc<Turn>>>,
}

#[derive(Default)]
struct Turn {
    over: Cell<bool>,
    waiting: RefCell<Vec<Waker>>,
}

/// The leader's turn: over when dropped.
pub(crate) struct Lead(Rc<Turn>);

/// A wait for the leader's turn to end.
pub(crate) struct Landing(Rc<Turn>);

impl Flight {
    /// The call under way, to wait for, if there is one.
    pub(crate) fn landing(&self) -> Option<Landing> {
        let current = self.current.borrow();
        let turn = current.as_ref().filter(|t| !t.over.get())?;
        Some(Landing(turn.clone()))
    }

    /// Starts a call: those who ask for [`Flight::landing`] until the lead is dropped wait.
    pub(crate) fn lead(&self) -> Lead {
        let turn = Rc::new(Turn::default());
        *self.current.borrow_mut() = Some(turn.clone());
        Lead(turn)
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        self.0.over.set(true);
        for waker in self.0.waiting.take() {
            waker.wake();
        }
    }
}

impl Future for Landing {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.over.get() {
            return Poll::Ready(());
        }
        let mut waiting = self.0.waiting.borrow_mut();
        if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
            waiting.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn waiters_wake_once_when_the_lead_ends_and_a_new_call_may_start() {
        let flight = Flight::default();
        assert!(flight.landing().is_none(), "nothing under way");
        let lead = flight.lead();
        let mut landing = flight.landing().expect("under way");
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut landing).poll(&mut cx).is_pending());
        assert!(Pin::new(&mut landing).poll(&mut cx).is_pending());
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        drop(lead);
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken once");
        assert!(Pin::new(&mut landing).poll(&mut cx).is_ready());
        assert!(flight.landing().is_none(), "over");
        let _next = flight.lead();
        assert!(flight.landing().is_some());
    }
}
