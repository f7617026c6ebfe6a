//! Capturing this process's `log` records.

use std::sync::{Mutex, OnceLock};

/// Collects every `log` record of this process (in-process tests only: a
/// plugin opened through the ABI logs to the host instead).
pub fn capture_logs() -> &'static Mutex<String> {
    struct Capture(Mutex<String>);
    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            if let Ok(mut s) = self.0.lock() {
                s.push_str(&format!(
                    "{} {}: {}\n",
                    record.level(),
                    record.target(),
                    record.args()
                ));
            }
        }
        fn flush(&self) {}
    }
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    let capture = CAPTURE.get_or_init(|| Capture(Mutex::new(String::new())));
    if log::set_logger(capture).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
    &capture.0
}
