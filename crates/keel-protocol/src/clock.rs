//! The one reading of the wall clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// This process's wall clock, in milliseconds since the UNIX epoch.
///
/// Never panics. A clock set before 1970 reads as 0: a broken clock, which
/// then disagrees with every peer's and stamps anything with a visibly
/// wrong time. A clock past the year 584,556,019 reads as `u64::MAX`.
///
/// Wall time only says when, to compare with other machines or to stamp a
/// record; durations and deadlines inside one process belong to
/// `std::time::Instant`, which never jumps.
pub fn wall_ms() -> u64 {
    ms_since_epoch(SystemTime::now())
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`, for unsigned days).
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The time `ms` since the Unix epoch as `YYYY-MM-DD HH:MM:SS` (UTC), for
/// people reading a table or a log.
pub fn utc_text(ms: u64) -> String {
    let secs = ms / 1000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn ms_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn utc_text_formats_known_instants() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00");
        assert_eq!(utc_text(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc_text(1_796_601_599_000), "2026-12-06 23:59:59");
    }

    #[test]
    fn reads_a_time_after_this_code_was_written() {
        // 2026-01-01T00:00:00Z: a clock reading before it is broken.
        assert!(wall_ms() > 1_767_225_600_000);
    }

    #[test]
    fn counts_whole_milliseconds_since_the_epoch() {
        let t = UNIX_EPOCH + Duration::from_micros(1_767_225_600_000_999);
        assert_eq!(ms_since_epoch(t), 1_767_225_600_000);
        assert_eq!(ms_since_epoch(UNIX_EPOCH), 0);
    }

    #[test]
    fn a_clock_before_the_epoch_reads_zero() {
        assert_eq!(ms_since_epoch(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
