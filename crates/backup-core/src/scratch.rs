//! The scratch databases `verify --compare` restores into. Named
//! `<prefix><YYYYMMDDTHHMMSS>_<8 hex digits>[_<n>]`: unique when verifies start in the same
//! second, and dated, so that the ones a killed verify left behind are recognised and dropped by
//! a later verify once they are a day old (the deploy/ CronJobs end a verify within six hours).
//! Only names of exactly that shape are recognised: a database a person named alike, with
//! other text after the date, is never taken for one.

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};

const STAMP: &str = "%Y%m%dT%H%M%S";

/// A new scratch database name for a verify that starts at `now`.
pub fn scratch_name(prefix: &str, now: DateTime<Utc>) -> String {
    format!("{prefix}{}_{:08x}", now.format(STAMP), rand::random::<u32>())
}

/// Whether `name` is a scratch database of `prefix` made more than a day before `now`: one left
/// by a verify that was killed. Names of another shape are never stale.
pub fn is_stale_scratch(prefix: &str, name: &str, now: DateTime<Utc>) -> bool {
    let Some(rest) = name.strip_prefix(prefix) else { return false };
    let mut parts = rest.split('_');
    let (Some(stamp), Some(random), index, None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let hex = |s: &str| s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let number = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    if stamp.len() != 15 || !hex(random) || !index.is_none_or(number) {
        return false;
    }
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
        assert!(a.starts_with("x_verify_20260302T100000_") && a.len() == "x_verify_20260302T100000_".len() + 8, "{a}");
        assert!(!is_stale_scratch("x_verify_", &a, now));
        assert!(!is_stale_scratch("x_verify_", &a, now + TimeDelta::hours(23)));
        assert!(is_stale_scratch("x_verify_", &a, now + TimeDelta::hours(25)));
        assert!(is_stale_scratch("x_verify_", &format!("{a}_3"), now + TimeDelta::hours(25)));
        // Another prefix, or any other shape, is left alone.
        let later = now + TimeDelta::days(9);
        assert!(!is_stale_scratch("y_verify_", &a, later));
        for name in [
            "x_verify_4242_101112345",
            "x_verify_",
            "x_verify_20260302T100000",
            "x_verify_20260302T100000_keep",
            "x_verify_20260302T100000_0123abcd_keep",
            "x_verify_20260302T100000_0123ABCD",
            "x_verify_20260302T100000_0123abcd_1_2",
            "x_verify_2026030T2100000_0123abcd",
        ] {
            assert!(!is_stale_scratch("x_verify_", name, later), "{name}");
        }
        assert!(is_stale_scratch("x_verify_", "x_verify_20260302T100000_0123abcd", later));
    }
}
