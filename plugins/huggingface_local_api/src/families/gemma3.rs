//! Gemma 3 (`model_type: gemma3_text`, or `gemma3` with a `text_config`):
//! gemma2's layout plus q/k norms and a separate RoPE for local layers.

use super::{ConfigReader, DecoderSpec, Rope, RopeScaling};
use crate::error::Result;

/// The gemma3 spec.
pub fn spec(cfg: &ConfigReader) -> Result<DecoderSpec> {
    let mut spec = cfg.base_spec("gemma3", 1_000_000.0)?;
    super::gemma::apply_gemma_basics(cfg, &mut spec)?;
    spec.sandwich_norms = true;
    spec.qk_norm = true;
    spec.attn_logit_softcap = cfg.opt_f64("attn_logit_softcapping")?;
    spec.final_logit_softcap = cfg.opt_f64("final_logit_softcapping")?;
    spec.query_pre_attn_scalar = cfg.opt_f64("query_pre_attn_scalar")?;
    spec.sliding_window = cfg.opt_usize("sliding_window")?;
    spec.sliding_layers = match cfg.layer_types(spec.num_layers)? {
        Some(flags) => flags,
        None => {
            let pattern = cfg.opt_usize("sliding_window_pattern")?.unwrap_or(6).max(1);
            (0..spec.num_layers)
                .map(|i| (i + 1) % pattern != 0)
                .collect()
        }
    };
    if spec.sliding_window.is_none() {
        spec.sliding_layers = vec![false; spec.num_layers];
    }
    // Local layers: transformers 5 nests their RoPE under `sliding_attention`;
    // older configs give only `rope_local_base_freq`, never scaled.
    let local_theta = cfg.opt_f64("rope_local_base_freq")?.unwrap_or(10000.0);
    let local = cfg.rope(Some("sliding_attention"), local_theta)?;
    spec.rope_local = Some(if cfg.opt_f64("rope_local_base_freq")?.is_some() {
        Rope {
            theta: local_theta,
            scaling: RopeScaling::Default,
        }
    } else {
        local
    });
    Ok(spec)
}
