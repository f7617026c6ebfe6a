//! clemcore's `ensure_alternating_roles`, applied to a conversation before a
//! model sees it (by the local backends before the chat template, by the
//! remote backends before the request).
//!
//! 1. A **first** message that is `system` with empty content is dropped (a
//!    non-empty one, or a later empty one, stays).
//! 2. Runs of messages with the same role become one message whose content
//!    is the contents joined with `"\n\n"`; it keeps the first message's
//!    extra keys (an `image` on a later message of the run is lost, as in
//!    clemcore).
//!
//! ```
//! use clemhost_pyfacts::messages::ensure_alternating_roles;
//! use clemhost_plugin_sdk::Message;
//!
//! let merged = ensure_alternating_roles(&[
//!     Message::new("system", ""),
//!     Message::new("user", "Rules."),
//!     Message::new("user", "Your turn."),
//! ])?;
//! assert_eq!(merged, vec![Message::new("user", "Rules.\n\nYour turn.")]);
//! # Ok::<(), clemhost_pyfacts::messages::EmptyConversation>(())
//! ```

use clemhost_plugin_sdk::{BackendError, Message};

/// The conversation had no messages (clemcore fails with an `IndexError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the conversation has no messages; a model needs at least one message to answer")]
pub struct EmptyConversation;

impl From<EmptyConversation> for BackendError {
    fn from(e: EmptyConversation) -> Self {
        BackendError::invalid_request(e.to_string())
    }
}

/// The separator clemcore puts between merged message contents.
pub const MERGE_SEPARATOR: &str = "\n\n";

/// Applies clemcore's preprocessing (see the module docs) to a copy of
/// `messages`. An empty list is an error; a list holding only an empty
/// system message becomes empty, as in clemcore.
pub fn ensure_alternating_roles(messages: &[Message]) -> Result<Vec<Message>, EmptyConversation> {
    let first = messages.first().ok_or(EmptyConversation)?;
    let skip = usize::from(first.role == "system" && first.content.is_empty());
    let mut out: Vec<Message> = Vec::with_capacity(messages.len());
    for message in &messages[skip..] {
        match out.last_mut() {
            Some(prev) if prev.role == message.role => {
                prev.content.push_str(MERGE_SEPARATOR);
                prev.content.push_str(&message.content);
            }
            _ => out.push(message.clone()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clemhost_plugin_sdk::serde_json::json;

    fn with_image(role: &str, content: &str, image: &str) -> Message {
        let mut m = Message::new(role, content);
        m.extra.insert("image".into(), json!([image]));
        m
    }

    #[test]
    fn empty_list_is_an_error() {
        assert_eq!(ensure_alternating_roles(&[]), Err(EmptyConversation));
        let err: BackendError = EmptyConversation.into();
        assert_eq!(err.kind, clemhost_plugin_sdk::ErrorKind::InvalidRequest);
    }

    #[test]
    fn only_a_leading_empty_system_message_is_dropped() {
        let out =
            ensure_alternating_roles(&[Message::new("system", ""), Message::new("user", "hi")])
                .unwrap();
        assert_eq!(out, vec![Message::new("user", "hi")]);
        assert!(ensure_alternating_roles(&[Message::new("system", "")])
            .unwrap()
            .is_empty());
        let input = [
            Message::new("system", "Be brief."),
            Message::new("user", "hi"),
            Message::new("system", ""),
            Message::new("user", "again"),
        ];
        assert_eq!(ensure_alternating_roles(&input).unwrap(), input.to_vec());
    }

    #[test]
    fn same_role_runs_merge_and_keep_the_first_extra_keys() {
        let input = vec![
            with_image("user", "a", "one.png"),
            with_image("user", "b", "two.png"),
            Message::new("user", "c"),
            Message::new("assistant", "x"),
            Message::new("assistant", "y"),
        ];
        let copy = input.clone();
        let out = ensure_alternating_roles(&input).unwrap();
        assert_eq!(
            out,
            vec![
                with_image("user", "a\n\nb\n\nc", "one.png"),
                Message::new("assistant", "x\n\ny"),
            ]
        );
        assert_eq!(input, copy, "the input is not changed");
    }
}
