"""lgss: movie scene segmentation (LGSS, Rao et al., CVPR 2020) from Python.

- ``load_movie(path)`` reads a MovieScenes pickle (the Eluvio challenge's
  ``<imdb_id>.pkl``) with lgss's own pickle reader, which never executes
  anything a file carries (``pickle.load`` runs any code in it), or a
  movie of a MovieNet scene318 tree (``ROOT/label318/<id>.txt``).
- ``Model(path, runtime="tract")`` opens a model exported by
  ``lgss export --onnx``; ``.probabilities(movie)`` gives the model's
  boundary probabilities and ``.segment(movie)`` the scenes, exactly as
  ``lgss segment`` writes them (global grouping by default, ``rule="local"``
  for the threshold rule).
- ``evaluate(...)`` scores predictions as ``evaluate_sceneseg.py`` does.

Heavy work runs with the GIL released, so threads with their own ``Model``
run in parallel.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _lgss
from ._lgss import InvalidMovie

__all__ = [
    "InvalidMovie",
    "Model",
    "Movie",
    "Scenes",
    "evaluate",
    "load_movie",
    "load_video",
    "save_movie",
]
__version__ = _lgss.__version__

MODALITIES = ("place", "cast", "action", "audio")
# The oldest ONNX Runtime whose C API the crate's ort binding was built for.
MIN_ONNXRUNTIME = (1, 30)


@dataclass
class Movie:
    """One movie's arrays: features ``float32 [n_shots, dim]``, boundary
    ground truth ``bool [n_shots - 1]``, the file's own prediction
    ``float64 [n_shots - 1]`` and ``shot_end_frame`` ``int64 [n_shots]``;
    absent fields are None. ``boundary_scored`` (``bool [n_shots - 1]``,
    scene318 movies only) says which boundaries SceneSeg's rule keeps for
    training and scoring."""

    imdb_id: str
    shot_end_frame: np.ndarray
    place: Optional[np.ndarray] = None
    cast: Optional[np.ndarray] = None
    action: Optional[np.ndarray] = None
    audio: Optional[np.ndarray] = None
    boundary_ground_truth: Optional[np.ndarray] = None
    boundary_prediction: Optional[np.ndarray] = None
    boundary_scored: Optional[np.ndarray] = None

    @property
    def n_shots(self) -> int:
        return int(len(self.shot_end_frame))


MovieLike = Union[Movie, Mapping[str, Any]]


def load_movie(path: Union[str, os.PathLike]) -> Movie:
    """Reads a MovieScenes pickle (torch tensors or numpy arrays), or one
    movie of a MovieNet scene318 tree given as ``ROOT/label318/<id>.txt``,
    without executing anything in it. Raises InvalidMovie (a ValueError)
    with the reader's message for a file that is not a valid movie."""
    d = _lgss.load_movie(os.fspath(path))
    return Movie(
        imdb_id=d["imdb_id"],
        shot_end_frame=d["shot_end_frame"],
        place=d["place"],
        cast=d["cast"],
        action=d["action"],
        audio=d["audio"],
        boundary_ground_truth=d["boundary_ground_truth"],
        boundary_prediction=d["boundary_prediction"],
        boundary_scored=d["boundary_scored"],
    )


def load_video(
    path: Union[str, os.PathLike],
    features: Optional[Union[str, os.PathLike]] = None,
    place_model: Optional[Union[str, os.PathLike]] = None,
    place_runtime: str = "tract",
    detector: str = "hsv-luv",
) -> Movie:
    """Reads a video file as a movie, as ``lgss extract`` does: FFmpeg
    decodes it, shots are cut (``detector``: SceneSeg's ``"hsv-luv"`` or
    PySceneDetect's ``"content"``), each shot's middle keyframe goes through
    ``place_model`` (an ONNX image network, [N,3,224,224] -> [N,D]) and its
    audio becomes SceneSeg's STFT image. The features are kept in the
    scene318 tree ``features`` (reused when done with the same settings), or
    in a temporary folder. The movie has no ground truth; ``Model.segment``
    takes it. Raises InvalidMovie naming the file for a video FFmpeg cannot
    read or that has fewer than 2 shots."""
    import tempfile

    if features is not None:
        return load_movie(_lgss.extract_video(os.fspath(path), os.fspath(features),
                                              None if place_model is None else os.fspath(place_model),
                                              place_runtime, detector))
    with tempfile.TemporaryDirectory(prefix="lgss-features-") as tmp:
        return load_video(path, tmp, place_model, place_runtime, detector)


# Keys of the challenge's files, as `pickle.load` gives them.
_FILE_KEYS = {
    "scene_transition_boundary_ground_truth": "boundary_ground_truth",
    "scene_transition_boundary_prediction": "boundary_prediction",
}


def _get(movie: MovieLike, key: str) -> Any:
    if isinstance(movie, Movie):
        return getattr(movie, key)
    if key in movie:
        return movie[key]
    for file_key, ours in _FILE_KEYS.items():
        if ours == key and file_key in movie:
            return movie[file_key]
    return None


def _array(value: Any, dtype: Any, ndim: int, name: str) -> Optional[np.ndarray]:
    """`value` (numpy, a torch tensor, a list) as a C-contiguous array."""
    if value is None:
        return None
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor
        value = value.detach().cpu().numpy()
    a = np.ascontiguousarray(np.asarray(value), dtype=dtype)
    if a.ndim != ndim:
        raise InvalidMovie(f"{name}: {a.ndim} dimensions, want {ndim}")
    return a


def _arrays(movie: MovieLike) -> Dict[str, Any]:
    """The dict the Rust side takes (every key, absent fields None), from a
    Movie or a dict of arrays (our names or the challenge file's keys)."""
    ends = _array(_get(movie, "shot_end_frame"), np.int64, 1, "shot_end_frame")
    if ends is None:
        raise InvalidMovie("shot_end_frame is missing")
    out: Dict[str, Any] = {m: _array(_get(movie, m), np.float32, 2, m) for m in MODALITIES}
    out["shot_end_frame"] = ends
    out["boundary_ground_truth"] = _array(_get(movie, "boundary_ground_truth"), np.bool_, 1, "boundary_ground_truth")
    out["boundary_prediction"] = _array(_get(movie, "boundary_prediction"), np.float64, 1, "boundary_prediction")
    imdb_id = _get(movie, "imdb_id")
    out["imdb_id"] = str(imdb_id) if imdb_id is not None else ""
    return out


def save_movie(movie: MovieLike, path: Union[str, os.PathLike], form: str = "torch") -> None:
    """Writes a movie with the challenge's keys, atomically (a temp file
    beside `path`, then a rename), after the checks the reader makes.

    `form="torch"` writes torch tensors, as `lgss` writes files
    (`pickle.load` needs torch to read them); `form="numpy"` writes numpy
    arrays, which `pickle.load` reads with numpy alone."""
    a = _arrays(movie)
    if form == "torch":
        _lgss.save_movie(os.fspath(path), a)
    elif form == "numpy":
        _lgss.check_movie(a)
        _write_numpy_pickle(a, Path(path))
    else:
        raise ValueError(f"form must be 'torch' or 'numpy', not {form!r}")


def _write_numpy_pickle(arrays: Dict[str, Any], path: Path) -> None:
    """`arrays` (as `_arrays` makes them) under the challenge file's keys."""
    file_keys = {ours: theirs for theirs, ours in _FILE_KEYS.items()}
    d = {file_keys.get(k, k): v for k, v in arrays.items() if v is not None}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(d, fh, protocol=4)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _onnxruntime_library() -> Optional[str]:
    """libonnxruntime from the `onnxruntime` package importable here, or
    None; an error for a version older than lgss's binding needs."""
    from importlib.metadata import PackageNotFoundError, version

    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or spec.origin is None:
        return None
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            found = version(dist)
        except PackageNotFoundError:
            continue
        parts = tuple(int(p) for p in found.split(".")[:2] if p.isdigit())
        if parts < MIN_ONNXRUNTIME:
            raise RuntimeError(
                f"onnxruntime {found} is older than lgss needs "
                f"({'.'.join(map(str, MIN_ONNXRUNTIME))} or newer): pip install -U onnxruntime"
            )
        break
    libs = sorted((Path(spec.origin).parent / "capi").glob("libonnxruntime.so*"))
    return str(libs[-1]) if libs else None


@dataclass
class Scenes:
    """A movie's segmentation, as `lgss segment` writes it in JSON:
    `scenes` (dicts: index, first_shot, last_shot, first_frame, last_frame,
    start, end, confidence), the scored `boundary_probabilities`, the
    model's own `model_probabilities`, the `rule` that decided (`global` or
    `local`) and global grouping's settings (`grouping`, None when local)."""

    imdb_id: str
    runtime: str
    n_shots: int
    threshold: float
    fps: float
    rule: str
    scenes: List[Dict[str, Any]]
    boundary_probabilities: np.ndarray
    model_probabilities: np.ndarray
    grouping: Optional[Dict[str, Any]] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.scenes)

    def to_json(self) -> Dict[str, Any]:
        """The dict `lgss segment --format json` writes (its `file` is the
        path given to `segment`, or "")."""
        return dict(self.raw)


class Model:
    """An exported LGSS model (``lgss export --onnx``) in one runtime:
    ``"tract"`` (pure Rust, always there), ``"ort-cpu"`` or ``"ort-cuda"``
    (ONNX Runtime: ``$LGSS_ORT_LIB``, else the ``onnxruntime`` package
    importable in this Python)."""

    def __init__(
        self,
        path: Union[str, os.PathLike],
        runtime: str = "tract",
        batch: int = 32,
        threads: Optional[int] = None,
    ) -> None:
        ort_lib = None
        if runtime.startswith("ort") and not os.environ.get("LGSS_ORT_LIB"):
            ort_lib = _onnxruntime_library()
            if ort_lib is None:
                raise RuntimeError(
                    f"runtime {runtime!r} needs ONNX Runtime: pip install onnxruntime "
                    "(onnxruntime-gpu for ort-cuda), or set LGSS_ORT_LIB to a libonnxruntime.so"
                )
        self._model = _lgss.Model(os.fspath(path), runtime, batch, threads, ort_lib)
        self.batch = batch

    @property
    def runtime(self) -> str:
        return self._model.runtime

    @property
    def path(self) -> str:
        return str(self._model.path)

    @property
    def config(self) -> Dict[str, Any]:
        """The model's configuration (the `[model]` table of its TOML)."""
        return json.loads(self._model.config_json)

    @property
    def decision_threshold(self) -> Optional[float]:
        """The threshold `lgss train` chose on validation movies (None: 0.5 is used)."""
        return self._model.decision_threshold

    @property
    def grouping_choice(self) -> Optional[Tuple[float, float]]:
        """(γ, λ) `lgss train --val-movies` chose for global grouping, if stored."""
        return self._model.grouping_choice

    def probabilities(self, movie: MovieLike) -> np.ndarray:
        """The model's own boundary probabilities, float64 ``[n_shots - 1]``
        (``model_probabilities`` in ``lgss segment``'s JSON)."""
        return self._model.probabilities(_arrays(movie), self.batch)

    def segment(
        self,
        movie: MovieLike,
        rule: Optional[str] = None,
        threshold: Optional[float] = None,
        fps: Optional[float] = None,
        coherence: Optional[float] = None,
        length_weight: Optional[float] = None,
        file: Union[str, os.PathLike] = "",
    ) -> Scenes:
        """The movie's scenes as ``lgss segment`` decides them: ``rule``
        ``"global"`` (the default: global grouping with the model's stored
        threshold, scene-length prior, γ and λ) or ``"local"`` (the
        threshold rule); ``threshold``, ``fps`` (24), ``coherence`` and
        ``length_weight`` as the CLI's flags."""
        text = self._model.segment_json(
            _arrays(movie),
            os.fspath(file),
            rule,
            threshold,
            fps,
            coherence,
            length_weight,
            self.batch,
        )
        raw = json.loads(text)
        probs = np.asarray(raw["boundary_probabilities"], dtype=np.float64)
        own = raw.get("model_probabilities")
        return Scenes(
            imdb_id=raw["imdb_id"],
            runtime=raw["runtime"],
            n_shots=raw["n_shots"],
            threshold=raw["threshold"],
            fps=raw["fps"],
            rule=raw["rule"],
            scenes=raw["scenes"],
            boundary_probabilities=probs,
            model_probabilities=probs if own is None else np.asarray(own, dtype=np.float64),
            grouping=raw.get("global"),
            raw=raw,
        )


def evaluate(
    ground_truth: Mapping[str, Any],
    predictions: Mapping[str, Any],
    shot_end_frames: Mapping[str, Any],
) -> Dict[str, Any]:
    """The challenge's metrics (``evaluate_sceneseg.py``): dicts keyed by
    imdb_id of boundary ground truth, predicted probabilities and shot end
    frames in, the script's dict out (AP, mAP, Miou, Precision, Recall, F1
    and their per-movie dicts)."""
    ids = sorted(ground_truth)
    missing = [i for i in ids if i not in predictions or i not in shot_end_frames]
    if missing:
        raise ValueError(f"no prediction or shot_end_frame for {', '.join(missing)}")
    text = _lgss.evaluate_json(
        ids,
        [_array(ground_truth[i], np.bool_, 1, f"{i} ground truth") for i in ids],
        [_array(predictions[i], np.float64, 1, f"{i} prediction") for i in ids],
        [_array(shot_end_frames[i], np.int64, 1, f"{i} shot_end_frame") for i in ids],
    )
    return json.loads(text)
