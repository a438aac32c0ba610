//! Job schedules: five-field cron expressions (`croner`) read in an IANA time zone
//! (`chrono-tz`), and the slots they name, as seconds since the Unix epoch.

use std::str::FromStr as _;

use chrono::{DateTime, TimeZone as _};
use chrono_tz::Tz;

/// Longest schedule text accepted.
pub const MAX_SCHEDULE_LEN: usize = 200;

/// A parsed schedule in its zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: croner::Cron,
    zone: Tz,
}

/// Reads a five-field cron expression (minute hour day-of-month month
/// day-of-week, with lists, ranges, steps and names, or an `@hourly`-style macro).
pub fn parse_cron(text: &str) -> Result<croner::Cron, crate::Invalid> {
    let bad = |why: String| crate::Invalid(why);
    if text.len() > MAX_SCHEDULE_LEN {
        return Err(bad(format!(
            "the schedule is {} characters long, above the limit of {MAX_SCHEDULE_LEN}",
            text.len()
        )));
    }
    let fields = text.split_whitespace().count();
    if !text.trim_start().starts_with('@') && fields != 5 {
        return Err(bad(format!(
            "`{text}` has {fields} fields; a schedule has 5: minute hour day-of-month month \
             day-of-week (e.g. `*/5 * * * *`)"
        )));
    }
    croner::Cron::from_str(text)
        .map_err(|e| bad(format!("`{text}` is not a valid cron schedule: {e}")))
}

/// Reads an IANA time zone name (`UTC`, `Europe/Paris`).
pub fn parse_zone(name: &str) -> Result<Tz, crate::Invalid> {
    name.parse::<Tz>().map_err(|_| {
        crate::Invalid(format!(
            "unknown time zone `{name}`: expected an IANA name such as `UTC` or `Europe/Paris`"
        ))
    })
}

impl CronSchedule {
    /// `schedule` read in `zone`.
    pub fn new(schedule: &str, zone: &str) -> Result<Self, crate::Invalid> {
        Ok(CronSchedule {
            cron: parse_cron(schedule)?,
            zone: parse_zone(zone)?,
        })
    }

    /// The first slot strictly after `after` (seconds since the epoch), if any.
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let at: DateTime<Tz> = self.zone.timestamp_opt(after, 0).single()?;
        self.cron
            .find_next_occurrence(&at, false)
            .ok()
            .map(|t| t.timestamp())
    }

    /// The slots in `(after, until]`, oldest first, at most `limit` of them (the
    /// newest ones when there are more), and how many there were in all (counted
    /// up to `limit * 2`; a long outage is not walked minute by minute forever).
    pub fn due(&self, after: i64, until: i64, limit: usize) -> (Vec<i64>, usize) {
        let mut slots = std::collections::VecDeque::new();
        let mut count = 0usize;
        let mut cursor = after;
        while let Some(next) = self.next_after(cursor) {
            if next > until || count >= limit.saturating_mul(2) {
                break;
            }
            count += 1;
            slots.push_back(next);
            if slots.len() > limit {
                slots.pop_front();
            }
            cursor = next;
        }
        if count >= limit.saturating_mul(2) {
            // Too many to walk: the newest one is the slot at or before `until`.
            if let Some(last) = self.last_at_or_before(until) {
                if slots.back() != Some(&last) {
                    slots.push_back(last);
                    if slots.len() > limit {
                        slots.pop_front();
                    }
                }
            }
        }
        (slots.into(), count)
    }

    /// The newest slot at or before `at`.
    fn last_at_or_before(&self, at: i64) -> Option<i64> {
        let t: DateTime<Tz> = self.zone.timestamp_opt(at, 0).single()?;
        self.cron
            .find_previous_occurrence(&t, true)
            .ok()
            .map(|t| t.timestamp())
    }
}

/// A slot as a readable time in its zone, e.g. `2026-12-02 17:05:00 UTC`.
pub fn format_slot(at: i64, zone: &str) -> String {
    match (parse_zone(zone), chrono::Utc.timestamp_opt(at, 0).single()) {
        (Ok(tz), Some(t)) => t
            .with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S %Z")
            .to_string(),
        _ => at.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_fields_and_known_zones_only() {
        assert!(parse_cron("*/5 * * * *").is_ok());
        assert!(parse_cron("0 3 * * MON-FRI").is_ok());
        assert!(parse_cron("@hourly").is_ok());
        let six = parse_cron("0 */5 * * * *").expect_err("six fields");
        assert!(six.0.contains("has 6 fields"), "{six}");
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("every minute").is_err());
        assert!(parse_zone("Europe/Paris").is_ok());
        let zone = parse_zone("Mars/Olympus").expect_err("zone");
        assert!(
            zone.0.contains("unknown time zone `Mars/Olympus`"),
            "{zone}"
        );
    }

    #[test]
    fn next_slot_follows_the_zone() {
        // 2026-01-15 12:00:30 UTC.
        let t = 1_768_478_430;
        let every = CronSchedule::new("* * * * *", "UTC").expect("schedule");
        assert_eq!(every.next_after(t), Some(1_768_478_460));
        // 09:00 in Paris (UTC+1 in January) is 08:00 UTC.
        let nine = CronSchedule::new("0 9 * * *", "Europe/Paris").expect("schedule");
        let next = nine.next_after(t).expect("next");
        assert_eq!(format_slot(next, "UTC"), "2026-01-16 08:00:00 UTC");
        assert_eq!(format_slot(next, "Europe/Paris"), "2026-01-16 09:00:00 CET");
    }

    #[test]
    fn due_slots_are_bounded_and_end_with_the_newest() {
        let every = CronSchedule::new("* * * * *", "UTC").expect("schedule");
        let start = 1_768_478_400; // a whole minute
        let (slots, count) = every.due(start, start + 180, 10);
        assert_eq!(slots, vec![start + 60, start + 120, start + 180]);
        assert_eq!(count, 3);
        // A day away: a few are kept, the newest last.
        let (slots, count) = every.due(start, start + 86_400, 4);
        assert_eq!(slots.len(), 4);
        assert_eq!(slots.last(), Some(&(start + 86_400)));
        assert!(count >= 8);
        assert_eq!(every.due(start, start + 59, 4).0, Vec::<i64>::new());
    }
}
