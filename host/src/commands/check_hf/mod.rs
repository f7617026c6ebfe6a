//! `clemhost check-hf`: the preliminary check of a HuggingFace model (or a
//! GGUF file) that clembench's guide asks for, made real. It loads the
//! tokenizer facts and the chat template with the same code as the local
//! backends, applies the template to the message patterns clembench games
//! produce, marks failures and warnings as clemcore's check does, and
//! proposes a registry entry.

use crate::cli::GlobalArgs;
use crate::error::{Error, Exit, Result};
use clap::Args;
use clemhost_local_common::messages::ensure_alternating_roles;
use clemhost_local_common::model_facts::ModelFacts;
use clemhost_local_common::template::{ChatTemplate, RenderInput};
use clemhost_plugin_sdk::Message;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

#[cfg(feature = "hub")]
mod hub;

/// Options of `check-hf`.
#[derive(Debug, Args)]
pub struct CheckHfArgs {
    /// A HuggingFace repo id (`org/name`), a local model directory, or a `.gguf` file.
    #[arg(short = 'm', long = "model", value_name = "HF_ID_OR_PATH")]
    pub model: String,
    /// Also print the tokenizer's facts (class, vocab size, special tokens and ids, EOS ids).
    #[arg(short = 'i', long = "tokenizer-info")]
    pub tokenizer_info: bool,
    /// Also print the raw chat template.
    #[arg(short = 't', long = "show-template")]
    pub show_template: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Append the proposed entry to this registry file (created if missing;
    /// an existing entry with the same model_name is never replaced).
    #[arg(long, value_name = "FILE")]
    pub write_registry: Option<PathBuf>,
    /// The model_name of the proposed entry (default: derived from the id).
    #[arg(long, value_name = "NAME")]
    pub model_name: Option<String>,
}

/// Outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Fine.
    Pass,
    /// Works for current games, but be warned.
    Warn,
    /// The model cannot be used as it is.
    Fail,
}

/// One applied check.
#[derive(Debug, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The rendered prompt, when the template rendered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rendered: Option<String>,
    /// The template's own error or the evidence of a problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A model's facts (read by local-common, as the local backends read
/// them) and, with the feature `hub`, its tokenizer for the round trip.
pub(crate) struct Loaded {
    model: ModelFacts,
    #[cfg(feature = "hub")]
    tokenizer: Option<tokenizers::Tokenizer>,
}

impl std::ops::Deref for Loaded {
    type Target = ModelFacts;
    fn deref(&self) -> &ModelFacts {
        &self.model
    }
}

/// Loads a model's facts from a Hub id, a local folder or a `.gguf` file.
pub(crate) fn load(model: &str) -> Result<Loaded> {
    let path = Path::new(model);
    if path.is_file() && path.extension().and_then(|e| e.to_str()) == Some("gguf") {
        return load_gguf(path);
    }
    #[cfg(feature = "hub")]
    return hub::load_tokenizer_dir(model);
    #[cfg(not(feature = "hub"))]
    Err(super::needs_hub_feature(&format!(
        "reading the tokenizer of {model} (only .gguf files are read without it)"
    )))
}

fn load_gguf(path: &Path) -> Result<Loaded> {
    Ok(Loaded {
        model: ModelFacts::from_gguf(path).map_err(Error::wrap)?,
        #[cfg(feature = "hub")]
        tokenizer: None,
    })
}

/// Renders `messages` with the model's template and special tokens.
pub(crate) fn render(
    template: &ChatTemplate,
    loaded: &Loaded,
    messages: &[Message],
    add_generation_prompt: bool,
) -> std::result::Result<String, String> {
    let mut input = RenderInput::from_messages(messages);
    input.add_generation_prompt = add_generation_prompt;
    input.bos_token = loaded.bos.clone();
    input.eos_token = loaded.eos.clone();
    template.render(&input).map_err(|e| e.to_string())
}

fn conversation(turns: &[(&str, &str)]) -> Vec<Message> {
    turns.iter().map(|(r, c)| Message::new(*r, *c)).collect()
}

const MARKER: &str = "GREET: Hello Anna, welcome to the table!";

/// Applies the template to the patterns clembench games produce.
fn run_checks(template: &ChatTemplate, loaded: &Loaded) -> Vec<Check> {
    let proper = conversation(&[
        ("user", "Which spice do you like best?"),
        ("assistant", "Cardamom."),
        ("user", "Do you know a recipe with it?"),
    ]);
    // Games send the initial prompt and the first context as two user turns;
    // the backends merge them before templating (as clemcore does).
    let double_user = ensure_alternating_roles(&conversation(&[
        ("user", "Here are the rules of the game."),
        ("user", "Your first turn: go."),
    ]))
    .expect("two messages are not empty");
    let assistant_first = conversation(&[("assistant", "Welcome!"), ("user", "Thank you.")]);
    let system = conversation(&[
        ("system", "You are a player in a game."),
        ("user", "Start."),
    ]);
    let mut checks = Vec::new();
    let mut apply = |name: &str, messages: &[Message], on_error: Verdict, note: &str| {
        let (verdict, rendered, detail) = match render(template, loaded, messages, true) {
            Ok(s) => (Verdict::Pass, Some(s), None),
            Err(e) => (on_error, None, Some(format!("{e} — {note}"))),
        };
        checks.push(Check {
            name: name.to_string(),
            verdict,
            rendered,
            detail,
        });
    };
    apply(
        "user/assistant/user chat",
        &proper,
        Verdict::Fail,
        "the template cannot render a plain chat; the tokenizer or its config is broken, set premade_chat_template to false and give a custom_chat_template",
    );
    apply(
        "two consecutive user messages, merged as the backends merge them",
        &double_user,
        Verdict::Fail,
        "every clembench game starts this way",
    );
    apply(
        "chat starting with an assistant message",
        &assistant_first,
        Verdict::Warn,
        "no current clembench game does this, but be warned",
    );
    apply(
        "chat with a system message",
        &system,
        Verdict::Warn,
        "the template rejects system messages; games that send one will fail",
    );
    // The generation prompt must change the rendering, or the model answers as the user.
    let with = render(template, loaded, &proper, true);
    let without = render(template, loaded, &proper, false);
    if let (Ok(w), Ok(wo)) = (&with, &without) {
        checks.push(Check {
            name: "add_generation_prompt opens an assistant turn".into(),
            verdict: if w != wo { Verdict::Pass } else { Verdict::Warn },
            rendered: None,
            detail: (w == wo).then(|| {
                "the template renders the same with and without add_generation_prompt; the model may continue the user's turn".to_string()
            }),
        });
    }
    checks
}

/// The special token that closes an assistant turn: the first special
/// token the template puts right after an assistant message.
fn end_of_turn_token(template: &ChatTemplate, loaded: &Loaded) -> Option<String> {
    let chat = conversation(&[("user", "Hi."), ("assistant", MARKER), ("user", "Bye.")]);
    let rendered = render(template, loaded, &chat, false).ok()?;
    let after = &rendered[rendered.find(MARKER)? + MARKER.len()..];
    let after = after.trim_start();
    let mut specials: Vec<&String> = loaded
        .facts
        .all_special
        .iter()
        .filter(|t| !t.is_empty())
        .collect();
    specials.sort_by_key(|t| std::cmp::Reverse(t.len()));
    specials
        .iter()
        .find(|t| after.starts_with(t.as_str()))
        .map(|t| t.to_string())
}

/// A regular expression matching exactly the literal `token`.
pub fn escape_regex(token: &str) -> String {
    let mut out = String::new();
    for c in token.chars() {
        if "\\.^$|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn default_model_name(model: &str, loaded: &Loaded) -> String {
    let base = match &loaded.gguf_file {
        Some(f) => f.trim_end_matches(".gguf").to_string(),
        None => Path::new(model.trim_end_matches('/'))
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or(model)
            .to_string(),
    };
    base.to_lowercase()
}

fn context_string(n: u64) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{}k", n / 1024)
    } else {
        n.to_string()
    }
}

/// Builds the registry entry the checks support.
#[cfg_attr(not(feature = "hub"), allow(unused_variables))]
fn propose(
    args: &CheckHfArgs,
    loaded: &Loaded,
    template: Option<&ChatTemplate>,
    checks: &mut Vec<Check>,
) -> Map<String, Value> {
    let mut entry = Map::new();
    entry.insert(
        "model_name".into(),
        json!(args
            .model_name
            .clone()
            .unwrap_or_else(|| default_model_name(&args.model, loaded))),
    );
    entry.insert("backend".into(), json!(loaded.backend));
    let hf_id = match &loaded.gguf_file {
        Some(_) => loaded
            .location
            .parent()
            .map(|p| {
                p.canonicalize()
                    .unwrap_or(p.to_path_buf())
                    .display()
                    .to_string()
            })
            .unwrap_or_default(),
        None if Path::new(&args.model).is_dir() => Path::new(&args.model)
            .canonicalize()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| args.model.clone()),
        None => args.model.clone(),
    };
    entry.insert("huggingface_id".into(), json!(hf_id));
    if let Some(n) = loaded.facts.context_size {
        entry.insert("context_size".into(), json!(context_string(n)));
    }
    let mut mc = Map::new();
    if let Some(f) = &loaded.gguf_file {
        mc.insert("filename".into(), json!(f));
    }
    mc.insert("premade_chat_template".into(), json!(template.is_some()));
    let eot = template.and_then(|t| end_of_turn_token(t, loaded));
    let mut cull: Vec<String> = Vec::new();
    for t in eot.iter().chain(loaded.eos.iter()) {
        if !t.is_empty() && !cull.contains(t) {
            cull.push(t.clone());
        }
    }
    mc.insert(
        "eos_to_cull".into(),
        json!(cull
            .iter()
            .map(|t| escape_regex(t))
            .collect::<Vec<_>>()
            .join("|")),
    );
    #[cfg(feature = "hub")]
    if let (Some(t), Some(tk)) = (template, &loaded.tokenizer) {
        let chat = conversation(&[("user", "Say hello.")]);
        if let Ok(prompt) = render(t, loaded, &chat, true) {
            match hub::round_trip(tk, &prompt) {
                Ok(()) => checks.push(Check {
                    name: "the tokenizer gives the rendered prompt back".into(),
                    verdict: Verdict::Pass,
                    rendered: None,
                    detail: None,
                }),
                Err(e) => {
                    let without = render(t, loaded, &chat, false).unwrap_or_default();
                    let gen_prompt = prompt.strip_prefix(&without).unwrap_or("").trim_start();
                    let prefix: String = gen_prompt
                        .rsplit(|c: char| loaded.facts.all_special.iter().any(|s| s.ends_with(c)))
                        .next()
                        .unwrap_or(gen_prompt)
                        .to_string();
                    checks.push(Check {
                        name: "the tokenizer gives the rendered prompt back".into(),
                        verdict: Verdict::Warn,
                        rendered: None,
                        detail: Some(format!(
                            "{e}; the backend cannot cut the prompt off the output by replacement, so the entry gets output_split_prefix {prefix:?}"
                        )),
                    });
                    if !prefix.trim().is_empty() {
                        mc.insert("output_split_prefix".into(), json!(prefix));
                    }
                }
            }
        }
    }
    entry.insert("model_config".into(), Value::Object(mc));
    entry
}

/// Runs `clemhost check-hf`.
pub fn run(_global: &GlobalArgs, args: &CheckHfArgs) -> Result<Exit> {
    let loaded = load(&args.model)?;
    let (template, template_error) = match &loaded.template {
        Some(src) => match ChatTemplate::new(src) {
            Ok(t) => (Some(t), None),
            Err(e) => (None, Some(format!("the chat template does not compile: {e}"))),
        },
        None => (None, Some("the model has no chat template (tokenizer_config.json, chat_template.jinja or GGUF metadata)".to_string())),
    };
    let mut checks = match &template {
        Some(t) => run_checks(t, &loaded),
        None => vec![Check {
            name: "a chat template exists".into(),
            verdict: Verdict::Fail,
            rendered: None,
            detail: template_error.map(|e| {
                format!("{e}; set premade_chat_template to false and give a custom_chat_template in the entry")
            }),
        }],
    };
    let entry = propose(args, &loaded, template.as_ref(), &mut checks);
    let passed = checks.iter().all(|c| c.verdict != Verdict::Fail);
    if args.json {
        let out = json!({
            "model": args.model,
            "location": loaded.location.display().to_string(),
            "tokenizer": loaded.facts,
            "chat_template": loaded.template,
            "checks": checks,
            "passed": passed,
            "proposed_entry": entry,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("JSON values serialise")
        );
    } else {
        print_text(args, &loaded, &checks, passed, &entry);
    }
    if let Some(path) = &args.write_registry {
        crate::registry::append::append_entry(path, &entry)?;
        eprintln!("Appended the entry to {}.", path.display());
    }
    Ok(if passed {
        Exit::Success
    } else {
        Exit::CheckFailed
    })
}

fn print_text(
    args: &CheckHfArgs,
    loaded: &Loaded,
    checks: &[Check],
    passed: bool,
    entry: &Map<String, Value>,
) {
    println!(
        "Model: {} ({}, backend {})",
        args.model,
        loaded.location.display(),
        loaded.backend
    );
    if args.tokenizer_info {
        let f = &loaded.facts;
        println!("\nTokenizer:");
        println!("  class: {}", f.class.as_deref().unwrap_or("-"));
        println!("  model type: {}", f.model_type.as_deref().unwrap_or("-"));
        println!(
            "  vocab size: {}",
            f.vocab_size
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into())
        );
        for (role, text, id) in &f.special_tokens {
            println!(
                "  {role}: {text:?} (id {})",
                id.map(|i| i.to_string()).unwrap_or_else(|| "?".into())
            );
        }
        println!("  EOS ids: {:?}", f.eos_token_ids);
        if let Some(c) = f.context_size {
            println!("  context size: {c}");
        }
    }
    if args.show_template {
        println!(
            "\nChat template:\n{}",
            loaded.template.as_deref().unwrap_or("(none)")
        );
    }
    for (i, c) in checks.iter().enumerate() {
        let mark = match c.verdict {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        println!("\n[{mark}] {}/{}: {}", i + 1, checks.len(), c.name);
        if let Some(r) = &c.rendered {
            // Rendered from a chat template of the Hub's (not ours).
            println!("{}", crate::error::escape_for_terminal(r));
        }
        if let Some(d) = &c.detail {
            println!("  {}", crate::error::escape_for_terminal(d));
        }
    }
    let warnings = checks.iter().filter(|c| c.verdict == Verdict::Warn).count();
    println!(
        "\n{} ({warnings} warning{})",
        if passed {
            "The model passes the chat template checks."
        } else {
            "The model does NOT pass the chat template checks."
        },
        if warnings == 1 { "" } else { "s" }
    );
    println!("\nProposed registry entry (paste into model_registry.json, or rerun with --write-registry FILE):");
    println!(
        "{}",
        serde_json::to_string_pretty(entry).expect("JSON values serialise")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_special_tokens_for_regex() {
        assert_eq!(escape_regex("<|im_end|>"), r"<\|im_end\|>");
        assert_eq!(escape_regex("</s>"), "</s>");
        assert_eq!(escape_regex("[END]"), r"\[END\]");
    }

    #[test]
    fn context_sizes_read_like_the_registry() {
        assert_eq!(context_string(8192), "8k");
        assert_eq!(context_string(2048), "2k");
        assert_eq!(context_string(1000), "1000");
    }
}
