//! A string that never shows itself in `Debug` or `Display`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An API key or webhook secret. `Debug` and `Display` print `[redacted]`; the value is
/// reachable only through [`Secret::expose`], so it cannot end up in logs by accident.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send or compare it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// A URL fit for an error message or a log: the password of its user info is replaced by
/// `***` (`redis://user:secret@host` → `redis://user:***@host`, `redis://:secret@host` →
/// `redis://:***@host`), and user info without a colon, which may itself be a token,
/// becomes `***`. Everything before the last `@` of what follows `://` counts as user
/// info, so a password holding `/` or `@` is hidden whole. Text without `://` or `@` is
/// returned as it is.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let (head, rest) = url.split_at(scheme_end + 3);
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let (userinfo, host) = (&rest[..at], &rest[at + 1..]);
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{head}{user}:***@{host}"),
        None => format!("{head}***@{host}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords() {
        let same = "redis://127.0.0.1:6379/0";
        assert_eq!(redact_url(same), same);
        assert_eq!(redact_url("memory"), "memory");
        assert_eq!(redact_url("redis://:hunter2@h:1/"), "redis://:***@h:1/");
        assert_eq!(redact_url("rediss://u:p@ss@h/2"), "rediss://u:***@h/2");
        assert_eq!(redact_url("redis://token@h"), "redis://***@h");
        assert_eq!(redact_url("redis://:pa/ss@h/0"), "redis://:***@h/0");
        assert_eq!(redact_url("redis://u:p:q@h"), "redis://u:***@h");
        for url in [
            "redis://:hunter2@h:1/",
            "rediss://u:hunter2@x@h/2",
            "redis://hunter2@h",
        ] {
            assert!(!redact_url(url).contains("hunter2"), "{url}");
        }
    }

    #[test]
    fn never_printed() {
        let s = Secret::new("imggo_supersecret");
        assert!(!format!("{s:?}").contains("supersecret"));
        assert!(!format!("{s}").contains("supersecret"));
        assert_eq!(s.expose(), "imggo_supersecret");
    }
}
