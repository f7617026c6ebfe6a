//! Opening models: "these models, behind these plugins, with these
//! limits", as one library call ([`open_models`]) that `clemhost run`,
//! `doctor` and `serve` share. Everything that can be wrong with a model
//! (unknown name, no plugin, no key, a bad `rate_limit`, a plugin that
//! refuses the entry) fails here, before any episode or request, with the
//! fix in the message.

use super::call::{CallStats, PluginModel};
use super::limits::{Limiter, MIN_REQUESTS_PER_MINUTE};
use super::plan::ModelLimits;
use super::StopToken;
use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::games::PlayerModel;
use crate::registry::Registry;
use clemhost_plugin_sdk::{GenArgs, ModelConfig};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

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

/// The names of the built-in players (registry entries may not take them).
pub const BUILTIN_PLAYERS: &[&str] = &["mock", "programmatic", "human", "terminal"];

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

fn resolve(registry: &Registry, arg: &str) -> Result<Resolved> {
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
    let resolved = registry.resolve(&selector)?;
    let backend = resolved.backend().to_string();
    Ok(Resolved::Plugin {
        spec: resolved.spec,
        backend,
    })
}

/// One opened model.
#[derive(Clone)]
pub struct OpenModel {
    /// The resolved registry entry (or a built-in player's spec), as
    /// recorded in `player_models`.
    pub spec: Map<String, Value>,
    /// Who answers, as a game's player uses it.
    pub player: PlayerModel,
    /// The model behind its plugin (`None` for built-in players), for
    /// callers that send requests themselves (`serve`).
    pub plugin: Option<Arc<PluginModel>>,
    /// The bounds on its calls that its plugin and registry entry set.
    pub bounds: ModelBounds,
}

/// What a model's plugin and registry entry allow, for callers that admit
/// calls themselves (`serve` sizes each model's gate from it; `run`'s
/// limiters inside [`PluginModel`] enforce the same numbers).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelBounds {
    /// Calls at once the plugin suggests (its capabilities; for built-in
    /// players, how many episodes may play at once).
    pub suggested: usize,
    /// The most calls at once: 1 when the plugin cannot generate
    /// concurrently, else the entry's `rate_limit.max_concurrent`; `None`: no
    /// bound of the model's own.
    pub max_concurrent: Option<usize>,
    /// The entry's `rate_limit.requests_per_minute` (0: none).
    pub requests_per_minute: f64,
}

impl std::fmt::Debug for OpenModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenModel")
            .field("spec", &self.spec)
            .field("player", &self.player)
            .finish()
    }
}

impl OpenModel {
    /// The model's name (`model_name`).
    pub fn name(&self) -> &str {
        self.player.name()
    }
}

/// The models of one run (or one `serve` process).
#[derive(Debug)]
pub struct OpenModels {
    /// One per selector, in order. A selector given twice is opened once
    /// and shared.
    pub models: Vec<OpenModel>,
    /// How many episodes (or requests) the plugins suggest at once: the
    /// smallest of their preferences (1 when a human plays).
    pub suggested_parallel: usize,
    /// Call totals of every model.
    pub stats: Arc<CallStats>,
}

/// Opens the models named by `selectors` (registry names, built-in players
/// or JSON selectors, as `-m` takes them): resolves each in `registry`,
/// finds and checks its plugin on the search path of `plugins`
/// (`--plugin-dir`), reads its key only when its plugin needs one, and opens
/// it with `gen_args` and `limits`. Every call of every model reads `stop`
/// as its cancel flag.
///
/// Load the registry once ([`Registry::load`]) and call this once per set
/// of models; the handles live as long as the returned value (and clones
/// of its models).
pub fn open_models(
    registry: &Registry,
    plugins: &GlobalArgs,
    selectors: &[String],
    gen_args: &GenArgs,
    limits: &ModelLimits,
    stop: &StopToken,
) -> Result<OpenModels> {
    let stats = Arc::new(CallStats::default());
    // Read only when a plugin model needs it, so `-m mock` never depends on key.json.
    let mut keys: Option<crate::keys::KeyStore> = None;

    let mut models = Vec::new();
    let mut default_parallel = usize::MAX;
    let mut backend_limiters: HashMap<String, Arc<Limiter>> = HashMap::new();
    let mut opened: HashMap<String, OpenModel> = HashMap::new();
    for arg in selectors {
        match resolve(registry, arg)? {
            Resolved::Builtin(model, spec) => {
                let p = if matches!(model, PlayerModel::Human(_)) {
                    1
                } else {
                    BUILTIN_PARALLEL
                };
                default_parallel = default_parallel.min(p);
                models.push(OpenModel {
                    spec,
                    player: model,
                    plugin: None,
                    bounds: ModelBounds {
                        suggested: p,
                        max_concurrent: None,
                        requests_per_minute: 0.0,
                    },
                });
            }
            Resolved::Plugin { spec, backend } => {
                let key = serde_json::to_string(&spec).expect("a spec serialises");
                if let Some(model) = opened.get(&key) {
                    models.push(model.clone());
                    continue;
                }
                let name = spec
                    .get("model_name")
                    .and_then(Value::as_str)
                    .unwrap_or(arg)
                    .to_string();
                let plugin = crate::plugins::load_backend(plugins, &backend)?;
                let caps = plugin.manifest().capabilities.clone();
                let credentials =
                    crate::keys::credentials_for_model(&mut keys, &backend, &caps, &spec)?;
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
                let (rl_max, rl_rpm) = rate_limit(&spec, &name, registry)?;
                let model_max = match (caps.concurrent_generate, rl_max) {
                    (false, _) => Some(1),
                    (true, m) => m,
                };
                // The most calls this model will see at once: the run's
                // episodes in flight, never above what the plugin suggests
                // or any limit in front of it.
                let concurrency = [
                    limits.concurrency,
                    Some(p),
                    model_max,
                    limits.max_concurrent_per_backend,
                ]
                .into_iter()
                .flatten()
                .min()
                .map(|c| u32::try_from(c.max(1)).unwrap_or(u32::MAX));
                let config = ModelConfig {
                    spec: spec.clone(),
                    credentials,
                    gen_args: gen_args.clone(),
                    concurrency,
                };
                let handle = plugin.create_model(&config).map_err(|e| {
                    Error::msg(format!(
                        "cannot open model '{name}' with plugin {} (backend '{backend}'): {e}",
                        plugin.path().display()
                    ))
                })?;
                let bounds = ModelBounds {
                    suggested: p,
                    max_concurrent: model_max,
                    requests_per_minute: rl_rpm,
                };
                let mut limiters = vec![Arc::new(Limiter::new(model_max.unwrap_or(0), rl_rpm))];
                if let Some(m) = limits.max_concurrent_per_backend {
                    let l = backend_limiters
                        .entry(backend.clone())
                        .or_insert_with(|| Arc::new(Limiter::new(m, 0.0)));
                    limiters.push(l.clone());
                }
                // The plugin says whether clemcore's backend adds `clem_player`.
                let decorate = !caps.raw_response_as_is;
                let chat = Arc::new(PluginModel::new(
                    name,
                    handle,
                    decorate,
                    gen_args.clone(),
                    limiters,
                    limits.calls.clone(),
                    stop.clone(),
                    stats.clone(),
                ));
                let model = OpenModel {
                    spec,
                    player: PlayerModel::Model(chat.clone()),
                    plugin: Some(chat),
                    bounds,
                };
                opened.insert(key, model.clone());
                models.push(model);
            }
        }
    }
    let has_human = models
        .iter()
        .any(|m| matches!(m.player, PlayerModel::Human(_)));
    Ok(OpenModels {
        models,
        suggested_parallel: if has_human {
            1
        } else {
            default_parallel.max(1)
        },
        stats,
    })
}

/// Reads a registry entry's optional `rate_limit` object:
/// `{"max_concurrent": N, "requests_per_minute": M}`.
/// `requests_per_minute` must be at least [`MIN_REQUESTS_PER_MINUTE`] (one
/// call an hour): a smaller rate would hold the run for days.
fn rate_limit(
    spec: &Map<String, Value>,
    name: &str,
    registry: &Registry,
) -> Result<(Option<usize>, f64)> {
    let Some(rl) = spec.get("rate_limit") else {
        return Ok((None, 0.0));
    };
    let source = spec
        .get("lookup_source")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| registry.files().join(", "));
    let bad = |field: &str, rule: &str| {
        Error::msg(format!(
            "{source}: model '{name}': rate_limit.{field} {rule}; fix the registry entry"
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
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| bad("max_concurrent", "must be a positive integer"))?,
        ),
    };
    let rpm = match obj.get("requests_per_minute") {
        None | Some(Value::Null) => 0.0,
        Some(v) => v
            .as_f64()
            .filter(|n| n.is_finite() && *n >= MIN_REQUESTS_PER_MINUTE)
            .ok_or_else(|| {
                bad(
                    "requests_per_minute",
                    &format!(
                        "must be a number of at least {MIN_REQUESTS_PER_MINUTE:.4} (one call an hour), not {v}"
                    ),
                )
            })?,
    };
    Ok((max, rpm))
}
