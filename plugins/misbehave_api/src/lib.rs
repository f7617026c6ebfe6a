//! The `misbehave` backend: proves that the host survives a plugin that
//! breaks every rule. Behaves like a plain echo backend unless its registry
//! entry says otherwise in `model_config.misbehave`:
//!
//! | value | what happens |
//! |---|---|
//! | `panic` | panics inside `generate` |
//! | `panic_create` | panics while the model is opened |
//! | `bad_json` | returns bytes that are not JSON as a successful answer |
//! | `slow` | sleeps `model_config.sleep_ms` (default 5000) ignoring the deadline and cancel flag |
//! | `huge` | answers with 10 MB of text |
//! | `error` | returns an error of kind `model_config.error_kind` (default `unavailable`), asking to retry after `model_config.retry_after_ms` (default 10) |
//!
//! Setting the environment variable `CLEMHOST_MISBEHAVE_MANIFEST=panic`
//! makes it panic while the host reads its manifest (a broken plugin file).

use clemhost_plugin_sdk::abi::{PluginApi, PluginBuf, Status, Str, STATUS_OK};
use clemhost_plugin_sdk::serde_json::{self, json, Value};
use clemhost_plugin_sdk::{
    Backend, BackendError, BackendInfo, Capabilities, Ctx, ErrorKind, GenerateRequest, Generation,
    ModelConfig,
};
use std::ffi::c_void;
use std::sync::atomic::AtomicU8;
use std::time::Duration;

/// The marker text a `bad_json` model answers with; the table's generate
/// function swaps the whole answer for broken bytes when it sees it.
const BAD_JSON_MARKER: &str = "\u{1}misbehave:bad_json\u{1}";

/// One misbehaving model.
pub struct Misbehave {
    mode: String,
    sleep: Duration,
    error_kind: ErrorKind,
    retry_after_ms: u64,
}

impl Backend for Misbehave {
    fn info() -> BackendInfo {
        if std::env::var("CLEMHOST_MISBEHAVE_MANIFEST").as_deref() == Ok("panic") {
            panic!("misbehave: asked to panic while reading the manifest");
        }
        BackendInfo {
            backends: vec!["misbehave".to_string()],
            description: "hostile test backend (see model_config.misbehave)".to_string(),
            capabilities: Capabilities {
                concurrent_generate: true,
                ..Capabilities::default()
            },
        }
    }

    fn create(config: ModelConfig) -> Result<Self, BackendError> {
        let mc = config.model_config();
        let mode = mc
            .get("misbehave")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if mode == "panic_create" {
            panic!("misbehave: asked to panic in create");
        }
        let sleep =
            Duration::from_millis(mc.get("sleep_ms").and_then(Value::as_u64).unwrap_or(5000));
        let error_kind = match mc.get("error_kind") {
            Some(v) => serde_json::from_value(v.clone()).unwrap_or(ErrorKind::Unknown),
            None => ErrorKind::Unavailable,
        };
        let retry_after_ms = mc
            .get("retry_after_ms")
            .and_then(Value::as_u64)
            .unwrap_or(10);
        Ok(Misbehave {
            mode,
            sleep,
            error_kind,
            retry_after_ms,
        })
    }

    fn generate(&self, request: GenerateRequest, _ctx: &Ctx) -> Result<Generation, BackendError> {
        let last = request
            .messages
            .last()
            .map(|m| m.content.clone())
            .unwrap_or_default();
        let text = match self.mode.as_str() {
            "panic" => panic!("misbehave: asked to panic in generate"),
            "bad_json" => BAD_JSON_MARKER.to_string(),
            "slow" => {
                std::thread::sleep(self.sleep);
                last
            }
            "huge" => "x".repeat(10 * 1024 * 1024),
            "error" => {
                return Err(
                    BackendError::new(self.error_kind, "misbehave: asked to fail")
                        .with_retry_after_ms(self.retry_after_ms),
                )
            }
            _ => last,
        };
        Ok(Generation {
            prompt: json!({"messages": request.messages}),
            response: json!({"text": text}),
            text,
            ..Generation::default()
        })
    }
}

static BASE: PluginApi = clemhost_plugin_sdk::export::plugin_api::<Misbehave>();
static API: PluginApi = PluginApi {
    generate: hostile_generate,
    ..clemhost_plugin_sdk::export::plugin_api::<Misbehave>()
};

extern "C" fn hostile_generate(
    model: *mut c_void,
    request: Str,
    cancel: *const AtomicU8,
    out: *mut PluginBuf,
) -> Status {
    let status = (BASE.generate)(model, request, cancel, out);
    if status != STATUS_OK || out.is_null() {
        return status;
    }
    // SAFETY: out is non-null and BASE.generate just wrote a buffer of this library into it.
    let buf = unsafe { out.read() };
    // SAFETY: the buffer came from PluginBuf::from_vec in this library and is owned here now.
    let bytes = unsafe { buf.into_vec() };
    let marker = serde_json::to_string(BAD_JSON_MARKER).expect("a string serialises");
    let replaced = if String::from_utf8_lossy(&bytes).contains(&marker) {
        b"{\"text\": \"unterminated".to_vec()
    } else {
        bytes
    };
    // SAFETY: out is non-null and owned by the host for this call.
    unsafe { out.write(PluginBuf::from_vec(replaced)) };
    STATUS_OK
}

/// The entry symbol, written by hand (not with `export_backend!`) because
/// this plugin swaps in its own `generate`.
///
/// # Safety
/// Called by the host with a valid `HostApi` pointer (or null).
#[no_mangle]
pub unsafe extern "C" fn clemhost_plugin_v1(
    host: *const clemhost_plugin_sdk::abi::HostApi,
) -> *const PluginApi {
    // SAFETY: forwarded from the host, which guarantees validity.
    unsafe {
        clemhost_plugin_sdk::export::entry(
            host,
            clemhost_plugin_sdk::export::PluginIdent {
                name: env!("CARGO_PKG_NAME"),
                version: env!("CARGO_PKG_VERSION"),
            },
            &API,
        )
    }
}

/// The ABI this plugin was built for.
#[no_mangle]
pub extern "C" fn clemhost_plugin_abi_version() -> u32 {
    clemhost_plugin_sdk::export::abi_probe()
}
