//! Rate-limit facts read from response headers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A count that may be unlimited: the service sends `-1` for "no limit".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quota {
    /// No limit (`-1` on the wire).
    Unlimited,
    /// A finite count.
    Limited(u64),
}

impl Quota {
    /// Parses a header value: an integer, `-1` meaning unlimited.
    pub fn parse(v: &str) -> Option<Self> {
        let n: i64 = v.trim().parse().ok()?;
        Some(if n < 0 {
            Self::Unlimited
        } else {
            Self::Limited(n as u64)
        })
    }

    /// The finite value, or `None` when unlimited.
    pub fn finite(self) -> Option<u64> {
        match self {
            Self::Unlimited => None,
            Self::Limited(n) => Some(n),
        }
    }
}

/// What a response said about rate limits: `X-RateLimit-Limit`, `X-RateLimit-Remaining`,
/// `X-RateLimit-Reset` and `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RateLimitInfo {
    /// Requests allowed in the current period.
    pub limit: Option<Quota>,
    /// Requests left in the current period.
    pub remaining: Option<Quota>,
    /// When the period ends.
    pub reset: Option<SystemTime>,
    /// How long the server asked to wait before the next request.
    pub retry_after: Option<Duration>,
}

/// Values of `X-RateLimit-Reset` below this are taken as "seconds from now", above it as
/// a Unix timestamp (it is 2001-09-09, so no real timestamp is smaller).
const EPOCH_THRESHOLD: u64 = 1_000_000_000;

impl RateLimitInfo {
    /// Reads the headers through `header` (a lookup by lower-case name). `now` resolves
    /// relative values. Returns `None` when none of the four headers is present.
    pub fn from_headers<'a>(
        header: impl Fn(&str) -> Option<&'a str>,
        now: SystemTime,
    ) -> Option<Self> {
        let limit = header("x-ratelimit-limit").and_then(Quota::parse);
        let remaining = header("x-ratelimit-remaining").and_then(Quota::parse);
        let reset = header("x-ratelimit-reset").and_then(|v| parse_reset(v, now));
        let retry_after = header("retry-after").and_then(|v| parse_retry_after(v, now));
        let info = Self {
            limit,
            remaining,
            reset,
            retry_after,
        };
        (info != Self::default()).then_some(info)
    }

    /// Fraction of the period's budget already used (0.0 to 1.0); `None` when unlimited
    /// or unknown.
    pub fn usage(&self) -> Option<f64> {
        let limit = self.limit?.finite()?;
        let remaining = self.remaining?.finite()?;
        if limit == 0 {
            return Some(1.0);
        }
        Some((limit.saturating_sub(remaining)) as f64 / limit as f64)
    }

    /// Time left until the period resets, seen from `now`.
    pub fn reset_in(&self, now: SystemTime) -> Option<Duration> {
        self.reset
            .map(|r| r.duration_since(now).unwrap_or(Duration::ZERO))
    }
}

/// The furthest ahead a period reset is believed: longer than any quota period (a month,
/// a year of daily resets is not a thing). A header naming a later time, or one that does
/// not fit a [`SystemTime`], is ignored rather than letting a proxy park the client.
pub const MAX_RESET_AHEAD: Duration = Duration::from_secs(400 * 24 * 3600);

/// The longest `Retry-After` taken as given; longer waits are clamped to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(1_000_000_000);

fn parse_reset(v: &str, now: SystemTime) -> Option<SystemTime> {
    let v = v.trim();
    let at = if let Ok(n) = v.parse::<f64>() {
        if !n.is_finite() || n < 0.0 {
            return None;
        }
        // `try_from_secs_f64` refuses what does not fit a Duration (1e20, say).
        let d = Duration::try_from_secs_f64(n).ok()?;
        if d.as_secs() < EPOCH_THRESHOLD {
            now.checked_add(d)?
        } else {
            UNIX_EPOCH.checked_add(d)?
        }
    } else {
        httpdate::parse_http_date(v).ok()?
    };
    let horizon = now.checked_add(MAX_RESET_AHEAD)?;
    (at <= horizon).then_some(at)
}

/// Parses `Retry-After`: delta seconds (integer or decimal) or an HTTP-date. Negative,
/// NaN, infinite and non-numeric values give `None`; waits longer than
/// [`MAX_RETRY_AFTER`] are clamped to it.
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(n) = v.parse::<f64>() {
        if !(n.is_finite() && n >= 0.0) {
            return None;
        }
        return Some(
            Duration::try_from_secs_f64(n).map_or(MAX_RETRY_AFTER, |d| d.min(MAX_RETRY_AFTER)),
        );
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// How serious an alert is: rate-limit usage near its limit (the pacer) and the batch
/// metrics' alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth a look.
    Warning,
    /// Act now.
    Critical,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pairs: &[(&str, &str)], now: SystemTime) -> Option<RateLimitInfo> {
        RateLimitInfo::from_headers(
            |n| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v),
            now,
        )
    }

    #[test]
    fn parses_all_headers() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let i = info(
            &[
                ("x-ratelimit-limit", "1000"),
                ("x-ratelimit-remaining", "250"),
                ("x-ratelimit-reset", "1700000060"),
                ("retry-after", "7"),
            ],
            now,
        )
        .unwrap();
        assert_eq!(i.limit, Some(Quota::Limited(1000)));
        assert_eq!(i.remaining, Some(Quota::Limited(250)));
        assert_eq!(i.reset_in(now), Some(Duration::from_secs(60)));
        assert_eq!(i.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(i.usage(), Some(0.75));
    }

    #[test]
    fn minus_one_is_unlimited() {
        let now = SystemTime::now();
        let i = info(
            &[("x-ratelimit-limit", "-1"), ("x-ratelimit-remaining", "-1")],
            now,
        )
        .unwrap();
        assert_eq!(i.limit, Some(Quota::Unlimited));
        assert_eq!(i.usage(), None);
    }

    #[test]
    fn retry_after_http_date() {
        let now = UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        let i = info(&[("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")], now).unwrap();
        assert_eq!(i.retry_after, Some(Duration::from_secs(30)));
        // A date in the past means "now".
        let i = info(&[("retry-after", "Wed, 21 Oct 2015 07:00:00 GMT")], now).unwrap();
        assert_eq!(i.retry_after, Some(Duration::ZERO));
    }

    #[test]
    fn absent_or_garbage_headers() {
        assert_eq!(info(&[], SystemTime::now()), None);
        assert_eq!(info(&[("retry-after", "soon")], SystemTime::now()), None);
        assert_eq!(info(&[("retry-after", "-3")], SystemTime::now()), None);
    }

    #[test]
    fn absurd_values_never_panic() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for v in [
            "1e20",
            "1e300",
            "1e400",
            "-1e20",
            "-5",
            "NaN",
            "nan",
            "inf",
            "-inf",
            "infinity",
            "18446744073709551616",
            "9223372036854775807",
            "1e18",
            "0x10",
            "soon",
            "",
            " ",
            "1.7976931348623157e308",
            "-0",
        ] {
            let i = info(&[("x-ratelimit-reset", v), ("retry-after", v)], now);
            if let Some(i) = i {
                // Whatever was kept is usable arithmetic for a pacer.
                if let Some(d) = i.reset_in(now) {
                    assert!(d <= MAX_RESET_AHEAD, "{v}: {d:?}");
                    let _ = std::time::Instant::now() + d;
                }
                if let Some(d) = i.retry_after {
                    assert!(d <= MAX_RETRY_AFTER, "{v}: {d:?}");
                    let _ = std::time::Instant::now() + d;
                }
            }
        }
        // A reset beyond the horizon is ignored; Retry-After is clamped.
        let i = info(
            &[("x-ratelimit-reset", "1e20"), ("retry-after", "1e20")],
            now,
        )
        .unwrap();
        assert_eq!(i.reset, None);
        assert_eq!(i.retry_after, Some(MAX_RETRY_AFTER));
        let i = info(&[("x-ratelimit-reset", "1e18")], now);
        assert_eq!(i, None);
        // Plain values still work.
        let i = info(&[("x-ratelimit-reset", "30.5")], now).unwrap();
        assert_eq!(i.reset_in(now), Some(Duration::from_millis(30_500)));
    }
}
