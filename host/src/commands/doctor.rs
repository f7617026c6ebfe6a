//! `clemhost doctor`: plays one hellogame episode with a model into a
//! scratch results folder and inspects what clembench's guide asks a person
//! to inspect by eye in `requests.json` and `interactions.json`: the applied
//! template, the generated text, and end-of-sequence strings left in it.
//! Each check prints pass, warn or fail with the evidence and the registry
//! field to change.

use crate::cli::GlobalArgs;
use crate::commands::check_hf::{self, escape_regex, Loaded};
use crate::error::{Error, Exit, Result};
use crate::games::instances::InstanceFile;
use crate::registry::{parse_model_arg, Registry};
use crate::runner::{GenSettings, InstancesSource, ModelLimits, RunPlan, StopToken};
use clap::Args;
use clemhost_local_common::gguf_file::locate_gguf;
use clemhost_local_common::hub::HubSettings;
use clemhost_local_common::template::ChatTemplate;
use clemhost_local_common::template_choice::{choose_template, TemplateRules};
use clemhost_plugin_sdk::Message;
use serde::Serialize;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Options of `doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The model to check: a registry name or a JSON selector, as for `run`.
    #[arg(short = 'm', long = "model", value_name = "MODEL")]
    pub model: String,
    /// The most tokens of the answer (as `run -l`).
    #[arg(short = 'l', long = "max-tokens", default_value_t = 300)]
    pub max_tokens: u32,
    /// Keep the scratch results folder and print where it is.
    #[arg(long)]
    pub keep: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// One inspection.
#[derive(Debug, Serialize)]
pub struct Finding {
    /// What was checked.
    pub check: String,
    /// `pass`, `warn`, `fail` or `n/a`.
    pub verdict: &'static str,
    /// What was seen.
    pub evidence: String,
    /// The registry field (or option) to change, when something is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn finding(
    check: &str,
    verdict: &'static str,
    evidence: impl Into<String>,
    fix: Option<String>,
) -> Finding {
    Finding {
        check: check.to_string(),
        verdict,
        evidence: evidence.into(),
        fix,
    }
}

/// End-of-turn and padding strings of common chat models, looked for in the
/// answers of backends whose tokenizer clemhost cannot read (remote ones).
const COMMON_SPECIAL_TOKENS: &[&str] = &[
    "<|im_end|>",
    "<|im_start|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "<|end|>",
    "<end_of_turn>",
    "</s>",
    "<eos>",
    "<pad>",
    "[/INST]",
    "<|assistant|>",
];

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::msg(format!("cannot read {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| crate::error::json_error(path, &e, "the recorded file"))
}

/// A fresh folder under the temp directory, made with a random name that
/// no one else can have taken (create_dir fails when it exists).
fn scratch_dir() -> Result<PathBuf> {
    let base = std::env::temp_dir();
    let mut last = None;
    for _ in 0..8 {
        let dir = base.join(format!(
            "clemhost-doctor-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::msg(format!(
        "cannot create a scratch folder in {}: {}",
        base.display(),
        last.map(|e| e.to_string()).unwrap_or_default()
    )))
}

/// The one episode's folder: the one with interactions.json, else the one with error.json.
fn find_episode_dir(root: &Path) -> Option<PathBuf> {
    let mut found = crate::results::find_episodes(root);
    if found.is_empty() {
        // A failed episode has no interactions.json but an error.json.
        found = crate::results::dirs_holding(root, crate::results::files::ERROR);
    }
    found.pop()
}

/// Where the model's tokenizer and template come from, for local backends.
fn local_facts(spec: &serde_json::Map<String, Value>) -> Option<Result<Loaded>> {
    let backend = spec.get("backend")?.as_str()?;
    let id = spec.get("huggingface_id")?.as_str()?;
    match backend {
        "huggingface_local" => Some(check_hf::load(id)),
        "llamacpp" => {
            let file = spec
                .get("model_config")
                .and_then(|m| m.get("filename"))
                .and_then(Value::as_str);
            let path = locate_gguf(id, file, &HubSettings::from_process_env(None)).ok()?;
            Some(check_hf::load(path.to_str().unwrap_or_default()))
        }
        _ => None,
    }
}

/// The template the backend applies: a custom one from the entry, else the model's.
fn applied_template(
    spec: &serde_json::Map<String, Value>,
    loaded: &Loaded,
) -> Option<ChatTemplate> {
    let mc = spec.get("model_config").and_then(Value::as_object);
    let premade = mc
        .and_then(|m| m.get("premade_chat_template"))
        .is_none_or(clemhost_pyfacts::truth::truthy);
    let custom = mc
        .and_then(|m| m.get("custom_chat_template"))
        .and_then(Value::as_str);
    let rules = match loaded.backend {
        "llamacpp" => TemplateRules::Llamacpp,
        _ => TemplateRules::Transformers,
    };
    let source = choose_template(rules, premade, custom, || {
        Ok::<_, std::convert::Infallible>(loaded.template.clone())
    })
    .ok()?
    .source;
    ChatTemplate::new(&source).ok()
}

fn excerpt_around(text: &str, at: usize, len: usize) -> String {
    let start = text[..at]
        .char_indices()
        .rev()
        .nth(20)
        .map(|(i, _)| i)
        .unwrap_or(0);
    let end = (at + len + 20).min(text.len());
    let end = (end..=text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    format!("{:?}", &text[start..end])
}

/// Looks for finish reasons that say the answer hit the token limit.
fn cut_by_limit(response: &Value) -> Option<String> {
    let mut stack = vec![response];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(m) => {
                for (k, val) in m {
                    let key = k.to_ascii_lowercase();
                    if key.contains("finish_reason")
                        || key == "stop_reason"
                        || key == "finishreason"
                    {
                        if let Some(s) = val.as_str() {
                            let s_l = s.to_ascii_lowercase();
                            if s_l == "length" || s_l == "max_tokens" {
                                return Some(format!("{k} = {s:?}"));
                            }
                        }
                    }
                    stack.push(val);
                }
            }
            Value::Array(a) => stack.extend(a.iter()),
            _ => {}
        }
    }
    None
}

/// Runs `clemhost doctor`.
pub fn run(global: &GlobalArgs, args: &DoctorArgs) -> Result<Exit> {
    let registry = Registry::load(global)?;
    let resolved = registry.resolve(&parse_model_arg(&args.model))?;
    if resolved.is_builtin() {
        return Err(Error::msg(format!(
            "'{}' is a built-in player; doctor checks models served by a backend plugin",
            args.model
        )));
    }
    let spec = resolved.spec.clone();
    let backend = resolved.backend().to_string();
    let loaded = match local_facts(&spec) {
        Some(Ok(l)) => Some(l),
        Some(Err(e)) => {
            return Err(Error::msg(format!(
                "cannot read the tokenizer of '{}': {}",
                resolved.model_name(),
                e.message
            )))
        }
        None => None,
    };

    // One hellogame episode into a scratch folder, through the pipeline
    // `run` uses (in this process, so -v, -q and the other global options hold).
    let scratch = scratch_dir()?;
    let game = crate::games::find_game("hellogame").expect("hellogame is built in");
    let mut file =
        crate::games::instances::parse(game.shipped_instances(), "hellogame's shipped instances")
            .map_err(Error::wrap)?;
    file.truncate(1);
    if let Some(e) = file.first_mut() {
        e.instances.truncate(1);
    }
    let results = scratch.join("results");
    let plan = RunPlan {
        game,
        instances: InstancesSource::Given(InstanceFile {
            path: None,
            experiments: file,
        }),
        experiment: None,
        models: vec![args.model.clone()],
        gen: GenSettings {
            temperature: 0.0,
            max_tokens: args.max_tokens,
        },
        limits: ModelLimits::default(),
        results_dir: results.clone(),
        parallel: Some(1),
        resume: false,
        shard: None,
        show_progress: false,
    };
    if !args.json {
        eprintln!(
            "doctor: playing one hellogame episode with {} ...",
            resolved.model_name()
        );
    }
    let played = crate::commands::run::play_plan(plan, &registry, global, &StopToken::ctrl_c());
    let outcome = match played {
        Ok(_) => inspect(&results, &spec, &backend, loaded.as_ref(), args.max_tokens),
        Err(e) => Err(Error::with_exit(
            Exit::CheckFailed,
            format!(
                "the episode did not run, so nothing could be inspected: {}",
                e.message
            ),
        )),
    };
    if args.keep {
        eprintln!("doctor: results kept in {}", results.display());
    } else {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let findings = outcome?;
    let failed = findings.iter().any(|f| f.verdict == "fail");
    if args.json {
        let j = json!({"model": resolved.model_name(), "backend": backend, "passed": !failed, "checks": findings});
        println!(
            "{}",
            serde_json::to_string_pretty(&j).expect("JSON values serialise")
        );
    } else {
        for f in &findings {
            println!("[{}] {}", f.verdict.to_uppercase(), f.check);
            // The evidence quotes the model's answers.
            println!("    {}", crate::error::escape_for_terminal(&f.evidence));
            if let Some(fix) = &f.fix {
                println!("    fix: {fix}");
            }
        }
        println!(
            "\n{}",
            if failed {
                format!(
                    "{} needs changes in its registry entry (see the fixes above).",
                    resolved.model_name()
                )
            } else {
                format!(
                    "{} looks right: its prompts, answers and culling are as they should be.",
                    resolved.model_name()
                )
            }
        );
    }
    Ok(if failed {
        Exit::CheckFailed
    } else {
        Exit::Success
    })
}

fn inspect(
    results: &Path,
    spec: &serde_json::Map<String, Value>,
    backend: &str,
    loaded: Option<&Loaded>,
    max_tokens: u32,
) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    let Some(episode) = find_episode_dir(results) else {
        return Err(Error::with_exit(
            Exit::CheckFailed,
            format!(
                "the episode wrote nothing under {}, so nothing could be inspected",
                results.display()
            ),
        ));
    };
    if episode.join("error.json").is_file() {
        let err = read_json(&episode.join("error.json"))?;
        findings.push(finding(
            "the episode finished",
            "fail",
            format!(
                "error.json: {} — {}",
                err["error"].as_str().unwrap_or("?"),
                err["message"].as_str().unwrap_or("")
            ),
            Some("see the message; `clemhost run -v` shows the plugin's log".into()),
        ));
        return Ok(findings);
    }
    let requests = read_json(&episode.join("player_1.requests.json"))?;
    let call = &requests["calls"][0]["call"];
    let prompt_obj = &call["manipulated_prompt_obj"];
    let response_obj = &call["raw_response_obj"];
    let interactions = read_json(&episode.join("interactions.json"))?;
    let answer = interactions["turns"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|round| round.as_array().into_iter().flatten())
        .find(|ev| ev["from"] == "Player 1" && ev["to"] == "GM")
        .and_then(|ev| ev["action"]["content"].as_str())
        .unwrap_or_default()
        .to_string();
    let inputs = prompt_obj["inputs"].as_str();
    let raw_output = response_obj["response"].as_str();
    let template = loaded.and_then(|l| applied_template(spec, l));

    // 1. The recorded prompt ends with the generation prompt.
    match (inputs, template.as_ref(), loaded) {
        (Some(inputs), Some(t), Some(l)) => {
            let chat = [Message::new("user", "x")];
            let with = check_hf::render(t, l, &chat, true).unwrap_or_default();
            let without = check_hf::render(t, l, &chat, false).unwrap_or_default();
            let gen_prompt = with.strip_prefix(without.as_str()).unwrap_or("");
            if gen_prompt.is_empty() {
                findings.push(finding("the prompt ends with the generation prompt", "warn",
                    "the template adds nothing for add_generation_prompt", Some("model_config.custom_chat_template (open the assistant turn when add_generation_prompt is set)".into())));
            } else if inputs.ends_with(gen_prompt) {
                findings.push(finding(
                    "the prompt ends with the generation prompt",
                    "pass",
                    format!("ends with {gen_prompt:?}"),
                    None,
                ));
            } else {
                let tail: String = inputs
                    .chars()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                findings.push(finding(
                    "the prompt ends with the generation prompt",
                    "fail",
                    format!("the prompt ends with {tail:?}, not with {gen_prompt:?}"),
                    Some("model_config.premade_chat_template / custom_chat_template".into()),
                ));
            }
        }
        _ => findings.push(finding(
            "the prompt ends with the generation prompt",
            "n/a",
            format!("the {backend} backend sends messages, not a rendered prompt"),
            None,
        )),
    }

    // 2. The raw output starts with the prompt (the HF backend decodes prompt + answer).
    match (inputs, raw_output) {
        (Some(inputs), Some(raw)) if backend == "huggingface_local" => {
            if raw.starts_with(inputs) {
                findings.push(finding(
                    "the raw output starts with the prompt",
                    "pass",
                    "the prompt can be cut off by replacement",
                    None,
                ));
            } else {
                let at = inputs
                    .char_indices()
                    .zip(raw.chars())
                    .find(|((_, a), b)| a != b)
                    .map(|((i, _), _)| i)
                    .unwrap_or(0);
                findings.push(finding("the raw output starts with the prompt", "fail",
                    format!("the decoded output departs from the prompt at byte {at}: {}", excerpt_around(raw, at.min(raw.len()), 0)),
                    Some("model_config.output_split_prefix: the text right before the answer, e.g. the generation prompt's last line".into())));
            }
        }
        _ => findings.push(finding(
            "the raw output starts with the prompt",
            "n/a",
            format!("the {backend} backend records only the answer"),
            None,
        )),
    }

    // 3. The answer is not empty.
    if answer.trim().is_empty() {
        findings.push(finding(
            "the answer is not empty",
            "fail",
            "the model's answer is empty after cleaning",
            Some("check eos_to_cull and output_split_prefix: they may remove everything".into()),
        ));
    } else {
        let shown: String = answer.chars().take(80).collect();
        findings.push(finding(
            "the answer is not empty",
            "pass",
            format!("{shown:?}"),
            None,
        ));
    }

    // 4. No end-of-sequence, padding or other special-token string is left.
    let mut specials: Vec<String> = match loaded {
        Some(l) => l.facts.all_special.clone(),
        None => COMMON_SPECIAL_TOKENS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    specials.retain(|s| !s.trim().is_empty());
    specials.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut left: Vec<(String, usize)> = Vec::new();
    for s in &specials {
        if let Some(at) = answer.find(s.as_str()) {
            if !left.iter().any(|(t, a)| t.contains(s.as_str()) && *a <= at) {
                left.push((s.clone(), at));
            }
        }
    }
    if left.is_empty() {
        findings.push(finding(
            "no special-token string is left in the answer",
            "pass",
            format!("none of {} special tokens appears", specials.len()),
            None,
        ));
    } else {
        let evidence = left
            .iter()
            .map(|(t, at)| {
                format!(
                    "{t:?} at byte {at} of the answer: {}",
                    excerpt_around(&answer, *at, t.len())
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let current = spec
            .get("model_config")
            .and_then(|m| m.get("eos_to_cull"))
            .and_then(Value::as_str);
        let regex = left
            .iter()
            .map(|(t, _)| escape_regex(t))
            .collect::<Vec<_>>()
            .join("|");
        let fix = if loaded.is_some() {
            format!(
                "set model_config.eos_to_cull to {:?}{}",
                regex,
                current
                    .map(|c| format!(" (now {c:?}, which does not match)"))
                    .unwrap_or_else(|| " (it is not set)".into())
            )
        } else {
            "the server leaves the token in its answer: set its stop tokens or chat template"
                .to_string()
        };
        findings.push(finding(
            "no special-token string is left in the answer",
            "fail",
            evidence,
            Some(fix),
        ));
    }

    // 5. The answer was not cut by max_tokens.
    let eos_strings: Vec<&str> = loaded
        .map(|l| {
            l.eos
                .iter()
                .map(String::as_str)
                .chain(l.facts.all_special.iter().map(String::as_str))
                .collect()
        })
        .unwrap_or_default();
    match (backend, raw_output) {
        ("huggingface_local", Some(raw)) => {
            let tail = raw.trim_end();
            if eos_strings
                .iter()
                .any(|e| !e.is_empty() && tail.ends_with(e))
            {
                findings.push(finding(
                    "the answer was not cut by max_tokens",
                    "pass",
                    "the output ends with an end-of-sequence token",
                    None,
                ));
            } else {
                findings.push(finding("the answer was not cut by max_tokens", "warn",
                    format!("the output ends without an end-of-sequence token, so it stopped at max_tokens = {max_tokens}"),
                    Some("raise -l/--max-tokens, or check that the model's EOS ids are right (generation_config.json)".into())));
            }
        }
        _ => match cut_by_limit(response_obj) {
            Some(ev) => findings.push(finding(
                "the answer was not cut by max_tokens",
                "warn",
                format!("the response says {ev} (max_tokens = {max_tokens})"),
                Some("raise -l/--max-tokens".into()),
            )),
            None => findings.push(finding(
                "the answer was not cut by max_tokens",
                "pass",
                "no finish reason says the limit was hit",
                None,
            )),
        },
    }
    Ok(findings)
}
