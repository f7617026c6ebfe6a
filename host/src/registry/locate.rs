//! Where things sit in a JSON text that already parsed: the line and column
//! of the n-th element of a top-level array, or of a top-level object's
//! member. `serde_json` reports positions only for syntax errors; these let
//! an error about one registry entry or key section point at it too.

/// A 1-based line and column (columns count characters, as editors do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// The position of byte offset `at` in `text`. Scans `text` up to `at`: for
/// many positions in one text use [`positions_of`].
pub fn position_of(text: &str, at: usize) -> Position {
    positions_of(text, &[at])[0]
}

/// The positions of several byte offsets in one pass over `text` (so that
/// locating every entry of a large registry stays linear). `offsets` must
/// be sorted; offsets past the end are clamped to it.
pub fn positions_of(text: &str, offsets: &[usize]) -> Vec<Position> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(offsets.len());
    let (mut i, mut line, mut column) = (0usize, 1usize, 1usize);
    for &at in offsets {
        let at = at.min(bytes.len());
        debug_assert!(at >= i, "offsets are sorted");
        while i < at {
            match bytes[i] {
                b'\n' => {
                    line += 1;
                    column = 1;
                }
                // A UTF-8 continuation byte is part of the previous character.
                b if b & 0xC0 == 0x80 => {}
                _ => column += 1,
            }
            i += 1;
        }
        out.push(Position { line, column });
    }
    out
}

/// The text without a leading UTF-8 byte order mark (some Windows editors
/// write one; JSON parsers refuse it as "expected value at 1:1").
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// A key that appears twice in one JSON object (serde_json keeps the last
/// silently; Python's `json` does the same).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuplicateKey {
    /// The key, decoded.
    pub key: String,
    /// Where it first appears.
    pub first: Position,
    /// Where it appears again (this value is the one that counts).
    pub again: Position,
}

/// The most duplicate keys of one file warned about one by one; the rest
/// are counted in one line (a file of 50,000 duplicates printed 50,000).
pub const MAX_DUPLICATE_KEY_WARNINGS: usize = 10;

/// Warns for the duplicate keys of `text` (JSON that parsed), naming
/// `label` (the file) and the lines of both. Registries, instances files and
/// key files share it: serde_json, like Python's `json`, keeps the later
/// value without a word.
pub fn warn_duplicate_keys(label: &str, text: &str) {
    for line in duplicate_key_warnings(label, text) {
        tracing::warn!("{line}");
    }
}

/// The lines [`warn_duplicate_keys`] writes: one per duplicate key, at most
/// [`MAX_DUPLICATE_KEY_WARNINGS`], then one counting the others.
pub fn duplicate_key_warnings(label: &str, text: &str) -> Vec<String> {
    let all = duplicate_keys(text);
    let mut lines: Vec<String> = all
        .iter()
        .take(MAX_DUPLICATE_KEY_WARNINGS)
        .map(|d| {
            format!(
                "{label}:{}: the key \"{}\" appears again (first at line {}, column {}); the later value is used, as in clemcore; remove one of them",
                d.again,
                crate::error::escape_for_terminal(&d.key),
                d.first.line,
                d.first.column
            )
        })
        .collect();
    if all.len() > MAX_DUPLICATE_KEY_WARNINGS {
        lines.push(format!(
            "{label}: ... and {} more duplicate keys (not listed)",
            all.len() - MAX_DUPLICATE_KEY_WARNINGS
        ));
    }
    lines
}

/// Every duplicate key of every object in `text`, in text order. Assumes
/// `text` is valid JSON (it is called after parsing succeeded); linear in
/// the text's length.
pub fn duplicate_keys(text: &str) -> Vec<DuplicateKey> {
    use std::collections::HashMap;
    // Per open container: `Some(keys seen)` for objects, `None` for arrays.
    let mut stack: Vec<Option<HashMap<String, usize>>> = Vec::new();
    let mut expect_key = false;
    let mut found: Vec<(String, usize, usize)> = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => {
                stack.push(Some(HashMap::new()));
                expect_key = true;
            }
            b'[' => {
                stack.push(None);
                expect_key = false;
            }
            b'}' | b']' => {
                stack.pop();
                expect_key = false;
            }
            b',' => expect_key = matches!(stack.last(), Some(Some(_))),
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if expect_key {
                    let raw = &text[start..=i.min(bytes.len() - 1)];
                    let key: String = serde_json::from_str(raw).unwrap_or_else(|_| raw.to_owned());
                    if let Some(Some(seen)) = stack.last_mut() {
                        if let Some(&first) = seen.get(&key) {
                            found.push((key, first, start));
                        } else {
                            seen.insert(key, start);
                        }
                    }
                    expect_key = false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    let mut offsets: Vec<usize> = found.iter().flat_map(|(_, a, b)| [*a, *b]).collect();
    offsets.sort_unstable();
    offsets.dedup();
    let positions = positions_of(text, &offsets);
    let at = |o: usize| positions[offsets.binary_search(&o).unwrap_or(0)];
    found
        .into_iter()
        .map(|(key, first, again)| DuplicateKey {
            key,
            first: at(first),
            again: at(again),
        })
        .collect()
}

/// Byte offsets where the values directly inside the top-level array or
/// object start (for an object: where each member's key starts). Empty when
/// the text is a scalar. Assumes `text` is valid JSON.
pub fn top_level_starts(text: &str) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut starts = Vec::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut expect_item = false;
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        if b.is_ascii_whitespace() {
            continue;
        }
        if depth == 1 && expect_item && b != b']' && b != b'}' {
            starts.push(i);
            expect_item = false;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth == 1 {
                    expect_item = true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expect_item = true,
            _ => {}
        }
    }
    starts
}

/// The positions of the values directly inside the top-level array (or of
/// the members of the top-level object), in one pass.
pub fn top_level_positions(text: &str) -> Vec<Position> {
    positions_of(text, &top_level_starts(text))
}

/// The position of the `index`-th element of the top-level array (or the
/// `index`-th member of the top-level object), if there is one.
pub fn element_position(text: &str, index: usize) -> Option<Position> {
    top_level_starts(text)
        .get(index)
        .map(|&at| position_of(text, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_key_warnings_are_capped() {
        let text = format!("{{{}\"k\": 0}}", "\"k\": 0, ".repeat(50_000));
        let lines = duplicate_key_warnings("r.json", &text);
        assert_eq!(lines.len(), MAX_DUPLICATE_KEY_WARNINGS + 1);
        assert!(lines[0].starts_with("r.json:1:"), "{}", lines[0]);
        assert_eq!(
            lines[MAX_DUPLICATE_KEY_WARNINGS],
            "r.json: ... and 49990 more duplicate keys (not listed)"
        );
        assert_eq!(
            duplicate_key_warnings("r.json", r#"{"a": 1, "a": 2}"#).len(),
            1
        );
    }

    #[test]
    fn finds_array_elements() {
        let text = "[\n  {\"a\": \"x,]\"},\n  {\"b\": [1, 2]},\n\t3\n]";
        assert_eq!(
            element_position(text, 0),
            Some(Position { line: 2, column: 3 })
        );
        assert_eq!(
            element_position(text, 1),
            Some(Position { line: 3, column: 3 })
        );
        assert_eq!(
            element_position(text, 2),
            Some(Position { line: 4, column: 2 })
        );
        assert_eq!(element_position(text, 3), None);
    }

    #[test]
    fn finds_object_members() {
        let text = "{\"openai\": {\"api_key\": \"\\\"}\"},\n \"mistral\": 3}";
        assert_eq!(
            element_position(text, 1),
            Some(Position { line: 2, column: 2 })
        );
    }

    #[test]
    fn empty_containers_and_scalars_have_no_elements() {
        assert!(top_level_starts("[]").is_empty());
        assert!(top_level_starts(" { } ").is_empty());
        assert!(top_level_starts("12").is_empty());
    }

    #[test]
    fn positions_count_characters_and_lines_in_one_pass() {
        let text = "ab\nçé x\n\ny";
        let got = positions_of(text, &[0, 3, 8, 9, 10, 11, 99]);
        let want = [(1, 1), (2, 1), (2, 4), (2, 5), (3, 1), (4, 1), (4, 2)];
        let got: Vec<(usize, usize)> = got.iter().map(|p| (p.line, p.column)).collect();
        assert_eq!(got, want);
        assert_eq!(position_of(text, 8), Position { line: 2, column: 4 });
    }

    #[test]
    fn duplicate_keys_are_found_with_both_positions() {
        let text = "{\"a\": 1,\n \"b\": {\"a\": [\"a\", {\"x\": 1, \"x\": 2}]},\n \"\\u0061\": 3}";
        let d = duplicate_keys(text);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].key, "x");
        assert_eq!((d[0].first.line, d[1].key.as_str()), (2, "a"));
        assert_eq!(
            (d[1].first, d[1].again),
            (
                Position { line: 1, column: 2 },
                Position { line: 3, column: 2 }
            )
        );
        assert!(
            duplicate_keys("[{\"a\": 1}, {\"a\": 2}]").is_empty(),
            "keys of different objects"
        );
        assert!(
            duplicate_keys("{\"a\": \"a\", \"b\": \"a\"}").is_empty(),
            "values are not keys"
        );
    }

    #[test]
    fn a_bom_is_stripped() {
        assert_eq!(strip_bom("\u{feff}[1]"), "[1]");
        assert_eq!(strip_bom("[1]"), "[1]");
    }
}
