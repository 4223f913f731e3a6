"""Type stubs of the native module (Rust, PyO3). Use the `lgss` package's
wrappers (`load_movie`, `Model`, `evaluate`) rather than these directly."""

from os import PathLike
from typing import Any, Dict, List, Optional, Tuple, TypedDict, Union

import numpy as np
import numpy.typing as npt

__version__: str

class InvalidMovie(ValueError):
    """A file or arrays that are not a valid MovieScenes movie."""

def load_movie(path: Union[str, PathLike[str]]) -> Dict[str, Any]: ...
def extract_video(
    path: Union[str, PathLike[str]],
    features: Union[str, PathLike[str]],
    place_model: Optional[Union[str, PathLike[str]]] = None,
    place_runtime: str = "tract",
    detector: str = "hsv-luv",
) -> str: ...

class MovieArrays(TypedDict):
    """A movie as `lgss._arrays` passes it: every key, absent fields None,
    C-contiguous arrays of these dtypes."""

    imdb_id: str
    place: Optional[npt.NDArray[np.float32]]
    cast: Optional[npt.NDArray[np.float32]]
    action: Optional[npt.NDArray[np.float32]]
    audio: Optional[npt.NDArray[np.float32]]
    boundary_ground_truth: Optional[npt.NDArray[np.bool_]]
    boundary_prediction: Optional[npt.NDArray[np.float64]]
    shot_end_frame: npt.NDArray[np.int64]

def save_movie(path: Union[str, PathLike[str]], movie: MovieArrays) -> None: ...
def check_movie(movie: MovieArrays) -> None: ...
def evaluate_json(
    imdb_ids: List[str],
    ground_truth: List[npt.NDArray[np.bool_]],
    predictions: List[npt.NDArray[np.float64]],
    shot_end_frames: List[npt.NDArray[np.int64]],
) -> str: ...
def _panic_for_test() -> None: ...

class Model:
    def __init__(
        self,
        path: Union[str, PathLike[str]],
        runtime: str = "tract",
        batch: int = 32,
        threads: Optional[int] = None,
        ort_lib: Optional[str] = None,
    ) -> None: ...
    @property
    def config_json(self) -> str: ...
    @property
    def runtime(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def decision_threshold(self) -> Optional[float]: ...
    @property
    def grouping_choice(self) -> Optional[Tuple[float, float]]: ...
    def probabilities(self, movie: MovieArrays, batch: int = 32) -> npt.NDArray[np.float64]: ...
    def segment_json(
        self,
        movie: MovieArrays,
        file: Union[str, PathLike[str]],
        rule: Optional[str] = None,
        threshold: Optional[float] = None,
        fps: Optional[float] = None,
        coherence: Optional[float] = None,
        length_weight: Optional[float] = None,
        batch: int = 32,
    ) -> str: ...
