//! `--since` values: a duration back from now (`30m`, `12h`, `7d`, `90s`)
//! or an RFC 3339 time (`2026-12-01T00:00:00Z`). Pure; `now` is passed in.

use chrono::{DateTime, Duration, Utc};

/// The furthest back a relative `--since` reaches (ten years).
const MAX_DAYS: i64 = 3650;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--since takes a duration such as 30m, 12h or 7d (s, m, h, d; up to {MAX_DAYS}d), or a time \
     such as 2026-12-01T00:00:00Z"
)]
pub struct BadSince;

pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, BadSince> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or(BadSince)?;
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits.parse().map_err(|_| BadSince)?;
    let seconds_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(BadSince),
    };
    let seconds = n.checked_mul(seconds_per).ok_or(BadSince)?;
    if seconds > MAX_DAYS * 86_400 {
        return Err(BadSince);
    }
    Ok(now - Duration::seconds(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        let now = DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let at = |s: &str| parse_since(s, now).map(|t| t.to_rfc3339());
        assert_eq!(at("30m"), Ok("2026-12-03T11:30:00+00:00".into()));
        assert_eq!(at("2d"), Ok("2026-12-01T12:00:00+00:00".into()));
        assert_eq!(at(" 90s "), Ok("2026-12-03T11:58:30+00:00".into()));
        assert_eq!(
            at("2026-12-01T00:00:00Z"),
            Ok("2026-12-01T00:00:00+00:00".into())
        );
        for bad in [
            "",
            "h",
            "5",
            "5w",
            "-5m",
            "99999999999999999999d",
            "3651d",
            "1 h",
        ] {
            assert_eq!(parse_since(bad, now), Err(BadSince), "{bad:?}");
        }
    }
}
