//! Turning command-line options into a checked [`RunPlan`]: the game, its
//! instances, the models (built-in players or plugin models with their
//! keys), the limits. Everything that can be wrong with the input fails
//! here, before any episode starts, with the fix in the message.

use super::call::{CallStats, PluginModel};
use super::limits::{Limiter, RetryPolicy};
use super::{PlanModel, RunPlan};
use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::games::{self, instances, PlayerModel};
use clemhost_plugin_sdk::{GenArgs, ModelConfig};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// The run's options, parsed from the command line.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// `-g`.
    pub game: String,
    /// `-m`, in order.
    pub models: Vec<String>,
    /// `-t`.
    pub temperature: f64,
    /// `-l`.
    pub max_tokens: u32,
    /// `-e`.
    pub experiment: Option<String>,
    /// `-i`.
    pub instances: Option<PathBuf>,
    /// `-r`.
    pub results_dir: PathBuf,
    /// `--parallel` (None: from the plugins' capabilities).
    pub parallel: Option<usize>,
    /// `--resume`.
    pub resume: bool,
    /// `--max-concurrent`: in-flight calls per backend.
    pub max_concurrent: Option<usize>,
    /// `--retries`: attempts per call.
    pub tries: u32,
    /// `--retry-delay-ms`: first back-off delay.
    pub retry_base: Duration,
    /// `--timeout`: seconds per call.
    pub timeout: Option<Duration>,
    /// Print progress.
    pub show_progress: bool,
}

/// Episodes run at once when every player is built in (no model calls wait).
const BUILTIN_PARALLEL: usize = 32;
/// Default `--parallel` for a remote backend that states no preference.
const REMOTE_PARALLEL: usize = 32;

/// A `-m` argument, resolved.
enum Resolved {
    /// A built-in player and the spec recorded for it.
    Builtin(PlayerModel, Map<String, Value>),
    /// A registry entry served by a plugin.
    Plugin {
        spec: Map<String, Value>,
        backend: String,
    },
}

/// The built-in player a name stands for, as clemcore maps it.
fn builtin(name: &str) -> Option<(PlayerModel, &'static str)> {
    match name {
        "mock" | "programmatic" => {
            Some((PlayerModel::Programmed(name.into()), "_player_programmed"))
        }
        "human" | "terminal" => Some((PlayerModel::Human(name.into()), "_player_human")),
        _ => None,
    }
}

fn resolve(global: &GlobalArgs, arg: &str) -> Result<Resolved> {
    let selector = crate::registry::parse_model_arg(arg);
    let name = selector
        .get("model_name")
        .and_then(Value::as_str)
        .unwrap_or(arg)
        .to_string();
    if let Some((model, backend)) = builtin(&name) {
        let mut spec = Map::new();
        spec.insert("model_name".into(), name.into());
        spec.insert("backend".into(), backend.into());
        return Ok(Resolved::Builtin(model, spec));
    }
    let resolved = crate::registry::Registry::load(global)?.resolve(&selector)?;
    let backend = resolved.backend().to_string();
    Ok(Resolved::Plugin {
        spec: resolved.spec,
        backend,
    })
}

/// Checks the options and opens everything the run needs.
pub fn plan(global: &GlobalArgs, opts: &RunOptions, stop: Arc<AtomicBool>) -> Result<RunPlan> {
    let game = games::find_game(&opts.game).ok_or_else(|| {
        let known: Vec<&str> = games::all_games().iter().map(|g| g.name()).collect();
        Error::msg(format!(
            "unknown game '{}'; known games: {}",
            opts.game,
            known.join(", ")
        ))
    })?;

    // Instances.
    let file =
        instances::load(game, opts.instances.as_deref()).map_err(|e| Error::msg(e.to_string()))?;
    let mut experiments = file.experiments;
    if let Some(name) = &opts.experiment {
        let known: Vec<String> = experiments.iter().map(|e| e.name.clone()).collect();
        experiments.retain(|e| &e.name == name);
        if experiments.is_empty() {
            return Err(Error::msg(format!(
                "{} has no experiment '{name}'; its experiments are: {}",
                file.path.as_ref().map_or_else(
                    || format!("{}'s instances", game.name()),
                    |p| p.display().to_string()
                ),
                known.join(", ")
            )));
        }
    }
    let game_path = match &file.path {
        Some(p) => p
            .parent()
            .and_then(|d| d.parent())
            .and_then(|d| std::fs::canonicalize(d).ok())
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        None => format!("<shipped with clemhost>/games/{}", game.name()),
    };

    // Models: one per model player; one model plays every role (self-play).
    let needed = game.model_players();
    let given = opts.models.len();
    let args: Vec<&String> = if given == needed {
        opts.models.iter().collect()
    } else if given == 1 {
        vec![&opts.models[0]; needed]
    } else {
        return Err(Error::msg(format!(
            "{} takes {needed} model{} but {given} were given ({}); pass -m {}",
            game.name(),
            if needed == 1 { "" } else { "s" },
            opts.models.join(", "),
            if needed == 1 {
                "once".to_string()
            } else {
                format!("once (self-play) or {needed} times")
            }
        )));
    };

    let gen_args = GenArgs {
        temperature: opts.temperature,
        max_tokens: opts.max_tokens,
        extra: Map::new(),
    };
    let recorded_gen_args = json!({"temperature": opts.temperature, "max_tokens": opts.max_tokens});
    let retry = RetryPolicy {
        tries: opts.tries.max(1),
        base_delay: opts.retry_base,
        ..RetryPolicy::default()
    };
    let stats = Arc::new(CallStats::default());
    // Read only when a plugin model needs it, so `-m mock` never depends on key.json.
    let mut keys: Option<crate::keys::KeyStore> = None;

    let mut models = Vec::new();
    let mut default_parallel = usize::MAX;
    let mut backend_limiters: HashMap<String, Arc<Limiter>> = HashMap::new();
    let mut opened: HashMap<String, PlayerModel> = HashMap::new();
    for arg in args {
        match resolve(global, arg)? {
            Resolved::Builtin(model, spec) => {
                let p = if matches!(model, PlayerModel::Human(_)) {
                    1
                } else {
                    BUILTIN_PARALLEL
                };
                default_parallel = default_parallel.min(p);
                models.push(PlanModel { spec, model });
            }
            Resolved::Plugin { spec, backend } => {
                let key = serde_json::to_string(&spec).expect("a spec serialises");
                if let Some(model) = opened.get(&key) {
                    models.push(PlanModel {
                        spec,
                        model: model.clone(),
                    });
                    continue;
                }
                let name = spec
                    .get("model_name")
                    .and_then(Value::as_str)
                    .unwrap_or(arg)
                    .to_string();
                let plugin = crate::plugins::load_backend(global, &backend)?;
                let caps = plugin.manifest().capabilities.clone();
                if keys.is_none() && caps.key_name.is_some() {
                    keys = Some(crate::keys::KeyStore::load()?);
                }
                let keys = keys.as_ref();
                let credentials = match (&caps.key_name, keys) {
                    (Some(k), Some(ks)) if caps.requires_key => Some(ks.require_for(&backend, k)?),
                    (Some(k), Some(ks)) => ks.credentials(k),
                    _ => None,
                };
                let config = ModelConfig {
                    spec: spec.clone(),
                    credentials,
                    gen_args: gen_args.clone(),
                    cache_dir: None,
                };
                let handle = plugin.create_model(&config).map_err(|e| {
                    Error::msg(format!(
                        "cannot open model '{name}' with plugin {} (backend '{backend}'): {e}",
                        plugin.path().display()
                    ))
                })?;
                let p = if caps.max_concurrency > 0 {
                    caps.max_concurrency as usize
                } else if caps.remote {
                    REMOTE_PARALLEL
                } else if caps.concurrent_generate {
                    8
                } else {
                    1
                };
                default_parallel = default_parallel.min(p);

                // Limits: the model's own (registry rate_limit; one at a time
                // when the plugin cannot generate concurrently) and the backend's.
                let (rl_max, rl_rpm) = rate_limit(&spec, &name)?;
                let model_max = match (caps.concurrent_generate, rl_max) {
                    (false, _) => 1,
                    (true, Some(m)) => m,
                    (true, None) => 0,
                };
                let mut limiters = vec![Arc::new(Limiter::new(model_max, rl_rpm))];
                if let Some(m) = opts.max_concurrent {
                    let l = backend_limiters
                        .entry(backend.clone())
                        .or_insert_with(|| Arc::new(Limiter::new(m, 0.0)));
                    limiters.push(l.clone());
                }
                // clemcore decorates every backend's responses with
                // `clem_player` except llamacpp's.
                let decorate = backend != "llamacpp";
                let model = PlayerModel::Model(Arc::new(PluginModel::new(
                    name,
                    handle,
                    decorate,
                    gen_args.clone(),
                    limiters,
                    retry.clone(),
                    opts.timeout,
                    stop.clone(),
                    stats.clone(),
                )));
                opened.insert(key, model.clone());
                models.push(PlanModel { spec, model });
            }
        }
    }
    let has_human = models
        .iter()
        .any(|m| matches!(m.model, PlayerModel::Human(_)));
    let mut parallel = opts.parallel.unwrap_or(default_parallel).max(1);
    if has_human && parallel > 1 {
        tracing::warn!("a human player answers one episode at a time; playing with --parallel 1");
        parallel = 1;
    }

    Ok(RunPlan {
        game,
        game_path,
        experiments,
        models,
        gen_args: recorded_gen_args,
        results_dir: opts.results_dir.clone(),
        parallel,
        resume: opts.resume,
        show_progress: opts.show_progress && !has_human,
        stats,
    })
}

/// Reads a registry entry's optional `rate_limit` object:
/// `{"max_concurrent": N, "requests_per_minute": M}`.
pub fn rate_limit(spec: &Map<String, Value>, name: &str) -> Result<(Option<usize>, f64)> {
    let Some(rl) = spec.get("rate_limit") else {
        return Ok((None, 0.0));
    };
    let bad = |field: &str| {
        Error::msg(format!(
            "model '{name}': rate_limit.{field} must be a positive number; fix the registry entry"
        ))
    };
    let obj = rl.as_object().ok_or_else(|| {
        Error::msg(format!(
            "model '{name}': rate_limit must be an object like {{\"max_concurrent\": 4, \"requests_per_minute\": 60}}"
        ))
    })?;
    let max = match obj.get("max_concurrent") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad("max_concurrent"))? as usize,
        ),
    };
    let rpm = match obj.get("requests_per_minute") {
        None | Some(Value::Null) => 0.0,
        Some(v) => v
            .as_f64()
            .filter(|n| *n > 0.0)
            .ok_or_else(|| bad("requests_per_minute"))?,
    };
    Ok((max, rpm))
}
