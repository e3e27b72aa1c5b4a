//! The sliding-window counter: periods aligned to Unix time (`now / period`), a count for the
//! current period and one for the previous, and a request admitted while
//!
//! ```text
//! previous × (period − elapsed) / period + current + cost ≤ limit
//! ```
//!
//! where `elapsed` is how far the current period has run. Both sides are multiplied by the
//! period, so the comparison is exact in integers and no rounding admits an extra request.

use super::{Quota, Verdict};
use crate::host::UnixMillis;

/// The state of one key: the index of its current period (`now / period_ms`) and the units
/// admitted in that period and the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub(super) period_ms: u64,
    pub(super) index: u64,
    pub(super) current: u64,
    pub(super) previous: u64,
}

impl Window {
    /// The stored form: `"w:period_ms:index:current:previous"`.
    pub fn encode(&self) -> String {
        format!(
            "w:{}:{}:{}:{}",
            self.period_ms, self.index, self.current, self.previous
        )
    }

    /// Reads the stored form (the text after `"w:"`); `None` for anything malformed.
    pub(super) fn decode(fields: &str) -> Option<Window> {
        let mut it = fields.split(':').map(|n| n.parse::<u64>().ok());
        let w = Window {
            period_ms: it.next()??.max(1),
            index: it.next()??,
            current: it.next()??,
            previous: it.next()??,
        };
        it.next().is_none().then_some(w)
    }

    /// Milliseconds after which the state no longer matters: the end of the period after its
    /// current one, when its current count stops being weighted.
    pub fn expires_at_ms(&self) -> u64 {
        self.index.saturating_add(2).saturating_mul(self.period_ms)
    }

    /// This state with a request of `cost`, admitted when the state became `charged`, given
    /// back: taken from the period it was counted in, while that period still counts.
    pub(super) fn refund(self, charged: Window, cost: u32) -> Option<Window> {
        let cost = u64::from(cost);
        if self.period_ms != charged.period_ms {
            return None;
        }
        match self.index.checked_sub(charged.index) {
            Some(0) => Some(Window {
                current: self.current.saturating_sub(cost),
                ..self
            }),
            Some(1) => Some(Window {
                previous: self.previous.saturating_sub(cost),
                ..self
            }),
            _ => None,
        }
    }

    /// This state seen from period `index`: its counts moved on by the periods that have
    /// passed. A state from a later period (a clock that went back) is kept as it is, counted
    /// as though at the start of its own period, which only refuses sooner.
    fn at(self, index: u64) -> Window {
        match index.checked_sub(self.index) {
            Some(0) | None => self,
            Some(1) => Window {
                index,
                current: 0,
                previous: self.current,
                ..self
            },
            Some(_) => Window {
                index,
                current: 0,
                previous: 0,
                ..self
            },
        }
    }
}

/// Applies one request of `cost` at `now` to `state` (a state kept for another period length
/// starts afresh). A refusal changes nothing: the state comes back as it was, seen from now.
pub(super) fn admit(
    quota: &Quota,
    state: Option<Window>,
    now: UnixMillis,
    cost: u32,
) -> (Verdict, Window) {
    let period = quota.period_ms.max(1);
    let fresh = Window {
        period_ms: period,
        index: now / period,
        current: 0,
        previous: 0,
    };
    let s = state
        .filter(|s| s.period_ms == period)
        .map_or(fresh, |s| s.at(fresh.index));
    // how far the current period has run; 0 for a state from a later period
    let elapsed = if s.index == fresh.index {
        u128::from(now % period)
    } else {
        0
    };
    let (w, limit, cost) = (
        u128::from(period),
        u128::from(quota.limit),
        u128::from(cost.max(1)),
    );
    let weighted_previous = u128::from(s.previous) * (w - elapsed);
    let used = |current: u64| weighted_previous + u128::from(current) * w;
    let remaining = |current: u64| ((limit * w).saturating_sub(used(current)) / w) as u64;
    let to_secs = |ms: u128| u64::try_from(ms.div_ceil(1000)).unwrap_or(u64::MAX);
    if used(s.current) + cost * w <= limit * w {
        let next = Window {
            current: s.current.saturating_add(cost as u64),
            ..s
        };
        let verdict = Verdict {
            allowed: true,
            remaining: remaining(next.current),
            reset_s: to_secs(until_clear(&next, elapsed, w)),
            retry_after_s: 0,
        };
        return (verdict, next);
    }
    let verdict = Verdict {
        allowed: false,
        remaining: remaining(s.current),
        reset_s: to_secs(until_clear(&s, elapsed, w)),
        retry_after_s: to_secs(until_admitted(&s, elapsed, w, limit, cost)).max(1),
    };
    (verdict, s)
}

/// Milliseconds until nothing `s` counts is weighted any more: the end of the next period while
/// the current one has a count, else the end of this one while the previous has.
fn until_clear(s: &Window, elapsed: u128, w: u128) -> u128 {
    if s.current > 0 {
        2 * w - elapsed
    } else if s.previous > 0 {
        w - elapsed
    } else {
        0
    }
}

/// Milliseconds until a refused request of `cost` would be admitted, if no other is meanwhile:
/// later in this period, once the previous period's weight has fallen far enough, or else in
/// the next, once this period's has (never, for a cost above the limit: two periods).
fn until_admitted(s: &Window, elapsed: u128, w: u128, limit: u128, cost: u128) -> u128 {
    // the first point of a period at which `count × (w − at) ≤ room × w`
    let first_at = |count: u128, room: u128| match count {
        0 => 0,
        _ => w.saturating_sub(room * w / count),
    };
    let current = u128::from(s.current);
    if current + cost <= limit {
        let at = first_at(u128::from(s.previous), limit - current - cost);
        return at.saturating_sub(elapsed).max(1);
    }
    match limit.checked_sub(cost) {
        Some(room) => w - elapsed + first_at(current, room),
        None => 2 * w - elapsed,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{admit, tests::quota, LimitState};
    use super::*;
    use proptest::prelude::*;

    fn sliding(limit: u64, period_s: u64) -> Quota {
        Quota {
            algorithm: crate::config::raw::LimitAlgorithm::SlidingWindow,
            ..quota(limit, period_s, limit)
        }
    }

    /// Admits requests of cost 1 at `times`, from no state; whether each passed.
    fn run(q: &Quota, times: &[u64]) -> Vec<bool> {
        let mut state = None;
        times
            .iter()
            .map(|&t| {
                let (v, s) = admit(q, state, t, 1);
                state = Some(s);
                v.allowed
            })
            .collect()
    }

    #[test]
    fn the_previous_period_counts_by_how_much_of_it_still_overlaps() {
        let q = sliding(10, 60); // 10 per minute, periods start at whole minutes
        let t0 = 1_700_000_040_000; // a whole minute
        let mut times = vec![t0 + 59_000; 10]; // 10 at the very end of one period
                                               // a quarter into the next, the previous 10 weigh 7.5: two more pass, the third waits
        times.extend([t0 + 75_000; 3]);
        // at half-way, they weigh 5: three more pass (2 + 3 in this period, 5 + 5 = 10)
        times.extend([t0 + 90_000; 4]);
        assert_eq!(
            run(&q, &times),
            [
                [true; 10].as_slice(),
                &[true, true, false],
                &[true, true, true, false]
            ]
            .concat()
        );
    }

    #[test]
    fn verdicts_say_what_is_left_when_it_clears_and_when_to_retry() {
        let q = sliding(10, 60);
        let t0 = 1_700_000_040_000;
        let (v, s) = admit(&q, None, t0 + 15_000, 4);
        // 6 left; the 4 count until the end of the next period (105 s from now)
        assert_eq!(
            v,
            Verdict {
                allowed: true,
                remaining: 6,
                reset_s: 105,
                retry_after_s: 0
            }
        );
        let (v, s) = admit(&q, Some(s), t0 + 15_000, 6);
        assert_eq!((v.allowed, v.remaining), (true, 0));
        // full: in the next period the 10 weigh 10 × (60 − e) / 60 ≤ 9 from e = 6 s, which is
        // 45 s + 6 s from now
        let (v, same) = admit(&q, Some(s), t0 + 15_000, 1);
        assert_eq!(
            v,
            Verdict {
                allowed: false,
                remaining: 0,
                reset_s: 105,
                retry_after_s: 51
            }
        );
        assert_eq!(same, s);
        assert!(!admit(&q, Some(s), t0 + 65_999, 1).0.allowed);
        assert!(admit(&q, Some(s), t0 + 66_000, 1).0.allowed);
        // the previous period's weight alone: 10 at the end of one period, a request of 3 in
        // the next waits until they weigh 7, 18 s in
        let (_, s) = admit(&q, None, t0 + 59_000, 10);
        let (v, _) = admit(&q, Some(s), t0 + 61_000, 3);
        assert_eq!((v.allowed, v.reset_s, v.retry_after_s), (false, 59, 17));
        assert!(admit(&q, Some(s), t0 + 78_000, 3).0.allowed);
        assert!(!admit(&q, Some(s), t0 + 77_999, 3).0.allowed);
    }

    #[test]
    fn a_state_from_another_period_length_or_a_later_period_is_handled_safely() {
        let q = sliding(2, 1);
        let (_, s) = admit(&q, None, 10_500, 2);
        // the policy's period changed: the count starts afresh
        assert!(admit(&sliding(2, 2), Some(s), 10_500, 2).0.allowed);
        // the clock went back into the previous period: still counted as full
        assert!(!admit(&q, Some(s), 9_999, 1).0.allowed);
        // two periods on, nothing weighs any more
        assert!(admit(&q, Some(s), 12_000, 2).0.allowed);
    }

    #[test]
    fn the_stored_form_round_trips_and_rejects_garbage() {
        let (_, s) = admit(&sliding(5, 60), None, 1_700_000_000_123, 2);
        let text = s.encode();
        assert_eq!(text, "w:60000:28333333:2:0");
        assert_eq!(LimitState::decode(&text), Some(s));
        for bad in ["w:", "w:1:2:3", "w:1:2:3:4:5", "w:a:1:1:1", "w:1:-1:1:1"] {
            assert_eq!(LimitState::decode(bad), None, "{bad}");
        }
        assert_eq!(s.expires_at_ms(), 28_333_335 * 60_000);
    }

    proptest! {
        /// Units admitted with any costs: in no aligned period more than `limit`; at each
        /// admission, the previous period's units weighted by their overlap plus this period's
        /// within `limit` (recounted from the admissions, not from the state); in any span of one
        /// period at most twice `limit`; and a refusal charges nothing.
        #[test]
        fn a_sliding_window_never_admits_more_than_its_limit(
            limit in 1u64..40, period_s in 1u64..30,
            requests in proptest::collection::vec((0u64..3_000, 1u32..5), 1..300),
        ) {
            let q = sliding(limit, period_s);
            let w = q.period_ms;
            let (mut t, mut state) = (1_700_000_000_000u64, None);
            let mut admitted: Vec<(u64, u64)> = Vec::new(); // (time, cost)
            for (gap, cost) in requests {
                t += gap;
                let (verdict, next) = admit(&q, state, t, cost);
                let in_period = |i: u64| admitted.iter().filter(|(at, _)| at / w == i).map(|(_, c)| c).sum::<u64>();
                if verdict.allowed {
                    let (previous, current) = (in_period(t / w - 1), in_period(t / w));
                    let weighted = u128::from(previous) * u128::from(w - t % w)
                        + u128::from(current + u64::from(cost)) * u128::from(w);
                    prop_assert!(weighted <= u128::from(limit) * u128::from(w));
                    admitted.push((t, u64::from(cost)));
                } else if let Some(LimitState::Window(before)) = state {
                    prop_assert_eq!(LimitState::Window(before.at(t / w)), next);
                    prop_assert!(verdict.retry_after_s >= 1);
                }
                state = Some(next);
            }
            for (start, _) in &admitted {
                let span: u64 = admitted.iter().filter(|(at, _)| at >= start && at - start < w).map(|(_, c)| c).sum();
                prop_assert!(span <= 2 * limit, "{} units in one period from {}", span, start);
                let aligned: u64 = admitted.iter().filter(|(at, _)| at / w == start / w).map(|(_, c)| c).sum();
                prop_assert!(aligned <= limit, "{} units in the period of {}", aligned, start);
            }
        }

        /// A refused request is admitted once its `Retry-After` has passed, if nothing else
        /// came meanwhile, and not a whole second before.
        #[test]
        fn retry_after_is_when_the_request_would_pass(
            limit in 1u64..40, period_s in 1u64..30, cost in 1u32..5,
            setup in proptest::collection::vec((0u64..3_000, 1u32..5), 1..100),
        ) {
            let q = sliding(limit, period_s);
            prop_assume!(u64::from(cost) <= limit);
            let (mut t, mut state) = (1_700_000_000_000u64, None);
            for (gap, c) in setup {
                t += gap;
                state = Some(admit(&q, state, t, c).1);
            }
            let (verdict, s) = admit(&q, state, t, cost);
            if !verdict.allowed {
                let wait = verdict.retry_after_s * 1000;
                prop_assert!(admit(&q, Some(s), t + wait, cost).0.allowed);
                if wait > 1000 {
                    prop_assert!(!admit(&q, Some(s), t + wait - 1000, cost).0.allowed);
                }
            }
        }
    }
}
