//! Where a model's files come from: `huggingface_id` is a
//! local directory or a Hub repo id. Repo files are fetched with `hf-hub`
//! into the standard HuggingFace cache, the layout transformers uses, so a
//! model downloaded by either is found by both.
//!
//! The environment is read as `huggingface_hub` reads it:
//! - `HF_HUB_CACHE` is the cache directory; else `HF_HOME/hub`; else
//!   `~/.cache/huggingface/hub`;
//! - `HF_HUB_OFFLINE=1` never touches the network: files must be cached;
//! - `HF_TOKEN` is the access token, unless the caller passes one (the
//!   `huggingface` key when an entry sets `requires_api_key: true`);
//! - `HF_ENDPOINT` is another Hub address (a mirror).

#[cfg(feature = "hub")]
use std::path::Path;
use std::path::PathBuf;

/// A failure to find or fetch a model's files.
#[cfg(feature = "hub")]
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The id is neither a directory nor an `org/name` repo id.
    #[error("huggingface_id '{0}' is neither an existing directory nor a Hub repo id of the form `org/name`")]
    NotAModel(String),
    /// A file could not be had from the cache or the Hub.
    #[error("{repo}: {message}")]
    Fetch {
        /// The repo id.
        repo: String,
        /// What went wrong, with the fix.
        message: String,
    },
}

/// How to reach the Hub.
#[derive(Clone, Debug, Default)]
pub struct HubSettings {
    /// The cache directory (`.../hub`).
    pub cache_dir: PathBuf,
    /// Only use cached files.
    pub offline: bool,
    /// Access token for gated or private repos.
    pub token: Option<String>,
    /// Another Hub address.
    pub endpoint: Option<String>,
}

impl HubSettings {
    /// Settings from an environment lookup (`|k| std::env::var(k).ok()` in
    /// production); `token` (from a key file) wins over `HF_TOKEN`.
    pub fn from_env(var: impl Fn(&str) -> Option<String>, token: Option<String>) -> Self {
        let nonempty = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let home = nonempty("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        // `~` and `~/...` as Python's `expanduser` reads them.
        let expand = |p: String| match p.strip_prefix('~') {
            Some("") => home.clone(),
            Some(rest) if rest.starts_with('/') => home.join(&rest[1..]),
            _ => PathBuf::from(p),
        };
        let cache_dir = match (nonempty("HF_HUB_CACHE"), nonempty("HF_HOME")) {
            (Some(dir), _) => expand(dir),
            (None, Some(hf_home)) => expand(hf_home).join("hub"),
            (None, None) => home.join(".cache").join("huggingface").join("hub"),
        };
        HubSettings {
            cache_dir,
            offline: nonempty("HF_HUB_OFFLINE")
                .map(|v| clemhost_pyfacts::truth::env_true(&v))
                .unwrap_or(false),
            token: token.or_else(|| nonempty("HF_TOKEN")),
            endpoint: nonempty("HF_ENDPOINT"),
        }
    }

    /// Settings from the process environment.
    pub fn from_process_env(token: Option<String>) -> Self {
        Self::from_env(|k| std::env::var(k).ok(), token)
    }
}

/// A model's files: a local directory, or a Hub repo reached through the cache.
#[cfg(feature = "hub")]
pub struct ModelSource {
    id: String,
    local: Option<PathBuf>,
    cached: Option<hf_hub::CacheRepo>,
    remote: Option<hf_hub::api::sync::ApiRepo>,
    settings: HubSettings,
}

#[cfg(feature = "hub")]
impl ModelSource {
    /// Opens `huggingface_id`: an existing directory is used as it is;
    /// `org/name` is a Hub repo (nothing is downloaded yet).
    pub fn open(huggingface_id: &str, settings: &HubSettings) -> Result<ModelSource, HubError> {
        let local = Path::new(huggingface_id);
        if local.is_dir() {
            return Ok(ModelSource {
                id: huggingface_id.to_string(),
                local: Some(local.to_path_buf()),
                cached: None,
                remote: None,
                settings: settings.clone(),
            });
        }
        let looks_like_repo = huggingface_id.split('/').count() == 2
            && !local.is_absolute()
            && !huggingface_id.starts_with('.')
            && !huggingface_id.starts_with('~');
        if !looks_like_repo {
            return Err(HubError::NotAModel(huggingface_id.to_string()));
        }
        let cache = hf_hub::Cache::new(settings.cache_dir.clone());
        let remote = if settings.offline {
            None
        } else {
            let mut builder =
                hf_hub::api::sync::ApiBuilder::from_cache(cache.clone()).with_progress(false);
            if let Some(token) = &settings.token {
                builder = builder.with_token(Some(token.clone()));
            }
            if let Some(endpoint) = &settings.endpoint {
                builder = builder.with_endpoint(endpoint.clone());
            }
            let api = builder.build().map_err(|e| HubError::Fetch {
                repo: huggingface_id.to_string(),
                message: format!("cannot set up the Hub client: {e}"),
            })?;
            Some(api.model(huggingface_id.to_string()))
        };
        Ok(ModelSource {
            id: huggingface_id.to_string(),
            local: None,
            cached: Some(cache.model(huggingface_id.to_string())),
            remote,
            settings: settings.clone(),
        })
    }

    /// The id as given.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the files are a local directory (not a Hub repo).
    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// The path of one file of the model, fetched into the cache if needed.
    /// `name` may come from the model's own files (the shards an index
    /// lists), so it must be a relative path inside the model
    /// ([`crate::gguf_file::check_relative_file_name`]): joined to the
    /// directory or the cache's snapshot folder, `/abs` or `../x` would read
    /// outside it, and a download would put the file (a link into the
    /// cache) where the name points.
    pub fn file(&self, name: &str) -> Result<PathBuf, HubError> {
        if let Err(rule) = crate::gguf_file::check_relative_file_name(name) {
            return Err(HubError::Fetch {
                repo: self.id.clone(),
                message: format!(
                    "the file name {name:?} {rule}; a model's files are named by relative paths inside it"
                ),
            });
        }
        if let Some(dir) = &self.local {
            let p = dir.join(name);
            return if p.is_file() {
                Ok(p)
            } else {
                Err(HubError::Fetch {
                    repo: self.id.clone(),
                    message: format!("{name} is not in the directory {}", dir.display()),
                })
            };
        }
        if let Some(p) = self.cached.as_ref().and_then(|c| c.get(name)) {
            return Ok(p);
        }
        match &self.remote {
            None => Err(HubError::Fetch {
                repo: self.id.clone(),
                message: format!(
                    "{name} is not in the cache at {} and HF_HUB_OFFLINE is set; unset it to download, or copy the model there",
                    self.settings.cache_dir.display()
                ),
            }),
            Some(repo) => repo.get(name).map_err(|e| HubError::Fetch {
                repo: self.id.clone(),
                message: format!(
                    "downloading {name} failed: {e} (for a gated model set HF_TOKEN or the huggingface key with requires_api_key)"
                ),
            }),
        }
    }

    /// Like [`ModelSource::file`], but `None` for a file the model does not have.
    pub fn optional_file(&self, name: &str) -> Option<PathBuf> {
        match self.file(name) {
            Ok(p) => Some(p),
            Err(e) => {
                log::debug!("optional file not available: {e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn cache_dir_offline_and_token_follow_the_hf_variables() {
        let s = HubSettings::from_env(env(&[("HF_HOME", "/h"), ("HF_HUB_OFFLINE", "1")]), None);
        assert_eq!((s.cache_dir, s.offline), (PathBuf::from("/h/hub"), true));
        let s = HubSettings::from_env(
            env(&[("HF_HOME", "/h"), ("HF_HUB_CACHE", "/c"), ("HF_TOKEN", "t")]),
            None,
        );
        assert_eq!(
            (s.cache_dir, s.offline, s.token.as_deref()),
            (PathBuf::from("/c"), false, Some("t"))
        );
        let s = HubSettings::from_env(env(&[("HF_HOME", "~/hf"), ("HOME", "/u")]), None);
        assert_eq!(s.cache_dir, PathBuf::from("/u/hf/hub"));
        let s = HubSettings::from_env(env(&[("HF_TOKEN", "t"), ("HOME", "/u")]), Some("k".into()));
        assert_eq!(
            (s.cache_dir, s.token.as_deref()),
            (PathBuf::from("/u/.cache/huggingface/hub"), Some("k"))
        );
    }

    #[cfg(feature = "hub")]
    #[test]
    fn a_pre_filled_cache_serves_files_offline() {
        let cache = tempfile::tempdir().unwrap();
        let snap = cache.path().join("models--org--tiny/snapshots/abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        std::fs::create_dir_all(cache.path().join("models--org--tiny/refs")).unwrap();
        std::fs::write(cache.path().join("models--org--tiny/refs/main"), "abc123").unwrap();
        let settings = HubSettings {
            cache_dir: cache.path().to_path_buf(),
            offline: true,
            ..HubSettings::default()
        };
        let src = ModelSource::open("org/tiny", &settings).unwrap();
        assert!(!src.is_local());
        assert_eq!(src.file("config.json").unwrap(), snap.join("config.json"));
        let msg = src.file("tokenizer.json").unwrap_err().to_string();
        assert!(
            msg.contains("HF_HUB_OFFLINE") && msg.contains("tokenizer.json"),
            "{msg}"
        );
        assert!(src.optional_file("generation_config.json").is_none());
    }

    #[cfg(feature = "hub")]
    #[test]
    fn file_names_that_leave_the_model_are_refused_before_anything_is_read() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("model");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(parent.path().join("outside.json"), "{}").unwrap();
        let cache = tempfile::tempdir().unwrap();
        let settings = HubSettings {
            cache_dir: cache.path().to_path_buf(),
            offline: true,
            ..HubSettings::default()
        };
        let local = ModelSource::open(dir.to_str().unwrap(), &settings).unwrap();
        let outside = parent.path().join("outside.json");
        let hub = ModelSource::open("org/tiny", &settings).unwrap();
        for src in [&local, &hub] {
            for name in [
                "../outside.json",
                outside.to_str().unwrap(),
                "a/../../x",
                "",
            ] {
                let msg = src.file(name).unwrap_err().to_string();
                assert!(msg.contains("relative paths inside it"), "{name:?}: {msg}");
            }
        }
    }

    #[test]
    fn local_directories_and_bad_ids() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let src = ModelSource::open(dir.path().to_str().unwrap(), &HubSettings::default()).unwrap();
        assert!(src.is_local() && src.file("config.json").is_ok());
        assert!(src
            .file("missing.json")
            .unwrap_err()
            .to_string()
            .contains("missing.json"));
        for bad in ["/no/such/dir", "just-a-name", "a/b/c", "./rel"] {
            assert!(
                matches!(
                    ModelSource::open(bad, &HubSettings::default()),
                    Err(HubError::NotAModel(_))
                ),
                "{bad}"
            );
        }
    }
}
