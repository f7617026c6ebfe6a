//! Finding, reading and checking the key file.

use super::KeyError;
use crate::error::Error;
use crate::registry::locate::element_position;
use serde_json::{Map, Value};
use std::fmt;
use std::path::{Path, PathBuf};

/// The file name searched for.
pub const KEY_FILE: &str = "key.json";

/// The key files searched, in order: `./key.json` (absolute),
/// `~/.clemcore/key.json` (so clemcore users' keys work), then
/// `$XDG_CONFIG_HOME/clemhost/key.json` or `~/.config/clemhost/key.json`.
pub fn search_paths() -> Vec<PathBuf> {
    let mut paths = vec![std::path::absolute(KEY_FILE).unwrap_or_else(|_| PathBuf::from(KEY_FILE))];
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    if let Some(home) = &home {
        paths.push(home.join(".clemcore").join(KEY_FILE));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| home.as_ref().map(|h| h.join(".config")));
    if let Some(config) = config {
        paths.push(config.join("clemhost").join(KEY_FILE));
    }
    paths
}

/// The key file in use (if any), its sections, and what was searched.
#[derive(Clone, Default)]
pub struct KeyStore {
    pub(super) file: Option<PathBuf>,
    /// The file in use is `./key.json`, the one in the working directory.
    pub(super) file_in_cwd: bool,
    pub(super) searched: Vec<PathBuf>,
    pub(super) sections: Map<String, Value>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the values: they hold secrets.
        f.debug_struct("KeyStore")
            .field("file", &self.file)
            .field("sections", &self.sections.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeyStore {
    /// Reads the first key file of [`search_paths`] that exists. A file that
    /// exists but is malformed is an error with its path, line and column
    /// (clemcore would silently move on to the next file). No file at all is
    /// fine: the store is empty and only environment variables count.
    pub fn load() -> crate::Result<KeyStore> {
        Self::load_from(search_paths()).map_err(Error::from)
    }

    /// [`KeyStore::load`] over explicit candidate files, with the typed
    /// error. The first candidate counts as the working directory's file.
    pub fn load_from(candidates: Vec<PathBuf>) -> Result<KeyStore, KeyError> {
        for (index, path) in candidates.iter().enumerate() {
            if path.is_file() {
                let sections = read_key_file(path)?;
                tracing::debug!(
                    "keys: using {} ({} sections)",
                    path.display(),
                    sections.len()
                );
                return Ok(KeyStore {
                    file: Some(path.clone()),
                    file_in_cwd: index == 0,
                    searched: candidates.clone(),
                    sections,
                });
            }
        }
        tracing::debug!("keys: no key file found; only environment variables count");
        Ok(KeyStore {
            file: None,
            file_in_cwd: false,
            searched: candidates,
            sections: Map::new(),
        })
    }

    /// A store from sections in memory, as if read from `file` outside the
    /// working directory (for tests and callers that build one).
    pub fn from_sections(file: Option<PathBuf>, sections: Map<String, Value>) -> KeyStore {
        KeyStore {
            searched: file.iter().cloned().collect(),
            file,
            file_in_cwd: false,
            sections,
        }
    }

    /// The key file in use, if one was found.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The files that were searched, in order.
    pub fn searched(&self) -> &[PathBuf] {
        &self.searched
    }

    /// The section names of the key file, in file order.
    pub fn section_names(&self) -> Vec<&str> {
        self.sections.keys().map(String::as_str).collect()
    }
}

/// serde_json's description of a syntax error without its position. Its
/// syntax messages are fixed phrases (they never quote the text, which may
/// hold a secret); anything else is reduced to its category.
fn syntax_problem(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => {
            let full = e.to_string();
            match full.rfind(" at line ") {
                Some(cut) => full[..cut].to_string(),
                None => full,
            }
        }
        Category::Io => "it could not be read".into(),
        Category::Data => "it holds data of the wrong type".into(),
    }
}

/// Reads and checks one key file (its text never goes into an error).
fn read_key_file(path: &Path) -> Result<Map<String, Value>, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    // A byte order mark (an editor on Windows) is skipped.
    let text = crate::registry::locate::strip_bom(&text);
    let value: Value = serde_json::from_str(text).map_err(|e| KeyError::Syntax {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        problem: syntax_problem(&e),
    })?;
    // Key names only, never values: the warning holds no secret.
    crate::registry::locate::warn_duplicate_keys(&path.display().to_string(), text);
    let Value::Object(sections) = value else {
        return Err(KeyError::NotObject {
            path: path.to_path_buf(),
            found: clemhost_pyfacts::json::kind_of(&value),
        });
    };
    for (index, (name, section)) in sections.iter().enumerate() {
        if !section.is_object() {
            let location = match element_position(text, index) {
                Some(p) => format!("{}:{p}", path.display()),
                None => path.display().to_string(),
            };
            return Err(KeyError::SectionNotObject {
                location,
                name: name.clone(),
                found: clemhost_pyfacts::json::kind_of(section),
            });
        }
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_read_error_keeps_its_source() {
        let dir = std::env::temp_dir().join(format!("clemhost-keys-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("key.json")).expect("a directory named key.json");
        // A directory passes `is_file` as false, so read it directly.
        let e = read_key_file(&dir.join("key.json")).expect_err("a directory is no file");
        assert!(e.source().is_some(), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let store = KeyStore::from_sections(
            Some(PathBuf::from("key.json")),
            serde_json::json!({"openai": {"api_key": "sk-very-secret-value"}})
                .as_object()
                .cloned()
                .expect("object"),
        );
        let shown = format!("{store:?}");
        assert!(shown.contains("openai"));
        assert!(!shown.contains("sk-very-secret-value"));
    }
}
