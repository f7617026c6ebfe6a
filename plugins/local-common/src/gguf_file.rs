//! Which GGUF file a registry entry means, decided in one
//! place for the llamacpp plugin and the host's `template` and `doctor`.
//!
//! [`locate_gguf`] turns `huggingface_id` + `model_config.filename` into a
//! path on disk:
//! 1. `huggingface_id` is an existing file: that file.
//! 2. `huggingface_id` is an existing directory: `filename` inside it;
//!    without `filename`, the directory's only `.gguf`.
//! 3. `filename` alone is an existing absolute path: that file.
//! 4. Otherwise `huggingface_id` is a Hub repo id (`org/name`) and
//!    `filename` is taken from the HF cache or downloaded into it
//!    ([`ModelSource`]).
//!
//! A relative `filename` comes from a registry file that may not be yours,
//! and it is joined to a directory, so it must stay inside it: it is checked
//! by [`check_relative_file_name`] before anything is opened.

use crate::hub::HubSettings;
#[cfg(feature = "hub")]
use crate::hub::{HubError, ModelSource};
use std::path::{Path, PathBuf};

/// Why no GGUF file could be found for an entry.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// `model_config.filename` could leave its directory.
    #[error("model_config.filename {name:?} {rule}; give the name of a file inside the repo or directory, e.g. \"model.Q4_K_M.gguf\"")]
    BadFileName {
        /// The name as given.
        name: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The named file is not in the directory.
    #[error("model_config.filename {name:?} is not a file in {} (huggingface_id)", dir.display())]
    NotInDirectory {
        /// The name.
        name: String,
        /// The directory.
        dir: PathBuf,
    },
    /// The directory could not be listed.
    #[error("cannot list {}: {source}", dir.display())]
    ListDirectory {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A directory without `filename` holds no `.gguf` file.
    #[error("{} holds no .gguf file; set model_config.filename", dir.display())]
    NoGguf {
        /// The directory.
        dir: PathBuf,
    },
    /// A directory without `filename` holds several `.gguf` files.
    #[error("{} holds several .gguf files ({}); set model_config.filename to one of them", dir.display(), names.join(", "))]
    SeveralGguf {
        /// The directory.
        dir: PathBuf,
        /// The candidates' file names, sorted.
        names: Vec<String>,
    },
    /// `huggingface_id` is neither a path nor a repo id.
    #[error("huggingface_id '{0}' is neither an existing file or directory nor a Hub repo id (org/name)")]
    NotAModel(String),
    /// A Hub repo, but this build has no Hub client.
    #[cfg(not(feature = "hub"))]
    #[error("huggingface_id '{0}' is a Hub repo, and this build reads only local files; build with the `hub` feature (the default) or point huggingface_id at a local .gguf file or directory")]
    NoHub(String),
    /// A Hub repo without `filename`.
    #[error("huggingface_id '{0}' is a Hub repo; set model_config.filename to the .gguf file to take from it")]
    NeedsFileName(String),
    /// The cache or the Hub did not give the file.
    #[cfg(feature = "hub")]
    #[error("{filename}: {source}")]
    Hub {
        /// The file asked for.
        filename: String,
        /// What the cache or the Hub said.
        source: HubError,
    },
}

/// Checks a file name taken from a registry entry (or the Hub) before it is
/// joined to a directory: a relative path of normal components (`a.gguf`,
/// or `Q4_K_M/a-00001-of-00002.gguf` for the repos that keep quantizations
/// in folders) — not empty, no `.` or `..` component, no empty component,
/// no backslash, no NUL, each component at most 255 bytes.
pub fn check_relative_file_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.contains('\0') {
        return Err("contains a NUL character");
    }
    if name.contains('\\') {
        return Err("contains a backslash");
    }
    if name.starts_with('/') || name.starts_with('~') {
        return Err("is not a relative path");
    }
    for part in name.split('/') {
        match part {
            "" => return Err("has an empty path component (`//` or a trailing `/`)"),
            "." | ".." => return Err("has a `.` or `..` component"),
            p if p.len() > 255 => return Err("has a component longer than 255 bytes"),
            _ => {}
        }
    }
    Ok(())
}

/// `~` and `~/…` expanded with `$HOME`.
pub fn expand_home(path: &str) -> PathBuf {
    let home = || std::env::var_os("HOME").filter(|h| !h.is_empty());
    if path == "~" {
        if let Some(h) = home() {
            return PathBuf::from(h);
        }
    }
    if let Some(rest) = path.strip_prefix("~/") {
        if let Some(h) = home() {
            return PathBuf::from(h).join(rest);
        }
    }
    PathBuf::from(path)
}

/// Finds (or downloads) the GGUF file an entry names; see the module docs.
pub fn locate_gguf(
    huggingface_id: &str,
    filename: Option<&str>,
    hub: &HubSettings,
) -> Result<PathBuf, LocateError> {
    let id_path = expand_home(huggingface_id);
    if id_path.is_file() {
        return Ok(id_path);
    }
    if let Some(f) = filename {
        let p = expand_home(f);
        if p.is_absolute() {
            if p.is_file() {
                return Ok(p);
            }
        } else {
            check_relative_file_name(f).map_err(|rule| LocateError::BadFileName {
                name: f.to_owned(),
                rule,
            })?;
        }
    }
    if id_path.is_dir() {
        return match filename {
            Some(f) => {
                let inside = id_path.join(f);
                if inside.is_file() {
                    Ok(inside)
                } else {
                    Err(LocateError::NotInDirectory {
                        name: f.to_owned(),
                        dir: id_path,
                    })
                }
            }
            None => only_gguf_in(&id_path),
        };
    }
    if !looks_like_repo_id(huggingface_id) {
        return Err(LocateError::NotAModel(huggingface_id.to_owned()));
    }
    let Some(filename) = filename else {
        return Err(LocateError::NeedsFileName(huggingface_id.to_owned()));
    };
    if Path::new(filename).is_absolute() {
        // An absolute path that is not a file: say so rather than asking the Hub.
        return Err(LocateError::BadFileName {
            name: filename.to_owned(),
            rule: "is an absolute path that is not a file",
        });
    }
    #[cfg(feature = "hub")]
    {
        let hub_error = |source| LocateError::Hub {
            filename: filename.to_owned(),
            source,
        };
        ModelSource::open(huggingface_id, hub)
            .map_err(hub_error)?
            .file(filename)
            .map_err(hub_error)
    }
    #[cfg(not(feature = "hub"))]
    {
        let _ = hub;
        Err(LocateError::NoHub(huggingface_id.to_owned()))
    }
}

fn only_gguf_in(dir: &Path) -> Result<PathBuf, LocateError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LocateError::ListDirectory {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut ggufs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
        })
        .collect();
    ggufs.sort();
    match ggufs.len() {
        1 => Ok(ggufs.remove(0)),
        0 => Err(LocateError::NoGguf {
            dir: dir.to_path_buf(),
        }),
        _ => Err(LocateError::SeveralGguf {
            dir: dir.to_path_buf(),
            names: ggufs
                .iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect(),
        }),
    }
}

/// `org/name` or `name`, of ASCII letters, digits, `-`, `_` and `.`, not
/// starting with `.`.
pub fn looks_like_repo_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('/').collect();
    (1..=2).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p != &"."
                && p != &".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
        && !id.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline(dir: &Path) -> HubSettings {
        HubSettings {
            cache_dir: dir.join("no-hub"),
            offline: true,
            ..HubSettings::default()
        }
    }

    #[test]
    fn repo_ids_are_recognised() {
        assert!(looks_like_repo_id(
            "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
        ));
        assert!(looks_like_repo_id("gpt2"));
        for bad in ["/abs/path", "a/b/c", "./rel", "has space/x", "org/..", ""] {
            assert!(!looks_like_repo_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn file_names_that_leave_their_directory_are_refused() {
        for ok in ["m.gguf", "Q4_K_M/m-00001-of-00002.gguf", "a..b.gguf"] {
            assert_eq!(check_relative_file_name(ok), Ok(()), "{ok}");
        }
        let long = "x".repeat(256);
        for bad in [
            "",
            "../m.gguf",
            "a/../../m.gguf",
            "./m.gguf",
            "a//b",
            "a/",
            "/abs",
            "~/m",
            "a\\b",
            "a\0b",
            long.as_str(),
        ] {
            assert!(check_relative_file_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_traversing_filename_is_refused_before_any_file_is_touched() {
        let root = tempfile::tempdir().unwrap();
        let models = root.path().join("models");
        std::fs::create_dir(&models).unwrap();
        std::fs::write(root.path().join("secret.gguf"), "x").unwrap();
        let id = models.to_string_lossy().into_owned();
        let err = locate_gguf(&id, Some("../secret.gguf"), &offline(root.path())).unwrap_err();
        assert!(matches!(err, LocateError::BadFileName { .. }), "{err}");
        let text = err.to_string();
        assert!(
            text.contains("model_config.filename") && text.contains("`..`"),
            "{text}"
        );
        let err = locate_gguf("org/repo", Some("../../x.gguf"), &offline(root.path())).unwrap_err();
        assert!(matches!(err, LocateError::BadFileName { .. }), "{err}");
    }

    #[test]
    fn directories_files_and_absolute_names() {
        let dir = tempfile::tempdir().unwrap();
        let id = dir.path().to_string_lossy().into_owned();
        let hub = offline(dir.path());
        assert!(matches!(
            locate_gguf(&id, None, &hub),
            Err(LocateError::NoGguf { .. })
        ));
        std::fs::write(dir.path().join("b.gguf"), "x").unwrap();
        assert_eq!(
            locate_gguf(&id, None, &hub).unwrap(),
            dir.path().join("b.gguf")
        );
        std::fs::write(dir.path().join("a.gguf"), "x").unwrap();
        let err = locate_gguf(&id, None, &hub).unwrap_err().to_string();
        assert!(err.contains("a.gguf, b.gguf"), "{err}");
        assert_eq!(
            locate_gguf(&id, Some("a.gguf"), &hub).unwrap(),
            dir.path().join("a.gguf")
        );
        let file = dir.path().join("b.gguf");
        let file_id = file.to_string_lossy().into_owned();
        assert_eq!(locate_gguf(&file_id, None, &hub).unwrap(), file);
        assert_eq!(locate_gguf("org/repo", Some(&file_id), &hub).unwrap(), file);
        assert!(matches!(
            locate_gguf(&id, Some("c.gguf"), &hub),
            Err(LocateError::NotInDirectory { .. })
        ));
        assert!(matches!(
            locate_gguf("org/repo", None, &hub),
            Err(LocateError::NeedsFileName(_))
        ));
        assert!(matches!(
            locate_gguf("a b", None, &hub),
            Err(LocateError::NotAModel(_))
        ));
        let err = locate_gguf("org/repo", Some("m.gguf"), &hub).unwrap_err();
        assert!(
            matches!(err, LocateError::Hub { .. }) && err.to_string().contains("HF_HUB_OFFLINE"),
            "{err}"
        );
    }
}
