//! Model families: each adapter reads one family's `config.json` into a
//! [`DecoderSpec`], the one description the generic decoder runs.
//!
//! All supported families are decoder-only transformers with RMS norms,
//! rotary position embeddings and gated MLPs; they differ in details
//! (biases, norms around the blocks, soft-capping, sliding windows, fused
//! projections), which the spec spells out.

mod gemma;
mod gemma2;
mod gemma3;
mod llama;
mod mistral;
mod phi3;
mod qwen2;
mod qwen3;

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// The activation of the gated MLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x * sigmoid(x)` (llama, mistral, qwen, phi3).
    Silu,
    /// GELU with the tanh approximation (gemma family).
    GeluTanh,
}

/// How the rotary frequencies are derived from the base frequency.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    /// Plain `theta^(-2i/d)`.
    Default,
    /// Frequencies divided by `factor`.
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// Llama 3.1's wavelength-dependent scaling.
    Llama3 {
        /// Scaling factor for long wavelengths.
        factor: f64,
        /// Wavelength threshold parameter (low).
        low_freq_factor: f64,
        /// Wavelength threshold parameter (high).
        high_freq_factor: f64,
        /// The context the model was first trained with.
        original_max_position_embeddings: f64,
    },
}

/// The rotary embedding of one kind of layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    /// Base frequency.
    pub theta: f64,
    /// Frequency scaling.
    pub scaling: RopeScaling,
}

impl Rope {
    /// The inverse frequencies for a head dimension `dim` (length `dim / 2`).
    pub fn inv_freq(&self, dim: usize) -> Vec<f32> {
        let base: Vec<f64> = (0..dim / 2)
            .map(|i| 1.0 / self.theta.powf(2.0 * i as f64 / dim as f64))
            .collect();
        match self.scaling {
            RopeScaling::Default => base.into_iter().map(|f| f as f32).collect(),
            RopeScaling::Linear { factor } => {
                base.into_iter().map(|f| (f / factor) as f32).collect()
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings: orig,
            } => {
                let low_wavelen = orig / low_freq_factor;
                let high_wavelen = orig / high_freq_factor;
                base.into_iter()
                    .map(|f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        let scaled = if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (orig / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        };
                        scaled as f32
                    })
                    .collect()
            }
        }
    }
}

/// Everything the generic decoder needs to know about an architecture.
#[derive(Clone, Debug)]
pub struct DecoderSpec {
    /// The family adapter that produced this spec (its `model_type`).
    pub family: &'static str,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Epsilon of the RMS norms.
    pub rms_norm_eps: f64,
    /// Rotary embedding of full-attention layers.
    pub rope: Rope,
    /// Rotary embedding of sliding-window layers, when it differs (gemma3).
    pub rope_local: Option<Rope>,
    /// MLP activation.
    pub activation: Activation,
    /// RMS norm weights are stored as `w - 1` (gemma family): use `1 + w`.
    pub norm_weight_offset: bool,
    /// Embeddings are multiplied by `sqrt(hidden_size)` (gemma family).
    pub scale_embeddings: bool,
    /// q/k/v projections have biases (qwen2).
    pub qkv_bias: bool,
    /// RMS norm over each query and key head before RoPE (qwen3, gemma3).
    pub qk_norm: bool,
    /// Norms after the attention and MLP blocks as well as before (gemma2, gemma3).
    pub sandwich_norms: bool,
    /// `tanh` soft-capping of attention scores (gemma2).
    pub attn_logit_softcap: Option<f64>,
    /// `tanh` soft-capping of the final logits (gemma2).
    pub final_logit_softcap: Option<f64>,
    /// Attention scale is `1 / sqrt(this)`; `None` means `head_dim`.
    pub query_pre_attn_scalar: Option<f64>,
    /// Sliding-window size, for the layers marked in `sliding_layers`.
    pub sliding_window: Option<usize>,
    /// Per layer: whether it uses the sliding window.
    pub sliding_layers: Vec<bool>,
    /// The output projection is the embedding matrix.
    pub tie_word_embeddings: bool,
    /// q, k and v are one `qkv_proj` weight in the checkpoint (phi3).
    pub fused_qkv: bool,
    /// gate and up are one `gate_up_proj` weight in the checkpoint (phi3).
    pub fused_gate_up: bool,
    /// Context size from the config (`max_position_embeddings` or equivalent).
    pub max_position_embeddings: Option<usize>,
    /// EOS ids named by config.json.
    pub eos_token_ids: Vec<u32>,
}

type Adapter = fn(&ConfigReader) -> Result<DecoderSpec>;

/// The supported `model_type` values and their adapters.
const FAMILIES: &[(&str, Adapter)] = &[
    ("llama", llama::spec),
    ("mistral", mistral::spec),
    ("qwen2", qwen2::spec),
    ("qwen3", qwen3::spec),
    ("gemma", gemma::spec),
    ("gemma2", gemma2::spec),
    ("gemma3", gemma3::spec),
    ("gemma3_text", gemma3::spec),
    ("phi3", phi3::spec),
];

/// The supported `model_type` values, for messages and docs.
pub fn supported_model_types() -> Vec<&'static str> {
    FAMILIES.iter().map(|(name, _)| *name).collect()
}

/// Reads `config.json` and builds the spec of its family.
pub fn spec_from_config(path: &Path) -> Result<DecoderSpec> {
    let root = crate::error::read_json(path)?;
    let Value::Object(map) = root else {
        return Err(Error::field(
            path.display().to_string(),
            "(top level)",
            "must be a JSON object",
        ));
    };
    let model_type = map
        .get("model_type")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::field(
                path.display().to_string(),
                "model_type",
                "is missing; it names the architecture (e.g. \"llama\")",
            )
        })?
        .to_string();
    let Some((_, adapter)) = FAMILIES.iter().find(|(name, _)| *name == model_type) else {
        return Err(Error::UnsupportedModelType {
            path: path.to_path_buf(),
            model_type,
            supported: supported_model_types().join(", "),
        });
    };
    // Multimodal gemma3 checkpoints keep the language model's settings in `text_config`.
    let text = match map.get("text_config") {
        Some(Value::Object(inner)) if model_type == "gemma3" => {
            let mut merged = inner.clone();
            for key in ["eos_token_id", "tie_word_embeddings"] {
                if let (Some(v), false) = (map.get(key), merged.contains_key(key)) {
                    merged.insert(key.to_string(), v.clone());
                }
            }
            merged
        }
        _ => map,
    };
    let reader = ConfigReader {
        file: path.display().to_string(),
        map: text,
    };
    adapter(&reader)
}

/// Typed access to config.json fields with errors that name the file and field.
pub struct ConfigReader {
    file: String,
    map: Map<String, Value>,
}

impl ConfigReader {
    /// A reader over a JSON object (used by tests and by adapters).
    pub fn new(file: impl Into<String>, map: Map<String, Value>) -> Self {
        ConfigReader {
            file: file.into(),
            map,
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn err(&self, key: &str, problem: &str) -> Error {
        Error::field(self.file.clone(), key, problem)
    }

    /// A required non-negative integer.
    pub fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| self.err(key, "is missing; it is required for this architecture"))
    }

    /// An optional non-negative integer.
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.err(key, "must be a non-negative integer")),
        }
    }

    /// An optional number.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(key, "must be a number")),
        }
    }

    /// An optional boolean.
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.err(key, "must be true or false")),
        }
    }

    /// An optional string.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.err(key, "must be a string")),
        }
    }

    /// `hidden_act` / `hidden_activation`, checked against what the family allows.
    pub fn activation(&self, default: Activation) -> Result<Activation> {
        let name = match self.opt_str("hidden_activation")? {
            Some(s) => Some(s),
            None => self.opt_str("hidden_act")?,
        };
        match name {
            None => Ok(default),
            Some("silu") | Some("swish") => Ok(Activation::Silu),
            Some("gelu_pytorch_tanh") | Some("gelu_new") | Some("gelu") => Ok(Activation::GeluTanh),
            Some(other) => Err(self.err(
                "hidden_act",
                &format!("`{other}` is not supported (supported: silu, gelu_pytorch_tanh)"),
            )),
        }
    }

    /// EOS ids: `eos_token_id` as a number or a list.
    pub fn eos_ids(&self) -> Result<Vec<u32>> {
        match self.get("eos_token_id") {
            None => Ok(Vec::new()),
            Some(Value::Number(n)) => n
                .as_u64()
                .map(|id| vec![id as u32])
                .ok_or_else(|| self.err("eos_token_id", "must be a token id")),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_u64()
                        .map(|id| id as u32)
                        .ok_or_else(|| self.err("eos_token_id", "must list token ids"))
                })
                .collect(),
            Some(_) => Err(self.err("eos_token_id", "must be a token id or a list of ids")),
        }
    }

    /// The rotary settings, from the top level (`rope_theta`, `rope_scaling`)
    /// or from transformers 5's `rope_parameters` (optionally keyed by layer
    /// type, e.g. `full_attention`).
    pub fn rope(&self, layer_type: Option<&str>, default_theta: f64) -> Result<Rope> {
        let params = match self.get("rope_parameters") {
            Some(Value::Object(p)) => match layer_type.and_then(|t| p.get(t)) {
                Some(Value::Object(inner)) => Some(inner.clone()),
                _ => Some(p.clone()),
            },
            Some(_) => return Err(self.err("rope_parameters", "must be an object")),
            None => None,
        };
        let field_theta = params
            .as_ref()
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64);
        let theta = match field_theta {
            Some(t) => t,
            None => self.opt_f64("rope_theta")?.unwrap_or(default_theta),
        };
        let scaling_map = match (&params, self.get("rope_scaling")) {
            (Some(p), _) if p.contains_key("rope_type") || p.contains_key("type") => {
                Some(p.clone())
            }
            (_, Some(Value::Object(s))) => Some(s.clone()),
            (_, Some(_)) => return Err(self.err("rope_scaling", "must be an object or null")),
            _ => None,
        };
        let scaling = match scaling_map {
            None => RopeScaling::Default,
            Some(s) => self.rope_scaling(&s)?,
        };
        Ok(Rope { theta, scaling })
    }

    fn rope_scaling(&self, s: &Map<String, Value>) -> Result<RopeScaling> {
        let kind = s
            .get("rope_type")
            .or_else(|| s.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let num = |key: &str| -> Result<f64> {
            s.get(key).and_then(Value::as_f64).ok_or_else(|| {
                self.err(&format!("rope_scaling.{key}"), "is missing or not a number")
            })
        };
        match kind {
            "default" => Ok(RopeScaling::Default),
            "linear" => Ok(RopeScaling::Linear {
                factor: num("factor")?,
            }),
            "llama3" => Ok(RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_max_position_embeddings: num("original_max_position_embeddings")?,
            }),
            other => Err(self.err(
                "rope_scaling",
                &format!(
                    "rope type `{other}` is not supported (supported: default, linear, llama3)"
                ),
            )),
        }
    }

    /// The per-layer sliding flags from `layer_types`, if the config lists them.
    pub fn layer_types(&self, num_layers: usize) -> Result<Option<Vec<bool>>> {
        match self.get("layer_types") {
            None => Ok(None),
            Some(Value::Array(items)) if items.len() == num_layers => items
                .iter()
                .map(|v| match v.as_str() {
                    Some("sliding_attention") => Ok(true),
                    Some("full_attention") => Ok(false),
                    _ => Err(self.err(
                        "layer_types",
                        "entries must be \"sliding_attention\" or \"full_attention\"",
                    )),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(_) => Err(self.err(
                "layer_types",
                &format!("must be a list of {num_layers} layer types"),
            )),
        }
    }

    /// The fields every family shares, filled into a llama-like spec that
    /// the adapters then adjust.
    pub fn base_spec(&self, family: &'static str, default_theta: f64) -> Result<DecoderSpec> {
        let hidden_size = self.usize("hidden_size")?;
        let num_heads = self.usize("num_attention_heads")?;
        if num_heads == 0 || hidden_size == 0 {
            return Err(self.err("num_attention_heads", "must be positive"));
        }
        let num_kv_heads = self.opt_usize("num_key_value_heads")?.unwrap_or(num_heads);
        if num_kv_heads == 0 || num_heads % num_kv_heads != 0 {
            return Err(self.err(
                "num_key_value_heads",
                "must be positive and divide num_attention_heads",
            ));
        }
        let head_dim = self
            .opt_usize("head_dim")?
            .unwrap_or(hidden_size / num_heads);
        if head_dim % 2 != 0 {
            return Err(self.err("head_dim", "must be even for rotary embeddings"));
        }
        let num_layers = self.usize("num_hidden_layers")?;
        Ok(DecoderSpec {
            family,
            hidden_size,
            intermediate_size: self.usize("intermediate_size")?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            vocab_size: self.usize("vocab_size")?,
            rms_norm_eps: self.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
            rope: self.rope(Some("full_attention"), default_theta)?,
            rope_local: None,
            activation: self.activation(Activation::Silu)?,
            norm_weight_offset: false,
            scale_embeddings: false,
            qkv_bias: self.opt_bool("attention_bias")?.unwrap_or(false),
            qk_norm: false,
            sandwich_norms: false,
            attn_logit_softcap: None,
            final_logit_softcap: None,
            query_pre_attn_scalar: None,
            sliding_window: None,
            sliding_layers: vec![false; num_layers],
            tie_word_embeddings: self.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            fused_qkv: false,
            fused_gate_up: false,
            max_position_embeddings: self.opt_usize("max_position_embeddings")?,
            eos_token_ids: self.eos_ids()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reader(v: Value) -> ConfigReader {
        let Value::Object(m) = v else {
            panic!("test config must be an object")
        };
        ConfigReader::new("config.json", m)
    }

    #[test]
    fn rope_theta_is_read_from_either_layout() {
        let top = reader(json!({"rope_theta": 100000.0}));
        assert_eq!(top.rope(None, 10000.0).unwrap().theta, 100000.0);
        let nested =
            reader(json!({"rope_parameters": {"rope_theta": 5e5, "rope_type": "default"}}));
        let rope = nested.rope(Some("full_attention"), 10000.0).unwrap();
        assert_eq!(rope.theta, 5e5);
        assert_eq!(rope.scaling, RopeScaling::Default);
        let per_layer = reader(json!({"rope_parameters": {
            "full_attention": {"rope_theta": 1e6, "rope_type": "linear", "factor": 8.0},
            "sliding_attention": {"rope_theta": 1e4, "rope_type": "default"}}}));
        let full = per_layer.rope(Some("full_attention"), 1.0).unwrap();
        assert_eq!(full.theta, 1e6);
        assert_eq!(full.scaling, RopeScaling::Linear { factor: 8.0 });
        assert_eq!(
            per_layer
                .rope(Some("sliding_attention"), 1.0)
                .unwrap()
                .theta,
            1e4
        );
        let absent = reader(json!({}));
        assert_eq!(absent.rope(None, 10000.0).unwrap().theta, 10000.0);
    }

    #[test]
    fn unknown_rope_type_names_the_field_and_the_supported_ones() {
        let r = reader(json!({"rope_scaling": {"type": "yarn", "factor": 4.0}}));
        let msg = r.rope(None, 1e4).unwrap_err().to_string();
        assert!(
            msg.contains("rope_scaling") && msg.contains("yarn") && msg.contains("llama3"),
            "{msg}"
        );
    }

    #[test]
    fn llama3_scaling_keeps_high_frequencies_and_divides_low_ones() {
        let rope = Rope {
            theta: 500000.0,
            scaling: RopeScaling::Llama3 {
                factor: 32.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0,
            },
        };
        let plain = Rope {
            theta: 500000.0,
            scaling: RopeScaling::Default,
        }
        .inv_freq(64);
        let scaled = rope.inv_freq(64);
        assert_eq!(scaled[0], plain[0]);
        assert!((scaled[31] - plain[31] / 32.0).abs() < 1e-12);
    }

    #[test]
    fn unsupported_model_type_lists_the_supported_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"model_type": "bert"}"#).unwrap();
        let msg = spec_from_config(&path).unwrap_err().to_string();
        assert!(
            msg.contains("bert") && msg.contains("llama") && msg.contains("phi3"),
            "{msg}"
        );
    }

    #[test]
    fn bad_json_reports_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{\n  \"model_type\": llama\n}").unwrap();
        let msg = spec_from_config(&path).unwrap_err().to_string();
        assert!(msg.contains("line 2"), "{msg}");
    }
}
