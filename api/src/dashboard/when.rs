//! How times and durations read on the pages: `1h 2m`, `3 minutes ago`, and UTC timestamps.

/// A duration in seconds as `1h 2m 3s` (the two largest units), `0s` for none.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{sec}s"),
        (0, _) => format!("{m}m {sec}s"),
        _ => format!("{h}h {m}m"),
    }
}

/// How long ago `then` was at `now` (seconds since the epoch), in words.
pub fn ago(then: i64, now: i64) -> String {
    let d = now.saturating_sub(then);
    let (n, unit) = match d {
        i64::MIN..=4 => return "just now".to_owned(),
        5..=59 => (d, "second"),
        60..=3599 => (d / 60, "minute"),
        3600..=86_399 => (d / 3600, "hour"),
        _ => (d / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// Seconds since the epoch as `2026-12-03 22:47:33 UTC`.
pub fn utc(seconds: i64) -> String {
    match jiff::Timestamp::from_second(seconds) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => String::new(),
    }
}

/// Seconds since the epoch as RFC 3339 (for `<time datetime>`).
pub fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_ages_read_in_their_two_largest_units() {
        let cases = [
            (0, "0s"),
            (59, "59s"),
            (61, "1m 1s"),
            (3600, "1h 0m"),
            (90_061, "25h 1m"),
            (-5, "0s"),
        ];
        for (s, want) in cases {
            assert_eq!(duration(s), want, "{s}");
        }
        let ages = [
            (0, "just now"),
            (30, "30 seconds ago"),
            (60, "1 minute ago"),
            (7300, "2 hours ago"),
            (200_000, "2 days ago"),
            (-10, "just now"),
        ];
        for (d, want) in ages {
            assert_eq!(ago(1_000_000 - d, 1_000_000), want, "{d}");
        }
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
