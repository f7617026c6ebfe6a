//! The generic decoder-only transformer that runs every supported family
//! from its [`DecoderSpec`], with a key/value cache and per-row positions
//! and padding so that several conversations run as one left-padded batch.

use crate::attention;
use crate::elementwise;
use crate::error::{Error, Result};
use crate::families::{Activation, DecoderSpec};
use crate::linear::Linear;
use candle_core::{DType, Device, Module, Storage, Tensor, D};
use candle_nn::VarBuilder;
use std::path::Path;

/// RMS norm whose weight already includes gemma's `+1` where needed.
#[derive(Clone, Debug)]
struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn load(
        vb: &VarBuilder,
        size: usize,
        name: &str,
        spec: &DecoderSpec,
    ) -> candle_core::Result<Self> {
        let mut weight = vb.get(size, name)?;
        if spec.norm_weight_offset {
            weight = (weight + 1.0)?;
        }
        Ok(RmsNorm {
            weight,
            eps: spec.rms_norm_eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        candle_nn::ops::rms_norm(x, &self.weight, self.eps)
    }
}

#[derive(Clone, Debug)]
struct Layer {
    input_norm: RmsNorm,
    qkv: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    o: Linear,
    /// llama: the norm before the MLP; sandwich families: the norm after attention.
    post_attn_norm: RmsNorm,
    pre_ffn_norm: Option<RmsNorm>,
    post_ffn_norm: Option<RmsNorm>,
    gate_up: Linear,
    down: Linear,
    sliding: bool,
}

/// One row's cached keys and values live at `[row, head, column, :]`.
#[derive(Debug)]
struct LayerCache {
    k: Tensor,
    v: Tensor,
}

/// The key/value cache of one batch, with the padding of each row.
#[derive(Debug)]
pub struct Cache {
    layers: Vec<LayerCache>,
    capacity: usize,
    len: usize,
    /// Per row: which cached columns hold real tokens (false = padding).
    valid: Vec<Vec<bool>>,
    /// Per row: the position of the next token.
    next_pos: Vec<u32>,
}

impl Cache {
    /// Columns filled so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps only the listed rows (indices into the current rows), in order:
    /// finished sequences leave the batch.
    pub fn retain_rows(&mut self, keep: &[usize]) -> Result<()> {
        let Some(first) = self.layers.first() else {
            return Ok(());
        };
        let index = Tensor::from_vec(
            keep.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            keep.len(),
            first.k.device(),
        )?;
        for layer in &mut self.layers {
            layer.k = layer.k.index_select(&index, 0)?;
            layer.v = layer.v.index_select(&index, 0)?;
        }
        self.valid = keep.iter().map(|&i| self.valid[i].clone()).collect();
        self.next_pos = keep.iter().map(|&i| self.next_pos[i]).collect();
        Ok(())
    }
}

/// A loaded model.
#[derive(Debug)]
pub struct Decoder {
    spec: DecoderSpec,
    device: Device,
    dtype: DType,
    embed: Tensor,
    layers: Vec<Layer>,
    final_norm: RmsNorm,
    lm_head: Linear,
    inv_freq: Vec<f32>,
    inv_freq_local: Vec<f32>,
}

/// The values of a contiguous f32 CPU tensor.
fn cpu_f32<'a>(
    storage: &'a candle_core::CpuStorage,
    layout: &candle_core::Layout,
) -> candle_core::Result<&'a [f32]> {
    let start = layout.start_offset();
    Ok(&storage.as_slice::<f32>()?[start..start + layout.shape().elem_count()])
}

/// Where a family keeps its decoder weights inside the checkpoint.
fn find_prefix(vb: &VarBuilder) -> Option<&'static str> {
    ["model.", "model.language_model.", "language_model.model."]
        .into_iter()
        .find(|p| vb.contains_tensor(&format!("{p}embed_tokens.weight")))
}

impl Decoder {
    /// Loads the weights of `spec` from the safetensors files.
    pub fn load(
        spec: DecoderSpec,
        files: &[std::path::PathBuf],
        model_dir: &Path,
        device: &Device,
    ) -> Result<Self> {
        let dtype = DType::F32;
        let weights_err = |e: candle_core::Error| Error::Weights {
            path: model_dir.to_path_buf(),
            message: e.to_string(),
        };
        // SAFETY: the files are memory-mapped read-only for the duration of
        // the load; every tensor is copied out (converted to `dtype`) before
        // the mapping is dropped, and the model files are not expected to be
        // modified while a model loads.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(files, dtype, device) }
            .map_err(weights_err)?;
        let prefix = find_prefix(&vb).ok_or_else(|| Error::Weights {
            path: model_dir.to_path_buf(),
            message: "no `model.embed_tokens.weight` (or a language_model variant) in the safetensors files".into(),
        })?;
        let root = vb.clone();
        let vb = vb.pp(prefix.trim_end_matches('.'));
        let h = spec.hidden_size;
        let hd = spec.head_dim;
        let q_out = spec.num_heads * hd;
        let kv_out = spec.num_kv_heads * hd;
        let inter = spec.intermediate_size;
        let embed = vb
            .get((spec.vocab_size, h), "embed_tokens.weight")
            .map_err(weights_err)?;
        let mut layers = Vec::with_capacity(spec.num_layers);
        for i in 0..spec.num_layers {
            let lb = vb.pp(format!("layers.{i}"));
            let layer =
                Self::load_layer(&spec, &lb, h, q_out, kv_out, inter, i).map_err(weights_err)?;
            layers.push(layer);
        }
        let final_norm = RmsNorm::load(&vb, h, "norm.weight", &spec).map_err(weights_err)?;
        let lm_head = if spec.tie_word_embeddings || !root.contains_tensor("lm_head.weight") {
            Linear::new(embed.clone(), None).map_err(weights_err)?
        } else {
            Linear::new(
                root.get((spec.vocab_size, h), "lm_head.weight")
                    .map_err(weights_err)?,
                None,
            )
            .map_err(weights_err)?
        };
        let inv_freq = spec.rope.inv_freq(hd);
        let inv_freq_local = spec
            .rope_local
            .as_ref()
            .map(|r| r.inv_freq(hd))
            .unwrap_or_else(|| inv_freq.clone());
        Ok(Decoder {
            spec,
            device: device.clone(),
            dtype,
            embed,
            layers,
            final_norm,
            lm_head,
            inv_freq,
            inv_freq_local,
        })
    }

    fn load_layer(
        spec: &DecoderSpec,
        lb: &VarBuilder,
        h: usize,
        q_out: usize,
        kv_out: usize,
        inter: usize,
        index: usize,
    ) -> candle_core::Result<Layer> {
        let at = lb.pp("self_attn");
        let optional_bias =
            |vb: &VarBuilder, name: &str, size: usize| -> candle_core::Result<Option<Tensor>> {
                if vb.contains_tensor(name) {
                    vb.get(size, name).map(Some)
                } else {
                    Ok(None)
                }
            };
        let qkv = if spec.fused_qkv {
            let w = at.get((q_out + 2 * kv_out, h), "qkv_proj.weight")?;
            Linear::new(w, optional_bias(&at, "qkv_proj.bias", q_out + 2 * kv_out)?)?
        } else {
            let q = at.get((q_out, h), "q_proj.weight")?;
            let k = at.get((kv_out, h), "k_proj.weight")?;
            let v = at.get((kv_out, h), "v_proj.weight")?;
            let w = Tensor::cat(&[&q, &k, &v], 0)?;
            let biases = (
                optional_bias(&at, "q_proj.bias", q_out)?,
                optional_bias(&at, "k_proj.bias", kv_out)?,
                optional_bias(&at, "v_proj.bias", kv_out)?,
            );
            let bias = match biases {
                (Some(q), Some(k), Some(v)) => Some(Tensor::cat(&[&q, &k, &v], 0)?),
                (None, None, None) if !spec.qkv_bias => None,
                _ => candle_core::bail!(
                    "layer {index}: q/k/v biases must all be present (the config says attention biases are {})",
                    if spec.qkv_bias { "on" } else { "off" }
                ),
            };
            Linear::new(w, bias)?
        };
        let o = Linear::new(
            at.get((h, q_out), "o_proj.weight")?,
            optional_bias(&at, "o_proj.bias", h)?,
        )?;
        let (q_norm, k_norm) = if spec.qk_norm {
            (
                Some(RmsNorm::load(&at, spec.head_dim, "q_norm.weight", spec)?),
                Some(RmsNorm::load(&at, spec.head_dim, "k_norm.weight", spec)?),
            )
        } else {
            (None, None)
        };
        let mb = lb.pp("mlp");
        let gate_up = if spec.fused_gate_up {
            Linear::new(mb.get((2 * inter, h), "gate_up_proj.weight")?, None)?
        } else {
            let g = mb.get((inter, h), "gate_proj.weight")?;
            let u = mb.get((inter, h), "up_proj.weight")?;
            Linear::new(Tensor::cat(&[&g, &u], 0)?, None)?
        };
        let down = Linear::new(mb.get((h, inter), "down_proj.weight")?, None)?;
        let (pre_ffn_norm, post_ffn_norm) = if spec.sandwich_norms {
            (
                Some(RmsNorm::load(
                    lb,
                    h,
                    "pre_feedforward_layernorm.weight",
                    spec,
                )?),
                Some(RmsNorm::load(
                    lb,
                    h,
                    "post_feedforward_layernorm.weight",
                    spec,
                )?),
            )
        } else {
            (None, None)
        };
        Ok(Layer {
            input_norm: RmsNorm::load(lb, h, "input_layernorm.weight", spec)?,
            qkv,
            q_norm,
            k_norm,
            o,
            post_attn_norm: RmsNorm::load(lb, h, "post_attention_layernorm.weight", spec)?,
            pre_ffn_norm,
            post_ffn_norm,
            gate_up,
            down,
            sliding: spec.sliding_layers.get(index).copied().unwrap_or(false),
        })
    }

    /// The architecture this model runs.
    pub fn spec(&self) -> &DecoderSpec {
        &self.spec
    }

    /// An empty cache for `rows` sequences of at most `capacity` columns.
    pub fn new_cache(&self, rows: usize, capacity: usize) -> Result<Cache> {
        let shape = (rows, self.spec.num_kv_heads, capacity, self.spec.head_dim);
        let layers = (0..self.spec.num_layers)
            .map(|_| {
                Ok(LayerCache {
                    k: Tensor::zeros(shape, self.dtype, &self.device)?,
                    v: Tensor::zeros(shape, self.dtype, &self.device)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Cache {
            layers,
            capacity,
            len: 0,
            valid: vec![Vec::with_capacity(capacity); rows],
            next_pos: vec![0; rows],
        })
    }

    /// Runs `tokens` (one equally long row per sequence; `None` = padding)
    /// through the model, appends them to `cache`, and returns the logits of
    /// each row's last column as f32 `[rows, vocab]`.
    pub fn forward(&self, tokens: &[Vec<Option<u32>>], cache: &mut Cache) -> Result<Tensor> {
        let rows = tokens.len();
        let t = tokens.first().map(Vec::len).unwrap_or(0);
        if rows == 0 || t == 0 || tokens.iter().any(|r| r.len() != t) || rows != cache.valid.len() {
            return Err(Error::Request(
                "decoder input must be non-empty rows of equal length".into(),
            ));
        }
        if cache.len + t > cache.capacity {
            return Err(Error::Request(format!(
                "cache capacity {} exceeded ({} cached + {} new)",
                cache.capacity, cache.len, t
            )));
        }
        let pad_id = 0u32;
        let mut ids = Vec::with_capacity(rows * t);
        let mut positions = Vec::with_capacity(rows * t);
        for (r, row) in tokens.iter().enumerate() {
            for tok in row {
                ids.push(tok.unwrap_or(pad_id));
                // Padding takes position 1 as transformers does; it is never attended to.
                positions.push(if tok.is_some() { cache.next_pos[r] } else { 1 });
                if tok.is_some() {
                    cache.next_pos[r] += 1;
                }
                cache.valid[r].push(tok.is_some());
            }
        }
        let past = cache.len;
        cache.len += t;
        let total = cache.len;

        let ids = Tensor::from_vec(ids, (rows, t), &self.device)?;
        let mut x =
            self.embed
                .embedding(&ids.flatten_all()?)?
                .reshape((rows, t, self.spec.hidden_size))?;
        if self.spec.scale_embeddings {
            x = (x * (self.spec.hidden_size as f64).sqrt())?;
        }
        let (cos, sin) = self.rope_tables(&positions, rows, t, &self.inv_freq)?;
        let local = if self.spec.rope_local.is_some() {
            Some(self.rope_tables(&positions, rows, t, &self.inv_freq_local)?)
        } else {
            None
        };
        // The CPU f32 attention reads the padding and the window directly.
        let own_attention = self.device.is_cpu() && self.dtype == DType::F32;
        let mask_full = if own_attention {
            None
        } else {
            self.mask(cache, past, t, None)?
        };
        let mask_sliding = match self.spec.sliding_window {
            Some(w) if !own_attention && self.layers.iter().any(|l| l.sliding) => {
                self.mask(cache, past, t, Some(w))?
            }
            _ => None,
        };
        for (layer, lc) in self.layers.iter().zip(cache.layers.iter_mut()) {
            let (cos, sin) = match (&local, layer.sliding) {
                (Some((c, s)), true) => (c, s),
                _ => (&cos, &sin),
            };
            let mask = if layer.sliding {
                &mask_sliding
            } else {
                &mask_full
            };
            x = self.layer_forward(
                layer,
                lc,
                &cache.valid,
                &x,
                cos,
                sin,
                mask.as_ref(),
                past,
                total,
            )?;
        }
        let last = x.narrow(1, t - 1, 1)?.squeeze(1)?.contiguous()?;
        let last = self.final_norm.forward(&last)?;
        let mut logits = self.lm_head.forward(&last)?.to_dtype(DType::F32)?;
        if let Some(cap) = self.spec.final_logit_softcap {
            logits = ((logits / cap)?.tanh()? * cap)?;
        }
        Ok(logits)
    }

    fn rope_tables(
        &self,
        positions: &[u32],
        rows: usize,
        t: usize,
        inv_freq: &[f32],
    ) -> Result<(Tensor, Tensor)> {
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (rows, t, half), &self.device)?.to_dtype(self.dtype)?;
        let sin = Tensor::from_vec(sin, (rows, t, half), &self.device)?.to_dtype(self.dtype)?;
        Ok((cos, sin))
    }

    /// The additive mask `[rows, 1, t, total]`, or `None` when every query
    /// may see every earlier key (one row, no padding, no window).
    fn mask(
        &self,
        cache: &Cache,
        past: usize,
        t: usize,
        window: Option<usize>,
    ) -> Result<Option<Tensor>> {
        let total = past + t;
        let padded = cache.valid.iter().any(|v| v.iter().any(|ok| !ok));
        let window_bites = window.is_some_and(|w| total > w);
        if !padded && !window_bites && t == 1 {
            return Ok(None);
        }
        let rows = cache.valid.len();
        let mut m = vec![0f32; rows * t * total];
        for (r, valid) in cache.valid.iter().enumerate() {
            for qi in 0..t {
                let q_col = past + qi;
                let base = (r * t + qi) * total;
                for k_col in 0..total {
                    let visible = k_col == q_col
                        || (k_col < q_col
                            && valid[k_col]
                            && window.is_none_or(|w| q_col - k_col < w));
                    if !visible {
                        m[base + k_col] = f32::MIN;
                    }
                }
            }
        }
        Ok(Some(
            Tensor::from_vec(m, (rows, 1, t, total), &self.device)?.to_dtype(self.dtype)?,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn layer_forward(
        &self,
        layer: &Layer,
        lc: &mut LayerCache,
        valid: &[Vec<bool>],
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        past: usize,
        total: usize,
    ) -> Result<Tensor> {
        let s = &self.spec;
        let (b, t, _) = x.dims3()?;
        let (nh, kvh, hd) = (s.num_heads, s.num_kv_heads, s.head_dim);

        let h = layer.input_norm.forward(x)?;
        let qkv = layer.qkv.forward(&h)?;
        let q = qkv.narrow(D::Minus1, 0, nh * hd)?.reshape((b, t, nh, hd))?;
        let k = qkv
            .narrow(D::Minus1, nh * hd, kvh * hd)?
            .reshape((b, t, kvh, hd))?;
        let v = qkv
            .narrow(D::Minus1, (nh + kvh) * hd, kvh * hd)?
            .reshape((b, t, kvh, hd))?;
        let (q, k) = match (&layer.q_norm, &layer.k_norm) {
            (Some(qn), Some(kn)) => (qn.forward(&q.contiguous()?)?, kn.forward(&k.contiguous()?)?),
            _ => (q, k),
        };
        let q = candle_nn::rotary_emb::rope(&q.transpose(1, 2)?.contiguous()?, cos, sin)?;
        let k = candle_nn::rotary_emb::rope(&k.transpose(1, 2)?.contiguous()?, cos, sin)?;
        let v = v.transpose(1, 2)?.contiguous()?;
        lc.k.slice_set(&k, 2, past)?;
        lc.v.slice_set(&v, 2, past)?;
        let scale = 1.0 / s.query_pre_attn_scalar.unwrap_or(hd as f64).sqrt();
        let attn = if self.device.is_cpu() && self.dtype == DType::F32 {
            let shape = attention::Shape {
                batch: b,
                heads: nh,
                kv_heads: kvh,
                head_dim: hd,
                t,
                past,
                capacity: lc.k.dim(2)?,
            };
            let options = attention::Options {
                scale: scale as f32,
                softcap: s.attn_logit_softcap.map(|c| c as f32),
                window: if layer.sliding {
                    s.sliding_window
                } else {
                    None
                },
            };
            let out = {
                let (qs, ql) = q.storage_and_layout();
                let (ks, kl) = lc.k.storage_and_layout();
                let (vs, vl) = lc.v.storage_and_layout();
                let (Storage::Cpu(qs), Storage::Cpu(ks), Storage::Cpu(vs)) = (&*qs, &*ks, &*vs)
                else {
                    return Err(Error::Request("attention: CPU tensors off the CPU".into()));
                };
                if !(ql.is_contiguous() && kl.is_contiguous() && vl.is_contiguous()) {
                    return Err(Error::Request("attention: non-contiguous inputs".into()));
                }
                attention::attend(
                    cpu_f32(qs, ql)?,
                    cpu_f32(ks, kl)?,
                    cpu_f32(vs, vl)?,
                    valid,
                    shape,
                    options,
                )
            };
            Tensor::from_vec(out, (b, t, nh * hd), &self.device)?
        } else {
            self.attention_tensors(lc, q, mask, scale, (b, t, total))?
        };
        let mut attn = layer.o.forward(&attn)?;
        let x = if s.sandwich_norms {
            attn = layer.post_attn_norm.forward(&attn)?;
            (x + attn)?
        } else {
            (x + attn)?
        };
        let h = match &layer.pre_ffn_norm {
            Some(n) => n.forward(&x)?,
            None => layer.post_attn_norm.forward(&x)?,
        };
        let gu = layer.gate_up.forward(&h)?;
        let inter = s.intermediate_size;
        let hidden =
            if s.activation == Activation::Silu && gu.device().is_cpu() && gu.dtype() == DType::F32
            {
                let mut dims = gu.dims().to_vec();
                if let Some(last) = dims.last_mut() {
                    *last = inter;
                }
                let gu = gu.contiguous()?;
                let out = {
                    let (storage, layout) = gu.storage_and_layout();
                    let Storage::Cpu(cpu) = &*storage else {
                        return Err(Error::Request("mlp: a CPU tensor off the CPU".into()));
                    };
                    elementwise::silu_mul(cpu_f32(cpu, layout)?, inter)
                };
                Tensor::from_vec(out, dims, &self.device)?
            } else {
                let gate = gu.narrow(D::Minus1, 0, inter)?;
                let up = gu.narrow(D::Minus1, inter, inter)?;
                let act = match s.activation {
                    Activation::Silu => candle_nn::ops::silu(&gate)?,
                    Activation::GeluTanh => gate.gelu()?,
                };
                (act * up)?
            };
        let mut mlp = layer.down.forward(&hidden)?;
        if let Some(n) = &layer.post_ffn_norm {
            mlp = n.forward(&mlp)?;
        }
        Ok((x + mlp)?)
    }

    /// The general attention with candle's tensor operations (other
    /// devices and dtypes).
    fn attention_tensors(
        &self,
        lc: &LayerCache,
        q: Tensor,
        mask: Option<&Tensor>,
        scale: f64,
        (b, t, total): (usize, usize, usize),
    ) -> Result<Tensor> {
        let s = &self.spec;
        let (nh, kvh, hd) = (s.num_heads, s.num_kv_heads, s.head_dim);
        let n_rep = nh / kvh;
        let k_all = lc.k.narrow(2, 0, total)?;
        let v_all = lc.v.narrow(2, 0, total)?;
        // Group the query heads by the key/value head they share: no copies of k and v.
        let q = (q * scale)?.reshape((b, kvh, n_rep * t, hd))?;
        let mut scores = q.matmul(&k_all.t()?)?.reshape((b, nh, t, total))?;
        if let Some(cap) = s.attn_logit_softcap {
            scores = ((scores / cap)?.tanh()? * cap)?;
        }
        if let Some(mask) = mask {
            scores = scores.broadcast_add(mask)?;
        }
        let probs =
            candle_nn::ops::softmax_last_dim(&scores)?.reshape((b, kvh, n_rep * t, total))?;
        Ok(probs
            .matmul(&v_all)?
            .reshape((b, nh, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))?)
    }
}
