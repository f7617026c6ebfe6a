//! Asks an OpenAI-compatible server one hellogame question through the
//! built plugin, opened with the host's loader as clemhost opens it, and
//! prints the answer and the recorded objects. A quick check of a server
//! without a game run:
//!
//! ```text
//! cargo build -p openai_compatible_api
//! cargo run -p openai_compatible_api --example ask -- http://127.0.0.1:8000/v1 MODEL_ID [NAME]
//! ```
//! The api key, if the server needs one, is read from `$OPENAI_COMPATIBLE_API_KEY`.

use clemhost_plugin_sdk::host::Plugin;
use clemhost_plugin_sdk::serde_json::{self, json};
use clemhost_plugin_sdk::{GenerateRequest, Message};
use clemhost_remote_common::test_support::{plugin_library, test_config};
use std::sync::atomic::AtomicU8;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(base_url), Some(model_id)) = (args.first(), args.get(1)) else {
        eprintln!("usage: ask BASE_URL MODEL_ID [NAME]");
        std::process::exit(2);
    };
    let name = args.get(2).map(String::as_str).unwrap_or("Peter");
    let Some(path) = plugin_library("openai_compatible_api") else {
        eprintln!(
            "libopenai_compatible_api.so is not built; run `cargo build -p openai_compatible_api`"
        );
        std::process::exit(1);
    };
    let plugin = Plugin::open(&path).unwrap_or_else(|e| {
        eprintln!("{}: {e}", path.display());
        std::process::exit(1)
    });
    let mut credentials = json!({ "base_url": base_url });
    if let Ok(key) = std::env::var("OPENAI_COMPATIBLE_API_KEY") {
        credentials["api_key"] = json!(key);
    }
    let model = plugin
        .create_model(&test_config(model_id, credentials, None))
        .unwrap_or_else(|e| {
            eprintln!("cannot open the model: {e}");
            std::process::exit(1)
        });
    let prompt = format!(
        "Your task is to greet and happily welcome the other person with the name:\n\n{name}\n\nRules:\n\n1. You must start your message with 'GREET:'\n2. Your message must include 'Hello', 'welcome' and the other person's name\n\nImportant: You only have one try.\n\nLet's start."
    );
    let request = GenerateRequest {
        request_id: "ask".into(),
        messages: vec![Message::new("user", prompt)],
        gen_args: None,
        timeout_ms: Some(120_000),
    };
    match model.generate(&request, &AtomicU8::new(0)) {
        Ok(g) => {
            println!("answer: {:?}", g.text);
            println!("usage: {:?}", g.usage);
            println!(
                "recorded response: {}",
                serde_json::to_string_pretty(&g.response).unwrap_or_default()
            );
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
