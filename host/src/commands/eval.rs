//! `clemhost eval`: aggregates every `scores.json` into `raw.csv`,
//! `results.csv`, `results.md` and `results.html` in the results directory.
//!
//! The numbers are `clem eval`'s, computed the way its pandas code computes
//! them, so that `results.csv` is the same file:
//!
//! - per game and model, `% Played` = 100 × the mean of `Played`
//!   (= 1 − `Aborted`) over episodes, `Quality Score` = the mean `Main
//!   Score` of the episodes that have one (NaN, an aborted episode's, is
//!   left out), each rounded to 2 decimals;
//! - per model, `Average % Played` and `Average Quality Score` = the mean
//!   over games of those *rounded* numbers, rounded again;
//! - `clemscore` = (`Average % Played` / 100) × `Average Quality Score`,
//!   rounded; none when every episode was aborted.
//!
//! Means are summed as pandas sums them (Kahan's compensated sum), rounding
//! is NumPy's (scale by 100, round half to even, scale back), and the
//! columns are sorted by (game, metric) as pandas' pivot leaves them.
//! `--std` adds each game's `Quality Score (std)` (the sample standard
//! deviation), as clemcore 3.7's `clem eval --std` and every clemcore 3.3
//! `clem eval` do.

use crate::cli::GlobalArgs;
use crate::error::{Error, Exit, Result};
use crate::results::{self, files, NAN_MARKER};
use clap::{Args, ValueEnum};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How the rows of the table are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum SortBy {
    /// By model name.
    #[default]
    #[value(name = "model_name")]
    ModelName,
    /// By clemscore, the highest first (models without one last).
    Clemscore,
}

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
    /// Add each game's standard deviation of the quality score.
    #[arg(long)]
    pub std: bool,
    /// Order the rows by model name or by clemscore.
    #[arg(long, value_enum, default_value_t = SortBy::ModelName)]
    pub sort: SortBy,
}

/// One row of raw.csv.
#[derive(Clone)]
struct RawRow {
    game: String,
    model: String,
    experiment: String,
    episode: String,
    metric: String,
    value: Option<f64>,
}

/// A float as pandas writes it into a CSV file: Python's `repr`; NaN empty.
fn csv_float(v: Option<f64>) -> String {
    match v {
        Some(x) if !x.is_nan() => clemhost_pyfacts::float::repr(x),
        _ => String::new(),
    }
}

/// A CSV text field (a name; numbers go through [`csv_float`]), quoted when
/// it holds a comma, a quote or a line break (`\n` or `\r`), as Python's csv
/// module does. A name from a results tree of others that starts like a
/// formula (`=`, `+`, `-`, `@`, a tab or `\r`) is written with a `'` in
/// front, as OWASP advises against CSV injection, so a spreadsheet shows
/// it as text instead of evaluating it.
fn csv_field(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        csv_quoted(&format!("'{s}"))
    } else {
        csv_quoted(s)
    }
}

/// [`csv_field`] without the formula guard, for clemhost's own labels
/// (clemcore's `-, clemscore` column must stay as clemcore writes it).
fn csv_quoted(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A markdown table cell: `|` escaped as `\|` and line breaks as spaces, so
/// a name cannot end its cell or its row; `&`, `<` and `>` as HTML
/// entities, so a name is never raw HTML where the markdown is rendered.
fn md_cell(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
}

/// The mean of the numbers that are not NaN, summed as pandas' groupby
/// sums (Kahan); `None` when there are none.
fn mean(xs: &[Option<f64>]) -> Option<f64> {
    let (mut sum, mut compensation, mut n) = (0.0f64, 0.0f64, 0u64);
    for x in xs.iter().flatten().filter(|x| !x.is_nan()) {
        n += 1;
        let y = x - compensation;
        let t = sum + y;
        compensation = t - sum - y;
        if compensation.is_nan() {
            compensation = 0.0; // an infinity: keep it rather than NaN, as pandas does
        }
        sum = t;
    }
    (n > 0).then(|| sum / n as f64)
}

/// The sample standard deviation (n − 1) of the numbers that are not NaN,
/// by Welford's updates as pandas' groupby computes it; `None` below two.
fn std_dev(xs: &[Option<f64>]) -> Option<f64> {
    let (mut mean, mut m2, mut n) = (0.0f64, 0.0f64, 0u64);
    for x in xs.iter().flatten().filter(|x| !x.is_nan()) {
        n += 1;
        let old = mean;
        mean += (x - old) / n as f64;
        m2 += (x - mean) * (x - old);
    }
    (n > 1).then(|| (m2 / (n - 1) as f64).sqrt())
}

/// NumPy's `round(x, 2)`: scale, round half to even, scale back.
fn round2(x: f64) -> f64 {
    // `+ 0.0` turns a -0.0 (a tiny negative rounded) into 0.0, which the
    // tables show as `0.0`, not `-0.0`.
    (x * 100.0).round_ties_even() / 100.0 + 0.0
}

fn write(path: &Path, text: &str) -> Result<()> {
    results::write_atomic(path, text.as_bytes()).map_err(Error::wrap)
}

/// An episode score as a number for the table: numbers, booleans as 1/0,
/// NaN (Python's bare token) and null as none; anything else is an error,
/// as it is for `clem eval`.
fn number(v: &Value, path: &Path, metric: &str) -> Result<Option<f64>> {
    match v {
        Value::Number(n) => Ok(n.as_f64()),
        Value::Bool(b) => Ok(Some(f64::from(u8::from(*b)))),
        Value::Null => Ok(None),
        Value::String(s) if s == NAN_MARKER => Ok(None),
        other => Err(Error::msg(format!(
            "{}: episode score \"{metric}\" is {other}, not a number; fix the game's scorer and run clemhost score again",
            path.display()
        ))),
    }
}

/// Reads every episode's `scores.json` into raw rows: each file's episode
/// scores in file order, then one `Played` row per `Aborted` row (as
/// clemcore appends them).
fn raw_rows(root: &Path) -> Result<Vec<RawRow>> {
    let mut rows = Vec::new();
    let mut played = Vec::new();
    for dir in results::dirs_holding(root, files::SCORES) {
        let scores_path = dir.join(files::SCORES);
        let scores = results::read_json(&scores_path).map_err(Error::wrap)?;
        let rel = dir.strip_prefix(root).unwrap_or(&dir);
        let parts: Vec<String> = rel
            .components()
            .rev()
            .take(4)
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let [episode, experiment, game, model] = <[String; 4]>::try_from(parts).map_err(|_| {
            Error::msg(format!(
                "{}: expected <model>/<game>/<experiment>/<episode>/scores.json under {}",
                scores_path.display(),
                root.display()
            ))
        })?;
        // The run folder holds the model names escaped (`org%2Fname`); show them as they are.
        let model = crate::results::names::run_dir_label(&model);
        let Some(ep) = scores.get("episode scores").and_then(Value::as_object) else {
            return Err(Error::msg(format!(
                "{}: no \"episode scores\" object; run clemhost score again",
                scores_path.display()
            )));
        };
        for (metric, v) in ep {
            if metric == "Played" {
                return Err(Error::msg(format!(
                    "{}: a scorer must not write \"Played\" (eval computes it from \"Aborted\", as clemcore does)",
                    scores_path.display()
                )));
            }
            let value = number(v, &scores_path, metric)?;
            let row = RawRow {
                game: game.clone(),
                model: model.clone(),
                experiment: experiment.clone(),
                episode: episode.clone(),
                metric: metric.clone(),
                value,
            };
            if metric == "Aborted" {
                played.push(RawRow {
                    metric: "Played".into(),
                    value: value.map(|a| 1.0 - a),
                    ..row.clone()
                });
            }
            rows.push(row);
        }
    }
    rows.extend(played);
    Ok(rows)
}

/// The clemscore table: column names (`game, metric`) and one row per model.
#[derive(Debug, PartialEq)]
pub struct Table {
    /// `-, clemscore` first, then (game, metric) in pandas' sorted order.
    pub columns: Vec<(String, String)>,
    /// Model and its cells, column for column.
    pub rows: Vec<(String, Vec<Option<f64>>)>,
}

/// The table `clem eval` writes to `results.csv`, from the raw rows.
fn table(rows: &[RawRow], with_std: bool, sort: SortBy) -> Table {
    const PLAYED: &str = "% Played";
    const QUALITY: &str = "Quality Score";
    const STD: &str = "Quality Score (std)";
    const AVG_PLAYED: &str = "Average % Played";
    const AVG_QUALITY: &str = "Average Quality Score";
    // (game, model) -> the Played values and the Main Score values, in row
    // order (none: the group has no row of that metric).
    type Values = (Vec<Option<f64>>, Vec<Option<f64>>);
    type Group = (Option<Vec<Option<f64>>>, Option<Vec<Option<f64>>>);
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    for r in rows {
        let g = groups.entry((r.game.clone(), r.model.clone())).or_default();
        match r.metric.as_str() {
            "Played" => g.0.get_or_insert_with(Vec::new).push(r.value),
            "Main Score" => g.1.get_or_insert_with(Vec::new).push(r.value),
            _ => {}
        }
    }
    // (game, metric) -> model -> value; a group with no row of a metric has no cell.
    let mut cells: BTreeMap<(String, String), BTreeMap<String, Option<f64>>> = BTreeMap::new();
    let mut per_model: BTreeMap<String, Values> = BTreeMap::new();
    for ((game, model), (played, main)) in &groups {
        let avg = per_model.entry(model.clone()).or_default();
        if let Some(p) = played {
            let v = mean(p).map(|m| round2(m * 100.0));
            cells
                .entry((game.clone(), PLAYED.into()))
                .or_default()
                .insert(model.clone(), v);
            avg.0.push(v);
        }
        if let Some(q) = main {
            let v = mean(q).map(round2);
            cells
                .entry((game.clone(), QUALITY.into()))
                .or_default()
                .insert(model.clone(), v);
            avg.1.push(v);
            if with_std {
                cells
                    .entry((game.clone(), STD.into()))
                    .or_default()
                    .insert(model.clone(), std_dev(q).map(round2));
            }
        }
    }
    let mut clemscores: BTreeMap<String, Option<f64>> = BTreeMap::new();
    for (model, (played, quality)) in &per_model {
        let mut averages = [None, None];
        for (i, (name, values)) in [(AVG_PLAYED, played), (AVG_QUALITY, quality)]
            .into_iter()
            .enumerate()
        {
            if values.is_empty() {
                continue;
            }
            let v = mean(values).map(round2);
            averages[i] = v;
            cells
                .entry(("all".into(), name.into()))
                .or_default()
                .insert(model.clone(), v);
        }
        let score = match averages {
            [Some(p), Some(q)] => Some(round2(p / 100.0 * q)),
            _ => None,
        };
        clemscores.insert(model.clone(), score);
    }
    let mut columns = vec![("-".to_string(), "clemscore".to_string())];
    columns.extend(cells.keys().cloned());
    let mut out: Vec<(String, Vec<Option<f64>>)> = clemscores
        .iter()
        .map(|(model, score)| {
            let mut row = vec![*score];
            row.extend(
                cells
                    .values()
                    .map(|by_model| by_model.get(model).copied().flatten()),
            );
            (model.clone(), row)
        })
        .collect();
    if sort == SortBy::Clemscore {
        // Descending, ties in name order, models without a clemscore last.
        out.sort_by(|(_, a), (_, b)| match (a[0], b[0]) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
    }
    Table { columns, rows: out }
}

/// Runs the command.
pub fn run(_global: &GlobalArgs, args: &EvalArgs) -> Result<Exit> {
    let root = &args.results_dir;
    let rows = raw_rows(root)?;
    let unscored = results::find_episodes(root)
        .iter()
        .filter(|d| !d.join(files::SCORES).exists())
        .count();
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
            csv_float(r.value)
        ));
    }
    write(&root.join("raw.csv"), &raw)?;

    let t = table(&rows, args.std, args.sort);
    let header: Vec<String> = t.columns.iter().map(|(g, m)| format!("{g}, {m}")).collect();
    let mut csv = String::new();
    for ((game, _), h) in t.columns.iter().zip(&header) {
        csv.push(',');
        // `-` is clemcore's own game label of the clemscore column.
        csv.push_str(&if game == "-" {
            csv_quoted(h)
        } else {
            csv_field(h)
        });
    }
    csv.push('\n');
    for (model, row) in &t.rows {
        csv.push_str(&csv_field(model));
        for v in row {
            csv.push(',');
            csv.push_str(&csv_float(*v));
        }
        csv.push('\n');
    }
    write(&root.join("results.csv"), &csv)?;

    let cell = |v: &Option<f64>| match v {
        Some(x) if !x.is_nan() => clemhost_pyfacts::float::repr(*x),
        _ => "n/a".to_string(),
    };
    let md_header: Vec<String> = header.iter().map(|h| md_cell(h)).collect();
    let mut md = format!("| model | {} |\n", md_header.join(" | "));
    md.push_str(&format!("|---|{}\n", "---:|".repeat(header.len())));
    for (model, row) in &t.rows {
        md.push_str(&format!(
            "| {} | {} |\n",
            md_cell(model),
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
    for (model, row) in &t.rows {
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

    #[test]
    fn names_that_start_like_formulas_are_written_as_text() {
        assert_eq!(
            csv_field("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        assert_eq!(csv_field("+1"), "'+1");
        assert_eq!(csv_field("-model"), "'-model");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("\tx"), "'\tx");
        assert_eq!(csv_field("a=b"), "a=b");
        assert_eq!(csv_field("=a,b"), "\"'=a,b\"");
        // Numbers are not names: they keep their sign.
        assert_eq!(csv_float(Some(-1.5)), "-1.5");
    }

    #[test]
    fn markdown_cells_escape_pipes_and_line_breaks() {
        assert_eq!(md_cell("a|b"), "a\\|b");
        assert_eq!(md_cell("a\nb\rc"), "a b c");
        assert_eq!(md_cell("plain-name"), "plain-name");
        assert_eq!(
            md_cell("<img src=x onerror=alert(1)> & co"),
            "&lt;img src=x onerror=alert(1)&gt; &amp; co"
        );
    }

    #[test]
    fn a_zero_is_never_negative() {
        assert_eq!(round2(-0.0).to_string(), "0");
        assert_eq!(round2(-0.001).to_string(), "0");
    }

    #[test]
    fn rounding_is_numpys_half_to_even_after_scaling() {
        // 0.125 * 100 = 12.5 exactly: to even. 2.675 * 100 is 267.5 in
        // binary: to even, up. 1.005 * 100 falls below 100.5: down.
        assert_eq!(round2(0.125), 0.12);
        assert_eq!(round2(0.375), 0.38);
        assert_eq!(round2(2.675), 2.68);
        assert_eq!(round2(1.005), 1.0);
    }

    fn row(game: &str, model: &str, metric: &str, value: Option<f64>) -> RawRow {
        RawRow {
            game: game.into(),
            model: model.into(),
            experiment: "e".into(),
            episode: "0".into(),
            metric: metric.into(),
            value,
        }
    }

    #[test]
    fn averages_are_over_rounded_game_numbers_and_columns_sort_as_pandas() {
        let rows = vec![
            row("taboo", "m", "Main Score", Some(100.0 / 3.0)),
            row("taboo", "m", "Main Score", Some(0.0)),
            row("taboo", "m", "Main Score", None),
            row("taboo", "m", "Played", Some(1.0)),
            row("taboo", "m", "Played", Some(1.0)),
            row("taboo", "m", "Played", Some(0.0)),
            row("adventuregame", "m", "Main Score", Some(50.0)),
            row("adventuregame", "m", "Played", Some(1.0)),
        ];
        let t = table(&rows, true, SortBy::ModelName);
        let names: Vec<String> = t.columns.iter().map(|(g, m)| format!("{g}, {m}")).collect();
        assert_eq!(
            names,
            [
                "-, clemscore",
                "adventuregame, % Played",
                "adventuregame, Quality Score",
                "adventuregame, Quality Score (std)",
                "all, Average % Played",
                "all, Average Quality Score",
                "taboo, % Played",
                "taboo, Quality Score",
                "taboo, Quality Score (std)",
            ]
        );
        // The numbers clemcore 3.3.5's save_clem_table gives for these rows
        // (pandas 2.0.1): the averages are over the rounded game numbers.
        let (_, cells) = &t.rows[0];
        assert_eq!(
            cells,
            &[
                Some(27.79),
                Some(100.0),
                Some(50.0),
                None,
                Some(83.34),
                Some(33.34),
                Some(66.67),
                Some(16.67),
                Some(23.57),
            ]
        );
    }

    #[test]
    fn sorting_by_clemscore_puts_models_without_one_last() {
        let rows = vec![
            row("g", "a", "Main Score", Some(10.0)),
            row("g", "a", "Played", Some(1.0)),
            row("g", "b", "Main Score", None),
            row("g", "b", "Played", Some(0.0)),
            row("g", "c", "Main Score", Some(90.0)),
            row("g", "c", "Played", Some(1.0)),
        ];
        let order = |t: Table| t.rows.into_iter().map(|(m, _)| m).collect::<Vec<_>>();
        assert_eq!(
            order(table(&rows, false, SortBy::Clemscore)),
            ["c", "a", "b"]
        );
        assert_eq!(
            order(table(&rows, false, SortBy::ModelName)),
            ["a", "b", "c"]
        );
    }
}
