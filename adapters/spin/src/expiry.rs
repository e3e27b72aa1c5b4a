//! Expiry in Spin's key-value store, which has none of its own. Pure, so it is tested natively;
//! `host.rs` makes the store calls.
//!
//! Every entry the gateway writes carries its expiry ([`wrap`]) and reads as absent once that
//! has passed ([`unwrap_live`]). It would still stay stored for good: every client address that
//! ever met a per-IP limit, every cached response. So now and then a request sweeps:
//!
//! - **When**: one request in [`Sweep::odds`] reads the schedule ([`SCHEDULE_KEY`]); when a sweep
//!   is due it claims the next one by compare-and-swap, so one instance sweeps per
//!   [`Sweep::interval_ms`], and that request does the work before it answers.
//! - **What**: up to [`Sweep::batch`] keys, from where the previous sweep stopped (the store's
//!   list cursor is kept in the schedule). Only the gateway's own keys (of a `portcullis_core::store::Kind`) are
//!   looked at, and only expired entries are deleted, so a sweep never changes what a read gives.
//! - **Rate-limit states**: deleting a state just as a request rewrites it would forget that
//!   request's admission. So the sweeper swaps a [`tombstone`] in first (compare-and-swap: only
//!   if the expired state is still there) and then deletes it. A request that meets a fresh
//!   tombstone waits and reads again; a tombstone older than [`TOMBSTONE_HOLD_MS`] (its sweeper
//!   stopped in between) reads as no state. The sweeper deletes only while its tombstone is
//!   younger than half that.

use portcullis_core::store::Kind;
use portcullis_core::UnixMillis;

/// Where the sweep schedule lives: `<next due, ms> <list cursor>`. Not a key of the gateway's
/// (no [`Kind`]), so a sweep never looks at it.
pub const SCHEDULE_KEY: &str = "portcullis-sweep";

/// How long a request waits on a tombstone before it counts as no state.
pub const TOMBSTONE_HOLD_MS: u64 = 2_000;

/// The value of a tombstone, after its 8-byte creation time.
const TOMBSTONE_TAG: &[u8] = b"\0portcullis-sweep";

/// A stored value with its expiry: `u64` big-endian milliseconds, then the value.
pub fn wrap(value: &[u8], expires_at: UnixMillis) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&expires_at.to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// A stored entry's expiry (a tombstone's: when it was made) and value; `None` when it is too
/// short to be one [`wrap`] made.
fn unwrap(stored: &[u8]) -> Option<(UnixMillis, &[u8])> {
    let (head, value) = stored.split_first_chunk::<8>()?;
    Some((u64::from_be_bytes(*head), value))
}

/// The value, if it has not expired at `now`. A tombstone has "expired" when it was made.
pub fn unwrap_live(stored: Vec<u8>, now: UnixMillis) -> Option<Vec<u8>> {
    let (expires_at, value) = unwrap(&stored)?;
    (now < expires_at).then(|| value.to_vec())
}

/// What a sweeper writes over an expired rate-limit state before deleting it.
pub fn tombstone(now: UnixMillis) -> Vec<u8> {
    wrap(TOMBSTONE_TAG, now)
}

/// What a stored entry is, for a sweep or a rate-limit update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Live,
    /// Past its expiry: the sweep may delete it.
    Expired,
    /// A sweeper is deleting it; requests wait while it is fresh.
    Tombstone {
        fresh: bool,
    },
    /// Not in the wrapped format: never touched.
    Foreign,
}

pub fn classify(stored: &[u8], now: UnixMillis) -> Stored {
    let Some((at, value)) = unwrap(stored) else {
        return Stored::Foreign;
    };
    if value == TOMBSTONE_TAG {
        Stored::Tombstone {
            fresh: now.saturating_sub(at) < TOMBSTONE_HOLD_MS,
        }
    } else if now < at {
        Stored::Live
    } else {
        Stored::Expired
    }
}

/// Whether a sweep looks at `key` at all: only the gateway's own keys (of a [`Kind`]).
pub fn is_own(key: &str) -> bool {
    Kind::of(key).is_some()
}

/// Whether `key` holds a rate-limit state (deleted through a tombstone).
pub fn is_rate_limit(key: &str) -> bool {
    Kind::of(key) == Some(Kind::RateLimit)
}

/// The sweep's settings, from the component's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    /// One request in this many checks the schedule (`PORTCULLIS_SWEEP_ODDS`, default 64; 0 turns
    /// sweeping off).
    pub odds: u64,
    /// At most one sweep per this long (`PORTCULLIS_SWEEP_INTERVAL_S`, default 60).
    pub interval_ms: u64,
    /// Keys looked at per sweep (`PORTCULLIS_SWEEP_BATCH`, default 100).
    pub batch: usize,
}

impl Sweep {
    /// Reads the settings with `var`; a value that is not a number keeps the default, and the
    /// error says which.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> (Sweep, Vec<String>) {
        let mut errors = Vec::new();
        let mut number = |name: &str, default: u64| match var(name) {
            None => default,
            Some(v) => v.trim().parse().unwrap_or_else(|_| {
                errors.push(format!(
                    "{name}={v:?} is not a whole number; using {default}"
                ));
                default
            }),
        };
        let sweep = Sweep {
            odds: number("PORTCULLIS_SWEEP_ODDS", 64),
            interval_ms: number("PORTCULLIS_SWEEP_INTERVAL_S", 60).saturating_mul(1000),
            batch: usize::try_from(number("PORTCULLIS_SWEEP_BATCH", 100)).unwrap_or(usize::MAX),
        };
        (sweep, errors)
    }

    /// Whether this request (drawing `random`) checks the schedule.
    pub fn draws(&self, random: u64) -> bool {
        self.odds != 0 && random % self.odds == 0
    }
}

/// The schedule: when the next sweep is due, and where the last one stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub due_ms: UnixMillis,
    pub cursor: Option<String>,
}

impl Schedule {
    pub fn encode(&self) -> Vec<u8> {
        match &self.cursor {
            Some(c) => format!("{} {c}", self.due_ms).into_bytes(),
            None => self.due_ms.to_string().into_bytes(),
        }
    }

    /// `None` for anything unreadable (a sweep is then due, and rewrites it).
    pub fn decode(bytes: &[u8]) -> Option<Schedule> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (due, cursor) = match text.split_once(' ') {
            Some((due, cursor)) => (due, Some(cursor.to_string())),
            None => (text, None),
        };
        Some(Schedule {
            due_ms: due.parse().ok()?,
            cursor,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_values_read_back_until_they_expire() {
        let stored = wrap(b"state", 1_000);
        assert_eq!(unwrap_live(stored.clone(), 999), Some(b"state".to_vec()));
        assert_eq!(unwrap_live(stored, 1_000), None);
        assert_eq!(unwrap_live(b"short".to_vec(), 0), None);
    }

    #[test]
    fn entries_are_live_expired_tombstones_or_foreign() {
        assert_eq!(classify(&wrap(b"x", 1_000), 999), Stored::Live);
        assert_eq!(classify(&wrap(b"x", 1_000), 1_000), Stored::Expired);
        assert_eq!(classify(&wrap(b"", 5), 6), Stored::Expired);
        assert_eq!(classify(b"7", 0), Stored::Foreign);
        let t = tombstone(10_000);
        assert_eq!(classify(&t, 10_000), Stored::Tombstone { fresh: true });
        assert_eq!(
            classify(&t, 10_000 + TOMBSTONE_HOLD_MS - 1),
            Stored::Tombstone { fresh: true }
        );
        assert_eq!(
            classify(&t, 10_000 + TOMBSTONE_HOLD_MS),
            Stored::Tombstone { fresh: false }
        );
        // a clock that went back still sees its own tombstone as fresh
        assert_eq!(classify(&t, 9_000), Stored::Tombstone { fresh: true });
    }

    #[test]
    fn a_tombstone_reads_as_no_state() {
        assert_eq!(unwrap_live(tombstone(10_000), 10_000), None);
        assert_eq!(
            unwrap_live(tombstone(10_000), 10_000 + TOMBSTONE_HOLD_MS),
            None
        );
    }

    #[test]
    fn only_the_gateways_own_keys_are_swept() {
        for key in [
            "rl:ip:10.0.0.1",
            "cache:1:ab",
            "jwks:main",
            "portcullis:cache-generation",
        ] {
            assert!(is_own(key), "{key}");
        }
        for key in [SCHEDULE_KEY, "other-app:thing", "rlx", ""] {
            assert!(!is_own(key), "{key}");
        }
        assert!(is_rate_limit("rl:consumer:alice"));
        assert!(!is_rate_limit("cache:1:ab"));
    }

    #[test]
    fn sweep_settings_default_and_read_the_environment() {
        let (s, errors) = Sweep::from_env(|_| None);
        assert_eq!(
            s,
            Sweep {
                odds: 64,
                interval_ms: 60_000,
                batch: 100
            }
        );
        assert!(errors.is_empty());
        let env = |name: &str| match name {
            "PORTCULLIS_SWEEP_ODDS" => Some("1".to_string()),
            "PORTCULLIS_SWEEP_INTERVAL_S" => Some(" 0 ".to_string()),
            "PORTCULLIS_SWEEP_BATCH" => Some("ten".to_string()),
            _ => None,
        };
        let (s, errors) = Sweep::from_env(env);
        assert_eq!(
            s,
            Sweep {
                odds: 1,
                interval_ms: 0,
                batch: 100
            }
        );
        assert_eq!(
            errors,
            ["PORTCULLIS_SWEEP_BATCH=\"ten\" is not a whole number; using 100"]
        );
    }

    #[test]
    fn one_request_in_odds_checks_the_schedule() {
        let s = |odds| Sweep {
            odds,
            interval_ms: 0,
            batch: 1,
        };
        assert_eq!((0..64).filter(|r| s(64).draws(*r)).count(), 1);
        assert!((0..10).all(|r| s(1).draws(r)));
        assert!((0..10).all(|r| !s(0).draws(r)));
    }

    #[test]
    fn the_schedule_round_trips_with_and_without_a_cursor() {
        for schedule in [
            Schedule {
                due_ms: 1_700_000_000_000,
                cursor: None,
            },
            Schedule {
                due_ms: 5,
                cursor: Some("rl:ip:10.0.0.1 and more".into()),
            },
        ] {
            assert_eq!(Schedule::decode(&schedule.encode()), Some(schedule));
        }
        assert_eq!(Schedule::decode(b"soon"), None);
        assert_eq!(Schedule::decode(b"\xff"), None);
    }
}
