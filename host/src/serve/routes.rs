//! The endpoints: `GET /health`, `GET /v1/models`, `POST /v1/chat/completions`
//! and `GET /metrics` (the `/v1` prefix is optional, as OpenAI clients
//! configured with a bare host expect). Unknown paths and wrong methods
//! answer in OpenAI's error shape too.

use super::errors::ApiError;
use super::metrics::Gauges;
use super::models::{CallError, CancelOnDrop};
use super::openai::{self, Answer};
use super::AppState;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use clemhost_plugin_sdk::GenArgs;
use serde_json::json;
use std::sync::atomic::AtomicU8;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The router of a server.
pub fn router(state: Arc<AppState>) -> Router {
    let protected = Router::new()
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    Router::new()
        .route("/health", get(health))
        .merge(protected)
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(state.max_body))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            super::guard::check,
        ))
        .with_state(state)
}

/// Refuses a request without the server's key (when it has one) before
/// its body is read.
async fn require_key(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key {
        if !key.accepts(request.headers().get(header::AUTHORIZATION)) {
            let e = ApiError::unauthorized();
            state.metrics.record(
                "",
                e.status.as_u16(),
                Some(e.code),
                std::time::Duration::ZERO,
            );
            return e.into_response();
        }
    }
    next.run(request).await
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let open = state.table.slots().filter(|s| s.opened().is_some()).count();
    let served = state.table.slots().count();
    json_response(&json!({"status": "ok", "models": served, "models_open": open}))
}

async fn models(State(state): State<Arc<AppState>>) -> Response {
    let list: Vec<(String, String)> = state
        .table
        .slots()
        .map(|s| (s.name.clone(), s.backend.clone()))
        .collect();
    json_response(&openai::model_list(&list))
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let gauges: Vec<Gauges<'_>> = state
        .table
        .slots()
        .filter_map(|s| s.opened())
        .map(|m| Gauges {
            model: &m.name,
            in_flight: m.gate.in_flight(),
            queued: m.gate.waiting(),
        })
        .collect();
    let text = state.metrics.render(&gauges);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

fn json_response(v: &serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

async fn unknown_route(method: Method, uri: Uri) -> Response {
    ApiError::unknown_route(method.as_str(), uri.path()).into_response()
}

async fn wrong_method() -> Response {
    ApiError::wrong_method().into_response()
}

/// Counts a request in the metrics however it ends; a request whose
/// client went away before the answer counts as status 499.
struct Tally {
    state: Arc<AppState>,
    model: String,
    started: Instant,
    done: bool,
}

impl Tally {
    fn finish(&mut self, status: StatusCode, error: Option<&'static str>) {
        self.done = true;
        self.state
            .metrics
            .record(&self.model, status.as_u16(), error, self.started.elapsed());
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        if !self.done {
            self.state.metrics.record(
                &self.model,
                499,
                Some("client_closed"),
                self.started.elapsed(),
            );
        }
    }
}

async fn chat(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let mut tally = Tally {
        state: state.clone(),
        model: String::new(),
        started: Instant::now(),
        done: false,
    };
    // The body is read within --timeout too: a client that sends its
    // headers and then trickles (or never sends) the body would otherwise
    // hold its connection for as long as it likes.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = if declared.is_some_and(|n| n > state.max_body as u64) {
        // Said too big up front: refused without waiting for the bytes.
        Err(ApiError::body_too_large(state.max_body))
    } else {
        match tokio::time::timeout(
            state.call.timeout,
            <Bytes as axum::extract::FromRequest<_>>::from_request(request, &state),
        )
        .await
        {
            Ok(Ok(body)) => Ok(body),
            Ok(Err(BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(
                _,
            )))) => Err(ApiError::body_too_large(state.max_body)),
            Ok(Err(other)) => Err(ApiError::unreadable_body(&other.body_text())),
            Err(_) => Err(ApiError::unreadable_body(&BodyTimeout(state.call.timeout))),
        }
    };
    match answer(&state, body, &mut tally).await {
        Ok(r) => {
            tally.finish(StatusCode::OK, None);
            r
        }
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(model = %tally.model, status = e.status.as_u16(), "{}", e.message);
            } else {
                tracing::debug!(model = %tally.model, status = e.status.as_u16(), "{}", e.message);
            }
            tally.finish(e.status, Some(e.code));
            e.into_response()
        }
    }
}

/// The body did not arrive within `--timeout`.
#[derive(Debug)]
struct BodyTimeout(std::time::Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "it did not arrive within {:.3} s (--timeout)",
            self.0.as_secs_f64()
        )
    }
}

async fn answer(
    state: &Arc<AppState>,
    body: Result<Bytes, ApiError>,
    tally: &mut Tally,
) -> Result<Response, ApiError> {
    let body = body?;
    let request = openai::parse_chat_request(&body)?;
    let Some(slot) = state.table.get(&request.model) else {
        let (closest, registered) = state.table.closest(&request.model);
        return Err(ApiError::unknown_model(
            &request.model,
            &closest,
            registered,
        ));
    };
    tally.model = slot.name.clone();
    let model = slot
        .open(&state.global, &state.limits)
        .await
        .map_err(|e| ApiError::cannot_open(e.message))?;
    let defaults = GenArgs::default();
    let gen_args = GenArgs {
        temperature: request.temperature.unwrap_or(defaults.temperature),
        max_tokens: request.max_tokens.unwrap_or(defaults.max_tokens),
        extra: Default::default(),
    };
    let max_tokens = gen_args.max_tokens;
    let cancel = Arc::new(AtomicU8::new(0));
    let _cancel_when_dropped = CancelOnDrop(cancel.clone());
    // --timeout is at most 7 days; checked all the same, so no timeout can
    // make the deadline panic.
    let deadline = tally
        .started
        .checked_add(state.call.timeout)
        .map(tokio::time::Instant::from_std)
        .unwrap_or_else(|| {
            tokio::time::Instant::now() + std::time::Duration::from_secs(7 * 24 * 3600)
        });
    let answered = model
        .answer(
            request.messages,
            gen_args,
            &state.call,
            deadline,
            &cancel,
            state.stop.subscribe(),
        )
        .await
        .map_err(|e| match e {
            CallError::QueueFull => {
                ApiError::queue_full(&model.name, model.gate.limit(), model.gate.queue())
            }
            CallError::Backend(b) => ApiError::from_backend(&model.name, &b),
            CallError::ShuttingDown => ApiError::shutting_down(),
        })?;
    let g = &answered.generation;
    let id = format!("chatcmpl-{:016x}", fastrand::u64(..));
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let a = Answer {
        id: &id,
        created,
        model: &model.name,
        generation: g,
        finish_reason: openai::finish_reason(g, max_tokens),
        extension: json!({
            "prompt": g.prompt,
            "response": answered.recorded_response,
            "attempts": answered.attempts,
            "timings": g.timings,
        }),
    };
    Ok(if request.stream {
        (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            openai::sse_body(&a, request.include_usage),
        )
            .into_response()
    } else {
        json_response(&openai::completion(&a))
    })
}
