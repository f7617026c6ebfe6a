//! Integration tests of the `llamacpp` plugin on the real SmolLM2 GGUF
//! (`scripts/fetch-smollm2`). Each test skips with a message when the model
//! file is absent. One binary, one module per topic.

mod env;

mod abi;
mod batching;
mod errors;
mod reference;
mod source;
