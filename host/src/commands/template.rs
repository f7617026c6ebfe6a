//! `clemhost template render`: render a chat template for a conversation
//! and print the prompt exactly, the way transformers'
//! `apply_chat_template(..., tokenize=False)` renders it.
//!
//! The template comes from a file (`--template`) or from a registered model
//! (`-m`): its `custom_chat_template`, its tokenizer's template (a local
//! `huggingface_id` directory, or a snapshot in the HF cache), or for
//! `llamacpp` entries the GGUF file's `tokenizer.chat_template`. The prompt
//! goes to stdout with nothing added; when the template refuses the
//! conversation (`raise_exception`), its message goes to stderr and the exit
//! code is 3.

use crate::cli::GlobalArgs;
use crate::error::{json_error, Error, Exit, Result};
use crate::registry::{parse_model_arg, Registry, ResolvedModel};
use chrono::NaiveDateTime;
use clap::{ArgGroup, Args, Subcommand};
use clemhost_local_common::gguf::GgufMetadata;
use clemhost_local_common::gguf_file::locate_gguf;
#[cfg(feature = "hub")]
use clemhost_local_common::hf_files::TokenizerConfig;
use clemhost_local_common::hub::HubSettings;
#[cfg(feature = "hub")]
use clemhost_local_common::hub::ModelSource;
use clemhost_local_common::messages::ensure_alternating_roles;
use clemhost_local_common::template::{ChatTemplate, RenderInput, TemplateError};
use clemhost_local_common::template_choice::{
    choose_template, ChoiceError, TemplateOrigin, TemplateRules,
};
use clemhost_plugin_sdk::Message;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Render a chat template for a conversation and print the prompt
    /// exactly (no newline added). Exit code 3 when the template raises.
    Render(RenderArgs),
}

/// Options of `template render`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["template", "model"])))]
pub struct RenderArgs {
    /// The Jinja template file to render.
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// A registered model whose template to render (a name, or a JSON
    /// object as for `run -m`).
    #[arg(short = 'm', long = "model", value_name = "MODEL")]
    pub model: Option<String>,
    /// The conversation: a JSON list of {"role", "content", ...} objects (or
    /// an object with such a list under "messages").
    #[arg(long, value_name = "FILE.json")]
    pub messages: PathBuf,
    /// Do not ask the template to open an assistant turn at the end.
    #[arg(long)]
    pub no_generation_prompt: bool,
    /// The `bos_token` variable (default: the model's, or undefined).
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    pub bos_token: Option<String>,
    /// The `eos_token` variable (default: the model's, or undefined).
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    pub eos_token: Option<String>,
    /// More special-token variables: a JSON object such as
    /// {"pad_token": "<pad>", "unk_token": "<unk>"}.
    #[arg(long, value_name = "FILE.json")]
    pub special_tokens: Option<PathBuf>,
    /// Extra template variables (like a registry entry's
    /// `chat_template_kwargs`): a JSON object such as {"enable_thinking": false}.
    #[arg(long, value_name = "FILE.json")]
    pub kwargs: Option<PathBuf>,
    /// The local time `strftime_now()` reports, e.g. 2025-03-14T09:26:53
    /// (default: the clock).
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,
    /// First apply clemcore's preprocessing, as the local backends do: drop a
    /// leading empty system message and merge consecutive messages of the
    /// same role.
    #[arg(long)]
    pub merge_roles: bool,
}

/// Runs the command.
pub fn run(global: &GlobalArgs, cmd: &TemplateCommand) -> Result<Exit> {
    match cmd {
        TemplateCommand::Render(args) => render(global, args),
    }
}

/// A template source with the variables that come with it.
struct Source {
    /// Where the template came from, for error messages.
    origin: String,
    template: String,
    /// Special-token variables the model provides.
    tokens: Map<String, Value>,
    /// Extra variables the model's entry provides (`chat_template_kwargs`).
    extra: Map<String, Value>,
    /// A final assistant message to continue (`cot_bypass`).
    continue_with: Option<String>,
}

fn render(global: &GlobalArgs, args: &RenderArgs) -> Result<Exit> {
    let mut messages = read_messages(&args.messages)?;
    if args.merge_roles {
        messages = merge_roles(&args.messages, messages)?;
    }
    let source = match (&args.template, &args.model) {
        (Some(path), _) => Source {
            origin: path.display().to_string(),
            template: read_text(path, "the template")?,
            tokens: Map::new(),
            extra: Map::new(),
            continue_with: None,
        },
        (None, Some(model)) => model_source(global, model)?,
        (None, None) => {
            return Err(Error::with_exit(
                Exit::Usage,
                "give the template with --template FILE or a model with -m MODEL",
            ))
        }
    };

    let mut input = RenderInput::new(messages);
    input.add_generation_prompt = !args.no_generation_prompt;
    input.special_tokens = source.tokens;
    if let Some(path) = &args.special_tokens {
        input
            .special_tokens
            .extend(read_object(path, "the special tokens")?);
    }
    input.bos_token = token_var(&mut input.special_tokens, "bos_token", &args.bos_token);
    input.eos_token = token_var(&mut input.special_tokens, "eos_token", &args.eos_token);
    input.extra = source.extra;
    if let Some(path) = &args.kwargs {
        input
            .extra
            .extend(read_object(path, "the template variables")?);
    }
    if let Some(text) = &args.now {
        input.now = Some(parse_now(text)?);
    }
    if let Some(text) = source.continue_with {
        if input.add_generation_prompt {
            let mut m = Map::new();
            m.insert("role".into(), Value::String("assistant".into()));
            m.insert("content".into(), Value::String(text));
            input.messages.push(Value::Object(m));
            input.add_generation_prompt = false;
            input.continue_final_message = true;
        }
    }

    let template = ChatTemplate::new(&source.template)
        .map_err(|e| Error::msg(format!("{}: {e}", source.origin)))?;
    match template.render(&input) {
        Ok(prompt) => {
            let mut out = std::io::stdout().lock();
            out.write_all(prompt.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| Error::msg(format!("cannot write the prompt to stdout: {e}")))?;
            Ok(Exit::Success)
        }
        Err(TemplateError::Raised(message)) => {
            // The template is not ours: its message may carry escape sequences.
            eprintln!("{}", crate::error::escape_for_terminal(&message));
            Ok(Exit::TemplateRaised)
        }
        Err(
            e @ (TemplateError::Render(_) | TemplateError::Syntax(_) | TemplateError::Limit(_)),
        ) => Err(Error::with_exit(
            Exit::TemplateRaised,
            format!("{}: {e}", source.origin),
        )),
        Err(e @ TemplateError::Input(_)) => {
            Err(Error::msg(format!("{}: {e}", args.messages.display())))
        }
    }
}

/// Takes the token variable from the flag, else from the special tokens
/// (removing it there so it is passed once).
fn token_var(tokens: &mut Map<String, Value>, name: &str, flag: &Option<String>) -> Option<String> {
    let from_file = tokens.remove(name);
    if let Some(v) = flag {
        return Some(v.clone());
    }
    match from_file {
        Some(Value::String(s)) => Some(s),
        Some(Value::Null) | None => None,
        Some(other) => {
            // Not a string: pass it through unchanged, as transformers would.
            tokens.insert(name.to_owned(), other);
            None
        }
    }
}

fn read_text(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::msg(format!("{}: cannot read {what}: {e}", path.display())))
}

fn read_json(path: &Path, what: &str) -> Result<Value> {
    let text = read_text(path, what)?;
    serde_json::from_str(&text).map_err(|e| json_error(path, &e, what))
}

fn read_object(path: &Path, what: &str) -> Result<Map<String, Value>> {
    match read_json(path, what)? {
        Value::Object(m) => Ok(m),
        _ => Err(Error::msg(format!(
            "{}: {what} must be a JSON object of name -> value",
            path.display()
        ))),
    }
}

/// Reads the conversation: a list of message objects, or `{"messages": [...]}`.
fn read_messages(path: &Path) -> Result<Vec<Value>> {
    let list = match read_json(path, "the messages file")? {
        Value::Array(items) => items,
        Value::Object(mut m) => match m.remove("messages") {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(Error::msg(format!(
                    "{}: expected a JSON list of messages, or an object with a \"messages\" list",
                    path.display()
                )))
            }
        },
        _ => {
            return Err(Error::msg(format!(
                "{}: expected a JSON list of {{\"role\", \"content\"}} messages",
                path.display()
            )))
        }
    };
    for (i, m) in list.iter().enumerate() {
        if !m.is_object() {
            return Err(Error::msg(format!(
                "{}: message {i} is not an object; each message is {{\"role\": ..., \"content\": ...}}",
                path.display()
            )));
        }
    }
    Ok(list)
}

/// clemcore's preprocessing over JSON messages.
fn merge_roles(path: &Path, messages: Vec<Value>) -> Result<Vec<Value>> {
    let typed: Vec<Message> = messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            serde_json::from_value(m).map_err(|e| {
                Error::msg(format!(
                    "{}: message {i} needs a string \"role\" and \"content\" for --merge-roles: {e}",
                    path.display()
                ))
            })
        })
        .collect::<Result<_>>()?;
    let merged = ensure_alternating_roles(&typed)
        .map_err(|e| Error::msg(format!("{}: {e}", path.display())))?;
    Ok(clemhost_local_common::template::messages_to_values(&merged))
}

/// Parses `--now`: `2025-03-14T09:26:53` (a space for the `T`, and
/// fractional seconds, are accepted too).
fn parse_now(text: &str) -> Result<NaiveDateTime> {
    let text = text.trim();
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, fmt) {
            return Ok(t);
        }
    }
    Err(Error::with_exit(
        Exit::Usage,
        format!("--now {text:?}: expected a local date and time like 2025-03-14T09:26:53"),
    ))
}

fn str_of<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The template and variables of a registered model, as its backend would
/// render them.
fn model_source(global: &GlobalArgs, arg: &str) -> Result<Source> {
    let registry = Registry::load(global)?;
    let model = registry.resolve(&parse_model_arg(arg))?;
    if model.is_builtin() {
        return Err(Error::msg(format!(
            "{} is a built-in player, not a language model; it has no chat template",
            model.model_name()
        )));
    }
    let empty = Map::new();
    let config = model.model_config().unwrap_or(&empty);
    match model.backend() {
        "llamacpp" => llamacpp_source(&model, config),
        #[cfg(feature = "hub")]
        _ => hf_source(&model, config),
        #[cfg(not(feature = "hub"))]
        _ => Err(super::needs_hub_feature(&format!(
            "rendering the tokenizer template of {} (render with --template FILE instead)",
            model.model_name()
        ))),
    }
}

/// The model's `huggingface_id`, or an error naming the entry.
fn huggingface_id(model: &ResolvedModel) -> Result<&str> {
    str_of(&model.spec, "huggingface_id").ok_or_else(|| {
        Error::msg(format!(
            "model {} has no huggingface_id in its registry entry, so its tokenizer cannot be \
             found; render with --template FILE instead",
            model.model_name()
        ))
    })
}

#[cfg(feature = "hub")]
/// Opens the model's files: a local directory, or a Hub repo through the HF
/// cache (downloading what is missing unless `HF_HUB_OFFLINE` is set).
fn open_model(model: &ResolvedModel) -> Result<ModelSource> {
    let id = huggingface_id(model)?;
    ModelSource::open(id, &HubSettings::from_process_env(None))
        .map_err(|e| Error::msg(format!("model {}: {e}", model.model_name())))
}

#[cfg(feature = "hub")]
/// The files transformers reads to find a tokenizer's chat template and
/// special tokens.
const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
];

#[cfg(feature = "hub")]
/// Fetches the tokenizer files and loads them; `Err` says why none could be had.
fn load_tokenizer(model: &ResolvedModel) -> Result<TokenizerConfig> {
    let source = open_model(model)?;
    let config = source.file(TOKENIZER_FILES[0]);
    let others = TOKENIZER_FILES[1..]
        .iter()
        .filter_map(|f| source.optional_file(f));
    let any_file = config
        .as_ref()
        .ok()
        .cloned()
        .into_iter()
        .chain(others)
        .next();
    let dir = match (any_file, config) {
        (Some(file), _) => file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        (None, Err(e)) => {
            return Err(Error::msg(format!(
                "model {}: no tokenizer files: {e}; or render with --template FILE",
                model.model_name()
            )))
        }
        (None, Ok(file)) => file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    TokenizerConfig::load(&dir).map_err(Error::wrap)
}

#[cfg(feature = "hub")]
/// huggingface_local (and any other entry with a tokenizer): clemcore takes
/// `custom_chat_template` when `premade_chat_template` is false, else the
/// tokenizer's template, selected by `chat_template_language`.
fn hf_source(model: &ResolvedModel, config: &Map<String, Value>) -> Result<Source> {
    // clemcore's flag is read as Python reads it (absent: the model's own).
    let premade = config
        .get("premade_chat_template")
        .is_none_or(clemhost_pyfacts::truth::truthy);
    let custom = str_of(config, "custom_chat_template");
    let mut tokenizer = None;
    let chosen = choose_template(TemplateRules::Transformers, premade, custom, || {
        let tok = load_tokenizer(model)?;
        let t = tok
            .select_chat_template(str_of(config, "chat_template_language"))
            .map_err(Error::msg)?;
        tokenizer = Some(tok);
        Ok::<_, Error>(Some(t))
    })
    .map_err(|e| match e {
        ChoiceError::Model(e) => e,
        other => Error::msg(format!("model {}: {other}", model.model_name())),
    })?;
    let origin = match (&chosen.origin, &tokenizer) {
        (TemplateOrigin::Model, Some(tok)) => format!("{}: chat template", tok.dir.display()),
        _ => {
            // The tokenizer still gives the special tokens, when it can be had.
            if str_of(&model.spec, "huggingface_id").is_some() {
                tokenizer = load_tokenizer(model)
                    .map_err(|e| {
                        tracing::warn!("rendering without the tokenizer's special tokens: {e}")
                    })
                    .ok();
            }
            format!(
                "model {}: model_config.custom_chat_template",
                model.model_name()
            )
        }
    };
    let template = chosen.source;
    let mut extra = match config.get("chat_template_kwargs") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    if let Some(effort) = str_of(config, "cot_effort") {
        extra
            .entry("reasoning_effort")
            .or_insert_with(|| Value::String(effort.to_owned()));
    }
    Ok(Source {
        origin,
        template,
        tokens: tokenizer
            .as_ref()
            .map(TokenizerConfig::template_variables)
            .unwrap_or_default(),
        extra,
        continue_with: str_of(config, "cot_bypass").map(str::to_owned),
    })
}

/// Finds the GGUF file of a llamacpp entry as the plugin does.
fn gguf_path(model: &ResolvedModel, config: &Map<String, Value>) -> Result<PathBuf> {
    let id = huggingface_id(model)?;
    locate_gguf(
        id,
        str_of(config, "filename"),
        &HubSettings::from_process_env(None),
    )
    .map_err(|e| Error::msg(format!("model {}: {e}", model.model_name())))
}

/// llamacpp: clemcore takes the GGUF's `tokenizer.chat_template` when
/// `premade_chat_template` is true, else `custom_chat_template`; BOS/EOS
/// are the GGUF's token texts, else `bos_string` / `eos_string`.
fn llamacpp_source(model: &ResolvedModel, config: &Map<String, Value>) -> Result<Source> {
    let premade = config
        .get("premade_chat_template")
        .is_none_or(clemhost_pyfacts::truth::truthy);
    let custom = str_of(config, "custom_chat_template");
    // The GGUF gives the BOS/EOS texts even when the custom template is used.
    let gguf = match gguf_path(model, config) {
        Ok(p) => match GgufMetadata::read(&p) {
            Ok(m) => Ok((p, m)),
            Err(e) => Err(Error::wrap(e)),
        },
        Err(e) => Err(e),
    };
    let chosen = choose_template(TemplateRules::Llamacpp, premade, custom, || {
        gguf.as_ref()
            .map(|(_, m)| m.chat_template().map(str::to_owned))
            .map_err(|e| Error::msg(e.message.clone()))
    })
    .map_err(|e| match e {
        ChoiceError::Model(e) => e,
        other => Error::msg(format!("model {}: {other}", model.model_name())),
    })?;
    let origin = match (chosen.origin, &gguf) {
        (TemplateOrigin::Model, Ok((p, _))) => format!("{}: tokenizer.chat_template", p.display()),
        _ => format!(
            "model {}: model_config.custom_chat_template",
            model.model_name()
        ),
    };
    let template = chosen.source;
    let gguf = gguf.ok();
    let mut tokens = Map::new();
    for (var, id_key, fallback) in [
        ("bos_token", "tokenizer.ggml.bos_token_id", "bos_string"),
        ("eos_token", "tokenizer.ggml.eos_token_id", "eos_string"),
    ] {
        let text = gguf
            .as_ref()
            .and_then(|(_, m)| m.special_token(id_key))
            .filter(|s| !s.is_empty())
            .or_else(|| str_of(config, fallback));
        if let Some(t) = text {
            tokens.insert(var.into(), Value::String(t.to_owned()));
        }
    }
    Ok(Source {
        origin,
        template,
        tokens,
        extra: Map::new(),
        continue_with: None,
    })
}
