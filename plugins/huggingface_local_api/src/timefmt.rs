//! Python's `str(datetime)` and `str(timedelta)`, as clemcore records them.

use chrono::{DateTime, Local};
use std::time::Duration;

/// `str(datetime.now())`: `2026-11-29 08:25:17.810570` (local time; the
/// fraction is left out when it is zero, as Python does).
pub fn py_datetime(t: DateTime<Local>) -> String {
    let micros = t.timestamp_subsec_micros();
    if micros == 0 {
        t.format("%Y-%m-%d %H:%M:%S").to_string()
    } else {
        format!("{}.{micros:06}", t.format("%Y-%m-%d %H:%M:%S"))
    }
}

/// `str(timedelta)`: `0:00:00.000009`, `1 day, 2:03:04`.
pub fn py_timedelta(d: Duration) -> String {
    let total = d.as_secs();
    let micros = d.subsec_micros();
    let days = total / 86_400;
    let rem = total % 86_400;
    let clock = format!("{}:{:02}:{:02}", rem / 3600, (rem % 3600) / 60, rem % 60);
    let clock = if micros == 0 {
        clock
    } else {
        format!("{clock}.{micros:06}")
    };
    match days {
        0 => clock,
        1 => format!("1 day, {clock}"),
        n => format!("{n} days, {clock}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_like_python() {
        assert_eq!(py_timedelta(Duration::from_micros(9)), "0:00:00.000009");
        assert_eq!(py_timedelta(Duration::from_secs(3723)), "1:02:03");
        assert_eq!(py_timedelta(Duration::from_secs(90_000)), "1 day, 1:00:00");
        let t = Local.with_ymd_and_hms(2026, 11, 29, 8, 25, 17).unwrap()
            + chrono::Duration::microseconds(810_570);
        assert_eq!(py_datetime(t), "2026-11-29 08:25:17.810570");
    }
}
