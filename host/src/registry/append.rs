//! Adding an entry to a registry file (`check-hf --write-registry`).

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// Appends an entry to a registry file, never replacing an existing one.
pub fn append_entry(path: &Path, entry: &Map<String, Value>) -> Result<()> {
    let mut entries: Vec<Value> = match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Vec::new(),
        Ok(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(a)) => a,
            Ok(Value::Object(o)) => vec![Value::Object(o)],
            Ok(_) => {
                return Err(Error::msg(format!(
                    "{}: a registry must be a JSON array of entries; nothing was written",
                    path.display()
                )))
            }
            Err(e) => return Err(crate::error::json_error(path, &e, "the registry")),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::msg(format!("cannot read {}: {e}", path.display()))),
    };
    let name = entry.get("model_name").cloned().unwrap_or(Value::Null);
    if entries.iter().any(|e| e.get("model_name") == Some(&name)) {
        return Err(Error::msg(format!(
            "{} already has an entry named {name}; nothing was written (pick another name with --model-name)",
            path.display()
        )));
    }
    entries.push(Value::Object(entry.clone()));
    let text = serde_json::to_string_pretty(&entries).expect("JSON values serialise") + "\n";
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    std::fs::write(&tmp, text)
        .map_err(|e| Error::msg(format!("cannot write {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| Error::msg(format!("cannot replace {}: {e}", path.display())))?;
    Ok(())
}
