//! Gemma 2 (`model_type: gemma2`): sandwich norms, soft-capping, alternating
//! sliding-window layers.

use super::{ConfigReader, DecoderSpec};
use crate::error::Result;

/// The gemma2 spec.
pub fn spec(cfg: &ConfigReader) -> Result<DecoderSpec> {
    let mut spec = cfg.base_spec("gemma2", 10000.0)?;
    super::gemma::apply_gemma_basics(cfg, &mut spec)?;
    spec.sandwich_norms = true;
    spec.attn_logit_softcap = cfg.opt_f64("attn_logit_softcapping")?;
    spec.final_logit_softcap = cfg.opt_f64("final_logit_softcapping")?;
    spec.query_pre_attn_scalar = cfg.opt_f64("query_pre_attn_scalar")?;
    spec.sliding_window = cfg.opt_usize("sliding_window")?;
    if spec.sliding_window.is_some() {
        spec.sliding_layers = match cfg.layer_types(spec.num_layers)? {
            Some(flags) => flags,
            None => (0..spec.num_layers).map(|i| i % 2 == 0).collect(),
        };
    }
    Ok(spec)
}
