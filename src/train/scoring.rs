//! Scores of a run's predictions: validation clips, the decision
//! threshold, and the final test of the best checkpoint by both rules.

use super::bank::Bank;
use super::grouping_choice;
use crate::data::windows::Sequence;
use crate::fsutil::write_atomic;
use crate::metrics::{evaluate, MovieBoundaries, Scores};
use crate::model::checkpoint::{
    load_weights, parse_scene_lengths, parse_threshold, Checkpoint, StoredChoices, META_DECISION_THRESHOLD,
    META_GROUPING,
};
use crate::model::{Config, Lgss};

/// The grid threshold whose calibrated validation predictions score the best
/// Miou (ties: the one nearest 0.5, then the lower), and that Miou.
pub(super) fn choose_threshold(
    bank: &Bank,
    probs: &[Vec<f64>],
    seqs: &[Sequence],
) -> anyhow::Result<(f64, f64)> {
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

/// A clip to score: id, ground truth, prediction, shot end frames from its first
/// frame, and which of its boundaries count (`None`: all).
type Clip = (String, Vec<bool>, Vec<f64>, Vec<i64>, Option<Vec<bool>>);

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
                info.scored.as_ref().map(|s| s[a..b].to_vec()),
            )
        })
        .collect();
    let rows: Vec<MovieBoundaries> = owned
        .iter()
        .map(|(id, gt, p, fr, scored)| MovieBoundaries {
            imdb_id: id,
            ground_truth: gt,
            prediction: p,
            shot_end_frame: fr,
            scored: scored.as_deref(),
        })
        .collect();
    let mut scores = evaluate(&rows)?;
    if clips.iter().any(|&(m, a, b)| !whole(m, a, b)) {
        let mut per_movie: std::collections::BTreeMap<&str, (Vec<bool>, Vec<f64>)> = Default::default();
        for (&(m, _, _), row) in clips.iter().zip(&rows) {
            let e = per_movie.entry(bank.movies[m].imdb_id.as_str()).or_default();
            let (gt, p) = row.counted();
            e.0.extend_from_slice(&gt);
            e.1.extend_from_slice(&p);
        }
        per_movie.retain(|_, (gt, _)| !gt.is_empty());
        scores.ap_dict = per_movie
            .iter()
            .map(|(id, (gt, p))| (id.to_string(), crate::metrics::average_precision(gt, p)))
            .collect();
        scores.map = scores.ap_dict.values().sum::<f64>() / scores.ap_dict.len() as f64;
    }
    Ok(scores)
}

/// Global grouping's γ and λ for `model` (at its `threshold`), chosen on
/// the whole validation movies `val` (`val_seqs` are their sequences) with
/// a scene-length prior from the movies trained on, `fit`.
pub(super) fn choose_grouping(
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
pub(super) fn movie_descriptors(
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
pub(super) fn provided_scores(bank: &Bank, test: &[usize]) -> anyhow::Result<Option<Scores>> {
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
            scored: info.scored.as_deref(),
        });
    }
    Ok(Some(evaluate(&rows)?))
}

/// The test movies scored as SceneSeg's final test scores them (the
/// paper's metrics), from the model's own probabilities: SceneSeg cuts at
/// p > 0.5, with no validated threshold.
fn sceneseg_scores(
    bank: &Bank,
    probs: &[Vec<f64>],
    test: &[usize],
) -> anyhow::Result<crate::sceneseg_metrics::SceneSegScores> {
    let rows: Vec<MovieBoundaries> = test
        .iter()
        .map(|&m| {
            let info = &bank.movies[m];
            MovieBoundaries {
                imdb_id: &info.imdb_id,
                ground_truth: &info.ground_truth,
                prediction: &probs[m],
                shot_end_frame: &info.shot_end_frame,
                scored: info.scored.as_deref(),
            }
        })
        .collect();
    Ok(crate::sceneseg_metrics::evaluate(&rows)?)
}

/// The best checkpoint's scores on the test movies.
pub(super) struct TestScores {
    /// By the threshold rule at the checkpoint's validated threshold.
    pub local: Scores,
    /// By global grouping, as `segment` decides by default.
    pub global: Scores,
    /// The grouping `global` used.
    pub params: crate::grouping::Params,
    /// The files' own provided predictions.
    pub provided: Option<Scores>,
    /// SceneSeg's metrics (the paper's) of the model's probabilities.
    pub sceneseg: crate::sceneseg_metrics::SceneSegScores,
    /// γ and λ chosen on the validation movies (`--val-movies`).
    pub grouping: Option<grouping_choice::Choice>,
}

impl super::Run<'_> {
    /// Loads the best checkpoint into `model` and scores it on the test
    /// movies by both rules (writing `test_metrics.json` and
    /// `test_metrics_global.json`) and by SceneSeg's metrics
    /// (`test_metrics_sceneseg.json`); with whole validation movies
    /// (`--val-movies`, `--split`), first chooses γ and λ on them and
    /// stores them in the checkpoint.
    pub(super) fn score_test(&self, model: &mut Lgss) -> anyhow::Result<TestScores> {
        let (bank, config, split) = (self.bank, self.config, self.split);
        let mut best = Checkpoint::load(&self.best)?;
        load_weights(model, &best.tensors)?;
        let test_seqs = bank.sequences_of(&split.test);
        let pred = bank.predict(model, &test_seqs, 64, config.train.class_weights)?;
        // At the best checkpoint's own validated threshold, as `segment` uses it.
        let threshold =
            parse_threshold(best.metadata.get(META_DECISION_THRESHOLD).map(String::as_str))?.unwrap_or(0.5);
        let grouping = match split.val_movies {
            Some(k) => {
                // split_train_val checked that 0 < k < trainval.len().
                let (fit, val) = split.trainval.split_at(split.trainval.len() - k);
                let c = choose_grouping(bank, model, config, fit, val, &split.val_seqs, threshold)?;
                best.metadata
                    .insert(META_GROUPING.into(), serde_json::to_string(&c)?);
                best.save(&self.best)?;
                self.opts.progress.note(&format!(
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
        let local = score_sequences(bank, &calibrated, &test_seqs)?;
        write_atomic(
            &self.opts.out.join("test_metrics.json"),
            serde_json::to_string_pretty(&local)?.as_bytes(),
        )?;
        // The default rule, as `segment` applies it with this checkpoint.
        let stored = StoredChoices {
            threshold: Some(threshold),
            length_prior: parse_scene_lengths(Some(&self.scene_lengths))?,
            grouping: grouping.as_ref().map(|c| c.choice),
        };
        let params = crate::segment::grouping_params(threshold, &stored, &Default::default());
        let descriptors = movie_descriptors(bank, config, &split.test)?;
        let grouped = grouping_choice::grouped(&pred.probs, &descriptors, &params)?;
        let global = score_sequences(bank, &grouped, &test_seqs)?;
        write_atomic(
            &self.opts.out.join("test_metrics_global.json"),
            serde_json::to_string_pretty(&global)?.as_bytes(),
        )?;
        let sceneseg = sceneseg_scores(bank, &pred.probs, &split.test)?;
        write_atomic(
            &self.opts.out.join("test_metrics_sceneseg.json"),
            serde_json::to_string_pretty(&sceneseg)?.as_bytes(),
        )?;
        Ok(TestScores {
            local,
            global,
            params,
            sceneseg,
            provided: provided_scores(bank, &split.test)?,
            grouping,
        })
    }
}
