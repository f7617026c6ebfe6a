//! Test and benchmark helpers (feature `test-support`): a fake HTTP server on
//! 127.0.0.1, a log capture, a locator for built plugin libraries, and the
//! fault checks every remote plugin runs.
//!
//! The server is deliberately small: HTTP/1.1 with keep-alive and
//! `Content-Length` bodies, one thread per connection, `TCP_NODELAY` on and
//! each answer written in one piece (so Nagle's algorithm and delayed ACKs
//! add no latency that would be blamed on the client).
//!
//! - [`server`]: the fake server and what it answers ([`FakeServer`], [`Reply`]);
//! - [`logs`]: the log capture;
//! - [`fixtures`]: built plugin libraries, model configs and requests for tests;
//! - [`conformance`]: the checks every remote plugin passes (faults, wire
//!   format byte for byte, through the ABI, missing keys).

pub mod conformance;
pub mod fixtures;
pub mod logs;
pub mod server;

pub use conformance::{
    check_abi, check_faults, check_generation, check_image_downloads, check_missing_key,
    check_wire, error_against, WireCase,
};
pub use fixtures::{plugin_library, test_config, user_request};
pub use logs::capture_logs;
pub use server::{FakeServer, RecordedRequest, Reply};
