//! A fake HTTP server on 127.0.0.1 that records requests and answers with a
//! handler (see the module above for why it is this small).

use clemhost_plugin_sdk::serde_json::{self, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
