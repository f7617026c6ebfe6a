//! Comparing results trees of two runs: the values that differ between any two runs left out.

/// Removes values that legitimately differ between runs (timestamps, durations).
pub fn without_times(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "timestamp"
                            | "created"
                            | "benchmark_start"
                            | "benchmark_end"
                            | "duration"
                            | "duration_seconds"
                            | "call_start"
                            | "call_duration"
                    )
                })
                .map(|(k, v)| (k.clone(), without_times(v)))
                .collect(),
        ),
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.iter().map(without_times).collect())
        }
        other => other.clone(),
    }
}
