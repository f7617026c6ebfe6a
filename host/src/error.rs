//! The host's error type and its exit codes (owned by `main` in one place).

use std::fmt;

/// How `clemhost` ends. `main` maps these to process exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Everything worked.
    Success = 0,
    /// An error stopped the command (bad input, missing plugin or key, I/O).
    Failure = 1,
    /// The command line was wrong (clap uses 2 as well).
    Usage = 2,
    /// A chat template raised an error (`template render`).
    TemplateRaised = 3,
    /// The run finished, but at least one episode failed (see its error.json).
    EpisodesFailed = 4,
    /// A check (`check-hf`, `doctor`) found a failure.
    CheckFailed = 5,
}

/// An error that ends a command: a message for the user and an exit code.
///
/// An error made from a typed one ([`Error::wrap`], and the `From`
/// conversions of the registry and key errors) keeps it: its text is
/// the message, [`Error::cause`] gives it back for matching, and
/// [`source`](std::error::Error::source) continues with the typed error's
/// own source (the I/O or JSON error underneath), as `#[error(transparent)]`
/// does.
#[derive(Debug)]
pub struct Error {
    /// How the process should exit.
    pub exit: Exit,
    /// What went wrong and what to do; printed on stderr.
    pub message: String,
    cause: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A general failure (exit 1).
    pub fn msg(message: impl Into<String>) -> Self {
        Error::with_exit(Exit::Failure, message)
    }

    /// A failure with a specific exit code.
    pub fn with_exit(exit: Exit, message: impl Into<String>) -> Self {
        Error {
            exit,
            message: message.into(),
            cause: None,
        }
    }

    /// A general failure (exit 1) whose message is `cause`'s text, keeping
    /// `cause` itself.
    pub fn wrap(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error {
            exit: Exit::Failure,
            message: cause.to_string(),
            cause: Some(Box::new(cause)),
        }
    }

    /// The typed error this one was made from, if it is an `E`.
    pub fn cause<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.cause.as_deref()?.downcast_ref::<E>()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref()?.source()
    }
}

/// Result of a command.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether `c` is a Unicode bidirectional control (embeddings, overrides,
/// isolates, marks: U+202A–U+202E, U+2066–U+2069, U+200E, U+200F, U+061C),
/// which make text show in another order than it is stored.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{61c}')
}

/// Makes text from outside (file contents, names, server answers) safe to
/// print on a terminal: control characters other than line breaks and
/// tabs (NUL, ESC and the terminal sequences it starts, DEL, C1 controls)
/// are written as `\u{..}` escapes, so an error message cannot clear the
/// screen, recolour it, set the window title or hide text. The Unicode
/// bidirectional controls (U+202A–U+202E, U+2066–U+2069, U+200E, U+200F,
/// U+061C) are escaped too: they reorder what follows them on screen, so a
/// name could show as something it is not.
pub fn escape_for_terminal(text: &str) -> std::borrow::Cow<'_, str> {
    let keep = |c: char| (!c.is_control() || c == '\n' || c == '\t') && !is_bidi_control(c);
    if text.chars().all(keep) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if keep(c) {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// [`escape_for_terminal`] for text from outside quoted inside one log or
/// error line (a server's error body, an episode's error): line breaks are
/// escaped as well (`\u{a}`, `\u{d}`), so the text cannot end the line
/// and start one that looks like clemhost's own. Multi-line messages that
/// clemhost writes itself keep using [`escape_for_terminal`].
pub fn escape_for_one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['\n', '\r']) {
        return escape_for_terminal(text);
    }
    let escaped = escape_for_terminal(text);
    std::borrow::Cow::Owned(escaped.replace('\n', "\\u{a}"))
}

/// `eprintln!` for messages that carry text from outside (paths of a
/// results tree, names, server answers): the line goes through
/// [`escape_for_terminal`].
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        eprintln!("{}", $crate::error::escape_for_terminal(&format!($($arg)*)))
    };
}

/// Describes a JSON parse error with the file, line and column, and what to do.
pub fn json_error(path: &std::path::Path, e: &serde_json::Error, what: &str) -> Error {
    Error::msg(format!(
        "{}:{}:{}: {what} is not valid JSON: {e}; fix the file and run again",
        path.display(),
        e.line(),
        e.column()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_text_cannot_start_a_line() {
        assert_eq!(
            escape_for_one_line("a\n2026 INFO ok\r\n\u{1b}[2J"),
            "a\\u{a}2026 INFO ok\\u{d}\\u{a}\\u{1b}[2J"
        );
        assert_eq!(escape_for_terminal("two\nlines"), "two\nlines");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("registry.json: cannot read it: {0}")]
    struct Typed(#[source] std::io::Error);

    #[test]
    fn a_wrapped_error_keeps_its_type_and_source() {
        use std::error::Error as _;
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = Error::wrap(Typed(io));
        assert_eq!(e.message, "registry.json: cannot read it: no such file");
        assert!(e.cause::<Typed>().is_some());
        assert!(e.cause::<std::io::Error>().is_none());
        let source = e.source().expect("the I/O error underneath");
        assert_eq!(source.to_string(), "no such file");
        assert!(Error::msg("plain").source().is_none());
    }

    #[test]
    fn control_characters_reach_the_terminal_escaped() {
        assert_eq!(escape_for_terminal("plain\nnext\tcol"), "plain\nnext\tcol");
        assert_eq!(
            escape_for_terminal("a\u{1b}[2Jb\0c\rd\u{9b}e"),
            "a\\u{1b}[2Jb\\u{0}c\\u{d}d\\u{9b}e"
        );
    }

    #[test]
    fn bidirectional_controls_reach_the_terminal_escaped() {
        // "mock\u{202e}txt.exe" would show as "mockexe.txt".
        assert_eq!(
            escape_for_terminal("mock\u{202e}txt.exe \u{2066}x\u{2069} \u{200f}"),
            "mock\\u{202e}txt.exe \\u{2066}x\\u{2069} \\u{200f}"
        );
        assert_eq!(escape_for_terminal("über 日本 عربي"), "über 日本 عربي");
    }
}
