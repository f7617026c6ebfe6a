//! The `clem_player` object clemcore adds to every recorded response.

use clemhost_plugin_sdk::serde_json::{json, Value};
use std::time::Duration;

/// When a call started and how long it took, formatted as clemcore writes them.
#[derive(Clone, Debug)]
pub struct CallTiming {
    /// Local wall-clock time at the start of the call.
    pub start: chrono::DateTime<chrono::Local>,
    /// The whole call, request building to parsed answer.
    pub duration: Duration,
}

impl CallTiming {
    /// The `clem_player` object: `{call_start, call_duration, response, model_name}`.
    pub fn clem_player(&self, response_text: &str, model_name: &str) -> Value {
        json!({
            "call_start": format_datetime(&self.start),
            "call_duration": format_timedelta(self.duration),
            "response": response_text,
            "model_name": model_name,
        })
    }
}

/// A local time as Python's `str(datetime)` writes it: `2026-11-29 08:25:17.810570`
/// (no fraction when the microseconds are zero).
pub fn format_datetime(t: &chrono::DateTime<chrono::Local>) -> String {
    let micros = t.timestamp_subsec_micros();
    if micros == 0 {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        format!("{}.{micros:06}", t.format("%Y-%m-%d %H:%M:%S"))
    }
}

/// A duration as Python's `str(timedelta)` writes it: `0:00:00.000009`,
/// `0:00:02` without a fraction, `1 day, 2:03:04.5` style for days.
pub fn format_timedelta(d: Duration) -> String {
    let total_micros = d.as_micros();
    let micros = (total_micros % 1_000_000) as u64;
    let total_secs = (total_micros / 1_000_000) as u64;
    let days = total_secs / 86_400;
    let h = (total_secs % 86_400) / 3600;
    let m = (total_secs % 3600) / 60;
    let s = total_secs % 60;
    let mut out = String::new();
    if days > 0 {
        out.push_str(&format!("{days} day{}, ", if days == 1 { "" } else { "s" }));
    }
    out.push_str(&format!("{h}:{m:02}:{s:02}"));
    if micros > 0 {
        out.push_str(&format!(".{micros:06}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timedeltas_look_like_python() {
        assert_eq!(format_timedelta(Duration::from_micros(9)), "0:00:00.000009");
        assert_eq!(format_timedelta(Duration::from_secs(2)), "0:00:02");
        assert_eq!(
            format_timedelta(Duration::from_micros(3_723_500_000)),
            "1:02:03.500000"
        );
        assert_eq!(
            format_timedelta(Duration::from_secs(2 * 86_400 + 5)),
            "2 days, 0:00:05"
        );
        assert_eq!(
            format_timedelta(Duration::from_secs(86_400)),
            "1 day, 0:00:00"
        );
    }

    #[test]
    fn datetimes_look_like_python() {
        let t = chrono::Local
            .with_ymd_and_hms(2026, 11, 29, 8, 25, 17)
            .single()
            .expect("an unambiguous local time");
        assert_eq!(format_datetime(&t), "2026-11-29 08:25:17");
        let t = t + chrono::Duration::microseconds(810_570);
        assert_eq!(format_datetime(&t), "2026-11-29 08:25:17.810570");
    }
}
