//! Scene-segmentation metrics, computed exactly as the Eluvio ML challenge's
//! `evaluate_sceneseg.py` computes them.
//!
//! AP is scikit-learn's `average_precision_score` (ties in the scores form
//! one threshold), pooled over all movies; mAP is the mean of per-movie AP;
//! Miou is the mean over movies of the maximum-IoU measure in frames; P, R and
//! F1 are per-movie means at the threshold. Where the script divides 0 by 0
//! (a movie with no predicted or no true boundary) the value is 0, as numpy's
//! `nan_to_num` gives.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The challenge's decision threshold: a boundary is predicted when `p >= 0.5`.
pub const THRESHOLD: f64 = 0.5;

/// One movie's boundaries to score.
#[derive(Debug, Clone, Copy)]
pub struct MovieBoundaries<'a> {
    pub imdb_id: &'a str,
    pub ground_truth: &'a [bool],
    pub prediction: &'a [f64],
    /// End frame of every shot: one more entry than boundaries.
    pub shot_end_frame: &'a [i64],
    /// Which boundaries count (`None`: all). The rest are left out as
    /// SceneSeg leaves them out: of AP and P/R/F1, and of Miou as
    /// boundaries where neither truth nor prediction cuts. A movie with
    /// none that counts is not scored at all.
    pub scored: Option<&'a [bool]>,
}

impl MovieBoundaries<'_> {
    /// The boundaries that count, in order.
    pub fn counted_boundaries(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.ground_truth.len()).filter(|&b| self.scored.is_none_or(|s| s[b]))
    }

    /// Ground truth and prediction at the boundaries that count.
    pub fn counted(&self) -> (Cow<'_, [bool]>, Cow<'_, [f64]>) {
        match self.scored {
            None => (Cow::Borrowed(self.ground_truth), Cow::Borrowed(self.prediction)),
            Some(_) => (
                self.counted_boundaries().map(|b| self.ground_truth[b]).collect(),
                self.counted_boundaries().map(|b| self.prediction[b]).collect(),
            ),
        }
    }

    /// Ground truth and prediction with no cut where a boundary does not count.
    fn uncut_where_left_out(&self) -> (Cow<'_, [bool]>, Cow<'_, [f64]>) {
        match self.scored {
            None => (Cow::Borrowed(self.ground_truth), Cow::Borrowed(self.prediction)),
            Some(s) => (
                self.ground_truth.iter().zip(s).map(|(&g, &k)| g && k).collect(),
                self.prediction
                    .iter()
                    .zip(s)
                    .map(|(&p, &k)| if k { p } else { 0.0 })
                    .collect(),
            ),
        }
    }

    fn counts_any(&self) -> bool {
        self.scored.is_none_or(|s| s.iter().any(|&k| k))
    }
}

/// The script's output, with its key names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    #[serde(rename = "AP")]
    pub ap: f64,
    #[serde(rename = "mAP")]
    pub map: f64,
    #[serde(rename = "Miou")]
    pub miou: f64,
    #[serde(rename = "Precision")]
    pub precision: f64,
    #[serde(rename = "Recall")]
    pub recall: f64,
    #[serde(rename = "F1")]
    pub f1: f64,
    #[serde(rename = "AP_dict")]
    pub ap_dict: BTreeMap<String, f64>,
    pub miou_dict: BTreeMap<String, f64>,
    pub precision_dict: BTreeMap<String, f64>,
    pub recall_dict: BTreeMap<String, f64>,
    pub f1_dict: BTreeMap<String, f64>,
}

/// Why a set of movies cannot be scored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    #[error("no movies to score")]
    NoMovies,
    #[error("{id}: {what}")]
    Shape { id: String, what: String },
    #[error("two movies share the imdb_id {0}")]
    DuplicateId(String),
}

/// Checks that movies can be scored: some movies, consistent lengths,
/// finite predictions, distinct ids.
pub fn check(movies: &[MovieBoundaries<'_>]) -> Result<(), MetricsError> {
    if movies.is_empty() {
        return Err(MetricsError::NoMovies);
    }
    let mut seen = std::collections::HashSet::new();
    for m in movies {
        check_shapes(m)?;
        if !seen.insert(m.imdb_id) {
            return Err(MetricsError::DuplicateId(m.imdb_id.to_string()));
        }
    }
    Ok(())
}

/// Scores movies as `evaluate_sceneseg.py` does.
pub fn evaluate(movies: &[MovieBoundaries<'_>]) -> Result<Scores, MetricsError> {
    check(movies)?;
    let counted: Vec<&MovieBoundaries<'_>> = movies.iter().filter(|m| m.counts_any()).collect();
    if counted.is_empty() {
        return Err(MetricsError::NoMovies);
    }
    let n = counted.len() as f64;
    let mut scores = Scores {
        ap: 0.0,
        map: 0.0,
        miou: 0.0,
        precision: 0.0,
        recall: 0.0,
        f1: 0.0,
        ap_dict: BTreeMap::new(),
        miou_dict: BTreeMap::new(),
        precision_dict: BTreeMap::new(),
        recall_dict: BTreeMap::new(),
        f1_dict: BTreeMap::new(),
    };
    let mut pooled_gt = Vec::new();
    let mut pooled_pr = Vec::new();
    for m in counted {
        let (gt, pr) = m.counted();
        let ap = average_precision(&gt, &pr);
        let (p, r, f1) = precision_recall_f1(&gt, &pr, THRESHOLD);
        let (gt_cuts, pr_cuts) = m.uncut_where_left_out();
        let miou = max_iou(&gt_cuts, &pr_cuts, m.shot_end_frame, THRESHOLD);
        scores.map += ap;
        scores.miou += miou;
        scores.precision += p;
        scores.recall += r;
        scores.f1 += f1;
        let id = m.imdb_id.to_string();
        scores.ap_dict.insert(id.clone(), ap);
        scores.miou_dict.insert(id.clone(), miou);
        scores.precision_dict.insert(id.clone(), p);
        scores.recall_dict.insert(id.clone(), r);
        scores.f1_dict.insert(id, f1);
        pooled_gt.extend_from_slice(&gt);
        pooled_pr.extend_from_slice(&pr);
    }
    scores.map /= n;
    scores.miou /= n;
    scores.precision /= n;
    scores.recall /= n;
    scores.f1 /= n;
    scores.ap = average_precision(&pooled_gt, &pooled_pr);
    Ok(scores)
}

fn check_shapes(m: &MovieBoundaries<'_>) -> Result<(), MetricsError> {
    let err = |what: String| MetricsError::Shape {
        id: m.imdb_id.to_string(),
        what,
    };
    if m.ground_truth.len() != m.prediction.len() {
        return Err(err(format!(
            "{} ground-truth boundaries but {} predictions",
            m.ground_truth.len(),
            m.prediction.len()
        )));
    }
    if m.shot_end_frame.len() != m.ground_truth.len() + 1 {
        return Err(err(format!(
            "{} shot end frames for {} boundaries (need one more)",
            m.shot_end_frame.len(),
            m.ground_truth.len()
        )));
    }
    if m.scored.is_some_and(|s| s.len() != m.ground_truth.len()) {
        return Err(err(format!(
            "{} scored flags for {} boundaries",
            m.scored.map_or(0, <[bool]>::len),
            m.ground_truth.len()
        )));
    }
    if m.prediction.iter().any(|p| !p.is_finite()) {
        return Err(err("prediction holds a non-finite value".into()));
    }
    Ok(())
}

/// scikit-learn's `average_precision_score` for binary labels: the sum over
/// distinct score thresholds, from high to low, of (recall gain) × precision.
/// With no positive label recall is defined as 1 everywhere, which gives 0.
pub fn average_precision(truth: &[bool], score: &[f64]) -> f64 {
    let n = truth.len();
    if n == 0 {
        return 0.0;
    }
    let mut order: Vec<usize> = (0..n).collect();
    // Descending by score; ties stay together (their order does not matter
    // because a whole tie group is one threshold).
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]));
    let total_pos = truth.iter().filter(|&&t| t).count() as f64;
    let mut tps = 0.0f64;
    let mut prev_recall = 0.0f64;
    let mut sum = 0.0f64;
    for (k, &i) in order.iter().enumerate() {
        if truth[i] {
            tps += 1.0;
        }
        let last_of_group = k + 1 == n || score[order[k + 1]] != score[i];
        if last_of_group {
            let seen = (k + 1) as f64;
            let precision = tps / seen;
            let recall = if total_pos == 0.0 { 1.0 } else { tps / total_pos };
            sum += (recall - prev_recall) * precision;
            prev_recall = recall;
        }
    }
    sum.max(0.0)
}

/// Per-movie precision, recall and F1 at `threshold`; 0 where 0/0.
pub fn precision_recall_f1(truth: &[bool], score: &[f64], threshold: f64) -> (f64, f64, f64) {
    let mut tp = 0usize;
    let mut pred = 0usize;
    let mut pos = 0usize;
    for (&t, &s) in truth.iter().zip(score) {
        let p = s >= threshold;
        tp += (t && p) as usize;
        pred += p as usize;
        pos += t as usize;
    }
    let div = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
    let precision = div(tp as f64, pred as f64);
    let recall = div(tp as f64, pos as f64);
    let f1 = div(2.0 * precision * recall, precision + recall);
    (precision, recall, f1)
}

/// Inclusive frame ranges `[start, end]` of the scenes that `boundaries` cut.
pub fn scene_frame_ranges(boundaries: impl Iterator<Item = bool>, shot_end_frame: &[i64]) -> Vec<(i64, i64)> {
    let mut scenes = Vec::new();
    let mut start = 0i64;
    for (i, b) in boundaries.enumerate() {
        if b {
            scenes.push((start, shot_end_frame[i]));
            start = shot_end_frame[i] + 1;
        }
    }
    let last = shot_end_frame[shot_end_frame.len() - 1];
    scenes.push((start, last));
    scenes
}

fn iou(x: (i64, i64), y: (i64, i64)) -> f64 {
    let (s0, e0) = x;
    let (s1, e1) = y;
    let (smin, smax) = if s1 > s0 { (s0, s1) } else { (s1, s0) };
    let (emin, emax) = if e1 > e0 { (e0, e1) } else { (e1, e0) };
    (emin - smax + 1) as f64 / (emax - smin + 1) as f64
}

/// The script's Miou: for each true scene the best IoU with a predicted
/// scene and vice versa, averaged, found with the script's own sweep.
///
/// The script fills an m × n table (true × predicted scenes) with zeros and
/// writes the IoU of the pairs its sweep visits, then takes row and column
/// maxima. A 10^5-shot movie would need tens of GB for that table, so this
/// keeps, per row and per column, the largest visited value and how many
/// cells were visited: the table's maximum is that value, or 0 if an
/// unvisited (zero) cell remains — the same number in O(m + n) memory. (The
/// sweep visits each cell at most once: within a row j only increases.)
pub fn max_iou(truth: &[bool], score: &[f64], shot_end_frame: &[i64], threshold: f64) -> f64 {
    let gt = scene_frame_ranges(truth.iter().copied(), shot_end_frame);
    let pr = scene_frame_ranges(score.iter().map(|&s| s >= threshold), shot_end_frame);
    let (m, n) = (gt.len(), pr.len());
    let mut row_best = vec![f64::NEG_INFINITY; m];
    let mut row_seen = vec![0usize; m];
    let mut col_best = vec![f64::NEG_INFINITY; n];
    let mut col_seen = vec![0usize; n];
    let mut j = 0usize;
    for i in 0..m {
        while pr[j].0 <= gt[i].1 {
            let v = iou(gt[i], pr[j]);
            row_best[i] = row_best[i].max(v);
            row_seen[i] += 1;
            col_best[j] = col_best[j].max(v);
            col_seen[j] += 1;
            if j < n - 1 {
                j += 1;
            } else {
                break;
            }
        }
        if pr[j].1 < gt[i].1 + 1 {
            break;
        }
        if pr[j].0 > gt[i].1 + 1 {
            j = j.saturating_sub(1);
        }
    }
    // A row (column) with an unvisited cell also holds a table zero.
    let table_max = |best: f64, seen: usize, len: usize| if seen < len { best.max(0.0) } else { best };
    let row_max: f64 = (0..m)
        .map(|i| table_max(row_best[i], row_seen[i], n))
        .sum::<f64>()
        / m as f64;
    let col_max: f64 = (0..n)
        .map(|j| table_max(col_best[j], col_seen[j], m))
        .sum::<f64>()
        / n as f64;
    (col_max + row_max) / 2.0
}
