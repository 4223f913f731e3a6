//! Scene-segmentation metrics as the LGSS paper reports them: SceneSeg's
//! final test (AnyiRao/SceneSeg, `lgss/run.py` and its `utilis` metric
//! functions), beside the challenge's ([`crate::metrics`]).
//!
//! SceneSeg scores a prediction file of one line per scored boundary
//! (`imdb shot gt pred`, pred = float32(p) > 0.5). From the same lines:
//!
//! - **AP**: average precision over every line pooled, float32
//!   probabilities;
//! - **mAP**: each movie's AP rounded to 2 decimals, then the mean;
//! - **Miou**: per movie, scenes of the truth and of the prediction — a
//!   scene is a run of lines ending at a cut, lines after the last cut
//!   dropped — as frame intervals (first frame of its first shot, last
//!   frame of its last), IoU (min end − max start) / (max end − min start);
//!   the mean of each truth scene's best IoU and each predicted scene's
//!   best IoU; 0 for a movie with no predicted cut, and none at all (JSON
//!   null) when a movie with a predicted cut has no true cut;
//! - **Recall**: per-movie recall, then the mean;
//! - **Recall_time** (Recall@3s): per movie, the true cuts with a predicted
//!   cut among the lines of the shots within ±5 whose shots end less than
//!   3 s apart at 24 fps (SceneSeg's fixed rate), over the true cuts +
//!   1e-5, then the mean.
//!
//! A shot's first frame is the previous shot's last + 1 (0 for the first).
//! The tests check these against a numpy/scikit-learn implementation of
//! the same functions (`tests/fixtures/make_sceneseg_metrics.py`) to 1e-9.

use serde::{Deserialize, Serialize};

use crate::metrics::{average_precision, MetricsError, MovieBoundaries};

/// SceneSeg's decision threshold: a line is a cut when float32(p) > 0.5.
pub const THRESHOLD: f64 = 0.5;

/// Whether SceneSeg cuts at a boundary of probability `p`: its float32,
/// as SceneSeg writes its prediction file, above [`THRESHOLD`].
pub fn is_cut(p: f64) -> bool {
    p as f32 as f64 > THRESHOLD
}

/// SceneSeg's Recall@3s window: ±5 shots, under 3 s at 24 fps.
const RECALL_SHOTS: i64 = 5;
const RECALL_SECONDS: f64 = 3.0;
const RECALL_FPS: f64 = 24.0;

/// SceneSeg's final scores, with its key names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SceneSegScores {
    #[serde(rename = "AP")]
    pub ap: f64,
    #[serde(rename = "mAP")]
    pub map: f64,
    /// `None` where SceneSeg's `cal_MIOU` returns None.
    #[serde(rename = "Miou")]
    pub miou: Option<f64>,
    #[serde(rename = "Recall")]
    pub recall: f64,
    #[serde(rename = "Recall_time")]
    pub recall_time: f64,
}

/// One movie's lines: the scored boundaries' shot ids, truths and float32
/// probabilities.
struct Lines {
    shots: Vec<usize>,
    truth: Vec<bool>,
    prob: Vec<f64>,
}

impl Lines {
    fn of(m: &MovieBoundaries<'_>) -> Lines {
        let shots: Vec<usize> = m.counted_boundaries().collect();
        Lines {
            truth: shots.iter().map(|&b| m.ground_truth[b]).collect(),
            // SceneSeg's probabilities are the model's float32.
            prob: shots.iter().map(|&b| m.prediction[b] as f32 as f64).collect(),
            shots,
        }
    }

    fn cuts(&self) -> Vec<bool> {
        self.prob.iter().map(|&p| is_cut(p)).collect()
    }
}

/// Scores movies as SceneSeg's final test does.
pub fn evaluate(movies: &[MovieBoundaries<'_>]) -> Result<SceneSegScores, MetricsError> {
    crate::metrics::check(movies)?;
    let all: Vec<(Lines, &MovieBoundaries<'_>)> = movies
        .iter()
        .map(|m| (Lines::of(m), m))
        .filter(|(l, _)| !l.shots.is_empty())
        .collect();
    if all.is_empty() {
        return Err(MetricsError::NoMovies);
    }
    let n = all.len() as f64;
    let pooled_truth: Vec<bool> = all.iter().flat_map(|(l, _)| l.truth.iter().copied()).collect();
    let pooled_prob: Vec<f64> = all.iter().flat_map(|(l, _)| l.prob.iter().copied()).collect();
    let ap = average_precision(&pooled_truth, &pooled_prob);
    let (mut map, mut recall, mut recall_time) = (0.0, 0.0, 0.0);
    let mut mious = Vec::with_capacity(all.len());
    for (lines, m) in &all {
        map += round2(average_precision(&lines.truth, &lines.prob));
        let cuts = lines.cuts();
        recall += recall_of(&lines.truth, &cuts);
        recall_time += recall_at_time(lines, &cuts, m.shot_end_frame);
        mious.push(miou(lines, &cuts, m.shot_end_frame));
    }
    let miou = mious
        .into_iter()
        .collect::<Option<Vec<f64>>>()
        .map(|v| v.iter().sum::<f64>() / n);
    Ok(SceneSegScores {
        ap,
        map: map / n,
        miou,
        recall: recall / n,
        recall_time: recall_time / n,
    })
}

/// Python's `round(x, 2)`: the nearest of the exact decimal value, ties to
/// even, as Rust's formatting rounds.
fn round2(x: f64) -> f64 {
    format!("{x:.2}").parse().unwrap_or(x)
}

/// scikit-learn's binary recall; 0 without a true cut.
fn recall_of(truth: &[bool], cuts: &[bool]) -> f64 {
    let positives = truth.iter().filter(|&&t| t).count();
    if positives == 0 {
        return 0.0;
    }
    let hits = truth.iter().zip(cuts).filter(|(&t, &c)| t && c).count();
    hits as f64 / positives as f64
}

/// True cuts with a predicted cut on a line within ±5 shots whose shot
/// ends less than 3 s (at 24 fps) from theirs.
fn recall_at_time(lines: &Lines, cuts: &[bool], shot_end_frame: &[i64]) -> f64 {
    let cut_at: std::collections::HashMap<usize, bool> =
        lines.shots.iter().copied().zip(cuts.iter().copied()).collect();
    let (mut found, mut total) = (0usize, 0usize);
    for (&shot, &t) in lines.shots.iter().zip(&lines.truth) {
        if !t {
            continue;
        }
        total += 1;
        let hit = (-RECALL_SHOTS..=RECALL_SHOTS).any(|k| {
            let other = shot as i64 + k;
            if other < 0 || other as usize >= shot_end_frame.len() {
                return false;
            }
            let gap = (shot_end_frame[other as usize] - shot_end_frame[shot]).abs() as f64 / RECALL_FPS;
            cut_at.get(&(other as usize)) == Some(&true) && gap < RECALL_SECONDS
        });
        found += usize::from(hit);
    }
    found as f64 / (total as f64 + 1e-5)
}

/// Runs of lines ending at a cut, as frame intervals; the lines after the
/// last cut are dropped.
fn scene_intervals(shots: &[usize], cuts: &[bool], shot_end_frame: &[i64]) -> Vec<(i64, i64)> {
    let start_of = |shot: usize| {
        if shot == 0 {
            0
        } else {
            shot_end_frame[shot - 1] + 1
        }
    };
    let mut out = Vec::new();
    let mut first = None;
    for (&shot, &cut) in shots.iter().zip(cuts) {
        let f = *first.get_or_insert(shot);
        if cut {
            out.push((start_of(f), shot_end_frame[shot]));
            first = None;
        }
    }
    out
}

fn iou(a: (i64, i64), b: (i64, i64)) -> f64 {
    let inter = a.1.min(b.1) - a.0.max(b.0);
    if inter <= 0 {
        return 0.0;
    }
    inter as f64 / (a.1.max(b.1) - a.0.min(b.0)) as f64
}

/// The mean over `xs` of each one's best IoU with `ys`.
fn mean_best(xs: &[(i64, i64)], ys: &[(i64, i64)]) -> f64 {
    xs.iter()
        .map(|&x| ys.iter().map(|&y| iou(y, x)).fold(f64::NEG_INFINITY, f64::max))
        .sum::<f64>()
        / xs.len() as f64
}

/// One movie's Miou: 0 without a predicted cut, `None` (SceneSeg's None
/// overall) with predicted cuts but no true cut.
fn miou(lines: &Lines, cuts: &[bool], shot_end_frame: &[i64]) -> Option<f64> {
    let predicted = scene_intervals(&lines.shots, cuts, shot_end_frame);
    if predicted.is_empty() {
        return Some(0.0);
    }
    let truth = scene_intervals(&lines.shots, &lines.truth, shot_end_frame);
    if truth.is_empty() {
        return None;
    }
    Some((mean_best(&truth, &predicted) + mean_best(&predicted, &truth)) / 2.0)
}
