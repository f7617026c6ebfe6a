//! What an unknown model's error suggests: the closest registered names, or
//! the fields where same-named entries differ.

use super::{unify, Registry, RegistryEntry};
use serde_json::{Map, Value};

impl Registry {
    /// Up to `max` registered names closest to `name` (closest first).
    pub fn closest_names(&self, name: &str, max: usize) -> Vec<&str> {
        let wanted = name.to_lowercase();
        let mut scored: Vec<(usize, usize, usize, &str)> = self
            .model_names()
            .into_iter()
            .enumerate()
            .filter_map(|(order, candidate)| {
                let c = candidate.to_lowercase();
                // A name is also close when its start is (gpt-5 ~ gpt-4o-mini).
                let start: String = c.chars().take(wanted.chars().count()).collect();
                let distance = edit_distance(&wanted, &c).min(edit_distance(&wanted, &start) + 1);
                let near = distance <= (wanted.chars().count() / 3).max(2);
                let contains =
                    !wanted.trim().is_empty() && (c.contains(wanted.trim()) || wanted.contains(&c));
                let whole = edit_distance(&wanted, &c);
                (near || contains).then_some((distance, whole, order, candidate))
            })
            .collect();
        scored.sort();
        scored.into_iter().take(max).map(|(_, _, _, n)| n).collect()
    }

    pub(super) fn no_match_hint(&self, query: &Map<String, Value>) -> String {
        let mut hint = String::new();
        let name = query.get("model_name").and_then(Value::as_str);
        if let Some(name) = name {
            let same_name: Vec<&RegistryEntry> = self
                .entries
                .iter()
                .filter(|e| e.model_name() == name)
                .collect();
            if same_name.is_empty() {
                let close = self.closest_names(name, 5);
                if close.is_empty() {
                    hint.push_str(&format!(
                        "\n  no registered model is named '{name}' or anything close; `clemhost models list` shows them all"
                    ));
                } else {
                    hint.push_str(&format!(
                        "\n  no registered model is named '{name}'; closest registered names: {}",
                        close.join(", ")
                    ));
                }
            } else {
                for entry in same_name.iter().take(3) {
                    let fields = conflicting_fields(query, &entry.spec);
                    hint.push_str(&format!(
                        "\n  '{name}' at {} (backend {}) differs in: {}",
                        entry.location(),
                        entry.backend(),
                        fields.join(", ")
                    ));
                }
            }
        }
        hint.push_str(&format!("\n  {}", self.files_read()));
        hint
    }
}

/// The top-level fields where `query` and `entry` disagree.
fn conflicting_fields(query: &Map<String, Value>, entry: &Map<String, Value>) -> Vec<String> {
    query
        .iter()
        .filter(|(k, v)| entry.get(*k).is_some_and(|e| unify::unify(v, e).is_none()))
        .map(|(k, v)| {
            let theirs = entry
                .get(k)
                .map(clemhost_pyfacts::json::compact)
                .unwrap_or_default();
            format!(
                "{k} (asked {}, registered {theirs})",
                clemhost_pyfacts::json::compact(v)
            )
        })
        .collect()
}

/// Levenshtein distance over characters.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}
