//! Gemma (`model_type: gemma`): GELU MLP, `1 + w` norms, scaled embeddings.

use super::{Activation, ConfigReader, DecoderSpec};
use crate::error::Result;

/// The gemma spec.
pub fn spec(cfg: &ConfigReader) -> Result<DecoderSpec> {
    let mut spec = cfg.base_spec("gemma", 10000.0)?;
    apply_gemma_basics(cfg, &mut spec)?;
    Ok(spec)
}

/// What all gemma generations share.
pub fn apply_gemma_basics(cfg: &ConfigReader, spec: &mut DecoderSpec) -> Result<()> {
    spec.activation = cfg.activation(Activation::GeluTanh)?;
    spec.norm_weight_offset = true;
    spec.scale_embeddings = true;
    spec.tie_word_embeddings = cfg.opt_bool("tie_word_embeddings")?.unwrap_or(true);
    Ok(())
}
