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

fn ms_since_epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
