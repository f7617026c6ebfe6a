//! The generic `extern "C"` shims behind [`crate::export_backend!`].
//!
//! The macro only emits the entry symbol and a static table pointing at these
//! functions; all logic lives here, type-checked and testable. Every shim
//! catches panics: a panic becomes an error of kind `panic` and poisons the
//! model handle, so the host survives and can open a fresh handle.

use crate::abi::*;
use crate::backend::{Backend, Ctx};
use crate::logging;
use crate::protocol::*;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The plugin's identity, captured by the macro from the plugin crate.
#[derive(Clone, Copy, Debug)]
pub struct PluginIdent {
    /// `CARGO_PKG_NAME` of the plugin crate.
    pub name: &'static str,
    /// `CARGO_PKG_VERSION` of the plugin crate.
    pub version: &'static str,
}

static IDENT: OnceLock<PluginIdent> = OnceLock::new();

/// The plugin's crate name, once the host has opened it.
pub fn plugin_name() -> &'static str {
    IDENT.get().map(|i| i.name).unwrap_or("plugin")
}

/// A model as the host holds it: the backend's value and a poison flag.
struct ModelCell<B> {
    model: B,
    poisoned: AtomicBool,
}

/// Called by the entry symbol: records the host API and returns the table.
///
/// # Safety
/// `host` must be null or point to a valid [`HostApi`] that outlives the library.
pub unsafe fn entry(
    host: *const HostApi,
    ident: PluginIdent,
    api: &'static PluginApi,
) -> *const PluginApi {
    let _ = IDENT.set(ident);
    // SAFETY: the caller guarantees that host is null or valid for the library's lifetime.
    unsafe { logging::install(host, ident.name) };
    api
}

/// Builds the plugin table for a backend type (used by the macro's static).
pub const fn plugin_api<B: Backend>() -> PluginApi {
    PluginApi {
        struct_size: std::mem::size_of::<PluginApi>(),
        abi_version: ABI_VERSION,
        manifest: shim_manifest::<B>,
        create_model: shim_create_model::<B>,
        generate: shim_generate::<B>,
        destroy_model: shim_destroy_model::<B>,
        free_buf: shim_free_buf,
    }
}

/// The value of the ABI probe symbol.
pub extern "C" fn abi_probe() -> u32 {
    ABI_VERSION
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

fn write_out(out: *mut PluginBuf, bytes: Vec<u8>) {
    if out.is_null() {
        return;
    }
    // SAFETY: out is non-null and points to a PluginBuf slot owned by the host for this call.
    unsafe { out.write(PluginBuf::from_vec(bytes)) };
}

fn write_error(out: *mut PluginBuf, err: &BackendError) -> Status {
    let bytes = serde_json::to_vec(err).unwrap_or_else(|_| {
        br#"{"kind":"internal","message":"error could not be serialised"}"#.to_vec()
    });
    write_out(out, bytes);
    if err.kind == ErrorKind::Panic {
        STATUS_PANIC
    } else {
        STATUS_ERR
    }
}

fn panic_error(what: &str, payload: &(dyn std::any::Any + Send)) -> BackendError {
    BackendError::new(
        ErrorKind::Panic,
        format!(
            "plugin {} panicked in {what}: {}",
            plugin_name(),
            panic_message(payload)
        ),
    )
}

/// The manifest of a backend type, as the host will read it.
pub fn manifest_of<B: Backend>() -> Manifest {
    let ident = IDENT.get().copied().unwrap_or(PluginIdent {
        name: "plugin",
        version: "0.0.0",
    });
    let info = B::info();
    let backends = if info.backends.is_empty() {
        vec![ident
            .name
            .strip_suffix("_api")
            .unwrap_or(ident.name)
            .to_string()]
    } else {
        info.backends
    };
    Manifest {
        name: ident.name.to_string(),
        version: ident.version.to_string(),
        sdk_version: env!("CARGO_PKG_VERSION").to_string(),
        abi_version: ABI_VERSION,
        backends,
        description: info.description,
        panic_strategy: if cfg!(panic = "unwind") {
            "unwind"
        } else {
            "abort"
        }
        .to_string(),
        capabilities: info.capabilities,
    }
}

extern "C" fn shim_manifest<B: Backend>(out: *mut PluginBuf) -> Status {
    match catch_unwind(manifest_of::<B>) {
        Ok(m) => match serde_json::to_vec(&m) {
            Ok(bytes) => {
                write_out(out, bytes);
                STATUS_OK
            }
            Err(e) => write_error(out, &BackendError::internal(format!("manifest: {e}"))),
        },
        Err(p) => write_error(out, &panic_error("manifest", &*p)),
    }
}

extern "C" fn shim_create_model<B: Backend>(
    config: Str,
    model: *mut *mut c_void,
    out: *mut PluginBuf,
) -> Status {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the host passes a Str valid for the duration of this call.
        let bytes = unsafe { config.as_bytes() };
        let cfg: ModelConfig = serde_json::from_slice(bytes).map_err(|e| {
            BackendError::invalid_request(format!("model config is not valid JSON: {e}"))
        })?;
        B::create(cfg)
    }));
    match result {
        Ok(Ok(m)) => {
            let cell = Box::new(ModelCell {
                model: m,
                poisoned: AtomicBool::new(false),
            });
            if !model.is_null() {
                // SAFETY: model is a non-null out-pointer owned by the host for this call.
                unsafe { model.write(Box::into_raw(cell).cast()) };
            }
            write_out(out, Vec::new());
            STATUS_OK
        }
        Ok(Err(e)) => write_error(out, &e),
        Err(p) => write_error(out, &panic_error("create_model", &*p)),
    }
}

extern "C" fn shim_generate<B: Backend>(
    model: *mut c_void,
    request: Str,
    cancel: *const AtomicU8,
    out: *mut PluginBuf,
) -> Status {
    if model.is_null() {
        return write_error(
            out,
            &BackendError::internal("generate called on a null model"),
        );
    }
    // SAFETY: model came from shim_create_model::<B> and is not destroyed while calls run
    // (the host's contract); only shared references are taken.
    let cell: &ModelCell<B> = unsafe { &*model.cast::<ModelCell<B>>() };
    if cell.poisoned.load(Ordering::Acquire) {
        return write_error(
            out,
            &BackendError::new(
                ErrorKind::Panic,
                "this model handle panicked before and is poisoned; open a new one",
            ),
        );
    }
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the host passes a Str valid for the duration of this call.
        let bytes = unsafe { request.as_bytes() };
        let req: GenerateRequest = serde_json::from_slice(bytes).map_err(|e| {
            BackendError::invalid_request(format!("generate request is not valid JSON: {e}"))
        })?;
        // SAFETY: cancel is null or points to an AtomicU8 the host keeps alive for the call.
        let flag = unsafe { cancel.as_ref() };
        let ctx = Ctx::new(flag, req.timeout_ms.map(Duration::from_millis));
        let generation = cell.model.generate(req, &ctx)?;
        serde_json::to_vec(&generation)
            .map_err(|e| BackendError::internal(format!("generation is not serialisable: {e}")))
    }));
    match result {
        Ok(Ok(bytes)) => {
            write_out(out, bytes);
            STATUS_OK
        }
        Ok(Err(e)) => write_error(out, &e),
        Err(p) => {
            cell.poisoned.store(true, Ordering::Release);
            write_error(out, &panic_error("generate", &*p))
        }
    }
}

extern "C" fn shim_destroy_model<B: Backend>(model: *mut c_void) {
    if model.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: model came from Box::into_raw in shim_create_model::<B>; the host calls
        // destroy exactly once, after all generate calls returned.
        drop(unsafe { Box::from_raw(model.cast::<ModelCell<B>>()) });
    }));
}

extern "C" fn shim_free_buf(buf: PluginBuf) {
    // SAFETY: buffers handed to the host come from PluginBuf::from_vec in this library,
    // and the host frees each exactly once.
    drop(unsafe { buf.into_vec() });
}

/// Exports a [`crate::Backend`] implementation as a clemhost plugin.
///
/// It emits the entry symbol (`clemhost_plugin_v1`), the ABI probe symbol and
/// a static table of generic shims; nothing else.
#[macro_export]
macro_rules! export_backend {
    ($backend:ty) => {
        #[doc(hidden)]
        static __CLEMHOST_PLUGIN_API: $crate::abi::PluginApi =
            $crate::export::plugin_api::<$backend>();

        /// The plugin's entry symbol (ABI v1).
        ///
        /// # Safety
        /// Called by the host with a valid `HostApi` pointer (or null).
        #[no_mangle]
        pub unsafe extern "C" fn clemhost_plugin_v1(
            host: *const $crate::abi::HostApi,
        ) -> *const $crate::abi::PluginApi {
            // SAFETY: forwarded from the host, which guarantees validity.
            unsafe {
                $crate::export::entry(
                    host,
                    $crate::export::PluginIdent {
                        name: env!("CARGO_PKG_NAME"),
                        version: env!("CARGO_PKG_VERSION"),
                    },
                    &__CLEMHOST_PLUGIN_API,
                )
            }
        }

        /// The ABI this plugin was built for, under a name no ABI version changes.
        #[no_mangle]
        pub extern "C" fn clemhost_plugin_abi_version() -> u32 {
            $crate::export::abi_probe()
        }
    };
}
