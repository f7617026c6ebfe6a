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

/// Every JSON file under `dir`, by relative path, times and durations left out.
pub fn tree_without_times(
    dir: &std::path::Path,
) -> std::collections::BTreeMap<std::path::PathBuf, serde_json::Value> {
    fn walk(
        root: &std::path::Path,
        dir: &std::path::Path,
        out: &mut std::collections::BTreeMap<std::path::PathBuf, serde_json::Value>,
    ) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let v: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    without_times(&v),
                );
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}
