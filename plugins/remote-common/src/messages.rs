//! What a remote call reads from a message besides its text. clemcore's
//! preprocessing (`ensure_alternating_roles`) is `clemhost-pyfacts`'s, used
//! as it is.

use clemhost_plugin_sdk::serde_json::Value;
use clemhost_plugin_sdk::{BackendError, Message};

/// The images attached to a message (`"image": "<ref>"` or `"image": ["<ref>", ...]`).
///
/// A reference is an `http(s)` URL, a `data:image/...` URL or a local file path.
pub fn images_of(message: &Message) -> Result<Vec<String>, BackendError> {
    match message.extra.get("image") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| {
                    BackendError::invalid_request(format!(
                        "message field `image` must hold strings (paths or URLs), found {v}"
                    ))
                })
            })
            .collect(),
        Some(other) => Err(BackendError::invalid_request(format!(
            "message field `image` must be a string or a list of strings, found {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clemhost_plugin_sdk::serde_json::json;

    fn m(role: &str, content: &str) -> Message {
        Message::new(role, content)
    }

    #[test]
    fn images_are_read_from_strings_and_lists() {
        let mut msg = m("user", "look");
        assert!(images_of(&msg).unwrap().is_empty());
        msg.extra
            .insert("image".into(), json!(["a.png", "http://x/b.jpg"]));
        assert_eq!(images_of(&msg).unwrap(), vec!["a.png", "http://x/b.jpg"]);
        msg.extra.insert("image".into(), json!(3));
        assert!(images_of(&msg).is_err());
    }
}
