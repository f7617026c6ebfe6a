//! The C ABI between the host and a plugin: the only binary contract.
//!
//! Everything here is `#[repr(C)]` and frozen within an ABI major version.
//! Tables grow only at their end. A reader accepts any table that holds at
//! least the fields of ABI v1 ([`HOST_API_V1_SIZE`], [`PLUGIN_API_V1_SIZE`],
//! constants that never change) and reads a field added later only when the
//! table's `struct_size` covers it ([`usable_len`]), so an older plugin
//! loads in a newer host and a newer plugin runs in an older one.
//! Everything else crosses as JSON (see [`crate::protocol`]).
//!
//! Ownership: a [`PluginBuf`] is allocated by the plugin and must be released
//! with the plugin's own [`PluginApi::free_buf`]; a [`Str`] is borrowed and
//! only valid for the duration of the call that received it.

use std::ffi::c_void;
use std::mem::{offset_of, size_of};
use std::sync::atomic::AtomicU8;

/// The ABI major version this SDK speaks. Bumping it renames the entry symbol.
pub const ABI_VERSION: u32 = 1;

/// The name of the symbol every plugin exports, NUL-terminated.
pub const ENTRY_SYMBOL: &[u8] = b"clemhost_plugin_v1\0";

/// A symbol that every plugin of every ABI version exports, forever with the
/// same name and signature (`extern "C" fn() -> u32`): it tells a host which
/// ABI a plugin was built for when the entry symbol is not found.
pub const ABI_PROBE_SYMBOL: &[u8] = b"clemhost_plugin_abi_version\0";

/// Status code of a call: plain integers, so that an unknown value coming
/// from a newer plugin is representable.
pub type Status = u32;
/// The call succeeded; the out buffer holds the answer's JSON.
pub const STATUS_OK: Status = 0;
/// The call failed; the out buffer holds a [`crate::BackendError`] as JSON.
pub const STATUS_ERR: Status = 1;
/// The plugin panicked; the out buffer holds a [`crate::BackendError`] of kind `panic`.
pub const STATUS_PANIC: Status = 2;

/// Cancel flag values (written by the host, read by the plugin).
pub const CANCEL_NONE: u8 = 0;
/// The host asks the plugin to stop the running generation.
pub const CANCEL_REQUESTED: u8 = 1;

/// A borrowed UTF-8 string: valid only during the call that receives it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Str {
    /// Start of the bytes (may be dangling when `len` is 0).
    pub ptr: *const u8,
    /// Length in bytes.
    pub len: usize,
}

impl Str {
    /// Borrows a Rust string for the duration of a call.
    pub fn borrow(s: &str) -> Self {
        Str {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// Reads the bytes back.
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes that stay valid for `'a`.
    pub unsafe fn as_bytes<'a>(&self) -> &'a [u8] {
        if self.len == 0 || self.ptr.is_null() {
            return &[];
        }
        // SAFETY: the caller guarantees that ptr/len describe live memory.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// A buffer allocated by the plugin (a `Vec<u8>` taken apart). The host reads
/// it and hands it back to the plugin's `free_buf`.
#[repr(C)]
#[derive(Debug)]
pub struct PluginBuf {
    /// Start of the allocation (null for an empty buffer).
    pub ptr: *mut u8,
    /// Number of initialised bytes.
    pub len: usize,
    /// Capacity of the allocation.
    pub cap: usize,
}

impl PluginBuf {
    /// An empty buffer that owns nothing.
    pub const EMPTY: PluginBuf = PluginBuf {
        ptr: std::ptr::null_mut(),
        len: 0,
        cap: 0,
    };

    /// Takes ownership of a vector's allocation (plugin side).
    pub fn from_vec(v: Vec<u8>) -> Self {
        let mut v = std::mem::ManuallyDrop::new(v);
        PluginBuf {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            cap: v.capacity(),
        }
    }

    /// Rebuilds the vector (plugin side, in `free_buf`).
    ///
    /// # Safety
    /// The buffer must come from [`PluginBuf::from_vec`] in the same library
    /// and must not have been freed before.
    pub unsafe fn into_vec(self) -> Vec<u8> {
        if self.ptr.is_null() {
            return Vec::new();
        }
        // SAFETY: ptr/len/cap come from a Vec<u8> of this allocator (caller's guarantee).
        unsafe { Vec::from_raw_parts(self.ptr, self.len, self.cap) }
    }
}

/// Log callback: level (1 = error … 5 = trace), the plugin's name, the log
/// target (module path) and the message, all borrowed for the call.
pub type LogFn = extern "C" fn(level: u32, plugin: Str, target: Str, message: Str);

/// What the host gives a plugin when it opens it.
#[repr(C)]
pub struct HostApi {
    /// `size_of::<HostApi>()` as the host was compiled.
    pub struct_size: usize,
    /// The host's ABI major version.
    pub abi_version: u32,
    /// The most verbose level the host will print (0 = off … 5 = trace), so
    /// that a plugin skips formatting messages nobody reads.
    pub max_log_level: u32,
    /// Where the plugin sends its log records; it never writes to stdout.
    pub log: LogFn,
    // Append-only below this line.
}

/// Reads the plugin's manifest: writes [`crate::Manifest`] JSON into `out`.
pub type ManifestFn = extern "C" fn(out: *mut PluginBuf) -> Status;
/// Creates a model handle from [`crate::ModelConfig`] JSON. On success
/// `*model` holds the opaque handle and `out` is empty; on failure `out`
/// holds a [`crate::BackendError`].
pub type CreateModelFn =
    extern "C" fn(config: Str, model: *mut *mut c_void, out: *mut PluginBuf) -> Status;
/// Runs one generation: [`crate::GenerateRequest`] JSON in, [`crate::Generation`]
/// JSON (or an error) out. `cancel` stays valid for the whole call; may be
/// called from several threads at once when the manifest says so.
pub type GenerateFn = extern "C" fn(
    model: *mut c_void,
    request: Str,
    cancel: *const AtomicU8,
    out: *mut PluginBuf,
) -> Status;
/// Releases a model handle. Called once, after every `generate` on it returned.
pub type DestroyModelFn = extern "C" fn(model: *mut c_void);
/// Releases a buffer that this plugin allocated.
pub type FreeBufFn = extern "C" fn(buf: PluginBuf);

/// The table a plugin returns from its entry symbol. It lives as long as the
/// library (which is never unloaded).
#[repr(C)]
pub struct PluginApi {
    /// `size_of::<PluginApi>()` as the plugin was compiled.
    pub struct_size: usize,
    /// The plugin's ABI major version.
    pub abi_version: u32,
    /// See [`ManifestFn`].
    pub manifest: ManifestFn,
    /// See [`CreateModelFn`].
    pub create_model: CreateModelFn,
    /// See [`GenerateFn`].
    pub generate: GenerateFn,
    /// See [`DestroyModelFn`].
    pub destroy_model: DestroyModelFn,
    /// See [`FreeBufFn`].
    pub free_buf: FreeBufFn,
    // Append-only below this line.
}

/// The signature of the entry symbol ([`ENTRY_SYMBOL`]).
pub type EntryFn = unsafe extern "C" fn(host: *const HostApi) -> *const PluginApi;

/// The signature of [`ABI_PROBE_SYMBOL`].
pub type AbiProbeFn = unsafe extern "C" fn() -> u32;

/// The size of [`HostApi`] as ABI v1 first shipped it (its last v1 field is
/// `log`). It never changes: a plugin accepts every host table at least this
/// long, whatever its own `HostApi` has grown to.
pub const HOST_API_V1_SIZE: usize = offset_of!(HostApi, log) + size_of::<LogFn>();

/// The size of [`PluginApi`] as ABI v1 first shipped it (its last v1 field
/// is `free_buf`). It never changes: a host accepts every plugin table at
/// least this long, whatever its own `PluginApi` has grown to.
pub const PLUGIN_API_V1_SIZE: usize = offset_of!(PluginApi, free_buf) + size_of::<FreeBufFn>();

/// A `#[repr(C)]` table that starts with `struct_size: usize` and grows only
/// at its end.
///
/// # Safety
/// The type must be `#[repr(C)]`, begin with the v1 fields of its table in
/// their frozen layout, and `V1_SIZE` must be the size of those fields.
pub unsafe trait Table {
    /// The size of the table's ABI v1 fields (never changes).
    const V1_SIZE: usize;
}

// SAFETY: HostApi is #[repr(C)] and is the v1 table itself plus later fields.
unsafe impl Table for HostApi {
    const V1_SIZE: usize = HOST_API_V1_SIZE;
}

// SAFETY: PluginApi is #[repr(C)] and is the v1 table itself plus later fields.
unsafe impl Table for PluginApi {
    const V1_SIZE: usize = PLUGIN_API_V1_SIZE;
}

/// How many bytes of a table the other side sent (`struct_size`) a reader
/// compiled with table type `T` may use: `None` when the table lacks a v1
/// field (refuse it), otherwise the smaller of `struct_size` and the
/// reader's own `size_of::<T>()`. A field added after v1 is read only when
/// the usable length reaches its end:
///
/// ```
/// use clemhost_plugin_sdk::abi::{usable_len, HostApi, HOST_API_V1_SIZE};
/// // A host of today talking to a plugin of today: all of v1, nothing less.
/// assert_eq!(usable_len::<HostApi>(HOST_API_V1_SIZE), Some(HOST_API_V1_SIZE));
/// // A longer (newer) table is fine; the reader uses what it knows.
/// assert_eq!(usable_len::<HostApi>(HOST_API_V1_SIZE + 8), Some(size_of::<HostApi>()));
/// // Shorter than v1: not a table of this ABI.
/// assert_eq!(usable_len::<HostApi>(8), None);
/// // A later field `f` would be read only if
/// // `usable >= offset_of!(HostApi, f) + size_of::<F>()`.
/// # use std::mem::size_of;
/// ```
pub const fn usable_len<T: Table>(struct_size: usize) -> Option<usize> {
    if struct_size < T::V1_SIZE {
        return None;
    }
    let known = size_of::<T>();
    Some(if struct_size < known {
        struct_size
    } else {
        known
    })
}
