//! Mistral (`model_type: mistral`): llama with an optional sliding window.

use super::{ConfigReader, DecoderSpec};
use crate::error::Result;

/// The mistral spec: every layer uses `sliding_window` when it is set.
pub fn spec(cfg: &ConfigReader) -> Result<DecoderSpec> {
    let mut spec = cfg.base_spec("mistral", 10000.0)?;
    spec.sliding_window = cfg.opt_usize("sliding_window")?;
    if spec.sliding_window.is_some() {
        spec.sliding_layers = vec![true; spec.num_layers];
    }
    Ok(spec)
}
