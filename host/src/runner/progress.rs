//! Progress output: a bar on a terminal, one line per episode otherwise
//! (both on stderr, so stdout keeps only the summary).

use super::Outcome;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};

pub(super) struct Progress {
    total: usize,
    done: AtomicUsize,
    bar: Option<indicatif::ProgressBar>,
    lines: bool,
}

impl Progress {
    pub(super) fn new(total: usize, show: bool) -> Self {
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

    pub(super) fn finished(&self, label: &str, outcome: &Outcome) {
        let n = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let what = match outcome {
            Outcome::Skipped => "skipped (already complete)",
            Outcome::Completed { success: true, .. } => "success",
            Outcome::Completed { aborted: true, .. } => "aborted",
            Outcome::Completed { .. } => "lost",
            Outcome::Failed { .. } => "error (see error.json)",
            Outcome::Interrupted => "interrupted",
        };
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{label}: {what}"));
            bar.inc(1);
        } else if self.lines {
            eprintln!("[{n}/{}] {label}: {what}", self.total);
        }
    }

    pub(super) fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
