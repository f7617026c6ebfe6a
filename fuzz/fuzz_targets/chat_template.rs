//! A chat template (a model's `chat_template`, from a file someone else
//! wrote) rendered over a conversation, as the local backends do. The input
//! is the template text, then optionally a 0xFF byte and the messages as a
//! JSON array (a fixed conversation when that part is absent or not an
//! array of objects). Compiling and rendering never panic; with
//! `continue_final_message` the prompt ends with the final message's text.
#![no_main]

use clemhost_local_common::pystr;
use clemhost_local_common::template::{ChatTemplate, RenderInput};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fn conversation(text: &str) -> Vec<Value> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) if items.iter().all(Value::is_object) => items,
        _ => vec![
            json!({"role": "system", "content": "Play the game."}),
            json!({"role": "user", "content": "Hello, who are you?"}),
            json!({"role": "assistant", "content": " I am the answerer. "}),
        ],
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((source, messages)) = clemhost_fuzz::two_texts(data) else {
        return;
    };
    let Ok(template) = ChatTemplate::new(source) else {
        return;
    };
    let mut input = RenderInput::new(conversation(messages));
    input.bos_token = Some("<s>".into());
    input.eos_token = Some("</s>".into());
    input.now = chrono::NaiveDate::from_ymd_opt(2025, 3, 14).and_then(|d| d.and_hms_opt(9, 26, 53));
    // The flag choice comes from the input too, so both paths are fuzzed.
    let (add_generation_prompt, continuing) = match data.len() % 3 {
        0 => (false, true),
        1 => (true, false),
        _ => (false, false),
    };
    input.add_generation_prompt = add_generation_prompt;
    input.continue_final_message = continuing;
    if let Ok(prompt) = template.render(&input) {
        if continuing {
            let last = input.messages.last().and_then(|m| m.get("content"));
            if let Some(Value::String(text)) = last {
                // Cut after the text as written, or as stripped when the
                // template trims it (transformers' two cases).
                let stripped = pystr::strip(text);
                let lstripped = pystr::lstrip(text);
                assert!(
                    prompt.ends_with(stripped) || prompt.ends_with(lstripped),
                    "{prompt:?} does not end with {text:?}"
                );
            }
        }
    }
});
