//! An instances file (`-i FILE`, clembench's `{"experiments": [...]}`) as
//! `clemhost run` parses it: never a panic, errors name the file, and what
//! parses keeps what the file says (names, unique `game_id`s, no
//! `game_instances` in the metadata).
#![no_main]

use clemhost::games::instances::{parse, InstancesError};
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;

const ORIGIN: &str = "fuzz/instances.json";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse(text, ORIGIN) {
        Ok(experiments) => {
            for experiment in &experiments {
                assert_eq!(
                    experiment.meta.get("name").and_then(|n| n.as_str()),
                    Some(experiment.name.as_str())
                );
                assert!(!experiment.meta.contains_key("game_instances"));
                let mut ids = HashSet::new();
                for instance in &experiment.instances {
                    let id = instance["game_id"].as_u64().expect("an integer game_id");
                    assert!(ids.insert(id), "game_id {id} twice in {}", experiment.name);
                }
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.starts_with(ORIGIN),
                "error without the file: {message}"
            );
            // serde_json's columns start at 1; 0 means "before the first
            // character of the line" (an empty file is 1:0).
            if let InstancesError::Json { line, .. } = e {
                assert!(line >= 1, "{message}");
            }
        }
    }
});
