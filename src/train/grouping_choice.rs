//! Global grouping's γ and λ chosen on whole validation movies (`lgss
//! train --val-movies K`) and stored with the best checkpoint, so that
//! `segment --global` groups a user's data with settings its own held-out
//! movies support rather than the synthetic development study's defaults.
//! Grouping is a movie-level decision, so a split by sequences (the
//! default) has nothing to choose on and leaves the defaults.

use serde::Serialize;

use super::bank::Bank;
use super::score_sequences;
use crate::data::windows::Sequence;
use crate::grouping::{self, Descriptors, LengthPrior, Params, WeightedPrior};
use crate::model::checkpoint::GroupingChoice;

/// γ values searched: those of the development study (`benches/grouping_dev.py`).
pub const COHERENCE_GRID: [f64; 5] = [0.1, 0.3, 0.5, 1.0, 2.0];
/// λ values searched, with every γ.
pub const LENGTH_WEIGHT_GRID: [f64; 5] = [0.0, 0.5, 1.0, 1.5, 2.0];

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

/// The grid point whose grouping scores the best Miou over the validation
/// movies (ties: the defaults first, then the grid in order). `probs` are
/// the model's, per bank movie; `val` pairs each validation movie's bank
/// index with its shots' descriptors and `val_seqs` are its sequences
/// (whole movies). `prior` must come from other movies, or λ would be
/// chosen on scenes it has seen.
pub fn choose(
    bank: &Bank,
    probs: &[Vec<f64>],
    val: &[(usize, Descriptors)],
    val_seqs: &[Sequence],
    threshold: f64,
    prior: Option<&LengthPrior>,
) -> anyhow::Result<Choice> {
    let local = {
        let mut decided = probs.to_vec();
        for (i, _) in val {
            decided[*i] = crate::segment::calibrated(&probs[*i], threshold);
        }
        decided
    };
    let local_val_miou = score_sequences(bank, &local, val_seqs)?.miou;
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
        let val_miou = score_sequences(bank, &grouped(probs, val, &params)?, val_seqs)?.miou;
        if best.as_ref().is_none_or(|b| val_miou > b.val_miou) {
            best = Some(Choice {
                choice: GroupingChoice {
                    coherence,
                    length_weight,
                },
                val_miou,
                local_val_miou,
                val_movies: val.len(),
            });
        }
    }
    best.ok_or_else(|| anyhow::anyhow!("empty grid"))
}

/// `probs` (per bank movie) with each movie of `movies` (its bank index and
/// descriptors) replaced by its grouped probabilities under `params`.
pub fn grouped(
    probs: &[Vec<f64>],
    movies: &[(usize, Descriptors)],
    params: &Params,
) -> Result<Vec<Vec<f64>>, grouping::GroupingError> {
    let mut decided = probs.to_vec();
    for (i, desc) in movies {
        let g = grouping::group(&probs[*i], desc, params)?;
        decided[*i] = grouping::grouped_probabilities(&probs[*i], &g.cuts);
    }
    Ok(decided)
}
