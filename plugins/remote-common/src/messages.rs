//! Message preprocessing as clemcore applies it before every remote call.

use clemhost_plugin_sdk::serde_json::Value;
use clemhost_plugin_sdk::{BackendError, Message};

/// Prepares a conversation for a provider the way clemcore does:
///
/// - a **first** message with role `system` and empty content is dropped
///   (a non-empty one, or a later empty one, is kept);
/// - consecutive messages with the same role are merged into the first of
///   them, joining the contents with a blank line (`"\n\n"`); the merged
///   message keeps only the first message's extra keys (so an `image` on the
///   second message is lost, as in clemcore).
///
/// An empty conversation is an `invalid_request` error.
pub fn ensure_alternating_roles(messages: &[Message]) -> Result<Vec<Message>, BackendError> {
    if messages.is_empty() {
        return Err(BackendError::invalid_request(
            "the conversation is empty: a request needs at least one message",
        ));
    }
    let skip_first = messages[0].role == "system" && messages[0].content.is_empty();
    let mut out: Vec<Message> = Vec::with_capacity(messages.len());
    for message in messages.iter().skip(usize::from(skip_first)) {
        match out.last_mut() {
            Some(previous) if previous.role == message.role => {
                previous.content.push_str("\n\n");
                previous.content.push_str(&message.content);
            }
            _ => out.push(message.clone()),
        }
    }
    Ok(out)
}

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
    fn drops_only_a_leading_empty_system_message() {
        let out = ensure_alternating_roles(&[m("system", ""), m("user", "hi")]).unwrap();
        assert_eq!(out, vec![m("user", "hi")]);
        let kept = ensure_alternating_roles(&[m("system", "be nice"), m("user", "hi")]).unwrap();
        assert_eq!(kept.len(), 2);
        let later = ensure_alternating_roles(&[m("user", "a"), m("system", "")]).unwrap();
        assert_eq!(later, vec![m("user", "a"), m("system", "")]);
    }

    #[test]
    fn merges_runs_of_one_role_keeping_first_extras() {
        let mut first = m("user", "a");
        first.extra.insert("image".into(), json!("one.png"));
        let mut second = m("user", "b");
        second.extra.insert("image".into(), json!("two.png"));
        let out = ensure_alternating_roles(&[
            first,
            second,
            m("assistant", "c"),
            m("user", "d"),
            m("user", "e"),
        ])
        .unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].content, "a\n\nb");
        assert_eq!(out[0].extra.get("image"), Some(&json!("one.png")));
        assert_eq!(out[2].content, "d\n\ne");
    }

    #[test]
    fn empty_conversation_is_an_error() {
        let err = ensure_alternating_roles(&[]).unwrap_err();
        assert_eq!(err.kind, clemhost_plugin_sdk::ErrorKind::InvalidRequest);
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
