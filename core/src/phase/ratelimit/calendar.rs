//! Quotas over calendar periods in UTC: a count of what was admitted in the current day or month,
//! which starts again from nothing at the first millisecond of the next. Unix time has no leap
//! seconds, so a UTC day is always 86,400,000 ms from midnight; a month's bounds come from the
//! civil calendar (proleptic Gregorian).

use super::{Quota, Verdict};
use crate::config::raw::CalendarPeriod;
use crate::host::UnixMillis;

const DAY_MS: u64 = 86_400_000;

/// The state of one key: which period it counts (days or months since 1970) and what was
/// admitted in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub(super) period: CalendarPeriod,
    pub(super) index: u64,
    pub(super) used: u64,
}

impl Count {
    /// The stored form: `"c:day:index:used"` or `"c:month:index:used"`.
    pub fn encode(&self) -> String {
        let period = match self.period {
            CalendarPeriod::Day => "day",
            CalendarPeriod::Month => "month",
        };
        format!("c:{period}:{}:{}", self.index, self.used)
    }

    /// Reads the stored form (the text after `"c:"`); `None` for anything malformed.
    pub(super) fn decode(fields: &str) -> Option<Count> {
        let mut it = fields.split(':');
        let period = match it.next()? {
            "day" => CalendarPeriod::Day,
            "month" => CalendarPeriod::Month,
            _ => return None,
        };
        let mut next = || it.next()?.parse::<u64>().ok();
        let c = Count {
            period,
            index: next()?,
            used: next()?,
        };
        it.next().is_none().then_some(c)
    }

    /// The end of its period, when the count no longer matters.
    pub fn expires_at_ms(&self) -> u64 {
        bounds(self.period, self.index).1
    }

    /// This state with a request of `cost`, admitted when the state became `charged`, given
    /// back, while its period still counts.
    pub(super) fn refund(self, charged: Count, cost: u32) -> Option<Count> {
        (self.period == charged.period && self.index == charged.index).then(|| Count {
            used: self.used.saturating_sub(u64::from(cost)),
            ..self
        })
    }
}

/// The index of the period `now` falls in: days, or months, since 1970-01-01.
pub fn index(period: CalendarPeriod, now: UnixMillis) -> u64 {
    let days = now / DAY_MS;
    match period {
        CalendarPeriod::Day => days,
        CalendarPeriod::Month => {
            let (year, month, _) = civil_from_days(days);
            (year - 1970) * 12 + (month - 1)
        }
    }
}

/// Where period `index` starts and ends (ms since the epoch; the end is the next one's start).
pub fn bounds(period: CalendarPeriod, index: u64) -> (UnixMillis, UnixMillis) {
    match period {
        CalendarPeriod::Day => (
            index.saturating_mul(DAY_MS),
            index.saturating_add(1).saturating_mul(DAY_MS),
        ),
        CalendarPeriod::Month => {
            let start = |i: u64| days_from_civil(1970 + i / 12, i % 12 + 1).saturating_mul(DAY_MS);
            (start(index), start(index.saturating_add(1)))
        }
    }
}

/// Year, month (1–12) and day of the civil date `days` after 1970-01-01 (H. Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z - era * 146_097; // day of the 400-year era
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
    let mp = (5 * doy + 2) / 153; // month, March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Days from 1970-01-01 to the first of `month` (1–12) in `year` (≥ 1970; H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: u64, month: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5; // the first of the month
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

/// Applies one request of `cost` at `now` to `state` (a state of an earlier period, or of the
/// other calendar period, counts as none). A refusal changes nothing.
pub(super) fn admit(
    quota: &Quota,
    period: CalendarPeriod,
    state: Option<Count>,
    now: UnixMillis,
    cost: u32,
) -> (Verdict, Count) {
    let index = index(period, now);
    let s = match state {
        // a later period (a clock that went back) keeps its count: it only refuses sooner
        Some(s) if s.period == period && s.index >= index => s,
        _ => Count {
            period,
            index,
            used: 0,
        },
    };
    let until_end = bounds(period, s.index).1.saturating_sub(now);
    let reset_s = until_end.div_ceil(1000);
    let cost = u64::from(cost.max(1));
    if s.used.saturating_add(cost) <= quota.limit {
        let next = Count {
            used: s.used + cost,
            ..s
        };
        let verdict = Verdict {
            allowed: true,
            remaining: quota.limit - next.used,
            reset_s,
            retry_after_s: 0,
        };
        return (verdict, next);
    }
    let verdict = Verdict {
        allowed: false,
        remaining: quota.limit.saturating_sub(s.used),
        reset_s,
        // the next period starts from nothing (a cost above the limit never passes)
        retry_after_s: reset_s.max(1),
    };
    (verdict, s)
}

#[cfg(test)]
mod tests {
    use super::super::{admit, refund, tests::quota, LimitState};
    use super::*;
    use chrono::{DateTime, Datelike, TimeZone, Utc};
    use proptest::prelude::*;

    fn calendar(limit: u64, period: CalendarPeriod) -> Quota {
        Quota {
            calendar: Some(period),
            ..quota(limit, 86_400, limit)
        }
    }

    fn ms(y: i32, m: u32, d: u32, h: u32) -> u64 {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0)
            .unwrap()
            .timestamp_millis() as u64
    }

    #[test]
    fn a_month_is_counted_from_its_first_millisecond_to_the_next_months() {
        let q = calendar(3, CalendarPeriod::Month);
        let feb_end = ms(2028, 3, 1, 0) - 1; // a leap year: 29 days
        let (v, s) = admit(&q, None, feb_end - 1, 3);
        assert_eq!((v.allowed, v.remaining, v.reset_s), (true, 0, 1));
        let (v, same) = admit(&q, Some(s), feb_end, 1);
        assert_eq!((v.allowed, v.retry_after_s), (false, 1));
        assert_eq!(same, s);
        // March: a new count, resetting at April's first millisecond
        let (v, s) = admit(&q, Some(s), feb_end + 1, 1);
        assert_eq!((v.allowed, v.remaining), (true, 2));
        assert_eq!(v.reset_s, (ms(2028, 4, 1, 0) - (feb_end + 1)) / 1000);
        assert_eq!(s.encode(), format!("c:month:{}:1", (2028 - 1970) * 12 + 2));
        assert_eq!(s.expires_at_ms(), ms(2028, 4, 1, 0));
    }

    #[test]
    fn a_day_is_counted_from_midnight_utc_and_the_stored_form_round_trips() {
        let q = calendar(2, CalendarPeriod::Day);
        let (_, s) = admit(&q, None, ms(2026, 12, 3, 23), 2);
        assert!(!admit(&q, Some(s), ms(2026, 12, 4, 0) - 1, 1).0.allowed);
        let (v, _) = admit(&q, Some(s), ms(2026, 12, 4, 0), 2);
        assert_eq!((v.allowed, v.remaining, v.reset_s), (true, 0, 86_400));
        let text = s.encode();
        assert_eq!(LimitState::decode(&text), Some(s));
        for bad in ["c:", "c:week:1:1", "c:day:1", "c:day:1:1:1", "c:day:x:1"] {
            assert_eq!(LimitState::decode(bad), None, "{bad}");
        }
        // a refund gives the units back within the day, and not once it is over
        let (_, charged) = admit(&q, None, ms(2026, 12, 5, 1), 2);
        let back = refund(&q, Some(charged), 2, charged).unwrap();
        assert!(admit(&q, Some(back), ms(2026, 12, 5, 2), 2).0.allowed);
        let (_, next_day) = admit(&q, Some(charged), ms(2026, 12, 6, 1), 1);
        assert_eq!(refund(&q, Some(next_day), 2, charged), None);
    }

    proptest! {
        /// The month of any instant is chrono's, and its bounds are the first millisecond of
        /// that month and of the next.
        #[test]
        fn months_match_chrono(now in 0u64..8_000_000_000_000) {
            let t: DateTime<Utc> = Utc.timestamp_millis_opt(now as i64).unwrap();
            let i = index(CalendarPeriod::Month, now);
            prop_assert_eq!(i, (t.year() as u64 - 1970) * 12 + u64::from(t.month0()));
            let (start, end) = bounds(CalendarPeriod::Month, i);
            prop_assert_eq!(start, ms(t.year(), t.month(), 1, 0));
            let (ny, nm) = if t.month() == 12 { (t.year() + 1, 1) } else { (t.year(), t.month() + 1) };
            prop_assert_eq!(end, ms(ny, nm, 1, 0));
        }

        /// Never more than `limit` units in one calendar period, whatever the costs; a refusal
        /// charges nothing; and the first request of a new period passes whatever came before.
        #[test]
        fn a_quota_resets_exactly_at_the_calendar_boundary(
            limit in 1u64..20, monthly: bool, start in 0u64..4_000_000_000_000,
            requests in proptest::collection::vec((0u64..20_000_000_000, 1u32..4), 1..200),
        ) {
            let period = if monthly { CalendarPeriod::Month } else { CalendarPeriod::Day };
            let q = calendar(limit, period);
            let (mut t, mut state) = (start, None);
            let mut used: std::collections::HashMap<u64, u64> = Default::default();
            for (gap, cost) in requests {
                // most requests close together, some far apart
                t += if gap % 4 == 0 { gap } else { gap % 3_600_000 };
                let i = index(period, t);
                let fresh = state.is_none_or(|s| match s {
                    LimitState::Count(c) => c.index < i,
                    _ => true,
                });
                let (verdict, next) = admit(&q, state, t, cost);
                if fresh && u64::from(cost) <= limit {
                    prop_assert!(verdict.allowed, "the first request of a period passes");
                }
                if verdict.allowed {
                    *used.entry(i).or_default() += u64::from(cost);
                } else {
                    let unchanged = match fresh {
                        true => LimitState::Count(Count { period, index: i, used: 0 }),
                        false => state.unwrap(),
                    };
                    prop_assert_eq!(next, unchanged);
                    prop_assert_eq!(verdict.retry_after_s, (bounds(period, i).1 - t).div_ceil(1000).max(1));
                }
                state = Some(next);
            }
            for (i, units) in used {
                prop_assert!(units <= limit, "{} units in period {}", units, i);
            }
        }
    }
}
