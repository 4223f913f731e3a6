//! LGSS's movie-level stage, *global optimal grouping* (Rao et al. 2020,
//! §4.4), which upstream never released: after any runtime, the scene
//! partition is chosen by an exact dynamic program over the local model's
//! boundary probabilities and the shots' features.
//!
//! **Objective** (minimised) over the set `C` of boundaries cut:
//!
//! ```text
//! E(C) = Σ_{b ∈ C} (logit τ − logit p_b)  +  γ · Σ_{scenes S} SSE(S)
//! SSE(S) = Σ_{i ∈ S} |x_i − x̄_S|²
//! ```
//!
//! `p_b` is the boundary probability, `τ` the threshold, `x_i` a shot's
//! descriptor (each modality L2-normalised and weighted by √ratio, projected
//! to [`DESCRIPTOR_DIM`] dimensions by a fixed ±1 matrix) and `γ` the weight
//! of within-scene coherence. With `γ = 0` the optimum is the plain threshold
//! rule; with `γ > 0` a cut whose probability is near `τ` is kept where it
//! separates dissimilar shots and dropped inside a coherent stretch. Scenes
//! are at most `max_scene_shots` long.
//!
//! **Algorithm**: `F(s) = min_t F(t) + pen(t) + γ·SSE(t..s)` over scene
//! starts `t`, SSE from prefix sums in O(d); candidates are pruned exactly
//! as in PELT (Killick et al. 2012): `t` can never again be the best start
//! once `F(t) + pen(t) + γ·SSE(t..s) > F(s) + pen(s)`, because splitting a
//! scene never raises its SSE. Time O(n·k·d) with k the live candidates
//! (about a scene's length, at most `max_scene_shots`), memory O(n·d).
//! Deterministic: ties go to the earliest scene start.

use crate::data::movie::{Modality, Movie};
use crate::model::config::PerModality;
use crate::rng::Rng;

/// Descriptor width: enough to keep inner products of 3,584-wide features
/// within a few per cent (Johnson–Lindenstrauss), small enough that 10^5
/// shots take 51 MB.
pub const DESCRIPTOR_DIM: usize = 64;
const PROJECTION_SEED: u64 = 0x6c67_7373_6770;
/// Probabilities are clamped to [ε, 1 − ε] before the logit.
const PROB_EPS: f64 = 1e-7;

/// The stage's settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Params {
    /// τ: with no coherence term, a boundary is cut when p ≥ τ.
    pub threshold: f64,
    /// γ: weight of the within-scene scatter.
    pub coherence: f64,
    /// No scene is longer than this many shots.
    pub max_scene_shots: usize,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            threshold: 0.5,
            coherence: 0.1,
            max_scene_shots: 1000,
        }
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
        if w.is_nan() || w <= 0.0 || f.dim == 0 {
            continue;
        }
        let mut rng = Rng::derive(PROJECTION_SEED, mi as u64);
        let signs: Vec<f32> = (0..DESCRIPTOR_DIM * f.dim)
            .map(|_| if rng.next_u64() >> 63 == 1 { 1.0 } else { -1.0 })
            .collect();
        let scale = w.sqrt() / (DESCRIPTOR_DIM as f64).sqrt();
        for i in 0..n.min(f.rows) {
            let row = f.row(i);
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
                *o += scale / norm * f64::from(dot(row, &signs[k * f.dim..(k + 1) * f.dim]));
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
            let c = g[t] + cost(t, s);
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
        live.retain(|&t| s - t < cap && g[t] + cost(t, s) <= gs);
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
