//! Calendar arithmetic on UTC epoch milliseconds, without a date-time dependency.
//!
//! Dates are proleptic Gregorian; the day conversion is Howard Hinnant's `days_from_civil` /
//! `civil_from_days`, exact for every date representable here.

pub const MS_PER_SECOND: i64 = 1_000;
pub const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
pub const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
pub const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// The wall clock as epoch milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `ms` as `YYYY-MM-DDTHH:MM:SSZ` (UTC, whole seconds).
pub fn format_ms(ms: i64) -> String {
    let secs = ms.rem_euclid(MS_PER_DAY) / MS_PER_SECOND;
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        Date::from_epoch_ms(ms),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// A calendar date (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Date {
    /// Parses `YYYY-MM-DD`; `None` when malformed or not a real date.
    pub fn parse(s: &str) -> Option<Date> {
        let mut parts = s.split('-');
        let year: i32 = parts.next()?.parse().ok()?;
        let month: u32 = parts.next()?.parse().ok()?;
        let day: u32 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || !(1..=12).contains(&month) || day == 0 {
            return None;
        }
        let date = Date { year, month, day };
        // round-trip rejects 2026-02-30 and friends
        (Date::from_days(date.to_days()) == date).then_some(date)
    }

    /// Days since 1970-01-01.
    pub fn to_days(self) -> i64 {
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The date `days` after 1970-01-01.
    pub fn from_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }

    /// Midnight UTC of this date, in epoch milliseconds.
    pub fn to_epoch_ms(self) -> i64 {
        self.to_days() * MS_PER_DAY
    }

    /// The UTC date containing `ms`.
    pub fn from_epoch_ms(ms: i64) -> Date {
        Date::from_days(ms.div_euclid(MS_PER_DAY))
    }

    /// 0 = Monday ... 6 = Sunday.
    pub fn weekday(self) -> u32 {
        // 1970-01-01 was a Thursday (index 3)
        (self.to_days() + 3).rem_euclid(7) as u32
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(Date::from_days(0).to_string(), "1970-01-01");
        assert_eq!(Date::parse("2000-03-01").unwrap().to_days(), 11_017);
        assert_eq!(Date::parse("2026-11-29").unwrap().weekday(), 6);
        assert_eq!(Date::from_epoch_ms(-1).to_string(), "1969-12-31");
        assert_eq!(format_ms(1_764_979_199_999), "2025-12-05T23:59:59Z");
        assert_eq!(format_ms(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn parse_rejects_impossible_dates() {
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "2026-1",
            "x-01-01",
            "2026-01-01-01",
            "2026-00-10",
        ] {
            assert_eq!(Date::parse(bad), None, "{bad}");
        }
        assert!(Date::parse("2024-02-29").is_some());
    }

    #[test]
    fn round_trip_over_four_centuries() {
        for days in (-200_000..200_000).step_by(7) {
            assert_eq!(Date::from_days(days).to_days(), days);
        }
    }
}
