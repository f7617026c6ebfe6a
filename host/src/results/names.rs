//! Names that become path components of the results tree.
//!
//! Game, experiment and model names are joined into paths
//! (`<results>/<models>/<game>/<experiment>/...`). A name from an instances
//! file or a registry written by someone else must not leave the run folder
//! (`../../x`, `/abs`), nest it (`a/b`), flatten it (`""`, `.`) or reach a
//! file system limit. Two policies, each applied once where the name is
//! read:
//! - [`check_component`]: the name must already be one normal component
//!   (experiment names; an error names the file, the field and the rule).
//! - [`escape_component`]: the name is escaped reversibly (model names,
//!   which clemcore's layout needs verbatim in the run folder's name and
//!   which may legitimately hold a `/`, as in `org/name`); names without a
//!   character that needs escaping stay as they are, so every clemcore
//!   run folder keeps its name.

use std::fmt;

/// The longest file name most file systems accept, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 255;

/// Which rule a name breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// The name is empty.
    Empty,
    /// `.` or `..`.
    Dot,
    /// It holds `/` or `\`.
    Separator,
    /// It holds a NUL or another control character.
    Control,
    /// It holds a Unicode bidirectional control (shown reversed).
    Bidi,
    /// It is longer than [`MAX_COMPONENT_BYTES`].
    TooLong,
}

impl fmt::Display for NameRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameRule::Empty => "it must not be empty",
            NameRule::Dot => "it must not be \".\" or \"..\"",
            NameRule::Separator => "it must not contain '/' or '\\'",
            NameRule::Control => "it must not contain NUL or other control characters",
            NameRule::Bidi => {
                "it must not contain Unicode bidirectional controls (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C)"
            }
            NameRule::TooLong => "it must be at most 255 bytes long",
        })
    }
}

/// Checks that `name` is one normal path component: not empty, not `.` or
/// `..`, no `/` or `\`, no control character (NUL included), no Unicode
/// bidirectional control, at most 255 bytes.
pub fn check_component(name: &str) -> Result<(), NameRule> {
    if name.is_empty() {
        return Err(NameRule::Empty);
    }
    if name == "." || name == ".." {
        return Err(NameRule::Dot);
    }
    if name.contains(['/', '\\']) {
        return Err(NameRule::Separator);
    }
    if name.chars().any(char::is_control) {
        return Err(NameRule::Control);
    }
    // A folder `greet\u{202e}ne` would list as another name than it has.
    if name.chars().any(crate::error::is_bidi_control) {
        return Err(NameRule::Bidi);
    }
    if name.len() > MAX_COMPONENT_BYTES {
        return Err(NameRule::TooLong);
    }
    Ok(())
}

/// Escapes `name` into one normal path component, reversibly
/// ([`unescape_component`]): `%`, `/`, `\` and control characters become
/// `%XX` (their UTF-8 bytes in upper-case hex), and a name that is `.` or
/// `..` has its dots escaped. Every other name is returned unchanged.
/// Fails only for an empty name or one whose escaped form is longer than
/// 255 bytes.
pub fn escape_component(name: &str) -> Result<String, NameRule> {
    if name.is_empty() {
        return Err(NameRule::Empty);
    }
    let mut out = String::with_capacity(name.len());
    if name == "." || name == ".." {
        out = "%2E".repeat(name.len());
    } else {
        for c in name.chars() {
            if c == '%' || c == '/' || c == '\\' || c.is_control() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            } else {
                out.push(c);
            }
        }
    }
    if out.len() > MAX_COMPONENT_BYTES {
        return Err(NameRule::TooLong);
    }
    Ok(out)
}

/// The name [`escape_component`] was given (names with no `%XX` escape
/// come back unchanged).
pub fn unescape_component(escaped: &str) -> String {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_names_pass_and_the_rest_say_which_rule() {
        assert_eq!(check_component("greet_en"), Ok(()));
        assert_eq!(check_component("Grüße 1"), Ok(()));
        assert_eq!(check_component(""), Err(NameRule::Empty));
        assert_eq!(check_component("."), Err(NameRule::Dot));
        assert_eq!(check_component(".."), Err(NameRule::Dot));
        assert_eq!(check_component("a/b"), Err(NameRule::Separator));
        assert_eq!(check_component("/abs/victim"), Err(NameRule::Separator));
        assert_eq!(check_component("../../x"), Err(NameRule::Separator));
        assert_eq!(check_component("a\\b"), Err(NameRule::Separator));
        assert_eq!(check_component("a\0b"), Err(NameRule::Control));
        assert_eq!(check_component("a\u{1b}[31m"), Err(NameRule::Control));
        for bidi in [
            '\u{202a}', '\u{202e}', '\u{2066}', '\u{2069}', '\u{200e}', '\u{200f}', '\u{61c}',
        ] {
            assert_eq!(
                check_component(&format!("greet{bidi}ne")),
                Err(NameRule::Bidi),
                "{bidi:?}"
            );
        }
        assert_eq!(
            check_component("שלום"),
            Ok(()),
            "right-to-left text itself is fine"
        );
        assert_eq!(check_component(&"x".repeat(256)), Err(NameRule::TooLong));
        assert_eq!(check_component(&"x".repeat(255)), Ok(()));
    }

    #[test]
    fn escaping_is_one_component_and_reversible() {
        for name in [
            "mock",
            "gpt-4o",
            "org/name",
            "/abs/x",
            "../../up",
            "..",
            ".",
            "a%2Fb",
            "100%",
            "tab\there",
            "a\\b",
            "ü/ß",
        ] {
            let e = escape_component(name).expect("escapes");
            assert_eq!(check_component(&e), Ok(()), "{name:?} → {e:?}");
            assert_eq!(unescape_component(&e), name, "{name:?} → {e:?}");
        }
        assert_eq!(escape_component("gpt-4o").as_deref(), Ok("gpt-4o"));
        assert_eq!(escape_component("org/name").as_deref(), Ok("org%2Fname"));
        assert_eq!(escape_component(".."), Ok("%2E%2E".into()));
        assert_eq!(escape_component(""), Err(NameRule::Empty));
        assert_eq!(escape_component(&"/".repeat(100)), Err(NameRule::TooLong));
    }
}
