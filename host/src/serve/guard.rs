//! What keeps web pages away from a server on loopback.
//!
//! A page in the user's browser can send requests to `127.0.0.1`: "simple"
//! cross-site requests (a form, `fetch` with `Content-Type: text/plain`)
//! reach the server without a CORS preflight, and DNS rebinding makes a
//! page's own name resolve to `127.0.0.1`. So, before any route runs:
//!
//! - a request whose `Host` is not one of this server's own names
//!   (`localhost`, `127.0.0.1`, `[::1]` or the address it listens on, with
//!   its port) is refused with 403 `host_not_allowed`, unless the server
//!   listens off loopback (it then has a key, which a page does not know);
//! - a request with an `Origin` header (browsers send one on every
//!   cross-site request, and on same-site POSTs) is refused with 403
//!   `origin_not_allowed` unless `--allow-origin` names that origin; an
//!   allowed origin gets CORS headers and its preflight (`OPTIONS`) is
//!   answered;
//! - a `POST` whose `Content-Type` is not `application/json` is refused
//!   with 415 `unsupported_media_type` (no page can send that type
//!   cross-site without a preflight).

use super::errors::ApiError;
use super::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;

/// The checks of one server.
#[derive(Clone, Debug)]
pub struct Guard {
    /// The `Host` values accepted (lower case); `None`: any.
    hosts: Option<Vec<String>>,
    /// The origins `--allow-origin` names (`scheme://host[:port]`, lower case).
    origins: Vec<String>,
}

/// An `--allow-origin` value in the form browsers send: `scheme://host[:port]`,
/// lower case, no path. `None` for anything else.
pub fn normalize_origin(value: &str) -> Option<String> {
    let value = value.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, rest) = value.split_once("://")?;
    let ok = matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
        && !rest.chars().any(char::is_control);
    ok.then_some(value)
}

impl Guard {
    /// The checks for a server listening on `addr`; `keyed`: it requires a key.
    pub fn new(addr: SocketAddr, keyed: bool, origins: &[String]) -> Guard {
        let hosts = if keyed && !addr.ip().is_loopback() {
            None
        } else {
            let port = addr.port();
            let own = match addr {
                SocketAddr::V4(a) => a.ip().to_string(),
                SocketAddr::V6(a) => format!("[{}]", a.ip()),
            };
            let mut names = vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                "[::1]".to_string(),
            ];
            if !names.contains(&own) {
                names.push(own);
            }
            let mut hosts: Vec<String> = names.iter().map(|n| format!("{n}:{port}")).collect();
            if port == 80 {
                // A client leaves out the default port.
                hosts.extend(names);
            }
            Some(hosts)
        };
        Guard {
            hosts,
            origins: origins.iter().filter_map(|o| normalize_origin(o)).collect(),
        }
    }

    fn host_ok(&self, headers: &HeaderMap) -> bool {
        let Some(hosts) = &self.hosts else {
            return true;
        };
        match headers.get(header::HOST).map(HeaderValue::to_str) {
            Some(Ok(h)) => {
                let h = h.trim().to_ascii_lowercase();
                hosts.contains(&h)
            }
            // HTTP/1.1 requires Host; browsers always send it.
            _ => false,
        }
    }

    /// `Ok(None)`: no Origin; `Ok(Some(origin))`: an allowed one.
    fn origin(&self, headers: &HeaderMap) -> Result<Option<HeaderValue>, ()> {
        let Some(value) = headers.get(header::ORIGIN) else {
            return Ok(None);
        };
        let allowed = value
            .to_str()
            .ok()
            .map(|v| v.trim().to_ascii_lowercase())
            .is_some_and(|v| self.origins.contains(&v));
        if allowed {
            Ok(Some(value.clone()))
        } else {
            Err(())
        }
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim())
        .is_some_and(|t| t.eq_ignore_ascii_case("application/json"))
}

fn add_cors(response: &mut Response, origin: HeaderValue) {
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// The middleware: refuses what a web page could have sent, answers the
/// preflight of an allowed origin.
pub async fn check(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let guard = &state.guard;
    let refuse = |e: ApiError| {
        state.metrics.record(
            "",
            e.status.as_u16(),
            Some(e.code),
            std::time::Duration::ZERO,
        );
        e.into_response()
    };
    let headers = request.headers();
    if !guard.host_ok(headers) {
        return refuse(ApiError::host_not_allowed());
    }
    let origin = match guard.origin(headers) {
        Ok(o) => o,
        Err(()) => return refuse(ApiError::origin_not_allowed()),
    };
    if let Some(origin) = &origin {
        if request.method() == Method::OPTIONS
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type"),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            add_cors(&mut r, origin.clone());
            return r;
        }
    }
    if request.method() == Method::POST && !is_json(headers) {
        let mut r = refuse(ApiError::unsupported_media_type());
        if let Some(origin) = origin {
            add_cors(&mut r, origin);
        }
        return r;
    }
    let mut response = next.run(request).await;
    if let Some(origin) = origin {
        add_cors(&mut response, origin);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port() {
        assert_eq!(
            normalize_origin("HTTP://LocalHost:5173/").as_deref(),
            Some("http://localhost:5173")
        );
        for bad in [
            "*",
            "null",
            "localhost:5173",
            "http://a/b",
            "ftp://a",
            "http://",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn hosts_are_checked_on_loopback_only() {
        let on: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        let g = Guard::new(on, false, &[]);
        let mut h = HeaderMap::new();
        for (host, ok) in [
            ("localhost:8000", true),
            ("[::1]:8000", true),
            ("127.0.0.1:8000", true),
            ("localhost", false),
            ("evil.example:8000", false),
        ] {
            h.insert(header::HOST, HeaderValue::from_static(host));
            assert_eq!(g.host_ok(&h), ok, "{host}");
        }
        let off: SocketAddr = "0.0.0.0:8000".parse().unwrap();
        h.insert(header::HOST, HeaderValue::from_static("gpu-box.lan:8000"));
        assert!(Guard::new(off, true, &[]).host_ok(&h));
        assert!(!Guard::new(on, true, &[]).host_ok(&h));
    }
}
