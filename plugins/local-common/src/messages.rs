//! clemcore's message preprocessing (`ensure_alternating_roles`), applied
//! before a conversation is rendered with a chat template.
//!
//! Games may send two messages of the same role in a row (a game master's
//! context after its own initial prompt, for example) and may start with an
//! empty system message. Many chat templates refuse both, so clemcore
//! rewrites the conversation first:
//!
//! 1. a **first** message that is `system` with empty content is dropped
//!    (a non-empty one, or a later empty one, stays);
//! 2. runs of messages with the same role become one message whose content
//!    is the contents joined with `"\n\n"`; it keeps the first message's
//!    extra keys (an `image` on a later message of the run is lost).
//!
//! ```
//! use clemhost_local_common::messages::ensure_alternating_roles;
//! use clemhost_plugin_sdk::Message;
//!
//! let merged = ensure_alternating_roles(&[
//!     Message::new("system", ""),
//!     Message::new("user", "Rules."),
//!     Message::new("user", "Your turn."),
//! ])?;
//! assert_eq!(merged, vec![Message::new("user", "Rules.\n\nYour turn.")]);
//! # Ok::<(), clemhost_local_common::messages::EmptyConversation>(())
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
                log::debug!(
                    "merging two consecutive {:?} messages into one",
                    message.role
                );
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
    use serde_json::json;

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
    fn first_empty_system_message_is_dropped() {
        let out =
            ensure_alternating_roles(&[Message::new("system", ""), Message::new("user", "hi")])
                .unwrap();
        assert_eq!(out, vec![Message::new("user", "hi")]);
    }

    #[test]
    fn only_an_empty_system_message_leaves_nothing() {
        let out = ensure_alternating_roles(&[Message::new("system", "")]).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn non_empty_and_later_system_messages_stay() {
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
        let out = ensure_alternating_roles(&[
            with_image("user", "a", "one.png"),
            with_image("user", "b", "two.png"),
            Message::new("user", "c"),
            Message::new("assistant", "x"),
            Message::new("assistant", "y"),
        ])
        .unwrap();
        assert_eq!(
            out,
            vec![
                with_image("user", "a\n\nb\n\nc", "one.png"),
                Message::new("assistant", "x\n\ny"),
            ]
        );
    }

    #[test]
    fn input_is_not_changed() {
        let input = vec![Message::new("user", "a"), Message::new("user", "b")];
        let copy = input.clone();
        let _ = ensure_alternating_roles(&input).unwrap();
        assert_eq!(input, copy);
    }
}
