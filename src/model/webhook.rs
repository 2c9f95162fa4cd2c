//! Decisions about users' webhooks and Kiln's own hook URL, without I/O:
//! which URLs are accepted, which addresses a webhook may reach, when a
//! failed delivery is tried again.
//!
//! A webhook URL is typed by a user and fetched by the server, so it is a
//! way into the server's own network (SSRF): by default a target that is
//! loopback, link-local (cloud metadata at 169.254.169.254), private or
//! otherwise not globally routable is refused (the rule tenants'
//! kubeconfigs follow, `k8s::kubeconfig::forbidden`), both when the URL is
//! saved and again on every connection (a name may resolve differently
//! later).

use std::net::IpAddr;
use std::time::Duration;

/// The longest webhook URL kept.
pub const MAX_URL: usize = 2000;

/// Deliveries tried per event before it is given up (the last error shows).
pub const MAX_ATTEMPTS: u32 = 5;

/// A webhook URL, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    pub https: bool,
    /// The host as written (a name, or an address without brackets).
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the URL is longer than {MAX_URL} characters")]
    TooLong,
    #[error("not a URL: {0}")]
    Malformed(String),
    #[error("the URL must start with http:// or https://")]
    Scheme,
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL must not carry a user name or password")]
    UserInfo,
    #[error(
        "{0} is a loopback, link-local or private address; webhooks may only reach public \
         hosts (the operator can allow private ones: agents.webhook_allow_private_hosts)"
    )]
    Private(IpAddr),
}

/// Parses a webhook URL (`http` or `https`, a host, no credentials).
pub fn parse_url(text: &str) -> Result<WebhookUrl, UrlError> {
    let text = text.trim();
    if text.len() > MAX_URL {
        return Err(UrlError::TooLong);
    }
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(UrlError::Malformed(
            "it holds spaces or control characters".into(),
        ));
    }
    let lower = text.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(UrlError::Scheme);
    }
    let uri: http::Uri = text
        .parse()
        .map_err(|e: http::uri::InvalidUri| UrlError::Malformed(e.to_string()))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(UrlError::Scheme),
    };
    let authority = uri.authority().ok_or(UrlError::NoHost)?;
    if authority.as_str().contains('@') {
        return Err(UrlError::UserInfo);
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into());
    Ok(WebhookUrl {
        https,
        host,
        port,
        path,
    })
}

/// Whether `text` is an `http://` URL (Kiln's own hook URL: plain HTTP to
/// its in-cluster listener).
pub fn is_plain_http_url(text: &str) -> bool {
    matches!(parse_url(text), Ok(u) if !u.https)
}

/// What to do after a delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Try again after this long.
    Retry(Duration),
    /// Give up (a 4xx: the target refuses it; or attempts are used up).
    GiveUp,
}

/// The outcome of attempt number `attempt` (1-based): `status` is the HTTP
/// status, `None` when no answer came (connection refused, timeout). 5xx,
/// 429 and no answer are retried with doubling delays from `base`.
pub fn after_attempt(status: Option<u16>, attempt: u32, base: Duration) -> Delivery {
    let retryable = match status {
        Some(s) if (200..300).contains(&s) => return Delivery::Delivered,
        Some(s) => s >= 500 || s == 429,
        None => true,
    };
    if !retryable || attempt >= MAX_ATTEMPTS {
        return Delivery::GiveUp;
    }
    Delivery::Retry(base.saturating_mul(1 << (attempt - 1).min(10)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_or_https_with_a_host_and_no_credentials() {
        let u = parse_url("https://hooks.example.com/x?y=1").unwrap();
        assert_eq!(
            u,
            WebhookUrl {
                https: true,
                host: "hooks.example.com".into(),
                port: 443,
                path: "/x?y=1".into()
            }
        );
        let u = parse_url("http://[::1]:8080").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 8080, "/")
        );
        assert_eq!(parse_url("ftp://x/"), Err(UrlError::Scheme));
        assert_eq!(parse_url("example.com/x"), Err(UrlError::Scheme));
        assert_eq!(parse_url("http://u:p@x/"), Err(UrlError::UserInfo));
        assert!(matches!(
            parse_url("http://a b/"),
            Err(UrlError::Malformed(_))
        ));
        assert!(parse_url("http://x/\n").is_ok(), "trimmed");
        assert_eq!(
            parse_url(&format!("http://x/{}", "a".repeat(MAX_URL))),
            Err(UrlError::TooLong)
        );
        assert!(is_plain_http_url(
            "http://kiln.kiln.svc:9090/hooks/v1/event"
        ));
        assert!(!is_plain_http_url("https://kiln/"));
    }

    #[test]
    fn server_errors_and_silence_are_retried_with_doubling_delays() {
        let base = Duration::from_millis(100);
        assert_eq!(after_attempt(Some(204), 1, base), Delivery::Delivered);
        assert_eq!(after_attempt(Some(500), 1, base), Delivery::Retry(base));
        assert_eq!(after_attempt(None, 2, base), Delivery::Retry(base * 2));
        assert_eq!(after_attempt(Some(429), 3, base), Delivery::Retry(base * 4));
        assert_eq!(after_attempt(Some(404), 1, base), Delivery::GiveUp);
        assert_eq!(
            after_attempt(Some(503), MAX_ATTEMPTS, base),
            Delivery::GiveUp
        );
    }
}
