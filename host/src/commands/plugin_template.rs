//! The files `clemhost plugins new` writes: a small, working backend that a
//! plugin author turns into a real one.

use std::path::Path;

/// (relative path, contents) of every file of a new plugin crate.
pub fn files(name: &str, sdk: &Path) -> Vec<(&'static str, String)> {
    let sdk = sdk.display().to_string().replace('\\', "/");
    let cargo = format!(
        r#"[package]
name = "{name}_api"
version = "0.1.0"
edition = "2021"
publish = false

# The plugin builds on its own, outside any other workspace.
[workspace]

[lib]
# clemhost loads lib{name}_api.so at run time.
crate-type = ["cdylib"]

[dependencies]
# Until the SDK is published, depend on it by path.
clemhost-plugin-sdk = {{ path = "{sdk}" }}

[profile.release]
# Keep panics catchable: clemhost turns them into errors instead of exiting.
panic = "unwind"
"#
    );
    let upper = name.to_ascii_uppercase();
    let lib = format!(
        r#"//! The `{name}` backend for clemhost.
//!
//! clemhost routes every registry entry with `"backend": "{name}"` here. This
//! starter answers with the `model_config.reply` text of the entry (or echoes
//! the last user message); replace `generate` with a call to your model.

use clemhost_plugin_sdk::serde_json::json;
use clemhost_plugin_sdk::{{
    log, Backend, BackendError, BackendInfo, Capabilities, Ctx, GenerateRequest, Generation,
    ModelConfig,
}};

/// One opened model.
pub struct Model {{
    name: String,
    reply: Option<String>,
}}

impl Backend for Model {{
    fn info() -> BackendInfo {{
        BackendInfo {{
            backends: vec!["{name}".to_string()],
            description: "starter backend created by `clemhost plugins new`".to_string(),
            capabilities: Capabilities {{
                concurrent_generate: true,
                // A backend that needs a key names its key.json section, and
                // the environment variables that may stand in for its api_key
                // (clemhost knows no backend by name; it reads these):
                // key_name: Some("{name}".to_string()),
                // requires_key: true,
                // key_env: vec!["{upper}_API_KEY".to_string()],
                ..Capabilities::default()
            }},
        }}
    }}

    fn create(config: ModelConfig) -> Result<Self, BackendError> {{
        let reply = config
            .model_config()
            .get("reply")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        log::info!("opened model {{}}", config.model_name());
        Ok(Model {{
            name: config.model_name().to_string(),
            reply,
        }})
    }}

    fn generate(&self, request: GenerateRequest, ctx: &Ctx) -> Result<Generation, BackendError> {{
        ctx.check()?;
        let last = request
            .messages
            .last()
            .ok_or_else(|| BackendError::invalid_request("no messages"))?;
        let text = self.reply.clone().unwrap_or_else(|| last.content.clone());
        Ok(Generation {{
            prompt: json!({{ "messages": request.messages }}),
            response: json!({{ "model": self.name, "text": text }}),
            text,
            ..Generation::default()
        }})
    }}
}}

clemhost_plugin_sdk::export_backend!(Model);
"#
    );
    let readme = format!(
        r#"# {name}_api — a clemhost backend plugin

Builds `lib{name}_api.so`, which clemhost loads for registry entries with
`"backend": "{name}"`.

## Build

    cargo build --release

## Install

Copy the library next to clemhost's other plugins (any directory on its
search path: `--plugin-dir DIR`, `$CLEMHOST_PLUGIN_PATH`, `./plugins`, or the
folder of the clemhost executable; a file in `./plugins` is opened only with
`CLEMHOST_ALLOW_CWD_PLUGINS=1` or `--plugin-dir plugins`):

    cp target/release/lib{name}_api.so /path/to/your/clemhost/plugins/
    clemhost plugins list            # shows {name} with status ok

## Use

Add a model entry to `model_registry.json` in the folder you run clemhost from:

    [{{"model_name": "my-model", "backend": "{name}", "model_config": {{"reply": "GREET: Hello!"}}}}]

then `clemhost run -g hellogame -m my-model`.

## Write the real backend

`src/lib.rs` implements `clemhost_plugin_sdk::Backend`: `create` opens a model
from its registry entry (`config.spec`), key (`config.credentials`) and
generation arguments; `generate` answers one request. Return typed
`BackendError`s (auth, rate_limited, timeout, ...) so clemhost can retry what
is retryable; panics are caught and reported. Log with `log::info!` and never
print to stdout. See clemhost's `docs/writing-a-backend.md`.
"#
    );
    vec![
        ("Cargo.toml", cargo),
        ("src/lib.rs", lib),
        ("README.md", readme),
        (".gitignore", "/target/\nCargo.lock\n".to_string()),
    ]
}
