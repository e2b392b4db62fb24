//! The scratch databases `verify --compare` restores into. Named
//! `<prefix><YYYYMMDDTHHMMSS>_<random>[_<n>]`: unique when verifies start in the same second, and
//! dated, so that the ones a killed verify left behind are recognised and dropped by a later
//! verify once they are a day old (no verify runs that long).

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};

const STAMP: &str = "%Y%m%dT%H%M%S";

/// A new scratch database name for a verify that starts at `now`.
pub fn scratch_name(prefix: &str, now: DateTime<Utc>) -> String {
    format!("{prefix}{}_{:08x}", now.format(STAMP), rand::random::<u32>())
}

/// Whether `name` is a scratch database of `prefix` made more than a day before `now`: one left
/// by a verify that was killed. Names of another form are never stale.
pub fn is_stale_scratch(prefix: &str, name: &str, now: DateTime<Utc>) -> bool {
    let Some(stamp) = name.strip_prefix(prefix).and_then(|rest| rest.split('_').next()) else { return false };
    NaiveDateTime::parse_from_str(stamp, STAMP)
        .is_ok_and(|at| now.signed_duration_since(at.and_utc()) > TimeDelta::days(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_a_day_old_ones_are_stale() {
        let now = "2026-03-02T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let (a, b) = (scratch_name("x_verify_", now), scratch_name("x_verify_", now));
        assert_ne!(a, b);
        assert!(a.starts_with("x_verify_20260302T100000_"), "{a}");
        assert!(!is_stale_scratch("x_verify_", &a, now));
        assert!(!is_stale_scratch("x_verify_", &a, now + TimeDelta::hours(23)));
        assert!(is_stale_scratch("x_verify_", &a, now + TimeDelta::hours(25)));
        assert!(is_stale_scratch("x_verify_", &format!("{a}_3"), now + TimeDelta::hours(25)));
        // Another prefix, or an older form of name without a date, is left alone.
        assert!(!is_stale_scratch("y_verify_", &a, now + TimeDelta::days(9)));
        assert!(!is_stale_scratch("x_verify_", "x_verify_4242_101112345", now + TimeDelta::days(9)));
        assert!(!is_stale_scratch("x_verify_", "x_verify_", now));
    }
}
