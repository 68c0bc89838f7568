//! Durations as Keel's processes write them to each other: a whole number
//! and a unit, `500ms`, `5s`, `10m`, `2h`, `1d`. The gateway passes its
//! `[backup]` schedule to a child `keel backup schedule` in this form, and
//! an operator types it on the command line.

use std::time::Duration;

/// Why a duration's text was refused; each message names the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Digits without a unit.
    #[error("{0:?}: add a unit (ms, s, m, h, d)")]
    NoUnit(String),
    /// The number is missing or does not fit.
    #[error("{0:?}: bad number")]
    BadNumber(String),
    /// A unit other than ms, s, m, h, d.
    #[error("{0:?}: unit must be ms, s, m, h or d")]
    BadUnit(String),
    /// Zero of any unit.
    #[error("{0:?}: must be more than zero")]
    Zero(String),
}

/// Parses `500ms`, `5s`, `10m`, `2h` or `1d` (surrounding space ignored)
/// into a duration of more than zero; a large number saturates.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| DurationError::NoUnit(s.to_string()))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| DurationError::BadNumber(s.to_string()))?;
    let ms = match unit {
        "ms" => n,
        "s" => n.saturating_mul(1_000),
        "m" => n.saturating_mul(60_000),
        "h" => n.saturating_mul(3_600_000),
        "d" => n.saturating_mul(86_400_000),
        _ => return Err(DurationError::BadUnit(s.to_string())),
    };
    if ms == 0 {
        return Err(DurationError::Zero(s.to_string()));
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_is_read() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(" 5s "), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
    }

    #[test]
    fn bad_text_is_refused_with_a_reason() {
        assert_eq!(
            parse_duration("5").unwrap_err().to_string(),
            "\"5\": add a unit (ms, s, m, h, d)"
        );
        assert_eq!(
            parse_duration("s").unwrap_err(),
            DurationError::BadNumber("s".into())
        );
        assert_eq!(
            parse_duration("5w").unwrap_err().to_string(),
            "\"5w\": unit must be ms, s, m, h or d"
        );
        assert_eq!(
            parse_duration("0ms").unwrap_err(),
            DurationError::Zero("0ms".into())
        );
        assert_eq!(
            parse_duration("99999999999999999999s").unwrap_err(),
            DurationError::BadNumber("99999999999999999999s".into())
        );
    }

    #[test]
    fn a_huge_count_saturates() {
        assert_eq!(
            parse_duration("18446744073709551615d"),
            Ok(Duration::from_millis(u64::MAX))
        );
    }
}
