//! Progress bars on stderr; indicatif hides them when stderr is not a terminal.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    let style = ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(what.to_string());
    pb
}

/// The library's [`crate::progress::Progress`] drawn as bars, notes as lines.
#[derive(Debug, Default)]
pub struct Bars {
    current: Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn with(&self, f: impl FnOnce(&ProgressBar)) {
        if let Ok(guard) = self.current.lock() {
            if let Some(pb) = guard.as_ref() {
                f(pb);
            }
        }
    }
}

impl crate::progress::Progress for Bars {
    fn start(&self, what: &str, len: usize, done: usize) {
        let pb = bar(len, what);
        pb.set_position(done as u64);
        if let Ok(mut guard) = self.current.lock() {
            if let Some(old) = guard.replace(pb) {
                old.finish_and_clear();
            }
        }
    }

    fn advance(&self, n: usize) {
        self.with(|pb| pb.inc(n as u64));
    }

    fn status(&self, msg: &str) {
        self.with(|pb| pb.set_message(msg.to_string()));
    }

    fn finish(&self) {
        if let Ok(mut guard) = self.current.lock() {
            if let Some(pb) = guard.take() {
                pb.finish_and_clear();
            }
        }
    }

    fn note(&self, line: &str) {
        let mut shown = false;
        self.with(|pb| {
            pb.suspend(|| eprintln!("{line}"));
            shown = true;
        });
        if !shown {
            eprintln!("{line}");
        }
    }
}
