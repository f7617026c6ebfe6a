//! Routes llama.cpp's and ggml's log lines into the `log` crate, so they
//! reach the host's log under this plugin's name instead of stderr.
//!
//! llama.cpp reports load details at INFO level by the hundreds; they become
//! `debug` records here. Warnings and errors keep their level.

use clemhost_plugin_sdk::log;
use std::ffi::{c_char, c_void, CStr};

/// Installs the callback (once per process; later calls do nothing new).
pub fn install() {
    // SAFETY: `forward` matches ggml_log_callback's signature and only reads
    // the NUL-terminated text llama.cpp passes for the duration of the call;
    // the user-data pointer is unused and may be null.
    unsafe { llama_cpp_sys_2::llama_log_set(Some(forward), std::ptr::null_mut()) };
}

unsafe extern "C" fn forward(
    level: llama_cpp_sys_2::ggml_log_level,
    text: *const c_char,
    _user: *mut c_void,
) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a valid NUL-terminated string for this call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    let line = text.trim_end();
    if line.is_empty() {
        return;
    }
    // A panic must not unwind into C; logging should never panic, but be sure.
    let _ = std::panic::catch_unwind(|| match level {
        llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR => log::error!(target: "llama.cpp", "{line}"),
        llama_cpp_sys_2::GGML_LOG_LEVEL_WARN => log::warn!(target: "llama.cpp", "{line}"),
        llama_cpp_sys_2::GGML_LOG_LEVEL_INFO => log::debug!(target: "llama.cpp", "{line}"),
        _ => log::trace!(target: "llama.cpp", "{line}"),
    });
}
