//! The sync schedule of annotation `cpaas.io/ldap.autoSyncRule` (SPEC-identity section
//! 3): a standard 5-field cron expression (minute hour day-of-month month
//! day-of-week), evaluated in UTC. Fields take `*`, numbers, ranges `a-b`, steps `*/n`
//! and `a-b/n`, and lists `x,y`; day-of-week 0-7 (0 and 7 are Sunday); when both
//! day-of-month and day-of-week are restricted a day matching either runs (as cron).
//! `@hourly`, `@daily`/`@midnight`, `@weekly`, `@monthly`, `@yearly`/`@annually` too.

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};

/// The default: daily at 00:00 UTC.
pub const DEFAULT_RULE: &str = "0 0 * * *";

/// A parsed cron expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

fn field(text: &str, min: u32, max: u32, what: &str) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let restricted = text != "*" && !text.starts_with("*/");
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{what}: bad step {s:?}"))?,
            ),
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (number(a, what)?, number(b, what)?)
        } else {
            let n = number(range, what)?;
            (n, if part.contains('/') { max } else { n })
        };
        if lo < min || hi > max || lo > hi {
            return Err(format!("{what}: {part:?} is outside {min}-{max}"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, restricted))
}

fn number(text: &str, what: &str) -> Result<u32, String> {
    text.parse()
        .map_err(|_| format!("{what}: {text:?} is not a number"))
}

impl Schedule {
    /// Parses a 5-field expression (or a macro).
    pub fn parse(rule: &str) -> Result<Schedule, String> {
        let rule = match rule.trim() {
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other => other,
        };
        let fields: Vec<&str> = rule.split_whitespace().collect();
        let [m, h, dom, mon, dow] = fields[..] else {
            return Err(format!(
                "{rule:?} is not a 5-field cron expression (minute hour day month weekday)"
            ));
        };
        let (minutes, _) = field(m, 0, 59, "minute")?;
        let (hours, _) = field(h, 0, 23, "hour")?;
        let (days, days_restricted) = field(dom, 1, 31, "day of month")?;
        let (months, _) = field(mon, 1, 12, "month")?;
        let (mut weekdays, weekdays_restricted) = field(dow, 0, 7, "day of week")?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_restricted,
            weekdays_restricted,
        })
    }

    fn day_matches(&self, t: DateTime<Utc>) -> bool {
        if self.months & (1 << t.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << t.day()) != 0;
        let dow = self.weekdays & (1 << t.weekday().num_days_from_sunday()) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The first run strictly after `after` (None if none within 5 years, e.g. 31 Feb).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = after.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let limit = start + Duration::days(366 * 5);
        let mut t = start;
        while t < limit {
            if !self.day_matches(t) {
                let next_day = (t + Duration::days(1)).date_naive().and_hms_opt(0, 0, 0)?;
                t = Utc.from_utc_datetime(&next_day);
                continue;
            }
            if self.hours & (1 << t.hour()) == 0 {
                t = t.with_minute(0)? + Duration::hours(1);
                continue;
            }
            if self.minutes & (1 << t.minute()) == 0 {
                t += Duration::minutes(1);
                continue;
            }
            return Some(t);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(rule: &str, after: &str) -> String {
        Schedule::parse(rule)
            .unwrap()
            .next_after(at(after))
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn standard_expressions() {
        assert_eq!(
            next(DEFAULT_RULE, "2026-03-04T10:20:30Z"),
            "2026-03-05T00:00:00+00:00"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-03-04T10:20:30Z"),
            "2026-03-04T10:30:00+00:00"
        );
        assert_eq!(
            next("* * * * *", "2026-03-04T10:20:00Z"),
            "2026-03-04T10:21:00+00:00"
        );
        assert_eq!(
            next("30 2 * * 1-5", "2026-03-07T00:00:00Z"),
            "2026-03-09T02:30:00+00:00"
        );
        assert_eq!(
            next("0 0 * * 7", "2026-03-04T00:00:00Z"),
            "2026-03-08T00:00:00+00:00"
        );
        assert_eq!(
            next("0 12 1 */3 *", "2026-02-01T13:00:00Z"),
            "2026-04-01T12:00:00+00:00"
        );
        assert_eq!(
            next("0 0 29 2 *", "2026-03-01T00:00:00Z"),
            "2028-02-29T00:00:00+00:00"
        );
        // both day fields restricted: either
        assert_eq!(
            next("0 0 13 * 5", "2026-03-01T00:00:00Z"),
            "2026-03-06T00:00:00+00:00"
        );
        assert_eq!(
            next("5,10 * * * *", "2026-03-01T00:06:00Z"),
            "2026-03-01T00:10:00+00:00"
        );
        assert_eq!(
            next("@weekly", "2026-03-04T00:00:00Z"),
            "2026-03-08T00:00:00+00:00"
        );
    }

    #[test]
    fn bad_expressions_are_refused() {
        for bad in [
            "",
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "*/0 * * * *",
            "a * * * *",
            "5-1 * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Schedule::parse("0 0 31 2 *")
                .unwrap()
                .next_after(at("2026-01-01T00:00:00Z")),
            None
        );
    }
}
