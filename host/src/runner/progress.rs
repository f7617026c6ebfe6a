//! Progress output: a bar on a terminal, one line per episode otherwise
//! (both on stderr, so stdout keeps only the summary).

use super::Outcome;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};

pub(crate) struct Progress {
    total: usize,
    done: AtomicUsize,
    bar: Option<indicatif::ProgressBar>,
    lines: bool,
}

impl Progress {
    /// `total` episodes; `show`: a bar on a terminal, lines otherwise; nothing when false.
    pub(crate) fn new(total: usize, show: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = (show && tty).then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "Playing episodes {bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
                )
                .expect("the progress template is valid"),
            );
            bar
        });
        Progress {
            total,
            done: AtomicUsize::new(0),
            bar,
            lines: show && !tty,
        }
    }

    /// One episode ended (or was skipped): `what` says how.
    pub(crate) fn finished(&self, label: &str, what: &str) {
        // Names come from instances and registry files, `what` from games.
        let (label, what) = (
            crate::error::escape_for_terminal(label),
            crate::error::escape_for_terminal(what),
        );
        let n = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{label}: {what}"));
            bar.inc(1);
        } else if self.lines {
            eprintln!("[{n}/{}] {label}: {what}", self.total);
        }
    }

    /// Clears the bar.
    pub(crate) fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// How a native episode ended, in the words of the progress output.
pub(super) fn what(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Skipped => SKIPPED,
        Outcome::Completed { success: true, .. } => "success",
        Outcome::Completed { aborted: true, .. } => "aborted",
        Outcome::Completed { .. } => "lost",
        Outcome::Failed { .. } => FAILED,
        Outcome::Interrupted => "interrupted",
    }
}

/// A complete episode that `--resume` does not play again.
pub(crate) const SKIPPED: &str = "skipped (already complete)";
/// An episode that wrote `error.json`.
pub(crate) const FAILED: &str = "error (see error.json)";
