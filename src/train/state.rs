//! A run's state on disk: checkpoints (weights, optimizer state, where the
//! run stands) and the epoch log, so that `--resume` continues exactly.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::adam::Adam;
use super::bank::Bank;
use super::ema::Ema;
use super::EpochLog;
use crate::model::checkpoint::Checkpoint;
use crate::model::{Config, Lgss};

/// Where a run stands, as saved in its checkpoints.
#[derive(Debug, Clone, Copy)]
pub(super) struct Position {
    pub epoch: usize,
    /// Batches of `epoch` already done.
    pub batch: usize,
    pub loss_sum: f64,
    pub loss_batches: usize,
    pub best_val_ap: f64,
    /// The epoch (1-based) that scored `best_val_ap`; 0 before any.
    pub best_epoch: usize,
    /// The run ended on a validation plateau: nothing is left to resume.
    pub stopped_early: bool,
}

impl Position {
    /// A run that has not started.
    pub fn start() -> Position {
        Position {
            epoch: 0,
            batch: 0,
            loss_sum: 0.0,
            loss_batches: 0,
            best_val_ap: f64::NEG_INFINITY,
            best_epoch: 0,
            stopped_early: false,
        }
    }

    /// Where the run that wrote `c` stood.
    pub fn of_checkpoint(c: &Checkpoint) -> anyhow::Result<Position> {
        let get = |k: &str| -> anyhow::Result<u64> {
            c.meta::<u64>(k)?
                .with_context(|| format!("checkpoint has no {k}"))
        };
        Ok(Position {
            epoch: get("epoch")? as usize,
            batch: get("batch")? as usize,
            loss_sum: f64::from_bits(get("loss_sum_bits")?),
            loss_batches: get("loss_batches")? as usize,
            best_val_ap: f64::from_bits(get("best_val_ap_bits")?),
            best_epoch: c.meta::<usize>("best_epoch")?.unwrap_or(0),
            stopped_early: c.meta::<bool>("stopped_early")?.unwrap_or(false),
        })
    }

    /// Fills in `best_epoch` from the log for a checkpoint written before
    /// it was kept.
    pub fn recover_best_epoch(&mut self, history: &[EpochLog]) {
        if self.best_epoch == 0 {
            self.best_epoch = history
                .iter()
                .find(|l| l.val_ap == self.best_val_ap)
                .map_or(0, |l| l.epoch);
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn checkpoint(
    model: &Lgss,
    adam: &Adam,
    ema: Option<&Ema>,
    config: &Config,
    seed: u64,
    pos: &Position,
    data: &str,
    scene_lengths: &str,
) -> anyhow::Result<Checkpoint> {
    let mut c = Checkpoint::of_model(model, config)?;
    for (name, t) in adam.state_tensors() {
        c.insert_tch(name, &t)?;
    }
    if let Some(ema) = ema {
        ema.store(&mut c)?;
    }
    let m = &mut c.metadata;
    m.insert("seed".into(), seed.to_string());
    m.insert("epoch".into(), pos.epoch.to_string());
    m.insert("batch".into(), pos.batch.to_string());
    m.insert("adam_step".into(), adam.step.to_string());
    // Bit-exact so a resumed run logs the same numbers.
    m.insert("loss_sum_bits".into(), pos.loss_sum.to_bits().to_string());
    m.insert("loss_batches".into(), pos.loss_batches.to_string());
    m.insert("best_val_ap_bits".into(), pos.best_val_ap.to_bits().to_string());
    m.insert("best_epoch".into(), pos.best_epoch.to_string());
    if pos.stopped_early {
        m.insert("stopped_early".into(), "true".into());
    }
    m.insert("data".into(), data.to_string());
    m.insert("lgss_version".into(), env!("CARGO_PKG_VERSION").into());
    m.insert(
        crate::model::checkpoint::META_SCENE_LENGTHS.into(),
        scene_lengths.to_string(),
    );
    Ok(c)
}

/// A one-line description of the training data, kept in checkpoints (and,
/// later, ONNX metadata); resuming on other data is refused.
pub(super) fn data_summary(bank: &Bank) -> String {
    let names: Vec<&str> = bank.movies.iter().map(|m| m.imdb_id.as_str()).collect();
    format!(
        "{} movies, {} shots: {}",
        bank.movies.len(),
        bank.total_shots(),
        names.join(",")
    )
}

/// Epoch logs already in `metrics.jsonl`, up to `epochs` (a resumed run drops later ones).
pub(super) fn read_history(path: &Path, epochs: usize) -> anyhow::Result<Vec<EpochLog>> {
    if epochs == 0 {
        if path.exists() {
            std::fs::remove_file(path).with_context(|| format!("{}: cannot replace", path.display()))?;
        }
        return Ok(Vec::new());
    }
    // A run being resumed must have its log: a missing or damaged one is an
    // error, never silently shortened and rewritten.
    let text = crate::regular_file::read_to_string(path)
        .with_context(|| format!("{}: cannot read the run's log to resume it", path.display()))?;
    let mut logs: Vec<EpochLog> = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        logs.push(
            serde_json::from_str(line)
                .with_context(|| format!("{}: line {} is not an epoch log", path.display(), i + 1))?,
        );
    }
    logs.retain(|l| l.epoch <= epochs);
    let body: String = logs
        .iter()
        .filter_map(|l| serde_json::to_string(l).ok())
        .map(|l| l + "\n")
        .collect();
    crate::fsutil::write_atomic(path, body.as_bytes())?;
    Ok(logs)
}

pub(super) fn append_line(path: &Path, line: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    writeln!(f, "{line}").with_context(|| format!("{}: cannot write", path.display()))
}
