//! The `clem_player` object clemcore adds to a recorded response.

use crate::time;
use chrono::NaiveDateTime;
use clemhost_plugin_sdk::serde_json::{json, Value};
use std::time::Duration;

/// `{"call_start": str(datetime), "call_duration": str(timedelta),
/// "response": text, "model_name": name}`, keys in clemcore's order.
/// `call_start` is local time ([`time::now`] when the call began).
pub fn clem_player(
    call_start: &NaiveDateTime,
    call_duration: Duration,
    response: &str,
    model_name: &str,
) -> Value {
    json!({
        "call_start": time::datetime(call_start),
        "call_duration": time::timedelta(call_duration),
        "response": response,
        "model_name": model_name,
    })
}
