//! Host side of the ABI (feature `host`): opening plugin libraries and
//! calling them through safe wrappers. Used by clemhost; a plugin never
//! enables this feature.
//!
//! Libraries are never unloaded: a plugin may leave threads, thread-locals or
//! a tokio runtime behind, and unloading them is undefined behaviour.

use crate::abi::*;
use crate::protocol::*;
use std::ffi::c_void;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU8;
use std::sync::Arc;

/// The largest answer (JSON bytes) accepted from a plugin by default.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// Why a file could not be opened as a plugin; each renders as one line.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadError {
    /// The file is not a shared library of this platform.
    NotSharedLibrary(String),
    /// The dynamic loader refused it (missing dependency, wrong architecture).
    LoadFailed(String),
    /// No `clemhost_plugin_v1` and no ABI probe symbol: not a clemhost plugin.
    MissingEntry,
    /// Built for another ABI major version.
    AbiMismatch {
        /// The plugin's ABI version.
        plugin: u32,
        /// This host's ABI version.
        host: u32,
    },
    /// The plugin's table is smaller than ABI v1 requires.
    BadTable(String),
    /// The manifest could not be read.
    BadManifest(String),
    /// The plugin panicked while it was opened.
    Panicked(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NotSharedLibrary(e) => write!(f, "not a shared library ({e})"),
            LoadError::LoadFailed(e) => write!(f, "load error: {e}"),
            LoadError::MissingEntry => write!(
                f,
                "missing entry symbol clemhost_plugin_v1: not a clemhost plugin (build it with clemhost-plugin-sdk's export_backend!)"
            ),
            LoadError::AbiMismatch { plugin, host } => write!(
                f,
                "ABI mismatch: plugin built for ABI v{plugin}, this host speaks ABI v{host}; rebuild the plugin against a matching clemhost-plugin-sdk"
            ),
            LoadError::BadTable(e) => write!(f, "bad plugin table: {e}"),
            LoadError::BadManifest(e) => write!(f, "bad manifest: {e}"),
            LoadError::Panicked(e) => write!(f, "panicked while loading: {e}"),
        }
    }
}

impl std::error::Error for LoadError {}

extern "C" fn host_log(level: u32, plugin: Str, target: Str, message: Str) {
    // SAFETY: the plugin passes Strs valid for the duration of this call.
    let (plugin, target, message) = unsafe {
        (
            String::from_utf8_lossy(plugin.as_bytes()),
            String::from_utf8_lossy(target.as_bytes()),
            String::from_utf8_lossy(message.as_bytes()),
        )
    };
    match level {
        1 => tracing::error!(target: "plugin", plugin = %plugin, module = %target, "{message}"),
        2 => tracing::warn!(target: "plugin", plugin = %plugin, module = %target, "{message}"),
        3 => tracing::info!(target: "plugin", plugin = %plugin, module = %target, "{message}"),
        4 => tracing::debug!(target: "plugin", plugin = %plugin, module = %target, "{message}"),
        _ => tracing::trace!(target: "plugin", plugin = %plugin, module = %target, "{message}"),
    }
}

fn host_api() -> &'static HostApi {
    static API: std::sync::OnceLock<HostApi> = std::sync::OnceLock::new();
    API.get_or_init(|| HostApi {
        struct_size: std::mem::size_of::<HostApi>(),
        abi_version: ABI_VERSION,
        max_log_level: match tracing::level_filters::LevelFilter::current() {
            tracing::level_filters::LevelFilter::OFF => 0,
            tracing::level_filters::LevelFilter::ERROR => 1,
            tracing::level_filters::LevelFilter::WARN => 2,
            tracing::level_filters::LevelFilter::INFO => 3,
            tracing::level_filters::LevelFilter::DEBUG => 4,
            _ => 5,
        },
        log: host_log,
    })
}

/// The usable length of a plugin's table of `struct_size` bytes, or why it
/// is refused (it lacks a field of ABI v1). A table longer than this host's
/// own (a newer plugin) and one shorter (an older plugin, once the table has
/// grown) are both fine.
pub fn check_plugin_table(struct_size: usize) -> Result<usize, LoadError> {
    usable_len::<PluginApi>(struct_size).ok_or_else(|| {
        LoadError::BadTable(format!(
            "table is {struct_size} bytes, ABI v{ABI_VERSION} needs at least {PLUGIN_API_V1_SIZE}"
        ))
    })
}

/// An opened plugin library. Cheap to clone; the library stays mapped forever.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    path: PathBuf,
    api: &'static PluginApi,
    /// How much of `api` the plugin filled in (see [`crate::abi::usable_len`]).
    api_len: usize,
    manifest: Manifest,
    max_response_bytes: usize,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("path", &self.inner.path)
            .field("manifest", &self.inner.manifest)
            .finish()
    }
}

/// Copies a plugin buffer into host memory and hands it back to the plugin.
fn take_buf(api: &PluginApi, buf: PluginBuf) -> Vec<u8> {
    if buf.ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: the plugin wrote ptr/len describing an allocation it owns until free_buf.
    let bytes = unsafe { std::slice::from_raw_parts(buf.ptr, buf.len) }.to_vec();
    (api.free_buf)(buf);
    bytes
}

/// An error from a plugin with credentials taken out (a server may echo
/// the request's `authorization` header into the body a plugin quotes), so
/// nothing the host prints or writes repeats them.
///
/// `secrets` are the credential values the host passed to the model
/// ([`crate::redact::secret_values`]): a key of no known shape echoed by a
/// server (bare, or HTML-escaped around it) is masked by its value.
fn decode_error(status: Status, bytes: &[u8], secrets: &[String]) -> BackendError {
    let mut e = decode_raw_error(status, bytes);
    if let std::borrow::Cow::Owned(m) = crate::redact::redact(&e.message) {
        e.message = m;
    }
    if let std::borrow::Cow::Owned(m) = crate::redact::redact_values(&e.message, secrets) {
        e.message = m;
    }
    if let Some(d) = e.details.as_mut() {
        crate::redact::redact_json(d);
        crate::redact::redact_values_json(d, secrets);
    }
    e
}

fn decode_raw_error(status: Status, bytes: &[u8]) -> BackendError {
    match serde_json::from_slice::<BackendError>(bytes) {
        Ok(e) => e,
        Err(_) => BackendError::new(
            if status == STATUS_PANIC {
                ErrorKind::Panic
            } else {
                ErrorKind::InvalidResponse
            },
            format!(
                "plugin returned status {status} with an unreadable error: {}",
                excerpt(bytes)
            ),
        ),
    }
}

fn excerpt(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    if bytes.len() > 200 {
        format!("{s}…")
    } else {
        s.into_owned()
    }
}

impl Plugin {
    /// Opens a plugin file: loads it, checks the ABI and reads the manifest.
    ///
    /// Panics inside the plugin are caught by the SDK shims; a plugin built
    /// with `panic = "abort"` can still end the process, which is why
    /// `clemhost plugins list` probes files in a child process.
    pub fn open(path: &Path) -> Result<Plugin, LoadError> {
        Self::open_as(path, path)
    }

    /// [`Plugin::open`] of the file `load` names (e.g. `/proc/self/fd/N`,
    /// the descriptor of a file the host has checked), remembered as `path`.
    pub fn open_as(load: &Path, path: &Path) -> Result<Plugin, LoadError> {
        // SAFETY: loading a library runs its initialisers; plugins are trusted code
        // (the host checks ownership and permissions before calling this).
        let lib = unsafe { libloading::Library::new(load) }.map_err(|e| {
            let msg = e.to_string();
            let lower = msg.to_lowercase();
            if lower.contains("invalid elf header")
                || lower.contains("file too short")
                || lower.contains("not a mach-o")
                || lower.contains("not a valid win32")
            {
                LoadError::NotSharedLibrary(msg)
            } else {
                LoadError::LoadFailed(msg)
            }
        })?;
        // Never unloaded: see the module docs.
        let lib: &'static libloading::Library = Box::leak(Box::new(lib));
        // SAFETY: the symbol's type is fixed by ABI v1 (EntryFn).
        let entry = match unsafe { lib.get::<EntryFn>(ENTRY_SYMBOL) } {
            Ok(f) => *f,
            Err(_) => {
                // SAFETY: the probe symbol has the same signature in every ABI version.
                return Err(match unsafe { lib.get::<AbiProbeFn>(ABI_PROBE_SYMBOL) } {
                    Ok(probe) => LoadError::AbiMismatch {
                        // SAFETY: calling the probe has no preconditions.
                        plugin: unsafe { probe() },
                        host: ABI_VERSION,
                    },
                    Err(_) => LoadError::MissingEntry,
                });
            }
        };
        // SAFETY: the entry symbol is called with our HostApi, which lives forever.
        let api_ptr = std::panic::catch_unwind(|| unsafe { entry(host_api()) })
            .map_err(|_| LoadError::Panicked("entry symbol panicked".into()))?;
        // SAFETY: a non-null table returned by the entry symbol lives as long as the library.
        let api: &'static PluginApi = unsafe { api_ptr.as_ref() }
            .ok_or_else(|| LoadError::BadTable("entry symbol returned null".into()))?;
        if api.abi_version != ABI_VERSION {
            return Err(LoadError::AbiMismatch {
                plugin: api.abi_version,
                host: ABI_VERSION,
            });
        }
        // An older plugin's table may be shorter than this host's PluginApi:
        // only the v1 fields are required; a later field is read only when
        // `api_len` covers it.
        let api_len = check_plugin_table(api.struct_size)?;
        let mut buf = PluginBuf::EMPTY;
        let status = (api.manifest)(&mut buf);
        let bytes = take_buf(api, buf);
        if status == STATUS_PANIC {
            return Err(LoadError::Panicked(
                decode_error(status, &bytes, &[]).message,
            ));
        }
        if status != STATUS_OK {
            return Err(LoadError::BadManifest(
                decode_error(status, &bytes, &[]).to_string(),
            ));
        }
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| LoadError::BadManifest(format!("{e} in {}", excerpt(&bytes))))?;
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                path: path.to_path_buf(),
                api,
                api_len,
                manifest,
                max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            }),
        })
    }

    /// The file it was opened from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// How many bytes of its table the plugin filled in and this host reads:
    /// a field added to [`PluginApi`] after ABI v1 is called only when this
    /// reaches the field's end.
    pub fn table_len(&self) -> usize {
        self.inner.api_len
    }

    /// What the plugin says about itself.
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }

    /// Opens a model. Blocking (a local backend may load weights here).
    pub fn create_model(&self, config: &ModelConfig) -> Result<ModelHandle, BackendError> {
        let json = serde_json::to_string(config)
            .map_err(|e| BackendError::internal(format!("model config: {e}")))?;
        let mut model: *mut c_void = std::ptr::null_mut();
        let mut buf = PluginBuf::EMPTY;
        let status = (self.inner.api.create_model)(Str::borrow(&json), &mut model, &mut buf);
        let bytes = take_buf(self.inner.api, buf);
        let secrets = config
            .credentials
            .as_ref()
            .map(crate::redact::secret_values)
            .unwrap_or_default();
        if status != STATUS_OK {
            return Err(decode_error(status, &bytes, &secrets));
        }
        if model.is_null() {
            return Err(BackendError::internal(
                "plugin returned a null model handle",
            ));
        }
        Ok(ModelHandle {
            inner: Arc::new(HandleInner {
                plugin: self.clone(),
                ptr: model,
                secrets,
            }),
        })
    }
}

struct HandleInner {
    plugin: Plugin,
    ptr: *mut c_void,
    /// The credential values to mask in this model's errors.
    secrets: Vec<String>,
}

// SAFETY: the handle is an opaque pointer owned by the plugin; the SDK requires
// `Backend: Send + Sync`, and concurrent calls are gated by the manifest's capabilities.
unsafe impl Send for HandleInner {}
// SAFETY: see above.
unsafe impl Sync for HandleInner {}

impl Drop for HandleInner {
    fn drop(&mut self) {
        // Runs when the last clone is gone, so no generate call is in flight.
        (self.plugin.inner.api.destroy_model)(self.ptr);
    }
}

/// An open model. Clones share it; the plugin's handle is destroyed when the
/// last clone (including one held by a timed-out call) is dropped.
#[derive(Clone)]
pub struct ModelHandle {
    inner: Arc<HandleInner>,
}

impl ModelHandle {
    /// The plugin this model belongs to.
    pub fn plugin(&self) -> &Plugin {
        &self.inner.plugin
    }

    /// Runs one generation, blocking the calling thread. `cancel` is read by
    /// the plugin while it works; the host sets it to stop the call.
    pub fn generate(
        &self,
        request: &GenerateRequest,
        cancel: &AtomicU8,
    ) -> Result<Generation, BackendError> {
        let json = serde_json::to_string(request)
            .map_err(|e| BackendError::internal(format!("generate request: {e}")))?;
        let api = self.inner.plugin.inner.api;
        let mut buf = PluginBuf::EMPTY;
        let status = (api.generate)(self.inner.ptr, Str::borrow(&json), cancel, &mut buf);
        let len = buf.len;
        let limit = self.inner.plugin.inner.max_response_bytes;
        if status == STATUS_OK && len > limit {
            (api.free_buf)(buf);
            return Err(BackendError::new(
                ErrorKind::InvalidResponse,
                format!(
                    "plugin {} returned {len} bytes, more than the limit of {limit}",
                    self.inner.plugin.manifest().name
                ),
            ));
        }
        let bytes = take_buf(api, buf);
        if status != STATUS_OK {
            return Err(decode_error(status, &bytes, &self.inner.secrets));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            BackendError::new(
                ErrorKind::InvalidResponse,
                format!(
                    "plugin {} returned invalid JSON ({e}): {}",
                    self.inner.plugin.manifest().name,
                    excerpt(&bytes)
                ),
            )
        })
    }
}
