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

/// The position of byte offset `at` in `text`.
pub fn position_of(text: &str, at: usize) -> Position {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Position {
        line,
        column: before[line_start..].chars().count() + 1,
    }
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
}
