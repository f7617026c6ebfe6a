//! The llama.cpp side: one loaded model, one context, one worker thread that
//! runs every waiting request as a parallel sequence of one batch.
//!
//! [`Engine::load`] opens the GGUF and starts the worker. [`Engine::submit`]
//! queues a [`Job`] (prompt tokens, budget, sampling) and returns a
//! [`Ticket`] to wait on. The worker admits queued jobs into free sequence
//! slots, prefills each admitted prompt on its own (so a prompt is processed
//! exactly as it would be alone), then advances every running sequence by one
//! token per `llama_decode` call: one batch, one token per sequence, each under
//! its own sequence id. Greedy decoding picks the first highest logit, as
//! llama.cpp's greedy sampler does; temperature > 0 samples with a seeded
//! chain.
//!
//! Every slot owns a KV-cache stream of its own (llama.cpp's non-unified
//! cache): a sequence's cells always start at cell 0 and attention only
//! reads that sequence's cells, so what one request computes does not depend
//! on where other requests sit in the cache, and a step over ten sequences
//! does not attend over ten sequences' cells.

use clemhost_plugin_sdk::log;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What can go wrong inside the engine.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// llama.cpp could not be initialised.
    #[error("llama.cpp backend: {0}")]
    Backend(String),
    /// The GGUF file could not be loaded.
    #[error("cannot load {path}: {reason}")]
    Load {
        /// The file.
        path: String,
        /// llama.cpp's reason (see its log for details).
        reason: String,
    },
    /// The context could not be created (usually: not enough memory for the KV cache).
    #[error("cannot create a llama.cpp context of {cells} KV cells: {reason}")]
    Context {
        /// KV cells asked for.
        cells: u32,
        /// llama.cpp's reason.
        reason: String,
    },
    /// A `llama_decode` call failed.
    #[error("llama_decode failed: {0}")]
    Decode(String),
    /// The prompt plus budget do not fit one sequence's context.
    #[error("{needed} tokens (prompt + max_tokens) do not fit the context of {cells} tokens")]
    TooLarge {
        /// Prompt tokens plus budget.
        needed: u64,
        /// The context size of one sequence.
        cells: u32,
    },
    /// The request was cancelled (by the caller or because the engine stops).
    #[error("cancelled")]
    Cancelled,
    /// The worker thread is gone.
    #[error("the llama.cpp worker thread stopped")]
    WorkerGone,
}

/// How the engine is set up.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    /// CPU threads for prompt processing and generation.
    pub threads: u32,
    /// Context size per sequence; `None`: the model's training context.
    pub n_ctx: Option<u32>,
    /// The most sequences decoded together; `None`: as many as fit
    /// `kv_cache_mib` (at least 1, at most [`MAX_PARALLEL`]).
    pub parallel: Option<u32>,
    /// Memory for the KV cache of all sequences together, used to choose
    /// `parallel` when it is not given.
    pub kv_cache_mib: u32,
    /// The most prompt tokens per decode call.
    pub n_batch: u32,
    /// Layers to offload to a GPU (`None`: all, in GPU builds).
    pub gpu_layers: Option<u32>,
    /// Use flash attention.
    pub flash_attention: bool,
}

/// The most sequences the engine decodes together when the caller does not say.
pub const MAX_PARALLEL: u32 = 16;

/// The KV-cache memory the engine sizes `parallel` by when the caller does
/// not say (MiB).
pub const DEFAULT_KV_CACHE_MIB: u32 = 2048;

/// Bytes of KV cache one token of one sequence takes: K and V of every
/// layer, in f16 (llama.cpp's default cache type).
fn kv_bytes_per_token(model: &LlamaModel) -> u64 {
    let layers = u64::from(model.n_layer());
    let heads = u64::from(model.n_head()).max(1);
    let kv_heads = u64::from(model.n_head_kv()).max(1);
    let head_dim = (u64::try_from(model.n_embd()).unwrap_or(0) / heads).max(1);
    layers * 2 * kv_heads * head_dim * 2
}

/// How many sequences fit `budget_mib` of KV cache at `n_ctx` tokens each.
pub fn parallel_for_budget(bytes_per_token: u64, n_ctx: u32, budget_mib: u32) -> u32 {
    let per_sequence = bytes_per_token.max(1) * u64::from(n_ctx.max(1));
    let fit = u64::from(budget_mib) * 1024 * 1024 / per_sequence;
    u32::try_from(fit)
        .unwrap_or(MAX_PARALLEL)
        .clamp(1, MAX_PARALLEL)
}

/// How to choose the next token.
#[derive(Clone, Debug, PartialEq)]
pub enum Sampling {
    /// The highest logit (the first one on ties).
    Greedy,
    /// llama-cpp-python's default chain for a completion call: top-k 40,
    /// top-p, min-p 0.05, temperature, then a seeded draw.
    Random {
        /// Temperature (> 0).
        temperature: f32,
        /// Nucleus threshold.
        top_p: f32,
        /// The seed of the draw.
        seed: u32,
    },
}

/// One generation request.
#[derive(Clone, Debug)]
pub struct Job {
    /// The prompt, already tokenised.
    pub prompt: Vec<LlamaToken>,
    /// The most tokens to generate.
    pub max_new_tokens: u32,
    /// How to pick tokens.
    pub sampling: Sampling,
    /// Keep going past end-of-generation tokens (benchmarks only).
    pub ignore_eos: bool,
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-generation token came (it is not part of the output).
    Stop,
    /// `max_new_tokens` were generated.
    Length,
}

impl Finish {
    /// The OpenAI-style name (`stop` / `length`).
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// What the engine produced for one job.
#[derive(Clone, Debug)]
pub struct Completion {
    /// Generated tokens, without the end-of-generation token.
    pub tokens: Vec<LlamaToken>,
    /// Why it ended.
    pub finish: Finish,
    /// Time spent waiting for a free slot.
    pub queued: Duration,
    /// Time of the prompt's forward pass (including the first token's choice).
    pub prefill: Duration,
    /// Time from the first to the last generated token.
    pub decode: Duration,
}

type Reply = Result<Completion, EngineError>;

struct Queued {
    job: Job,
    cancel: Arc<AtomicBool>,
    reply: mpsc::Sender<Reply>,
    since: Instant,
}

#[derive(Default)]
struct QueueState {
    waiting: VecDeque<Queued>,
    shutdown: bool,
}

struct Shared {
    state: Mutex<QueueState>,
    wake: Condvar,
    /// The most sequences one decode step has carried so far.
    peak_parallel: AtomicU32,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // A poisoned lock only means another thread panicked while holding
        // it; the queue itself is still consistent (push/pop are atomic).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A handle on one queued job.
pub struct Ticket {
    cancel: Arc<AtomicBool>,
    reply: mpsc::Receiver<Reply>,
}

impl Ticket {
    /// Waits up to `timeout` for the result; `None` while it is still running.
    pub fn wait(&self, timeout: Duration) -> Option<Reply> {
        match self.reply.recv_timeout(timeout) {
            Ok(r) => Some(r),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => Some(Err(EngineError::WorkerGone)),
        }
    }

    /// Asks the worker to drop the job at its next step.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // A caller that stops waiting does not want the tokens any more.
        self.cancel();
    }
}

/// A loaded GGUF model and its worker thread.
pub struct Engine {
    model: Arc<LlamaModel>,
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
    n_ctx: u32,
    parallel: u32,
}

fn backend() -> Result<&'static LlamaBackend, EngineError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            crate::llama_log::install();
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| EngineError::Backend(e.clone()))
}

impl Engine {
    /// Loads a GGUF file and starts the worker thread.
    pub fn load(path: &Path, config: &EngineConfig) -> Result<Engine, EngineError> {
        let backend = backend()?;
        let mut params = LlamaModelParams::default();
        if cfg!(feature = "cuda") {
            params = params.with_n_gpu_layers(config.gpu_layers.unwrap_or(u32::MAX / 2));
        }
        let model =
            LlamaModel::load_from_file(backend, path, &params).map_err(|e| EngineError::Load {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        let model = Arc::new(model);
        let n_ctx = config.n_ctx.unwrap_or_else(|| model.n_ctx_train()).max(16);
        // llama.cpp gives each sequence a multiple of 256 cells; requests
        // are still held to `n_ctx`.
        let stream = n_ctx.next_multiple_of(256);
        let parallel = config
            .parallel
            .unwrap_or_else(|| {
                parallel_for_budget(kv_bytes_per_token(&model), stream, config.kv_cache_mib)
            })
            .max(1);
        let cells = stream.saturating_mul(parallel);
        let ctx_params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(cells))
            .with_n_batch(config.n_batch)
            .with_n_ubatch(config.n_batch)
            .with_n_seq_max(parallel)
            .with_kv_unified(false)
            .with_n_threads(i32::try_from(config.threads).unwrap_or(i32::MAX))
            .with_n_threads_batch(i32::try_from(config.threads).unwrap_or(i32::MAX))
            .with_flash_attention_policy(if config.flash_attention {
                llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED
            } else {
                llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED
            });
        let shared = Arc::new(Shared {
            state: Mutex::new(QueueState::default()),
            wake: Condvar::new(),
            peak_parallel: AtomicU32::new(0),
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let worker = {
            let model = Arc::clone(&model);
            let shared = Arc::clone(&shared);
            let n_batch = config.n_batch as usize;
            std::thread::Builder::new()
                .name("llamacpp-worker".into())
                .spawn(move || {
                    let ctx = match model.new_context(backend, ctx_params) {
                        Ok(ctx) => ctx,
                        Err(e) => {
                            let _ = ready_tx.send(Err(EngineError::Context {
                                cells,
                                reason: e.to_string(),
                            }));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    Worker {
                        model: &model,
                        ctx,
                        shared: &shared,
                        n_batch,
                        slots: (0..parallel).map(|_| None).collect(),
                    }
                    .run();
                })
                .map_err(|e| EngineError::Backend(format!("cannot start the worker thread: {e}")))?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = worker.join();
                return Err(e);
            }
            Err(_) => {
                let _ = worker.join();
                return Err(EngineError::WorkerGone);
            }
        }
        Ok(Engine {
            model,
            shared,
            worker: Some(worker),
            n_ctx,
            parallel,
        })
    }

    /// The model, for tokenising and reading metadata.
    pub fn model(&self) -> &LlamaModel {
        &self.model
    }

    /// The context size one sequence may use.
    pub fn n_ctx(&self) -> u32 {
        self.n_ctx
    }

    /// The most sequences decoded together (each with `n_ctx` cells of KV cache).
    pub fn parallel(&self) -> u32 {
        self.parallel
    }

    /// The most sequences one decode step has carried so far (1 when
    /// requests never overlapped, 0 before the first step).
    pub fn peak_parallel(&self) -> u32 {
        self.shared.peak_parallel.load(Ordering::Relaxed)
    }

    /// Queues a job; the result arrives on the ticket.
    pub fn submit(&self, job: Job) -> Result<Ticket, EngineError> {
        let needed = job.prompt.len() as u64 + u64::from(job.max_new_tokens);
        if needed > u64::from(self.n_ctx) {
            return Err(EngineError::TooLarge {
                needed,
                cells: self.n_ctx,
            });
        }
        let (tx, rx) = mpsc::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        {
            let mut state = self.shared.lock();
            if state.shutdown {
                return Err(EngineError::WorkerGone);
            }
            state.waiting.push_back(Queued {
                job,
                cancel: Arc::clone(&cancel),
                reply: tx,
                since: Instant::now(),
            });
        }
        self.shared.wake.notify_all();
        Ok(Ticket { cancel, reply: rx })
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// A sequence being generated.
struct Running {
    queued: Queued,
    sampler: LlamaSampler,
    /// Tokens in the KV cache for this sequence (the next position).
    n_past: i32,
    /// The token to feed at the next step.
    next: LlamaToken,
    output: Vec<LlamaToken>,
    prefill: Duration,
    decode_start: Instant,
    queue_time: Duration,
}

struct Worker<'m> {
    model: &'m LlamaModel,
    ctx: llama_cpp_2::context::LlamaContext<'m>,
    shared: &'m Shared,
    n_batch: usize,
    slots: Vec<Option<Running>>,
}

fn sampler_for(sampling: &Sampling) -> LlamaSampler {
    match sampling {
        Sampling::Greedy => LlamaSampler::greedy(),
        Sampling::Random {
            temperature,
            top_p,
            seed,
        } => LlamaSampler::chain_simple([
            LlamaSampler::top_k(40),
            LlamaSampler::top_p(*top_p, 1),
            LlamaSampler::min_p(0.05, 1),
            LlamaSampler::temp(*temperature),
            LlamaSampler::dist(*seed),
        ]),
    }
}

impl Worker<'_> {
    fn active(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    fn run(mut self) {
        let shared = self.shared;
        loop {
            let admitted = {
                let mut state = shared.lock();
                while state.waiting.is_empty() && self.active() == 0 && !state.shutdown {
                    state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                if state.shutdown {
                    for q in state.waiting.drain(..) {
                        let _ = q.reply.send(Err(EngineError::Cancelled));
                    }
                    drop(state);
                    self.fail_all(EngineError::Cancelled);
                    return;
                }
                let mut free = (0..self.slots.len())
                    .filter(|&s| self.slots[s].is_none())
                    .collect::<Vec<_>>()
                    .into_iter();
                let mut admitted = Vec::new();
                while let Some(front) = state.waiting.front() {
                    if front.cancel.load(Ordering::Relaxed) {
                        state.waiting.pop_front();
                        continue;
                    }
                    // First come, first served; every slot has room for
                    // any job `submit` accepted.
                    let Some(slot) = free.next() else { break };
                    let q = state.waiting.pop_front().expect("front() was Some");
                    admitted.push((slot, q));
                }
                admitted
            };
            for (slot, q) in admitted {
                self.start(slot, q);
            }
            self.step();
        }
    }

    /// Prefills one admitted job and chooses its first token.
    fn start(&mut self, slot: usize, q: Queued) {
        let queue_time = q.since.elapsed();
        if q.cancel.load(Ordering::Relaxed) {
            let _ = q.reply.send(Err(EngineError::Cancelled));
            return;
        }
        let started = Instant::now();
        if q.job.max_new_tokens == 0 || q.job.prompt.is_empty() {
            let _ = q.reply.send(Ok(Completion {
                tokens: Vec::new(),
                finish: Finish::Length,
                queued: queue_time,
                prefill: Duration::ZERO,
                decode: Duration::ZERO,
            }));
            return;
        }
        let seq = i32::try_from(slot).expect("slot count fits in i32");
        let mut batch = LlamaBatch::new(self.n_batch, 1);
        let n = q.job.prompt.len();
        let mut last_index = 0;
        for (chunk_no, chunk) in q.job.prompt.chunks(self.n_batch).enumerate() {
            if q.cancel.load(Ordering::Relaxed) {
                self.abandon(seq, &q, EngineError::Cancelled);
                return;
            }
            batch.clear();
            let base = chunk_no * self.n_batch;
            for (i, tok) in chunk.iter().enumerate() {
                let pos = base + i;
                let is_last = pos + 1 == n;
                if let Err(e) = batch.add(*tok, pos as i32, &[seq], is_last) {
                    self.abandon(seq, &q, EngineError::Decode(e.to_string()));
                    return;
                }
                if is_last {
                    last_index = i as i32;
                }
            }
            if let Err(e) = self.ctx.decode(&mut batch) {
                self.abandon(seq, &q, EngineError::Decode(e.to_string()));
                return;
            }
        }
        let mut sampler = sampler_for(&q.job.sampling);
        let first = sampler.sample(&self.ctx, last_index);
        let prefill = started.elapsed();
        let mut running = Running {
            queued: q,
            sampler,
            n_past: i32::try_from(n).unwrap_or(i32::MAX),
            next: first,
            output: Vec::new(),
            prefill,
            decode_start: Instant::now(),
            queue_time,
        };
        match self.accept(&mut running, first) {
            Some(finish) => self.finish(slot, running, finish),
            None => self.slots[slot] = Some(running),
        }
    }

    /// Records a chosen token; `Some` when the sequence is done.
    fn accept(&self, running: &mut Running, token: LlamaToken) -> Option<Finish> {
        if !running.queued.job.ignore_eos && self.model.vocab().is_eog(token) {
            return Some(Finish::Stop);
        }
        running.output.push(token);
        running.next = token;
        if running.output.len() >= running.queued.job.max_new_tokens as usize {
            return Some(Finish::Length);
        }
        None
    }

    fn release(&mut self, seq: i32) {
        if let Err(e) = self
            .ctx
            .clear_kv_cache_seq(u32::try_from(seq).ok(), None, None)
        {
            log::warn!("could not clear the KV cache of sequence {seq}: {e}");
        }
    }

    fn abandon(&mut self, seq: i32, q: &Queued, err: EngineError) {
        self.release(seq);
        let _ = q.reply.send(Err(err));
    }

    fn finish(&mut self, slot: usize, running: Running, finish: Finish) {
        let seq = i32::try_from(slot).expect("slot count fits in i32");
        self.release(seq);
        let decode = if running.output.len() > 1 {
            running.decode_start.elapsed()
        } else {
            Duration::ZERO
        };
        let _ = running.queued.reply.send(Ok(Completion {
            tokens: running.output,
            finish,
            queued: running.queue_time,
            prefill: running.prefill,
            decode,
        }));
    }

    fn fail_all(&mut self, err: EngineError) {
        for slot in 0..self.slots.len() {
            if let Some(running) = self.slots[slot].take() {
                let seq = i32::try_from(slot).expect("slot count fits in i32");
                self.release(seq);
                let _ = running.queued.reply.send(Err(err.clone()));
            }
        }
    }

    /// Advances every running sequence by one token, in one batch.
    fn step(&mut self) {
        // Drop cancelled sequences first.
        for slot in 0..self.slots.len() {
            let cancelled = self.slots[slot]
                .as_ref()
                .is_some_and(|r| r.queued.cancel.load(Ordering::Relaxed));
            if cancelled {
                if let Some(running) = self.slots[slot].take() {
                    let seq = i32::try_from(slot).expect("slot count fits in i32");
                    self.release(seq);
                    let _ = running.queued.reply.send(Err(EngineError::Cancelled));
                }
            }
        }
        let order: Vec<usize> = (0..self.slots.len())
            .filter(|&s| self.slots[s].is_some())
            .collect();
        if order.is_empty() {
            return;
        }
        self.shared.peak_parallel.fetch_max(
            u32::try_from(order.len()).unwrap_or(u32::MAX),
            Ordering::Relaxed,
        );
        let mut batch = LlamaBatch::new(order.len(), 1);
        for &slot in &order {
            let running = self.slots[slot]
                .as_ref()
                .expect("filtered to running slots");
            let seq = i32::try_from(slot).expect("slot count fits in i32");
            if let Err(e) = batch.add(running.next, running.n_past, &[seq], true) {
                self.fail_all(EngineError::Decode(e.to_string()));
                return;
            }
        }
        if let Err(e) = self.ctx.decode(&mut batch) {
            log::error!(
                "llama_decode failed for a batch of {} sequences: {e}",
                order.len()
            );
            self.fail_all(EngineError::Decode(e.to_string()));
            return;
        }
        for (i, &slot) in order.iter().enumerate() {
            let Some(mut running) = self.slots[slot].take() else {
                continue;
            };
            running.n_past += 1;
            let token = running.sampler.sample(&self.ctx, i as i32);
            match self.accept(&mut running, token) {
                Some(finish) => self.finish(slot, running, finish),
                None => self.slots[slot] = Some(running),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_follows_the_kv_budget() {
        // SmolLM2-135M: 30 layers, 3 KV heads of 64 → 23,040 bytes per token.
        let smollm2 = 30 * 2 * 3 * 64 * 2;
        assert_eq!(parallel_for_budget(smollm2, 8192, 2048), 11);
        assert_eq!(parallel_for_budget(smollm2, 2048, 2048), MAX_PARALLEL);
        // Too little memory for even one sequence still runs one.
        assert_eq!(parallel_for_budget(smollm2, 8192, 1), 1);
        assert_eq!(parallel_for_budget(0, 0, 0), 1);
    }
}
