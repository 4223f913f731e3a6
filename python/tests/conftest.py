"""Shared set-up for the Python package's tests.

The tests run in a venv that holds only the wheel, numpy and pytest. Truth
that needs torch (what `pickle.load` gives for a fixture) comes from the
project's own `.venv` (made by the README's set-up), and models and
reference outputs from the `lgss` CLI built beside it: `$LGSS_BIN`, else
`$CARGO_TARGET_DIR/release/lgss`, else `target/release/lgss`.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def lgss_bin() -> Path:
    if os.environ.get("LGSS_BIN"):
        return Path(os.environ["LGSS_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    return target / "release" / "lgss"


def project_python() -> Path:
    """The project's venv Python, which has torch (for truth)."""
    return ROOT / ".venv" / "bin" / "python"


def run(cmd, **kw) -> str:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p.stdout


@pytest.fixture(scope="session")
def lgss_cli():
    b = lgss_bin()
    if not b.exists():
        pytest.fail(f"{b}: the lgss CLI is not built (run scripts/setup, or set LGSS_BIN)")
    return b


@pytest.fixture(scope="session")
def trained(tmp_path_factory, lgss_cli):
    """Six small synthetic movies, the small LGSS trained on them for two
    epochs with two validation movies (so the model stores a threshold, a
    scene-length prior and a grouping choice), exported to ONNX:
    (data dir, model path)."""
    work = tmp_path_factory.mktemp("trained")
    data = work / "data"
    run([lgss_cli, "synth", "--out", data, "--movies", "8", "--seed", "12", "--size", "small", "--shots", "120..200"])
    run([lgss_cli, "train", "--data", data, "--config", ROOT / "models" / "lgss-small.toml", "--out", work / "run",
         "--epochs", "2", "--device", "cpu", "--val-movies", "2"])
    model = work / "model.onnx"
    run([lgss_cli, "export", "--onnx", model, "--checkpoint", work / "run" / "best.safetensors"])
    return data, model


@pytest.fixture(scope="session")
def ort_lib():
    """The project venv's ONNX Runtime library (the test venv has no onnxruntime)."""
    libs = sorted((ROOT / ".venv" / "lib").glob("python3*/site-packages/onnxruntime/capi/libonnxruntime.so*"))
    if not libs:
        pytest.fail("no ONNX Runtime in the project's .venv: run scripts/setup")
    return str(libs[-1])


sys.path.insert(0, str(Path(__file__).parent))
