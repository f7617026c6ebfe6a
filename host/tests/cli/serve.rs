//! `clemhost serve` over real sockets on 127.0.0.1: the OpenAI wire format,
//! bad input, limits and queueing, the API key, plugin failures, metrics
//! and graceful shutdown; then real clients (the `openai` Python package,
//! clemcore's `openai_compatible` backend) and the real SmolLM2 GGUF.

use crate::util::{plugin_build_dir, stderr, TestEnv};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `clemhost serve`, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The startup lines.
    pub banner: String,
    log: Arc<Mutex<String>>,
    /// The test environment, kept as long as the server runs.
    _env: TestEnv,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A registry with the models the tests serve.
fn test_registry() -> Value {
    json!([
        {"model_name": "echo-1", "backend": "echo",
         "model_config": {"reply": "GREET: Hello, welcome!"}},
        {"model_name": "echo-slow", "backend": "echo", "model_config": {"latency_ms": 300}},
        {"model_name": "echo-2", "backend": "echo"},
        {"model_name": "misbehave-panic", "backend": "misbehave",
         "model_config": {"misbehave": "panic"}},
        {"model_name": "misbehave-down", "backend": "misbehave",
         "model_config": {"misbehave": "error", "error_kind": "unavailable"}},
        {"model_name": "misbehave-slow", "backend": "misbehave",
         "model_config": {"misbehave": "slow", "sleep_ms": 5000}},
        {"model_name": "not-installed", "backend": "nosuchbackend", "model_id": "x"}
    ])
}

impl Server {
    /// Starts `clemhost serve ARGS` with the test registry and the built plugins.
    pub fn start(args: &[&str]) -> Server {
        Self::start_in(TestEnv::new(), &test_registry(), args, &[])
    }

    /// Starts it in `env` with `registry` and extra environment variables.
    pub fn start_in(
        env: TestEnv,
        registry: &Value,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> Server {
        env.write("reg.json", &registry.to_string());
        let mut cmd = env.cmd();
        cmd.args([
            "--no-default-registry",
            "--registry",
            "reg.json",
            "--plugin-dir",
            &plugin_build_dir().display().to_string(),
            "serve",
            "--port",
            "0",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("clemhost starts");
        let log = Arc::new(Mutex::new(String::new()));
        {
            let log = log.clone();
            let mut err = child.stderr.take().expect("piped stderr");
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    log.lock()
                        .expect("log lock")
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first = String::new();
        out.read_line(&mut first).expect("read the startup line");
        if first.is_empty() {
            let _ = child.wait();
            std::thread::sleep(Duration::from_millis(100));
            panic!("serve did not start: {}", log.lock().expect("log lock"));
        }
        let addr: SocketAddr = first
            .split("http://")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no address in the startup line: {first}"));
        let mut banner = first;
        // The model lines follow at once; read what is there without blocking forever.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines() {
                if tx.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            banner.push_str(&line);
            banner.push('\n');
        }
        Server {
            child,
            addr,
            banner,
            log,
            _env: env,
        }
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// The base URL for OpenAI clients.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to end (at most `limit`).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends raw bytes as one request (`Connection: close`) and reads the answer.
pub fn raw(addr: SocketAddr, request: &[u8]) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect(addr)?;
    // Only a guard against a hung server: eight SmolLM2 answers on a
    // loaded 2-core machine have taken over a minute.
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    s.write_all(request)?;
    let mut bytes = Vec::new();
    s.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_string(),
    })
}

/// A request with a body and extra header lines.
pub fn request(addr: SocketAddr, method: &str, path: &str, body: &str, extra: &str) -> Reply {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    raw(addr, req.as_bytes()).expect("the server answers")
}

pub fn post(addr: SocketAddr, body: &str) -> Reply {
    request(addr, "POST", "/v1/chat/completions", body, "")
}

pub fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, "", "")
}

fn chat(model: &str, text: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": text}]}).to_string()
}

fn assert_error(r: &Reply, status: u16, code: &str) -> Value {
    assert_eq!(r.status, status, "{}", r.body);
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    assert!(v["error"]["type"].is_string(), "{v}");
    v
}

#[test]
fn a_chat_completion_carries_the_answer_and_what_run_records() {
    let server = Server::start(&["-m", "echo-1", "-m", "echo-2"]);
    assert!(server.banner.contains("echo-1"), "{}", server.banner);
    assert!(
        server.banner.contains("libecho_api.so"),
        "{}",
        server.banner
    );

    let r = post(
        server.addr,
        &json!({"model": "echo-2", "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there"}],
            "temperature": 0.0, "max_tokens": 20})
        .to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "echo-2");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "hello there");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 2);
    assert_eq!(
        v["usage"]["total_tokens"],
        v["usage"]["prompt_tokens"].as_u64().unwrap() + 2
    );
    // The extension: the plugin's prompt object and the response as `run` records it.
    let ext = &v["clemhost"];
    assert_eq!(ext["prompt"]["max_tokens"], 20);
    assert_eq!(ext["prompt"]["messages"][1]["content"], "hello there");
    assert_eq!(ext["response"]["object"], "chat.completion");
    assert_eq!(ext["response"]["clem_player"]["response"], "hello there");
    assert_eq!(ext["response"]["clem_player"]["model_name"], "echo-2");
    assert_eq!(ext["attempts"], 1);

    let models = get(server.addr, "/v1/models").json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["echo-1", "echo-2"]);
    assert_eq!(models["data"][0]["owned_by"], "clemhost:echo");
    let health = get(server.addr, "/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
}

#[test]
fn a_streamed_answer_is_server_sent_events_ending_in_done() {
    let server = Server::start(&["-m", "echo-1"]);
    let r = post(
        server.addr,
        &json!({"model": "echo-1", "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": "hi"}]})
        .to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert!(r.body.ends_with("data: [DONE]\n\n"), "{}", r.body);
    let chunks: Vec<Value> = r
        .body
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("each chunk is JSON"))
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "GREET: Hello, welcome!");
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let finish = chunks
        .iter()
        .find(|c| c["choices"][0]["finish_reason"].is_string())
        .expect("a chunk with the finish reason");
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert!(finish["clemhost"]["prompt"].is_object());
    assert!(chunks.last().expect("chunks")["usage"]["total_tokens"].is_u64());
}

/// A client that sends its headers and then not its body is answered
/// within --timeout (it cannot hold its connection for as long as it
/// likes), and one that announces a body over --max-body-bytes is refused
/// without waiting for it.
#[test]
fn a_body_that_never_arrives_is_answered_within_the_timeout() {
    let server = Server::start(&["-m", "echo-1", "--timeout", "1", "--max-body-bytes", "2000"]);
    let a = server.addr;
    let head = |len: u64| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n{{\"model\""
        )
    };
    let r = raw(a, head(100).as_bytes()).expect("an answer, not a connection held open");
    let v = assert_error(&r, 400, "unreadable_body");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--timeout"),
        "{v}"
    );
    let r = raw(a, head(99_999_999_999).as_bytes()).expect("an answer at once");
    assert_error(&r, 413, "body_too_large");
}

#[test]
fn bad_requests_get_openai_errors_that_name_the_fix() {
    let server = Server::start(&["-m", "echo-1", "-m", "echo-2", "--max-body-bytes", "2000"]);
    let a = server.addr;

    let v = assert_error(
        &post(a, "{\"model\": \"echo-1\",\n  \"messages\": [{\"role\""),
        400,
        "invalid_json",
    );
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("line 2, column"), "{msg}");

    let v = assert_error(&post(a, r#"{"model": "echo-1"}"#), 400, "invalid_field");
    assert_eq!(v["error"]["param"], "messages");

    let v = assert_error(
        &post(
            a,
            r#"{"model": "echo-1", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}"#,
        ),
        400,
        "invalid_field",
    );
    assert_eq!(v["error"]["param"], "temperature");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("must be a number, not a string"));

    let v = assert_error(
        &post(a, r#"{"model": ["echo-1"], "messages": []}"#),
        400,
        "invalid_field",
    );
    assert_eq!(v["error"]["param"], "model");
    let v = assert_error(
        &post(
            a,
            r#"{"model": "echo-1", "messages": [{"role": "user", "content": {"text": "x"}}]}"#,
        ),
        400,
        "invalid_field",
    );
    assert_eq!(v["error"]["param"], "messages[0].content");
    assert_error(&post(a, "[1, 2]"), 400, "invalid_field");
    assert_error(&post(a, ""), 400, "invalid_json");

    // Unknown model: 404 with the closest served names.
    let v = assert_error(&post(a, &chat("echo-3", "x")), 404, "model_not_found");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("'echo-1'") && msg.contains("'echo-2'"),
        "{msg}"
    );
    // In the registry, but not served by this server.
    let v = assert_error(&post(a, &chat("echo-slow", "x")), 404, "model_not_found");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not served by this server"),
        "{v}"
    );

    // Too big: 413.
    let big = chat("echo-1", &"x".repeat(5000));
    assert_error(&post(a, &big), 413, "body_too_large");

    assert_error(&get(a, "/v1/nothing"), 404, "unknown_url");
    assert_error(&get(a, "/v1/chat/completions"), 405, "method_not_allowed");

    // The server is fine after all that.
    assert_eq!(post(a, &chat("echo-1", "x")).status, 200);
}

/// A request with its own header lines (no Content-Type unless given).
fn with_headers(addr: SocketAddr, method: &str, path: &str, body: &str, headers: &str) -> Reply {
    let req = format!(
        "{method} {path} HTTP/1.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw(addr, req.as_bytes()).expect("the server answers")
}

#[test]
fn web_pages_cannot_drive_a_loopback_server() {
    let server = Server::start(&["-m", "echo-1", "--allow-origin", "http://localhost:5173"]);
    let a = server.addr;
    let port = a.port();
    let body = chat("echo-1", "x");
    let path = "/v1/chat/completions";
    let json_type = "Content-Type: application/json\r\n";
    let host = format!("Host: {a}\r\n");

    // A form or a no-cors fetch can only send these content types.
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let r = with_headers(
            a,
            "POST",
            path,
            &body,
            &format!("{host}Content-Type: {ct}\r\n"),
        );
        assert_error(&r, 415, "unsupported_media_type");
    }
    let r = with_headers(a, "POST", path, &body, &host);
    assert_error(&r, 415, "unsupported_media_type");

    // A page elsewhere: its Origin is refused, whatever the request.
    for (method, p, b) in [
        ("POST", path, body.as_str()),
        ("GET", "/v1/models", ""),
        ("GET", "/health", ""),
    ] {
        let r = with_headers(
            a,
            method,
            p,
            b,
            &format!("{host}{json_type}Origin: https://evil.example\r\n"),
        );
        assert_error(&r, 403, "origin_not_allowed");
        assert!(r.header("access-control-allow-origin").is_none(), "{r:?}");
    }
    // DNS rebinding: the page's own name in Host.
    for bad in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("127.0.0.1.evil.example:{port}"),
    ] {
        let r = with_headers(
            a,
            "POST",
            path,
            &body,
            &format!("Host: {bad}\r\n{json_type}"),
        );
        assert_error(&r, 403, "host_not_allowed");
    }

    // Clients that are not browsers: no Origin, their own Host.
    for good in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
    ] {
        let r = with_headers(
            a,
            "POST",
            path,
            &body,
            &format!("Host: {good}\r\n{json_type}"),
        );
        assert_eq!(r.status, 200, "{good}: {}", r.body);
    }
    let r = with_headers(
        a,
        "POST",
        path,
        &body,
        &format!("{host}Content-Type: application/json; charset=utf-8\r\n"),
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // The origin allowed with --allow-origin: answered, with CORS headers,
    // and its preflight too.
    let allowed = "Origin: http://localhost:5173\r\n";
    let r = with_headers(
        a,
        "POST",
        path,
        &body,
        &format!("{host}{json_type}{allowed}"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    let r = with_headers(
        a,
        "OPTIONS",
        path,
        "",
        &format!("{host}{allowed}Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type, authorization\r\n"),
    );
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:5173")
    );
    assert!(
        r.header("access-control-allow-headers")
            .is_some_and(|h| h.contains("content-type")),
        "{r:?}"
    );
}

#[test]
fn a_client_trickling_its_headers_is_cut_off_while_others_are_served() {
    let server = Server::start(&["-m", "echo-1", "--header-timeout", "1"]);
    let addr = server.addr;
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let started = Instant::now();
        let head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: abcdefghijklmnopqrstuvwxyz\r\n";
        for b in head {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            if started.elapsed() > Duration::from_secs(6) {
                break;
            }
        }
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        started.elapsed()
    });
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(post(addr, &chat("echo-1", "x")).status, 200);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "served at once: {:?}",
        t.elapsed()
    );
    let cut_after = slow.join().expect("slow client");
    assert!(
        cut_after < Duration::from_secs(4),
        "the slow client was cut off after {cut_after:?}"
    );
    assert_eq!(get(addr, "/health").status, 200);
}

#[test]
fn two_hundred_connections_to_a_model_limited_to_four_each_get_an_answer_or_a_clean_429() {
    let server = Server::start(&["-m", "echo-slow", "--max-concurrent", "4", "--queue", "16"]);
    assert!(
        server.banner.contains("4 at once, 16 queued"),
        "{}",
        server.banner
    );
    let addr = server.addr;
    let started = Instant::now();
    let workers: Vec<_> = (0..200)
        .map(|i| {
            std::thread::spawn(move || {
                let body = chat("echo-slow", &format!("client {i}"));
                let r = post(addr, &body);
                (i, r)
            })
        })
        .collect();
    let mut ok = 0;
    let mut refused = 0;
    for w in workers {
        let (i, r) = w.join().expect("worker");
        match r.status {
            200 => {
                assert_eq!(
                    r.json()["choices"][0]["message"]["content"],
                    format!("client {i}")
                );
                ok += 1;
            }
            429 => {
                assert_error(&r, 429, "queue_full");
                assert_eq!(r.header("retry-after"), Some("1"), "{:?}", r.headers);
                refused += 1;
            }
            other => panic!("client {i}: status {other}: {}", r.body),
        }
    }
    assert_eq!(ok + refused, 200);
    assert!(
        ok >= 20,
        "at least the 4 running and 16 queued are answered: {ok}"
    );
    assert!(refused > 0, "a queue of 16 cannot take 200 at once");
    // Four at a time, 300 ms each: the answered ones took at least ok/4 rounds.
    let rounds = (ok as u64).div_ceil(4);
    assert!(
        started.elapsed() >= Duration::from_millis(300 * rounds - 100),
        "{ok} answers in {:?}: more than 4 ran at once",
        started.elapsed()
    );
    // Healthy after, with an empty queue.
    assert_eq!(get(addr, "/health").status, 200);
    assert_eq!(post(addr, &chat("echo-slow", "after")).status, 200);
    let metrics = get(addr, "/metrics").body;
    assert!(
        metrics.contains(&format!(
            "clemhost_requests_total{{model=\"echo-slow\",status=\"429\"}} {refused}\n"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("clemhost_queued{model=\"echo-slow\"} 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("clemhost_in_flight{model=\"echo-slow\"} 0\n"),
        "{metrics}"
    );
}

#[test]
fn an_api_key_is_required_off_loopback_and_never_echoed() {
    let env = TestEnv::new();
    let out = env.run(&["serve", "--host", "0.0.0.0", "--port", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--api-key-env"), "{}", stderr(&out));
    let out = env
        .cmd()
        .args([
            "serve",
            "--port",
            "0",
            "--api-key-env",
            "CLEMHOST_TEST_SERVE_KEY",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("CLEMHOST_TEST_SERVE_KEY"),
        "{}",
        stderr(&out)
    );

    let key = "sk-serve-test-0123456789";
    let server = Server::start_in(
        TestEnv::new(),
        &test_registry(),
        &["-m", "echo-1", "--api-key-env", "SERVE_KEY", "-vv"],
        &[("SERVE_KEY", key)],
    );
    let body = chat("echo-1", "x");
    let a = server.addr;
    let none = post(a, &body);
    assert_error(&none, 401, "invalid_api_key");
    let guess = "sk-serve-test-0123456788";
    for wrong in [guess, "sk-serve-test-01234567890", "x"] {
        let r = request(
            a,
            "POST",
            "/v1/chat/completions",
            &body,
            &format!("Authorization: Bearer {wrong}\r\n"),
        );
        assert_error(&r, 401, "invalid_api_key");
        assert!(
            !r.body.contains(wrong) && !r.body.contains(key),
            "{}",
            r.body
        );
    }
    let r = request(
        a,
        "GET",
        "/v1/models",
        "",
        &format!("Authorization: Basic {key}\r\n"),
    );
    assert_eq!(r.status, 401);
    assert_eq!(get(a, "/metrics").status, 401);
    assert_eq!(get(a, "/health").status, 200, "health needs no key");
    let r = request(
        a,
        "POST",
        "/v1/chat/completions",
        &body,
        &format!("Authorization: Bearer {key}\r\n"),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains(key));
    std::thread::sleep(Duration::from_millis(200));
    let log = server.log();
    assert!(!log.contains(key) && !log.contains(guess), "{log}");
    assert!(!server.banner.contains(key));
}

#[test]
fn plugin_panics_errors_and_timeouts_answer_their_status_and_the_server_goes_on() {
    let server = Server::start(&[
        "-m",
        "misbehave-panic",
        "-m",
        "misbehave-down",
        "-m",
        "misbehave-slow",
        "-m",
        "echo-1",
        "--timeout",
        "1",
        "--retries",
        "2",
        "--retry-delay-ms",
        "10",
    ]);
    let a = server.addr;
    for _ in 0..3 {
        let v = assert_error(&post(a, &chat("misbehave-panic", "x")), 500, "plugin_panic");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("misbehave-panic"),
            "{v}"
        );
        assert_eq!(post(a, &chat("echo-1", "still here")).status, 200);
    }
    let down = post(a, &chat("misbehave-down", "x"));
    assert_error(&down, 503, "upstream_unavailable");
    assert!(down.header("retry-after").is_some());
    let t = Instant::now();
    assert_error(&post(a, &chat("misbehave-slow", "x")), 504, "timeout");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(get(a, "/health").status, 200);
    let metrics = get(a, "/metrics").body;
    assert!(
        metrics
            .contains("clemhost_errors_total{model=\"misbehave-panic\",kind=\"plugin_panic\"} 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("clemhost_errors_total{model=\"misbehave-slow\",kind=\"timeout\"} 1\n"),
        "{metrics}"
    );
}

#[test]
fn metrics_are_prometheus_text() {
    let server = Server::start(&["-m", "echo-1"]);
    let a = server.addr;
    for _ in 0..3 {
        assert_eq!(post(a, &chat("echo-1", "x")).status, 200);
    }
    assert_eq!(post(a, "{").status, 400);
    let r = get(a, "/metrics");
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    let m = &r.body;
    for line in m.lines() {
        assert!(
            line.starts_with("# HELP ")
                || line.starts_with("# TYPE ")
                || line.starts_with("clemhost_"),
            "not Prometheus text: {line}"
        );
    }
    assert!(m.contains("# TYPE clemhost_request_duration_seconds histogram\n"));
    assert!(
        m.contains("clemhost_requests_total{model=\"echo-1\",status=\"200\"} 3\n"),
        "{m}"
    );
    assert!(
        m.contains("clemhost_requests_total{model=\"\",status=\"400\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("clemhost_errors_total{model=\"\",kind=\"invalid_json\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("clemhost_request_duration_seconds_count{model=\"echo-1\"} 3\n"),
        "{m}"
    );
    assert!(
        m.contains("clemhost_request_duration_seconds_bucket{model=\"echo-1\",le=\"+Inf\"} 3\n"),
        "{m}"
    );
}

#[test]
fn without_models_every_installed_entry_is_served_and_opened_on_first_use() {
    let server = Server::start(&[]);
    assert!(
        server.banner.contains("opened on first use"),
        "{}",
        server.banner
    );
    let a = server.addr;
    let ids: Vec<String> = get(a, "/v1/models").json()["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str().map(String::from))
        .collect();
    assert!(ids.contains(&"echo-1".to_string()) && ids.contains(&"misbehave-panic".to_string()));
    assert!(!ids.contains(&"not-installed".to_string()), "{ids:?}");
    assert_eq!(get(a, "/health").json()["models_open"], 0);
    assert_eq!(
        post(a, &chat("echo-2", "lazy")).json()["choices"][0]["message"]["content"],
        "lazy"
    );
    assert_eq!(get(a, "/health").json()["models_open"], 1);
}

#[cfg(unix)]
#[test]
fn sigterm_finishes_the_requests_in_flight_then_stops() {
    let mut server = Server::start(&["-m", "echo-slow", "--grace", "10"]);
    let a = server.addr;
    let inflight: Vec<_> = (0..3)
        .map(|i| std::thread::spawn(move || post(a, &chat("echo-slow", &format!("in flight {i}")))))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let killed = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    for (i, t) in inflight.into_iter().enumerate() {
        let r = t.join().expect("client");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.json()["choices"][0]["message"]["content"],
            format!("in flight {i}")
        );
    }
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("the server stops");
    assert!(status.success(), "{status:?}: {}", server.log());
    assert!(
        TcpStream::connect(a).is_err(),
        "no new connections after the stop"
    );
    let log = server.log();
    assert!(log.contains("SIGTERM") && log.contains("stopped"), "{log}");
}

#[cfg(unix)]
#[test]
fn requests_still_running_after_the_grace_period_are_cancelled_with_503() {
    let mut server = Server::start(&["-m", "misbehave-slow", "--grace", "1"]);
    let a = server.addr;
    let stuck = std::thread::spawn(move || post(a, &chat("misbehave-slow", "x")));
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill runs");
    let r = stuck.join().expect("client");
    assert_error(&r, 503, "shutting_down");
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("the server stops");
    assert!(status.success(), "{status:?}");
    // The plugin ignores the cancel flag and sleeps 5 s; the server does not wait for it.
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}

// --- Real clients --------------------------------------------------------

/// The Python of a venv that scripts/python-venvs made, or `None` (with a
/// message) outside CI; in CI a missing venv fails the test.
fn venv_python(name: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let py = home
        .join(".cache/clemhost/venvs")
        .join(name)
        .join("bin/python");
    if py.is_file() {
        return Some(py);
    }
    let msg = format!(
        "no Python venv '{name}' at {} (scripts/python-venvs makes it; scripts/setup runs it)",
        py.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{msg}");
    eprintln!("skipped: {msg}");
    None
}

fn python_dir() -> PathBuf {
    crate::util::repo_root().join("host/tests/python")
}

#[test]
fn the_openai_python_package_talks_to_serve() {
    let Some(py) = venv_python("openai") else {
        return;
    };
    let server = Server::start(&["-m", "echo-1", "-m", "echo-2"]);
    let key = "sk-python-test-key";
    let keyed = Server::start_in(
        TestEnv::new(),
        &test_registry(),
        &["-m", "echo-1", "--api-key-env", "SERVE_KEY"],
        &[("SERVE_KEY", key)],
    );
    let out = Command::new(py)
        .arg(python_dir().join("openai_client.py"))
        .arg(server.base_url())
        .arg(keyed.base_url())
        .env("SERVE_KEY", key)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("openai client: all checks passed"));
}

#[test]
fn clemcores_openai_compatible_backend_plays_hellogame_through_serve() {
    let Some(py) = venv_python("clemcore") else {
        return;
    };
    let Some(shared) = crate::util::shared_dir() else {
        return;
    };
    let game = shared.join("reference/clembench/hellogame");
    assert!(
        game.join("clemgame.json").is_file(),
        "{} is missing",
        game.display()
    );
    let server = Server::start(&["-m", "echo-1"]);

    // clemcore's side: its own working directory with the game, a registry
    // entry for the served model and a key.json with the base_url.
    let dir = tempfile::tempdir().expect("temp dir");
    let games = dir.path().join("games");
    std::fs::create_dir_all(&games).expect("games dir");
    std::os::unix::fs::symlink(&game, games.join("hellogame")).expect("link the game");
    std::fs::write(
        dir.path().join("model_registry.json"),
        json!([{"model_name": "served-echo", "backend": "openai_compatible",
                "model_id": "echo-1", "model_config": {}}])
        .to_string(),
    )
    .expect("registry");
    std::fs::write(
        dir.path().join("key.json"),
        json!({"openai_compatible": {"api_key": "unused", "base_url": server.base_url()}})
            .to_string(),
    )
    .expect("key.json");
    let clem = py.parent().expect("bin dir").join("clem");
    let out = Command::new(&clem)
        .args(["run", "-g", "hellogame", "-m", "served-echo"])
        .current_dir(dir.path())
        .env("HOME", dir.path())
        .output()
        .expect("clem runs");
    let log = std::fs::read_to_string(dir.path().join("clembench.log")).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\n{}\n{log}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!log.contains("Exception for instance"), "{log}");
    let episodes = dir
        .path()
        .join("results/served-echo-t0.0/hellogame/0_greet_en");
    let episodes = if episodes.is_dir() {
        episodes
    } else {
        find_dir(&dir.path().join("results"), "greet_en")
            .unwrap_or_else(|| panic!("no greet_en results under {}", dir.path().display()))
    };
    let mut played = 0;
    for entry in std::fs::read_dir(&episodes).expect("episodes") {
        let p = entry.expect("entry").path();
        if !p.is_dir() {
            continue;
        }
        assert!(p.join("interactions.json").is_file(), "{}", p.display());
        assert!(!p.join("error.json").exists(), "{}", p.display());
        let requests: Value = serde_json::from_str(
            &std::fs::read_to_string(p.join("player_1.requests.json")).expect("requests.json"),
        )
        .expect("JSON");
        let answer =
            &requests["calls"][0]["call"]["raw_response_obj"]["choices"][0]["message"]["content"];
        assert_eq!(answer, "GREET: Hello, welcome!", "{}", p.display());
        played += 1;
    }
    assert_eq!(played, 10);
    let metrics = get(server.addr, "/metrics").body;
    assert!(
        metrics.contains("clemhost_requests_total{model=\"echo-1\",status=\"200\"} 10\n"),
        "{metrics}"
    );
}

fn find_dir(root: &std::path::Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(root).ok()? {
        let p = entry.ok()?.path();
        if p.is_dir() {
            if p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(name))
            {
                return Some(p);
            }
            if let Some(found) = find_dir(&p, name) {
                return Some(found);
            }
        }
    }
    None
}

// --- The real model -------------------------------------------------------

#[test]
fn smollm2_answers_eight_concurrent_requests_as_it_answers_them_one_by_one() {
    let Some(gguf) = crate::run::smollm2_gguf() else {
        return;
    };
    if !plugin_build_dir().join("libllamacpp_api.so").exists() {
        eprintln!("skipped: libllamacpp_api.so is not built");
        return;
    }
    let registry = json!([
        {"model_name": "smol-gguf", "backend": "llamacpp",
         "huggingface_id": gguf.to_string_lossy(),
         "model_config": {"premade_chat_template": true, "eos_to_cull": "<\\|im_end\\|>",
                          "threads": 2, "n_ctx": 2048}}
    ]);
    let server = Server::start_in(TestEnv::new(), &registry, &["-m", "smol-gguf"], &[]);
    let a = server.addr;
    let prompts: Vec<String> = [
        "What is the capital of France?",
        "Name a colour.",
        "Say hello to Peter.",
        "What is 2 plus 2?",
        "Name an animal that can fly.",
        "Write one word about the sea.",
        "What do bees make?",
        "Greet Max in one sentence.",
    ]
    .iter()
    .map(|p| {
        json!({"model": "smol-gguf", "temperature": 0.0, "max_tokens": 16,
               "messages": [{"role": "user", "content": p}]})
        .to_string()
    })
    .collect();
    let answer = |r: Reply| -> String {
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
            .to_string()
    };
    let single: Vec<String> = prompts.iter().map(|p| answer(post(a, p))).collect();
    let clients: Vec<_> = prompts
        .iter()
        .cloned()
        .map(|p| std::thread::spawn(move || post(a, &p)))
        .collect();
    // They reach the plugin together (so llamacpp can batch them).
    let mut most_at_once = 0;
    while clients.iter().any(|c| !c.is_finished()) {
        let metrics = get(a, "/metrics").body;
        let now: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("clemhost_in_flight{model=\"smol-gguf\"} "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        most_at_once = most_at_once.max(now);
        std::thread::sleep(Duration::from_millis(20));
    }
    let together: Vec<String> = clients
        .into_iter()
        .map(|t| answer(t.join().expect("client")))
        .collect();
    assert!(
        most_at_once >= 2,
        "the requests reached the plugin one at a time"
    );
    assert_eq!(single, together);
    assert!(single.iter().any(|s| !s.is_empty()), "{single:?}");
}

/// Duration flags far out of range were a panic (exit 101: "cannot convert
/// float seconds to Duration"), and `--timeout 1e19` started a server whose
/// every request panicked on the deadline. They share `run --timeout`'s
/// bounds (0.001 s to 7 days) and its message, with the value in short form.
#[test]
fn serve_duration_flags_out_of_bounds_are_usage_errors_not_panics() {
    let env = TestEnv::new();
    for flag in ["--timeout", "--grace", "--header-timeout"] {
        for value in ["1e30", "1e19", "1e300", "1e-320", "0", "inf"] {
            let out = env.run(&["serve", "--port", "0", flag, value]);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
            assert!(
                err.contains(flag) && err.contains("7 days") && !err.contains("panicked"),
                "{flag} {value}: {err}"
            );
            assert!(err.len() < 300, "{flag} {value}: {err}");
        }
    }
}

/// The longest `--timeout` allowed still answers a request: the deadline is
/// computed without overflow.
#[test]
fn a_server_with_the_longest_timeout_answers() {
    let server = Server::start(&["-m", "echo-1", "--timeout", "604800", "--grace", "604800"]);
    let r = post(server.addr, &chat("echo-1", "hi"));
    assert_eq!(r.status, 200, "{}", r.body);
}
