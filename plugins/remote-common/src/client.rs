//! One HTTP client per model handle: connection settings, credentials, and a
//! POST that honours the host's cancel flag and deadline.

use crate::error::{invalid_response, status_error, transport_error};
use clemhost_plugin_sdk::serde_json::{self, Value};
use clemhost_plugin_sdk::{BackendError, Ctx, ErrorKind, ModelConfig};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use std::time::Duration;

/// How often a waiting request looks at the host's cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(100);
/// How long establishing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a call may take when the host sets no deadline (the same
/// default as OpenAI's Python SDK), so a silent server cannot hang a run.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(600);

/// The connection settings of one model, read from its key section and
/// registry entry by [`Endpoint::from_config`].
#[derive(Clone)]
pub struct Endpoint {
    /// The provider's name for messages (e.g. `OpenAI`).
    pub provider: &'static str,
    /// The key.json section, for messages (e.g. `openai`, or the one the
    /// registry entry names with `"key_name"`).
    pub key_name: String,
    /// The API key, if the key section has one.
    api_key: Option<String>,
    /// The URL that request paths are appended to, without a trailing slash.
    pub base_url: String,
    /// Whether TLS certificates are checked (on unless explicitly opted out).
    pub verify_tls: bool,
    /// An extra trusted root certificate (PEM file).
    pub ca_cert: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("verify_tls", &self.verify_tls)
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

/// The field that turns TLS certificate checks off (credentials or `model_config`).
pub const INSECURE_FIELD: &str = "insecure_skip_tls_verify";
/// The field naming an extra trusted root certificate, a PEM file.
pub const CA_CERT_FIELD: &str = "ca_cert";

fn flag(config: &ModelConfig, field: &str) -> Result<bool, BackendError> {
    let from_credentials = config.credentials.as_ref().and_then(|c| c.get(field));
    match from_credentials.or_else(|| config.model_config().get(field)) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(BackendError::invalid_request(format!(
            "`{field}` must be true or false, found {other}"
        ))),
    }
}

impl Endpoint {
    /// Reads `api_key`, `base_url` (default `default_base_url`),
    /// [`INSECURE_FIELD`] and [`CA_CERT_FIELD`] from the model's configuration.
    ///
    /// With `require_key`, a missing `api_key` is an `auth` error naming the
    /// key.json section (the key itself is never printed). The section is
    /// `key_name` unless the registry entry names another one with a
    /// top-level `"key_name"`.
    pub fn from_config(
        config: &ModelConfig,
        provider: &'static str,
        key_name: &'static str,
        default_base_url: Option<&str>,
        require_key: bool,
    ) -> Result<Endpoint, BackendError> {
        let key_name = config
            .spec
            .get("key_name")
            .and_then(Value::as_str)
            .unwrap_or(key_name);
        let api_key = config.credential("api_key").map(str::to_string);
        if require_key && api_key.is_none() {
            let why = if config.credentials.is_none() {
                format!("there is no `{key_name}` section in key.json")
            } else {
                format!("the `{key_name}` section of key.json has no `api_key`")
            };
            return Err(BackendError::new(
                ErrorKind::Auth,
                format!(
                    "{provider} needs an API key, but {why}; add {{\"{key_name}\": {{\"api_key\": \"...\"}}}} to key.json"
                ),
            ));
        }
        let base_url = match (config.credential("base_url"), default_base_url) {
            (Some(url), _) => url.trim().trim_end_matches('/').to_string(),
            (None, Some(url)) => url.to_string(),
            (None, None) => {
                return Err(BackendError::invalid_request(format!(
                    "{provider} needs a server address: add \"base_url\" (e.g. \"http://127.0.0.1:8000/v1\") to the `{key_name}` section of key.json"
                )))
            }
        };
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            // Never the value: a key pasted into the wrong field would be repeated.
            return Err(BackendError::invalid_request(format!(
                "`base_url` in the `{key_name}` section of key.json must start with http:// or https://; it holds {} characters that do not (not shown, in case a key was pasted there)",
                base_url.chars().count()
            )));
        }
        let ca_cert = config
            .credential(CA_CERT_FIELD)
            .or_else(|| {
                config
                    .model_config()
                    .get(CA_CERT_FIELD)
                    .and_then(Value::as_str)
            })
            .map(str::to_string);
        Ok(Endpoint {
            provider,
            key_name: key_name.to_string(),
            api_key,
            base_url,
            verify_tls: !flag(config, INSECURE_FIELD)?,
            ca_cert,
        })
    }

    /// The API key, if there is one.
    pub fn api_key(&self) -> Option<&str> {
        self.api_key.as_deref()
    }

    /// Whether the server is this machine (then no proxy is used).
    fn is_loopback(&self) -> bool {
        let rest = self
            .base_url
            .split_once("://")
            .map(|(_, r)| r)
            .unwrap_or(&self.base_url);
        rest.starts_with("127.") || rest.starts_with("localhost") || rest.starts_with("[::1]")
    }
}

/// A header sent with every request; `secret` ones are never logged by reqwest.
pub struct Header {
    /// Header name (lower case).
    pub name: &'static str,
    /// Header value.
    pub value: String,
    /// Whether the value is a credential.
    pub secret: bool,
}

impl Header {
    /// A header carrying a credential.
    pub fn secret(name: &'static str, value: impl Into<String>) -> Header {
        Header {
            name,
            value: value.into(),
            secret: true,
        }
    }

    /// A header carrying no secret.
    pub fn plain(name: &'static str, value: impl Into<String>) -> Header {
        Header {
            name,
            value: value.into(),
            secret: false,
        }
    }
}

/// The answer of a successful call: parsed JSON and the raw bytes.
#[derive(Debug)]
pub struct JsonAnswer {
    /// The body parsed as JSON.
    pub json: Value,
    /// The body as received (for error excerpts).
    pub raw: Vec<u8>,
}

/// How many redirects an image download follows (each on the image's own host).
pub const IMAGE_REDIRECTS: usize = 3;

/// An HTTP client bound to one endpoint (pools its connections).
pub struct HttpClient {
    client: reqwest::Client,
    /// For image URLs from messages: no credential headers, no cookies, the
    /// default TLS checks, redirects only on the same host (see [`image_client`]).
    images: reqwest::Client,
    endpoint: Endpoint,
}

/// The client that downloads image URLs. It never carries the endpoint's
/// headers: an image URL comes from an instances file or a `serve` client,
/// and the key must not go where they point. It follows at most
/// [`IMAGE_REDIRECTS`] redirects, each to the scheme, host and port of the
/// URL asked for, so a redirect cannot send it elsewhere either; the
/// endpoint's TLS options (`insecure_skip_tls_verify`, `ca_cert`) are for
/// the endpoint and are not used here.
fn image_client() -> Result<reqwest::Client, BackendError> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().cloned();
        let same_origin = first.as_ref().is_some_and(|first| {
            first.scheme() == attempt.url().scheme()
                && first.host_str() == attempt.url().host_str()
                && first.port_or_known_default() == attempt.url().port_or_known_default()
        });
        if attempt.previous().len() > IMAGE_REDIRECTS {
            attempt.error(format!("more than {IMAGE_REDIRECTS} redirects"))
        } else if same_origin {
            attempt.follow()
        } else {
            let to = attempt.url().host_str().unwrap_or_default().to_string();
            attempt.error(format!(
                "it redirects to another host ({to}); image downloads follow redirects only on the image's own host"
            ))
        }
    });
    reqwest::Client::builder()
        .redirect(policy)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("clemhost/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| BackendError::internal(format!("could not build the image client: {e}")))
}

impl HttpClient {
    /// Builds the client with the endpoint's TLS settings and fixed headers.
    pub fn new(endpoint: Endpoint, headers: Vec<Header>) -> Result<HttpClient, BackendError> {
        let mut map = HeaderMap::new();
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for h in headers {
            let mut value = HeaderValue::from_str(&h.value).map_err(|_| {
                BackendError::invalid_request(format!(
                    "a value for the `{}` header (from the `{}` key.json section) contains characters HTTP headers cannot carry",
                    h.name, endpoint.key_name
                ))
            })?;
            value.set_sensitive(h.secret);
            map.insert(HeaderName::from_static(h.name), value);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(map)
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .user_agent(concat!("clemhost/", env!("CARGO_PKG_VERSION")));
        if endpoint.is_loopback() {
            builder = builder.no_proxy();
        }
        if !endpoint.verify_tls {
            log::warn!(
                "TLS certificate verification is OFF for {} ({}), as `{INSECURE_FIELD}` asks",
                endpoint.provider,
                clemhost_plugin_sdk::redact::redact(&endpoint.base_url)
            );
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(path) = &endpoint.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                BackendError::invalid_request(format!(
                    "cannot read `{CA_CERT_FIELD}` file {path}: {e}"
                ))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                BackendError::invalid_request(format!(
                    "`{CA_CERT_FIELD}` file {path} is not a PEM certificate: {e}"
                ))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder.build().map_err(|e| {
            BackendError::internal(format!(
                "could not build the HTTP client for {}: {e}",
                endpoint.provider
            ))
        })?;
        Ok(HttpClient {
            client,
            images: image_client()?,
            endpoint,
        })
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// POSTs `body` as JSON to `base_url + path` and reads a JSON answer.
    ///
    /// Exactly one attempt: the host retries retryable errors. Returns early
    /// with `cancelled` or `timeout` when the host's flag or deadline says so.
    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
        ctx: &Ctx<'_>,
    ) -> Result<JsonAnswer, BackendError> {
        ctx.check()?;
        let bytes = serde_json::to_vec(body)
            .map_err(|e| BackendError::internal(format!("request body: {e}")))?;
        let url = format!("{}{path}", self.endpoint.base_url);
        let mut request = self.client.post(url).body(bytes);
        if ctx.deadline().is_none() {
            request = request.timeout(DEFAULT_CALL_TIMEOUT);
        }
        let provider = self.endpoint.provider;
        let exchange = async {
            let response = request
                .send()
                .await
                .map_err(|e| transport_error(provider, &e))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let raw = response
                .bytes()
                .await
                .map_err(|e| transport_error(provider, &e))?
                .to_vec();
            if !(200..300).contains(&status) {
                return Err(status_error(provider, status, retry_after.as_deref(), &raw));
            }
            if raw.iter().all(u8::is_ascii_whitespace) {
                return Err(invalid_response(provider, "empty body", &raw));
            }
            let json: Value = serde_json::from_slice(&raw)
                .map_err(|e| invalid_response(provider, &format!("not JSON: {e}"), &raw))?;
            Ok(JsonAnswer { json, raw })
        };
        with_ctx(ctx, provider, exchange).await
    }

    /// GETs an image URL (to inline it) and returns the bytes and content
    /// type, with the image client: no key, no cookies, redirects only on
    /// the URL's own host.
    pub async fn get_bytes(
        &self,
        url: &str,
        ctx: &Ctx<'_>,
    ) -> Result<(Vec<u8>, Option<String>), BackendError> {
        let mut request = self.images.get(url);
        if ctx.deadline().is_none() {
            request = request.timeout(DEFAULT_CALL_TIMEOUT);
        }
        let fetch = async {
            let response = request.send().await.map_err(|e| {
                BackendError::invalid_request(format!(
                    "cannot download image {url}: {}",
                    crate::error::source_chain(&e)
                ))
            })?;
            let status = response.status();
            if !status.is_success() {
                return Err(BackendError::invalid_request(format!(
                    "cannot download image {url}: HTTP {status}"
                )));
            }
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let bytes = response.bytes().await.map_err(|e| {
                BackendError::invalid_request(format!("cannot download image {url}: {e}"))
            })?;
            Ok((bytes.to_vec(), content_type))
        };
        with_ctx(ctx, self.endpoint.provider, fetch).await
    }
}

/// Runs `work` until it finishes, the host cancels, or the deadline passes.
async fn with_ctx<T>(
    ctx: &Ctx<'_>,
    provider: &str,
    work: impl std::future::Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    let cancelled = async {
        loop {
            if ctx.is_cancelled() {
                return;
            }
            tokio::time::sleep(CANCEL_POLL).await;
        }
    };
    let deadline = async {
        match ctx.deadline() {
            Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        result = work => result,
        () = cancelled => Err(BackendError::new(ErrorKind::Cancelled, "cancelled by the host")),
        () = deadline => Err(BackendError::new(
            ErrorKind::Timeout,
            format!("no answer from {provider} before the deadline"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clemhost_plugin_sdk::serde_json::json;

    fn config(credentials: Value, model_config: Value) -> ModelConfig {
        let mut spec = clemhost_plugin_sdk::serde_json::Map::new();
        spec.insert("model_name".into(), json!("m"));
        spec.insert("model_config".into(), model_config);
        ModelConfig {
            spec,
            credentials: credentials.as_object().cloned(),
            ..ModelConfig::default()
        }
    }

    #[test]
    fn tls_verification_is_on_unless_opted_out() {
        let on = Endpoint::from_config(
            &config(json!({"base_url": "https://h/v1/"}), json!({})),
            "P",
            "p",
            None,
            false,
        )
        .unwrap();
        assert!(on.verify_tls);
        assert_eq!(on.base_url, "https://h/v1");
        let off = Endpoint::from_config(
            &config(
                json!({"base_url": "https://h/v1", INSECURE_FIELD: true}),
                json!({}),
            ),
            "P",
            "p",
            None,
            false,
        )
        .unwrap();
        assert!(!off.verify_tls);
        let off_in_entry = Endpoint::from_config(
            &config(
                json!({"base_url": "https://h/v1"}),
                json!({INSECURE_FIELD: true}),
            ),
            "P",
            "p",
            None,
            false,
        )
        .unwrap();
        assert!(!off_in_entry.verify_tls);
    }

    #[test]
    fn a_key_pasted_into_base_url_is_not_repeated() {
        let err = Endpoint::from_config(
            &config(
                json!({"base_url": "sk-proj-PASTED-into-base-url"}),
                json!({}),
            ),
            "P",
            "p",
            None,
            false,
        )
        .unwrap_err();
        assert!(err.message.contains("must start with http://"), "{err}");
        assert!(!err.message.contains("PASTED"), "{err}");
    }

    #[test]
    fn an_entry_may_name_its_key_section() {
        let mut c = config(json!({}), json!({}));
        c.spec.insert("key_name".into(), json!("vllm_node_2"));
        let err = Endpoint::from_config(&c, "P", "openai_compatible", None, true).unwrap_err();
        assert!(err.message.contains("`vllm_node_2`"), "{err}");
    }

    #[test]
    fn keys_are_required_when_asked_and_never_shown() {
        let err = Endpoint::from_config(
            &config(json!({}), json!({})),
            "P",
            "p",
            Some("https://x"),
            true,
        )
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Auth);
        assert!(err.message.contains("`p` section"), "{err}");
        let e = Endpoint::from_config(
            &config(json!({"api_key": "sk-hidden"}), json!({})),
            "P",
            "p",
            Some("https://x"),
            true,
        )
        .unwrap();
        assert_eq!(e.api_key(), Some("sk-hidden"));
        assert!(!format!("{e:?}").contains("sk-hidden"));
        let bad_url = Endpoint::from_config(
            &config(json!({"base_url": "ftp://x"}), json!({})),
            "P",
            "p",
            None,
            false,
        )
        .unwrap_err();
        assert!(bad_url.message.contains("http://"), "{bad_url}");
    }
}
