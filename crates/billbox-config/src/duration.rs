//! Duration values: a humantime string or a bare whole number in a per-key unit.

use std::time::Duration;

use crate::raw::DurationValue;

/// The unit of a bare number for one duration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BareUnit {
    /// `billing_timeout = 60` means 60 minutes (the ACS convention).
    Minutes,
    /// `reconnect_max = 30` means 30 seconds.
    Seconds,
}

impl BareUnit {
    fn name(self) -> &'static str {
        match self {
            BareUnit::Minutes => "minutes",
            BareUnit::Seconds => "seconds",
        }
    }

    fn seconds(self) -> u64 {
        match self {
            BareUnit::Minutes => 60,
            BareUnit::Seconds => 1,
        }
    }
}

/// Reads a duration written as a humantime string (`"90s"`, `"60m"`,
/// `"1h 30m"`, `"500ms"`) or as a whole number, bare or quoted, in `unit`.
/// Zero is returned as [`Duration::ZERO`]; the caller decides what it means.
/// The error is a message for the key's problem.
pub(crate) fn parse_duration(value: &DurationValue, unit: BareUnit) -> Result<Duration, String> {
    match value {
        DurationValue::Number(n) => from_number(*n, unit),
        DurationValue::Text(text) => {
            let trimmed = text.trim();
            if let Ok(n) = trimmed.parse::<i64>() {
                return from_number(n, unit);
            }
            if trimmed.starts_with('-') {
                return Err(format!(
                    "{text:?} is negative; durations cannot be negative"
                ));
            }
            humantime::parse_duration(trimmed).map_err(|e| {
                format!(
                    "{text:?} is not a duration ({e}); write e.g. \"90s\", \"60m\", \"1h\", \
                     \"500ms\" or a whole number of {}",
                    unit.name()
                )
            })
        }
    }
}

fn from_number(n: i64, unit: BareUnit) -> Result<Duration, String> {
    let n =
        u64::try_from(n).map_err(|_| format!("{n} is negative; durations cannot be negative"))?;
    n.checked_mul(unit.seconds())
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{n} {} is too long", unit.name()))
}

/// Formats a duration for messages, e.g. `1h 30m`.
pub(crate) fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> DurationValue {
        DurationValue::Text(s.to_string())
    }

    #[test]
    fn bare_numbers_use_the_unit() {
        let m = BareUnit::Minutes;
        let s = BareUnit::Seconds;
        assert_eq!(
            parse_duration(&DurationValue::Number(60), m),
            Ok(Duration::from_secs(3600))
        );
        assert_eq!(
            parse_duration(&text("60"), m),
            Ok(Duration::from_secs(3600))
        );
        assert_eq!(
            parse_duration(&text(" 30 "), s),
            Ok(Duration::from_secs(30))
        );
        assert_eq!(parse_duration(&text("0"), m), Ok(Duration::ZERO));
    }

    #[test]
    fn humantime_strings() {
        let m = BareUnit::Minutes;
        assert_eq!(parse_duration(&text("90s"), m), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_duration(&text("1h 30m"), m),
            Ok(Duration::from_secs(5400))
        );
        assert_eq!(
            parse_duration(&text("500ms"), m),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(parse_duration(&text("0s"), m), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_values() {
        let m = BareUnit::Minutes;
        assert!(parse_duration(&DurationValue::Number(-5), m)
            .unwrap_err()
            .contains("negative"));
        assert!(parse_duration(&text("-5m"), m)
            .unwrap_err()
            .contains("negative"));
        let err = parse_duration(&text("abc"), m).unwrap_err();
        assert!(err.contains("\"abc\" is not a duration"), "{err}");
        assert!(err.contains("minutes"), "{err}");
        assert!(parse_duration(&DurationValue::Number(i64::MAX), m)
            .unwrap_err()
            .contains("too long"));
    }
}
