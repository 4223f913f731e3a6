//! One movie of MovieScenes data, validated on load.

use std::path::PathBuf;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use super::pickle::{self, Value};
use super::tensor::Tensor;

/// The four shot-feature modalities of MovieScenes, in the model's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Place,
    Cast,
    Action,
    Audio,
}

impl Modality {
    pub const ALL: [Modality; 4] = [Modality::Place, Modality::Cast, Modality::Action, Modality::Audio];

    /// The key in the pickled dict.
    pub fn key(self) -> &'static str {
        match self {
            Modality::Place => "place",
            Modality::Cast => "cast",
            Modality::Action => "action",
            Modality::Audio => "audio",
        }
    }

    /// Feature width in the real MovieScenes data.
    pub fn full_dim(self) -> usize {
        match self {
            Modality::Place => 2048,
            _ => 512,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Modality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

impl std::str::FromStr for Modality {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Modality::ALL
            .into_iter()
            .find(|m| m.key() == s)
            .ok_or_else(|| format!("unknown modality '{s}' (place, cast, action, audio)"))
    }
}

pub const KEY_GROUND_TRUTH: &str = "scene_transition_boundary_ground_truth";
pub const KEY_PREDICTION: &str = "scene_transition_boundary_prediction";
pub const KEY_END_FRAME: &str = "shot_end_frame";
pub const KEY_IMDB_ID: &str = "imdb_id";

/// Per-shot features, `[n_shots, dim]`, in standard (row-major) layout:
/// every constructor in lgss makes them so, which is what runtimes and
/// numpy read without a copy.
pub type Features = ndarray::Array2<f32>;

/// A movie: shot features, scene boundaries and shot end frames.
///
/// Boundary `i` lies between shots `i` and `i + 1`, so a movie of `n` shots
/// has `n - 1` boundaries.
#[derive(Debug, Clone, PartialEq)]
pub struct Movie {
    pub imdb_id: String,
    /// Indexed by [`Modality::index`]; `None` where the file has no such key.
    pub features: [Option<Features>; 4],
    pub ground_truth: Option<Vec<bool>>,
    pub shot_end_frame: Vec<i64>,
    /// Boundary probabilities (f32 in torch files, f64 in numpy ones; kept exact).
    pub prediction: Option<Vec<f64>>,
    /// Which boundaries are trained and scored on (`None`: all). A scene318
    /// movie leaves out those SceneSeg leaves out ([`super::scene318`]).
    pub scored: Option<Vec<bool>>,
}

/// What a caller needs from a file; everything present is validated either way.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    /// Required modalities, each with the width it must have (`None`: any).
    pub modalities: Vec<(Modality, Option<usize>)>,
    pub require_ground_truth: bool,
    pub require_prediction: bool,
}

impl Schema {
    /// Full MovieScenes files as the paper model consumes them.
    pub fn movie_scenes() -> Schema {
        Schema {
            modalities: Modality::ALL.iter().map(|&m| (m, Some(m.full_dim()))).collect(),
            require_ground_truth: false,
            require_prediction: false,
        }
    }

    /// A file to score: ground truth, prediction and end frames; features optional.
    pub fn evaluation() -> Schema {
        Schema {
            modalities: Vec::new(),
            require_ground_truth: true,
            require_prediction: true,
        }
    }

    /// Anything well-formed.
    pub fn any() -> Schema {
        Schema {
            modalities: Vec::new(),
            require_ground_truth: false,
            require_prediction: false,
        }
    }
}

/// A file that could not be loaded: which file, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct LoadError {
    pub path: PathBuf,
    pub problem: String,
}

impl Movie {
    pub fn n_shots(&self) -> usize {
        self.shot_end_frame.len()
    }

    pub fn features(&self, m: Modality) -> Option<&Features> {
        self.features[m.index()].as_ref()
    }

    /// Parses and validates pickle bytes; the error names the problem only.
    pub fn from_pickle_bytes(bytes: &[u8], schema: &Schema) -> Result<Movie, String> {
        let value = pickle::load(bytes).map_err(|e| e.to_string())?;
        let movie = Movie::from_value(value)?;
        movie.validate(schema)?;
        Ok(movie)
    }

    fn from_value(value: Value<'_>) -> Result<Movie, String> {
        let Value::Dict(dict) = value else {
            return Err(format!(
                "top level is a {}, expected a dict of tensors",
                value.kind()
            ));
        };
        // Take the entries out so each tensor has one owner and moves into
        // the movie without a copy.
        let mut entries: std::collections::HashMap<String, Value<'_>> = dict
            .borrow_mut()
            .take_items()
            .into_iter()
            .filter_map(|(k, v)| match k {
                Value::Str(s) => Some((s.to_string(), v)),
                _ => None,
            })
            .collect();
        let get = |key: &str| -> Option<&Value<'_>> { entries.get(key) };
        let imdb_id = match get(KEY_IMDB_ID) {
            Some(Value::Str(s)) if s.chars().any(|c| c.is_control()) => {
                return Err(format!(
                    "'{KEY_IMDB_ID}' holds control characters: \"{}\"",
                    pickle::printable(s)
                ))
            }
            Some(Value::Str(s)) => s.to_string(),
            Some(v) => return Err(format!("'{KEY_IMDB_ID}' is a {}, expected a str", v.kind())),
            None => return Err(format!("required key '{KEY_IMDB_ID}' missing")),
        };
        let mut tensor = |key: &str| -> Result<Option<Rc<Tensor>>, String> {
            match entries.remove(key) {
                None | Some(Value::None) => Ok(None),
                Some(Value::Tensor(t)) => Ok(Some(t)),
                Some(v) => Err(format!("'{key}' is a {}, expected a tensor or array", v.kind())),
            }
        };
        let mut features: [Option<Features>; 4] = Default::default();
        for m in Modality::ALL {
            if let Some(t) = tensor(m.key())? {
                if t.shape().len() != 2 {
                    return Err(format!("{m} has shape {:?}, expected [n_shots, dim]", t.shape()));
                }
                let t = Rc::try_unwrap(t).unwrap_or_else(|rc| (*rc).clone());
                let float = matches!(t.dtype(), super::tensor::DType::F32 | super::tensor::DType::F64);
                if !float {
                    return Err(format!("{m} has dtype {}, expected float", t.dtype()));
                }
                // The decoded array becomes the features: no copy.
                features[m.index()] = Some(
                    t.into_f32()
                        .into_dimensionality::<ndarray::Ix2>()
                        .map_err(|e| format!("{m}: {e}"))?,
                );
            }
        }
        let one_dim = |key: &str, t: &Tensor| -> Result<(), String> {
            if t.shape().len() != 1 {
                return Err(format!(
                    "'{key}' has shape {:?}, expected one dimension",
                    t.shape()
                ));
            }
            Ok(())
        };
        let ground_truth = match tensor(KEY_GROUND_TRUTH)? {
            Some(t) => {
                one_dim(KEY_GROUND_TRUTH, &t)?;
                let flags = t.to_bool().ok_or_else(|| {
                    format!(
                        "'{KEY_GROUND_TRUTH}' has dtype {}, expected bool or 0/1",
                        t.dtype()
                    )
                })?;
                Some(flags.into_iter().collect())
            }
            None => None,
        };
        let prediction = match tensor(KEY_PREDICTION)? {
            Some(t) => {
                one_dim(KEY_PREDICTION, &t)?;
                Some(t.to_f64().into_iter().collect())
            }
            None => None,
        };
        let shot_end_frame = match tensor(KEY_END_FRAME)? {
            Some(t) => {
                one_dim(KEY_END_FRAME, &t)?;
                t.to_i64()
                    .ok_or_else(|| format!("'{KEY_END_FRAME}' has dtype {}, expected integers", t.dtype()))?
                    .into_iter()
                    .collect()
            }
            None => return Err(format!("required key '{KEY_END_FRAME}' missing")),
        };
        Ok(Movie {
            imdb_id,
            features,
            ground_truth,
            shot_end_frame,
            prediction,
            scored: None,
        })
    }

    /// Checks internal consistency, then the schema's requirements.
    pub fn validate(&self, schema: &Schema) -> Result<(), String> {
        let n = self.n_shots();
        if n < 2 {
            return Err(format!(
                "{KEY_END_FRAME} has {n} entries: a movie needs at least 2 shots"
            ));
        }
        if let Some(s) = &self.scored {
            if s.len() != n - 1 {
                return Err(format!("{} scored flags for {} boundaries", s.len(), n - 1));
            }
        }
        for (m, dim) in &schema.modalities {
            match self.features(*m) {
                None => return Err(format!("required key '{}' missing", m.key())),
                Some(f) => {
                    if let Some(d) = dim {
                        if f.ncols() != *d {
                            return Err(format!("{m} has {} columns, model expects {d}", f.ncols()));
                        }
                    }
                }
            }
        }
        for m in Modality::ALL {
            if let Some(f) = self.features(m) {
                if f.nrows() != n {
                    return Err(format!(
                        "{m} has {} rows, {KEY_END_FRAME} has {n} shots",
                        f.nrows()
                    ));
                }
                let values = f.as_standard_layout();
                let values = values.as_slice().unwrap_or_default();
                if let Some(i) = first_non_finite(values) {
                    let dim = f.ncols().max(1);
                    return Err(format!(
                        "{m} has a non-finite value {} (shot {}, column {})",
                        values[i],
                        i / dim,
                        i % dim
                    ));
                }
            }
        }
        match &self.ground_truth {
            Some(gt) if gt.len() != n - 1 => {
                return Err(format!(
                    "{KEY_GROUND_TRUTH} has {} entries; ground truth must have n_shots-1 = {} entries",
                    gt.len(),
                    n - 1
                ))
            }
            None if schema.require_ground_truth => {
                return Err(format!("required key '{KEY_GROUND_TRUTH}' missing"))
            }
            _ => {}
        }
        match &self.prediction {
            Some(p) if p.len() != n - 1 => {
                return Err(format!(
                    "{KEY_PREDICTION} has {} entries; prediction must have n_shots-1 = {} entries",
                    p.len(),
                    n - 1
                ))
            }
            Some(p) => {
                if let Some(i) = p.iter().position(|x| !x.is_finite()) {
                    return Err(format!("{KEY_PREDICTION} has a non-finite value at boundary {i}"));
                }
            }
            None if schema.require_prediction => {
                return Err(format!("required key '{KEY_PREDICTION}' missing"))
            }
            None => {}
        }
        if self.shot_end_frame[0] < 0 {
            return Err(format!("{KEY_END_FRAME} starts at a negative frame"));
        }
        if let Some(i) = self.shot_end_frame.windows(2).position(|w| w[1] <= w[0]) {
            return Err(format!(
                "{KEY_END_FRAME} not increasing: shot {} ends at frame {}, shot {} at {}",
                i,
                self.shot_end_frame[i],
                i + 1,
                self.shot_end_frame[i + 1]
            ));
        }
        Ok(())
    }
}

/// Index of the first NaN or infinity. Checks blocks without early exit so
/// the scan vectorises (it runs over every feature value of every movie).
fn first_non_finite(data: &[f32]) -> Option<usize> {
    const BLOCK: usize = 1024;
    for (b, chunk) in data.chunks(BLOCK).enumerate() {
        if !chunk.iter().fold(true, |ok, x| ok & x.is_finite()) {
            return chunk.iter().position(|x| !x.is_finite()).map(|i| b * BLOCK + i);
        }
    }
    None
}

/// A file name stem for outputs that can never leave the output folder:
/// `name` itself when it is a plain name (letters, digits, `_`, `-`, `.`, at
/// most 64, starting with a letter, digit or `_`: every real imdb_id and
/// file stem), else its letters, digits, `-` and `_` (others become `_`)
/// followed by a hash of the whole name, so distinct names stay distinct.
pub fn output_stem(imdb_id: &str) -> String {
    // Safe as it is: a plain name that cannot leave a folder, hide, or be
    // taken for an option.
    let canonical = !imdb_id.is_empty()
        && imdb_id.len() <= 64
        && imdb_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && (imdb_id.as_bytes()[0].is_ascii_alphanumeric() || imdb_id.as_bytes()[0] == b'_');
    if canonical {
        return imdb_id.to_string();
    }
    // No leading '-', which a shell would take for an option.
    let kept: String = imdb_id
        .chars()
        .take(64)
        .enumerate()
        .map(|(i, c)| match c {
            '-' if i > 0 => c,
            c if c.is_ascii_alphanumeric() || c == '_' => c,
            _ => '_',
        })
        .collect();
    let hash = super::hash::fnv1a64(imdb_id.as_bytes());
    format!("{}-{hash:016x}", if kept.is_empty() { "movie" } else { &kept })
}
