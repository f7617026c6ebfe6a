//! Turning HTTP outcomes into the typed [`BackendError`]s the host acts on.
//!
//! | outcome | kind |
//! | --- | --- |
//! | 401, 403 | `auth` (not retried) |
//! | 429 | `rate_limited`, `retry_after_ms` from `Retry-After` |
//! | 408, 5xx, refused or reset connections | `unavailable` |
//! | other 4xx | `invalid_request` (`context_exceeded` when the provider says so) |
//! | deadline passed | `timeout` |
//! | malformed or empty answer | `invalid_response`, with an excerpt of the body |
//!
//! Messages never contain request headers, so API keys cannot leak through them.

use clemhost_plugin_sdk::serde_json::{json, Value};
use clemhost_plugin_sdk::{BackendError, ErrorKind};
use std::time::SystemTime;

/// The most characters of a response body quoted in an error.
pub const EXCERPT_CHARS: usize = 300;

/// The start of a body, as lossy UTF-8, with credentials redacted (a server
/// may echo the request's headers), cut at [`EXCERPT_CHARS`] characters.
pub fn excerpt(body: &[u8]) -> String {
    let lossy = String::from_utf8_lossy(body);
    let text = clemhost_plugin_sdk::redact::redact(&lossy);
    let mut out: String = text.chars().take(EXCERPT_CHARS).collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Reads a `Retry-After` value: delay seconds or an HTTP date (relative to `now`).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<u64> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some((secs * 1000.0).round() as u64);
        }
        return None;
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(now)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    )
}

/// Phrases with which providers say that the prompt does not fit the context.
const CONTEXT_PHRASES: [&str; 5] = [
    "context_length_exceeded",
    "maximum context length",
    "context window",
    "prompt is too long",
    "exceeds the context",
];

/// The error for a non-success HTTP status.
///
/// `retry_after` is the raw `Retry-After` header, if the answer had one.
pub fn status_error(
    provider: &str,
    status: u16,
    retry_after: Option<&str>,
    body: &[u8],
) -> BackendError {
    let quoted = excerpt(body);
    let details = json!({ "status": status, "body": quoted });
    let err = match status {
        401 | 403 => BackendError::new(
            ErrorKind::Auth,
            format!(
                "{provider} rejected the credentials (HTTP {status}); check the api_key in the key.json section: {quoted}"
            ),
        ),
        429 => {
            let mut e = BackendError::new(
                ErrorKind::RateLimited,
                format!("{provider} is rate limiting (HTTP 429): {quoted}"),
            );
            if let Some(ms) = retry_after.and_then(|v| parse_retry_after(v, SystemTime::now())) {
                e = e.with_retry_after_ms(ms);
            }
            e
        }
        408 | 500..=599 => BackendError::new(
            ErrorKind::Unavailable,
            format!("{provider} is unavailable (HTTP {status}): {quoted}"),
        ),
        _ => {
            let lower = quoted.to_lowercase();
            let kind = if CONTEXT_PHRASES.iter().any(|p| lower.contains(p)) {
                ErrorKind::ContextExceeded
            } else {
                ErrorKind::InvalidRequest
            };
            BackendError::new(
                kind,
                format!("{provider} refused the request (HTTP {status}): {quoted}"),
            )
        }
    };
    err.with_details(details)
}

/// An answer that cannot be used (bad JSON, missing fields, no choices).
pub fn invalid_response(provider: &str, what: &str, body: &[u8]) -> BackendError {
    let quoted = excerpt(body);
    BackendError::new(
        ErrorKind::InvalidResponse,
        format!("{provider} sent an unusable answer ({what}): {quoted}"),
    )
    .with_details(json!({ "body": quoted }))
}

/// Like [`invalid_response`] for an already parsed JSON answer.
pub fn invalid_json_response(provider: &str, what: &str, body: &Value) -> BackendError {
    invalid_response(provider, what, body.to_string().as_bytes())
}

/// The error for a failed connection or transfer (no HTTP status).
pub fn transport_error(provider: &str, err: &reqwest::Error) -> BackendError {
    // reqwest's Display names the URL, never headers; strip the URL anyway so
    // that query strings cannot carry anything sensitive into logs.
    let err_text = source_chain(err);
    if err.is_timeout() {
        return BackendError::new(
            ErrorKind::Timeout,
            format!("{provider} did not answer in time: {err_text}"),
        );
    }
    if err.is_builder() {
        return BackendError::invalid_request(format!(
            "could not build the request to {provider}: {err_text}"
        ));
    }
    if err.is_decode() || err.is_body() {
        return BackendError::new(
            ErrorKind::Unavailable,
            format!("the connection to {provider} broke while reading the answer: {err_text}"),
        );
    }
    BackendError::new(
        ErrorKind::Unavailable,
        format!("could not reach {provider}: {err_text}"),
    )
}

/// The messages of an error and its sources, joined, without the URL.
pub fn source_chain(err: &reqwest::Error) -> String {
    let mut parts = vec![display_without_url(err)];
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// reqwest's own message with the URL replaced by `<url>`.
fn display_without_url(err: &reqwest::Error) -> String {
    match err.url() {
        Some(url) => err.to_string().replace(url.as_str(), "<url>"),
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(7000));
        assert_eq!(parse_retry_after(" 1.5 ", now), Some(1500));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&later, now), Some(30_000));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(0));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn statuses_map_to_kinds() {
        let kind = |s, b: &str| status_error("p", s, None, b.as_bytes()).kind;
        assert_eq!(kind(401, ""), ErrorKind::Auth);
        assert_eq!(kind(403, ""), ErrorKind::Auth);
        assert_eq!(kind(429, ""), ErrorKind::RateLimited);
        assert_eq!(kind(500, ""), ErrorKind::Unavailable);
        assert_eq!(kind(503, ""), ErrorKind::Unavailable);
        assert_eq!(kind(400, "{\"error\":\"bad\"}"), ErrorKind::InvalidRequest);
        assert_eq!(
            kind(400, "This model's maximum context length is 8192 tokens"),
            ErrorKind::ContextExceeded
        );
        let e = status_error("p", 429, Some("2"), b"slow down");
        assert_eq!(e.retry_after_ms, Some(2000));
        assert!(e.message.contains("slow down"));
    }

    #[test]
    fn a_body_echoing_the_request_headers_loses_the_credentials() {
        let body = br#"{"error": "bad request", "echo": {"authorization": "Bearer sk-echoed-SECRET-123"}}"#;
        let e = status_error("p", 400, None, body);
        let all = format!("{} {}", e.message, e.details.clone().unwrap_or_default());
        assert!(!all.contains("sk-echoed-SECRET-123"), "{all}");
        assert!(all.contains("Bearer ***"), "{all}");
    }

    #[test]
    fn excerpts_are_cut() {
        let long = "x".repeat(1000);
        let e = excerpt(long.as_bytes());
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt(b"short"), "short");
    }
}
