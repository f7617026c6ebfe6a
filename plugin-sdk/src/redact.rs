//! Taking credentials out of text before it is printed or written: pure
//! functions, no I/O, used by the host and by plugins alike.
//!
//! [`redact`] replaces with [`MASK`]:
//! - the password (or the whole user part without one) of a URL's user
//!   information: `http://user:PASSWORD@host` → `http://user:***@host`;
//! - the values of URL query parameters that carry keys (`key`, `api_key`,
//!   `token`, `access_token`, ...);
//! - the values of headers that carry credentials, in the shapes servers
//!   echo them (`authorization: Bearer ...`, `"x-api-key": "..."`,
//!   `x-goog-api-key=...`), keeping the scheme word (`Bearer ***`);
//! - any `Bearer <token>`;
//! - tokens in the shapes of well-known API keys (`sk-...`, `sk-ant-...`,
//!   `AIza...`, `hf_...`, ...) wherever they stand, since a server may echo
//!   the key itself in an error message ("invalid key sk-...").
//!
//! ```
//! use clemhost_plugin_sdk::redact::redact;
//! assert_eq!(redact("http://me:hunter2@h/v1"), "http://me:***@h/v1");
//! assert_eq!(redact(r#"{"authorization":"Bearer sk-1"}"#), r#"{"authorization":"Bearer ***"}"#);
//! assert_eq!(redact("nothing secret"), "nothing secret");
//! ```

use std::borrow::Cow;

/// What a redacted credential is replaced with.
pub const MASK: &str = "***";

/// Header names whose values are credentials (lower case).
const SECRET_HEADERS: &[&str] = &[
    "proxy-authorization",
    "authorization",
    "x-goog-api-key",
    "x-api-key",
    "api-key",
    "api_key",
    "apikey",
    "x-auth-token",
    "cookie",
];

/// URL query parameters whose values are credentials (lower case).
const SECRET_PARAMS: &[&str] = &[
    "key",
    "api_key",
    "apikey",
    "api-key",
    "token",
    "access_token",
    "auth",
    "password",
    "secret",
    "sig",
    "signature",
];

/// Prefixes of well-known API keys: a token starting with one of these and
/// followed by at least [`KEY_TAIL`] key characters is masked anywhere.
const KEY_PREFIXES: &[&str] = &[
    "sk-", "sk_", "hf_", "aiza", "gsk_", "xai-", "r8_", "pplx-", "nvapi-", "csk-",
];

/// The fewest key characters after a [`KEY_PREFIXES`] prefix that count as a key.
const KEY_TAIL: usize = 16;

/// Authorization schemes kept in front of the masked value.
const SCHEMES: &[&str] = &["bearer", "basic", "token", "digest"];

fn ends_value(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b',' | b'}' | b']' | b'\\' | b'>')
}

/// Text with every credential shape above replaced by [`MASK`]; borrowed
/// when nothing was found.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let lower = text.to_ascii_lowercase();
    url_spans(text, &mut spans);
    header_spans(&lower, &mut spans);
    bearer_spans(&lower, &mut spans);
    key_spans(&lower, &mut spans);
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in spans {
        if end <= at {
            continue;
        }
        let start = start.max(at);
        out.push_str(&text[at..start]);
        out.push_str(MASK);
        at = end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// Spans of user information and secret query values in URLs.
fn url_spans(text: &str, spans: &mut Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let auth_start = from + found + 3;
        // A `]` that closes an IPv6 literal (`http://[::1]:8000/v1?token=`)
        // is part of the URL, not the end of a quoted list around it.
        let mut end = auth_start;
        let mut in_brackets = false;
        while end < bytes.len() {
            match bytes[end] {
                b'[' => in_brackets = true,
                b']' if in_brackets => in_brackets = false,
                b if ends_value(b) => break,
                _ => {}
            }
            end += 1;
        }
        let url = &text[auth_start..end];
        let auth_len = url.find(['/', '?', '#']).unwrap_or(url.len());
        if let Some(at) = url[..auth_len].rfind('@') {
            let user_end = url[..at].find(':').map_or(0, |c| c + 1);
            if at > user_end {
                spans.push((auth_start + user_end, auth_start + at));
            } else if user_end > 1 {
                // `TOKEN:@host`: no password, so the user part is the secret.
                spans.push((auth_start, auth_start + user_end - 1));
            }
        }
        // Parameters of the query and of the fragment (`#access_token=...`).
        let q = url.find('?');
        let h = url.find('#');
        let mut sections = Vec::new();
        if let Some(q) = q.filter(|q| h.is_none_or(|h| *q < h)) {
            sections.push((q + 1, h.unwrap_or(url.len())));
        }
        if let Some(h) = h {
            sections.push((h + 1, url.len()));
        }
        for (from_rel, to_rel) in sections {
            let (start, stop) = (auth_start + from_rel, auth_start + to_rel);
            let mut pos = start;
            for pair in text[start..stop].split('&') {
                if let Some(eq) = pair.find('=') {
                    if secret_param(&pair[..eq].to_ascii_lowercase()) && eq + 1 < pair.len() {
                        spans.push((pos + eq + 1, pos + pair.len()));
                    }
                }
                pos += pair.len() + 1;
            }
        }
        from = end.max(auth_start);
    }
}

/// Whether a URL parameter of this (lower-case) name carries a credential:
/// one of [`SECRET_PARAMS`], or a name ending like one
/// (`X-Amz-Signature`, `x-amz-security-token`, `client_secret`).
fn secret_param(name: &str) -> bool {
    SECRET_PARAMS.contains(&name)
        || [
            "key",
            "token",
            "secret",
            "password",
            "signature",
            "credential",
        ]
        .iter()
        .any(|s| name.ends_with(s))
}

/// The end of a value starting at `start` (after an optional scheme word).
fn value_span(lower: &str, start: usize) -> Option<(usize, usize)> {
    let bytes = lower.as_bytes();
    let mut s = start;
    for scheme in SCHEMES {
        let rest = &lower[s..];
        if rest.starts_with(scheme)
            && bytes
                .get(s + scheme.len())
                .is_some_and(|b| *b == b' ' || *b == b'\t')
        {
            s += scheme.len();
            while s < bytes.len() && (bytes[s] == b' ' || bytes[s] == b'\t') {
                s += 1;
            }
            break;
        }
    }
    let mut e = s;
    while e < bytes.len() && !ends_value(bytes[e]) {
        e += 1;
    }
    (e > s).then_some((s, e))
}

/// Spans of header values: `name: value`, `"name": "value"`, `name=value`.
fn header_spans(lower: &str, spans: &mut Vec<(usize, usize)>) {
    let bytes = lower.as_bytes();
    for name in SECRET_HEADERS {
        let mut from = 0;
        while let Some(found) = lower[from..].find(name) {
            let start = from + found;
            from = start + name.len();
            // A whole name: not the tail or head of a longer word.
            let before = start.checked_sub(1).map(|i| bytes[i]);
            if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                continue;
            }
            let mut i = from;
            // The closing quote of a quoted name, possibly escaped
            // (`\"x-api-key\": ...` inside another JSON string).
            while bytes.get(i).is_some_and(|b| *b == b'\\') {
                i += 1;
            }
            let quoted = bytes.get(i).is_some_and(|b| *b == b'"' || *b == b'\'');
            if quoted {
                i += 1;
            }
            while bytes.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
                i += 1;
            }
            // `name: value`, `name=value`, or a quoted pair
            // (`["x-api-key", "..."]`, Python's `('x-api-key', '...')`).
            let separator = |b: &u8| *b == b':' || *b == b'=' || (quoted && *b == b',');
            if !bytes.get(i).is_some_and(separator) {
                continue;
            }
            i += 1;
            while bytes.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
                i += 1;
            }
            // A JSON string value, possibly escaped inside another string.
            while bytes.get(i).is_some_and(|b| *b == b'\\') {
                i += 1;
            }
            if bytes.get(i).is_some_and(|b| *b == b'"' || *b == b'\'') {
                i += 1;
            }
            if let Some(span) = value_span(lower, i) {
                spans.push(span);
            }
        }
    }
}

/// Spans of tokens shaped like well-known API keys ([`KEY_PREFIXES`]).
fn key_spans(lower: &str, spans: &mut Vec<(usize, usize)>) {
    let bytes = lower.as_bytes();
    let key_char = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    for prefix in KEY_PREFIXES {
        let mut from = 0;
        while let Some(found) = lower[from..].find(prefix) {
            let start = from + found;
            from = start + prefix.len();
            if start > 0 && key_char(bytes[start - 1]) {
                continue;
            }
            let mut end = from;
            while end < bytes.len() && key_char(bytes[end]) {
                end += 1;
            }
            if end - from >= KEY_TAIL {
                spans.push((start, end));
                from = end;
            }
        }
    }
}

/// Spans of `Bearer <token>` anywhere.
fn bearer_spans(lower: &str, spans: &mut Vec<(usize, usize)>) {
    let mut from = 0;
    while let Some(found) = lower[from..].find("bearer ") {
        let start = from + found;
        from = start + 7;
        if let Some(span) = value_span(lower, start) {
            spans.push(span);
        }
    }
}

/// [`redact`] applied to every string (and object key's value) inside a
/// JSON value, in place.
pub fn redact_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            if let Cow::Owned(r) = redact(s) {
                *s = r;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let lower = k.to_ascii_lowercase();
                if SECRET_HEADERS.contains(&lower.as_str()) {
                    if let Value::String(s) = v {
                        let keep = value_span(&s.to_ascii_lowercase(), 0).map_or(0, |(a, _)| a);
                        *s = format!("{}{MASK}", &s[..keep]);
                        continue;
                    }
                }
                redact_json(v);
            }
        }
        _ => {}
    }
}

/// Credential values shorter than this are not masked by their value: a
/// short value (`"x"`, `"test"`, `"none"`) would mask ordinary words of
/// every message. Shorter keys are masked only by their shape.
pub const MIN_SECRET_VALUE_LEN: usize = 8;

/// Whether a key.json field says where requests go or which certificates
/// they trust (an address or a path, shown in messages and not a secret).
fn is_setting_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.ends_with("url") || n == "api_base" || n == "ca_cert" || n == "insecure_skip_tls_verify"
}

/// The values of a key section to mask wherever they appear in text: every
/// string in it, nested objects and lists included, except address and
/// certificate settings (`base_url`, `*_url`, `api_base`, `ca_cert`) and
/// strings shorter than [`MIN_SECRET_VALUE_LEN`]. Longest first, so that a
/// value containing another is masked whole.
pub fn secret_values(section: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    fn collect(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) => {
                let s = s.trim();
                if s.chars().count() >= MIN_SECRET_VALUE_LEN && !out.iter().any(|o| o == s) {
                    out.push(s.to_string());
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
            serde_json::Value::Object(map) => map.values().for_each(|i| collect(i, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (k, v) in section {
        if !is_setting_field(k) {
            collect(v, &mut out);
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out
}

/// Replaces every occurrence of each of `secrets` (from [`secret_values`])
/// in `text` with [`MASK`]; borrowed when none occurs.
pub fn redact_values<'a>(text: &'a str, secrets: &[String]) -> Cow<'a, str> {
    let mut out = Cow::Borrowed(text);
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), MASK));
        }
    }
    out
}

/// [`redact_values`] applied to every string and object key inside a JSON
/// value, in place.
pub fn redact_values_json(value: &mut serde_json::Value, secrets: &[String]) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            if let Cow::Owned(r) = redact_values(s, secrets) {
                *s = r;
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| redact_values_json(i, secrets)),
        Value::Object(map) => {
            let old = std::mem::take(map);
            for (k, mut v) in old {
                redact_values_json(&mut v, secrets);
                map.insert(redact_values(&k, secrets).into_owned(), v);
            }
        }
        _ => {}
    }
}

/// A URL as it may be shown: [`redact`] of it, owned.
pub fn redact_url(url: &str) -> String {
    redact(url).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_information_in_urls() {
        assert_eq!(
            redact("base_url=http://user:PASSWORD@h:8000/v1"),
            "base_url=http://user:***@h:8000/v1"
        );
        assert_eq!(redact("https://TOKEN@h/v1"), "https://***@h/v1");
        assert_eq!(redact("see http://h/v1 and x@y"), "see http://h/v1 and x@y");
        assert_eq!(redact("http://TOKEN:@h/v1"), "http://***:@h/v1");
        assert_eq!(
            redact("https://h/v1#access_token=SECRET&state=1"),
            "https://h/v1#access_token=***&state=1"
        );
        assert_eq!(
            redact("https://b.s3/x?X-Amz-Credential=AK&X-Amz-Signature=SIG&n=1"),
            "https://b.s3/x?X-Amz-Credential=***&X-Amz-Signature=***&n=1"
        );
        assert_eq!(
            redact("https://h/v1?alt=json#top"),
            "https://h/v1?alt=json#top"
        );
        // IPv6 literal hosts, with and without user information.
        for (input, want) in [
            (
                "http://[::1]:8000/v1?token=SECRET&x=1",
                "http://[::1]:8000/v1?token=***&x=1",
            ),
            (
                "https://[2001:db8::1]/v1?api_key=SECRET",
                "https://[2001:db8::1]/v1?api_key=***",
            ),
            (
                "http://user:PASSWORD@[::1]:8000/v1?secret=S",
                "http://user:***@[::1]:8000/v1?secret=***",
            ),
            (
                "http://TOKEN@[fe80::1%25eth0]/",
                "http://***@[fe80::1%25eth0]/",
            ),
            (
                "[\"http://[::1]/v1?password=P\"]",
                "[\"http://[::1]/v1?password=***\"]",
            ),
            ("(see [http://h/v1?key=K])", "(see [http://h/v1?key=***])"),
        ] {
            assert_eq!(redact(input), want, "{input}");
        }
        assert_eq!(
            redact("\"http://a:b@h/p?key=SECRET&alt=json\""),
            "\"http://a:***@h/p?key=***&alt=json\""
        );
    }

    #[test]
    fn header_shapes() {
        for (input, want) in [
            (
                "authorization: Bearer sk-abc123",
                "authorization: Bearer ***",
            ),
            ("Authorization: sk-abc123\nnext", "Authorization: ***\nnext"),
            (r#"{"x-api-key": "sk-ant-1"}"#, r#"{"x-api-key": "***"}"#),
            (
                r#"{\"authorization\":\"Bearer sk-1\"}"#,
                r#"{\"authorization\":\"Bearer ***\"}"#,
            ),
            ("x-goog-api-key=AIza123", "x-goog-api-key=***"),
            ("got Bearer abc.def from", "got Bearer *** from"),
            ("no-authorization-here", "no-authorization-here"),
            // Escaped inside another JSON string, without a scheme word.
            (
                r#"{\"x-api-key\":\"sk-ant-1\"}"#,
                r#"{\"x-api-key\":\"***\"}"#,
            ),
            (
                r#"\\\"api-key\\\": \\\"k-1\\\""#,
                r#"\\\"api-key\\\": \\\"***\\\""#,
            ),
            // Headers echoed as pairs.
            (r#"[["x-api-key", "k-1"]]"#, r#"[["x-api-key", "***"]]"#),
            ("[('x-api-key', 'k-1')]", "[('x-api-key', '***')]"),
            ("authorization, content-type", "authorization, content-type"),
        ] {
            assert_eq!(redact(input), want, "{input}");
        }
    }

    #[test]
    fn keys_echoed_bare_are_masked_by_their_shape() {
        for (input, want) in [
            (
                "invalid key sk-proj-abcdefghijklmnop0123, try again",
                "invalid key ***, try again",
            ),
            ("key=sk-ant-api03-AAAAAAAAAAAAAAAAAAAA.", "key=***."),
            ("AIzaSyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "***"),
            ("token hf_abcdefghijklmnopqrstu", "token ***"),
            // OpenAI's own masked form, short words and names stay.
            (
                "Incorrect API key provided: sk-proj-****abcd",
                "Incorrect API key provided: sk-proj-****abcd",
            ),
            (
                "task-abcdefghijklmnopqrstuvwxyz ask-me",
                "task-abcdefghijklmnopqrstuvwxyz ask-me",
            ),
            ("sk-short", "sk-short"),
        ] {
            assert_eq!(redact(input), want, "{input}");
        }
    }

    #[test]
    fn json_values_are_redacted_in_place() {
        let mut v = serde_json::json!({
            "status": 401,
            "body": "echo: authorization: Bearer sk-live-1",
            "headers": {"Authorization": "Bearer sk-live-2", "x-api-key": "k3"},
        });
        redact_json(&mut v);
        let text = v.to_string();
        assert!(!text.contains("sk-live") && !text.contains("k3"), "{text}");
        assert_eq!(v["headers"]["Authorization"], "Bearer ***");
        assert_eq!(v["status"], 401);
    }

    #[test]
    fn plain_text_is_borrowed() {
        assert!(matches!(redact("a plain error: 500"), Cow::Borrowed(_)));
        assert_eq!(redact("ключ: значение"), "ключ: значение");
    }

    #[test]
    fn credential_values_are_masked_wherever_they_stand() {
        let section = serde_json::json!({
            "api_key": "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6",
            "base_url": "http://127.0.0.1:9/v1",
            "short": "test",
            "extra_headers": {"X-Custom-Auth": "customsecretvalue123"},
        });
        let secrets = secret_values(section.as_object().unwrap());
        assert_eq!(
            secrets,
            vec!["a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6", "customsecretvalue123"]
        );
        let text = "&quot;x-api-key&quot;: &quot;a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6&quot; at http://127.0.0.1:9/v1, test customsecretvalue123";
        assert_eq!(
            redact_values(text, &secrets),
            "&quot;x-api-key&quot;: &quot;***&quot; at http://127.0.0.1:9/v1, test ***"
        );
        let mut v = serde_json::json!({"body": ["bad a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"], "customsecretvalue123": 1});
        redact_values_json(&mut v, &secrets);
        assert_eq!(v, serde_json::json!({"body": ["bad ***"], "***": 1}));
        assert!(matches!(redact_values("plain", &secrets), Cow::Borrowed(_)));
    }
}
