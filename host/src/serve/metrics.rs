//! Counters for `GET /metrics`, written in Prometheus' text format
//! (version 0.0.4): requests by model and status, errors by kind, a latency
//! histogram per model, and the gauges of requests running and waiting.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

#[derive(Default)]
struct PerModel {
    /// By HTTP status.
    requests: BTreeMap<u16, u64>,
    /// By error code.
    errors: BTreeMap<&'static str, u64>,
    /// Cumulative counts per bucket (the last is +Inf).
    buckets: [u64; BUCKETS.len() + 1],
    sum_s: f64,
    count: u64,
}

/// The server's counters. Requests that fail before their model is known
/// (bad JSON, a wrong key) count under `model=""`.
#[derive(Default)]
pub struct Metrics {
    models: Mutex<BTreeMap<String, PerModel>>,
}

/// What a model's gate reports at the time of a scrape.
pub struct Gauges<'a> {
    /// The model's name.
    pub model: &'a str,
    /// Requests the plugin is working on.
    pub in_flight: usize,
    /// Requests waiting for a slot.
    pub queued: usize,
}

/// Escapes a label value as the text format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Counts one answered request.
    pub fn record(&self, model: &str, status: u16, error: Option<&'static str>, took: Duration) {
        let mut all = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let m = all.entry(model.to_string()).or_default();
        *m.requests.entry(status).or_default() += 1;
        if let Some(code) = error {
            *m.errors.entry(code).or_default() += 1;
        }
        let s = took.as_secs_f64();
        let first = BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BUCKETS.len());
        for b in &mut m.buckets[first..] {
            *b += 1;
        }
        m.sum_s += s;
        m.count += 1;
    }

    /// The text served at `GET /metrics`.
    pub fn render(&self, gauges: &[Gauges<'_>]) -> String {
        let all = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let counters = [
            (
                "clemhost_requests_total",
                "Chat completion requests answered, by model and HTTP status.",
                all.iter()
                    .flat_map(|(model, m)| {
                        m.requests.iter().map(move |(status, n)| {
                            (
                                format!("model=\"{}\",status=\"{status}\"", label(model)),
                                *n,
                            )
                        })
                    })
                    .collect::<Vec<_>>(),
            ),
            (
                "clemhost_errors_total",
                "Failed requests, by model and error code.",
                all.iter()
                    .flat_map(|(model, m)| {
                        m.errors.iter().map(move |(code, n)| {
                            (format!("model=\"{}\",kind=\"{code}\"", label(model)), *n)
                        })
                    })
                    .collect(),
            ),
        ];
        for (name, help, samples) in counters {
            family(&mut out, name, "counter", help, samples);
        }
        let gauge = |value: fn(&Gauges<'_>) -> usize| -> Vec<(String, u64)> {
            gauges
                .iter()
                .map(|g| (format!("model=\"{}\"", label(g.model)), value(g) as u64))
                .collect()
        };
        family(
            &mut out,
            "clemhost_in_flight",
            "gauge",
            "Requests the model's plugin is working on.",
            gauge(|g| g.in_flight),
        );
        family(
            &mut out,
            "clemhost_queued",
            "gauge",
            "Requests waiting for a free slot of their model.",
            gauge(|g| g.queued),
        );
        let name = "clemhost_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from a request's arrival to its answer.\n# TYPE {name} histogram"
        );
        for (model, m) in all.iter() {
            let model = label(model);
            let bounds = BUCKETS
                .iter()
                .map(f64::to_string)
                .chain(["+Inf".to_string()]);
            for (bound, n) in bounds.zip(&m.buckets) {
                let _ = writeln!(out, "{name}_bucket{{model=\"{model}\",le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(out, "{name}_sum{{model=\"{model}\"}} {}", m.sum_s);
            let _ = writeln!(out, "{name}_count{{model=\"{model}\"}} {}", m.count);
        }
        out
    }
}

/// One metric family: its HELP and TYPE lines and its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: Vec<(String, u64)>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.record("a", 200, None, Duration::from_millis(3));
        m.record("a", 429, Some("queue_full"), Duration::from_secs(1000));
        let text = m.render(&[Gauges {
            model: "a",
            in_flight: 2,
            queued: 1,
        }]);
        assert!(
            text.contains("clemhost_request_duration_seconds_bucket{model=\"a\",le=\"0.001\"} 0\n")
        );
        assert!(
            text.contains("clemhost_request_duration_seconds_bucket{model=\"a\",le=\"0.005\"} 1\n")
        );
        assert!(
            text.contains("clemhost_request_duration_seconds_bucket{model=\"a\",le=\"300\"} 1\n")
        );
        assert!(
            text.contains("clemhost_request_duration_seconds_bucket{model=\"a\",le=\"+Inf\"} 2\n")
        );
        assert!(text.contains("clemhost_requests_total{model=\"a\",status=\"429\"} 1\n"));
        assert!(text.contains("clemhost_errors_total{model=\"a\",kind=\"queue_full\"} 1\n"));
        assert!(text.contains("clemhost_in_flight{model=\"a\"} 2\n"));
        assert!(text.contains("clemhost_queued{model=\"a\"} 1\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
