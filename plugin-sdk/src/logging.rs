//! Forwards the plugin's `log` records to the host, which prints them through
//! `tracing` under the plugin's name. A plugin never writes to stdout.

use crate::abi::{usable_len, HostApi, LogFn, Str};
use std::sync::OnceLock;

struct HostLogger {
    log: LogFn,
    plugin: &'static str,
}

static LOGGER: OnceLock<HostLogger> = OnceLock::new();

fn level_number(level: log::Level) -> u32 {
    match level {
        log::Level::Error => 1,
        log::Level::Warn => 2,
        log::Level::Info => 3,
        log::Level::Debug => 4,
        log::Level::Trace => 5,
    }
}

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let msg = record.args().to_string();
        (self.log)(
            level_number(record.level()),
            Str::borrow(self.plugin),
            Str::borrow(record.target()),
            Str::borrow(&msg),
        );
    }

    fn flush(&self) {}
}

/// Connects the `log` facade of this library to the host.
///
/// # Safety
/// `host` must be null or valid for the library's lifetime.
pub(crate) unsafe fn install(host: *const HostApi, plugin: &'static str) {
    // SAFETY: caller guarantees validity; a null host means no logging.
    let Some(host) = (unsafe { host.as_ref() }) else {
        return;
    };
    // A newer plugin meets an older host's shorter table: only the v1 fields
    // are needed here.
    if usable_len::<HostApi>(host.struct_size).is_none() {
        return;
    }
    let logger = LOGGER.get_or_init(|| HostLogger {
        log: host.log,
        plugin,
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(match host.max_log_level {
            0 => log::LevelFilter::Off,
            1 => log::LevelFilter::Error,
            2 => log::LevelFilter::Warn,
            3 => log::LevelFilter::Info,
            4 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        });
        // A panic message goes to the host's log instead of the terminal.
        std::panic::set_hook(Box::new(|info| {
            log::error!(target: "panic", "{info}");
        }));
    }
}
