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
    /// It holds an invisible Unicode format character (general category
    /// Cf: U+200B zero-width space, U+FEFF, U+00AD soft hyphen, ...) or a
    /// line or paragraph separator (U+2028, U+2029).
    Invisible,
    /// It is not in Unicode normalization form C (`cafe\u{301}` for `café`):
    /// two spellings of one name would be two folders.
    NotNfc,
    /// It starts with `.clemhost-`, the prefix of clemhost's own staging
    /// folders, which the walks of `score` and `eval` skip.
    Reserved,
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
            NameRule::Invisible => {
                "it must not contain invisible Unicode format characters (such as U+200B, U+FEFF, U+00AD) or line/paragraph separators (U+2028, U+2029)"
            }
            NameRule::NotNfc => {
                "it must be in Unicode normalization form C (NFC; write an accented letter as one character, not a letter and a combining mark)"
            }
            NameRule::Reserved => {
                "it must not start with \".clemhost-\" (clemhost's own staging folders, which score and eval skip)"
            }
        })
    }
}

/// The prefix no name may start with (see [`NameRule::Reserved`]).
pub const RESERVED_PREFIX: &str = ".clemhost-";

/// Whether `c` is an invisible format character (Unicode general category
/// Cf, as of Unicode 16) or a line or paragraph separator (Zl, Zp). Bidi
/// controls are among them; [`check_component`] names them separately.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{ad}'
            | '\u{600}'..='\u{605}'
            | '\u{61c}'
            | '\u{6dd}'
            | '\u{70f}'
            | '\u{890}'..='\u{891}'
            | '\u{8e2}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{110bd}'
            | '\u{110cd}'
            | '\u{13430}'..='\u{1343f}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0001}'
            | '\u{e0020}'..='\u{e007f}'
    )
}

/// Checks that `name` is one normal path component: not empty, not `.` or
/// `..`, no `/` or `\`, no control character (NUL included), no Unicode
/// bidirectional control or other invisible format character, no line or
/// paragraph separator, in Unicode NFC, not starting with
/// [`RESERVED_PREFIX`], at most 255 bytes.
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
    if name.chars().any(is_invisible) {
        return Err(NameRule::Invisible);
    }
    if name.starts_with(RESERVED_PREFIX) {
        return Err(NameRule::Reserved);
    }
    if name.len() > MAX_COMPONENT_BYTES {
        return Err(NameRule::TooLong);
    }
    if !unicode_normalization::is_nfc(name) {
        return Err(NameRule::NotNfc);
    }
    Ok(())
}

/// Whether `name` has the form of clemcore's folder for three or more
/// models (`group-3p-1a2b3c4d`: `group-`, digits, `p-`).
fn is_group_form(name: &str) -> bool {
    name.strip_prefix("group-").is_some_and(|rest| {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with("p-")
    })
}

/// Escapes `name` into one normal path component, reversibly
/// ([`unescape_component`]), as `%XX` (the character's UTF-8 bytes in
/// upper-case hex):
/// - `%`, `/`, `\`, control characters, bidi controls and the other
///   invisible characters of [`is_invisible`];
/// - the dots of a name that is `.` or `..`, and the first dot of a name
///   that starts with [`RESERVED_PREFIX`];
/// - a `-` at the start or the end of the name or next to another `-`, so
///   an escaped name never holds `--`, the joiner of clemcore's two-model
///   folder names (`a--b` for the pair `a`, `b`; the one model `a--b` gets
///   `a%2D%2Db`);
/// - the `g` of a name shaped like a group folder (`group-3p-...`).
///
/// Every other name is returned unchanged (`gpt-4o`, `llama-3.1-8b`).
/// Fails only for an empty name or one whose escaped form is longer than
/// 255 bytes.
pub fn escape_component(name: &str) -> Result<String, NameRule> {
    if name.is_empty() {
        return Err(NameRule::Empty);
    }
    let mut out = String::with_capacity(name.len());
    let push_escaped = |out: &mut String, c: char| {
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            out.push_str(&format!("%{b:02X}"));
        }
    };
    if name == "." || name == ".." {
        out = "%2E".repeat(name.len());
    } else {
        let chars: Vec<char> = name.chars().collect();
        let reserved = name.starts_with(RESERVED_PREFIX);
        let group = is_group_form(name);
        for (i, &c) in chars.iter().enumerate() {
            let lone_dash = c == '-'
                && (i == 0 || i + 1 == chars.len() || chars[i - 1] == '-' || chars[i + 1] == '-');
            if c == '%'
                || c == '/'
                || c == '\\'
                || c.is_control()
                || is_invisible(c)
                || lone_dash
                || (i == 0 && (reserved || group))
            {
                push_escaped(&mut out, c);
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

/// The name [`escape_component`] was given. Only its own escapes are
/// decoded: when decoding does not give a name that escapes back to
/// `escaped` exactly (`a%2fb`, `%41`, a folder made by hand), `escaped` is
/// returned as it is, so two folders never decode to one name.
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
    match String::from_utf8(out) {
        Ok(name) if escape_component(&name).as_deref() == Ok(escaped) => name,
        _ => escaped.to_string(),
    }
}

/// A run folder's name as `eval` shows it: each model name of a one- or
/// two-model folder decoded ([`unescape_component`]), except where the
/// decoded name would read as another folder's (it holds `--`, starts or
/// ends with `-`, or has the group form): that part is shown escaped, so
/// no two folders share a row.
pub fn run_dir_label(folder: &str) -> String {
    folder
        .split("--")
        .map(|part| {
            let name = unescape_component(part);
            if name.contains("--")
                || name.starts_with('-')
                || name.ends_with('-')
                || is_group_form(&name)
            {
                part.to_string()
            } else {
                name
            }
        })
        .collect::<Vec<_>>()
        .join("--")
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

    #[test]
    fn invisible_reserved_and_unnormalised_names_are_refused() {
        for name in [
            "a\u{200b}b",
            "greet\u{feff}",
            "\u{ad}x",
            "a\u{2060}b",
            "a\u{2028}b",
            "a\u{2029}b",
            "x\u{e0041}",
            ".clemhost-staging-x",
            ".clemhost-x",
            "cafe\u{301}",
        ] {
            assert!(check_component(name).is_err(), "{name:?}");
        }
        assert_eq!(check_component("caf\u{e9}"), Ok(()));
        assert_eq!(check_component(".hidden"), Ok(()));
    }

    #[test]
    fn escaped_model_names_join_into_one_folder_name_per_list() {
        for plain in [
            "gpt-4o",
            "llama-3.1-8b",
            "mock",
            "Qwen2.5-7B-Instruct",
            "a-b-c",
        ] {
            assert_eq!(escape_component(plain).as_deref(), Ok(plain));
        }
        let join = |names: &[&str]| -> String {
            let e: Vec<String> = names.iter().map(|n| escape_component(n).unwrap()).collect();
            let r: Vec<&str> = e.iter().map(String::as_str).collect();
            crate::results::run_dir_name(&r)
        };
        assert_ne!(join(&["a--b"]), join(&["a", "b"]));
        assert_ne!(join(&["a-", "b"]), join(&["a", "-b"]));
        assert_ne!(join(&["a---b"]), join(&["a-", "b"]));
        let group = crate::results::run_dir_name(&["a", "b", "c"]);
        assert_ne!(join(&[group.as_str()]), group);
        for name in [
            "a--b",
            "-a",
            "a-",
            "---",
            "group-3p-1a2b3c4d",
            ".clemhost-staging-x",
            "a\u{200b}b",
            "x\u{202e}y",
            "a\u{2028}b",
        ] {
            let e = escape_component(name).expect("escapes");
            assert_eq!(check_component(&e), Ok(()), "{name:?} -> {e:?}");
            assert_eq!(unescape_component(&e), name, "{name:?} -> {e:?}");
        }
    }

    #[test]
    fn only_the_escapes_the_escaper_writes_are_decoded() {
        assert_eq!(unescape_component("org%2Fname"), "org/name");
        // Not what escape_component writes for any name: shown as it is.
        assert_eq!(unescape_component("a%2fb"), "a%2fb");
        assert_eq!(unescape_component("%41bc"), "%41bc");
        assert_eq!(unescape_component("100%"), "100%");
    }
}
