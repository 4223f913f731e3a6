//! Global grouping's γ and λ chosen on whole validation movies (`lgss
//! train --val-movies K`) and stored with the best checkpoint, so that
//! `segment --global` groups a user's data with settings its own held-out
//! movies support rather than the synthetic development study's defaults.
//! Grouping is a movie-level decision, so a split by sequences (the
//! default) has nothing to choose on and leaves the defaults.

use serde::Serialize;

use crate::grouping::{self, Descriptors, LengthPrior, Params, WeightedPrior};
use crate::metrics::{evaluate, MovieBoundaries};
use crate::model::checkpoint::GroupingChoice;

/// γ values searched: those of the development study (`benches/grouping_dev.py`).
pub const COHERENCE_GRID: [f64; 5] = [0.1, 0.3, 0.5, 1.0, 2.0];
/// λ values searched, with every γ.
pub const LENGTH_WEIGHT_GRID: [f64; 5] = [0.0, 0.5, 1.0, 1.5, 2.0];

/// A validation movie: its ground truth and the model's probabilities.
pub struct ValMovie {
    pub imdb_id: String,
    pub ground_truth: Vec<bool>,
    pub shot_end_frame: Vec<i64>,
    pub prob: Vec<f64>,
    pub desc: Descriptors,
}

/// The choice and what it scored on the validation movies.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    #[serde(flatten)]
    pub choice: GroupingChoice,
    /// Miou of the validation movies grouped with the choice.
    #[serde(rename = "val_Miou")]
    pub val_miou: f64,
    /// Miou of the validation movies with the threshold rule alone.
    #[serde(rename = "local_val_Miou")]
    pub local_val_miou: f64,
    pub val_movies: usize,
}

/// The grid point whose grouping scores the best Miou over `movies` (ties:
/// the defaults first, then the grid in order). `prior` must come from
/// movies other than these, or λ would be chosen on scenes it has seen.
pub fn choose(movies: &[ValMovie], threshold: f64, prior: Option<&LengthPrior>) -> anyhow::Result<Choice> {
    let miou = |probs: &[Vec<f64>]| -> anyhow::Result<f64> {
        let rows: Vec<MovieBoundaries> = movies
            .iter()
            .zip(probs)
            .map(|(m, p)| MovieBoundaries {
                imdb_id: &m.imdb_id,
                ground_truth: &m.ground_truth,
                prediction: p,
                shot_end_frame: &m.shot_end_frame,
            })
            .collect();
        Ok(evaluate(&rows)?.miou)
    };
    let local: Vec<Vec<f64>> = movies
        .iter()
        .map(|m| crate::segment::calibrated(&m.prob, threshold))
        .collect();
    let local_val_miou = miou(&local)?;
    let defaults = (grouping::DEFAULT_COHERENCE, grouping::DEFAULT_LENGTH_WEIGHT);
    let grid = std::iter::once(defaults).chain(
        COHERENCE_GRID
            .iter()
            .flat_map(|&g| LENGTH_WEIGHT_GRID.iter().map(move |&l| (g, l))),
    );
    let mut best: Option<Choice> = None;
    for (coherence, length_weight) in grid {
        let params = Params {
            threshold,
            coherence,
            length_prior: prior
                .filter(|_| length_weight != 0.0)
                .map(|p| WeightedPrior::new(length_weight, p.clone())),
            ..Params::default()
        };
        let grouped = movies
            .iter()
            .map(|m| {
                let g = grouping::group(&m.prob, &m.desc, &params)?;
                Ok(grouping::grouped_probabilities(&m.prob, &g.cuts))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let val_miou = miou(&grouped)?;
        if best.as_ref().is_none_or(|b| val_miou > b.val_miou) {
            best = Some(Choice {
                choice: GroupingChoice {
                    coherence,
                    length_weight,
                },
                val_miou,
                local_val_miou,
                val_movies: movies.len(),
            });
        }
    }
    best.ok_or_else(|| anyhow::anyhow!("empty grid"))
}
