//! How long-running library work (training, loading) reports progress
//! without knowing who listens: the command line draws bars on stderr, a
//! library caller may stay silent or log. Keeps `cli` the top layer.

/// Receives the progress of one task at a time.
pub trait Progress: Send + Sync + std::fmt::Debug {
    /// A new task of `len` steps named `what`, `done` of them already done.
    fn start(&self, what: &str, len: usize, done: usize);
    /// `n` more steps of the current task are done.
    fn advance(&self, n: usize);
    /// A short status of the current task (loss, speed).
    fn status(&self, msg: &str);
    /// The current task is over.
    fn finish(&self);
    /// A line worth keeping (an epoch's scores, a warning).
    fn note(&self, line: &str);
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _: &str, _: usize, _: usize) {}
    fn advance(&self, _: usize) {}
    fn status(&self, _: &str) {}
    fn finish(&self) {}
    fn note(&self, _: &str) {}
}
