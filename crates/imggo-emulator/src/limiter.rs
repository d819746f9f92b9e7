//! Per-user ingest limits as the service applies them: a monthly quota, a minimum gap
//! between ingests, and a per-minute token bucket. Check, then increment.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::Limits;

/// The `X-RateLimit-*` values of an ingest answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateHeaders {
    /// Monthly quota (`-1` = unlimited).
    pub limit: i64,
    /// Left this month (`-1` = unlimited).
    pub remaining: i64,
    /// Unix seconds of the end of the period.
    pub reset: u64,
}

/// Which limit refused an ingest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The monthly quota is used up.
    Monthly,
    /// Too soon after the previous ingest.
    MinGap,
    /// The per-minute bucket is empty.
    PerMinute,
}

/// The limiter's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Accepted and counted.
    Allow(RateHeaders),
    /// Refused; wait `retry_after` before trying again.
    Deny {
        headers: RateHeaders,
        retry_after: Duration,
        why: Refusal,
        used: u64,
    },
}

#[derive(Debug)]
struct UserState {
    used: u64,
    period_end: SystemTime,
    last_accept: Option<Instant>,
    tokens: f64,
    refilled_at: Instant,
}

/// The limits of every user.
#[derive(Debug)]
pub(crate) struct Limiter {
    limits: Limits,
    users: Mutex<HashMap<String, UserState>>,
}

impl Limiter {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            limits,
            users: Mutex::new(HashMap::new()),
        }
    }

    /// True when no limit is configured (ingest skips the lock entirely).
    fn unlimited(&self) -> bool {
        self.limits == Limits::default()
    }

    fn burst(&self) -> f64 {
        f64::from(self.limits.burst.or(self.limits.rpm).unwrap_or(1).max(1))
    }

    /// Checks `user`'s limits at `now` and counts the ingest when allowed.
    pub(crate) fn check(&self, user: &str, now: Instant, wall: SystemTime) -> Decision {
        if self.unlimited() {
            return Decision::Allow(RateHeaders {
                limit: -1,
                remaining: -1,
                reset: unix(month_end(wall)),
            });
        }
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let st = match users.get_mut(user) {
            Some(st) => st,
            None => users.entry(user.to_owned()).or_insert(UserState {
                used: 0,
                period_end: month_end(wall),
                last_accept: None,
                tokens: self.burst(),
                refilled_at: now,
            }),
        };
        if wall >= st.period_end {
            st.used = 0;
            st.period_end = month_end(wall);
        }
        if let Some(rpm) = self.limits.rpm {
            let rate = f64::from(rpm) / 60.0;
            let dt = now.saturating_duration_since(st.refilled_at).as_secs_f64();
            st.tokens = (st.tokens + dt * rate).min(self.burst());
            st.refilled_at = now;
        }
        let headers = |used: u64| match self.limits.monthly_quota {
            Some(q) => RateHeaders {
                limit: q as i64,
                remaining: q.saturating_sub(used) as i64,
                reset: unix(st.period_end),
            },
            None => RateHeaders {
                limit: -1,
                remaining: -1,
                reset: unix(st.period_end),
            },
        };
        let deny = |why, retry_after: Duration| Decision::Deny {
            headers: headers(st.used),
            retry_after,
            why,
            used: st.used,
        };
        if let Some(q) = self.limits.monthly_quota {
            if st.used >= q {
                let left = st.period_end.duration_since(wall).unwrap_or(Duration::ZERO);
                return deny(Refusal::Monthly, left);
            }
        }
        if let (Some(gap), Some(last)) = (self.limits.min_gap, st.last_accept) {
            let since = now.saturating_duration_since(last);
            if since < gap {
                return deny(Refusal::MinGap, gap - since);
            }
        }
        if let Some(rpm) = self.limits.rpm {
            if st.tokens < 1.0 {
                let rate = f64::from(rpm) / 60.0;
                return deny(
                    Refusal::PerMinute,
                    Duration::from_secs_f64((1.0 - st.tokens) / rate),
                );
            }
            st.tokens -= 1.0;
        }
        st.used += 1;
        st.last_accept = Some(now);
        Decision::Allow(headers(st.used))
    }

    /// Empties every user's monthly count.
    pub(crate) fn start_new_period(&self) {
        for st in self
            .users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values_mut()
        {
            st.used = 0;
        }
    }

    /// `(used, monthly limit or -1)` for `GET /api/user/usage`.
    pub(crate) fn usage(&self, user: &str) -> (u64, i64) {
        let used = self
            .users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
            .map_or(0, |s| s.used);
        let limit = self.limits.monthly_quota.map_or(-1, |q| q as i64);
        (used, limit)
    }

    /// The configured minimum gap in seconds (0 when none).
    pub(crate) fn min_gap_secs(&self) -> f64 {
        self.limits.min_gap.map_or(0.0, |g| g.as_secs_f64())
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The start of the next calendar month (UTC) after `now`.
pub(crate) fn month_end(now: SystemTime) -> SystemTime {
    let text = imggo_core::time::format_rfc3339(now);
    let year: i64 = text[0..4].parse().unwrap_or(1970);
    let month: u32 = text[5..7].parse().unwrap_or(1);
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    imggo_core::time::parse_rfc3339(&format!("{y:04}-{m:02}-01T00:00:00Z"))
        .unwrap_or(now + Duration::from_secs(30 * 86_400))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(limits: Limits) -> Limiter {
        Limiter::new(limits)
    }

    #[test]
    fn month_end_rolls_over_years() {
        let t = imggo_core::time::parse_rfc3339("2026-12-31T23:00:00Z").unwrap();
        assert_eq!(
            imggo_core::time::format_rfc3339(month_end(t)),
            "2027-01-01T00:00:00.000Z"
        );
        let t = imggo_core::time::parse_rfc3339("2026-02-03T00:00:00Z").unwrap();
        assert_eq!(
            imggo_core::time::format_rfc3339(month_end(t)),
            "2026-03-01T00:00:00.000Z"
        );
    }

    #[test]
    fn monthly_quota_counts_down_then_refuses() {
        let l = limiter(Limits {
            monthly_quota: Some(2),
            ..Limits::default()
        });
        let (now, wall) = (Instant::now(), SystemTime::now());
        let Decision::Allow(h) = l.check("u", now, wall) else {
            panic!("first ingest refused")
        };
        assert_eq!((h.limit, h.remaining), (2, 1));
        assert!(matches!(l.check("u", now, wall), Decision::Allow(h) if h.remaining == 0));
        match l.check("u", now, wall) {
            Decision::Deny {
                why, retry_after, ..
            } => {
                assert_eq!(why, Refusal::Monthly);
                assert!(retry_after > Duration::ZERO);
            }
            d => panic!("{d:?}"),
        }
        // Another user has its own quota.
        assert!(matches!(l.check("v", now, wall), Decision::Allow(_)));
        assert_eq!(l.usage("u"), (2, 2));
    }

    #[test]
    fn min_gap_and_bucket() {
        let l = limiter(Limits {
            min_gap: Some(Duration::from_millis(100)),
            ..Limits::default()
        });
        let (t0, wall) = (Instant::now(), SystemTime::now());
        assert!(matches!(l.check("u", t0, wall), Decision::Allow(_)));
        match l.check("u", t0 + Duration::from_millis(40), wall) {
            Decision::Deny {
                why, retry_after, ..
            } => {
                assert_eq!(why, Refusal::MinGap);
                assert_eq!(retry_after, Duration::from_millis(60));
            }
            d => panic!("{d:?}"),
        }
        assert!(matches!(
            l.check("u", t0 + Duration::from_millis(100), wall),
            Decision::Allow(_)
        ));

        // 60 rpm, burst 2: two at once, the third waits one second.
        let l = limiter(Limits {
            rpm: Some(60),
            burst: Some(2),
            ..Limits::default()
        });
        assert!(matches!(l.check("u", t0, wall), Decision::Allow(_)));
        assert!(matches!(l.check("u", t0, wall), Decision::Allow(_)));
        match l.check("u", t0, wall) {
            Decision::Deny {
                why, retry_after, ..
            } => {
                assert_eq!(why, Refusal::PerMinute);
                assert!((retry_after.as_secs_f64() - 1.0).abs() < 1e-6);
            }
            d => panic!("{d:?}"),
        }
        assert!(matches!(
            l.check("u", t0 + Duration::from_secs(1), wall),
            Decision::Allow(_)
        ));
    }
}
