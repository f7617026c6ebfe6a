//! The checks every remote plugin passes: faults mapped to typed errors, the
//! wire format byte for byte (in-process and through the C ABI), missing keys.

use super::fixtures::{plugin_library, user_request};
use super::logs::capture_logs;
use super::server::{FakeServer, Reply};
use clemhost_plugin_sdk::serde_json::{self, Value};
use clemhost_plugin_sdk::{Backend, BackendError, Ctx, ErrorKind, GenerateRequest, ModelConfig};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The error a model gives against a server that always answers `reply`.
pub fn error_against<B: Backend>(
    config_for: &dyn Fn(&str) -> ModelConfig,
    reply: Reply,
    timeout: Duration,
) -> BackendError {
    let server = FakeServer::always(reply);
    let model = match B::create(config_for(&server.base_url())) {
        Ok(m) => m,
        Err(e) => return e,
    };
    let ctx = Ctx::new(None, Some(timeout));
    match model.generate(user_request("hello", Some(timeout)), &ctx) {
        Ok(g) => panic!("expected an error, got a generation: {:?}", g.text),
        Err(e) => e,
    }
}

/// Runs the faults every remote plugin must map to typed errors, and checks
/// that `secret` (the api key the config carries) appears in none of them
/// nor in the captured log.
///
/// `config_for(base_url)` builds the plugin's config against the fake
/// server; `empty_answer` is a well-formed provider answer with nothing in
/// it (no choices, no content blocks, no candidates).
pub fn check_faults<B: Backend>(
    config_for: &dyn Fn(&str) -> ModelConfig,
    empty_answer: Value,
    secret: &str,
) {
    let logs = capture_logs();
    let quick = Duration::from_secs(10);
    let mut errors = Vec::new();

    let e = error_against::<B>(
        config_for,
        Reply::status(401, r#"{"error":{"message":"invalid api key"}}"#),
        quick,
    );
    assert_eq!(e.kind, ErrorKind::Auth, "401: {e}");
    assert!(!e.kind.is_retryable());
    errors.push(e);

    let e = error_against::<B>(
        config_for,
        Reply::status(403, r#"{"error":"forbidden"}"#),
        quick,
    );
    assert_eq!(e.kind, ErrorKind::Auth, "403: {e}");
    errors.push(e);

    let e = error_against::<B>(
        config_for,
        Reply::status(429, r#"{"error":{"message":"slow down"}}"#).with_header("Retry-After", "3"),
        quick,
    );
    assert_eq!(e.kind, ErrorKind::RateLimited, "429: {e}");
    assert_eq!(e.retry_after_ms, Some(3000), "Retry-After: 3 is 3000 ms");
    errors.push(e);

    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
    let e = error_against::<B>(
        config_for,
        Reply::status(429, "{}").with_header("Retry-After", &date),
        quick,
    );
    assert_eq!(e.kind, ErrorKind::RateLimited, "429 with a date: {e}");
    let ms = e
        .retry_after_ms
        .expect("an HTTP-date Retry-After gives a delay");
    assert!(
        (100_000..=120_000).contains(&ms),
        "about two minutes, got {ms} ms"
    );
    errors.push(e);

    let e = error_against::<B>(config_for, Reply::status(500, r#"{"error":"boom"}"#), quick);
    assert_eq!(e.kind, ErrorKind::Unavailable, "500: {e}");
    assert!(e.kind.is_retryable());
    errors.push(e);

    let e = error_against::<B>(config_for, Reply::Reset, quick);
    assert_eq!(e.kind, ErrorKind::Unavailable, "reset: {e}");
    errors.push(e);

    let e = error_against::<B>(
        config_for,
        Reply::json(empty_answer.clone()).after(Duration::from_secs(3)),
        Duration::from_millis(300),
    );
    assert_eq!(e.kind, ErrorKind::Timeout, "slow answer: {e}");
    errors.push(e);

    let e = error_against::<B>(config_for, Reply::status(200, "{\"choices\": [tru"), quick);
    assert_eq!(e.kind, ErrorKind::InvalidResponse, "invalid JSON: {e}");
    assert!(
        e.message.contains("[tru"),
        "the message quotes the body: {e}"
    );
    errors.push(e);

    let e = error_against::<B>(config_for, Reply::status(200, ""), quick);
    assert_eq!(e.kind, ErrorKind::InvalidResponse, "empty body: {e}");
    errors.push(e);

    let e = error_against::<B>(config_for, Reply::json(empty_answer.clone()), quick);
    assert_eq!(e.kind, ErrorKind::InvalidResponse, "empty answer: {e}");
    let quoted: String = empty_answer.to_string().chars().take(10).collect();
    assert!(
        e.message.contains(&quoted),
        "the message quotes the answer: {e}"
    );
    errors.push(e);

    // A cancelled call returns promptly with `cancelled`.
    let server = FakeServer::always(Reply::json(empty_answer).after(Duration::from_secs(5)));
    let model = B::create(config_for(&server.base_url())).expect("the model opens");
    let flag = std::sync::atomic::AtomicU8::new(0);
    let e = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            flag.store(1, Ordering::Relaxed);
        });
        let ctx = Ctx::new(Some(&flag), None);
        model
            .generate(user_request("hello", None), &ctx)
            .expect_err("a cancelled call fails")
    });
    assert_eq!(e.kind, ErrorKind::Cancelled, "cancel: {e}");
    errors.push(e);

    for e in &errors {
        let text = serde_json::to_string(e).unwrap_or_default();
        assert!(
            !text.contains(secret),
            "the api key leaked into an error: {text}"
        );
    }
    let log = logs.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(
        log.contains("POST"),
        "the capture sees the plugin's log records"
    );
    assert!(!log.contains(secret), "the api key leaked into the log");
}

/// One exchange checked byte for byte: what the plugin must send and what
/// it must make of the provider's answer.
pub struct WireCase {
    /// The call.
    pub request: GenerateRequest,
    /// The request path the provider expects (after the base URL's path).
    pub path: String,
    /// Headers that must be present with exactly these values.
    pub headers: Vec<(&'static str, String)>,
    /// The exact JSON body the provider expects.
    pub body: Value,
    /// The provider's answer (a fixture shaped like the real one).
    pub answer: Value,
    /// The text the game must see.
    pub text: String,
    /// `(prompt_tokens, completion_tokens)`, if the answer reports usage.
    pub usage: Option<(u64, u64)>,
}

/// Checks the recorded objects of a generation against a case: `prompt` is
/// the body as sent, `response` the answer plus `clem_player`, `text` and
/// `usage` as expected, and `secret` nowhere.
pub fn check_generation(
    generation: &clemhost_plugin_sdk::Generation,
    case: &WireCase,
    model_name: &str,
    secret: &str,
) {
    assert_eq!(generation.text, case.text, "the answer text");
    assert_eq!(
        generation.prompt, case.body,
        "the recorded prompt is the body as sent"
    );
    let mut response = generation.response.clone();
    let player = response
        .as_object_mut()
        .and_then(|o| o.remove("clem_player"))
        .expect("the response carries clem_player");
    assert_eq!(
        response, case.answer,
        "the recorded response is the answer as received"
    );
    assert_eq!(player["response"], Value::String(case.text.clone()));
    assert_eq!(player["model_name"], Value::String(model_name.to_string()));
    let start = player["call_start"].as_str().unwrap_or_default();
    assert!(
        clemhost_pyfacts::time::parse_datetime(start).is_some(),
        "call_start {start:?}"
    );
    let duration = player["call_duration"].as_str().unwrap_or_default();
    assert!(
        clemhost_pyfacts::time::parse_timedelta(duration).is_some(),
        "call_duration {duration:?}"
    );
    assert_eq!(
        generation
            .usage
            .as_ref()
            .map(|u| (u.prompt_tokens, u.completion_tokens)),
        case.usage,
        "usage"
    );
    let all = serde_json::to_string(generation).unwrap_or_default();
    assert!(
        !all.contains(secret),
        "the api key leaked into the generation"
    );
}

fn check_sent(server: &FakeServer, case: &WireCase, base_path: &str) {
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "exactly one HTTP attempt");
    let sent = &requests[0];
    assert_eq!(sent.method, "POST");
    assert_eq!(
        sent.path,
        format!("{base_path}{}", case.path),
        "request path"
    );
    for (name, value) in &case.headers {
        assert_eq!(sent.header(name), Some(value.as_str()), "header {name}");
    }
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(sent.json(), case.body, "request body");
}

/// Runs a case in-process: `config_for(base_url)` builds the model config;
/// `base_path` is the path part the config appends to the server address.
pub fn check_wire<B: Backend>(
    config_for: &dyn Fn(&str) -> ModelConfig,
    base_path: &str,
    case: &WireCase,
    secret: &str,
) {
    let server = FakeServer::always(Reply::json(case.answer.clone()));
    let config = config_for(&server.base_url());
    let model_name = config.model_name().to_string();
    let model = B::create(config).expect("the model opens");
    let generation = model
        .generate(case.request.clone(), &Ctx::detached())
        .expect("the call succeeds");
    check_sent(&server, case, base_path);
    check_generation(&generation, case, &model_name, secret);
}

/// Runs a case through the C ABI: opens the built plugin library `lib_name`
/// with the host loader, checks its manifest, and repeats [`check_wire`];
/// then checks that a 401 arrives as an `auth` error without the key.
pub fn check_abi(
    lib_name: &str,
    backend: &str,
    config_for: &dyn Fn(&str) -> ModelConfig,
    base_path: &str,
    case: &WireCase,
    secret: &str,
) {
    use clemhost_plugin_sdk::host::Plugin;
    let path = plugin_library(lib_name).unwrap_or_else(|| {
        panic!(
            "lib{lib_name}.so is not built next to the test binary; run `cargo test -p {lib_name}`"
        )
    });
    let plugin = Plugin::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest = plugin.manifest();
    assert_eq!(manifest.backends, vec![backend.to_string()]);
    let caps = &manifest.capabilities;
    assert!(caps.remote && caps.concurrent_generate && caps.max_concurrency > 1);
    assert_eq!(caps.key_name.as_deref(), Some(backend));

    let server = FakeServer::always(Reply::json(case.answer.clone()));
    let config = config_for(&server.base_url());
    let model_name = config.model_name().to_string();
    let model = plugin.create_model(&config).expect("the model opens");
    let cancel = std::sync::atomic::AtomicU8::new(0);
    let generation = model
        .generate(&case.request, &cancel)
        .expect("the call succeeds");
    check_sent(&server, case, base_path);
    check_generation(&generation, case, &model_name, secret);

    let refusing = FakeServer::always(Reply::status(401, r#"{"error":{"message":"bad key"}}"#));
    let model = plugin
        .create_model(&config_for(&refusing.base_url()))
        .expect("the model opens");
    let err = model
        .generate(&case.request, &cancel)
        .expect_err("401 fails");
    assert_eq!(err.kind, ErrorKind::Auth);
    let text = serde_json::to_string(&err).unwrap_or_default();
    assert!(
        !text.contains(secret),
        "the api key leaked into an error: {text}"
    );
}

/// Checks that opening a model without `api_key` fails with `auth`, names
/// the key section, and that an empty key section says so too.
pub fn check_missing_key<B: Backend>(config_without_key: ModelConfig, key_name: &str) {
    let err = match B::create(config_without_key) {
        Ok(_) => panic!("a model without api_key must not open"),
        Err(e) => e,
    };
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
    assert!(
        err.message.contains(key_name),
        "the message names the key section: {err}"
    );
    assert!(
        err.message.contains("api_key"),
        "the message names the field: {err}"
    );
}

/// Checks how a plugin that inlines images (Anthropic, Google) downloads an
/// image URL: the image server sees no key (no header carries `secret`, no
/// `key_header`, no cookie), a redirect on the same host is followed, and a
/// redirect to another host is not (that host gets no request).
///
/// `config_for(base, model_config)` opens a multimodal model against `base`;
/// `answer` is a successful answer of the provider.
pub fn check_image_downloads<B: Backend>(
    config_for: &dyn Fn(&str, Option<Value>) -> ModelConfig,
    answer: Value,
    key_header: &str,
    secret: &str,
) {
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    let api = FakeServer::always(Reply::json(answer));
    let elsewhere = FakeServer::always(Reply::Http {
        status: 200,
        headers: Vec::new(),
        body: PNG.to_vec(),
    });
    // `localhost` is another host than `127.0.0.1` to a redirect policy.
    let elsewhere_url = elsewhere.base_url().replace("127.0.0.1", "localhost") + "/cat.png";
    let images = FakeServer::start(move |request| match request.path.as_str() {
        "/moved.png" => Reply::status(302, "").with_header("location", "/cat.png"),
        "/away.png" => Reply::status(302, "").with_header("location", &elsewhere_url),
        _ => Reply::Http {
            status: 200,
            headers: Vec::new(),
            body: PNG.to_vec(),
        },
    });
    let multimodal = serde_json::json!({ "multimodality": { "single_image": true } });
    let model = B::create(config_for(&api.base_url(), Some(multimodal))).expect("the model opens");
    let ask = |url: String| {
        let mut message = clemhost_plugin_sdk::Message::new("user", "What is this?");
        message.extra.insert("image".into(), Value::String(url));
        let request = GenerateRequest {
            messages: vec![message],
            ..GenerateRequest::default()
        };
        model.generate(request, &Ctx::detached())
    };
    ask(format!("{}/cat.png", images.base_url())).expect("a plain image URL works");
    ask(format!("{}/moved.png", images.base_url())).expect("a redirect on the same host works");
    let err = ask(format!("{}/away.png", images.base_url()))
        .expect_err("a redirect to another host is not followed");
    assert_eq!(err.kind, ErrorKind::InvalidRequest, "{err}");
    assert!(err.message.contains("another host"), "{err}");
    assert!(
        elsewhere.requests().is_empty(),
        "the other host of a redirect got a request"
    );
    let seen = images.requests();
    assert_eq!(seen.len(), 4, "cat, moved, cat again, away: {seen:?}");
    for request in &seen {
        for (name, value) in &request.headers {
            assert!(
                !value.contains(secret),
                "the image server got the key in `{name}`"
            );
            assert!(
                !name.eq_ignore_ascii_case(key_header) && !name.eq_ignore_ascii_case("cookie"),
                "the image server got a `{name}` header"
            );
        }
    }
    let api_seen = api.requests();
    assert!(
        api_seen
            .iter()
            .all(|r| r.header(key_header) == Some(secret)),
        "the provider still gets the key"
    );
}
