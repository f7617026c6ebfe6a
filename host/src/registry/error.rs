//! What can go wrong reading a registry or resolving a model.

use crate::error::Error;

/// What can go wrong reading a registry or resolving a model.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A registry file could not be read.
    #[error("{path}: cannot read the model registry: {source}; check the path (or leave the --registry option out)")]
    Read {
        /// The file as given.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A registry file is not valid JSON.
    #[error("{path}:{line}:{column}: the model registry is not valid JSON: {message}; fix the file and run again")]
    Syntax {
        /// The file as given.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// serde_json's description.
        message: String,
    },
    /// The top level is neither an array nor an object.
    #[error("{path}: a model registry is a JSON array of entries (or one entry object), but this file holds {found}; wrap the entries in [ ... ]")]
    NotEntries {
        /// The file as given.
        path: String,
        /// What it holds instead.
        found: &'static str,
    },
    /// An array element is not an object.
    #[error("{location}: entry {index} of the model registry is {found}, not an object; every entry looks like {{\"model_name\": \"...\", \"backend\": \"...\"}}")]
    EntryNotObject {
        /// `path:line:column` of the element.
        location: String,
        /// 0-based index of the entry.
        index: usize,
        /// What it is instead.
        found: &'static str,
    },
    /// An entry has no `backend`.
    #[error("{location}: entry {index} ({name}) has no \"backend\"; add \"backend\": \"<plugin name>\" (e.g. \"openai\"), as every entry needs one")]
    MissingBackend {
        /// `path:line:column` of the entry.
        location: String,
        /// 0-based index of the entry.
        index: usize,
        /// Its `model_name`, or a placeholder.
        name: String,
    },
    /// `backend` or `model_name` is not a string.
    #[error("{location}: entry {index}: \"{field}\" is {found}, but it must be a string: {fix}")]
    FieldNotString {
        /// `path:line:column` of the entry.
        location: String,
        /// 0-based index of the entry.
        index: usize,
        /// The field.
        field: &'static str,
        /// What it is instead.
        found: &'static str,
        /// What to write instead.
        fix: &'static str,
    },
    /// `model_config` is there but not an object.
    #[error("{location}: entry {index}: \"model_config\" is {found}, but it must be an object of settings, e.g. \"model_config\": {{\"premade_chat_template\": true}}, or left out")]
    ModelConfigNotObject {
        /// `path:line:column` of the entry.
        location: String,
        /// 0-based index of the entry.
        index: usize,
        /// What it is instead.
        found: &'static str,
    },
    /// An entry has the name of a built-in player, which `-m` never
    /// resolves in the registry (and whose run folder is the built-in's).
    #[error("{location}: entry {index}: \"model_name\" \"{name}\" is the name of a built-in player (mock, programmatic, human, terminal), which -m NAME always selects, so this entry could never be played and its results would share the built-in's folder; rename the entry")]
    ReservedName {
        /// `path:line:column` of the entry.
        location: String,
        /// 0-based index of the entry.
        index: usize,
        /// The name.
        name: String,
    },
    /// No entry at all to resolve against.
    #[error("Model registry is empty. Load a model registry and try again. ({read})")]
    Empty {
        /// Which files were read.
        read: String,
    },
    /// No entry unifies with the query.
    #[error("No model spec unifies with model selector={selector}{hint}")]
    NoMatch {
        /// The query as compact JSON (as clemcore prints it).
        selector: String,
        /// Closest names, conflicting fields, files read (starts with a newline).
        hint: String,
    },
}

impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Self {
        Error::wrap(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn the_host_error_keeps_the_registry_error_and_its_io_source() {
        let e: Error = RegistryError::Read {
            path: "mine.json".into(),
            source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied"),
        }
        .into();
        assert!(e
            .message
            .starts_with("mine.json: cannot read the model registry: denied"));
        assert!(matches!(
            e.cause::<RegistryError>(),
            Some(RegistryError::Read { path, .. }) if path == "mine.json"
        ));
        assert_eq!(e.source().map(|s| s.to_string()).as_deref(), Some("denied"));
    }
}
