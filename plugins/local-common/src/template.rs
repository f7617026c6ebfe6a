//! Chat templates rendered the way transformers renders them.
//!
//! HuggingFace models ship their prompt format as a Jinja2 template
//! (`tokenizer_config.json`'s `chat_template`, `chat_template.jinja`, or a
//! GGUF file's `tokenizer.chat_template`). transformers renders it with
//! jinja2 in a sandbox configured in a particular way; [`ChatTemplate`]
//! reproduces that configuration on minijinja so the prompt is the same byte
//! for byte:
//!
//! - `trim_blocks` and `lstrip_blocks` on, `keep_trailing_newline` off;
//! - `{% break %}` / `{% continue %}`, `loop.previtem`, insertion-ordered maps;
//! - the globals transformers adds: `raise_exception(msg)` and
//!   `strftime_now(fmt)` (the clock can be pinned, see [`RenderInput::now`]);
//! - Python string/dict/list methods (`.strip()`, `.get()`, `.startswith()`,
//!   ... and `.rsplit()`), through minijinja-contrib's pycompat callback;
//! - transformers' own `tojson` filter (`json.dumps` with
//!   `ensure_ascii=False`: no HTML escaping, Python float text), jinja2's
//!   `iterable` test (`none is iterable` is false), and floats printed or
//!   passed through `| string` in Python's form (`1e+20`);
//! - the variables `apply_chat_template` passes: `messages`, `tools = none`,
//!   `documents = none`, `add_generation_prompt`, every special token the
//!   tokenizer has, and any extra keyword arguments.
//!
//! ```
//! use clemhost_local_common::template::{ChatTemplate, RenderInput};
//! use serde_json::json;
//!
//! let template = ChatTemplate::new(
//!     "{% for m in messages %}<|{{ m.role }}|>{{ m.content | trim }}\n{% endfor %}\
//!      {% if add_generation_prompt %}<|assistant|>{% endif %}",
//! )?;
//! let mut input = RenderInput::new(vec![json!({"role": "user", "content": " Hi "})]);
//! input.add_generation_prompt = true;
//! assert_eq!(template.render(&input)?, "<|user|>Hi\n<|assistant|>");
//! # Ok::<(), clemhost_local_common::template::TemplateError>(())
//! ```

use chrono::NaiveDateTime;
use clemhost_plugin_sdk::Message;
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Value as JValue, ValueKind};
use minijinja::{Environment, Error as JError, ErrorKind as JErrorKind, State};
use serde_json::{Map, Value};
use std::cell::Cell;
use std::fmt::Write as _;

/// The name the template is registered under inside its environment (no file
/// extension, so minijinja never switches on HTML auto-escaping).
const TEMPLATE_NAME: &str = "chat_template";

/// How much work one rendering may do, in minijinja's "fuel": one per
/// instruction, and one per 64 bytes of every string or list the template
/// builds (by `*`, `~`, `+`, filters, ...) or writes out. Real chat templates
/// over a long conversation take a few ten thousand. A loop nested beyond
/// reason stops here in well under a second, and since minijinja checks a
/// `*` repeat or a concatenation against the fuel left before it allocates,
/// no single value of more than 64 MB is ever built (`'x' * 100000000` is
/// refused before its 100 MB exist).
pub const RENDER_FUEL: u64 = 1_000_000;

/// The bytes the [`RENDER_FUEL`] pays for when spent on data alone.
pub const RENDER_FUEL_BYTES: u64 = RENDER_FUEL * 64;

/// The largest prompt a rendering may produce (16 MiB, far above any
/// model's context).
pub const MAX_RENDERED_BYTES: usize = 16 << 20;

/// The largest text one `string` or `tojson` call may make of a list or map
/// (2 MiB; a real template serialises a few tool schemas or messages). Those
/// filters count as one step for the fuel and are charged for their result
/// only once it exists, so a nested repeat such as `[[1] * 20000] * 20000`
/// (a lazy list of 400 million items) would build gigabytes before the fuel
/// could refuse it.
pub const MAX_FILTER_TEXT_BYTES: usize = 2 << 20;

/// The rendering's output, refusing to grow beyond [`MAX_RENDERED_BYTES`].
#[derive(Default)]
struct CappedOutput {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("the rendered prompt is too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Why a template could not be compiled or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum TemplateError {
    /// The template called `raise_exception(message)`: it refuses the
    /// conversation (jinja2's `TemplateError` in transformers). The message is
    /// the template's own text, unchanged.
    #[error("{0}")]
    Raised(String),
    /// The template source is not valid Jinja.
    #[error("chat template syntax error: {0}")]
    Syntax(String),
    /// Rendering failed inside the engine (undefined variable called, bad
    /// filter argument, ...): jinja2 would have raised `UndefinedError` or
    /// `TypeError` here.
    #[error("chat template failed to render: {0}")]
    Render(String),
    /// The rendering went past a limit ([`RENDER_FUEL`],
    /// [`MAX_RENDERED_BYTES`]).
    #[error("chat template stopped: {0}")]
    Limit(String),
    /// The input cannot be rendered at all (empty conversation,
    /// `continue_final_message` with nothing to continue, ...).
    #[error("{0}")]
    Input(String),
}

impl TemplateError {
    /// The template's own message when it raised, `None` for other errors.
    pub fn raised_message(&self) -> Option<&str> {
        match self {
            TemplateError::Raised(m) => Some(m),
            _ => None,
        }
    }
}

/// What one rendering gets: the conversation and the variables transformers'
/// `apply_chat_template` passes next to it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenderInput {
    /// The conversation: objects with `role`, `content` and any extra keys.
    /// Keys whose value is `null` are dropped before rendering, as
    /// transformers does.
    pub messages: Vec<Value>,
    /// Ask the template to open an assistant turn at the end.
    pub add_generation_prompt: bool,
    /// Cut the output right after the last message's content so the model
    /// continues that message (transformers' `continue_final_message`).
    /// Cannot be combined with `add_generation_prompt`.
    pub continue_final_message: bool,
    /// `bos_token`; `None` leaves the variable undefined (as transformers does
    /// for a tokenizer without one), which is not the same as an empty string.
    pub bos_token: Option<String>,
    /// `eos_token`; `None` leaves the variable undefined.
    pub eos_token: Option<String>,
    /// Further special-token variables (`pad_token`, `unk_token`, ...).
    /// A `bos_token`/`eos_token` here is replaced by the field above when
    /// that field is set.
    pub special_tokens: Map<String, Value>,
    /// Extra template variables (registry `chat_template_kwargs`, such as
    /// `enable_thinking`); they override everything else except `messages`.
    pub extra: Map<String, Value>,
    /// The instant `strftime_now()` reports (naive local time); `None` reads
    /// the local clock at render time.
    pub now: Option<NaiveDateTime>,
}

impl RenderInput {
    /// Input with these messages and every other setting at its default
    /// (no generation prompt, no special tokens, the real clock).
    pub fn new(messages: Vec<Value>) -> Self {
        RenderInput {
            messages,
            ..RenderInput::default()
        }
    }

    /// Input from SDK messages (their extra keys, such as `image`, included).
    pub fn from_messages(messages: &[Message]) -> Self {
        Self::new(messages_to_values(messages))
    }
}

/// Converts SDK messages to the JSON objects a template sees.
pub fn messages_to_values(messages: &[Message]) -> Vec<Value> {
    messages
        .iter()
        .map(|m| {
            let mut obj = Map::new();
            obj.insert("role".into(), Value::String(m.role.clone()));
            obj.insert("content".into(), Value::String(m.content.clone()));
            for (k, v) in &m.extra {
                obj.insert(k.clone(), v.clone());
            }
            Value::Object(obj)
        })
        .collect()
}

/// A compiled chat template, ready to render any number of conversations.
///
/// Rendering takes `&self`; one `ChatTemplate` may be shared across threads.
/// Inside clemhost it renders in a worker process with a memory cap and a
/// deadline (see [`crate::template_sandbox`]).
pub struct ChatTemplate {
    env: Environment<'static>,
    /// The source as given, for the worker process to compile.
    source: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

thread_local! {
    /// The instant `strftime_now` reports during the current render on this
    /// thread (`None`: read the local clock).
    static PINNED_NOW: Cell<Option<NaiveDateTime>> = const { Cell::new(None) };
}

/// Sets [`PINNED_NOW`] for the lifetime of the guard.
struct PinnedNow(Option<NaiveDateTime>);

impl PinnedNow {
    fn set(now: Option<NaiveDateTime>) -> Self {
        PinnedNow(PINNED_NOW.with(|c| c.replace(now)))
    }
}

impl Drop for PinnedNow {
    fn drop(&mut self) {
        PINNED_NOW.with(|c| c.set(self.0));
    }
}

/// Marks an error of a filter whose result would pass [`MAX_FILTER_TEXT_BYTES`],
/// so it is reported as a limit rather than as a template bug.
#[derive(Debug)]
struct TooLarge;

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "larger than {} MiB", MAX_FILTER_TEXT_BYTES >> 20)
    }
}

impl std::error::Error for TooLarge {}

/// The error of a filter (`what`) whose text would pass [`MAX_FILTER_TEXT_BYTES`].
pub(crate) fn too_large(what: &str) -> JError {
    JError::new(
        JErrorKind::InvalidOperation,
        format!(
            "{what} would make a text larger than {} MiB",
            MAX_FILTER_TEXT_BYTES >> 20
        ),
    )
    .with_source(TooLarge)
}

/// A text that refuses to grow beyond [`MAX_FILTER_TEXT_BYTES`].
#[derive(Default)]
struct CappedText {
    text: String,
    overflowed: bool,
}

impl std::fmt::Write for CappedText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.text.len() + s.len() > MAX_FILTER_TEXT_BYTES {
            self.overflowed = true;
            return Err(std::fmt::Error);
        }
        self.text.push_str(s);
        Ok(())
    }
}

/// Marks an error raised by the template's `raise_exception`, so it can be
/// told apart from engine errors of the same minijinja kind.
#[derive(Debug)]
struct RaisedByTemplate;

impl std::fmt::Display for RaisedByTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("raised by the chat template")
    }
}

impl std::error::Error for RaisedByTemplate {}

impl ChatTemplate {
    /// Compiles a template source. Fails with [`TemplateError::Syntax`] when
    /// the source is not valid Jinja.
    pub fn new(source: &str) -> Result<ChatTemplate, TemplateError> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(false)
            .build()
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(python_methods);
        env.set_formatter(python_formatter);
        env.set_fuel(Some(RENDER_FUEL));
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", crate::pyjson::tojson_filter);
        env.add_filter("string", python_string);
        env.add_test("iterable", is_iterable);
        env.add_template_owned(TEMPLATE_NAME, strip_generation_tags(source))
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        Ok(ChatTemplate {
            env,
            source: source.to_owned(),
        })
    }

    /// Renders one conversation.
    ///
    /// Errors: [`TemplateError::Raised`] when the template calls
    /// `raise_exception`, [`TemplateError::Render`] when the engine fails,
    /// [`TemplateError::Input`] for an empty conversation,
    /// [`TemplateError::Limit`] past the fuel, the output cap, or the worker
    /// process's memory cap or deadline.
    pub fn render(&self, input: &RenderInput) -> Result<String, TemplateError> {
        check_input(input)?;
        #[cfg(unix)]
        if let Some(exe) = crate::template_sandbox::worker_executable() {
            return crate::template_sandbox::render(&exe, &self.source, input);
        }
        self.render_here(input)
    }

    /// Renders in the calling process, limited by the fuel and the output
    /// cap only (what the worker process itself runs).
    pub(crate) fn render_here(&self, input: &RenderInput) -> Result<String, TemplateError> {
        check_input(input)?;
        let messages: Vec<Value> = input.messages.iter().map(normalize_message).collect();

        let mut ctx = Map::new();
        ctx.insert("messages".into(), Value::Array(messages));
        ctx.insert("tools".into(), Value::Null);
        ctx.insert("documents".into(), Value::Null);
        ctx.insert(
            "add_generation_prompt".into(),
            Value::Bool(input.add_generation_prompt),
        );
        for (k, v) in &input.special_tokens {
            ctx.insert(k.clone(), v.clone());
        }
        if let Some(bos) = &input.bos_token {
            ctx.insert("bos_token".into(), Value::String(bos.clone()));
        }
        if let Some(eos) = &input.eos_token {
            ctx.insert("eos_token".into(), Value::String(eos.clone()));
        }
        for (k, v) in &input.extra {
            if k != "messages" {
                ctx.insert(k.clone(), v.clone());
            }
        }

        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        let _pin = PinnedNow::set(input.now);
        let mut out = CappedOutput::default();
        template
            .render_captured_to(JValue::from(minijinja::value::Serde(&ctx)), &mut out)
            .map_err(|e| match e.kind() {
                _ if out.overflowed => TemplateError::Limit(format!(
                    "the prompt would be larger than {} MiB; the template is not usable as it is",
                    MAX_RENDERED_BYTES >> 20
                )),
                JErrorKind::OutOfFuel => TemplateError::Limit(format!(
                    "rendering took more than {RENDER_FUEL} template steps, or built more than {} MB of text and lists (a loop that does not end in reasonable time, or values repeated beyond reason)",
                    RENDER_FUEL_BYTES / 1_000_000
                )),
                _ => classify(e),
            })?;
        let rendered = String::from_utf8(out.bytes)
            .map_err(|e| TemplateError::Render(format!("the output is not UTF-8: {e}")))?;
        if input.continue_final_message {
            let messages = match ctx.get("messages") {
                Some(Value::Array(m)) => m.as_slice(),
                _ => &[],
            };
            continue_final_message(rendered, messages)
        } else {
            Ok(rendered)
        }
    }
}

/// The input errors every rendering reports before it starts.
fn check_input(input: &RenderInput) -> Result<(), TemplateError> {
    if input.messages.is_empty() {
        return Err(TemplateError::Input(
            "the conversation is empty: a chat template needs at least one message".into(),
        ));
    }
    if input.continue_final_message && input.add_generation_prompt {
        return Err(TemplateError::Input(
            "continue_final_message and add_generation_prompt cannot both be set: \
             the first continues the last message, the second opens a new one"
                .into(),
        ));
    }
    Ok(())
}

/// Drops `null`-valued keys and aliases the reasoning fields, as
/// transformers normalises messages before rendering.
fn normalize_message(message: &Value) -> Value {
    let Value::Object(obj) = message else {
        return message.clone();
    };
    let mut out: Map<String, Value> = obj
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let reasoning = ["reasoning_content", "thinking", "reasoning"]
        .iter()
        .find_map(|k| out.get(*k).cloned());
    if let Some(r) = reasoning {
        out.insert("thinking".into(), r.clone());
        out.insert("reasoning_content".into(), r);
    }
    Value::Object(out)
}

/// transformers' `continue_final_message`: cut the rendering right after the
/// last message's text.
fn continue_final_message(rendered: String, messages: &[Value]) -> Result<String, TemplateError> {
    let last = messages.last().and_then(|m| m.get("content"));
    let text = match last {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(blocks)) => blocks
            .iter()
            .rev()
            .find_map(|b| b.get("text").and_then(Value::as_str))
            .map(str::to_owned)
            .ok_or_else(|| {
                TemplateError::Input(
                    "continue_final_message is set but the final message has no text block to continue"
                        .into(),
                )
            })?,
        _ => {
            return Err(TemplateError::Input(
                "continue_final_message is set but the final message has no text content".into(),
            ))
        }
    };
    let stripped = crate::pystr::strip(&text);
    let Some(pos) = rendered.rfind(stripped) else {
        return Err(TemplateError::Input(
            "continue_final_message is set but the final message does not appear in the rendered \
             chat; the template may change message text"
                .into(),
        ));
    };
    let lstripped = crate::pystr::lstrip(&text);
    let end = if rendered[pos..].starts_with(&text) && text.len() == lstripped.len() {
        pos + lstripped.len()
    } else {
        pos + stripped.len()
    };
    let mut rendered = rendered;
    rendered.truncate(end);
    Ok(rendered)
}

/// Replaces transformers' `{% generation %}` / `{% endgeneration %}` tags
/// (which mark assistant tokens for training masks and render their body
/// unchanged) by an always-true `if` block with the same whitespace control.
fn strip_generation_tags(source: &str) -> String {
    static TAG: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = TAG.get_or_init(|| {
        regex::Regex::new(r"\{%(-?)\s*(end)?generation\s*(-?)%\}")
            .expect("the generation-tag pattern is a valid regex")
    });
    if !source.contains("generation") {
        return source.to_owned();
    }
    re.replace_all(source, |c: &regex::Captures<'_>| {
        let body = if c.get(2).is_some() {
            "endif"
        } else {
            "if true"
        };
        format!("{{%{} {} {}%}}", &c[1], body, &c[3])
    })
    .into_owned()
}

/// Maps a minijinja error to a [`TemplateError`].
fn classify(err: JError) -> TemplateError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(j) = e.downcast_ref::<JError>() {
            let marker = std::error::Error::source(j);
            if marker.is_some_and(|s| s.downcast_ref::<RaisedByTemplate>().is_some()) {
                return TemplateError::Raised(j.detail().unwrap_or_default().to_owned());
            }
            if marker.is_some_and(|s| s.downcast_ref::<TooLarge>().is_some()) {
                return TemplateError::Limit(describe(j));
            }
        }
        source = e.source();
    }
    match err.kind() {
        JErrorKind::SyntaxError | JErrorKind::BadEscape | JErrorKind::UnknownBlock => {
            TemplateError::Syntax(describe(&err))
        }
        _ => TemplateError::Render(describe(&err)),
    }
}

/// One line describing a minijinja error: what, and where in the template.
fn describe(err: &JError) -> String {
    let mut s = match err.detail() {
        Some(d) => format!("{}: {d}", err.kind()),
        None => err.kind().to_string(),
    };
    if let Some(line) = err.line() {
        let _ = write!(s, " (template line {line})");
    }
    s
}

/// `raise_exception(message)`: fails the render with the template's message.
fn raise_exception(message: JValue) -> Result<JValue, JError> {
    let text = match message.as_str() {
        Some(s) => s.to_owned(),
        None => message.to_string(),
    };
    Err(JError::new(JErrorKind::InvalidOperation, text).with_source(RaisedByTemplate))
}

/// `strftime_now(format)`: the current (or pinned) local time formatted with
/// Python's strftime codes.
fn strftime_now(format: &str) -> Result<JValue, JError> {
    let now = PINNED_NOW
        .with(Cell::get)
        .unwrap_or_else(|| chrono::Local::now().naive_local());
    crate::pystr::strftime(&now, format)
        .map(JValue::from)
        .map_err(|e| JError::new(JErrorKind::InvalidOperation, e))
}

/// jinja2's `iterable` test: `none` is not iterable; undefined is (it
/// iterates as empty); anything minijinja can iterate is.
fn is_iterable(value: &JValue) -> bool {
    if value.is_none() {
        return false;
    }
    value.is_undefined() || value.try_iter().is_ok()
}

/// Prints values as Python does: floats in `repr` form (`1e+20`, `1e-07`),
/// everything else as minijinja's default formatter does (which already
/// prints `None`, `True`, lists and dicts the Python way).
fn python_formatter(
    out: &mut minijinja::Output,
    state: &mut State<'_, '_>,
    value: &JValue,
) -> Result<(), JError> {
    if value.kind() == ValueKind::Number && !value.is_integer() {
        if let Ok(f) = f64::try_from(value.clone()) {
            return out
                .write_str(&clemhost_pyfacts::float::repr(f))
                .map_err(|e| {
                    JError::new(JErrorKind::WriteFailure, "output write failed").with_source(e)
                });
        }
    }
    minijinja::escape_formatter(out, state, value)
}

/// The `string` filter, with floats written as Python's `str()` writes them
/// (`1e+20`); everything else as minijinja's builtin filter does.
fn python_string(state: &State<'_, '_>, value: &JValue) -> Result<JValue, JError> {
    if value.kind() == ValueKind::Number && !value.is_integer() {
        if let Ok(f) = f64::try_from(value.clone()) {
            return Ok(JValue::from(clemhost_pyfacts::float::repr(f)));
        }
    }
    if value.as_object().is_none() {
        return minijinja::filters::string(state, value);
    }
    // A list or map is written out here, under the cap: minijinja's filter
    // would build the whole text first (see MAX_FILTER_TEXT_BYTES).
    let mut text = CappedText::default();
    match write!(text, "{value}") {
        Ok(()) => Ok(JValue::from(text.text)),
        Err(_) if text.overflowed => Err(too_large("the string filter")),
        Err(_) => minijinja::filters::string(state, value),
    }
}

/// Python methods on values: minijinja-contrib's pycompat set, plus
/// `str.rsplit`, which it lacks.
fn python_methods(
    state: &mut State<'_, '_>,
    value: &JValue,
    method: &str,
    args: &[JValue],
) -> Result<JValue, JError> {
    if method == "rsplit" {
        if let Some(s) = value.as_str() {
            return rsplit(s, args);
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// `str.rsplit(sep=None, maxsplit=-1)`.
fn rsplit(s: &str, args: &[JValue]) -> Result<JValue, JError> {
    let (sep, maxsplit, kwargs): (Option<Option<&str>>, Option<i64>, Kwargs) =
        minijinja::value::from_args(args)?;
    let sep = match sep {
        Some(x) => x,
        None => kwargs.get::<Option<&str>>("sep")?,
    };
    let maxsplit = match maxsplit {
        Some(n) => n,
        None => kwargs.get::<Option<i64>>("maxsplit")?.unwrap_or(-1),
    };
    kwargs.assert_all_used()?;
    let parts = crate::pystr::rsplit(s, sep, maxsplit)
        .map_err(|e| JError::new(JErrorKind::InvalidOperation, e))?;
    Ok(JValue::from(parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, input: &RenderInput) -> Result<String, TemplateError> {
        ChatTemplate::new(src)?.render(input)
    }

    fn hi() -> RenderInput {
        RenderInput::new(vec![json!({"role": "user", "content": "hi"})])
    }

    #[test]
    fn a_template_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<ChatTemplate>();
        let t = std::sync::Arc::new(ChatTemplate::new("{{ messages[0].content }}").unwrap());
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let t = t.clone();
                std::thread::spawn(move || {
                    let input =
                        RenderInput::new(vec![json!({"role": "user", "content": i.to_string()})]);
                    t.render(&input)
                })
            })
            .collect();
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().expect("render thread"), Ok(i.to_string()));
        }
    }

    #[test]
    fn raise_exception_is_told_apart_from_engine_errors() {
        let raised = render("{{ raise_exception('Roles must alternate') }}", &hi());
        assert_eq!(
            raised,
            Err(TemplateError::Raised("Roles must alternate".into()))
        );
        let engine = render("{{ functions() }}", &hi());
        assert!(
            matches!(engine, Err(TemplateError::Render(_))),
            "{engine:?}"
        );
        // an engine error of the same minijinja kind is still not "raised"
        let other = render("{{ 'a' is nosuchtest }}", &hi());
        assert!(
            other.as_ref().is_err_and(|e| e.raised_message().is_none()),
            "{other:?}"
        );
        let syntax = ChatTemplate::new("{% for %}");
        assert!(matches!(syntax, Err(TemplateError::Syntax(_))));
    }

    #[test]
    fn raise_inside_a_macro_keeps_its_message() {
        let src = "{% macro check(m) %}{% if m.role != 'user' %}{{ raise_exception('bad role ' ~ m.role) }}{% endif %}{% endmacro %}{% for m in messages %}{{ check(m) }}{% endfor %}";
        let input = RenderInput::new(vec![json!({"role": "tool", "content": "x"})]);
        assert_eq!(
            render(src, &input),
            Err(TemplateError::Raised("bad role tool".into()))
        );
    }

    #[test]
    fn pinned_clock_and_missing_tokens() {
        let mut input = hi();
        input.now = NaiveDateTime::parse_from_str("2025-03-14T09:26:53", "%Y-%m-%dT%H:%M:%S").ok();
        assert_eq!(
            render(
                "{{ strftime_now('%B %d, %Y') }}|{{ bos_token is defined }}|{{ tools is none }}",
                &input
            )
            .unwrap(),
            "March 14, 2025|False|True"
        );
        input.bos_token = Some(String::new());
        assert_eq!(
            render("{{ bos_token is defined }}", &input).unwrap(),
            "True"
        );
    }

    #[test]
    fn whitespace_follows_transformers() {
        let src = "{% for m in messages %}\n    {{ m.content }}\n{% endfor %}\n";
        assert_eq!(render(src, &hi()).unwrap(), "    hi\n");
    }

    #[test]
    fn python_behaviour() {
        let input = RenderInput::new(vec![
            json!({"role": "user", "content": " a,b,c ", "x": null}),
        ]);
        let src = "{{ messages[0].content.strip().rsplit(',', 1) }}|{{ messages[0].x is defined }}|{{ none is iterable }}|{{ {'k': '<v>'} | tojson }}|{{ 1e-7 }}|{{ 1e20 | string }}|{{ 2.5 | string }}|{{ 'x' | string }}";
        assert_eq!(
            render(src, &input).unwrap(),
            r#"['a,b', 'c']|False|False|{"k": "<v>"}|1e-07|1e+20|2.5|x"#
        );
    }

    #[test]
    fn generation_tags_render_their_body() {
        let src =
            "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}";
        assert_eq!(render(src, &hi()).unwrap(), "hi");
    }

    #[test]
    fn continue_final_message_cuts_after_the_last_content() {
        let src = "{% for m in messages %}<{{ m.role }}>{{ m.content }}</s>\n{% endfor %}";
        let mut input = RenderInput::new(vec![
            json!({"role": "user", "content": "q"}),
            json!({"role": "assistant", "content": "<think>"}),
        ]);
        input.continue_final_message = true;
        assert_eq!(
            render(src, &input).unwrap(),
            "<user>q</s>\n<assistant><think>"
        );
        input.add_generation_prompt = true;
        assert!(matches!(render(src, &input), Err(TemplateError::Input(_))));
    }

    #[test]
    fn reasoning_fields_are_aliased_and_empty_input_refused() {
        let both = RenderInput::new(vec![
            json!({"role": "assistant", "content": "a", "thinking": "t", "reasoning_content": "rc"}),
        ]);
        assert_eq!(
            render(
                "{{ messages[0].thinking }}/{{ messages[0].reasoning_content }}",
                &both
            )
            .unwrap(),
            "rc/rc"
        );
        let input = RenderInput::new(vec![
            json!({"role": "assistant", "content": "a", "reasoning": "r"}),
        ]);
        assert_eq!(
            render(
                "{{ messages[0].thinking }}{{ messages[0].reasoning_content }}",
                &input
            )
            .unwrap(),
            "rr"
        );
        assert!(matches!(
            render("x", &RenderInput::default()),
            Err(TemplateError::Input(_))
        ));
    }

    #[test]
    fn extra_variables_override_tokens_but_not_messages() {
        let mut input = hi();
        input.eos_token = Some("</s>".into());
        input.extra.insert("eos_token".into(), json!("E"));
        input.extra.insert("messages".into(), json!([]));
        assert_eq!(
            render("{{ eos_token }}{{ messages | length }}", &input).unwrap(),
            "E1"
        );
    }

    #[test]
    fn a_nested_loop_runs_out_of_fuel_quickly() {
        let src =
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x";
        let started = std::time::Instant::now();
        let err = render(
            src,
            &RenderInput::from_messages(&[Message::new("user", "hi")]),
        )
        .expect_err("ten billion steps are refused");
        assert!(matches!(err, TemplateError::Limit(_)), "{err:?}");
        assert!(err.to_string().contains("template steps"), "{err}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "stops early"
        );
    }

    #[test]
    fn repeating_strings_in_a_loop_stops_at_the_output_cap() {
        let src = "{% for i in range(16) %}{{ 'x' * 10000000 }}{% endfor %}";
        let err = render(
            src,
            &RenderInput::from_messages(&[Message::new("user", "hi")]),
        )
        .expect_err("160 MB of prompt is refused");
        assert!(matches!(err, TemplateError::Limit(_)), "{err:?}");
        assert!(err.to_string().contains("16 MiB"), "{err}");
    }

    /// One step of fuel may not build gigabytes: a string repeat is refused
    /// before it allocates, and `string`/`tojson` of a nested lazy repeat
    /// stop at the cap instead of writing out 400 million items.
    #[test]
    fn huge_values_are_refused_before_they_are_built() {
        let input = RenderInput::from_messages(&[Message::new("user", "hi")]);
        for (src, limit) in [
            ("{{ 'x' * 100000000 }}", "64 MB"),
            (
                "{% set s = 'x' * 60000000 %}{{ (s ~ s) | length }}",
                "64 MB",
            ),
            ("{{ ([[1] * 20000] * 20000) | string | length }}", "2 MiB"),
            ("{{ ([[1] * 20000] * 20000) | tojson | length }}", "2 MiB"),
            (
                "{{ {'k': [[1] * 20000] * 20000} | tojson | length }}",
                "2 MiB",
            ),
            ("{{ [[1] * 20000] * 20000 }}", "16 MiB"),
        ] {
            let started = std::time::Instant::now();
            let err = render(src, &input).expect_err(src);
            assert!(matches!(err, TemplateError::Limit(_)), "{src}: {err:?}");
            assert!(err.to_string().contains(limit), "{src}: {err}");
            // Generous for a debug build; a release build takes a tenth.
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "{src} took {:?}",
                started.elapsed()
            );
        }
        // Ordinary lists still print as Python prints them.
        assert_eq!(
            render("{{ [1, 'a'] | string }}|{{ ([1] * 3) | string }}", &input).unwrap(),
            "[1, 'a']|[1, 1, 1]"
        );
    }
}
