//! Which backups to keep, as the seed states the policy: daily backups are kept 30 days, weekly
//! backups 12 weeks, monthly backups 12 months, each tier judged by its own backups only. Within a
//! tier, the newest backup of each calendar day (daily), ISO week (weekly) or month (monthly) is
//! kept for the last N of them, in UTC; a second backup of the same tier in the same period
//! replaces the first at the next prune. The newest verified backup is always kept; when none is
//! verified, the newest.
//!
//! `--tier auto` gives the 1st of each month to the monthly tier and Sundays to the weekly tier,
//! so the monthly backup of the 1st lives 12 months, not as long as a daily one.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};

use crate::manifest::Tier;

/// How many periods of each tier to keep. The defaults are the seed's policy: 30 days, 12
/// weeks, 12 months.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Calendar days (UTC), today included, for which the newest daily backup is kept
    /// (`RETENTION_DAYS`, 30 by default).
    pub daily: u32,
    /// ISO weeks, this one included, for which the newest weekly backup is kept
    /// (`RETENTION_WEEKS`, 12 by default).
    pub weekly: u32,
    /// Calendar months, this one included, for which the newest monthly backup is kept
    /// (`RETENTION_MONTHS`, 12 by default).
    pub monthly: u32,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention { daily: 30, weekly: 12, monthly: 12 }
    }
}

/// A backup as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The backup's id, as [`keep`] returns it.
    pub id: String,
    /// Its tier: each tier is judged by its own backups only.
    pub tier: Tier,
    /// When it finished; its day, ISO week and month in UTC are the periods it counts for.
    pub at: DateTime<Utc>,
    /// Whether a verification passed: the newest verified backup is always kept.
    pub verified: bool,
}

/// The ids of `backups` to keep at `now`: for each tier, the newest backup of each of its last
/// periods (see [`Retention`]); the newest verified backup (when none is verified, the newest);
/// and any backup dated after today, which a clock ahead somewhere made. Pure: nothing is read or
/// deleted.
///
/// ```rust
/// use backup_core::{Candidate, Retention, Tier, keep};
/// use chrono::{DateTime, Utc};
///
/// let at = |text: &str| text.parse::<DateTime<Utc>>().unwrap();
/// let backup = |id: &str, tier, when| Candidate { id: id.into(), tier, at: at(when), verified: false };
/// let backups = [
///     backup("monthly-jan", Tier::Monthly, "2026-01-01T04:00:00Z"),
///     backup("daily-jan-31", Tier::Daily, "2026-01-31T02:00:00Z"),
///     backup("daily-early", Tier::Daily, "2026-06-15T01:00:00Z"),
///     backup("daily-late", Tier::Daily, "2026-06-15T02:00:00Z"),
/// ];
/// let kept = keep(&backups, Retention::default(), at("2026-06-15T12:00:00Z"));
/// // The monthly backup lives 12 months; a daily 30 days; of two dailies of one day, the newer.
/// assert_eq!(kept.into_iter().collect::<Vec<_>>(), ["daily-late", "monthly-jan"]);
/// ```
pub fn keep(backups: &[Candidate], retention: Retention, now: DateTime<Utc>) -> BTreeSet<String> {
    let today = now.date_naive();
    let mut newest_of: BTreeMap<(Tier, i64), &Candidate> = BTreeMap::new();
    let mut kept = BTreeSet::new();
    for backup in backups {
        let day = backup.at.date_naive();
        if day > today {
            // From the future (a clock ahead somewhere): keep, never decide on it.
            kept.insert(backup.id.clone());
            continue;
        }
        let (age, limit) = match backup.tier {
            Tier::Daily => (days_between(day, today), retention.daily),
            Tier::Weekly => (weeks_between(day, today), retention.weekly),
            Tier::Monthly => (months_between(day, today), retention.monthly),
        };
        if age >= i64::from(limit) {
            continue;
        }
        let slot = newest_of.entry((backup.tier, age)).or_insert(backup);
        if backup.at > slot.at {
            *slot = backup;
        }
    }
    kept.extend(newest_of.values().map(|b| b.id.clone()));
    let newest_verified = backups.iter().filter(|b| b.verified).max_by_key(|b| b.at);
    if let Some(b) = newest_verified.or_else(|| backups.iter().max_by_key(|b| b.at)) {
        kept.insert(b.id.clone());
    }
    kept
}

fn days_between(from: NaiveDate, to: NaiveDate) -> i64 {
    (to - from).num_days()
}

/// Whole ISO weeks between the weeks of `from` and `to` (0 for the same week).
fn weeks_between(from: NaiveDate, to: NaiveDate) -> i64 {
    let monday =
        |d: NaiveDate| d.checked_sub_days(Days::new(u64::from(d.weekday().num_days_from_monday()))).unwrap_or(d);
    (monday(to) - monday(from)).num_days() / 7
}

fn months_between(from: NaiveDate, to: NaiveDate) -> i64 {
    i64::from(to.year() - from.year()) * 12 + i64::from(to.month()) - i64::from(from.month())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    /// The seed's schedule from `first` through `last`: one backup a day at 02:00, in the tier
    /// `--tier auto` gives it (monthly on the 1st, weekly on Sundays, daily otherwise).
    fn scheduled(first: &str, last: &str) -> Vec<Candidate> {
        let mut out = Vec::new();
        let (mut day, last) = (at(first).date_naive(), at(last).date_naive());
        while day <= last {
            out.push(Candidate {
                id: day.to_string(),
                tier: Tier::for_date(day),
                at: day.and_hms_opt(2, 0, 0).unwrap().and_utc(),
                verified: false,
            });
            day = day.succ_opt().unwrap();
        }
        out
    }

    fn kept(backups: &[Candidate], retention: Retention, now: &str) -> Vec<String> {
        keep(backups, retention, at(now)).into_iter().collect()
    }

    fn one(id: &str, tier: Tier, when: &str) -> Candidate {
        Candidate { id: id.into(), tier, at: at(when), verified: false }
    }

    /// The seed's policy on a table of dates: a year and a half of the seed's schedule, pruned
    /// on 2026-11-28. Each row: a backup, and whether it is kept.
    #[test]
    fn the_seeds_policy_on_a_table_of_dates() {
        let backups = scheduled("2025-05-01T00:00:00Z", "2026-11-28T00:00:00Z");
        let kept = keep(&backups, Retention::default(), at("2026-11-28T12:00:00Z"));
        let table = [
            // Daily: the last 30 days, 2026-10-30 through 2026-11-28.
            ("2026-11-28", true),
            ("2026-10-30", true),
            ("2026-10-29", false),
            ("2026-10-28", false),
            // Weekly (Sundays): the last 12 ISO weeks, back to the week of 2026-09-07.
            ("2026-11-22", true),
            ("2026-09-13", true),
            ("2026-09-06", false),
            // Monthly (the 1st): the last 12 months, back to December 2025.
            ("2026-11-01", true),
            ("2026-05-01", true),
            ("2025-12-01", true),
            ("2025-11-01", false),
            ("2025-06-01", false),
            // A month-end daily is only ever a daily: kept 30 days, no longer.
            ("2026-09-30", false),
            ("2025-12-31", false),
        ];
        for (day, expected) in table {
            assert_eq!(kept.contains(day), expected, "{day}");
        }
        // The last 12 ISO weeks hold 11 Sundays so far, one of them the 1st of November (a
        // monthly backup); the last 30 days hold three more Sundays and that 1st.
        let tiers = |t: Tier| backups.iter().filter(|b| b.tier == t && kept.contains(&b.id)).count();
        assert_eq!((tiers(Tier::Weekly), tiers(Tier::Monthly)), (10, 12));
        assert_eq!(tiers(Tier::Daily), 30 - 4);
    }

    #[test]
    fn a_monthly_backup_outlives_the_dailies() {
        let backups = vec![
            one("monthly-jan", Tier::Monthly, "2026-01-01T04:00:00Z"),
            one("daily-jan-31", Tier::Daily, "2026-01-31T02:00:00Z"),
            one("daily-today", Tier::Daily, "2026-06-15T02:00:00Z"),
        ];
        assert_eq!(kept(&backups, Retention::default(), "2026-06-15T12:00:00Z"), ["daily-today", "monthly-jan"]);
    }

    #[test]
    fn each_tier_counts_its_own_periods() {
        let retention = Retention { daily: 3, weekly: 0, monthly: 0 };
        let backups = scheduled("2026-11-01T00:00:00Z", "2026-11-25T00:00:00Z");
        // The 1st and the Sundays are not dailies; the last three days are.
        assert_eq!(kept(&backups, retention, "2026-11-25T12:00:00Z"), ["2026-11-23", "2026-11-24", "2026-11-25"]);
    }

    #[test]
    fn several_backups_a_day_keep_the_newest() {
        let backups =
            vec![one("early", Tier::Daily, "2026-11-24T01:00:00Z"), one("late", Tier::Daily, "2026-11-24T23:00:00Z")];
        assert_eq!(kept(&backups, Retention { daily: 1, weekly: 0, monthly: 0 }, "2026-11-24T23:30:00Z"), ["late"]);
    }

    #[test]
    fn months_across_the_year_change_and_leap_years() {
        let backups = scheduled("2023-12-01T00:00:00Z", "2024-03-31T00:00:00Z");
        let got = kept(&backups, Retention { daily: 0, weekly: 0, monthly: 3 }, "2024-03-31T12:00:00Z");
        assert_eq!(got, ["2024-01-01", "2024-02-01", "2024-03-01", "2024-03-31"], "the newest stays too");
        // 30 dailies on 31 March 2024 (a leap year) reach back to 2 March.
        let got = keep(&backups, Retention { daily: 30, weekly: 0, monthly: 0 }, at("2024-03-31T12:00:00Z"));
        assert!(got.contains("2024-03-02") && !got.contains("2024-02-29"));
    }

    #[test]
    fn weeks_across_the_year_change() {
        // 2026 has an ISO week 53 (28 Dec 2026 - 3 Jan 2027): the three weeks up to 6 January
        // 2027 are 21-27 December, that week 53 and week 1 of 2027.
        let backups = scheduled("2026-12-01T00:00:00Z", "2027-01-06T00:00:00Z");
        let got = kept(&backups, Retention { daily: 0, weekly: 3, monthly: 0 }, "2027-01-06T12:00:00Z");
        assert_eq!(got, ["2026-12-27", "2027-01-03", "2027-01-06"]);
    }

    #[test]
    fn the_newest_verified_backup_is_never_pruned() {
        let mut backups = scheduled("2026-01-02T00:00:00Z", "2026-03-02T00:00:00Z");
        backups[10].verified = true;
        let got = keep(&backups, Retention { daily: 1, weekly: 0, monthly: 0 }, at("2026-03-02T12:00:00Z"));
        assert!(got.contains(&backups[10].id) && got.contains("2026-03-02"));
        // Nothing kept by the policy at all: the newest stays.
        let got = kept(
            &scheduled("2020-01-02T00:00:00Z", "2020-01-03T00:00:00Z"),
            Retention::default(),
            "2026-11-22T00:00:00Z",
        );
        assert_eq!(got, ["2020-01-03"]);
    }

    #[test]
    fn backups_from_the_future_are_kept() {
        let backups =
            vec![one("ahead", Tier::Daily, "2026-12-01T00:00:00Z"), one("now", Tier::Daily, "2026-11-20T00:00:00Z")];
        assert_eq!(kept(&backups, Retention { daily: 0, weekly: 0, monthly: 0 }, "2026-11-20T12:00:00Z"), ["ahead"]);
    }
}
