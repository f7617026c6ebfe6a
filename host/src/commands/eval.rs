//! `clemhost eval`: aggregates every `scores.json` into `raw.csv`,
//! `results.csv`, `results.md` and `results.html` in the results directory.
//!
//! As clembench defines it: per game and model, `% Played` = 100 × the mean
//! of `Played` (= 1 − `Aborted`) over episodes, `Quality Score` = the mean
//! `Main Score` of the played episodes; `clemscore` = (mean % played over
//! games / 100) × (mean quality over games), rounded to 2 decimals.

use crate::cli::GlobalArgs;
use crate::error::{Error, Exit, Result};
use crate::results::{self, files, NAN_MARKER};
use clap::Args;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Options of this command.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The results directory.
    #[arg(
        short = 'r',
        long = "results-dir",
        value_name = "DIR",
        default_value = "results"
    )]
    pub results_dir: PathBuf,
}

/// One row of raw.csv.
struct RawRow {
    game: String,
    model: String,
    experiment: String,
    episode: String,
    metric: String,
    value: Option<f64>,
}

/// A float as Python prints it (`100.0`, `38.89`); NaN as pandas writes it (empty).
fn py_float(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => {
            if x.fract() == 0.0 && x.abs() < 1e16 {
                format!("{x:.1}")
            } else {
                format!("{x}")
            }
        }
        _ => String::new(),
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line break
/// (`\n` or `\r`), as Python's csv module does.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn write(path: &Path, text: &str) -> Result<()> {
    results::write_atomic(path, text.as_bytes()).map_err(Error::wrap)
}

/// Runs the command.
pub fn run(_global: &GlobalArgs, args: &EvalArgs) -> Result<Exit> {
    let root = &args.results_dir;
    let mut rows = Vec::new();
    let mut unscored = 0usize;
    for dir in results::find_episodes(root) {
        let scores_path = dir.join(files::SCORES);
        if !scores_path.exists() {
            unscored += 1;
            continue;
        }
        let scores = results::read_json(&scores_path).map_err(Error::wrap)?;
        let parts: Vec<String> = dir
            .components()
            .rev()
            .take(4)
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let [episode, experiment, game, model] = <[String; 4]>::try_from(parts).map_err(|_| {
            Error::msg(format!(
                "{}: expected <model>/<game>/<experiment>/<episode>/scores.json",
                scores_path.display()
            ))
        })?;
        // The run folder holds the model names escaped (`org%2Fname`); show them as they are.
        let model = crate::results::names::unescape_component(&model);
        let Some(ep) = scores.get("episode scores").and_then(Value::as_object) else {
            return Err(Error::msg(format!(
                "{}: no \"episode scores\" object; run clemhost score again",
                scores_path.display()
            )));
        };
        let mut aborted = None;
        for (metric, v) in ep {
            let value = match v {
                Value::String(s) if s == NAN_MARKER => None,
                other => other.as_f64(),
            };
            if metric == "Aborted" {
                aborted = value;
            }
            rows.push(RawRow {
                game: game.clone(),
                model: model.clone(),
                experiment: experiment.clone(),
                episode: episode.clone(),
                metric: metric.clone(),
                value,
            });
        }
        if let Some(a) = aborted {
            rows.push(RawRow {
                game: game.clone(),
                model: model.clone(),
                experiment,
                episode,
                metric: "Played".into(),
                value: Some(1.0 - a),
            });
        }
    }
    // Episodes that failed have error.json and no interactions.json.
    let errored = results::dirs_holding(root, files::ERROR).len();
    if rows.is_empty() {
        return Err(Error::msg(format!(
            "no scores.json under {}; run clemhost score first",
            root.display()
        )));
    }

    let mut raw = String::from(",game,model,experiment,episode,metric,value\n");
    for (i, r) in rows.iter().enumerate() {
        raw.push_str(&format!(
            "{i},{},{},{},{},{},{}\n",
            csv_field(&r.game),
            csv_field(&r.model),
            csv_field(&r.experiment),
            csv_field(&r.episode),
            csv_field(&r.metric),
            py_float(r.value)
        ));
    }
    write(&root.join("raw.csv"), &raw)?;

    // model -> game -> (played values, main scores of played episodes)
    type Acc = (Vec<f64>, Vec<f64>);
    let mut per: BTreeMap<String, BTreeMap<String, Acc>> = BTreeMap::new();
    for r in &rows {
        let acc = per
            .entry(r.model.clone())
            .or_default()
            .entry(r.game.clone())
            .or_default();
        match (r.metric.as_str(), r.value) {
            ("Played", Some(v)) => acc.0.push(v),
            ("Main Score", Some(v)) => acc.1.push(v),
            _ => {}
        }
    }
    let games: Vec<String> = {
        let mut g: Vec<String> = per.values().flat_map(|m| m.keys().cloned()).collect();
        g.sort();
        g.dedup();
        g
    };
    let mut header = vec![
        "-, clemscore".to_string(),
        "all, Average % Played".into(),
        "all, Average Quality Score".into(),
    ];
    for g in &games {
        header.push(format!("{g}, % Played"));
        header.push(format!("{g}, Quality Score"));
    }
    let mut table: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    for (model, by_game) in &per {
        let mut cells = Vec::new();
        let mut played_all = Vec::new();
        let mut quality_all = Vec::new();
        for g in &games {
            let (p, q) = by_game
                .get(g)
                .map(|(p, q)| (mean(p).map(|x| x * 100.0), mean(q)))
                .unwrap_or((None, None));
            if let Some(p) = p {
                played_all.push(p);
            }
            if let Some(q) = q {
                quality_all.push(q);
            }
            cells.push(p.map(round2));
            cells.push(q.map(round2));
        }
        let played = mean(&played_all);
        let quality = mean(&quality_all);
        // As clembench: no quality score (every episode aborted) means no clemscore.
        let clemscore = match (played, quality) {
            (Some(p), Some(q)) => Some(p / 100.0 * q),
            _ => None,
        };
        let mut row = vec![
            clemscore.map(round2),
            played.map(round2),
            quality.map(round2),
        ];
        row.extend(cells);
        table.push((model.clone(), row));
    }
    let mut csv = String::new();
    csv.push_str(
        &std::iter::once(String::new())
            .chain(header.iter().map(|h| csv_field(h)))
            .collect::<Vec<_>>()
            .join(","),
    );
    csv.push('\n');
    for (model, row) in &table {
        csv.push_str(&csv_field(model));
        for v in row {
            csv.push(',');
            csv.push_str(&py_float(*v));
        }
        csv.push('\n');
    }
    write(&root.join("results.csv"), &csv)?;

    let cell = |v: &Option<f64>| match v {
        Some(_) => py_float(*v),
        None => "n/a".to_string(),
    };
    let mut md = format!("| model | {} |\n", header.join(" | "));
    md.push_str(&format!("|---|{}\n", "---:|".repeat(header.len())));
    for (model, row) in &table {
        md.push_str(&format!(
            "| {model} | {} |\n",
            row.iter().map(cell).collect::<Vec<_>>().join(" | ")
        ));
    }
    write(&root.join("results.md"), &md)?;

    let esc = crate::commands::transcribe::escape_html;
    let mut html = String::from("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>clemhost results</title>\n<style>table{border-collapse:collapse;font-family:sans-serif}td,th{border:1px solid #999;padding:4px 8px}td{text-align:right}</style></head><body>\n<table>\n<tr><th>model</th>");
    for h in &header {
        html.push_str(&format!("<th>{}</th>", esc(h)));
    }
    html.push_str("</tr>\n");
    for (model, row) in &table {
        html.push_str(&format!("<tr><th>{}</th>", esc(model)));
        for v in row {
            html.push_str(&format!("<td>{}</td>", cell(v)));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n</body></html>\n");
    write(&root.join("results.html"), &html)?;

    // Model, game and experiment names are folder names of a results tree
    // that may come from elsewhere.
    print!("{}", crate::error::escape_for_terminal(&md));
    println!(
        "saved {}, {}, {} and {}",
        root.join("raw.csv").display(),
        root.join("results.csv").display(),
        root.join("results.md").display(),
        root.join("results.html").display()
    );
    if unscored > 0 {
        eprintln!("{unscored} played episode(s) have no scores.json yet; run clemhost score");
    }
    if errored > 0 {
        eprintln!(
            "{errored} episode(s) failed (error.json) and are not in these numbers; rerun them with clemhost run --resume"
        );
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_with_line_breaks_are_quoted() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("a\nb"), "\"a\nb\"");
        assert_eq!(csv_field("a\rb"), "\"a\rb\"");
    }
}
