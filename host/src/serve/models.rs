//! The served models: which registry entries are served, opening each
//! (at start with `-m`, else on first use), and one call to a model with
//! its gate, deadline, cancel flag and retries.
//!
//! Models are opened by the run pipeline's [`runner::open_models`] (plugin,
//! key policy, `create_model`, the bounds from the plugin's capabilities
//! and the entry's `rate_limit`), exactly as `clemhost run` opens them;
//! [`open_served`] only puts a gate in front of the opened model.

use super::gate::{Gate, QueueFull};
use crate::cli::GlobalArgs;
use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::results::Timestamp;
use crate::runner::call::PluginModel;
use crate::runner::limits::RetryPolicy;
use crate::runner::{self, ModelLimits, StopToken};
use clemhost_plugin_sdk::abi::CANCEL_REQUESTED;
use clemhost_plugin_sdk::{BackendError, ErrorKind, GenArgs, GenerateRequest, Generation, Message};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, OnceCell};
use tokio::time::Instant;

/// How requests reach models, from the command line.
#[derive(Clone, Debug)]
pub struct Limits {
    /// `--max-concurrent`: the most requests at one model's plugin (None:
    /// what the plugin's capabilities suggest).
    pub max_concurrent: Option<usize>,
    /// `--queue`: the most requests waiting per model.
    pub queue: usize,
}

/// A model opened behind its plugin.
pub struct ServedModel {
    /// The served name (the entry's `model_name`).
    pub name: String,
    model: Arc<PluginModel>,
    /// The way in.
    pub gate: Gate,
    counter: AtomicU64,
}

/// Opens the model `selector` names with [`runner::open_models`] and puts a
/// gate in front of it: `--max-concurrent` (else what the plugin
/// suggests), never more than the model's own bound (its `rate_limit`, 1
/// for a plugin that cannot generate concurrently). Blocking (a local
/// backend loads its weights here).
///
/// Requests bring their own generation arguments, so the model is opened
/// with none; `serve` applies `--max-concurrent` per model at the gate, not
/// per backend. `stop` is the model's stop token; serve's calls use a
/// cancel flag of their own per request (see [`ServedModel::answer`]).
pub fn open_served(
    registry: &Registry,
    plugins: &GlobalArgs,
    selector: &str,
    limits: &Limits,
    stop: &StopToken,
) -> Result<ServedModel> {
    let opened = runner::open_models(
        registry,
        plugins,
        &[selector.to_string()],
        &GenArgs::default(),
        &ModelLimits {
            concurrency: limits.max_concurrent,
            ..ModelLimits::default()
        },
        stop,
    )?;
    let Some(open) = opened.models.into_iter().next() else {
        return Err(Error::msg(format!("no model opened for '{selector}'")));
    };
    let Some(model) = open.plugin.clone() else {
        return Err(builtin_player(selector));
    };
    let bounds = open.bounds;
    let mut limit = limits.max_concurrent.unwrap_or(bounds.suggested);
    if let Some(m) = bounds.max_concurrent {
        limit = limit.min(m);
    }
    Ok(ServedModel {
        name: open.name().to_string(),
        model,
        gate: Gate::new(limit.max(1), limits.queue, bounds.requests_per_minute),
        counter: AtomicU64::new(0),
    })
}

fn builtin_player(arg: &str) -> Error {
    Error::msg(format!(
        "'{arg}' is a built-in player of `clemhost run`, not a model; serve a registry model instead"
    ))
}

/// One served name: its entry, and the model once it is open.
pub struct Slot {
    /// The served name.
    pub name: String,
    /// The entry's backend.
    pub backend: String,
    /// Where the backend's plugin was found.
    pub plugin_path: PathBuf,
    /// What [`runner::open_models`] is asked to open (the `-m` argument, or
    /// the entry's name).
    selector: String,
    registry: Arc<Registry>,
    stop: StopToken,
    opened: Arc<OnceCell<Arc<ServedModel>>>,
    opening: tokio::sync::Mutex<()>,
}

impl Slot {
    /// The model, if it is open.
    pub fn opened(&self) -> Option<&Arc<ServedModel>> {
        self.opened.get()
    }

    /// The model, opened now if it is not yet (on a blocking thread; a
    /// failure is not kept, so a key added later is found by the next request).
    pub async fn open(&self, global: &GlobalArgs, limits: &Limits) -> Result<Arc<ServedModel>> {
        if let Some(m) = self.opened.get() {
            return Ok(m.clone());
        }
        let _one_at_a_time = self.opening.lock().await;
        if let Some(m) = self.opened.get() {
            return Ok(m.clone());
        }
        let (global, limits, selector, registry, stop) = (
            global.clone(),
            limits.clone(),
            self.selector.clone(),
            self.registry.clone(),
            self.stop.clone(),
        );
        let cell = self.opened.clone();
        // The thread keeps the model even when the request that asked for
        // it is gone, so a slow load is not thrown away.
        tokio::task::spawn_blocking(move || {
            let model = Arc::new(open_served(&registry, &global, &selector, &limits, &stop)?);
            let _ = cell.set(model.clone());
            Ok(model)
        })
        .await
        .map_err(|e| Error::msg(format!("opening the model failed: {e}")))?
    }
}

/// The models this server answers for.
pub struct ModelTable {
    slots: BTreeMap<String, Slot>,
    /// In the order of the startup line.
    order: Vec<String>,
    registry: Arc<Registry>,
    /// The stop token every served model is opened with.
    stop: StopToken,
}

impl ModelTable {
    /// The served names and their entries: the `-m` arguments, or (without
    /// any) every registry entry whose backend's plugin is installed.
    pub fn plan(global: &GlobalArgs, models: &[String]) -> Result<ModelTable> {
        let registry = Arc::new(Registry::load(global)?);
        let installed: BTreeMap<String, PathBuf> = crate::plugins::discover(global)
            .into_iter()
            .map(|c| (c.backend, c.path))
            .collect();
        let mut table = ModelTable {
            slots: BTreeMap::new(),
            order: Vec::new(),
            registry,
            stop: StopToken::new(),
        };
        let selectors: Vec<String> = if models.is_empty() {
            table
                .registry
                .entries()
                .iter()
                .filter(|e| installed.contains_key(e.backend()))
                .map(|e| e.model_name().to_string())
                .collect()
        } else {
            models.to_vec()
        };
        for arg in selectors {
            let resolved = table
                .registry
                .resolve(&crate::registry::parse_model_arg(&arg))?;
            if resolved.is_builtin() {
                return Err(builtin_player(&arg));
            }
            let name = resolved.model_name().to_string();
            if table.slots.contains_key(&name) {
                continue;
            }
            let backend = resolved.backend().to_string();
            let plugin_path = match installed.get(&backend) {
                Some(p) => p.clone(),
                // Not installed: opening it says where it looked.
                None => PathBuf::new(),
            };
            table.order.push(name.clone());
            table.slots.insert(
                name.clone(),
                Slot {
                    name,
                    backend,
                    plugin_path,
                    selector: arg,
                    registry: table.registry.clone(),
                    stop: table.stop.clone(),
                    opened: Arc::new(OnceCell::new()),
                    opening: tokio::sync::Mutex::new(()),
                },
            );
        }
        if table.slots.is_empty() {
            return Err(Error::msg(
                "no model to serve: no registry entry's backend has an installed plugin; \
                 `clemhost plugins list` shows the plugins found, `clemhost models list` the entries",
            ));
        }
        Ok(table)
    }

    /// Opens every model now (for `-m`: a model that cannot be opened stops
    /// the server before it listens).
    pub fn open_all(&self, global: &GlobalArgs, limits: &Limits) -> Result<()> {
        for slot in self.slots() {
            let model = Arc::new(open_served(
                &self.registry,
                global,
                &slot.selector,
                limits,
                &self.stop,
            )?);
            let _ = slot.opened.set(model);
        }
        Ok(())
    }

    /// The slots, in the startup line's order.
    pub fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.order.iter().filter_map(|n| self.slots.get(n))
    }

    /// The slot of a served name.
    pub fn get(&self, name: &str) -> Option<&Slot> {
        self.slots.get(name)
    }

    /// Up to three served names closest to `name`, and whether `name` is in
    /// the registry at all (then it is only not served here).
    pub fn closest(&self, name: &str) -> (Vec<&str>, bool) {
        let registered = self.registry.model_names().contains(&name);
        let near = self
            .registry
            .closest_names(name, usize::MAX)
            .into_iter()
            .filter(|n| self.slots.contains_key(*n))
            .take(3)
            .collect();
        (near, registered)
    }
}

/// How one call is made.
#[derive(Clone, Debug)]
pub struct CallOptions {
    /// `--timeout`: from a request's arrival to its answer.
    pub timeout: Duration,
    /// `--retries`, `--retry-delay-ms`.
    pub retry: RetryPolicy,
}

/// Why a call gave no answer.
#[derive(Debug)]
pub enum CallError {
    /// The model's queue was full.
    QueueFull,
    /// The plugin's error (after retries), or the host's timeout.
    Backend(BackendError),
    /// The server stopped the call while shutting down.
    ShuttingDown,
}

/// A model's answer, with what `run` would record for it.
pub struct Answered {
    /// The plugin's answer.
    pub generation: Generation,
    /// The response object as `run` records it (with `clem_player` where
    /// `run` adds it).
    pub recorded_response: Value,
    /// Attempts made (more than one after retries).
    pub attempts: u32,
}

/// Sets a call's cancel flag when dropped: the handler's future is dropped
/// when the client disconnects, and the plugin then sees the flag.
pub struct CancelOnDrop(pub Arc<AtomicU8>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(CANCEL_REQUESTED, Ordering::Relaxed);
    }
}

fn timed_out(timeout: Duration) -> BackendError {
    BackendError::new(
        ErrorKind::Timeout,
        format!(
            "no answer within {:.1} s (the server's --timeout)",
            timeout.as_secs_f64()
        ),
    )
}

impl ServedModel {
    /// Answers one conversation: waits at the gate, runs the plugin's
    /// blocking `generate` on the blocking pool (so concurrent requests
    /// reach the plugin together), and retries retryable errors with back-off,
    /// all before `deadline`. `stop` turning true (shutdown past its grace
    /// period) cancels the call.
    pub async fn answer(
        &self,
        messages: Vec<Message>,
        gen_args: GenArgs,
        options: &CallOptions,
        deadline: Instant,
        cancel: &Arc<AtomicU8>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Answered, CallError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut request = GenerateRequest {
            request_id: format!("{}-serve-{n}", self.name),
            messages,
            gen_args: Some(gen_args),
            timeout_ms: None,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let slot = tokio::select! {
                s = self.gate.enter() => s.map_err(|QueueFull| CallError::QueueFull)?,
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(CallError::Backend(timed_out(options.timeout)))
                }
                _ = stop.wait_for(|s| *s) => return Err(CallError::ShuttingDown),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            request.timeout_ms = Some(left.as_millis() as u64);
            let start = Timestamp::now();
            let clock = std::time::Instant::now();
            let call = {
                let (handle, request, cancel) =
                    (self.model.handle().clone(), request.clone(), cancel.clone());
                tokio::task::spawn_blocking(move || {
                    let result = handle.generate(&request, &cancel);
                    // The slot is freed when the plugin returns, not when the
                    // client stops waiting: the limit counts real work.
                    drop(slot);
                    result
                })
            };
            let result = tokio::select! {
                joined = call => joined.unwrap_or_else(|e| {
                    Err(BackendError::new(ErrorKind::Panic, format!("the call's thread failed: {e}")))
                }),
                _ = tokio::time::sleep_until(deadline) => {
                    cancel.store(CANCEL_REQUESTED, Ordering::Relaxed);
                    Err(timed_out(options.timeout))
                }
                _ = stop.wait_for(|s| *s) => {
                    cancel.store(CANCEL_REQUESTED, Ordering::Relaxed);
                    return Err(CallError::ShuttingDown);
                }
            };
            let took = clock.elapsed();
            match result {
                Ok(g) => {
                    let recorded_response = crate::runner::call::recorded_response(
                        g.response.clone(),
                        self.model.decorates(),
                        &start,
                        took,
                        &g.text,
                        &self.name,
                    );
                    return Ok(Answered {
                        generation: g,
                        recorded_response,
                        attempts: attempt,
                    });
                }
                Err(e) => {
                    let delay = match options
                        .retry
                        .delay(attempt, e.retry_after_ms.map(Duration::from_millis))
                    {
                        Ok(d) => d,
                        Err(asked) => {
                            return Err(CallError::Backend(
                                crate::runner::call::retry_after_refused(&e, asked, &options.retry),
                            ))
                        }
                    };
                    let retry = e.kind.is_retryable()
                        && attempt < options.retry.tries
                        && Instant::now()
                            .checked_add(delay)
                            .is_some_and(|at| at < deadline);
                    if !retry {
                        return Err(CallError::Backend(e));
                    }
                    tracing::warn!(
                        model = %self.name,
                        "attempt {attempt} of {} failed ({}); trying again in {:.1} s",
                        options.retry.tries,
                        crate::error::escape_for_one_line(&e.to_string()),
                        delay.as_secs_f64()
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.wait_for(|s| *s) => return Err(CallError::ShuttingDown),
                    }
                }
            }
        }
    }
}
