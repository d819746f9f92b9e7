//! Absolute `http://` and `https://` URLs, checked the same way wherever one is taken: the
//! API endpoint, an image URL to ingest, the public URL of a webhook receiver.

use std::fmt;

/// An absolute `http://` or `https://` URL with a host. [`Display`](fmt::Display) gives the
/// text it was parsed from (trimmed); [`Debug`](fmt::Debug) hides a password in it.
///
/// ```
/// use imggo_core::url::HttpUrl;
///
/// let url = HttpUrl::parse("http://127.0.0.1:8080/api").unwrap();
/// assert!(url.is_loopback());
/// assert!(url.has_path());
/// assert_eq!(url.port(), Some(8080));
/// assert!(HttpUrl::parse("ftp://example.com").is_err());
/// assert!(HttpUrl::parse("https://").is_err());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct HttpUrl {
    text: String,
    uri: http::Uri,
}

/// Why a text is not an absolute http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// It does not start with `http://` or `https://`.
    #[error("must start with http:// or https://")]
    Scheme,
    /// It has no host after the scheme.
    #[error("has no host")]
    NoHost,
    /// It is not a URL at all (spaces, stray characters).
    #[error("is not a valid URL")]
    Invalid,
}

impl HttpUrl {
    /// Parses `text` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let text = text.trim();
        let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(UrlError::Scheme);
        }
        let uri: http::Uri = text.parse().map_err(|_| {
            // `http://` and `https://` alone, or with only a path, have no host.
            let rest = &text[text.find("://").map_or(0, |i| i + 3)..];
            if rest.is_empty() || rest.starts_with('/') {
                UrlError::NoHost
            } else {
                UrlError::Invalid
            }
        })?;
        if uri.host().is_none_or(str::is_empty) {
            return Err(UrlError::NoHost);
        }
        Ok(Self {
            text: text.to_owned(),
            uri,
        })
    }

    /// The host, without the brackets of an IPv6 address and without user info.
    pub fn host(&self) -> &str {
        let host = self.uri.host().unwrap_or_default();
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host)
    }

    /// The port, when the URL names one.
    pub fn port(&self) -> Option<u16> {
        self.uri.port_u16()
    }

    /// Whether the host is `localhost` or a loopback address: only this machine can
    /// reach it.
    pub fn is_loopback(&self) -> bool {
        let host = self.host();
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// Whether there is a path beyond `/` (or a query).
    pub fn has_path(&self) -> bool {
        self.uri
            .path_and_query()
            .is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty())
    }

    /// The query string, when there is one.
    pub fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    /// The URL as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HttpUrl")
            .field(&crate::redact_url(&self.text))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_errors() {
        let u = HttpUrl::parse("  https://user:pw@[::1]:9/x?y=1 ").unwrap();
        assert_eq!(u.host(), "::1");
        assert_eq!(u.port(), Some(9));
        assert!(u.is_loopback() && u.has_path());
        assert_eq!(u.query(), Some("y=1"));
        assert_eq!(u.as_str(), "https://user:pw@[::1]:9/x?y=1");
        assert!(!format!("{u:?}").contains("pw"));
        let plain = HttpUrl::parse("HTTP://Example.com/").unwrap();
        assert!(!plain.is_loopback() && !plain.has_path());
        assert!(HttpUrl::parse("http://localhost:1").unwrap().is_loopback());
        assert_eq!(HttpUrl::parse("example.com"), Err(UrlError::Scheme));
        assert_eq!(HttpUrl::parse("file:///etc/passwd"), Err(UrlError::Scheme));
        assert_eq!(HttpUrl::parse("http://"), Err(UrlError::NoHost));
        assert_eq!(HttpUrl::parse("https:///path"), Err(UrlError::NoHost));
        assert_eq!(HttpUrl::parse("http://a b/"), Err(UrlError::Invalid));
        assert_eq!(HttpUrl::parse(""), Err(UrlError::Scheme));
    }
}
