//! The plugin protocol's JSON, read as the host reads what a plugin returns
//! (manifest, generation, error) and as a plugin reads what the host sends
//! (model config, generate request): never a panic, and whatever parses
//! survives a round trip through its own serialisation unchanged.
#![no_main]

use clemhost_plugin_sdk::{
    BackendError, GenArgs, GenerateRequest, Generation, Manifest, Message, ModelConfig,
};
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<T>(data) else {
        return;
    };
    let bytes = serde_json::to_vec(&value).expect("a parsed message serialises");
    let again: T = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{} does not read back its own JSON ({e}): {}",
            std::any::type_name::<T>(),
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(value, again, "{}", String::from_utf8_lossy(&bytes));
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Manifest>(data);
    round_trip::<Generation>(data);
    round_trip::<BackendError>(data);
    round_trip::<ModelConfig>(data);
    round_trip::<GenerateRequest>(data);
    round_trip::<GenArgs>(data);
    round_trip::<Message>(data);
    if let Ok(error) = serde_json::from_slice::<BackendError>(data) {
        let _ = error.to_string();
        let _ = error.kind.is_retryable();
    }
});
