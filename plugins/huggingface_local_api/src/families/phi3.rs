//! Phi-3 (`model_type: phi3`): fused `qkv_proj` and `gate_up_proj`.

use super::{ConfigReader, DecoderSpec};
use crate::error::{Error, Result};

/// The phi3 spec.
pub fn spec(cfg: &ConfigReader) -> Result<DecoderSpec> {
    let mut spec = cfg.base_spec("phi3", 10000.0)?;
    if let Some(factor) = cfg.opt_f64("partial_rotary_factor")? {
        if (factor - 1.0).abs() > f64::EPSILON {
            return Err(Error::field(
                "config.json",
                "partial_rotary_factor",
                "values other than 1.0 are not supported by huggingface_local",
            ));
        }
    }
    spec.fused_qkv = true;
    spec.fused_gate_up = true;
    spec.sliding_window = cfg.opt_usize("sliding_window")?;
    if spec.sliding_window.is_some() {
        spec.sliding_layers = vec![true; spec.num_layers];
    }
    Ok(spec)
}
