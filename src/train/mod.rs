//! Training LGSS: split, epochs, validation, checkpoints, resume, test.
//!
//! Everything is reproducible from the seed: weights are initialised from
//! libtorch's generator seeded with it, and the validation split and each
//! epoch's batch order come from [`Rng`] streams derived from it, so a
//! resumed run (even from the middle of an epoch) continues exactly.

pub mod adam;
pub mod bank;
pub mod ema;
pub mod grouping_choice;
mod learner;
pub mod plot;
mod scoring;
mod split;
mod state;
pub mod step_graph;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::data::store::{FeatureStore, Opened};
use crate::metrics::Scores;
use crate::model::checkpoint::Checkpoint;
use crate::model::Config;
use bank::Bank;
use learner::{EpochRun, Learner};
pub use scoring::score_sequences;
pub use split::split_movies;
use split::Split;
use state::Position;

/// Everything `lgss train` was asked to do.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub files: Vec<PathBuf>,
    pub config: Config,
    pub out: PathBuf,
    pub device: Device,
    pub seed: u64,
    pub val_movies: Option<usize>,
    /// The movies of each part by name (`--split FILE`, or a scene318
    /// root's split); replaces `val_movies` and the config's fractions.
    pub split: Option<crate::data::scene318::Split>,
    pub resume: Option<PathBuf>,
    /// Stop after this many epochs in this process (tests use it to
    /// interrupt a run); the run's total stays `config.train.epochs`.
    pub stop_after_epochs: Option<usize>,
    /// Where loading and epochs report progress (`progress::Silent` for none).
    pub progress: std::sync::Arc<dyn crate::progress::Progress>,
    /// Time each phase of a training step (`train --profile`), waiting for
    /// the device at each phase's end.
    pub profile: bool,
    /// On CUDA, replay full batches' steps as a captured CUDA graph
    /// (`train --no-cuda-graph` turns it off).
    pub cuda_graph: bool,
    /// Read the features from a store on disk, batch by batch, instead of
    /// holding them all in memory (`train --max-memory`).
    pub store: Option<StoreOptions>,
}

/// Training from a feature store ([`crate::data::store`]).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The store's folder: built there, or reused when current.
    pub dir: PathBuf,
    /// The most bytes of features held in memory at once.
    pub max_memory: u64,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub val_loss: f64,
    #[serde(rename = "val_AP")]
    pub val_ap: f64,
    #[serde(rename = "val_mAP")]
    pub val_map: f64,
    #[serde(rename = "val_Miou")]
    pub val_miou: f64,
    /// The threshold of [`crate::segment::THRESHOLD_GRID`] with the best
    /// validation Miou (stored in this epoch's checkpoint), and that Miou.
    #[serde(default = "half")]
    pub decision_threshold: f64,
    #[serde(default, rename = "val_Miou_at_threshold")]
    pub val_miou_at_threshold: f64,
    pub windows_per_s: f64,
    pub seconds: f64,
    /// The run stopped after this epoch: `train.early_stop_patience`
    /// epochs without a better validation AP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped_early: bool,
}

/// What a finished (or stopped) run produced.
#[derive(Debug, Serialize)]
pub struct TrainResult {
    pub epochs_done: usize,
    pub interrupted: bool,
    /// The epoch (1-based) of the best validation AP: the best checkpoint's.
    pub best_epoch: usize,
    /// Whether the run ended early on a validation plateau.
    pub stopped_early: bool,
    pub history: Vec<EpochLog>,
    /// Scores of the best checkpoint on the test movies with the threshold
    /// rule (`segment --local`; a finished run only).
    pub test: Option<Scores>,
    /// The same with global grouping as `segment` does by default (the
    /// model's threshold, prior and γ, λ).
    pub test_global: Option<Scores>,
    /// The grouping `test_global` used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_grouping: Option<crate::grouping::Params>,
    /// Scores of the files' own provided predictions on the same test movies.
    pub test_provided: Option<Scores>,
    /// The same movies by SceneSeg's metrics (the paper's), cuts at p > 0.5.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_sceneseg: Option<crate::sceneseg_metrics::SceneSegScores>,
    pub best_checkpoint: PathBuf,
    pub last_checkpoint: PathBuf,
    /// Global grouping's γ and λ chosen on the validation movies (with
    /// `--val-movies`), stored in the best checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grouping: Option<grouping_choice::Choice>,
    /// With [`TrainOptions::profile`]: seconds per phase of this process's
    /// run and the wall time they add up to.
    #[serde(skip)]
    pub profile: Option<(crate::phases::Phases, std::time::Duration)>,
}

impl TrainResult {
    fn stopped(pos: &Position, history: Vec<EpochLog>, best: PathBuf, last: PathBuf) -> TrainResult {
        TrainResult {
            epochs_done: pos.epoch,
            interrupted: true,
            best_epoch: pos.best_epoch,
            stopped_early: false,
            history,
            test: None,
            test_global: None,
            test_grouping: None,
            test_provided: None,
            test_sceneseg: None,
            best_checkpoint: best,
            last_checkpoint: last,
            grouping: None,
            profile: None,
        }
    }
}

/// What one run works on: its options, data, split and output files.
struct Run<'a> {
    opts: &'a TrainOptions,
    config: &'a Config,
    bank: &'a Bank,
    split: &'a Split,
    /// [`state::data_summary`] of the bank, kept in checkpoints.
    data: String,
    /// Global grouping's scene-length prior (JSON counts) from the movies
    /// trained and validated on, never the test movies.
    scene_lengths: String,
    metrics: PathBuf,
    last: PathBuf,
    best: PathBuf,
}

/// Trains, validates every epoch, checkpoints, and finally scores the best
/// checkpoint on the test movies.
pub fn train(opts: &TrainOptions, stop: Arc<AtomicBool>) -> anyhow::Result<TrainResult> {
    let wall = Instant::now();
    let resume = opts.resume.as_deref().map(Checkpoint::load).transpose()?;
    let (config, seed) = match &resume {
        Some(c) => (
            c.config()?,
            c.meta::<u64>("seed")?.context("checkpoint has no seed")?,
        ),
        None => (opts.config.clone(), opts.seed),
    };
    // A limit too small for two batches is refused before anything is written.
    let store = match &opts.store {
        Some(s) => Some((
            s,
            bank::read_ahead(&config.model, config.train.batch_size, s.max_memory)?,
        )),
        None => None,
    };
    std::fs::create_dir_all(&opts.out).with_context(|| format!("{}: cannot create", opts.out.display()))?;
    let bank = load_bank(opts, &config, store, resume.as_ref())?;
    let loaded = wall.elapsed();
    let t = &config.train;
    let split = match &opts.split {
        Some(named) => Split::named(&bank, named)?,
        None => Split::new(&bank, t.test_fraction, opts.val_movies, t.val_fraction, seed)?,
    };
    let run = Run::new(opts, &config, &bank, &split)?;
    // A streamed bank's batches come from its reader, not from device
    // buffers a captured graph reads.
    let graphs = opts.cuda_graph && !bank.is_streamed();
    let mut learner = Learner::new(&config, opts.device, seed, resume.as_ref(), graphs)?;
    if opts.profile {
        let mut phases = crate::phases::Phases::new();
        phases.add("load data", loaded);
        learner.profile = Some(phases);
    }
    let mut history = state::read_history(&run.metrics, learner.pos.epoch)?;
    learner.pos.recover_best_epoch(&history);
    let interrupted = run.epochs(&mut learner, &mut history, &stop)?;
    let pos = learner.pos;
    if interrupted || (pos.epoch < t.epochs && !pos.stopped_early) {
        let mut r = TrainResult::stopped(&pos, history, run.best, run.last);
        r.profile = learner.profile.take().map(|p| (p, wall.elapsed()));
        return Ok(r);
    }
    let t_test = Instant::now();
    let test = run.score_test(&mut learner.model)?;
    if let Some(p) = &mut learner.profile {
        p.add("test scores", t_test.elapsed());
    }
    Ok(TrainResult {
        epochs_done: pos.epoch,
        interrupted: false,
        best_epoch: pos.best_epoch,
        stopped_early: pos.stopped_early,
        history,
        test: Some(test.local),
        test_global: Some(test.global),
        test_grouping: Some(test.params),
        test_provided: test.provided,
        test_sceneseg: Some(test.sceneseg),
        best_checkpoint: run.best,
        last_checkpoint: run.last,
        grouping: test.grouping,
        profile: learner.profile.take().map(|p| (p, wall.elapsed())),
    })
}

/// The movies in memory, or their features in a store on disk (`store`:
/// where, and how many batches to read ahead); a resumed run must be on
/// the data it started on.
fn load_bank(
    opts: &TrainOptions,
    config: &Config,
    store: Option<(&StoreOptions, usize)>,
    resume: Option<&Checkpoint>,
) -> anyhow::Result<Bank> {
    let progress = opts.progress.as_ref();
    let m = &config.model;
    let bank = match store {
        None => {
            progress.start("load", opts.files.len(), 0);
            let bank = Bank::load(&opts.files, m, opts.device, &|| progress.advance(1))?;
            progress.finish();
            bank
        }
        Some((s, read_ahead)) => {
            let modalities: Vec<_> = m.modalities.iter().map(|&x| (x, m.feature_dims.get(x))).collect();
            let schema = crate::data::Schema {
                require_ground_truth: true,
                ..crate::segment::schema_for(m)
            };
            progress.start("feature store", opts.files.len(), 0);
            let (store, opened) =
                FeatureStore::open_or_build(&s.dir, &opts.files, &modalities, &schema, &|| {
                    progress.advance(1)
                })?;
            progress.finish();
            let size = bytesize::ByteSize(store.bytes()).display().iec();
            progress.note(&match opened {
                Opened::Reused => format!("feature store {} ({size}) reused", s.dir.display()),
                Opened::Built(why) => format!("feature store {} ({size}) built: {why}", s.dir.display()),
            });
            Bank::streamed(store, m, opts.device, read_ahead)?
        }
    };
    if let Some(c) = resume {
        let data = state::data_summary(&bank);
        if c.metadata.get("data").map(String::as_str) != Some(data.as_str()) {
            bail!(
                "the checkpoint was trained on other data ({})",
                c.metadata.get("data").map_or("unknown", |s| s)
            );
        }
    }
    Ok(bank)
}

impl<'a> Run<'a> {
    fn new(
        opts: &'a TrainOptions,
        config: &'a Config,
        bank: &'a Bank,
        split: &'a Split,
    ) -> anyhow::Result<Run<'a>> {
        let scene_lengths = serde_json::to_string(&crate::grouping::LengthPrior::count_scenes(
            split
                .trainval
                .iter()
                .map(|&i| bank.movies[i].ground_truth.as_slice()),
        ))?;
        Ok(Run {
            opts,
            config,
            bank,
            split,
            data: state::data_summary(bank),
            scene_lengths,
            metrics: opts.out.join("metrics.jsonl"),
            last: opts.out.join("last.safetensors"),
            best: opts.out.join("best.safetensors"),
        })
    }

    /// Epochs until the configured number, an early stop, or a stop
    /// request; returns whether a request (or `stop_after_epochs`) ended it.
    fn epochs(
        &self,
        learner: &mut Learner,
        history: &mut Vec<EpochLog>,
        stop: &AtomicBool,
    ) -> anyhow::Result<bool> {
        let started_epoch = learner.pos.epoch;
        while learner.pos.epoch < self.config.train.epochs && !learner.pos.stopped_early {
            if self
                .opts
                .stop_after_epochs
                .is_some_and(|k| learner.pos.epoch >= started_epoch + k)
            {
                return Ok(true);
            }
            let t0 = Instant::now();
            let progress = self.opts.progress.as_ref();
            let trained = learner.train_epoch(self.bank, &self.split.train_seqs, stop, progress)?;
            if !trained.finished {
                // Stopped mid-epoch: a checkpoint that resumes exactly here.
                learner
                    .checkpoint(&self.data, &self.scene_lengths)?
                    .save(&self.last)?;
                return Ok(true);
            }
            let t_val = Instant::now();
            let log = self.validate(learner, &trained, t0)?;
            if let Some(p) = &mut learner.profile {
                p.add("validate, save, log", t_val.elapsed());
            }
            history.push(log);
            if let Err(e) = plot::curves(history, &self.opts.out.join("curves.png")) {
                progress.note(&format!("warning: could not draw curves.png: {e:#}"));
            }
            if let Err(e) = plot::curves_page(history, &self.opts.out.join("curves.html")) {
                progress.note(&format!("warning: could not write curves.html: {e:#}"));
            }
            if stop.load(Ordering::SeqCst) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Validates the epoch just trained, closes it, and records it: the
    /// checkpoints, a line of `metrics.jsonl` and one on the console.
    fn validate(&self, learner: &mut Learner, trained: &EpochRun, t0: Instant) -> anyhow::Result<EpochLog> {
        let (bank, val_seqs) = (self.bank, &self.split.val_seqs);
        let val_pred = learner.predict_kept(bank, val_seqs)?;
        let val = score_sequences(bank, &val_pred.probs, val_seqs)?;
        let (threshold, val_miou_at_threshold) = scoring::choose_threshold(bank, &val_pred.probs, val_seqs)?;
        let mut log = EpochLog {
            epoch: learner.pos.epoch + 1,
            lr: learner.lr(),
            train_loss: learner.train_loss(),
            val_loss: val_pred.loss,
            val_ap: val.ap,
            val_map: val.map,
            val_miou: val.miou,
            decision_threshold: threshold,
            val_miou_at_threshold,
            windows_per_s: trained.windows as f64 / trained.seconds,
            seconds: t0.elapsed().as_secs_f64(),
            stopped_early: false,
        };
        let improved = learner.end_epoch(log.val_ap);
        log.stopped_early = learner.pos.stopped_early;
        // Serialised once, written as `last` and, when it improved, `best`.
        let mut ckpt = learner.checkpoint(&self.data, &self.scene_lengths)?;
        ckpt.metadata.insert(
            crate::model::checkpoint::META_DECISION_THRESHOLD.into(),
            threshold.to_string(),
        );
        let ckpt = ckpt.to_bytes()?;
        if improved {
            crate::fsutil::write_atomic(&self.best, &ckpt)?;
        }
        crate::fsutil::write_atomic(&self.last, &ckpt)?;
        state::append_line(&self.metrics, &serde_json::to_string(&log)?)?;
        let progress = self.opts.progress.as_ref();
        progress.note(&format!(
            "epoch {:>3}/{}  lr {:.0e}  train loss {:.4}  val loss {:.4}  val AP {:.4}  mAP {:.4}  Miou {:.4} ({:.4} at threshold {:.2})  {:.0} win/s{}",
            log.epoch, self.config.train.epochs, log.lr, log.train_loss, log.val_loss, log.val_ap, log.val_map, log.val_miou, log.val_miou_at_threshold, log.decision_threshold, log.windows_per_s,
            if improved { "  *best" } else { "" }
        ));
        let pos = &learner.pos;
        if pos.stopped_early {
            progress.note(&format!(
                "stopping: no better validation AP in {} epochs (best: epoch {})",
                pos.epoch - pos.best_epoch,
                pos.best_epoch
            ));
        }
        Ok(log)
    }
}

fn half() -> f64 {
    0.5
}
