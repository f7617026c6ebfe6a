//! transformers' `tojson` template filter, which is Python's `json.dumps`
//! (its string and float spelling come from `clemhost-pyfacts`).
//!
//! transformers replaces jinja2's HTML-safe `tojson` with
//! `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
//! sort_keys=False)`, taking those four as arguments in that order. This
//! module writes JSON the same way: no escaping of `<`, `>`, `&`, `'`;
//! `", "` / `": "` separators (`","` when indenting); floats as Python
//! prints them (`1.0`, `1e+20`, `NaN`, `Infinity`).

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Error, ErrorKind};
use std::fmt::Write as _;

/// How `json.dumps` was asked to write.
struct JsonStyle {
    ensure_ascii: bool,
    /// `None`: one line. `Some(unit)`: a newline and `unit` per level.
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

/// The `tojson` filter: `value | tojson(ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`, positionally or by keyword.
pub fn tojson_filter(
    value: &Value,
    ensure_ascii: Option<Value>,
    indent: Option<Value>,
    separators: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let ensure_ascii = match ensure_ascii {
        Some(v) => v.is_true(),
        None => kwargs
            .get::<Option<Value>>("ensure_ascii")?
            .is_some_and(|v| v.is_true()),
    };
    let indent = match indent {
        Some(v) => Some(v),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let separators = match separators {
        Some(v) => Some(v),
        None => kwargs.get::<Option<Value>>("separators")?,
    };
    let sort_keys = kwargs
        .get::<Option<Value>>("sort_keys")?
        .is_some_and(|v| v.is_true());
    kwargs.assert_all_used()?;

    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(indent_unit(&v)?),
    };
    let (item_sep, key_sep) = match separators {
        Some(v) if !v.is_none() => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match parts.as_slice() {
                [a, b] => match (a.as_str(), b.as_str()) {
                    (Some(a), Some(b)) => (a.to_owned(), b.to_owned()),
                    _ => return Err(type_error("tojson: separators must be two strings")),
                },
                _ => {
                    return Err(type_error(
                        "tojson: separators must be an (item_separator, key_separator) pair",
                    ))
                }
            }
        }
        _ => {
            let item = if indent.is_some() { "," } else { ", " };
            (item.to_owned(), ": ".to_owned())
        }
    };
    let style = JsonStyle {
        ensure_ascii,
        indent,
        item_sep,
        key_sep,
        sort_keys,
    };
    let mut out = String::new();
    write_value(&mut out, value, &style, 0)?;
    Ok(Value::from(out))
}

/// The longest indent unit `tojson` takes, in bytes. One filter call is a
/// single step of the render's fuel, so `tojson(indent=1000000000)` would
/// otherwise build gigabytes (one unit per level on every line) before the
/// prompt's size cap could refuse it; real templates indent by 2 or 4.
const MAX_INDENT: usize = 256;

/// Python's rule for `indent`: an int is that many spaces (a bool counts as
/// an int), a string is used as is; longer than [`MAX_INDENT`] is an error.
fn indent_unit(v: &Value) -> Result<String, Error> {
    let too_long = || type_error(&format!("tojson: indent is longer than {MAX_INDENT}"));
    if let Some(s) = v.as_str() {
        if s.len() > MAX_INDENT {
            return Err(too_long());
        }
        return Ok(s.to_owned());
    }
    if v.kind() == ValueKind::Bool {
        return Ok(if v.is_true() {
            " ".into()
        } else {
            String::new()
        });
    }
    match v.as_i64() {
        Some(n) => match usize::try_from(n).unwrap_or(0) {
            n if n > MAX_INDENT => Err(too_long()),
            n => Ok(" ".repeat(n)),
        },
        None => Err(type_error("tojson: indent must be an integer or a string")),
    }
}

fn type_error(msg: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.to_owned())
}

fn newline(out: &mut String, style: &JsonStyle, level: usize) {
    if let Some(unit) = &style.indent {
        out.push('\n');
        for _ in 0..level {
            out.push_str(unit);
        }
    }
}

fn write_value(
    out: &mut String,
    value: &Value,
    style: &JsonStyle,
    level: usize,
) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined => Err(type_error(
            "tojson: an undefined value is not JSON serializable",
        )),
        ValueKind::None => {
            out.push_str("null");
            Ok(())
        }
        ValueKind::Bool => {
            out.push_str(if value.is_true() { "true" } else { "false" });
            Ok(())
        }
        ValueKind::Number => {
            write_number(out, value);
            Ok(())
        }
        ValueKind::String => {
            write_string(out, value.as_str().unwrap_or_default(), style.ensure_ascii);
            Ok(())
        }
        ValueKind::Seq | ValueKind::Iterable => {
            // Item by item: a lazy repeat (`[1] * 100000000`) is never
            // collected, and the text stops at the cap.
            let mut items = value.try_iter()?.peekable();
            if items.peek().is_none() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.enumerate() {
                if out.len() > crate::template::MAX_FILTER_TEXT_BYTES {
                    return Err(crate::template::too_large("tojson"));
                }
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                newline(out, style, level + 1);
                write_value(out, &item, style, level + 1)?;
            }
            newline(out, style, level);
            out.push(']');
            Ok(())
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((key_text(&key)?, item));
            }
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            if entries.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if out.len() > crate::template::MAX_FILTER_TEXT_BYTES {
                    return Err(crate::template::too_large("tojson"));
                }
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                newline(out, style, level + 1);
                write_string(out, key, style.ensure_ascii);
                out.push_str(&style.key_sep);
                write_value(out, item, style, level + 1)?;
            }
            newline(out, style, level);
            out.push('}');
            Ok(())
        }
        other => Err(type_error(&format!(
            "tojson: a value of type {other} is not JSON serializable"
        ))),
    }
}

/// Python turns non-string keys into strings: `true`, `null`, `1`, `1.5`.
fn key_text(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_owned()),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.into()),
        ValueKind::None => Ok("null".into()),
        ValueKind::Number => {
            let mut s = String::new();
            write_number(&mut s, key);
            Ok(s)
        }
        other => Err(type_error(&format!(
            "tojson: keys must be str, int, float, bool or None, not {other}"
        ))),
    }
}

fn write_number(out: &mut String, value: &Value) {
    if value.is_integer() {
        let _ = write!(out, "{value}");
    } else {
        match f64::try_from(value.clone()) {
            Ok(f) => out.push_str(&clemhost_pyfacts::float::json(f)),
            Err(_) => {
                let _ = write!(out, "{value}");
            }
        }
    }
}

fn write_string(out: &mut String, s: &str, ensure_ascii: bool) {
    clemhost_pyfacts::json::write_string(out, s, ensure_ascii);
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::Environment;

    fn render(src: &str, ctx: serde_json::Value) -> String {
        let mut env = Environment::new();
        env.add_filter("tojson", tojson_filter);
        env.render_str(src, minijinja::value::Serde(ctx))
            .expect("renders")
    }

    #[test]
    fn a_huge_indent_is_an_error_not_gigabytes() {
        let mut env = Environment::new();
        env.add_filter("tojson", tojson_filter);
        let ctx = serde_json::json!({"x": [[1, 2], {"a": [3]}]});
        let ctx = || minijinja::value::Serde(ctx.clone());
        for src in [
            "{{ x | tojson(indent=1000000000) }}",
            "{{ x | tojson(indent=' ' * 100000) }}",
        ] {
            let err = env.render_str(src, ctx()).expect_err(src).to_string();
            assert!(err.contains("indent is longer than 256"), "{src}: {err}");
        }
        assert!(env
            .render_str("{{ x | tojson(indent=256) }}", ctx())
            .is_ok());
    }

    #[test]
    fn tojson_writes_like_json_dumps() {
        let ctx = serde_json::json!({"x": {"z": 1, "a": [1.5, null, true, "<b> & 'c' é"]}});
        assert_eq!(
            render("{{ x | tojson }}", ctx.clone()),
            r#"{"z": 1, "a": [1.5, null, true, "<b> & 'c' é"]}"#
        );
        assert_eq!(
            render(
                "{{ x | tojson(ensure_ascii=true, sort_keys=true) }}",
                ctx.clone()
            ),
            r#"{"a": [1.5, null, true, "<b> & 'c' \u00e9"], "z": 1}"#
        );
        assert_eq!(
            render("{{ x | tojson(indent=2) }}", ctx.clone()),
            "{\n  \"z\": 1,\n  \"a\": [\n    1.5,\n    null,\n    true,\n    \"<b> & 'c' é\"\n  ]\n}"
        );
        assert_eq!(
            render("{{ x | tojson(separators=[',', ':']) }}", ctx),
            r#"{"z":1,"a":[1.5,null,true,"<b> & 'c' é"]}"#
        );
        assert_eq!(
            render("{{ [] | tojson(indent=2) }}", serde_json::json!({})),
            "[]"
        );
        assert_eq!(
            render("{{ 'a\"\\\n\u{1}' | tojson }}", serde_json::json!({})),
            r#""a\"\\\n\u0001""#
        );
        assert_eq!(
            render("{{ '😀' | tojson(true) }}", serde_json::json!({})),
            r#""\ud83d\ude00""#
        );
    }
}
