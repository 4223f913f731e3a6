//! `lgss._lgss`: the Rust half of the Python package. It reads MovieScenes
//! pickles with lgss's inert reader, runs exported models in tract or ONNX
//! Runtime, decides scenes exactly as `lgss segment` does and scores them as
//! the challenge's script does. The Python half (`lgss/__init__.py`) wraps
//! these functions in `Movie`, `Model` and `Scenes`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use lgss::data::movie::{Features, Modality, Movie, Schema};
use lgss::metrics::MovieBoundaries;
use lgss::model::checkpoint::StoredChoices;
use lgss::runtime::{open, Backend, RuntimeKind, RuntimeOptions};
use lgss::segment::{
    decision_from_options, movie_probabilities, schema_for, GroupingOverrides, Segmentation,
};
use numpy::{PyArray1, PyArray2, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

pyo3::create_exception!(
    _lgss,
    InvalidMovie,
    PyValueError,
    "A file or arrays that are not a valid MovieScenes movie (the reader's message says why)."
);

/// Any Rust error as a Python exception with its whole chain of causes.
fn runtime_error(e: anyhow::Error) -> PyErr {
    PyRuntimeError::new_err(format!("{e:#}"))
}

/// The movie's arrays as a dict of numpy arrays (features float32 `[n, d]`,
/// ground truth bool, prediction float64, end frames int64; absent: None).
fn movie_dict<'py>(py: Python<'py>, movie: Movie) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("imdb_id", &movie.imdb_id)?;
    for (m, f) in Modality::ALL.iter().zip(movie.features) {
        match f {
            // numpy takes over the reader's array: no copy.
            Some(f) => d.set_item(m.key(), PyArray2::from_owned_array(py, f))?,
            None => d.set_item(m.key(), py.None())?,
        }
    }
    match movie.ground_truth {
        Some(g) => d.set_item("boundary_ground_truth", PyArray1::from_vec(py, g))?,
        None => d.set_item("boundary_ground_truth", py.None())?,
    }
    match movie.prediction {
        Some(p) => d.set_item("boundary_prediction", PyArray1::from_vec(py, p))?,
        None => d.set_item("boundary_prediction", py.None())?,
    }
    match movie.scored {
        Some(s) => d.set_item("boundary_scored", PyArray1::from_vec(py, s))?,
        None => d.set_item("boundary_scored", py.None())?,
    }
    d.set_item("shot_end_frame", PyArray1::from_vec(py, movie.shot_end_frame))?;
    Ok(d)
}

/// Reads a MovieScenes pickle, or a scene318 tree's movie by its
/// `label318/<id>.txt`, without executing anything in it; a file the
/// reader refuses raises InvalidMovie with its message.
#[pyfunction]
fn load_movie<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyDict>> {
    let movie = py
        .detach(|| Movie::load(&path, &Schema::any()))
        .map_err(|e| InvalidMovie::new_err(e.to_string()))?;
    movie_dict(py, movie)
}

/// A movie's arrays as the Python wrapper passes them: a dict holding every
/// key (absent fields `None`), of the dtypes the reader makes.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct MovieArrays<'py> {
    imdb_id: String,
    place: Option<PyReadonlyArray2<'py, f32>>,
    cast: Option<PyReadonlyArray2<'py, f32>>,
    action: Option<PyReadonlyArray2<'py, f32>>,
    audio: Option<PyReadonlyArray2<'py, f32>>,
    boundary_ground_truth: Option<PyReadonlyArray1<'py, bool>>,
    boundary_prediction: Option<PyReadonlyArray1<'py, f64>>,
    shot_end_frame: PyReadonlyArray1<'py, i64>,
}

impl MovieArrays<'_> {
    /// The movie (copied: Python keeps its arrays), validated as the reader
    /// validates a file.
    fn into_movie(self, schema: &Schema) -> PyResult<Movie> {
        // Standard layout whatever the caller's strides.
        let features: [Option<Features>; 4] = [self.place, self.cast, self.action, self.audio]
            .map(|f| f.map(|a| a.as_array().as_standard_layout().into_owned()));
        let movie = Movie {
            imdb_id: self.imdb_id,
            features,
            ground_truth: self.boundary_ground_truth.map(|g| g.as_array().to_vec()),
            shot_end_frame: self.shot_end_frame.as_array().to_vec(),
            prediction: self.boundary_prediction.map(|p| p.as_array().to_vec()),
            scored: None,
        };
        movie.validate(schema).map_err(InvalidMovie::new_err)?;
        Ok(movie)
    }
}

/// Writes a movie in the torch form `lgss` writes (atomically: a temp file,
/// then a rename).
#[pyfunction]
fn save_movie(py: Python<'_>, path: PathBuf, movie: MovieArrays<'_>) -> PyResult<()> {
    let movie = movie.into_movie(&Schema::any())?;
    py.detach(|| lgss::data::pickle_write::write_movie(&path, &movie))
        .map_err(runtime_error)
}

/// Validates arrays as `save_movie` would before writing them (raising
/// InvalidMovie); the numpy form is then written by Python's own pickle.
#[pyfunction]
fn check_movie(movie: MovieArrays<'_>) -> PyResult<()> {
    movie.into_movie(&Schema::any()).map(drop)
}

/// The challenge's scores of per-movie predictions, keyed as
/// `evaluate_sceneseg.py` keys them; per-movie dicts by imdb_id.
#[pyfunction]
fn evaluate_json(
    py: Python<'_>,
    imdb_ids: Vec<String>,
    ground_truth: Vec<PyReadonlyArray1<'_, bool>>,
    predictions: Vec<PyReadonlyArray1<'_, f64>>,
    shot_end_frames: Vec<PyReadonlyArray1<'_, i64>>,
) -> PyResult<String> {
    let n = imdb_ids.len();
    if ground_truth.len() != n || predictions.len() != n || shot_end_frames.len() != n {
        return Err(PyValueError::new_err(format!(
            "{n} movies but {} ground truths, {} predictions and {} shot_end_frames",
            ground_truth.len(),
            predictions.len(),
            shot_end_frames.len()
        )));
    }
    let gt: Vec<Vec<bool>> = ground_truth.iter().map(|a| a.as_array().to_vec()).collect();
    let pred: Vec<Vec<f64>> = predictions.iter().map(|a| a.as_array().to_vec()).collect();
    let ends: Vec<Vec<i64>> = shot_end_frames.iter().map(|a| a.as_array().to_vec()).collect();
    let scores = py.detach(|| {
        let movies: Vec<MovieBoundaries> = (0..n)
            .map(|i| MovieBoundaries {
                imdb_id: &imdb_ids[i],
                ground_truth: &gt[i],
                prediction: &pred[i],
                shot_end_frame: &ends[i],
                scored: None,
            })
            .collect();
        lgss::metrics::evaluate(&movies)
    });
    let scores = scores.map_err(|e| PyValueError::new_err(e.to_string()))?;
    serde_json::to_string(&scores).map_err(|e| runtime_error(e.into()))
}

/// An exported model opened in one runtime; `run` calls are serialised.
#[pyclass(module = "lgss._lgss")]
struct Model {
    backend: Mutex<Box<dyn Backend>>,
    path: PathBuf,
    runtime: RuntimeKind,
    stored: StoredChoices,
    config_json: String,
    /// The modality weights global grouping's descriptors use.
    weights: lgss::model::config::PerModality<f64>,
}

/// The ONNX Runtime library a Python process should load: `$LGSS_ORT_LIB`
/// wins in `ort_lib::resolve`; else the one the caller found in its
/// `onnxruntime` package.
fn ort_lib_for(kind: RuntimeKind, found: Option<PathBuf>) -> Option<PathBuf> {
    let from_env = std::env::var_os(lgss::runtime::ort_lib::ENV_VAR).is_some_and(|v| !v.is_empty());
    (kind.feature() == "ort" && !from_env).then_some(found).flatten()
}

impl Model {
    /// The arrays as a movie this model can segment.
    fn movie(&self, arrays: MovieArrays<'_>) -> PyResult<Movie> {
        let config = self
            .backend
            .lock()
            .map_err(|_| PyRuntimeError::new_err("the model failed in another thread"))?
            .config()
            .clone();
        arrays.into_movie(&schema_for(&config))
    }

    fn probabilities_of(&self, movie: &Movie, batch: usize) -> anyhow::Result<Vec<f64>> {
        let mut backend = self
            .backend
            .lock()
            .map_err(|_| anyhow::anyhow!("the model failed in another thread"))?;
        movie_probabilities(backend.as_mut(), movie, batch)
    }
}

#[pymethods]
impl Model {
    #[new]
    #[pyo3(signature = (path, runtime = "tract", batch = 32, threads = None, ort_lib = None))]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        runtime: &str,
        batch: usize,
        threads: Option<usize>,
        ort_lib: Option<PathBuf>,
    ) -> PyResult<Model> {
        let kind = match runtime {
            "tract" => RuntimeKind::Tract,
            "ort-cpu" => RuntimeKind::OrtCpu,
            "ort-cuda" => RuntimeKind::OrtCuda,
            other => {
                return Err(PyValueError::new_err(format!(
                    "runtime {other:?}: this package has tract, ort-cpu and ort-cuda (tch needs the lgss CLI)"
                )))
            }
        };
        let opts = RuntimeOptions {
            onnx: Some(path.clone()),
            checkpoint: None,
            threads,
            ort_lib: ort_lib_for(kind, ort_lib),
            batch,
            tf32: false,
            per_window: false,
        };
        let opened = py.detach(|| -> anyhow::Result<_> {
            let stored = lgss::runtime::onnx_meta::stored_choices_of(&path)?;
            let backend = open(kind, &opts)?;
            let config_json = serde_json::to_string(backend.config())?;
            Ok((backend, stored, config_json))
        });
        let (backend, stored, config_json) = opened.map_err(runtime_error)?;
        let weights = backend.config().ratio;
        Ok(Model {
            backend: Mutex::new(backend),
            path,
            runtime: kind,
            stored,
            config_json,
            weights,
        })
    }

    /// The model's configuration as JSON.
    #[getter]
    fn config_json(&self) -> &str {
        &self.config_json
    }

    #[getter]
    fn runtime(&self) -> &'static str {
        self.runtime.name()
    }

    #[getter]
    fn path(&self) -> &Path {
        &self.path
    }

    /// The threshold `lgss train` chose on validation movies, if stored.
    #[getter]
    fn decision_threshold(&self) -> Option<f64> {
        self.stored.threshold
    }

    /// (γ, λ) `lgss train --val-movies` chose, if stored.
    #[getter]
    fn grouping_choice(&self) -> Option<(f64, f64)> {
        self.stored.grouping.map(|g| (g.coherence, g.length_weight))
    }

    /// The model's own boundary probabilities, float64 `[n - 1]`.
    #[pyo3(signature = (movie, batch = 32))]
    fn probabilities<'py>(
        &self,
        py: Python<'py>,
        movie: MovieArrays<'py>,
        batch: usize,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let movie = self.movie(movie)?;
        let prob = py
            .detach(|| self.probabilities_of(&movie, batch))
            .map_err(runtime_error)?;
        Ok(PyArray1::from_vec(py, prob))
    }

    /// The JSON `lgss segment` writes for this movie (its `file` is `file`).
    #[pyo3(signature = (movie, file, rule = None, threshold = None, fps = None, coherence = None, length_weight = None, batch = 32))]
    #[allow(clippy::too_many_arguments)]
    fn segment_json(
        &self,
        py: Python<'_>,
        movie: MovieArrays<'_>,
        file: PathBuf,
        rule: Option<&str>,
        threshold: Option<f64>,
        fps: Option<f64>,
        coherence: Option<f64>,
        length_weight: Option<f64>,
        batch: usize,
    ) -> PyResult<String> {
        let overrides = GroupingOverrides {
            coherence,
            length_weight,
            max_scene_shots: None,
        };
        let decision = decision_from_options(rule, threshold, fps, &overrides, &self.stored)
            .map_err(PyValueError::new_err)?;
        let movie = self.movie(movie)?;
        py.detach(|| -> anyhow::Result<String> {
            let prob = self.probabilities_of(&movie, batch)?;
            let seg = Segmentation::new(
                &movie,
                &file,
                self.runtime.name(),
                &prob,
                &self.weights,
                decision.threshold,
                decision.fps,
                decision.global,
            )?;
            Ok(serde_json::to_string(&seg)?)
        })
        .map_err(runtime_error)
    }
}

/// Makes a Rust panic inside lgss a Python exception (pyo3 raises
/// `PanicException`; `panic = "unwind"` in the release profile keeps the
/// interpreter alive). For the tests: a panic on purpose.
/// Extracts a video into the scene318 tree at `features` (as `lgss
/// extract`, reusing a movie done with the same settings) and returns the
/// path that stands for its movie.
#[pyfunction]
#[pyo3(signature = (path, features, place_model=None, place_runtime="tract", detector="hsv-luv"))]
fn extract_video(
    py: Python<'_>,
    path: PathBuf,
    features: PathBuf,
    place_model: Option<PathBuf>,
    place_runtime: &str,
    detector: &str,
) -> PyResult<PathBuf> {
    use clap::ValueEnum;
    use lgss::video::extract::{self, ExtractOptions, Outcome};
    use lgss::video::place::{PlaceModel, PlaceRuntime};
    use lgss::video::shots::{DetectorKind, DetectorSettings};
    let runtime = PlaceRuntime::from_str(place_runtime, true).map_err(|_| {
        PyValueError::new_err(format!(
            "place_runtime {place_runtime:?}: tract, ort-cpu or ort-cuda"
        ))
    })?;
    let kind = DetectorKind::from_str(detector, true)
        .map_err(|_| PyValueError::new_err(format!("detector {detector:?}: hsv-luv or content")))?;
    py.detach(|| -> anyhow::Result<PathBuf> {
        let mut model = match &place_model {
            Some(p) => Some(PlaceModel::open(p, runtime, 16, None)?),
            None => None,
        };
        let options = ExtractOptions {
            detector: DetectorSettings::new(kind),
            stats: false,
            keyframes: false,
        };
        let movies = extract::movies_from_videos(
            std::slice::from_ref(&path),
            &features,
            &options,
            model.as_mut().zip(place_model.clone()),
            &lgss::progress::Silent,
            &mut |_: &Outcome| {},
        )?;
        movies
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("{}: no movie extracted", path.display()))
    })
    .map_err(|e| InvalidMovie::new_err(format!("{e:#}")))
}

#[pyfunction]
fn _panic_for_test() {
    panic!("lgss: a deliberate panic, for the tests");
}

#[pymodule]
fn _lgss(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("InvalidMovie", m.py().get_type::<InvalidMovie>())?;
    m.add_function(wrap_pyfunction!(load_movie, m)?)?;
    m.add_function(wrap_pyfunction!(save_movie, m)?)?;
    m.add_function(wrap_pyfunction!(check_movie, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate_json, m)?)?;
    m.add_function(wrap_pyfunction!(extract_video, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_test, m)?)?;
    m.add_class::<Model>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
