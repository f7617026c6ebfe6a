//! Test and benchmark helpers (feature `test-support`): a fake HTTP server on
//! 127.0.0.1, a log capture, a locator for built plugin libraries, and the
//! fault checks every remote plugin runs.
//!
//! The server is deliberately small: HTTP/1.1 with keep-alive and
//! `Content-Length` bodies, one thread per connection, `TCP_NODELAY` on and
//! each answer written in one piece (so Nagle's algorithm and delayed ACKs
//! add no latency that would be blamed on the client).

use clemhost_plugin_sdk::serde_json::{self, Value};
use clemhost_plugin_sdk::{
    Backend, BackendError, Ctx, ErrorKind, GenerateRequest, Message, ModelConfig,
};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// One request as the fake server received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    /// Headers with lower-cased names, in order.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first header of that (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What the fake server answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A status, extra headers and a body.
    Http {
        /// Status code.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// Body bytes (sent with `Content-Type: application/json`).
        body: Vec<u8>,
    },
    /// Reset the connection (TCP RST) instead of answering.
    Reset,
    /// Wait, then answer.
    Delayed(Duration, Box<Reply>),
}

impl Reply {
    /// `200 OK` with a JSON body.
    pub fn json(value: Value) -> Reply {
        Reply::Http {
            status: 200,
            headers: Vec::new(),
            body: value.to_string().into_bytes(),
        }
    }

    /// Any status with a raw body.
    pub fn status(status: u16, body: &str) -> Reply {
        Reply::Http {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    /// Adds a header (only to [`Reply::Http`]).
    pub fn with_header(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Http { headers, .. } = &mut self {
            headers.push((name.to_string(), value.to_string()));
        }
        self
    }

    /// The same answer after `delay`.
    pub fn after(self, delay: Duration) -> Reply {
        Reply::Delayed(delay, Box::new(self))
    }
}

type Handler = dyn Fn(&RecordedRequest) -> Reply + Send + Sync;

/// A fake HTTP server on 127.0.0.1 that records requests and answers with a
/// handler. Stops when dropped.
pub struct FakeServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
    handling: Arc<Mutex<Vec<Duration>>>,
    stop: Arc<AtomicBool>,
}

impl FakeServer {
    /// Starts a server on a free port.
    pub fn start(
        handler: impl Fn(&RecordedRequest) -> Reply + Send + Sync + 'static,
    ) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 always works");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handling = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        {
            let requests = Arc::clone(&requests);
            let handling = Arc::clone(&handling);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let requests = Arc::clone(&requests);
                    let handling = Arc::clone(&handling);
                    let handler = Arc::clone(&handler);
                    std::thread::spawn(move || {
                        serve_connection(stream, &requests, &handling, &*handler)
                    });
                }
            });
        }
        FakeServer {
            addr,
            requests,
            handling,
            stop,
        }
    }

    /// A server that always gives the same answer.
    pub fn always(reply: Reply) -> FakeServer {
        FakeServer::start(move |_| reply.clone())
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// For each answered request, the time from having read it to having
    /// written the answer (the server's share of a call, delays included).
    pub fn handling_times(&self) -> Vec<Duration> {
        self.handling.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<RecordedRequest> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(RecordedRequest {
        method,
        path,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn serve_connection(
    stream: TcpStream,
    requests: &Mutex<Vec<RecordedRequest>>,
    handling: &Mutex<Vec<Duration>>,
    handler: &Handler,
) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader) {
        let received = std::time::Instant::now();
        let mut reply = handler(&request);
        if let Ok(mut all) = requests.lock() {
            all.push(request);
        }
        while let Reply::Delayed(delay, inner) = reply {
            std::thread::sleep(delay);
            reply = *inner;
        }
        match reply {
            Reply::Http {
                status,
                headers,
                body,
            } => {
                let mut out = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                    reason(status),
                    body.len()
                );
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let mut bytes = out.into_bytes();
                bytes.extend_from_slice(&body);
                if writer.write_all(&bytes).is_err() {
                    return;
                }
                if let Ok(mut h) = handling.lock() {
                    h.push(received.elapsed());
                }
            }
            Reply::Reset => {
                let _ = socket2::SockRef::from(&writer).set_linger(Some(Duration::ZERO));
                return;
            }
            Reply::Delayed(..) => unreachable!("delays were unwrapped above"),
        }
    }
}

/// Collects every `log` record of this process (in-process tests only: a
/// plugin opened through the ABI logs to the host instead).
pub fn capture_logs() -> &'static Mutex<String> {
    struct Capture(Mutex<String>);
    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            if let Ok(mut s) = self.0.lock() {
                s.push_str(&format!(
                    "{} {}: {}\n",
                    record.level(),
                    record.target(),
                    record.args()
                ));
            }
        }
        fn flush(&self) {}
    }
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    let capture = CAPTURE.get_or_init(|| Capture(Mutex::new(String::new())));
    if log::set_logger(capture).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
    &capture.0
}

/// The path of a built plugin library (`lib<name>.so`) next to the running
/// test or example binary (cargo puts cdylibs in the profile directory and
/// its `deps/`).
pub fn plugin_library(name: &str) -> Option<PathBuf> {
    let file = format!(
        "{}{name}{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .take(3)
        .flat_map(|dir| [dir.join(&file), dir.join("deps").join(&file)])
        .find(|p| p.is_file())
}

/// A model config for tests: an entry with `model_id`, credentials as given.
pub fn test_config(model_id: &str, credentials: Value, model_config: Option<Value>) -> ModelConfig {
    let mut spec = serde_json::Map::new();
    spec.insert(
        "model_name".into(),
        Value::String(format!("test-{model_id}")),
    );
    spec.insert("model_id".into(), Value::String(model_id.to_string()));
    if let Some(mc) = model_config {
        spec.insert("model_config".into(), mc);
    }
    ModelConfig {
        spec,
        credentials: credentials.as_object().cloned(),
        ..ModelConfig::default()
    }
}

/// A request with one user message and a timeout.
pub fn user_request(text: &str, timeout: Option<Duration>) -> GenerateRequest {
    GenerateRequest {
        request_id: "test-1".into(),
        messages: vec![Message::new("user", text)],
        gen_args: None,
        timeout_ms: timeout.map(|t| t.as_millis() as u64),
    }
}

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
