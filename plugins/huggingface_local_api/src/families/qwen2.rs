//! Qwen2 / Qwen2.5 (`model_type: qwen2`): biases on q, k and v.

use super::{ConfigReader, DecoderSpec};
use crate::error::Result;

/// The qwen2 spec.
pub fn spec(cfg: &ConfigReader) -> Result<DecoderSpec> {
    let mut spec = cfg.base_spec("qwen2", 10000.0)?;
    spec.qkv_bias = true;
    apply_qwen_sliding(cfg, &mut spec)?;
    Ok(spec)
}

/// Qwen's sliding window: only with `use_sliding_window`, and only from
/// layer `max_window_layers` on (or as `layer_types` says).
pub fn apply_qwen_sliding(cfg: &ConfigReader, spec: &mut DecoderSpec) -> Result<()> {
    if !cfg.opt_bool("use_sliding_window")?.unwrap_or(false) {
        return Ok(());
    }
    spec.sliding_window = cfg.opt_usize("sliding_window")?;
    if spec.sliding_window.is_none() {
        return Ok(());
    }
    spec.sliding_layers = match cfg.layer_types(spec.num_layers)? {
        Some(flags) => flags,
        None => {
            let first = cfg
                .opt_usize("max_window_layers")?
                .unwrap_or(spec.num_layers);
            (0..spec.num_layers).map(|i| i >= first).collect()
        }
    };
    Ok(())
}
