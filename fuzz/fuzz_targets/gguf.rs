//! A GGUF file's metadata (a model file downloaded from the Hub, read for
//! its chat template and special tokens before llama.cpp opens it): never a
//! panic, and no allocation sized by a count the file claims but does not
//! hold.
#![no_main]

use clemhost_local_common::gguf::GgufMetadata;
use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The file the input is written to.
fn gguf_file() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| clemhost_fuzz::scratch_file("model.gguf"))
}

fuzz_target!(|data: &[u8]| {
    std::fs::write(gguf_file(), data).expect("writing the scratch GGUF file");
    let Ok(metadata) = GgufMetadata::read(gguf_file()) else {
        return;
    };
    let _ = metadata.chat_template();
    for key in ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"] {
        let _ = metadata.special_token(key);
    }
    let _ = metadata.token_text(0);
});
