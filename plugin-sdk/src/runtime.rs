//! A tokio runtime owned by the plugin (feature `tokio`).
//!
//! Each plugin is its own library with its own copy of tokio, so it cannot
//! share the host's runtime; it starts one lazily on first use.

use std::sync::OnceLock;

/// The plugin's multi-threaded runtime, started on first use.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("{}-rt", crate::export::plugin_name()))
            .enable_all()
            .build()
            .expect("a plugin could not start its tokio runtime (out of threads or memory?)")
    })
}
