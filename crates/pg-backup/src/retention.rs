//! Which backups to keep: the newest of each day for the last `daily` days, of each ISO week for
//! the last `weekly` weeks, and of each month for the last `monthly` months (grandfather, father,
//! son), in UTC. The newest verified backup is always kept; when none is verified, the newest.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};

/// How many of each to keep. The defaults are the seed's policy: 30 days, 12 weeks, 12 months.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub daily: u32,
    pub weekly: u32,
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
    pub id: String,
    pub at: DateTime<Utc>,
    pub verified: bool,
}

/// The ids of `backups` to keep at `now`.
pub fn keep(backups: &[Candidate], retention: Retention, now: DateTime<Utc>) -> BTreeSet<String> {
    let today = now.date_naive();
    let mut newest_of: BTreeMap<(u8, i32, u32), &Candidate> = BTreeMap::new();
    for backup in backups {
        let day = backup.at.date_naive();
        if day > today {
            // From the future (a clock ahead somewhere): keep, never decide on it.
            newest_of.insert((0, day.year(), day.ordinal()), backup);
            continue;
        }
        let mut offer = |key: (u8, i32, u32)| {
            let slot = newest_of.entry(key).or_insert(backup);
            if backup.at > slot.at {
                *slot = backup;
            }
        };
        if days_between(day, today) < i64::from(retention.daily) {
            offer((1, day.year(), day.ordinal()));
        }
        let week = day.iso_week();
        if weeks_between(day, today) < i64::from(retention.weekly) {
            offer((2, week.year(), week.week()));
        }
        if months_between(day, today) < i64::from(retention.monthly) {
            offer((3, day.year(), day.month()));
        }
    }
    let mut kept: BTreeSet<String> = newest_of.values().map(|b| b.id.clone()).collect();
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

    /// One backup a day at 02:00 from `first` through `last`.
    fn daily(first: &str, last: &str) -> Vec<Candidate> {
        let mut out = Vec::new();
        let (mut day, last) = (at(first).date_naive(), at(last).date_naive());
        while day <= last {
            out.push(Candidate {
                id: day.to_string(),
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

    #[test]
    fn daily_window_counts_calendar_days() {
        let backups = daily("2026-11-01T00:00:00Z", "2026-11-22T00:00:00Z");
        let got = kept(&backups, Retention { daily: 3, weekly: 0, monthly: 0 }, "2026-11-22T12:00:00Z");
        assert_eq!(got, ["2026-11-20", "2026-11-21", "2026-11-22"]);
    }

    #[test]
    fn several_backups_a_day_keep_the_newest() {
        let backups = vec![
            Candidate { id: "early".into(), at: at("2026-11-22T01:00:00Z"), verified: false },
            Candidate { id: "late".into(), at: at("2026-11-22T23:00:00Z"), verified: false },
        ];
        assert_eq!(kept(&backups, Retention { daily: 1, weekly: 0, monthly: 0 }, "2026-11-22T23:30:00Z"), ["late"]);
    }

    #[test]
    fn month_ends_and_leap_years() {
        // Monthly keeps the newest of each month: the last day of January, of February 2024 (a
        // leap year, so the 29th) and of March.
        let backups = daily("2024-01-15T00:00:00Z", "2024-03-31T00:00:00Z");
        let got = kept(&backups, Retention { daily: 0, weekly: 0, monthly: 3 }, "2024-03-31T12:00:00Z");
        assert_eq!(got, ["2024-01-31", "2024-02-29", "2024-03-31"]);
        // In a common year February ends on the 28th.
        let backups = daily("2025-02-20T00:00:00Z", "2025-03-02T00:00:00Z");
        let got = kept(&backups, Retention { daily: 0, weekly: 0, monthly: 2 }, "2025-03-02T12:00:00Z");
        assert_eq!(got, ["2025-02-28", "2025-03-02"]);
        // 30 daily backups on 31 March reach back to 2 March, not into February.
        let backups = daily("2024-02-01T00:00:00Z", "2024-03-31T00:00:00Z");
        let got = kept(&backups, Retention { daily: 30, weekly: 0, monthly: 0 }, "2024-03-31T12:00:00Z");
        assert_eq!((got.first().unwrap().as_str(), got.len()), ("2024-03-02", 30));
    }

    #[test]
    fn weeks_across_the_year_change() {
        // 2026 has an ISO week 53 (28 Dec 2026 - 3 Jan 2027); weeks are counted Monday to Sunday.
        let backups = daily("2026-12-14T00:00:00Z", "2027-01-06T00:00:00Z");
        let got = kept(&backups, Retention { daily: 0, weekly: 3, monthly: 0 }, "2027-01-06T12:00:00Z");
        assert_eq!(got, ["2026-12-27", "2027-01-03", "2027-01-06"]);
    }

    #[test]
    fn months_across_the_year_change() {
        let backups = daily("2026-10-01T00:00:00Z", "2027-01-10T00:00:00Z");
        let got = kept(&backups, Retention { daily: 0, weekly: 0, monthly: 3 }, "2027-01-10T12:00:00Z");
        assert_eq!(got, ["2026-11-30", "2026-12-31", "2027-01-10"]);
    }

    #[test]
    fn the_seeds_policy_keeps_a_bounded_set() {
        let backups = daily("2024-01-01T00:00:00Z", "2026-11-22T00:00:00Z");
        let got = keep(&backups, Retention::default(), at("2026-11-22T12:00:00Z"));
        // 30 days + older weekly + older monthly, overlapping: at most 30 + 12 + 12.
        assert!(got.len() <= 54 && got.len() >= 30, "{}", got.len());
        assert!(got.contains("2026-11-22") && got.contains("2025-12-31") && !got.contains("2025-11-30"));
    }

    #[test]
    fn the_newest_verified_backup_is_never_pruned() {
        let mut backups = daily("2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z");
        backups[10].verified = true;
        let got = keep(&backups, Retention { daily: 1, weekly: 0, monthly: 0 }, at("2026-03-01T12:00:00Z"));
        assert!(got.contains(&backups[10].id) && got.contains("2026-03-01"));
        // Nothing kept by the policy at all: the newest stays.
        let got =
            kept(&daily("2020-01-01T00:00:00Z", "2020-01-03T00:00:00Z"), Retention::default(), "2026-11-22T00:00:00Z");
        assert_eq!(got, ["2020-01-03"]);
    }
}
