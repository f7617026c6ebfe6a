//! Python's `str(timedelta)`, `str(datetime)` and `datetime.isoformat()`.
//!
//! clemcore takes `datetime.now()` (local time, no time zone) and writes
//! `str()` of it and of differences between two such moments.

use chrono::{NaiveDateTime, Timelike};
use std::time::Duration;

/// Now, in local time without a zone: Python's `datetime.now()`.
pub fn now() -> NaiveDateTime {
    chrono::Local::now().naive_local()
}

/// `str(timedelta)`: `0:00:00.016489`, `1:02:03`, `2 days, 0:00:05`.
///
/// The fraction is left out when it is zero, as Python does. Nanoseconds
/// below a microsecond are dropped (a `timedelta` holds microseconds).
pub fn timedelta(d: Duration) -> String {
    let total = d.as_secs();
    let micros = d.subsec_micros();
    let days = total / 86_400;
    let rest = total % 86_400;
    let mut out = match days {
        0 => String::new(),
        1 => "1 day, ".to_owned(),
        n => format!("{n} days, "),
    };
    out.push_str(&format!(
        "{}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    ));
    if micros > 0 {
        out.push_str(&format!(".{micros:06}"));
    }
    out
}

/// Reads what [`timedelta`] writes back (`None` for anything else): the
/// inverse, used by tests that check recorded files.
pub fn parse_timedelta(text: &str) -> Option<Duration> {
    let (days, clock) = match text.split_once(", ") {
        Some((d, clock)) => {
            let n = d.strip_suffix(" days").or_else(|| d.strip_suffix(" day"))?;
            let n: u64 = digits(n)?;
            // Python writes "1 day" and "N days": nothing else.
            if (n == 1) != d.ends_with(" day") || n == 0 {
                return None;
            }
            (n, clock)
        }
        None => (0, text),
    };
    let (clock, micros) = match clock.split_once('.') {
        Some((c, f)) if f.len() == 6 && f != "000000" => (c, digits(f)?),
        Some(_) => return None,
        None => (clock, 0),
    };
    let mut parts = clock.split(':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || m.len() != 2 || s.len() != 2 || h.is_empty() || h.len() > 2 {
        return None;
    }
    let (h, m, s) = (digits(h)?, digits(m)?, digits(s)?);
    if h > 23 || m > 59 || s > 59 || (h >= 10) != (clock.len() == 8) {
        return None;
    }
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    Some(Duration::from_secs(secs) + Duration::from_micros(micros))
}

fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `str(datetime)`: `2026-11-29 08:25:17.810570` (no fraction when it is zero).
pub fn datetime(t: &NaiveDateTime) -> String {
    format_datetime(t, ' ')
}

/// `datetime.isoformat()`: `2026-11-29T08:25:17.810570` (no fraction when it is zero).
pub fn isoformat(t: &NaiveDateTime) -> String {
    format_datetime(t, 'T')
}

/// Reads what [`datetime`] writes back (`None` for anything else).
pub fn parse_datetime(text: &str) -> Option<NaiveDateTime> {
    let t = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok()?;
    (datetime(&t) == text).then_some(t)
}

fn format_datetime(t: &NaiveDateTime, sep: char) -> String {
    // A leap second shows as nanosecond >= 1e9 in chrono; Python has none.
    let micros = t.nanosecond() / 1000 % 1_000_000;
    let base = t.format(&format!("%Y-%m-%d{sep}%H:%M:%S")).to_string();
    if micros == 0 {
        base
    } else {
        format!("{base}.{micros:06}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_back_what_is_written() {
        for micros in [
            0,
            9,
            2_000_000,
            3_723_500_000,
            86_400_000_000,
            172_805_000_001,
        ] {
            let d = Duration::from_micros(micros);
            assert_eq!(parse_timedelta(&timedelta(d)), Some(d), "{micros}");
        }
        for bad in [
            "",
            "0:0:00",
            "1:02:03.5",
            "1 days, 0:00:00",
            "2 day, 0:00:00",
            "0:00:00.000000",
            "24:00:00",
            "x",
        ] {
            assert_eq!(parse_timedelta(bad), None, "{bad:?}");
        }
        let t = NaiveDateTime::parse_from_str("2026-11-29 08:25:17.810570", "%Y-%m-%d %H:%M:%S%.f")
            .unwrap();
        assert_eq!(parse_datetime(&datetime(&t)), Some(t));
        assert_eq!(parse_datetime("2026-11-29 08:25:17.000000"), None);
        assert_eq!(parse_datetime("2026-11-29T08:25:17"), None);
    }
}
