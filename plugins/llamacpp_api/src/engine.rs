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
//!
//! Memory follows what the run uses: there are as many slots as requests
//! can run at once (the host's `concurrency`, unless `parallel` says
//! otherwise), and every stream starts at [`INITIAL_STREAM_CELLS`] cells and
//! doubles (up to the context size) when an admitted request needs more; the
//! context is then made again and the running sequences' cells are carried
//! over bit for bit. Requests are held to the context size, not the stream
//! size, so the context check does not change. New sequences take the lowest
//! free slot, because a decode step's attention covers every stream between
//! the lowest and the highest busy one. A prompt that starts like one that is
//! running copies that prefix's cells instead of computing them again.

use clemhost_plugin_sdk::log;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::session::LlamaStateSeqFlags;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
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
    /// The most requests the host sends at once (`ModelConfig::concurrency`);
    /// sizes `parallel` when that is not given.
    pub concurrency: Option<u32>,
}

/// The KV cells every sequence's stream starts with (or the context size,
/// when that is smaller); a stream doubles when a request needs more.
pub const INITIAL_STREAM_CELLS: u32 = 512;

/// The shortest shared prompt prefix worth copying from another sequence.
const MIN_SHARED_PREFIX: usize = 16;

/// The stream size that holds `needed` cells: `current` doubled as often as
/// needed, never above `max` (a multiple of 256).
pub fn grown_stream(current: u32, needed: u32, max: u32) -> u32 {
    let mut cells = current.max(256);
    while cells < needed && cells < max {
        cells = cells.saturating_mul(2);
    }
    cells.min(max)
}

/// How many tokens of `prompt` can be copied from a sequence whose cells
/// hold `other` (a prompt computed by a prefill): their common prefix, but
/// leaving at least two tokens to compute, so that the remaining tokens go
/// through the same matrix kernels as in a prefill of the whole prompt
/// (llama.cpp computes a single-token batch with other kernels), and only
/// when the whole prompt fits one prefill pass of `n_batch` tokens (the
/// prompt alone would be computed as one pass).
pub fn shareable_prefix(prompt: &[LlamaToken], other: &[LlamaToken], n_batch: usize) -> usize {
    if prompt.len() > n_batch {
        return 0;
    }
    let common = prompt.iter().zip(other).take_while(|(a, b)| a == b).count();
    let shared = common.min(prompt.len().saturating_sub(2));
    if shared >= MIN_SHARED_PREFIX {
        shared
    } else {
        0
    }
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
    /// The KV cells of every sequence's stream now.
    stream_cells: AtomicU32,
    /// Prompt tokens copied from other sequences instead of computed.
    shared_tokens: AtomicU64,
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
        let max_stream = n_ctx.next_multiple_of(256);
        let parallel = config
            .parallel
            .or(config.concurrency)
            .map(|p| p.min(MAX_PARALLEL))
            .unwrap_or_else(|| {
                parallel_for_budget(kv_bytes_per_token(&model), max_stream, config.kv_cache_mib)
            })
            .max(1);
        let stream = INITIAL_STREAM_CELLS.min(max_stream);
        let shared = Arc::new(Shared {
            state: Mutex::new(QueueState::default()),
            wake: Condvar::new(),
            peak_parallel: AtomicU32::new(0),
            stream_cells: AtomicU32::new(stream),
            shared_tokens: AtomicU64::new(0),
        });
        let layout = ContextLayout {
            threads: i32::try_from(config.threads).unwrap_or(i32::MAX),
            n_batch: config.n_batch,
            flash_attention: config.flash_attention,
            slots: parallel,
            max_stream,
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let worker = {
            let model = Arc::clone(&model);
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("llamacpp-worker".into())
                .spawn(move || {
                    let ctx = match layout.context(&model, backend, stream) {
                        Ok(ctx) => ctx,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    Worker {
                        model: &model,
                        backend,
                        ctx: Some(ctx),
                        shared: &shared,
                        slots: (0..parallel).map(|_| None).collect(),
                        stream,
                        layout,
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

    /// The most sequences decoded together (the sequence slots).
    pub fn parallel(&self) -> u32 {
        self.parallel
    }

    /// The KV cells each sequence slot has now (starts at
    /// [`INITIAL_STREAM_CELLS`], grows with the requests).
    pub fn stream_cells(&self) -> u32 {
        self.shared.stream_cells.load(Ordering::Relaxed)
    }

    /// Prompt tokens so far copied from another sequence's cells instead of
    /// being computed.
    pub fn shared_prompt_tokens(&self) -> u64 {
        self.shared.shared_tokens.load(Ordering::Relaxed)
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

/// What every llama.cpp context of one engine shares; only the stream
/// size changes when the context is made again.
struct ContextLayout {
    threads: i32,
    n_batch: u32,
    flash_attention: bool,
    /// Sequence slots (one KV stream each).
    slots: u32,
    /// The largest stream: the context size rounded up to 256 cells.
    max_stream: u32,
}

impl ContextLayout {
    fn context<'m>(
        &self,
        model: &'m LlamaModel,
        backend: &LlamaBackend,
        stream: u32,
    ) -> Result<LlamaContext<'m>, EngineError> {
        let cells = stream.saturating_mul(self.slots);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(cells))
            .with_n_batch(self.n_batch)
            .with_n_ubatch(self.n_batch)
            .with_n_seq_max(self.slots)
            .with_kv_unified(false)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads)
            .with_flash_attention_policy(if self.flash_attention {
                llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED
            } else {
                llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED
            });
        model
            .new_context(backend, params)
            .map_err(|e| EngineError::Context {
                cells,
                reason: e.to_string(),
            })
    }
}

/// A sequence being generated.
struct Running {
    queued: Queued,
    /// `None` for greedy decoding, which takes the first highest logit.
    sampler: Option<LlamaSampler>,
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
    backend: &'m LlamaBackend,
    /// Always `Some`, except while the context is made again.
    ctx: Option<LlamaContext<'m>>,
    shared: &'m Shared,
    slots: Vec<Option<Running>>,
    /// KV cells per sequence in the current context.
    stream: u32,
    layout: ContextLayout,
}

fn sampler_for(sampling: &Sampling) -> Option<LlamaSampler> {
    match sampling {
        Sampling::Greedy => None,
        Sampling::Random {
            temperature,
            top_p,
            seed,
        } => Some(LlamaSampler::chain_simple([
            LlamaSampler::top_k(40),
            LlamaSampler::top_p(*top_p, 1),
            LlamaSampler::min_p(0.05, 1),
            LlamaSampler::temp(*temperature),
            LlamaSampler::dist(*seed),
        ])),
    }
}

/// The index of the first highest logit, as llama.cpp's greedy sampler
/// chooses (without building its candidate array of the whole vocabulary).
fn first_argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best
}

fn seq_id(slot: usize) -> i32 {
    i32::try_from(slot).expect("slot count fits in i32")
}

impl<'m> Worker<'m> {
    fn ctx(&mut self) -> &mut LlamaContext<'m> {
        self.ctx
            .as_mut()
            .expect("the context exists outside grow()")
    }

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
                // The lowest free slots first: a decode step attends over
                // every stream from the lowest to the highest busy slot.
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
                    // any job `submit` accepted once its stream has grown.
                    let Some(slot) = free.next() else { break };
                    let q = state.waiting.pop_front().expect("front() was Some");
                    admitted.push((slot, q));
                }
                admitted
            };
            let needed = admitted
                .iter()
                .map(|(_, q)| cells_needed(&q.job))
                .max()
                .unwrap_or(0);
            if needed > self.stream {
                if let Err(e) = self.grow(needed) {
                    log::error!("cannot grow the KV cache to {needed} cells per sequence: {e}");
                    for (_, q) in admitted {
                        let _ = q.reply.send(Err(e.clone()));
                    }
                    if self.ctx.is_none() {
                        return;
                    }
                    continue;
                }
            }
            for (slot, q) in admitted {
                self.start(slot, q);
            }
            self.step();
        }
    }

    /// Makes the context again with streams of at least `needed` cells,
    /// carrying every running sequence's cells over. On failure the old size
    /// is restored (the running sequences go on); when even that fails,
    /// every sequence fails and the context is gone.
    fn grow(&mut self, needed: u32) -> Result<(), EngineError> {
        let cells = grown_stream(self.stream, needed, self.layout.max_stream);
        let mut saved = Vec::new();
        for slot in 0..self.slots.len() {
            if self.slots[slot].is_some() {
                match self
                    .ctx()
                    .state_seq_get(seq_id(slot), LlamaStateSeqFlags::empty())
                {
                    Ok(state) => saved.push((slot, state)),
                    Err(e) => {
                        return Err(EngineError::Decode(format!("saving sequence {slot}: {e}")))
                    }
                }
            }
        }
        // The old cache goes first, so both never take memory together.
        self.ctx = None;
        let (made, result) = match self.layout.context(self.model, self.backend, cells) {
            Ok(ctx) => (Ok(ctx), Ok(cells)),
            Err(e) => (
                self.layout.context(self.model, self.backend, self.stream),
                Err(e),
            ),
        };
        match made {
            Ok(ctx) => self.ctx = Some(ctx),
            Err(e) => {
                self.fail_all_without_context(e.clone());
                return Err(e);
            }
        }
        for (slot, state) in &saved {
            if let Err(e) = self.ctx().state_seq_set(state, seq_id(*slot)) {
                let err = EngineError::Decode(format!("restoring sequence {slot}: {e}"));
                self.fail_all(err.clone());
                return Err(err);
            }
        }
        let cells = result?;
        log::info!(
            "KV cache grown to {cells} cells per sequence ({} sequences)",
            self.slots.len()
        );
        self.stream = cells;
        self.shared.stream_cells.store(cells, Ordering::Relaxed);
        Ok(())
    }

    /// The running slot whose prompt shares the longest copyable prefix
    /// with `prompt`, and that prefix's length.
    fn prefix_source(&self, prompt: &[LlamaToken]) -> Option<(usize, usize)> {
        let n_batch = self.layout.n_batch as usize;
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(s, r)| {
                let r = r.as_ref()?;
                let shared = shareable_prefix(prompt, &r.queued.job.prompt, n_batch);
                (shared > 0).then_some((s, shared))
            })
            .max_by_key(|&(s, shared)| (shared, std::cmp::Reverse(s)))
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
        let seq = seq_id(slot);
        let n = q.job.prompt.len();
        // The cells of a shared prefix come from the other sequence's
        // stream (a whole-stream copy, done at the next decode), cut to the
        // prefix.
        let mut first = 0;
        if let Some((source, shared)) = self.prefix_source(&q.job.prompt) {
            let copied = self
                .ctx()
                .copy_kv_cache_seq(seq_id(source), seq, None, None)
                .and_then(|()| self.ctx().kv_cache_seq_rm(seq, Some(shared as u32), None));
            match copied {
                Ok(()) => {
                    first = shared;
                    self.shared
                        .shared_tokens
                        .fetch_add(shared as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    log::warn!("could not copy a shared prompt prefix: {e}");
                    self.release(seq);
                }
            }
        }
        let n_batch = self.layout.n_batch as usize;
        let mut batch = LlamaBatch::new(n_batch, 1);
        let mut last_index = 0;
        let mut pos = first;
        while pos < n {
            if q.cancel.load(Ordering::Relaxed) {
                self.abandon(seq, &q, EngineError::Cancelled);
                return;
            }
            batch.clear();
            // Chunks end where a prefill of the whole prompt ends them.
            let end = ((pos / n_batch + 1) * n_batch).min(n);
            for (i, tok) in q.job.prompt[pos..end].iter().enumerate() {
                let p = pos + i;
                let is_last = p + 1 == n;
                if let Err(e) = batch.add(*tok, p as i32, &[seq], is_last) {
                    self.abandon(seq, &q, EngineError::Decode(e.to_string()));
                    return;
                }
                if is_last {
                    last_index = i as i32;
                }
            }
            if let Err(e) = self.ctx().decode(&mut batch) {
                self.abandon(seq, &q, EngineError::Decode(e.to_string()));
                return;
            }
            pos = end;
        }
        let mut sampler = sampler_for(&q.job.sampling);
        let first = self.choose(sampler.as_mut(), last_index);
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

    /// The next token from the logits of batch row `index`.
    fn choose(&mut self, sampler: Option<&mut LlamaSampler>, index: i32) -> LlamaToken {
        let ctx = self.ctx();
        match sampler {
            Some(sampler) => sampler.sample(ctx, index),
            None => LlamaToken(
                i32::try_from(first_argmax(ctx.get_logits_ith(index)))
                    .expect("the vocabulary fits in i32"),
            ),
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
        let Some(ctx) = self.ctx.as_mut() else { return };
        if let Err(e) = ctx.clear_kv_cache_seq(u32::try_from(seq).ok(), None, None) {
            log::warn!("could not clear the KV cache of sequence {seq}: {e}");
        }
    }

    fn abandon(&mut self, seq: i32, q: &Queued, err: EngineError) {
        self.release(seq);
        let _ = q.reply.send(Err(err));
    }

    fn finish(&mut self, slot: usize, running: Running, finish: Finish) {
        self.release(seq_id(slot));
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
                self.release(seq_id(slot));
                let _ = running.queued.reply.send(Err(err.clone()));
            }
        }
    }

    /// Fails every running sequence and every waiting job: the context is
    /// gone and the worker stops.
    fn fail_all_without_context(&mut self, err: EngineError) {
        self.fail_all(err.clone());
        let mut state = self.shared.lock();
        state.shutdown = true;
        for q in state.waiting.drain(..) {
            let _ = q.reply.send(Err(err.clone()));
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
                    self.release(seq_id(slot));
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
            if let Err(e) = batch.add(running.next, running.n_past, &[seq_id(slot)], true) {
                self.fail_all(EngineError::Decode(e.to_string()));
                return;
            }
        }
        if let Err(e) = self.ctx().decode(&mut batch) {
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
            let token = self.choose(running.sampler.as_mut(), i as i32);
            match self.accept(&mut running, token) {
                Some(finish) => self.finish(slot, running, finish),
                None => self.slots[slot] = Some(running),
            }
        }
    }
}

/// The KV cells a job fills at most: its prompt and every generated token.
fn cells_needed(job: &Job) -> u32 {
    u32::try_from(job.prompt.len() as u64 + u64::from(job.max_new_tokens)).unwrap_or(u32::MAX)
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
