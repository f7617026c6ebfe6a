//! Where a model's files come from: `huggingface_id` is either a local
//! directory or a Hub repo id, fetched with `hf-hub` into the standard
//! HuggingFace cache (the same layout transformers uses, so a model
//! downloaded by either is found by both).
//!
//! Environment, as `huggingface_hub` reads it:
//! - `HF_HUB_CACHE`: the cache directory; else `HF_HOME/hub`; else
//!   `~/.cache/huggingface/hub`.
//! - `HF_HUB_OFFLINE=1`: never touch the network; the files must be cached.
//! - `HF_TOKEN`: the access token, unless the registry entry sets
//!   `requires_api_key: true`, in which case the `huggingface` key's
//!   `api_key` is used. Without either, hf-hub's saved token file is used.
//! - `HF_ENDPOINT`: another Hub address (mirrors).

use crate::error::{Error, Result};
use clemhost_local_common::hub::{HubError, ModelSource};
use std::path::{Path, PathBuf};

/// How to reach the Hub (shared with the host's `check-hf` and the other
/// local plugin).
pub use clemhost_local_common::hub::HubSettings;

/// The files of one model, all in one directory.
#[derive(Clone, Debug)]
pub struct ModelFiles {
    /// The directory with config.json, tokenizer files and weights.
    pub dir: PathBuf,
    /// The safetensors files, in load order.
    pub weights: Vec<PathBuf>,
}

/// Files a model may have besides config.json and the weights.
const OPTIONAL_FILES: [&str; 5] = [
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
];

/// Resolves `huggingface_id` to the model's files.
pub fn resolve(huggingface_id: &str, hub: &HubSettings) -> Result<ModelFiles> {
    let local = Path::new(huggingface_id);
    if local.is_dir() {
        return local_files(local);
    }
    fetch(huggingface_id, hub)
}

fn hub_error(repo: &str, e: HubError) -> Error {
    let message = match e {
        HubError::NotAModel(_) => {
            "it is neither an existing directory nor a Hub repo id of the form `org/name`"
                .to_string()
        }
        HubError::Fetch { message, .. } => message,
    };
    Error::Hub {
        repo: repo.to_string(),
        message,
    }
}

fn local_files(dir: &Path) -> Result<ModelFiles> {
    let weights = weight_files(dir, |name| {
        let p = dir.join(name);
        p.is_file().then_some(p)
    })?;
    Ok(ModelFiles {
        dir: dir.to_path_buf(),
        weights,
    })
}

/// The safetensors files: `model.safetensors`, or the shards listed by
/// `model.safetensors.index.json`. `get` finds (or fetches) one file.
fn weight_files(dir: &Path, get: impl Fn(&str) -> Option<PathBuf>) -> Result<Vec<PathBuf>> {
    if let Some(single) = get("model.safetensors") {
        return Ok(vec![single]);
    }
    let Some(index) = get("model.safetensors.index.json") else {
        return Err(Error::Weights {
            path: dir.to_path_buf(),
            message: "no model.safetensors or model.safetensors.index.json (only safetensors weights are supported)"
                .into(),
        });
    };
    let map = crate::error::read_json(&index)?;
    let Some(serde_json::Value::Object(weight_map)) = map.get("weight_map") else {
        return Err(Error::field(
            index.display().to_string(),
            "weight_map",
            "must be an object of tensor -> file",
        ));
    };
    let mut names: Vec<String> = Vec::new();
    for file in weight_map.values() {
        let Some(name) = file.as_str() else {
            return Err(Error::field(
                index.display().to_string(),
                "weight_map",
                "values must be file names",
            ));
        };
        // The index comes with the model (from the Hub or a folder from
        // others): a shard named `/abs`, `../x` would be read, or
        // downloaded to, outside the model's folder.
        if let Err(rule) = clemhost_local_common::gguf_file::check_relative_file_name(name) {
            return Err(Error::field(
                index.display().to_string(),
                "weight_map",
                format!("the shard name {name:?} {rule}; shards are files inside the model"),
            ));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }
    names
        .into_iter()
        .map(|name| {
            get(&name).ok_or_else(|| Error::Weights {
                path: dir.to_path_buf(),
                message: format!("shard {name} listed in model.safetensors.index.json is missing"),
            })
        })
        .collect()
}

fn fetch(repo_id: &str, hub: &HubSettings) -> Result<ModelFiles> {
    let source = ModelSource::open(repo_id, hub).map_err(|e| hub_error(repo_id, e))?;
    let config = source
        .file("config.json")
        .map_err(|e| hub_error(repo_id, e))?;
    let dir = config
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| Error::Hub {
            repo: repo_id.to_string(),
            message: "the cached config.json has no parent directory".into(),
        })?;
    source
        .file("tokenizer.json")
        .map_err(|e| hub_error(repo_id, e))?;
    for name in OPTIONAL_FILES {
        source.optional_file(name);
    }
    let weights = weight_files(&dir, |name| source.optional_file(name))?;
    Ok(ModelFiles { dir, weights })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_that_is_no_repo_id_is_a_clear_error() {
        let msg = resolve("/no/such/dir", &HubSettings::default())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("neither an existing directory"), "{msg}");
    }

    #[test]
    fn shard_names_that_leave_the_model_folder_are_refused_unread() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("model");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(parent.path().join("outside.safetensors"), "x").unwrap();
        let outside = parent.path().join("outside.safetensors");
        for shard in ["../outside.safetensors", outside.to_str().unwrap()] {
            std::fs::write(
                dir.join("model.safetensors.index.json"),
                serde_json::json!({"weight_map": {"w": shard}}).to_string(),
            )
            .unwrap();
            let asked = std::cell::RefCell::new(Vec::new());
            let err = weight_files(&dir, |name| {
                asked.borrow_mut().push(name.to_string());
                let p = dir.join(name);
                p.is_file().then_some(p)
            })
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("shards are files inside the model"),
                "{shard}: {err}"
            );
            assert!(
                !asked.borrow().iter().any(|n| n == shard),
                "{shard} was looked up"
            );
        }
    }

    #[test]
    fn offline_without_cached_files_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubSettings {
            cache_dir: dir.path().to_path_buf(),
            offline: true,
            ..HubSettings::default()
        };
        let msg = resolve("org/missing", &hub).unwrap_err().to_string();
        assert!(
            msg.contains("HF_HUB_OFFLINE") && msg.contains("config.json"),
            "{msg}"
        );
    }
}
