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
- The ort image (FROM scratch, ONNX Runtime): labels, no shell in it; its
  default `serve` (ort-cpu) answers as the host's `lgss segment --runtime
  ort-cpu` and drains on SIGTERM.
- The manifests, played: `podman kube play examples/k8s-serve.yaml` (the
  ort image, the token from a Secret, the model from the claim's volume;
  a hostPort added, as podman has no Service) answers /readyz and a
  segment request with the bearer token, refuses one without it, stops
  with exit code 0 and `podman kube down` removes it. The Indexed Job's
  pod template is run as Kubernetes runs index I (its arguments with
  $(JOB_COMPLETION_INDEX) and $(SHARDS) expanded, its env, user, read-only
  root and mounts) for every I; together the indexes write what one
  unsharded run writes, and a pod whose shard holds an invalid movie exits 0.

    python tests/image_test.py --image TAG --ort-image TAG --static BIN --lgss HOST_BIN
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

import base64
import re

import requests
import yaml

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


def check_labels(podman, image, features="tract"):
    labels = json.loads(podman("image", "inspect", "--format", "{{json .Labels}}", image).stdout)
    version = [l for l in (ROOT / "Cargo.toml").read_text().splitlines() if l.startswith("version = ")][0]
    assert labels.get("org.opencontainers.image.version") == version.split('"')[1], labels
    assert labels.get("io.lgss.features") == features, labels
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


def wait_ready(url, logs):
    deadline = time.time() + 60
    while True:
        try:
            if requests.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        assert time.time() < deadline, "serve never became ready:\n" + logs()
        time.sleep(0.2)


def check_serve(podman, image, lgss, model, models, data, runtime="tract"):
    port = free_port()
    name = f"lgss-image-test-{runtime}-{os.getpid()}"
    podman("run", "-d", "--rm=false", "--name", name, "--read-only", "-p", f"127.0.0.1:{port}:8080",
           "-v", f"{models}:/models:ro", image)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, lambda: podman("logs", name, check=False).stderr)
        movie = sorted(data.glob("*.pkl"))[0]
        r = requests.post(url + "/v1/segment", data=movie.read_bytes(), timeout=60)
        assert r.status_code == 200, r.text
        got = r.json()
        got.pop("file")
        want = json.loads(run([lgss, "segment", "--runtime", runtime, "--model", model, movie]))
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


def check_no_shell(podman, image, work):
    """The image's files: lgss, its libraries and the model folder; no shell."""
    name = f"lgss-image-files-{os.getpid()}"
    podman("create", "--name", name, image)
    try:
        tar = work / "image.tar"
        podman("export", "-o", tar, name)
        files = run(["tar", "-tf", tar]).split()
    finally:
        podman("rm", "-f", name, check=False)
        (work / "image.tar").unlink(missing_ok=True)
    shells = [f for f in files if f.rstrip("/").split("/")[-1] in ("sh", "bash", "dash", "busybox")]
    assert not shells, f"{image} has a shell: {shells}"
    assert "usr/bin/lgss" in files, files
    return files


def expand_k8s(text, env):
    """Kubernetes' $(VAR) expansion of container args: a defined variable is
    replaced, $$ escapes, anything else stays as written."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def check_kube_serve(podman, image, lgss, model, data, work):
    docs = list(yaml.safe_load_all((ROOT / "examples" / "k8s-serve.yaml").read_text()))
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    container["image"] = image
    port = free_port()
    # podman has no Service: the pod's port is published on the host
    # instead, which one replica can bind.
    container["ports"][0]["hostPort"] = port
    deployment["spec"]["replicas"] = 1
    suffix = str(os.getpid())
    deployment["metadata"]["name"] = f"lgss-test-{suffix}"
    token_volume = next(v for v in pod["volumes"] if "secret" in v)
    secret_name = token_volume["secret"]["secretName"] + "-" + suffix
    token_volume["secret"]["secretName"] = secret_name
    models_volume = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    claim = models_volume["persistentVolumeClaim"]["claimName"] + "-" + suffix
    models_volume["persistentVolumeClaim"]["claimName"] = claim
    model_arg = next(a for a in container["args"] if a.startswith("--model="))
    model_name = Path(model_arg.split("=", 1)[1]).name
    encoded = base64.b64encode(("test-token-" + suffix).encode()).decode()
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret_name},
              "type": "Opaque", "data": {"token": encoded}}
    # Kubernetes mounts `data` values decoded; podman 4.3 mounts them as
    # written (still base64) and ignores `stringData`. The server's token is
    # the mounted file's content either way: here, the encoded text.
    token = encoded
    manifest = work / "k8s-serve.yaml"
    manifest.write_text(yaml.safe_dump_all([secret, deployment]))
    # The claim as a podman volume holding the model.
    podman("volume", "create", claim)
    try:
        mount = Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", claim).stdout.strip())
        shutil.copy(model, mount / model_name)
        (mount / model_name).chmod(0o644)
        podman("kube", "play", manifest)
        pod_name = f"{deployment['metadata']['name']}-pod-0"  # podman's name for replica 0
        url = f"http://127.0.0.1:{port}"
        logs = lambda: podman("pod", "logs", pod_name, check=False).stderr  # noqa: E731
        wait_ready(url, logs)
        movie = sorted(data.glob("*.pkl"))[0]
        refused = requests.post(url + "/v1/segment", data=movie.read_bytes(), timeout=60)
        assert refused.status_code == 401, (refused.status_code, refused.text)
        r = requests.post(url + "/v1/segment", data=movie.read_bytes(), timeout=60,
                          headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        got = r.json()
        got.pop("file")
        want = json.loads(run([lgss, "segment", "--runtime", "ort-cpu", "--model", model, movie]))
        want.pop("file")
        assert got == want, "the played Deployment answered differently from lgss segment"
        podman("pod", "stop", "-t", "25", pod_name)
        codes = podman("ps", "-a", "--filter", f"pod={pod_name}", "--format", "{{.Names}} {{.ExitCode}}").stdout
        lgss_code = [l.split()[1] for l in codes.splitlines() if "lgss" in l.split()[0] and "infra" not in l]
        assert lgss_code == ["0"], f"exit codes after SIGTERM: {codes}\n{logs()}"
        podman("kube", "down", manifest)
        left = podman("pod", "exists", pod_name, check=False).returncode
        assert left != 0, "kube down left the pod"
    finally:
        podman("kube", "down", manifest, check=False)
        podman("pod", "rm", "-f", f"{deployment['metadata']['name']}-pod-0", check=False)
        # podman keeps a volume named after the secret beside the secret.
        for volume in (claim, secret_name):
            podman("volume", "rm", "-f", volume, check=False)
        podman("secret", "rm", secret_name, check=False)


def check_indexed_job(podman, image, lgss, model, data, work):
    job = yaml.safe_load((ROOT / "examples" / "k8s-indexed-job.yaml").read_text())
    spec = job["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    assert spec["completionMode"] == "Indexed"
    assert str(spec["completions"]) == env["SHARDS"], "completions and SHARDS must agree"
    shards = 3  # the test's catalogue is small: 3 indexes stand for the manifest's
    env["SHARDS"] = str(shards)
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    assert security["readOnlyRootFilesystem"] and security["runAsNonRoot"], security
    user = f"{security['runAsUser']}:{security['runAsGroup']}"
    catalogue = work / "catalogue"
    shutil.copytree(data, catalogue)
    shutil.copy(ROOT / "tests" / "fixtures" / "bad" / "nan_place.pkl", catalogue / "tt0000099.pkl")
    models = work / "job-models"
    models.mkdir()
    model_arg = next(a for a in container["args"] if a.startswith("--model="))
    shutil.copy(model, models / Path(model_arg.split("=", 1)[1]).name)
    scenes = work / "scenes"
    scenes.mkdir()
    scenes.chmod(0o777)
    host_dirs = {"catalogue": catalogue, "models": models, "scenes": scenes}
    mounts = []
    for m in container["volumeMounts"]:
        mode = "ro" if m.get("readOnly") else "rw"
        mounts += ["-v", f"{host_dirs[m['name']]}:{m['mountPath']}:{mode}"]
    invalid_seen = 0
    for index in range(shards):
        pod_env = dict(env, JOB_COMPLETION_INDEX=str(index))
        args = [expand_k8s(a, pod_env) for a in container["args"]]
        env_flags = [x for k, v in pod_env.items() for x in ("-e", f"{k}={v}")]
        p = podman("run", "--rm", "--read-only", "--network", "none", "--user", user,
                   "--cap-drop", "all", "--security-opt", "no-new-privileges",
                   *env_flags, *mounts, image, *args, check=False)
        assert p.returncode == 0, f"index {index}: exit {p.returncode}\n{p.stderr[-3000:]}"
        if "tt0000099.pkl" in p.stderr:
            invalid_seen += 1
    assert invalid_seen == 1, "exactly one index holds the invalid movie, and it exited 0"
    whole = work / "job-unsharded"
    p = subprocess.run([str(lgss), "segment", str(catalogue), "--runtime", "ort-cpu", "--model", str(model),
                        "--out", str(whole)], capture_output=True, text=True)
    assert p.returncode == 3, p.stderr
    got, want = outputs(scenes), outputs(whole)
    assert got and got == want, f"indexes wrote {sorted(got)}, one run {sorted(want)}"
    return shards


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", required=True)
    ap.add_argument("--ort-image", required=True)
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
        check_labels(podman, a.ort_image, features="tract,ort")
        files = check_no_shell(podman, a.ort_image, work)
        print(f"ok: {a.ort_image} labels, non-root user, entrypoint; {len(files)} entries, no shell")
        stopped_in = check_serve(podman, a.ort_image, a.lgss, model, models, data, runtime="ort-cpu")
        print(f"ok: serve (ort-cpu) in {a.ort_image} answers as lgss segment; SIGTERM ended it with 0 in {stopped_in:.1f} s")
        check_kube_serve(podman, a.ort_image, a.lgss, model, data, work)
        print("ok: podman kube play examples/k8s-serve.yaml: ready, token required, answers as lgss segment, drains, kube down")
        shards = check_indexed_job(podman, a.ort_image, a.lgss, model, data, work)
        print(f"ok: the Indexed Job's pod template, run as indexes 0..{shards - 1}, equals one unsharded run")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
