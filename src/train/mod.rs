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
pub mod plot;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tch::Device;

use crate::data::windows::Sequence;
use crate::metrics::{evaluate, MovieBoundaries, Scores};
use crate::model::checkpoint::{load_weights, Checkpoint};
use crate::model::lgss::loss;
use crate::model::{Config, Lgss};
use crate::rng::Rng;
use adam::Adam;
use bank::Bank;
use ema::Ema;

/// Stream ids for [`Rng::derive`].
const VAL_STREAM: u64 = 0x0076_616c;
const EPOCH_STREAM: u64 = 0x0065_706f_6368;
const DROPOUT_STREAM: u64 = 0x6472_6f70;

/// Everything `lgss train` was asked to do.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub files: Vec<PathBuf>,
    pub config: Config,
    pub out: PathBuf,
    pub device: Device,
    pub seed: u64,
    pub val_movies: Option<usize>,
    pub resume: Option<PathBuf>,
    /// Stop after this many epochs in this process (tests use it to
    /// interrupt a run); the run's total stays `config.train.epochs`.
    pub stop_after_epochs: Option<usize>,
    /// Where loading and epochs report progress (`progress::Silent` for none).
    pub progress: std::sync::Arc<dyn crate::progress::Progress>,
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
    pub best_checkpoint: PathBuf,
    pub last_checkpoint: PathBuf,
    /// Global grouping's γ and λ chosen on the validation movies (with
    /// `--val-movies`), stored in the best checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grouping: Option<grouping_choice::Choice>,
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
            best_checkpoint: best,
            last_checkpoint: last,
            grouping: None,
        }
    }
}

/// Movie indices of (train+val, test): the last `test_fraction` of the
/// movies by file name are the test set.
pub fn split_movies(n: usize, test_fraction: f64) -> anyhow::Result<(Vec<usize>, Vec<usize>)> {
    if n < 2 {
        bail!("need at least 2 movies (one to train on, one to test on), found {n}");
    }
    let n_trainval = ((n as f64 * (1.0 - test_fraction)).floor() as usize).clamp(1, n - 1);
    Ok(((0..n_trainval).collect(), (n_trainval..n).collect()))
}

fn half() -> f64 {
    0.5
}

/// The grid threshold whose calibrated validation predictions score the best
/// Miou (ties: the one nearest 0.5, then the lower), and that Miou.
fn choose_threshold(bank: &Bank, probs: &[Vec<f64>], seqs: &[Sequence]) -> anyhow::Result<(f64, f64)> {
    let mut best = (0.5, f64::NEG_INFINITY);
    let mut grid = crate::segment::THRESHOLD_GRID;
    grid.sort_by(|a, b| (a - 0.5).abs().total_cmp(&(b - 0.5).abs()).then(a.total_cmp(b)));
    for t in grid {
        let cal: Vec<Vec<f64>> = probs.iter().map(|p| crate::segment::calibrated(p, t)).collect();
        let miou = score_sequences(bank, &cal, seqs)?.miou;
        if miou > best.1 {
            best = (t, miou);
        }
    }
    Ok(best)
}

/// Splits the train+val movies' sequences into (train, val).
fn split_train_val(
    bank: &Bank,
    trainval: &[usize],
    val_movies: Option<usize>,
    val_fraction: f64,
    seed: u64,
) -> anyhow::Result<(Vec<Sequence>, Vec<Sequence>)> {
    match val_movies {
        Some(k) => {
            if k == 0 || k >= trainval.len() {
                bail!(
                    "--val-movies {k}: need between 1 and {} (there are {} non-test movies)",
                    trainval.len() - 1,
                    trainval.len()
                );
            }
            let cut = trainval.len() - k;
            Ok((
                bank.sequences_of(&trainval[..cut]),
                bank.sequences_of(&trainval[cut..]),
            ))
        }
        None => {
            let mut seqs = bank.sequences_of(trainval);
            Rng::derive(seed, VAL_STREAM).shuffle(&mut seqs);
            let n_val = ((seqs.len() as f64) * val_fraction).round() as usize;
            if n_val == 0 || n_val >= seqs.len() {
                bail!(
                    "{} sequences cannot be split {val_fraction} for validation",
                    seqs.len()
                );
            }
            let train = seqs.split_off(n_val);
            let mut val = seqs;
            val.sort_by_key(|s| (s.movie, s.start));
            Ok((train, val))
        }
    }
}

/// A clip to score: id, ground truth, prediction, shot end frames.
type Clip = (String, Vec<bool>, Vec<f64>, Vec<i64>);

/// Scores predictions on `seqs`. For whole movies (the test set) this is
/// exactly the script's scoring. For a sequence split, contiguous runs of
/// sequences ("clips") stand in for movies where contiguity matters (Miou,
/// P/R/F1; frames counted from the clip's first shot), while AP is pooled
/// and mAP is the mean over movies of each movie's pooled clips.
pub fn score_sequences(bank: &Bank, probs: &[Vec<f64>], seqs: &[Sequence]) -> anyhow::Result<Scores> {
    let mut sorted = seqs.to_vec();
    sorted.sort_by_key(|s| (s.movie, s.start));
    let mut clips: Vec<(usize, usize, usize)> = Vec::new(); // (movie, first boundary, end)
    for s in sorted {
        match clips.last_mut() {
            Some((m, _, end)) if *m == s.movie && *end == s.start => *end = s.start + s.valid,
            _ => clips.push((s.movie, s.start, s.start + s.valid)),
        }
    }
    let whole = |m: usize, a: usize, b: usize| a == 0 && b == bank.movies[m].n_shots - 1;
    let owned: Vec<Clip> = clips
        .iter()
        .map(|&(m, a, b)| {
            let info = &bank.movies[m];
            let base = if a == 0 { 0 } else { info.shot_end_frame[a - 1] + 1 };
            let id = if whole(m, a, b) {
                info.imdb_id.clone()
            } else {
                format!("{}@{a}", info.imdb_id)
            };
            (
                id,
                info.ground_truth[a..b].to_vec(),
                probs[m][a..b].to_vec(),
                info.shot_end_frame[a..=b].iter().map(|f| f - base).collect(),
            )
        })
        .collect();
    let rows: Vec<MovieBoundaries> = owned
        .iter()
        .map(|(id, gt, p, fr)| MovieBoundaries {
            imdb_id: id,
            ground_truth: gt,
            prediction: p,
            shot_end_frame: fr,
        })
        .collect();
    let mut scores = evaluate(&rows)?;
    if clips.iter().any(|&(m, a, b)| !whole(m, a, b)) {
        let mut per_movie: std::collections::BTreeMap<&str, (Vec<bool>, Vec<f64>)> = Default::default();
        for (&(m, _, _), (_, gt, p, _)) in clips.iter().zip(&owned) {
            let e = per_movie.entry(bank.movies[m].imdb_id.as_str()).or_default();
            e.0.extend_from_slice(gt);
            e.1.extend_from_slice(p);
        }
        scores.ap_dict = per_movie
            .iter()
            .map(|(id, (gt, p))| (id.to_string(), crate::metrics::average_precision(gt, p)))
            .collect();
        scores.map = scores.ap_dict.values().sum::<f64>() / scores.ap_dict.len() as f64;
    }
    Ok(scores)
}

fn lr_at(config: &Config, epoch: usize) -> f64 {
    let t = &config.train;
    let drops = t.milestones.iter().filter(|&&m| m <= epoch).count();
    t.lr * t.gamma.powi(drops as i32)
}

/// Where a run stands, as saved in its checkpoints.
#[derive(Debug, Clone, Copy)]
struct Position {
    epoch: usize,
    /// Batches of `epoch` already done.
    batch: usize,
    loss_sum: f64,
    loss_batches: usize,
    best_val_ap: f64,
    /// The epoch (1-based) that scored `best_val_ap`; 0 before any.
    best_epoch: usize,
    /// The run ended on a validation plateau: nothing is left to resume.
    stopped_early: bool,
}

#[allow(clippy::too_many_arguments)]
fn checkpoint(
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
fn data_summary(bank: &Bank) -> String {
    let names: Vec<&str> = bank.movies.iter().map(|m| m.imdb_id.as_str()).collect();
    format!(
        "{} movies, {} shots: {}",
        bank.movies.len(),
        bank.total_shots(),
        names.join(",")
    )
}

/// Trains, validates every epoch, checkpoints, and finally scores the best
/// checkpoint on the test movies.
pub fn train(opts: &TrainOptions, stop: Arc<AtomicBool>) -> anyhow::Result<TrainResult> {
    let resume = match &opts.resume {
        Some(p) => Some(Checkpoint::load(p)?),
        None => None,
    };
    let config = match &resume {
        Some(c) => c.config()?,
        None => opts.config.clone(),
    };
    let seed = match &resume {
        Some(c) => c.meta::<u64>("seed")?.context("checkpoint has no seed")?,
        None => opts.seed,
    };
    std::fs::create_dir_all(&opts.out).with_context(|| format!("{}: cannot create", opts.out.display()))?;

    let progress = opts.progress.as_ref();
    progress.start("load", opts.files.len(), 0);
    let bank = Bank::load(&opts.files, &config.model, opts.device, &|| progress.advance(1))?;
    progress.finish();
    let data = data_summary(&bank);
    if let Some(c) = &resume {
        if c.metadata.get("data").map(String::as_str) != Some(data.as_str()) {
            bail!(
                "the checkpoint was trained on other data ({})",
                c.metadata.get("data").map_or("unknown", |s| s)
            );
        }
    }
    let (trainval, test) = split_movies(bank.movies.len(), config.train.test_fraction)?;
    let (train_seqs, val_seqs) =
        split_train_val(&bank, &trainval, opts.val_movies, config.train.val_fraction, seed)?;
    // Global grouping's scene-length prior: the scenes of the movies trained
    // and validated on (never the test movies').
    let scene_lengths = serde_json::to_string(&crate::grouping::LengthPrior::count_scenes(
        trainval.iter().map(|&i| bank.movies[i].ground_truth.as_slice()),
    ))?;

    let mut model = {
        // Initialisation draws from libtorch's one process-wide generator:
        // seed and draw with no other run in this process in between.
        static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(seed as i64);
        Lgss::new(&config.model, opts.device)
    };
    let mut adam = Adam::new(
        model.named_variables(),
        config.train.lr,
        config.train.weight_decay,
    );
    adam.decoupled = config.train.decoupled_weight_decay;
    model.lstm_input_dropout = config.train.lstm_input_dropout;
    let mut ema = config
        .train
        .ema_decay
        .map(|d| Ema::new(model.named_variables(), d));
    let mut pos = Position {
        epoch: 0,
        batch: 0,
        loss_sum: 0.0,
        loss_batches: 0,
        best_val_ap: f64::NEG_INFINITY,
        best_epoch: 0,
        stopped_early: false,
    };
    if let Some(c) = &resume {
        load_weights(&mut model, &c.tensors)?;
        if let Some(ema) = &mut ema {
            ema.load(&c.tensors)?;
        }
        adam.load_state(
            &c.tensors,
            c.meta("adam_step")?.context("checkpoint has no optimizer step")?,
        )?;
        let get = |k: &str| -> anyhow::Result<u64> {
            c.meta::<u64>(k)?
                .with_context(|| format!("checkpoint has no {k}"))
        };
        pos = Position {
            epoch: get("epoch")? as usize,
            batch: get("batch")? as usize,
            loss_sum: f64::from_bits(get("loss_sum_bits")?),
            loss_batches: get("loss_batches")? as usize,
            best_val_ap: f64::from_bits(get("best_val_ap_bits")?),
            best_epoch: c.meta::<usize>("best_epoch")?.unwrap_or(0),
            stopped_early: c.meta::<bool>("stopped_early")?.unwrap_or(false),
        };
    }

    let metrics_path = opts.out.join("metrics.jsonl");
    let mut history = read_history(&metrics_path, pos.epoch)?;
    if pos.best_epoch == 0 {
        // A checkpoint from before best_epoch was kept: the log has it.
        pos.best_epoch = history
            .iter()
            .filter(|l| l.val_ap == pos.best_val_ap)
            .map(|l| l.epoch)
            .next()
            .unwrap_or(0);
    }
    let last_path = opts.out.join("last.safetensors");
    let best_path = opts.out.join("best.safetensors");
    let epochs = config.train.epochs;
    let batch_size = config.train.batch_size;
    let started_epoch = pos.epoch;
    let mut interrupted = false;

    while pos.epoch < epochs && !pos.stopped_early {
        if opts
            .stop_after_epochs
            .is_some_and(|k| pos.epoch >= started_epoch + k)
        {
            interrupted = true;
            break;
        }
        let t0 = Instant::now();
        adam.lr = lr_at(&config, pos.epoch);
        let mut order = train_seqs.clone();
        Rng::derive(seed ^ EPOCH_STREAM, pos.epoch as u64).shuffle(&mut order);
        let batches: Vec<&[Sequence]> = order.chunks(batch_size).collect();
        progress.start(&format!("epoch {}", pos.epoch + 1), batches.len(), pos.batch);
        let mut windows = 0usize;
        while pos.batch < batches.len() {
            let b = bank.batch(batches[pos.batch]);
            // Each step's masks from its own seed: a resumed run draws the same.
            model.dropout_seed = Rng::derive(seed ^ DROPOUT_STREAM, adam.step as u64).next_u64();
            let out = model.forward(&b.inputs);
            let l = loss(&out.logits, &b.target, config.train.class_weights);
            adam.zero_grad();
            l.backward();
            adam.step();
            if let Some(ema) = &mut ema {
                ema.update(adam.step);
            }
            pos.loss_sum += l.double_value(&[]);
            pos.loss_batches += 1;
            pos.batch += 1;
            windows += b.windows;
            let rate = windows as f64 / t0.elapsed().as_secs_f64();
            progress.status(&format!(
                "epoch {} loss {:.4} {:.0} win/s",
                pos.epoch + 1,
                pos.loss_sum / pos.loss_batches as f64,
                rate
            ));
            progress.advance(1);
            if stop.load(Ordering::SeqCst) && pos.batch < batches.len() {
                // Stop mid-epoch with a checkpoint that resumes exactly here.
                progress.finish();
                checkpoint(
                    &model,
                    &adam,
                    ema.as_ref(),
                    &config,
                    seed,
                    &pos,
                    &data,
                    &scene_lengths,
                )?
                .save(&last_path)?;
                return Ok(TrainResult::stopped(&pos, history, best_path, last_path));
            }
        }
        progress.finish();
        let train_seconds = t0.elapsed().as_secs_f64();
        // The weights the run keeps are validated: the average, with EMA.
        if let Some(ema) = &mut ema {
            ema.swap();
        }
        let val_pred = bank.predict(&model, &val_seqs, 64, config.train.class_weights);
        if let Some(ema) = &mut ema {
            ema.swap();
        }
        let val_pred = val_pred?;
        let val = score_sequences(&bank, &val_pred.probs, &val_seqs)?;
        let (threshold, val_miou_at_threshold) = choose_threshold(&bank, &val_pred.probs, &val_seqs)?;
        let mut log = EpochLog {
            epoch: pos.epoch + 1,
            lr: adam.lr,
            train_loss: pos.loss_sum / pos.loss_batches.max(1) as f64,
            val_loss: val_pred.loss,
            val_ap: val.ap,
            val_map: val.map,
            val_miou: val.miou,
            decision_threshold: threshold,
            val_miou_at_threshold,
            windows_per_s: windows as f64 / train_seconds,
            seconds: t0.elapsed().as_secs_f64(),
            stopped_early: false,
        };
        pos.epoch += 1;
        pos.batch = 0;
        pos.loss_sum = 0.0;
        pos.loss_batches = 0;
        let improved = log.val_ap > pos.best_val_ap;
        if improved {
            pos.best_val_ap = log.val_ap;
            pos.best_epoch = pos.epoch;
        }
        pos.stopped_early = pos.epoch < epochs
            && config
                .train
                .early_stop_patience
                .is_some_and(|p| pos.epoch - pos.best_epoch >= p);
        log.stopped_early = pos.stopped_early;
        // Serialised once, written as `last` and, when it improved, `best`.
        let mut ckpt = checkpoint(
            &model,
            &adam,
            ema.as_ref(),
            &config,
            seed,
            &pos,
            &data,
            &scene_lengths,
        )?;
        ckpt.metadata.insert(
            crate::model::checkpoint::META_DECISION_THRESHOLD.into(),
            threshold.to_string(),
        );
        let ckpt = ckpt.to_bytes()?;
        if improved {
            crate::fsutil::write_atomic(&best_path, &ckpt)?;
        }
        crate::fsutil::write_atomic(&last_path, &ckpt)?;
        append_line(&metrics_path, &serde_json::to_string(&log)?)?;
        progress.note(&format!(
            "epoch {:>3}/{epochs}  lr {:.0e}  train loss {:.4}  val loss {:.4}  val AP {:.4}  mAP {:.4}  Miou {:.4} ({:.4} at threshold {:.2})  {:.0} win/s{}",
            log.epoch, log.lr, log.train_loss, log.val_loss, log.val_ap, log.val_map, log.val_miou, log.val_miou_at_threshold, log.decision_threshold, log.windows_per_s,
            if improved { "  *best" } else { "" }
        ));
        if pos.stopped_early {
            progress.note(&format!(
                "stopping: no better validation AP in {} epochs (best: epoch {})",
                pos.epoch - pos.best_epoch,
                pos.best_epoch
            ));
        }
        history.push(log);
        if let Err(e) = plot::curves(&history, &opts.out.join("curves.png")) {
            progress.note(&format!("warning: could not draw curves.png: {e:#}"));
        }
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
    }

    if interrupted || (pos.epoch < epochs && !pos.stopped_early) {
        return Ok(TrainResult::stopped(&pos, history, best_path, last_path));
    }

    // Score the best checkpoint on the test movies.
    let mut best = Checkpoint::load(&best_path)?;
    load_weights(&mut model, &best.tensors)?;
    let test_seqs = bank.sequences_of(&test);
    let pred = bank.predict(&model, &test_seqs, 64, config.train.class_weights)?;
    // At the best checkpoint's own validated threshold, as `segment` uses it.
    let threshold = crate::model::checkpoint::parse_threshold(
        best.metadata
            .get(crate::model::checkpoint::META_DECISION_THRESHOLD)
            .map(String::as_str),
    )?
    .unwrap_or(0.5);
    let grouping = match opts.val_movies {
        Some(k) => {
            // split_train_val checked that 0 < k < trainval.len().
            let (fit, val) = trainval.split_at(trainval.len() - k);
            let c = choose_grouping(&bank, &model, &config, fit, val, &val_seqs, threshold)?;
            best.metadata.insert(
                crate::model::checkpoint::META_GROUPING.into(),
                serde_json::to_string(&c)?,
            );
            best.save(&best_path)?;
            progress.note(&format!(
                "global grouping on the {k} validation movies: γ {}, λ {} (val Miou {:.4}; threshold rule {:.4})",
                c.choice.coherence, c.choice.length_weight, c.val_miou, c.local_val_miou
            ));
            Some(c)
        }
        None => None,
    };
    let calibrated: Vec<Vec<f64>> = pred
        .probs
        .iter()
        .map(|p| crate::segment::calibrated(p, threshold))
        .collect();
    let scores = score_sequences(&bank, &calibrated, &test_seqs)?;
    crate::fsutil::write_atomic(
        &opts.out.join("test_metrics.json"),
        serde_json::to_string_pretty(&scores)?.as_bytes(),
    )?;
    // The default rule, as `segment` applies it with this checkpoint.
    let stored = crate::model::checkpoint::StoredChoices {
        threshold: Some(threshold),
        length_prior: crate::model::checkpoint::parse_scene_lengths(Some(&scene_lengths))?,
        grouping: grouping.as_ref().map(|c| c.choice),
    };
    let params = crate::segment::grouping_params(threshold, &stored, &Default::default());
    let test_descriptors = movie_descriptors(&bank, &config, &test)?;
    let grouped = grouping_choice::grouped(&pred.probs, &test_descriptors, &params)?;
    let scores_global = score_sequences(&bank, &grouped, &test_seqs)?;
    crate::fsutil::write_atomic(
        &opts.out.join("test_metrics_global.json"),
        serde_json::to_string_pretty(&scores_global)?.as_bytes(),
    )?;
    let provided = provided_scores(&bank, &test)?;
    Ok(TrainResult {
        epochs_done: pos.epoch,
        interrupted: false,
        best_epoch: pos.best_epoch,
        stopped_early: pos.stopped_early,
        history,
        test: Some(scores),
        test_global: Some(scores_global),
        test_grouping: Some(params),
        test_provided: provided,
        best_checkpoint: best_path,
        last_checkpoint: last_path,
        grouping,
    })
}

/// Global grouping's γ and λ for `model` (at its `threshold`), chosen on
/// the whole validation movies `val` (`val_seqs` are their sequences) with
/// a scene-length prior from the movies trained on, `fit`.
fn choose_grouping(
    bank: &Bank,
    model: &Lgss,
    config: &Config,
    fit: &[usize],
    val: &[usize],
    val_seqs: &[Sequence],
    threshold: f64,
) -> anyhow::Result<grouping_choice::Choice> {
    let pred = bank.predict(model, val_seqs, 64, config.train.class_weights)?;
    let descriptors = movie_descriptors(bank, config, val)?;
    let counts = crate::grouping::LengthPrior::count_scenes(
        fit.iter().map(|&i| bank.movies[i].ground_truth.as_slice()),
    );
    let prior = crate::grouping::LengthPrior::from_counts(&counts)?;
    grouping_choice::choose(bank, &pred.probs, &descriptors, val_seqs, threshold, Some(&prior))
}

/// Global grouping's shot descriptors of the bank's movies `movies`, each
/// with its bank index (the bank keeps no features on the host: the files
/// are read again).
fn movie_descriptors(
    bank: &Bank,
    config: &Config,
    movies: &[usize],
) -> anyhow::Result<Vec<(usize, crate::grouping::Descriptors)>> {
    let schema = crate::segment::schema_for(&config.model);
    movies
        .iter()
        .map(|&i| {
            let movie = crate::data::movie::Movie::load(&bank.movies[i].file, &schema)?;
            Ok((i, crate::grouping::descriptors(&movie, &config.model.ratio)))
        })
        .collect()
}

/// The test movies scored with the files' own provided predictions.
fn provided_scores(bank: &Bank, test: &[usize]) -> anyhow::Result<Option<Scores>> {
    let mut rows = Vec::new();
    for &m in test {
        let info = &bank.movies[m];
        let Some(p) = &info.provided_prediction else {
            return Ok(None);
        };
        rows.push(MovieBoundaries {
            imdb_id: &info.imdb_id,
            ground_truth: &info.ground_truth,
            prediction: p,
            shot_end_frame: &info.shot_end_frame,
        });
    }
    Ok(Some(evaluate(&rows)?))
}

/// Epoch logs already in `metrics.jsonl`, up to `epochs` (a resumed run drops later ones).
fn read_history(path: &Path, epochs: usize) -> anyhow::Result<Vec<EpochLog>> {
    if epochs == 0 {
        if path.exists() {
            std::fs::remove_file(path).with_context(|| format!("{}: cannot replace", path.display()))?;
        }
        return Ok(Vec::new());
    }
    // A run being resumed must have its log: a missing or damaged one is an
    // error, never silently shortened and rewritten.
    let text = std::fs::read_to_string(path)
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

fn append_line(path: &Path, line: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?;
    writeln!(f, "{line}").with_context(|| format!("{}: cannot write", path.display()))
}
