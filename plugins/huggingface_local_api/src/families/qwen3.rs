//! Qwen3 (`model_type: qwen3`): RMS norm on each query and key head.

use super::{ConfigReader, DecoderSpec};
use crate::error::Result;

/// The qwen3 spec.
pub fn spec(cfg: &ConfigReader) -> Result<DecoderSpec> {
    let mut spec = cfg.base_spec("qwen3", 10000.0)?;
    spec.qk_norm = true;
    super::qwen2::apply_qwen_sliding(cfg, &mut spec)?;
    Ok(spec)
}
