//! Errors in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`,
//! with the HTTP status a client acts on.
//!
//! Every message is written here or comes from a plugin's typed error (which
//! the SDK requires to hold no secret); none quotes a request header, so a
//! bearer token never comes back in an answer.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use clemhost_plugin_sdk::{BackendError, ErrorKind};
use serde_json::json;

/// One failed request, as the client will see it.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// OpenAI's error `type` (`invalid_request_error`, `authentication_error`, ...).
    pub kind: &'static str,
    /// A stable machine-readable `code` (also the `kind` label of the error metric).
    pub code: &'static str,
    /// What went wrong and what to do.
    pub message: String,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// Seconds a client should wait before trying again (sent as `Retry-After`).
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, message: String) -> Self {
        ApiError {
            status,
            kind,
            code,
            message,
            param: None,
            retry_after_s: None,
        }
    }

    /// 400: the body is not JSON; the message has the line and column.
    pub fn invalid_json(e: &serde_json::Error) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_json",
            format!(
                "the request body is not valid JSON: {e} (line {}, column {}); send a JSON object",
                e.line(),
                e.column()
            ),
        )
    }

    /// 400: a field is missing or has the wrong type or value.
    pub fn invalid_field(param: impl Into<String>, message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_field",
            message.into(),
        );
        e.param = Some(param.into());
        e
    }

    /// 401: no bearer token, or the wrong one. Says nothing about the token sent.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            "missing or wrong API key: send `Authorization: Bearer <key>` with the key of the \
             variable the server was started with (--api-key-env)"
                .into(),
        )
    }

    /// 404: no served model of that name (`registered`: the registry has
    /// it, but this server does not serve it).
    pub fn unknown_model(name: &str, closest: &[&str], registered: bool) -> Self {
        let what = if registered {
            "is in the registry but not served by this server (start it with -m NAME, or install its plugin)"
        } else {
            "is not served here"
        };
        let hint = if closest.is_empty() {
            "GET /v1/models lists the served models".to_string()
        } else {
            format!(
                "the closest served names are {}; GET /v1/models lists them all",
                closest
                    .iter()
                    .map(|n| format!("'{n}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!("model '{name}' {what}; {hint}"),
        );
        e.param = Some("model".into());
        e
    }

    /// 404: no such path.
    pub fn unknown_route(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "unknown_url",
            format!(
                "no endpoint {method} {path}; this server has GET /v1/models, POST /v1/chat/completions, GET /health and GET /metrics"
            ),
        )
    }

    /// 405: a known path with the wrong method.
    pub fn wrong_method() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            "wrong HTTP method for this endpoint: chat completions are POSTed, the rest is GET"
                .into(),
        )
    }

    /// 413: the body is larger than `--max-body-bytes`.
    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "body_too_large",
            format!(
                "the request body is larger than {limit} bytes; send less (the server's limit is set with --max-body-bytes)"
            ),
        )
    }

    /// 415: a POST body that is not declared `application/json`.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            "unsupported_media_type",
            "the request body must be sent with `Content-Type: application/json`".into(),
        )
    }

    /// 403: a request from a web page whose origin `--allow-origin` does not name.
    pub fn origin_not_allowed() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "origin_not_allowed",
            "requests from web pages are refused (the request has an `Origin` header); \
             to let a page of yours use this server, start it with --allow-origin ORIGIN \
             (e.g. --allow-origin http://localhost:5173)"
                .into(),
        )
    }

    /// 403: a `Host` header that is not one of the server's own names.
    pub fn host_not_allowed() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "host_not_allowed",
            "the `Host` header is not this server's address; on loopback the server answers \
             only to localhost, 127.0.0.1 and [::1] with its port"
                .into(),
        )
    }

    /// 400: the body could not be read (the client broke off while sending).
    pub fn unreadable_body(e: &dyn std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "unreadable_body",
            format!("the request body could not be read: {e}"),
        )
    }

    /// 429: the model's queue is full.
    pub fn queue_full(model: &str, limit: usize, queue: usize) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "queue_full",
            format!(
                "model '{model}' is busy: {limit} request(s) running and {queue} waiting, the most it takes; try again shortly"
            ),
        );
        e.retry_after_s = Some(1);
        e
    }

    /// 503: the model could not be opened (missing key, plugin refused it).
    pub fn cannot_open(message: String) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "model_unavailable",
            message,
        )
    }

    /// 503: the server is shutting down.
    pub fn shutting_down() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "shutting_down",
            "the server is shutting down and stopped this request; send it to another server or try again later".into(),
        );
        e.retry_after_s = Some(1);
        e
    }

    /// The answer for a plugin's typed error.
    pub fn from_backend(model: &str, e: &BackendError) -> Self {
        let (status, kind, code) = match e.kind {
            ErrorKind::InvalidRequest => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
            ),
            ErrorKind::ContextExceeded => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "context_length_exceeded",
            ),
            ErrorKind::RateLimited => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "upstream_rate_limited",
            ),
            ErrorKind::Auth => (StatusCode::BAD_GATEWAY, "server_error", "upstream_auth"),
            ErrorKind::InvalidResponse => (
                StatusCode::BAD_GATEWAY,
                "server_error",
                "upstream_invalid_response",
            ),
            ErrorKind::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "upstream_unavailable",
            ),
            ErrorKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, "server_error", "timeout"),
            ErrorKind::Cancelled => (StatusCode::SERVICE_UNAVAILABLE, "server_error", "cancelled"),
            ErrorKind::Panic => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "plugin_panic",
            ),
            ErrorKind::Internal | ErrorKind::Unknown => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "plugin_error",
            ),
            // ErrorKind is non_exhaustive: a kind added to the SDK later.
            #[allow(unreachable_patterns)]
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "plugin_error",
            ),
        };
        let mut out = Self::new(status, kind, code, format!("model '{model}': {e}"));
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            out.retry_after_s = Some(e.retry_after_ms.map_or(1, |ms| ms.div_ceil(1000).max(1)));
        }
        out
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body().to_string(),
        )
            .into_response();
        if let Some(s) = self.retry_after_s {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_errors_map_to_statuses_clients_act_on() {
        let cases = [
            (ErrorKind::InvalidRequest, 400),
            (ErrorKind::ContextExceeded, 400),
            (ErrorKind::RateLimited, 429),
            (ErrorKind::Auth, 502),
            (ErrorKind::InvalidResponse, 502),
            (ErrorKind::Unavailable, 503),
            (ErrorKind::Timeout, 504),
            (ErrorKind::Panic, 500),
            (ErrorKind::Internal, 500),
        ];
        for (kind, status) in cases {
            let e = ApiError::from_backend("m", &BackendError::new(kind, "x"));
            assert_eq!(e.status.as_u16(), status, "{kind}");
        }
        let limited =
            BackendError::new(ErrorKind::RateLimited, "slow down").with_retry_after_ms(2500);
        assert_eq!(ApiError::from_backend("m", &limited).retry_after_s, Some(3));
    }

    #[test]
    fn the_body_has_openais_shape() {
        let e = ApiError::invalid_field("messages", "`messages` is required");
        let body = e.body();
        assert_eq!(body["error"]["param"], "messages");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "invalid_field");
        assert!(body["error"]["message"].is_string());
    }
}
