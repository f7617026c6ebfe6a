//! Python string behaviour that clemcore and transformers rely on:
//! `str.strip()` (Python's whitespace set), `str.rsplit()` and
//! `datetime.strftime()`.

use chrono::format::{Item, StrftimeItems};
use chrono::NaiveDateTime;

/// Python's `str.isspace()` for one character: Unicode White_Space plus the
/// four ASCII information separators (U+001C..U+001F) that Python also
/// counts as whitespace.
pub fn is_py_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `s.strip()`.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_py_whitespace)
}

/// Python's `s.lstrip()`.
pub fn lstrip(s: &str) -> &str {
    s.trim_start_matches(is_py_whitespace)
}

/// Python's `s.rstrip()`.
pub fn rstrip(s: &str) -> &str {
    s.trim_end_matches(is_py_whitespace)
}

/// Python's `s.rsplit(sep, maxsplit)`; `maxsplit < 0` means no limit and
/// `sep = None` splits on runs of whitespace. An empty `sep` is an error, as
/// in Python.
pub fn rsplit(s: &str, sep: Option<&str>, maxsplit: i64) -> Result<Vec<String>, String> {
    let limit = usize::try_from(maxsplit).ok();
    let mut parts: Vec<String> = Vec::new();
    match sep {
        Some("") => return Err("empty separator".into()),
        Some(sep) => {
            let mut rest = s;
            while limit.is_none_or(|l| parts.len() < l) {
                match rest.rfind(sep) {
                    Some(i) => {
                        parts.push(rest[i + sep.len()..].to_owned());
                        rest = &rest[..i];
                    }
                    None => break,
                }
            }
            parts.push(rest.to_owned());
        }
        None => {
            let mut rest = rstrip(s);
            while !rest.is_empty() {
                if limit.is_some_and(|l| parts.len() >= l) {
                    parts.push(rest.to_owned());
                    break;
                }
                match rest.rfind(is_py_whitespace) {
                    Some(i) => {
                        let ws_len = rest[i..].chars().next().map_or(1, char::len_utf8);
                        parts.push(rest[i + ws_len..].to_owned());
                        rest = rstrip(&rest[..i]);
                    }
                    None => {
                        parts.push(rest.to_owned());
                        rest = "";
                    }
                }
            }
        }
    }
    parts.reverse();
    Ok(parts)
}

/// Formats a time with Python's `strftime` codes (`%d %b %Y`, `%B %d, %Y`,
/// `%Y-%m-%d`, `%-d`, ...). English month and day names, as Python's C
/// locale. A code chrono does not know is an error naming the format.
pub fn strftime(time: &NaiveDateTime, format: &str) -> Result<String, String> {
    let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(format!(
            "strftime_now: the format {format:?} has a code that is not supported"
        ));
    }
    let mut out = String::new();
    use std::fmt::Write as _;
    write!(out, "{}", time.format_with_items(items.into_iter()))
        .map_err(|_| format!("strftime_now: cannot format the time with {format:?}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_uses_python_whitespace() {
        assert_eq!(strip("\u{1f} a b \n\t"), "a b");
        assert_eq!(lstrip("  a "), "a ");
        assert_eq!(rstrip("  a \u{3000}"), "  a");
    }

    #[test]
    fn rsplit_matches_python() {
        assert_eq!(rsplit("a,b,c", Some(","), 1).unwrap(), ["a,b", "c"]);
        assert_eq!(rsplit("a,b,c", Some(","), -1).unwrap(), ["a", "b", "c"]);
        assert_eq!(rsplit(",a,", Some(","), -1).unwrap(), ["", "a", ""]);
        assert_eq!(rsplit("  a  b c  ", None, -1).unwrap(), ["a", "b", "c"]);
        assert_eq!(rsplit("  a  b c  ", None, 1).unwrap(), ["  a  b", "c"]);
        assert_eq!(rsplit("   ", None, -1).unwrap(), Vec::<String>::new());
        assert!(rsplit("abc", Some(""), -1).is_err());
    }

    #[test]
    fn strftime_formats_like_python() {
        let t = NaiveDateTime::parse_from_str("2025-03-14T09:26:53", "%Y-%m-%dT%H:%M:%S").unwrap();
        assert_eq!(strftime(&t, "%d %b %Y").unwrap(), "14 Mar 2025");
        assert_eq!(strftime(&t, "%B %d, %Y").unwrap(), "March 14, 2025");
        assert_eq!(strftime(&t, "%Y-%m-%d").unwrap(), "2025-03-14");
        assert!(strftime(&t, "%Q").is_err());
    }
}
