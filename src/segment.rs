//! Movies to boundary probabilities to scenes, with any runtime.
//!
//! Windows and sequences come from [`crate::data::windows`], the same code
//! that feeds training, so every runtime sees exactly what the model was
//! trained on and every boundary of the movie gets a probability.

use anyhow::Context;
use serde::Serialize;

use crate::data::movie::{Movie, Schema};
use crate::data::windows::{batch_rows, gather_windows, sequences, Sequence};
use crate::grouping;
use crate::model::checkpoint::StoredChoices;
use crate::model::config::ModelConfig;
use crate::phases::Phases;
use crate::runtime::Backend;

/// The schema a model's input movies must satisfy.
pub fn schema_for(config: &ModelConfig) -> Schema {
    Schema {
        modalities: config
            .modalities
            .iter()
            .map(|&m| (m, Some(config.feature_dims.get(m))))
            .collect(),
        require_ground_truth: false,
        require_prediction: false,
    }
}

/// Boundary probabilities (`n_shots - 1`) of one movie.
pub fn movie_probabilities(
    backend: &mut dyn Backend,
    movie: &Movie,
    batch: usize,
) -> anyhow::Result<Vec<f64>> {
    movie_probabilities_timed(backend, movie, batch, &mut Phases::new())
}

/// [`movie_probabilities`], adding the runtime's phases to `phases`
/// ([`Backend::run_movie`]: `windows` and `model` on the host; libtorch
/// adds `shots to device` and `device to host`).
pub fn movie_probabilities_timed(
    backend: &mut dyn Backend,
    movie: &Movie,
    batch: usize,
    phases: &mut Phases,
) -> anyhow::Result<Vec<f64>> {
    let config = backend.config().clone();
    let n = movie.n_shots();
    let seqs = sequences(0, n, config.seq_len);
    let feats = model_features(&config, movie)?;
    let shots: Vec<ndarray::ArrayView2<f32>> = feats.iter().map(|f| f.view()).collect();
    let prob = backend.run_movie(&shots, n, &seqs, batch, phases)?;
    let mut out = vec![f64::NAN; n - 1];
    place_probabilities(&seqs, &prob, config.seq_len, backend.name(), &mut out)?;
    Ok(out)
}

/// Writes a runtime's `prob` (`[seqs.len() * seq_len]`) for the real
/// boundaries of `seqs` into the movie's `out`.
pub fn place_probabilities(
    seqs: &[Sequence],
    prob: &[f32],
    seq_len: usize,
    runtime: &str,
    out: &mut [f64],
) -> anyhow::Result<()> {
    anyhow::ensure!(
        prob.len() == seqs.len() * seq_len,
        "{runtime}: runtime returned {} values",
        prob.len()
    );
    for (i, s) in seqs.iter().enumerate() {
        for t in 0..s.valid {
            out[s.start + t] = prob[i * seq_len + t] as f64;
        }
    }
    Ok(())
}

/// The movie's features of each modality `config` takes, in its order,
/// checked against the model's widths.
pub fn model_features<'a>(
    config: &ModelConfig,
    movie: &'a Movie,
) -> anyhow::Result<Vec<&'a crate::data::movie::Features>> {
    let feats: Vec<&crate::data::movie::Features> = config
        .modalities
        .iter()
        .map(|&m| {
            movie
                .features(m)
                .with_context(|| format!("{}: no {m} features", movie.imdb_id))
        })
        .collect::<anyhow::Result<_>>()?;
    for (f, &m) in feats.iter().zip(&config.modalities) {
        anyhow::ensure!(
            f.ncols() == config.feature_dims.get(m),
            "{}: {m} has {} columns, model expects {}",
            movie.imdb_id,
            f.ncols(),
            config.feature_dims.get(m)
        );
    }
    Ok(feats)
}

/// The model inputs of `seqs` (sequences of one movie of `n_shots`), from
/// its [`model_features`].
pub fn window_inputs(
    config: &ModelConfig,
    feats: &[&crate::data::movie::Features],
    n_shots: usize,
    seqs: &[Sequence],
) -> Vec<ndarray::Array4<f32>> {
    let rows = batch_rows(seqs, &[0], &[n_shots], config.seq_len, config.shot_num);
    feats
        .iter()
        .map(|f| gather_windows(f.view(), &rows, config.seq_len, config.shot_num))
        .collect()
}

/// A scene: consecutive shots between two predicted boundaries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scene {
    pub index: usize,
    pub first_shot: usize,
    pub last_shot: usize,
    pub first_frame: i64,
    pub last_frame: i64,
    pub start: String,
    pub end: String,
    /// Mean over the boundaries inside and closing the scene of how sure the
    /// model is of each decision (`max(p, 1 - p)`).
    pub confidence: f64,
}

/// Cuts a movie into scenes where `prob >= threshold`.
pub fn scenes(prob: &[f64], shot_end_frame: &[i64], threshold: f64, fps: f64) -> Vec<Scene> {
    let n = shot_end_frame.len();
    let mut out = Vec::new();
    let mut first = 0usize;
    for shot in 0..n {
        let cut = shot + 1 == n || prob[shot] >= threshold;
        if !cut {
            continue;
        }
        // Boundaries inside the scene, and the one closing it (none after the last shot).
        let decided: Vec<f64> = (first..=shot)
            .filter(|&b| b < n - 1)
            .map(|b| prob[b].max(1.0 - prob[b]))
            .collect();
        let first_frame = if first == 0 {
            0
        } else {
            shot_end_frame[first - 1] + 1
        };
        let last_frame = shot_end_frame[shot];
        out.push(Scene {
            index: out.len(),
            first_shot: first,
            last_shot: shot,
            first_frame,
            last_frame,
            start: timecode(first_frame, fps),
            end: timecode(last_frame + 1, fps),
            confidence: if decided.is_empty() {
                1.0
            } else {
                decided.iter().sum::<f64>() / decided.len() as f64
            },
        });
        first = shot + 1;
    }
    out
}

/// `HH:MM:SS.mmm` of a frame number at `fps`.
pub fn timecode(frame: i64, fps: f64) -> String {
    let ms = ((frame as f64 / fps) * 1000.0).round() as i64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// The candidate decision thresholds `lgss train` tries on the validation
/// movies: coarse, so that a few hundred boundaries cannot overfit it.
pub const THRESHOLD_GRID: [f64; 19] = [
    0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85,
    0.90, 0.95,
];

/// Probabilities rescaled so that `threshold` lands on the challenge's 0.5:
/// `p/(2τ)` below τ, `0.5 + (p − τ)/(2(1 − τ))` from τ up. Strictly
/// increasing, so AP and every ranking are unchanged, while Miou, precision,
/// recall and F1 at 0.5 become those at τ.
pub fn calibrated(prob: &[f64], threshold: f64) -> Vec<f64> {
    if threshold == 0.5 {
        return prob.to_vec();
    }
    prob.iter()
        .map(|&p| {
            if p < threshold {
                0.5 * p / threshold
            } else {
                0.5 + 0.5 * (p - threshold) / (1.0 - threshold)
            }
        })
        .collect()
}

/// One movie's segmentation as `lgss segment` writes it (its JSON form),
/// and as the Python module and the server return it.
#[derive(Debug, Clone, Serialize)]
pub struct Segmentation {
    pub imdb_id: String,
    pub file: std::path::PathBuf,
    pub runtime: String,
    pub n_shots: usize,
    /// The last frame of each shot (times of the boundaries: after shot `b`
    /// is frame `shot_end_frame[b] + 1`).
    pub shot_end_frame: Vec<i64>,
    pub threshold: f64,
    pub fps: f64,
    /// What is scored: cuts are exactly the boundaries ≥ 0.5. The grouped
    /// probabilities, or with the threshold rule the model's rescaled to the
    /// threshold; the same order within cuts and within the rest.
    pub boundary_probabilities: Vec<f64>,
    pub scenes: Vec<Scene>,
    /// Which rule decided: `global` (grouping) or `local` (the threshold rule).
    pub rule: &'static str,
    /// Global grouping's settings (absent with the threshold rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global: Option<grouping::Params>,
    /// The model's own probabilities, where they differ from the above.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_probabilities: Option<Vec<f64>>,
    /// The video the movie was extracted from (`lgss extract`), which the
    /// EDL and OTIO outputs reference so an editor opens the cut with the
    /// picture; frames and times are then at the video's own rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<std::path::PathBuf>,
}

impl Segmentation {
    /// Decides `movie`'s scenes from the model's probabilities `prob` by
    /// global grouping with `global`, or by the threshold rule without.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        movie: &Movie,
        file: &std::path::Path,
        runtime: &str,
        prob: &[f64],
        weights: &crate::model::config::PerModality<f64>,
        threshold: f64,
        fps: f64,
        global: Option<grouping::Params>,
    ) -> Result<Segmentation, grouping::GroupingError> {
        let decided = decide(prob, movie, weights, threshold, fps, global.as_ref())?;
        Ok(Segmentation {
            imdb_id: movie.imdb_id.clone(),
            file: file.to_path_buf(),
            runtime: runtime.to_string(),
            n_shots: movie.n_shots(),
            shot_end_frame: movie.shot_end_frame.clone(),
            threshold,
            fps,
            scenes: decided.scenes,
            model_probabilities: (decided.probabilities != prob).then(|| prob.to_vec()),
            boundary_probabilities: decided.probabilities,
            rule: rule_name(global.as_ref()),
            global,
            media: None,
        })
    }
}

/// What a movie's boundaries were decided to be.
#[derive(Debug, Clone)]
pub struct Decided {
    /// The probabilities to write and score: the local model's, or with
    /// global grouping [`grouping::grouped_probabilities`].
    pub probabilities: Vec<f64>,
    pub scenes: Vec<Scene>,
}

/// The scenes of a movie from its local boundary probabilities: cut where
/// `prob >= threshold` (the probabilities written [`calibrated`] to it), or,
/// with `global`, where global optimal grouping (with `global.threshold` as
/// its τ) cuts.
pub fn decide(
    prob: &[f64],
    movie: &crate::data::movie::Movie,
    weights: &crate::model::config::PerModality<f64>,
    threshold: f64,
    fps: f64,
    global: Option<&grouping::Params>,
) -> Result<Decided, grouping::GroupingError> {
    let Some(params) = global else {
        let probabilities = calibrated(prob, threshold);
        return Ok(Decided {
            scenes: scenes(&probabilities, &movie.shot_end_frame, 0.5, fps),
            probabilities,
        });
    };
    let desc = grouping::descriptors(movie, weights);
    let g = grouping::group(prob, &desc, params)?;
    let probabilities = grouping::grouped_probabilities(prob, &g.cuts);
    let scenes = scenes(&probabilities, &movie.shot_end_frame, 0.5, fps);
    Ok(Decided {
        probabilities,
        scenes,
    })
}

/// Global grouping's settings a caller gives instead of the model's; each
/// `None` is the model's choice (`lgss train --val-movies`), else the default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GroupingOverrides {
    /// γ.
    pub coherence: Option<f64>,
    /// λ (0: no scene-length prior).
    pub length_weight: Option<f64>,
    /// No scene longer than this many shots (default 1,000).
    pub max_scene_shots: Option<usize>,
}

/// The longest scene global grouping makes unless told otherwise.
pub const DEFAULT_MAX_SCENE_SHOTS: usize = 1000;

/// How scenes are decided for one movie: the threshold, the fps of the
/// timecodes, and global grouping's settings (`None`: the threshold rule).
#[derive(Debug, Clone)]
pub struct Decision {
    pub threshold: f64,
    pub fps: f64,
    pub global: Option<grouping::Params>,
}

/// A [`Decision`] from an API's options (the Python module's keyword
/// arguments, the server's query), checked as `segment` checks its flags:
/// `rule` `"global"` (the default) or `"local"`, which conflicts with any
/// grouping override; the threshold inside (0, 1), else the model's, else
/// 0.5; fps positive, else 24. The error says which option is wrong.
pub fn decision_from_options(
    rule: Option<&str>,
    threshold: Option<f64>,
    fps: Option<f64>,
    overrides: &GroupingOverrides,
    stored: &StoredChoices,
) -> Result<Decision, String> {
    let local = match rule {
        None | Some("global") => false,
        Some("local") => true,
        Some(other) => {
            return Err(format!(
                "rule {other:?}: want \"global\" (the default) or \"local\""
            ))
        }
    };
    if local
        && (overrides.coherence.is_some()
            || overrides.length_weight.is_some()
            || overrides.max_scene_shots.is_some())
    {
        return Err(
            "coherence, length_weight and max_scene_shots set global grouping; they conflict with rule=\"local\""
                .into(),
        );
    }
    let threshold = match threshold {
        Some(t) if t > 0.0 && t < 1.0 => t,
        Some(t) => return Err(format!("threshold {t} is not inside (0, 1)")),
        None => stored.threshold.unwrap_or(0.5),
    };
    let fps = fps.unwrap_or(24.0);
    if !(fps > 0.0 && fps.is_finite()) {
        return Err(format!("fps {fps} is not a positive number"));
    }
    let global = (!local).then(|| grouping_params(threshold, stored, overrides));
    Ok(Decision {
        threshold,
        fps,
        global,
    })
}

/// The settings of the default rule, global grouping, for a model: τ =
/// `threshold`, the model's scene-length prior, and γ and λ as overridden,
/// else as the model's training chose them, else the defaults (one place, so
/// that the CLI, the Python module and the server decide alike).
pub fn grouping_params(
    threshold: f64,
    stored: &StoredChoices,
    overrides: &GroupingOverrides,
) -> grouping::Params {
    let chosen = stored.grouping;
    let coherence = overrides
        .coherence
        .or(chosen.map(|c| c.coherence))
        .unwrap_or(grouping::DEFAULT_COHERENCE);
    let length_weight = overrides
        .length_weight
        .or(chosen.map(|c| c.length_weight))
        .unwrap_or(grouping::DEFAULT_LENGTH_WEIGHT);
    grouping::Params {
        threshold,
        coherence,
        max_scene_shots: overrides.max_scene_shots.unwrap_or(DEFAULT_MAX_SCENE_SHOTS),
        length_prior: stored
            .length_prior
            .clone()
            .filter(|_| length_weight != 0.0)
            .map(|p| grouping::WeightedPrior::new(length_weight, p)),
    }
}

/// The name outputs give the rule that decided: `global` (grouping) or
/// `local` (the threshold rule).
pub fn rule_name(global: Option<&grouping::Params>) -> &'static str {
    match global {
        Some(_) => "global",
        None => "local",
    }
}

/// One line saying which rule decided and with which settings, for outputs
/// that carry a comment (CSV, WebVTT, EDL) and plot titles.
pub fn rule_description(threshold: f64, global: Option<&grouping::Params>) -> String {
    let Some(g) = global else {
        return format!("rule local (threshold {threshold})");
    };
    let prior = match &g.length_prior {
        Some(w) => format!(
            "length_weight {} (scene-length prior of {} training scenes)",
            w.weight, w.scenes_seen
        ),
        None => "no scene-length prior".to_string(),
    };
    format!(
        "rule global (threshold {}, coherence {}, {prior}, max_scene_shots {})",
        g.threshold, g.coherence, g.max_scene_shots
    )
}
