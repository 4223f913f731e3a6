//! LGSS's movie-level stage, *global optimal grouping* (Rao et al. 2020,
//! §4.4), which upstream never released: after any runtime, the scene
//! partition is chosen by an exact dynamic program over the local model's
//! boundary probabilities and the shots' features.
//!
//! **Objective** (minimised) over the set `C` of boundaries cut:
//!
//! ```text
//! E(C) = Σ_{b ∈ C} (logit τ − logit p_b)  +  Σ_{scenes S} (γ · SSE(S) − λ · r(|S|))
//! SSE(S) = Σ_{i ∈ S} |x_i − x̄_S|²
//! ```
//!
//! With a scene-length prior (learned by `lgss train` from the training
//! movies' scenes) each scene `S` also adds `−λ · r(|S|)`, where
//! `r(L) = ln P(L) − ln G(L)`: the log ratio of the training scene-length
//! distribution `P` to the geometric distribution `G` of the same mean,
//! which is what independent per-boundary decisions assume (`λ = 1` would
//! be the Bayes correction of that assumption); the cut rate stays the
//! threshold's business, because `G` has the data's mean. The defaults of
//! γ and λ were chosen on development movies, never on test movies
//! (`benches/grouping_dev.py`); `lgss train --val-movies` chooses a
//! model's own on its validation movies (`crate::train::grouping_choice`).
//!
//! `p_b` is the boundary probability, `τ` the threshold, `x_i` a shot's
//! descriptor (each modality L2-normalised and weighted by √ratio, projected
//! to [`DESCRIPTOR_DIM`] dimensions by a fixed ±1 matrix) and `γ` the weight
//! of within-scene coherence. With `γ = 0` and no prior the optimum is the
//! plain threshold rule; with `γ > 0` a cut whose probability is near `τ` is
//! kept where it separates dissimilar shots and dropped inside a coherent
//! stretch; the prior splits scenes far longer than the data's and merges
//! implausibly short ones where the probabilities are unsure. Scenes are at
//! most `max_scene_shots` long.
//!
//! **Algorithm**: `F(s) = min_t F(t) + pen(t) + γ·SSE(t..s) − λ·r(s − t)`
//! over scene starts `t`, SSE from prefix sums in O(d); candidates are
//! pruned exactly as in PELT (Killick et al. 2012): `t` can never again be
//! the best start once
//! `F(t) + pen(t) + γ·SSE(t..s) − λ·M(s − t) > F(s) + pen(s)`, because
//! splitting a scene never raises its SSE and, for a scene of `a` shots
//! grown by `b`, the length term gains at most
//! `M(a) = max_b r(a + b) − r(b)` over starting anew at `s` (0 once `a` is
//! past the prior's table, where `r` is flat). Time O(n·k·d) with k the
//! live candidates (about a scene's length; with a prior at most the
//! table's length more; at most `max_scene_shots`), memory O(n·d).
//! Deterministic: ties go to the earliest scene start.

use crate::data::movie::{Modality, Movie};
use crate::model::config::PerModality;
use crate::rng::Rng;

/// Descriptor width: enough to keep inner products of 3,584-wide features
/// within a few per cent (Johnson–Lindenstrauss), small enough that 10^5
/// shots take 51 MB.
pub const DESCRIPTOR_DIM: usize = 64;
const PROJECTION_SEED: u64 = 0x6c67_7373_6770;
/// γ's default: the best mean Miou on development movies disjoint from the
/// quality bench's (`benches/grouping_dev.py`, the book: "Global optimal
/// grouping").
pub const DEFAULT_COHERENCE: f64 = 1.0;
/// λ's default, chosen with γ on the same development movies.
pub const DEFAULT_LENGTH_WEIGHT: f64 = 1.5;
/// Probabilities are clamped to [ε, 1 − ε] before the logit.
const PROB_EPS: f64 = 1e-7;

/// The stage's settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Params {
    /// τ: with no coherence term, a boundary is cut when p ≥ τ.
    pub threshold: f64,
    /// γ: weight of the within-scene scatter.
    pub coherence: f64,
    /// No scene is longer than this many shots.
    pub max_scene_shots: usize,
    /// λ and the scene-length prior, if the model has one and λ > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length_prior: Option<WeightedPrior>,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            threshold: 0.5,
            coherence: DEFAULT_COHERENCE,
            max_scene_shots: 1000,
            length_prior: None,
        }
    }
}

/// A scene-length prior with its weight λ.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WeightedPrior {
    pub weight: f64,
    /// Not written with a segment's settings (it is the model's; see
    /// `scenes_seen`).
    #[serde(skip)]
    pub prior: LengthPrior,
    /// How many training scenes the prior was learned from.
    pub scenes_seen: u64,
}

impl WeightedPrior {
    pub fn new(weight: f64, prior: LengthPrior) -> WeightedPrior {
        WeightedPrior {
            weight,
            scenes_seen: prior.scenes,
            prior,
        }
    }
}

/// `r(L) = ln P(L) − ln G(L)` for scene lengths `L ≥ 1`: `P` the training
/// scenes' length histogram, smoothed over 5 neighbouring lengths and mixed
/// with `G` (weight [`LengthPrior::GEOMETRIC_SHARE`]) so that lengths the
/// training data never showed stay possible; `G` the geometric distribution
/// of the same mean. Beyond the table `r` is its tail value
/// `ln GEOMETRIC_SHARE`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LengthPrior {
    log_ratio: Vec<f64>,
    scenes: u64,
}

impl LengthPrior {
    /// The share of the geometric distribution in the mixture.
    pub const GEOMETRIC_SHARE: f64 = 0.01;
    /// Scenes the histogram may hold: longer ones are counted at this length.
    pub const MAX_LENGTH: usize = 10_000;

    /// From `counts[L − 1]` = training scenes of `L` shots.
    pub fn from_counts(counts: &[u64]) -> Result<LengthPrior, GroupingError> {
        let scenes: u64 = counts.iter().sum();
        if scenes == 0 || counts.len() > Self::MAX_LENGTH {
            return Err(GroupingError::Prior(counts.len(), scenes));
        }
        let shots: f64 = counts
            .iter()
            .enumerate()
            .map(|(i, &c)| (i + 1) as f64 * c as f64)
            .sum();
        let mean = shots / scenes as f64;
        // G(L) = ρ (1 − ρ)^(L − 1), ρ = 1 / mean (ρ = 1: every scene one shot).
        let rho = 1.0 / mean;
        let ln_geometric = |len: usize| {
            if rho >= 1.0 {
                if len == 1 {
                    0.0
                } else {
                    f64::NEG_INFINITY
                }
            } else {
                rho.ln() + (len - 1) as f64 * (1.0 - rho).ln()
            }
        };
        // Two lengths beyond the longest seen, where the smoothing reaches.
        let len = counts.len() + 2;
        let smoothed: Vec<f64> = (1..=len)
            .map(|l| {
                (l.saturating_sub(2).max(1)..=(l + 2).min(counts.len()))
                    .map(|k| counts[k - 1] as f64)
                    .sum::<f64>()
            })
            .collect();
        let total: f64 = smoothed.iter().sum();
        let log_ratio = smoothed
            .iter()
            .enumerate()
            .map(|(i, &c)| {
                // ln(ε + (1 − ε)·P_smooth/G) in logs, so that a G too small
                // for f64 (a mean near one shot) stays finite.
                let x = if c > 0.0 {
                    ((c / total).ln() - ln_geometric(i + 1)).min(700.0)
                } else {
                    f64::NEG_INFINITY
                };
                (Self::GEOMETRIC_SHARE + (1.0 - Self::GEOMETRIC_SHARE) * x.exp()).ln()
            })
            .collect();
        Ok(LengthPrior { log_ratio, scenes })
    }

    /// Lengths with an r of their own; beyond them r is `ln GEOMETRIC_SHARE`.
    pub fn support(&self) -> usize {
        self.log_ratio.len()
    }

    /// r(L) for `L ≥ 1`.
    pub fn log_ratio(&self, len: usize) -> f64 {
        match self.log_ratio.get(len.wrapping_sub(1)) {
            Some(&r) => r,
            None => Self::GEOMETRIC_SHARE.ln(),
        }
    }

    /// Scene-length counts of movies' ground truth (`counts[L − 1]`), the
    /// data `from_counts` learns from.
    pub fn count_scenes<'a>(ground_truths: impl IntoIterator<Item = &'a [bool]>) -> Vec<u64> {
        let mut counts = Vec::new();
        for gt in ground_truths {
            let mut len = 0usize;
            // Shot i ends a scene where boundary i is cut, and the last shot.
            for i in 0..=gt.len() {
                len += 1;
                if i == gt.len() || gt[i] {
                    let l = len.min(Self::MAX_LENGTH);
                    if counts.len() < l {
                        counts.resize(l, 0);
                    }
                    counts[l - 1] += 1;
                    len = 0;
                }
            }
        }
        counts
    }
}

/// Per-shot descriptors, row-major `n × DESCRIPTOR_DIM`.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptors {
    pub n: usize,
    pub data: Vec<f64>,
}

impl Descriptors {
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * DESCRIPTOR_DIM..(i + 1) * DESCRIPTOR_DIM]
    }
}

/// The shots' descriptors: each modality's row L2-normalised (all-zero rows
/// stay zero), weighted by √weight, projected by a fixed ±1/√d matrix (the
/// same on every machine and release), summed over modalities.
pub fn descriptors(movie: &Movie, weights: &PerModality<f64>) -> Descriptors {
    let n = movie.n_shots();
    let mut data = vec![0.0f64; n * DESCRIPTOR_DIM];
    for (mi, &m) in Modality::ALL.iter().enumerate() {
        let Some(f) = movie.features(m) else { continue };
        let w = weights.get(m);
        let dim = f.ncols();
        if w.is_nan() || w <= 0.0 || dim == 0 {
            continue;
        }
        let mut rng = Rng::derive(PROJECTION_SEED, mi as u64);
        let signs: Vec<f32> = (0..DESCRIPTOR_DIM * dim)
            .map(|_| if rng.next_u64() >> 63 == 1 { 1.0 } else { -1.0 })
            .collect();
        let scale = w.sqrt() / (DESCRIPTOR_DIM as f64).sqrt();
        // A view, as every lgss `Features` is in standard layout already.
        let f = f.as_standard_layout();
        let rows = f.as_slice().unwrap_or_default().chunks_exact(dim);
        for (i, row) in rows.take(n).enumerate() {
            let norm = row
                .iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum::<f64>()
                .sqrt();
            if norm == 0.0 || !norm.is_finite() {
                continue;
            }
            let out = &mut data[i * DESCRIPTOR_DIM..(i + 1) * DESCRIPTOR_DIM];
            for (k, o) in out.iter_mut().enumerate() {
                *o += scale / norm * f64::from(dot(row, &signs[k * dim..(k + 1) * dim]));
            }
        }
    }
    Descriptors { n, data }
}

/// A fixed-order f32 dot product in eight lanes (vectorises; the same
/// result on every x86-64).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    acc.iter().sum::<f32>() + tail
}

/// A chosen partition.
#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    /// One per boundary (`n − 1`): cut or not.
    pub cuts: Vec<bool>,
    /// E(C) of the partition.
    pub objective: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum GroupingError {
    #[error("{probs} boundary probabilities for {shots} shots (want {})", .shots.saturating_sub(1))]
    Length { probs: usize, shots: usize },
    #[error("threshold {0} is not inside (0, 1)")]
    Threshold(f64),
    #[error("coherence weight {0} is not a finite non-negative number")]
    Coherence(f64),
    #[error("max_scene_shots must be at least 1")]
    MaxScene,
    #[error("scene-length weight {0} is not a finite non-negative number")]
    LengthWeight(f64),
    #[error(
        "a scene-length prior needs 1 to 10000 lengths and at least one scene (got {0} lengths, {1} scenes)"
    )]
    Prior(usize, u64),
}

fn logit(p: f64) -> f64 {
    let p = if p.is_nan() {
        0.5
    } else {
        p.clamp(PROB_EPS, 1.0 - PROB_EPS)
    };
    (p / (1.0 - p)).ln()
}

/// Prefix sums of descriptors and their squared norms, for SSE in O(d).
struct Prefix {
    sum: Vec<f64>,
    sq: Vec<f64>,
}

impl Prefix {
    fn new(desc: &Descriptors) -> Prefix {
        let d = DESCRIPTOR_DIM;
        let mut sum = vec![0.0; (desc.n + 1) * d];
        let mut sq = vec![0.0; desc.n + 1];
        for i in 0..desc.n {
            let row = desc.row(i);
            let (prev, next) = sum.split_at_mut((i + 1) * d);
            let prev = &prev[i * d..];
            for k in 0..d {
                next[k] = prev[k] + row[k];
            }
            sq[i + 1] = sq[i] + row.iter().map(|v| v * v).sum::<f64>();
        }
        Prefix { sum, sq }
    }

    /// SSE of shots `t..s` (s > t).
    fn sse(&self, t: usize, s: usize) -> f64 {
        let d = DESCRIPTOR_DIM;
        let (a, b) = (&self.sum[t * d..(t + 1) * d], &self.sum[s * d..(s + 1) * d]);
        let norm2: f64 = a.iter().zip(b).map(|(x, y)| (y - x) * (y - x)).sum();
        let sse = self.sq[s] - self.sq[t] - norm2 / (s - t) as f64;
        sse.max(0.0)
    }
}

/// The optimal partition of a movie with `prob.len() + 1` shots.
pub fn group(prob: &[f64], desc: &Descriptors, params: &Params) -> Result<Grouping, GroupingError> {
    solve(prob, desc, params, None)
}

/// How much worse the best partition that decides boundary `b` the other
/// way is: 0 for an exact tie. Runtimes whose probabilities differ can
/// only disagree on boundaries with a small margin.
pub fn margin(prob: &[f64], desc: &Descriptors, params: &Params, b: usize) -> Result<f64, GroupingError> {
    let cut = solve(prob, desc, params, Some((b, true)))?.objective;
    let keep = solve(prob, desc, params, Some((b, false)))?.objective;
    Ok((cut - keep).abs())
}

/// How far the objective difference of any two partitions can move when
/// the probabilities change from `a` to `b`: `Σ_b |logit b_b − logit a_b|`.
/// Only the cut terms `logit τ − logit p_b` depend on the probabilities, so
/// `E'(C) − E(C) = −Σ_{b ∈ C} Δlogit_b`, and two partitions' difference
/// moves by at most the sum over the boundaries where they differ. So a
/// boundary the two decide differently is explained only if its
/// [`margin`] under `a` is at most this.
pub fn objective_shift(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (logit(y) - logit(x)).abs()).sum()
}

/// The DP, optionally with boundary `force.0` forced cut (`true`) or uncut.
fn solve(
    prob: &[f64],
    desc: &Descriptors,
    params: &Params,
    force: Option<(usize, bool)>,
) -> Result<Grouping, GroupingError> {
    let n = desc.n;
    if n == 0 || prob.len() + 1 != n {
        return Err(GroupingError::Length {
            probs: prob.len(),
            shots: n,
        });
    }
    if !(params.threshold > 0.0 && params.threshold < 1.0) {
        return Err(GroupingError::Threshold(params.threshold));
    }
    if !(params.coherence >= 0.0 && params.coherence.is_finite()) {
        return Err(GroupingError::Coherence(params.coherence));
    }
    if params.max_scene_shots == 0 {
        return Err(GroupingError::MaxScene);
    }
    let gamma = params.coherence;
    let cap = params.max_scene_shots;
    let base = logit(params.threshold);
    let (lambda, prior) = match &params.length_prior {
        Some(w) if !(w.weight >= 0.0 && w.weight.is_finite()) => {
            return Err(GroupingError::LengthWeight(w.weight))
        }
        Some(w) if w.weight > 0.0 => (w.weight, Some(&w.prior)),
        _ => (0.0, None),
    };
    // gain[L] = λ·r(L) for every possible scene length, and the pruning
    // slack: a scene start t with s − t = a can beat start s at any later
    // end by at most slack[a] = max_b gain[a + b] − gain[b] (b ≥ 1, a + b a
    // possible length). Past the prior's table r is flat, so b beyond it adds
    // 0, and so does every a beyond it: there pruning is as without a prior.
    let lengths = cap.min(n);
    let gain: Vec<f64> = (0..=lengths)
        .map(|l| match prior {
            Some(p) if l > 0 => lambda * p.log_ratio(l),
            _ => 0.0,
        })
        .collect();
    let slack: Vec<f64> = match prior {
        None => vec![0.0; lengths + 1],
        Some(p) => (0..=lengths)
            .map(|a| {
                let reach = p.support().min(lengths - a);
                (1..=reach).map(|b| gain[a + b] - gain[b]).fold(0.0, f64::max)
            })
            .collect(),
    };
    // pen[t]: the cost of starting a scene at shot t (cutting boundary t − 1).
    let mut pen = vec![0.0; n + 1];
    for t in 1..n {
        pen[t] = base - logit(prob[t - 1]);
    }
    if let Some((b, false)) = force {
        if b + 1 < n {
            pen[b + 1] = f64::INFINITY;
        }
    }
    // A scene [t, s) that holds shots b and b + 1 crosses a forced cut.
    let crosses = |t: usize, s: usize| matches!(force, Some((b, true)) if t <= b && s >= b + 2);
    let prefix = Prefix::new(desc);
    let cost = |t: usize, s: usize| {
        if gamma == 0.0 {
            0.0
        } else {
            gamma * prefix.sse(t, s)
        }
    };
    // g[t] = F(t) + pen(t): the cost so far if a scene starts at t.
    let mut g = vec![f64::INFINITY; n + 1];
    g[0] = 0.0;
    let mut back = vec![0usize; n + 1];
    let mut live: Vec<usize> = vec![0];
    let mut total = f64::INFINITY;
    for s in 1..=n {
        let mut best = f64::INFINITY;
        let mut arg = 0;
        for &t in &live {
            if crosses(t, s) {
                continue;
            }
            let c = g[t] + cost(t, s) - gain[s - t];
            if c < best {
                best = c;
                arg = t;
            }
        }
        back[s] = arg;
        if s == n {
            total = best;
            break;
        }
        g[s] = best + pen[s];
        let gs = g[s];
        live.retain(|&t| s - t < cap && g[t] + cost(t, s) - slack[s - t] <= gs);
        live.push(s);
    }
    let mut cuts = vec![false; n - 1];
    let mut s = n;
    while s > 0 {
        let t = back[s];
        if t > 0 {
            cuts[t - 1] = true;
        }
        s = t;
    }
    Ok(Grouping {
        cuts,
        objective: total,
    })
}

/// Probabilities that tell the grouping's decisions and still rank within
/// each class as the local model did: cuts map to `[0.5, 1]`
/// (`0.5 + p/2`), the rest to `[0, 0.5)` (`p/2`, a hair below 0.5 at
/// `p = 1`). Thresholding at 0.5 gives exactly the chosen scenes, and AP
/// still orders the boundaries the model was surer of first.
pub fn grouped_probabilities(prob: &[f64], cuts: &[bool]) -> Vec<f64> {
    const BELOW_HALF: f64 = 1.0 - 1.0 / (1u64 << 20) as f64;
    prob.iter()
        .zip(cuts)
        .map(|(&p, &cut)| {
            let p = if p.is_nan() { 0.5 } else { p.clamp(0.0, 1.0) };
            if cut {
                0.5 + 0.5 * p
            } else {
                0.5 * p * BELOW_HALF
            }
        })
        .collect()
}
