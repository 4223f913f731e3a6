//! Progress bars on stderr; indicatif hides them when stderr is not a terminal.

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

/// A bar that draws only when `shown` (library callers may want silence).
pub fn bar_shown(len: usize, what: &str, shown: bool) -> ProgressBar {
    let pb = bar(len, what);
    if !shown {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    pb
}
