//! When do two runtimes agree? `lgss verify`'s rule, derived from what a
//! measured difference in probabilities can and cannot change.
//!
//! Runtimes compute the same function in different orders (and, on a GPU,
//! possibly with TF32), so their probabilities differ by some ε = max|Δp|.
//! A fixed tolerance on AP is the wrong test: AP depends only on the order
//! of the scores, and one swapped pair of near-tied boundaries moves it by
//! up to 1/#positives however small ε is, while a real bug can hide under a
//! loose tolerance. Instead, with the reference probabilities `p` and ε:
//!
//! - **ε itself** must be within its bound ([`max_dp_bound`]).
//! - **AP and mAP** must lie in the interval that *any* scores within ε of
//!   `p` can reach ([`ap_interval`]): only pairs of boundaries within 2ε of
//!   each other can change order, and the interval accounts for exactly
//!   those (its width is what ε explains).
//! - **Miou, precision, recall, F1** depend on the decisions `p >= 0.5`;
//!   a decision may flip only where `|p - 0.5| <= ε`, and a movie whose
//!   decisions did not flip must score identically.
//!
//! Anything else is a difference ε cannot explain, and fails.

use serde::Serialize;

use crate::metrics::{Scores, THRESHOLD};

/// The unit roundoff of IEEE fp32 (2^-24) and of TF32 (10 stored mantissa
/// bits: 2^-11).
const FP32_UNIT_ROUNDOFF: f64 = 5.960_464_477_539_063e-8;
const TF32_UNIT_ROUNDOFF: f64 = 4.882_812_5e-4;

/// The default bound on max|Δp| between runtimes that all compute in fp32:
/// 1e-5, ~170 fp32 roundoffs (CPU runtimes differ by ~1e-7; the model sums
/// up to 2,048-long products and runs a 10-step LSTM). With TF32 the same
/// computation rounds its matmul inputs to 2^-11, so the bound scales by
/// the ratio of the two roundoffs (×8192 → ~0.08).
pub fn max_dp_bound(tf32: bool) -> f64 {
    const FP32_BOUND: f64 = 1e-5;
    if tf32 {
        FP32_BOUND * (TF32_UNIT_ROUNDOFF / FP32_UNIT_ROUNDOFF)
    } else {
        FP32_BOUND
    }
}

/// One movie's reference and compared probabilities, with its ground truth.
#[derive(Debug, Clone, Copy)]
pub struct MoviePair<'a> {
    pub imdb_id: &'a str,
    pub ground_truth: &'a [bool],
    pub reference: &'a [f64],
    pub other: &'a [f64],
}

/// What a runtime's difference from the reference explains, and what not.
#[derive(Debug, Clone, Serialize)]
pub struct Agreement {
    /// max|Δp| over every boundary of every movie.
    pub max_abs_dp: f64,
    pub max_dp_bound: f64,
    /// The pooled AP any scores within max|Δp| of the reference can have.
    pub ap_interval: (f64, f64),
    /// The same for mAP (the mean of the per-movie intervals).
    pub map_interval: (f64, f64),
    /// (boundary, non-boundary) pairs within 2·max|Δp| of each other in
    /// the reference: the pairs whose order may swap, summed over movies.
    pub swappable_pairs: u64,
    /// Reference probabilities within max|Δp| of the threshold.
    pub near_threshold: usize,
    /// Decisions at the threshold that differ from the reference's.
    pub flips: usize,
    /// What ε cannot explain; empty when the runtime agrees.
    pub unexplained: Vec<String>,
}

impl Agreement {
    pub fn ok(&self) -> bool {
        self.unexplained.is_empty()
    }
}

/// Compares a runtime's scores with the reference's under the module's rule.
/// `reference_scores` and `other_scores` are the challenge's scores of each.
pub fn compare(
    movies: &[MoviePair<'_>],
    reference_scores: &Scores,
    other_scores: &Scores,
    max_dp_bound: f64,
) -> Agreement {
    let mut eps = 0.0f64;
    let mut unexplained = Vec::new();
    for m in movies {
        for (a, b) in m.reference.iter().zip(m.other) {
            let d = (a - b).abs();
            // A NaN never compares greater: catch it explicitly.
            if d.is_nan() {
                eps = f64::INFINITY;
            } else {
                eps = eps.max(d);
            }
        }
        if m.reference.len() != m.other.len() {
            unexplained.push(format!(
                "{}: {} probabilities, the reference has {}",
                m.imdb_id,
                m.other.len(),
                m.reference.len()
            ));
        }
    }
    if eps > max_dp_bound {
        unexplained.push(format!("max|Δp| {eps:.3e} exceeds its bound {max_dp_bound:.1e}"));
    }

    let truth: Vec<bool> = movies
        .iter()
        .flat_map(|m| m.ground_truth.iter().copied())
        .collect();
    let pooled: Vec<f64> = movies.iter().flat_map(|m| m.reference.iter().copied()).collect();
    let ap_iv = ap_interval(&truth, &pooled, eps);
    let mut map_iv = (0.0, 0.0);
    let mut swappable = 0u64;
    let mut near = 0usize;
    let mut flips = 0usize;
    for m in movies {
        let iv = ap_interval(m.ground_truth, m.reference, eps);
        map_iv.0 += iv.0 / movies.len() as f64;
        map_iv.1 += iv.1 / movies.len() as f64;
        swappable += swappable_pairs(m.ground_truth, m.reference, eps);
        let reach = widen(eps);
        near += m
            .reference
            .iter()
            .filter(|&&p| (p - THRESHOLD).abs() <= reach)
            .count();
        let mut movie_flips = 0usize;
        for (i, (&a, &b)) in m.reference.iter().zip(m.other).enumerate() {
            if (a >= THRESHOLD) != (b >= THRESHOLD) {
                movie_flips += 1;
                if (a - THRESHOLD).abs() > reach {
                    unexplained.push(format!(
                        "{}: boundary {i} flipped ({a:.8} vs {b:.8}) though {:.2e} from the threshold",
                        m.imdb_id,
                        (a - THRESHOLD).abs()
                    ));
                }
            }
        }
        flips += movie_flips;
        if movie_flips == 0 {
            for d in decision_score_differences(m.imdb_id, reference_scores, other_scores) {
                unexplained.push(format!("{}: {d} with identical decisions", m.imdb_id));
            }
        }
    }
    let slack = |n: usize| n as f64 * f64::EPSILON;
    if !within(other_scores.ap, ap_iv, slack(truth.len())) {
        unexplained.push(format!(
            "AP {:.8} is outside [{:.8}, {:.8}], what max|Δp| {eps:.3e} can reach",
            other_scores.ap, ap_iv.0, ap_iv.1
        ));
    }
    if !within(other_scores.map, map_iv, slack(truth.len())) {
        unexplained.push(format!(
            "mAP {:.8} is outside [{:.8}, {:.8}], what max|Δp| {eps:.3e} can reach",
            other_scores.map, map_iv.0, map_iv.1
        ));
    }
    Agreement {
        max_abs_dp: eps,
        max_dp_bound,
        ap_interval: ap_iv,
        map_interval: map_iv,
        swappable_pairs: swappable,
        near_threshold: near,
        flips,
        unexplained,
    }
}

/// The scores of movie `id` that depend only on its decisions (Miou,
/// precision, recall, F1) and differ between two score sets, as "Miou
/// differs (a vs b)": a movie decided identically must have none.
pub fn decision_score_differences(id: &str, reference: &Scores, other: &Scores) -> Vec<String> {
    [
        ("Miou", &reference.miou_dict, &other.miou_dict),
        ("precision", &reference.precision_dict, &other.precision_dict),
        ("recall", &reference.recall_dict, &other.recall_dict),
        ("F1", &reference.f1_dict, &other.f1_dict),
    ]
    .into_iter()
    .filter_map(|(what, a, b)| {
        let (a, b) = (a.get(id), b.get(id));
        (a != b).then(|| format!("{what} differs ({a:?} vs {b:?})"))
    })
    .collect()
}

fn within(x: f64, (lo, hi): (f64, f64), slack: f64) -> bool {
    x >= lo - slack && x <= hi + slack
}

/// ε widened by a few f64 roundoffs (0 stays 0), so that comparisons
/// computed in f64 never miss a pair the exact arithmetic would include.
fn widen(eps: f64) -> f64 {
    if eps == 0.0 {
        0.0
    } else {
        eps * (1.0 + 8.0 * f64::EPSILON) + f64::MIN_POSITIVE
    }
}

/// The interval of scikit-learn's average precision over every `q` with
/// `|q_i - p_i| <= eps`.
///
/// AP = (1/P) Σ over positives i of prec_i, prec_i = (positives with
/// q_j ≥ q_i) / (all with q_j ≥ q_i): ties form one threshold, so a tied
/// group counts whole. Element j is surely counted for i when
/// p_j ≥ p_i + 2ε, possibly when p_j ≥ p_i − 2ε; prec = a/(a + b) grows in
/// the positives a and falls in the negatives b, so prec_i lies between
/// a_min/(a_min + b_max) and a_max/(a_max + b_min). Sound for every such
/// q; with ε = 0 both ends are AP(p) exactly. O(n log n).
pub fn ap_interval(truth: &[bool], p: &[f64], eps: f64) -> (f64, f64) {
    let (pos, neg) = (sorted_scores(truth, p, true), sorted_scores(truth, p, false));
    if pos.is_empty() {
        return (0.0, 0.0);
    }
    let two = widen(2.0 * eps);
    let at_or_above = |v: &[f64], x: f64| v.len() - v.partition_point(|&s| s < x);
    let (mut lo, mut hi) = (0.0, 0.0);
    for &s in &pos {
        // Rounded outwards, so "surely" and "possibly" stay sound.
        let (surely, possibly) = if two == 0.0 {
            (s, s)
        } else {
            ((s + two).next_up(), (s - two).next_down())
        };
        // With ε > 0, i itself lies below `surely`: count it once.
        let own = usize::from(surely > s);
        let a_min = (at_or_above(&pos, surely) + own) as f64;
        let a_max = at_or_above(&pos, possibly) as f64;
        let b_min = at_or_above(&neg, surely) as f64;
        let b_max = at_or_above(&neg, possibly) as f64;
        lo += a_min / (a_min + b_max);
        hi += a_max / (a_max + b_min);
    }
    let n = pos.len() as f64;
    (lo / n, hi / n)
}

/// The scores of the boundaries whose truth is `label`, ascending.
fn sorted_scores(truth: &[bool], p: &[f64], label: bool) -> Vec<f64> {
    let mut v: Vec<f64> = truth
        .iter()
        .zip(p)
        .filter(|(t, _)| **t == label)
        .map(|(_, &s)| s)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// (positive, negative) pairs whose scores are within 2ε: the pairs whose
/// order can differ between two runtimes that differ by at most ε.
pub fn swappable_pairs(truth: &[bool], p: &[f64], eps: f64) -> u64 {
    let neg = sorted_scores(truth, p, false);
    let two = widen(2.0 * eps);
    truth
        .iter()
        .zip(p)
        .filter(|(t, _)| **t)
        .map(|(_, &s)| {
            let lo = neg.partition_point(|&x| x < s - two);
            let hi = neg.partition_point(|&x| x <= s + two);
            (hi - lo) as u64
        })
        .sum()
}
