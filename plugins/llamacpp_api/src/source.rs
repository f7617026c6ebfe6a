//! Where a GGUF file comes from: a local file, a local directory, or a
//! repository on the HuggingFace Hub (through the standard HF cache).
//!
//! [`resolve_gguf`] turns `huggingface_id` + `model_config.filename` into a
//! path on disk:
//! 1. `huggingface_id` is an existing file: that file.
//! 2. `huggingface_id` is an existing directory: `filename` inside it (or a
//!    path of its own); without `filename`, the directory's only `.gguf`.
//! 3. `filename` alone is an existing absolute path: that file.
//! 4. Otherwise `huggingface_id` is a Hub repo id (`org/name`): the file is
//!    taken from the HF cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//!    `~/.cache/huggingface/hub`) or downloaded into it with `hf-hub`, unless
//!    `HF_HUB_OFFLINE` is set.

use clemhost_local_common::hub::{HubError, HubSettings, ModelSource};
use clemhost_plugin_sdk::{BackendError, ErrorKind};
use std::path::{Path, PathBuf};

/// How to reach the Hub: cache directory, offline mode, token.
#[derive(Clone, Debug)]
pub struct HubAccess {
    /// The hub cache (`models--org--name/…` lives here).
    pub cache_dir: PathBuf,
    /// Never download (`HF_HUB_OFFLINE`).
    pub offline: bool,
    /// A token for gated or private repos (never logged).
    pub token: Option<String>,
}

impl HubAccess {
    /// The standard locations from the environment, with an optional token.
    pub fn from_env(token: Option<String>) -> HubAccess {
        HubAccess {
            cache_dir: hub_cache_dir(),
            offline: hub_offline(),
            token,
        }
    }
}

/// `~` and `~/…` expanded with `$HOME`.
pub fn expand_home(path: &str) -> PathBuf {
    if path == "~" {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home);
        }
    }
    if let Some(rest) = path.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    PathBuf::from(path)
}

/// The HF hub cache directory, as `huggingface_hub` chooses it.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE").filter(|v| !v.is_empty()) {
        return expand_home(&dir.to_string_lossy());
    }
    if let Some(home) = std::env::var_os("HF_HOME").filter(|v| !v.is_empty()) {
        return expand_home(&home.to_string_lossy()).join("hub");
    }
    expand_home("~/.cache/huggingface/hub")
}

/// Whether `HF_HUB_OFFLINE` asks not to touch the network.
pub fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

fn only_gguf_in(dir: &Path, model: &str) -> Result<PathBuf, BackendError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        BackendError::invalid_request(format!(
            "model '{model}': cannot list {}: {e}",
            dir.display()
        ))
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
        0 => Err(BackendError::invalid_request(format!(
            "model '{model}': {} holds no .gguf file; set model_config.filename",
            dir.display()
        ))),
        _ => Err(BackendError::invalid_request(format!(
            "model '{model}': {} holds several .gguf files ({}); set model_config.filename to one of them",
            dir.display(),
            ggufs
                .iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn looks_like_repo_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('/').collect();
    (1..=2).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
        && !id.starts_with('.')
}

/// Finds (or downloads) the GGUF file a registry entry names.
pub fn resolve_gguf(
    model: &str,
    huggingface_id: &str,
    filename: Option<&str>,
    hub: &HubAccess,
) -> Result<PathBuf, BackendError> {
    let id_path = expand_home(huggingface_id);
    if id_path.is_file() {
        return Ok(id_path);
    }
    if id_path.is_dir() {
        return match filename {
            Some(f) => {
                let inside = id_path.join(expand_home(f));
                if inside.is_file() {
                    Ok(inside)
                } else {
                    Err(BackendError::invalid_request(format!(
                        "model '{model}': model_config.filename '{f}' is not a file in {} (huggingface_id)",
                        id_path.display()
                    )))
                }
            }
            None => only_gguf_in(&id_path, model),
        };
    }
    if let Some(f) = filename {
        let p = expand_home(f);
        if p.is_absolute() && p.is_file() {
            return Ok(p);
        }
    }
    if !looks_like_repo_id(huggingface_id) {
        return Err(BackendError::invalid_request(format!(
            "model '{model}': huggingface_id '{huggingface_id}' is neither an existing file or \
             directory nor a Hub repo id (org/name)"
        )));
    }
    let Some(filename) = filename else {
        return Err(BackendError::invalid_request(format!(
            "model '{model}': huggingface_id '{huggingface_id}' is a Hub repo; set \
             model_config.filename to the .gguf file to take from it"
        )));
    };
    from_hub(model, huggingface_id, filename, hub)
}

fn from_hub(
    model: &str,
    repo: &str,
    filename: &str,
    hub: &HubAccess,
) -> Result<PathBuf, BackendError> {
    // The fetch itself is local-common's (shared with check-hf and the
    // huggingface_local plugin); this keeps the plugin's messages and kinds.
    let mut settings = HubSettings::from_process_env(hub.token.clone());
    settings.cache_dir = hub.cache_dir.clone();
    settings.offline = hub.offline;
    let source = ModelSource::open(repo, &settings)
        .map_err(|e| BackendError::new(ErrorKind::Unavailable, format!("model '{model}': {e}")))?;
    source.file(filename).map_err(|e| {
        let text = match e {
            HubError::Fetch { message, .. } => message,
            other => other.to_string(),
        };
        if hub.offline {
            return BackendError::invalid_request(format!(
                "model '{model}': {filename} of {repo} is not in the HF cache at {} and HF_HUB_OFFLINE is set; \
                 download it first or unset HF_HUB_OFFLINE",
                hub.cache_dir.display()
            ));
        }
        let kind = if text.contains("401") || text.contains("403") {
            ErrorKind::Auth
        } else if text.contains("404") {
            ErrorKind::InvalidRequest
        } else {
            ErrorKind::Unavailable
        };
        let hint = match kind {
            ErrorKind::Auth => "; the repo may be gated: set requires_api_key and a huggingface api_key in key.json, or HF_TOKEN",
            ErrorKind::InvalidRequest => "; check huggingface_id and model_config.filename",
            _ => "",
        };
        BackendError::new(
            kind,
            format!("model '{model}': getting {filename} from the Hub repo {repo} failed: {text}{hint}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_recognised() {
        assert!(looks_like_repo_id(
            "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
        ));
        assert!(looks_like_repo_id("gpt2"));
        assert!(!looks_like_repo_id("/abs/path"));
        assert!(!looks_like_repo_id("a/b/c"));
        assert!(!looks_like_repo_id("./rel"));
        assert!(!looks_like_repo_id("has space/x"));
    }
}
