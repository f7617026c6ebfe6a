//! Helpers the fuzz targets share: how one fuzz input is cut into the
//! several texts a target needs.
//!
//! A target that reads two texts (a registry and a selector, a template and
//! its messages) gets them from one input cut at the first `0xFF` byte.
//! `0xFF` never occurs in UTF-8, so every part is a text a user could have
//! written, and a plain file (a registry, a template) is a valid input on
//! its own: the second part is then empty.

use clemhost::registry::ResolvedModel;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// The byte that separates the parts of one input.
pub const SEPARATOR: u8 = 0xFF;

/// The first two parts of `data` as UTF-8 (the second is empty when there
/// is no separator); `None` when either is not UTF-8, as a file read with
/// `read_to_string` would be refused before any parsing.
pub fn two_texts(data: &[u8]) -> Option<(&str, &str)> {
    let (first, second) = match data.iter().position(|&b| b == SEPARATOR) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &data[data.len()..]),
    };
    Some((
        std::str::from_utf8(first).ok()?,
        std::str::from_utf8(second).ok()?,
    ))
}

/// The strings of at least `min_chars` characters written as JSON string
/// literals without escapes in `text` (so they read back unchanged), found
/// by a scan that skips escaped quotes. Used to check that an error message
/// never repeats what a file says.
pub fn string_literals(text: &str, min_chars: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'"' {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut j = start;
        let mut escaped = false;
        while j < bytes.len() && bytes[j] != b'"' {
            if bytes[j] == b'\\' {
                escaped = true;
                j += 1;
            }
            j += 1;
        }
        if j >= bytes.len() {
            break;
        }
        // Both ends sit on an ASCII quote, so they are char boundaries.
        let literal = &text[start..j];
        if !escaped && literal.chars().count() >= min_chars {
            out.push(literal);
        }
        i = j + 1;
    }
    out
}

/// A file of this name in this fuzzing process's scratch folder, for targets
/// whose code under test reads a path: `$CLEMHOST_FUZZ_SCRATCH` (which
/// `scripts/fuzz` sets and removes), else a folder in `/dev/shm` (memory) or
/// the temporary folder.
pub fn scratch_file(name: &str) -> PathBuf {
    let dir = match std::env::var_os("CLEMHOST_FUZZ_SCRATCH") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let shm = Path::new("/dev/shm");
            let base = if shm.is_dir() {
                shm.to_path_buf()
            } else {
                std::env::temp_dir()
            };
            base.join(format!("clemhost-fuzz-{}", std::process::id()))
        }
    };
    std::fs::create_dir_all(&dir).expect("a scratch folder for the fuzz input");
    dir.join(name)
}

/// Checks that a resolved model kept the selector's scalar values: where
/// the selector and the entry both have one, unification keeps the
/// selector's (built-in players are made from the name alone).
pub fn assert_selector_kept(query: &Map<String, Value>, model: &ResolvedModel) {
    if model.is_builtin() {
        return;
    }
    for (key, asked) in query {
        if !(asked.is_object() || asked.is_array()) {
            assert_eq!(model.spec.get(key), Some(asked), "{key}");
        }
    }
}
