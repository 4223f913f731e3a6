"""The Python package's speed beside plain Python, in one run on one machine:
`lgss.load_movie` against `pickle.load` (with torch) on a full-width
2,400-shot movie, and `lgss.Model.probabilities` (tract and ort-cpu) against
Python onnxruntime running the same ONNX file over the same windows
(benches/infer_reference.py). Ratios > 1: lgss is faster.

Needs the package in the project's venv (`PYTHON=.venv/bin/python
scripts/wheel`) and the CLI (for the movie and a paper-config model):

    .venv/bin/python benches/python_api.py [--lgss target/release/lgss] [--shots 2400]
"""

import argparse
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{cmd} failed:\n{p.stderr[-2000:]}")
    return p.stdout


def best_of(n, f):
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    ap.add_argument("--lgss", default=os.path.join(target, "release", "lgss"))
    ap.add_argument("--shots", type=int, default=2400)
    a = ap.parse_args()
    import lgss
    import torch  # noqa: F401  (pickle.load needs it for the torch form)

    with tempfile.TemporaryDirectory(prefix="lgss-bench-python-") as work:
        run([a.lgss, "synth", "--out", f"{work}/movie", "--movies", "1", "--seed", "1",
             "--shots", f"{a.shots}..{a.shots}"])
        movie_path = f"{work}/movie/tt0000001.pkl"
        # A paper-config model (its weights barely matter for speed).
        run([a.lgss, "synth", "--out", f"{work}/train", "--movies", "3", "--seed", "2", "--shots", "100..150"])
        run([a.lgss, "train", "--data", f"{work}/train", "--config", f"{ROOT}/models/lgss.toml", "--epochs", "1",
             "--device", "cpu", "--out", f"{work}/run"])
        model_path = f"{work}/model.onnx"
        ckpt = f"{work}/run/best.safetensors"
        run([a.lgss, "export", "--onnx", model_path, "--checkpoint", ckpt])

        cpu = platform.processor() or platform.machine()
        with open("/proc/cpuinfo") as fh:
            cpu = next((l.split(":", 1)[1].strip() for l in fh if l.startswith("model name")), cpu)
        print(f"{a.shots}-shot full-width movie ({os.path.getsize(movie_path) / 1e6:.0f} MB), "
              f"{cpu}, {os.cpu_count()} cores, best of 3")
        t_pickle = best_of(3, lambda: pickle.load(open(movie_path, "rb")))
        t_lgss = best_of(3, lambda: lgss.load_movie(movie_path))
        print(f"  read:  pickle.load {t_pickle * 1e3:7.1f} ms   lgss.load_movie {t_lgss * 1e3:7.1f} ms   "
              f"ratio {t_pickle / t_lgss:5.2f}x")

        movie = lgss.load_movie(movie_path)
        model = lgss.Model(model_path)
        cfg = model.config
        windows = movie.n_shots - 1
        reference = float(run([sys.executable, f"{ROOT}/benches/infer_reference.py", "ort", model_path, ckpt,
                               movie_path, cfg["shot_num"], cfg["seq_len"], cfg["sim_channel"],
                               cfg["lstm_hidden_size"], 32]))
        print(f"  Python onnxruntime on the same file: {reference:8.1f} windows/s")
        for runtime in ["tract", "ort-cpu"]:
            m = lgss.Model(model_path, runtime=runtime)
            m.probabilities(movie)  # warm-up
            t = best_of(3, lambda: m.probabilities(movie))
            rate = windows / t
            print(f"  lgss.Model({runtime!r}).probabilities: {rate:8.1f} windows/s   ratio {rate / reference:5.2f}x")


if __name__ == "__main__":
    main()
