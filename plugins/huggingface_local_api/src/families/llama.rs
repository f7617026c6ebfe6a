//! Llama 2 / Llama 3 / SmolLM / SmolLM2 (`model_type: llama`).

use super::{ConfigReader, DecoderSpec};
use crate::error::Result;

/// The llama spec: the plain pre-norm decoder every other family varies.
pub fn spec(cfg: &ConfigReader) -> Result<DecoderSpec> {
    cfg.base_spec("llama", 10000.0)
}
