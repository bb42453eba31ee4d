//! Go duration strings (`2h0m0s`, `15m`, `1h30m`, `500ms`), as upstream writes decoration timeouts.

use std::time::Duration;

/// The longest timeout a job may ask for: 30 days (720h). Upstream's longest default is the
/// 48 h running timeout and week-long soak jobs are the longest CI runs known; anything beyond a
/// month is a typo (`20000h`), and far below what timers can hold (tokio's wheels stop at about
/// two years), so a clamped value can never reach a timer that refuses it.
pub const LONGEST_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why a duration string does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {0:?}: use a Go duration such as 90s, 15m or 2h30m")]
pub struct DurationError(pub String);

/// Parses a non-negative Go duration: numbers (with optional fraction) each followed by a unit
/// of ns, us, µs, ms, s, m or h; `0` alone is zero.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(text.to_string());
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| err())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| err())
}

/// Parses a job's timeout and checks it against [`LONGEST_TIMEOUT`]; the message says how to
/// fix either problem.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let value = parse(text).map_err(|e| e.to_string())?;
    if value > LONGEST_TIMEOUT {
        return Err(format!(
            "{text:?} is longer than 720h (30 days), the longest timeout a job may set: use at most 720h"
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_longer_than_thirty_days_are_refused() {
        assert_eq!(parse_timeout("720h"), Ok(LONGEST_TIMEOUT));
        assert_eq!(parse_timeout("90m"), Ok(Duration::from_secs(5400)));
        let too_long = parse_timeout("20000h").expect_err("refused");
        assert!(too_long.contains("720h"), "{too_long}");
        assert!(parse_timeout("5d").is_err());
        // Beyond what a Duration holds is an invalid duration, not a panic.
        assert!(parse_timeout("1e30h").is_err());
        assert!(parse_timeout("99999999999999999999999h").is_err());
    }

    #[test]
    fn go_durations_parse() {
        let cases = [
            ("0", Some(0)),
            ("90s", Some(90_000)),
            ("15m", Some(900_000)),
            ("2h0m0s", Some(7_200_000)),
            ("1h30m", Some(5_400_000)),
            ("1.5h", Some(5_400_000)),
            ("250ms", Some(250)),
            ("", None),
            ("10", None),
            ("5d", None),
            ("-1s", None),
            ("h", None),
        ];
        for (text, millis) in cases {
            assert_eq!(
                parse(text).ok().map(|d| d.as_millis() as u64),
                millis,
                "{text:?}"
            );
        }
    }
}
