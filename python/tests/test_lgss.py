"""The Python package against independent truth: Python's own pickle.load
(with torch, in the project's venv), the lgss CLI's outputs for the same
model and runtime, and the challenge script's metric values."""

import json
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import lgss
from conftest import FIXTURES, ROOT, project_python, run

TRUTH = r"""
import pickle, sys, numpy as np, torch
out = {}
for i, path in enumerate(sys.argv[2:]):
    with open(path, 'rb') as fh:
        d = pickle.load(fh)
    for k, v in d.items():
        if isinstance(v, torch.Tensor):
            v = v.numpy()
        out[f'{i}/{k}'] = np.asarray(v)
np.savez(sys.argv[1], **out)
"""

FILE_KEYS = {
    "place": "place",
    "cast": "cast",
    "action": "action",
    "audio": "audio",
    "scene_transition_boundary_ground_truth": "boundary_ground_truth",
    "scene_transition_boundary_prediction": "boundary_prediction",
    "shot_end_frame": "shot_end_frame",
    "imdb_id": "imdb_id",
}
# Torch tensors (float32/float64/float16 features, bool/uint8 truth, as the
# fixtures' writers chose) and numpy arrays, all written by real Python.
GOOD = sorted((FIXTURES / "movies").glob("*.pkl")) + sorted((FIXTURES / "numpy").glob("*.pkl"))


def test_load_movie_equals_pickle_load(tmp_path):
    truth_file = tmp_path / "truth.npz"
    run([project_python(), "-c", TRUTH, truth_file, *GOOD])
    truth = np.load(truth_file)
    assert len(GOOD) >= 4
    for i, path in enumerate(GOOD):
        movie = lgss.load_movie(path)
        keys = {k.split("/", 1)[1] for k in truth.files if k.startswith(f"{i}/")}
        for file_key, ours in FILE_KEYS.items():
            got = getattr(movie, ours)
            if file_key not in keys:
                assert got is None, f"{path.name}: {ours} should be absent"
                continue
            want = truth[f"{i}/{file_key}"]
            if ours == "imdb_id":
                assert got == str(want), path.name
                continue
            # Features as the reader makes them (float32), the prediction as
            # float64, ground truth bool, end frames int64: the same values.
            assert got.dtype == {"boundary_ground_truth": np.bool_, "boundary_prediction": np.float64,
                                 "shot_end_frame": np.int64}.get(ours, np.float32), (path.name, ours)
            assert got.shape == want.shape, (path.name, ours)
            np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=f"{path.name} {ours}")


# Well-formed files whose problem is relative to a model: a movie without
# place features, and one whose place is 48 wide (the small model's is 64).
FOR_A_MODEL = {"missing_place.pkl": "place", "place_dim.pkl": "48"}


def test_a_scene318_movie_loads_as_numpy_and_pickle_read_its_files():
    root = FIXTURES / "scene318"
    for label_file in sorted((root / "label318").glob("*.txt")):
        imdb_id = label_file.stem
        m = lgss.load_movie(label_file)
        assert m.imdb_id == imdb_id
        shots = [line.split() for line in (root / "shot_movie318" / f"{imdb_id}.txt").read_text().splitlines()]
        assert m.shot_end_frame.tolist() == [int(s[1]) for s in shots]
        n = len(shots)
        labels = dict(line.split() for line in label_file.read_text().splitlines())
        truth = [labels.get(f"{s:04d}", "0") in ("1", "-1") for s in range(n - 1)]
        assert m.boundary_ground_truth.tolist() == truth
        assert m.boundary_scored is not None and m.boundary_scored.dtype == bool
        for name, folder in (("place", "place_feat"), ("audio", "aud_feat")):
            for s in range(n):
                f = root / folder / imdb_id / f"shot_{s:04d}.npy"
                want = np.load(f).astype(np.float32) if f.exists() else np.zeros(m.__dict__[name].shape[1], np.float32)
                assert np.array_equal(m.__dict__[name][s], want), (imdb_id, name, s)
        with open(root / "cast_feat" / f"{imdb_id}.pkl", "rb") as fh:
            cast = pickle.load(fh)
        with open(root / "act_feat" / f"{imdb_id}.pkl", "rb") as fh:
            act = pickle.load(fh)
        for s in range(n):
            faces = cast.get(f"{s:04d}")
            want = np.mean(faces, axis=0) if faces is not None and len(faces) else np.zeros(m.cast.shape[1], np.float32)
            assert np.array_equal(m.cast[s], want), (imdb_id, "cast", s)
            a = act.get(f"{s:04d}")
            assert np.array_equal(m.action[s], a if a is not None else np.zeros_like(m.action[s])), (imdb_id, s)


def test_malformed_files_are_refused_with_the_readers_message(trained):
    cases = json.loads((FIXTURES / "bad" / "README.json").read_text())
    refused = 0
    for name in cases:
        path = FIXTURES / "bad" / name
        if name in FOR_A_MODEL:
            continue
        with pytest.raises(lgss.InvalidMovie) as e:
            lgss.load_movie(path)
        assert isinstance(e.value, ValueError)
        assert name in str(e.value), str(e.value)
        refused += 1
    assert refused == len(cases) - len(FOR_A_MODEL)
    model = lgss.Model(trained[1])
    for name, needle in FOR_A_MODEL.items():
        movie = lgss.load_movie(FIXTURES / "bad" / name)
        with pytest.raises(lgss.InvalidMovie) as e:
            model.probabilities(movie)
        assert needle in str(e.value), str(e.value)


def test_special_files_are_refused_at_once_by_name(tmp_path):
    """A FIFO (which would block a reader forever), links to /dev/zero and
    /dev/urandom (which never end), and a directory, in a movie's place or in
    a scene318 tree: InvalidMovie naming the path and what stands there."""
    import shutil

    good = GOOD[0]
    fifo = tmp_path / "tt0000001.pkl"
    os.mkfifo(fifo)
    zero = tmp_path / "tt0000002.pkl"
    zero.symlink_to("/dev/zero")
    folder = tmp_path / "tt0000003.pkl"
    folder.mkdir()
    cases = {fifo: "a named pipe (FIFO)", zero: "a symbolic link to a character device (/dev/zero)", folder: "a directory"}
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "scene318", tree)
    npy = tree / "place_feat" / "tt0100001" / "shot_0002.npy"
    npy.unlink()
    npy.symlink_to("/dev/urandom")
    cases[npy] = "a symbolic link to a character device (/dev/urandom)"
    for path, what in cases.items():
        target = tree / "label318" / "tt0100001.txt" if path == npy else path
        with pytest.raises(lgss.InvalidMovie) as e:
            lgss.load_movie(target)
        assert str(path) in str(e.value) and what in str(e.value), str(e.value)
        assert "not a regular file" in str(e.value)
    link = tmp_path / "linked.pkl"
    link.symlink_to(good)
    assert lgss.load_movie(link).imdb_id == lgss.load_movie(good).imdb_id


def test_a_video_loads_as_the_cli_extracts_it(tmp_path, lgss_cli):
    """load_video gives the movie `lgss extract` writes for the same video
    (shots, audio images), and names a file that is not a video."""
    video = tmp_path / "film.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i", "testsrc2=s=192x108:r=25:d=2",
                    "-f", "lavfi", "-i", "color=c=red:s=192x108:r=25:d=2", "-f", "lavfi", "-i", "sine=d=4",
                    "-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]", "-map", "2:a",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(video)], check=True)
    movie = lgss.load_video(video)
    assert movie.imdb_id == "film" and movie.n_shots == 2
    assert movie.boundary_ground_truth is None and movie.place is None
    assert movie.audio.shape == (2, 257 * 90)
    root = tmp_path / "tree"
    run([lgss_cli, "extract", video, "--out", root])
    cli = lgss.load_movie(root / "label318" / "film.txt")
    assert movie.shot_end_frame.tolist() == cli.shot_end_frame.tolist() == [49, 99]
    assert np.array_equal(movie.audio, cli.audio)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(lgss.InvalidMovie) as e:
        lgss.load_video(text)
    assert str(text) in str(e.value) and "not a video FFmpeg can read" in str(e.value)


def test_a_pickle_that_would_run_a_command_runs_nothing():
    canary = Path("/tmp/lgss-pwned")  # what evil_global.pkl's payload would create
    if canary.exists():
        canary.unlink()
    with pytest.raises(lgss.InvalidMovie) as e:
        lgss.load_movie(FIXTURES / "bad" / "evil_global.pkl")
    assert "system" in str(e.value)
    assert not canary.exists()


def test_save_movie_round_trips_through_the_reader(tmp_path):
    movie = lgss.load_movie(GOOD[0])
    out = tmp_path / "copy.pkl"
    lgss.save_movie(movie, out)
    again = lgss.load_movie(out)
    for key in FILE_KEYS.values():
        a, b = getattr(movie, key), getattr(again, key)
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b
    # Python reads it back with pickle.load too (torch's form).
    got = run([project_python(), "-c", "import pickle,sys,torch; d=pickle.load(open(sys.argv[1],'rb')); "
               "print(d['place'].shape[0], d['imdb_id'])", out])
    assert got.split() == [str(movie.n_shots), movie.imdb_id]
    with pytest.raises(lgss.InvalidMovie):
        lgss.save_movie({"imdb_id": "tt1", "place": movie.place, "shot_end_frame": movie.shot_end_frame[:-1]},
                        tmp_path / "bad.pkl")
    assert not (tmp_path / "bad.pkl").exists()


def test_save_movie_numpy_form_is_read_by_pickle_without_torch(tmp_path):
    movie = lgss.load_movie(GOOD[0])
    out = tmp_path / "numpy.pkl"
    lgss.save_movie(movie, out, form="numpy")
    # This venv has numpy and no torch: pickle.load reads the file as is.
    with open(out, "rb") as fh:
        d = pickle.load(fh)
    for file_key, key in FILE_KEYS.items():
        a, b = getattr(movie, key), d.get(file_key)
        if isinstance(a, np.ndarray):
            assert isinstance(b, np.ndarray), file_key
            np.testing.assert_array_equal(a, b)
        elif a is None:
            assert b is None, file_key
        else:
            assert a == b
    again = lgss.load_movie(out)
    np.testing.assert_array_equal(again.place, movie.place)
    with pytest.raises(lgss.InvalidMovie):
        lgss.save_movie({"imdb_id": "tt1", "place": movie.place, "shot_end_frame": movie.shot_end_frame[:-1]},
                        tmp_path / "bad.pkl", form="numpy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["numpy.pkl"]
    with pytest.raises(ValueError):
        lgss.save_movie(movie, tmp_path / "x.pkl", form="hdf5")


def cli_segment(lgss_cli, model, movie, runtime, *flags, env=None):
    out = run([lgss_cli, "segment", "--runtime", runtime, "--model", model, *flags, movie], env=env)
    return json.loads(out)


@pytest.mark.parametrize("runtime", ["tract", "ort-cpu"])
def test_model_equals_lgss_segment_bit_for_bit(trained, lgss_cli, ort_lib, runtime, monkeypatch):
    data, model_path = trained
    monkeypatch.setenv("LGSS_ORT_LIB", ort_lib)
    model = lgss.Model(model_path, runtime=runtime)
    assert model.runtime == runtime
    assert model.decision_threshold is not None and 0 < model.decision_threshold < 1
    assert model.grouping_choice is not None
    assert model.config["shot_num"] > 0
    env = dict(os.environ, LGSS_ORT_LIB=ort_lib)
    for path in sorted(data.glob("tt*.pkl"))[-2:]:
        movie = lgss.load_movie(path)
        want = cli_segment(lgss_cli, model_path, path, runtime, env=env)
        prob = model.probabilities(movie)
        assert prob.dtype == np.float64
        assert prob.tolist() == want["model_probabilities"], path.name
        got = model.segment(movie, file=path)
        assert got.rule == "global"
        assert got.to_json() == want, path.name
        # The threshold rule, other settings, and a dict of arrays as input.
        local = cli_segment(lgss_cli, model_path, path, runtime, "--local", "--threshold", "0.3", "--fps", "25", env=env)
        arrays = {"scene_transition_boundary_ground_truth": movie.boundary_ground_truth, "imdb_id": movie.imdb_id,
                  "shot_end_frame": movie.shot_end_frame,
                  **{m: getattr(movie, m) for m in ("place", "cast", "action", "audio")}}
        got = model.segment(arrays, rule="local", threshold=0.3, fps=25, file=path)
        assert got.rule == "local" and got.grouping is None
        assert got.to_json() == local, path.name
        tuned = cli_segment(lgss_cli, model_path, path, runtime, "--coherence", "0.3", "--length-weight", "0", env=env)
        assert model.segment(movie, coherence=0.3, length_weight=0, file=path).to_json() == tuned


def test_bad_input_raises_and_the_interpreter_lives(trained):
    data, model_path = trained
    model = lgss.Model(model_path)
    good = lgss.load_movie(sorted(data.glob("tt*.pkl"))[0])
    with pytest.raises(lgss.InvalidMovie):
        model.probabilities(lgss.load_movie(GOOD[0]))  # full-width features for a small model
    with pytest.raises(ValueError):
        model.segment(good, rule="sideways")
    with pytest.raises(ValueError):
        model.segment(good, rule="local", coherence=1.0)
    with pytest.raises(RuntimeError):
        lgss.Model(model_path.parent / "missing.onnx")
    with pytest.raises(ValueError):
        lgss.Model(model_path, runtime="tch")
    # A Rust panic is a Python exception, not an abort.
    with pytest.raises(BaseException) as e:
        lgss._lgss._panic_for_test()
    assert "deliberate panic" in str(e.value)
    assert model.probabilities(good).shape == (good.n_shots - 1,)


def test_evaluate_equals_the_challenge_script():
    cases = json.loads((FIXTURES / "metric_cases.json").read_text())["cases"]
    assert len(cases) >= 8
    for case in cases:
        movies = case["movies"]
        got = lgss.evaluate(
            {k: m["ground_truth"] for k, m in movies.items()},
            {k: m["prediction"] for k, m in movies.items()},
            {k: m["shot_end_frame"] for k, m in movies.items()},
        )
        for key in ["AP", "mAP", "Miou", "Precision", "Recall", "F1"]:
            assert abs(got[key] - case[key]) <= 1e-9, (case["name"], key, got[key], case[key])
        for key in ["AP_dict", "miou_dict"]:
            want, have = case[key], got[key]
            assert sorted(have) == sorted(want), (case["name"], key)
            for movie, v in want.items():
                assert abs(have[movie] - v) <= 1e-9, (case["name"], key, movie)


def long_movie(shots=3000):
    """A movie of the small model's widths, long enough that a call takes a while."""
    rng = np.random.default_rng(5)
    dims = {"place": 64, "cast": 32, "action": 32, "audio": 32}
    d = {m: rng.standard_normal((shots, w)).astype(np.float32) for m, w in dims.items()}
    d["shot_end_frame"] = np.arange(shots, dtype=np.int64) * 40 + 39
    d["imdb_id"] = "tt9999999"
    return d


def test_the_gil_is_released_while_a_model_runs(trained):
    _, model_path = trained
    movie = long_movie()
    model = lgss.Model(model_path)
    model.probabilities(movie)  # warm-up
    count = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.05)
        c0, t0 = count[0], time.perf_counter()
        time.sleep(0.3)
        idle_rate = (count[0] - c0) / (time.perf_counter() - t0)
        c0, t0 = count[0], time.perf_counter()
        while time.perf_counter() - t0 < 0.3:
            model.probabilities(movie)
        busy_rate = (count[0] - c0) / (time.perf_counter() - t0)
    finally:
        stop.set()
        t.join()
    # Holding the GIL, the spinning thread would run only between calls
    # (a few per cent); released, it keeps a large share of its idle rate.
    assert busy_rate > 0.25 * idle_rate, (busy_rate, idle_rate)


def test_two_threads_with_their_own_models_overlap(trained):
    _, model_path = trained
    movie = long_movie()
    models = [lgss.Model(model_path, threads=1) for _ in range(2)]
    want = models[0].probabilities(movie)
    spans, results = [None, None], [None, None]
    barrier = threading.Barrier(2)

    def work(i):
        barrier.wait()
        inside = []
        t0 = time.perf_counter()
        for _ in range(3):
            results[i] = models[i].probabilities(movie)
            inside.append(time.perf_counter())
        spans[i] = (t0, inside[-1])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, want)
    (a0, a1), (b0, b1) = spans
    assert a0 < b1 and b0 < a1, spans


def test_the_quickstart_runs(trained):
    data, model_path = trained
    movie = sorted(data.glob("tt*.pkl"))[-1]
    out = run([sys.executable, ROOT / "examples" / "python_quickstart.py", model_path, movie])
    assert "scenes by the global rule" in out, out
    assert "global grouping: AP" in out, out
