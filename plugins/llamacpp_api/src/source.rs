//! Where a GGUF file comes from. Which file an entry means is decided by
//! local-common's [`locate_gguf`] (shared with the host's `template` and
//! `doctor`); this module turns its errors into the plugin's error kinds.

use clemhost_local_common::gguf_file::{locate_gguf, LocateError};
use clemhost_local_common::hub::{HubError, HubSettings};
use clemhost_plugin_sdk::{BackendError, ErrorKind};
use std::path::PathBuf;

/// Finds (or downloads) the GGUF file a registry entry names.
pub fn resolve_gguf(
    model: &str,
    huggingface_id: &str,
    filename: Option<&str>,
    hub: &HubSettings,
) -> Result<PathBuf, BackendError> {
    locate_gguf(huggingface_id, filename, hub).map_err(|e| locate_error(model, e, hub))
}

fn locate_error(model: &str, e: LocateError, hub: &HubSettings) -> BackendError {
    let LocateError::Hub { filename, source } = e else {
        return BackendError::invalid_request(format!("model '{model}': {e}"));
    };
    let (repo, text) = match source {
        HubError::Fetch { repo, message } => (repo, message),
        other => {
            return BackendError::new(ErrorKind::Unavailable, format!("model '{model}': {other}"))
        }
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
        format!(
            "model '{model}': getting {filename} from the Hub repo {repo} failed: {text}{hint}"
        ),
    )
}
