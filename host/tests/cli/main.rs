//! The host's integration tests: one binary, one module per topic. Each
//! test runs the real `clemhost` executable as a user would.

mod times;
mod util;

mod check_hf;
mod clembench;
mod clembench_records;
mod doctor;
mod hostile;
mod keys;
mod plugins;
mod registry;
mod run;
#[cfg(feature = "serve")]
mod serve;
mod template;
