"""lgss's container image and static binary, run for real with podman
(`scripts/test-image` builds them and calls this).

- The static binary: `ldd` says it is statically linked (a static PIE),
  it has no interpreter and needs no library, and its `segment` output
  equals the host build's byte for byte.
- The lite image (FROM scratch): its labels name the version and features;
  `segment --shard I/2` over a mounted folder, with a read-only root
  filesystem, writes what the host binary writes for the same shard (bar
  the input path); `serve` answers /readyz and a POSTed movie with
  `lgss segment`'s JSON (bar `file`), and `podman stop` (SIGTERM) ends it
  with exit code 0 inside the drain timeout.

    python tests/image_test.py --image TAG --static BIN --lgss HOST_BIN
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def run(cmd, **kw):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    return p.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def without_file(path):
    d = json.loads(Path(path).read_text())
    d.pop("file")
    return d


def outputs(folder):
    """Each movie's JSON output in `folder`, without its input path."""
    return {p.name: without_file(p) for p in sorted(Path(folder).glob("*.json"))}


class Podman:
    def __init__(self, work):
        # Test-local engine settings (never /etc): runc, as crun fails on
        # this kind of VM's cgroups, and no default ulimits (RLIMIT_NOFILE
        # cannot be raised here).
        conf = work / "containers.conf"
        conf.write_text('[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n')
        self.env = dict(os.environ, CONTAINERS_CONF=str(conf))

    def __call__(self, *args, check=True):
        p = subprocess.run(["podman", *map(str, args)], capture_output=True, text=True, env=self.env)
        if check and p.returncode != 0:
            raise AssertionError(f"podman {' '.join(map(str, args))} failed ({p.returncode}):\n{p.stderr[-3000:]}")
        return p


def check_static(static, lgss, model, data, work):
    # A static PIE (what +crt-static makes, keeping ASLR): ldd says
    # "statically linked" (a non-PIE static binary: "not a dynamic
    # executable"); either way no interpreter and no needed library.
    p = subprocess.run(["ldd", str(static)], capture_output=True, text=True)
    said = (p.stdout + p.stderr).strip()
    assert "statically linked" in said or "not a dynamic executable" in said, f"ldd {static}: {said}"
    headers = run(["readelf", "-lW", static])
    assert "Requesting program interpreter" not in headers, headers
    assert "(NEEDED)" not in run(["readelf", "-d", static]), f"{static} needs shared libraries"
    movie = sorted(data.glob("*.pkl"))[0]
    outs = []
    for binary in (static, lgss):
        out = work / f"static-check-{binary.parent.name}"
        run([binary, "segment", "--runtime", "tract", "--model", model, "--out", out, movie])
        outs.append((out / (movie.stem + ".json")).read_bytes())
    assert outs[0] == outs[1], "the static binary's segment output differs from the host build's"
    return said


def check_labels(podman, image):
    labels = json.loads(podman("image", "inspect", "--format", "{{json .Labels}}", image).stdout)
    version = [l for l in (ROOT / "Cargo.toml").read_text().splitlines() if l.startswith("version = ")][0]
    assert labels.get("org.opencontainers.image.version") == version.split('"')[1], labels
    assert labels.get("io.lgss.features") == "tract", labels
    config = json.loads(podman("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    assert config.get("User") == "65532:65532", config
    assert config.get("Entrypoint") == ["/usr/bin/lgss"], config


def check_shards(podman, image, lgss, model, data, work):
    models = work / "models"
    models.mkdir()
    shutil.copy(model, models / "model.onnx")
    for i in range(2):
        inside, host = work / f"inside-{i}", work / f"host-{i}"
        inside.mkdir()
        inside.chmod(0o777)  # written by the image's non-root user
        podman("run", "--rm", "--read-only", "--network", "none",
               "-v", f"{data}:/data:ro", "-v", f"{models}:/models:ro", "-v", f"{inside}:/out",
               image, "segment", "/data", "--runtime", "tract", "--model", "/models/model.onnx",
               "--out", "/out", "--shard", f"{i}/2")
        run([lgss, "segment", data, "--runtime", "tract", "--model", model, "--out", host, "--shard", f"{i}/2"])
        got, want = outputs(inside), outputs(host)
        assert got and got == want, f"shard {i}/2: image wrote {sorted(got)}, host {sorted(want)}"
    return models


def check_serve(podman, image, lgss, model, models, data):
    port = free_port()
    name = f"lgss-image-test-{os.getpid()}"
    podman("run", "-d", "--rm=false", "--name", name, "--read-only", "-p", f"127.0.0.1:{port}:8080",
           "-v", f"{models}:/models:ro", image)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while True:
            try:
                if requests.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.time() < deadline, "serve never became ready:\n" + podman("logs", name, check=False).stderr
            time.sleep(0.2)
        movie = sorted(data.glob("*.pkl"))[0]
        r = requests.post(url + "/v1/segment", data=movie.read_bytes(), timeout=60)
        assert r.status_code == 200, r.text
        got = r.json()
        got.pop("file")
        want = json.loads(run([lgss, "segment", "--runtime", "tract", "--model", model, movie]))
        want.pop("file")
        assert got == want, "serve in the image answered differently from lgss segment"
        t = time.time()
        podman("stop", "-t", "25", name)
        stopped_in = time.time() - t
        code = podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        assert code == "0", f"exit code {code} after SIGTERM:\n" + podman("logs", name, check=False).stderr
        assert stopped_in < 20, f"took {stopped_in:.1f} s to stop (drain timeout 20 s)"
        return stopped_in
    finally:
        podman("rm", "-f", name, check=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--static", required=True, type=Path)
    ap.add_argument("--lgss", required=True, type=Path)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lgss-image-test-"))
    try:
        podman = Podman(work)
        data = work / "data"
        run([a.lgss, "synth", "--out", data, "--movies", "6", "--seed", "4", "--size", "small", "--shots", "60..120"])
        run([a.lgss, "train", "--data", data, "--config", ROOT / "models" / "lgss-small.toml", "--out", work / "run",
             "--epochs", "1", "--device", "cpu"])
        model = work / "model.onnx"
        run([a.lgss, "export", "--onnx", model, "--checkpoint", work / "run" / "best.safetensors"])
        said = check_static(a.static, a.lgss, model, data, work)
        print(f"ok: static binary ({said}; {a.static.stat().st_size} bytes) segments as the host build does")
        check_labels(podman, a.image)
        print(f"ok: {a.image} labels, non-root user, entrypoint")
        models = check_shards(podman, a.image, a.lgss, model, data, work)
        print("ok: segment --shard 0/2 and 1/2 in the image (read-only root) equal the host binary's")
        stopped_in = check_serve(podman, a.image, a.lgss, model, models, data)
        print(f"ok: serve in the image answers as lgss segment; SIGTERM ended it with 0 in {stopped_in:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
