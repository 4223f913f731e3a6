"""Quality with error bars: one fixed protocol, several seeds, four methods.

For each seed S: `lgss synth` writes MOVIES full-width movies of 300-700
shots (seed S); the last TEST of them are the test movies. On them it scores
(with `lgss eval`, the challenge's metrics):
  provided  the files' own scene_transition_boundary_prediction
  baseline  logistic regression on 16 window-similarity features (per
            modality: cosine of the two shots at the boundary, of the means
            of 2 and of 4 shots on each side, and the largest cross cosine
            of the 2+2 shots), class-balanced, fitted on the other movies
  lgss      LGSS local (`lgss train` with the seed as its seed, best
            checkpoint by validation AP, then `lgss segment --local`)
  global    LGSS + global optimal grouping (`segment --global`), the
            coherence term alone (`--length-weight 0`)
  global+prior  the same with the scene-length prior `lgss train` learned
            from the training movies (`--length-weight LAMBDA`)
The grouped methods use `segment --global`'s defaults (γ 1, λ 1.5, chosen on
development movies by benches/grouping_dev.py) unless --coherence and
--length-weight say otherwise; each of their lines records its γ and λ.
Every finished (seed, method) appends one line to JSONL (committed): the
work resumes where it stopped and can be spread over days and machines.
Lines whose protocol or synthetic data (SHA-256 of the seed's movies)
differ from this run's are not counted: changing the generator restarts the
table. A config counts by its settings (SHA-256 of its lines less comments),
not by its file name, so a recipe promoted to models/lgss.toml keeps its
lines. A seed whose training finished is not trained again: methods added
later segment with its best checkpoint (one trained before lgss recorded
scene lengths gets them added from its training movies' ground truth, as
`lgss train` computes them). Then it prints mean ± std (over seeds) as a
markdown table.

Variants (`--variant NAME`, or several: `--variant long-scenes,noisy`): the
same protocol on data of another texture (`lgss synth`'s knobs, VARIANTS
below), so that the recipe is checked on data it was not tuned on. The
default variant is the generator as it is (its lines carry no variant).
`--table-only --variant all` prints one table of variants × methods.

usage: .venv/bin/python benches/quality.py [--seeds 1,2,3] [--movies 30]
       [--variant default|long-scenes|noisy|audio-led|all]
       [--test-movies 10] [--epochs 10] [--device cpu|cuda]
       [--runtime tch|tch-cuda|ort-cpu|tract] [--coherence 1]
       [--length-weight 1.5]
       [--lgss target/release/lgss] [--work /tmp/lgss-quality]
       [--jsonl benches/quality.jsonl] [--table-only]
"""

import argparse
import glob
import hashlib
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ["provided", "baseline", "lgss", "global", "global+prior"]
# Data textures: `lgss synth` flags (the book: "Synthetic data"). Chosen before
# any recipe ran on them, each to move one thing that makes cuts visible.
VARIANTS = {
    "default": [],
    # Longer, more regular scenes: ~4% boundaries instead of ~7.6%.
    "long-scenes": ["--scene-median", "18", "--scene-spread", "0.6"],
    # Every modality's shots vary half again as much around their scene.
    "noisy": ["--noise", "1.5"],
    # Pictures say little (place ×3, cast ×2 noise), sound seldom carries
    # over a cut: the cue is in the audio.
    "audio-led": ["--modality-noise", "place=3,cast=2", "--audio-carryover", "0.1"],
}
GROUPED = ["global", "global+prior"]
MODALITIES = ["place", "cast", "action", "audio"]


def run(cmd, **kw):
    """Runs an lgss command; its stdout, or exit with its stderr."""
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p.stdout


def scores(lgss, truth_dir, pred_dir=None):
    cmd = [lgss, "eval", "--json", truth_dir]
    if pred_dir:
        cmd += ["--pred", pred_dir]
    d = json.loads(run(cmd))
    return {k: d[k] for k in ["AP", "mAP", "Miou", "F1"]}


def count_scenes(files):
    """Scene-length counts (element L-1: scenes of L shots) of the movies'
    ground truth, as `lgss train` records them for global grouping."""
    counts = []
    for f in files:
        _, _, gt = load(f)
        cuts = np.flatnonzero(gt)
        starts = np.concatenate([[0], cuts + 1])
        ends = np.concatenate([cuts + 1, [len(gt) + 1]])
        for n in (ends - starts).tolist():
            counts += [0] * max(0, n - len(counts))
            counts[n - 1] += 1
    return counts


def add_scene_lengths(ckpt, files):
    """Adds `scene_length_counts` to a checkpoint trained before lgss
    recorded it; the tensors' bytes are kept as they are."""
    with open(ckpt, "rb") as fh:
        blob = fh.read()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    meta = header.setdefault("__metadata__", {})
    if "scene_length_counts" in meta:
        return
    meta["scene_length_counts"] = json.dumps(count_scenes(files), separators=(",", ":"))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = ckpt + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(len(text).to_bytes(8, "little") + text + blob[8 + n :])
    os.replace(tmp, ckpt)


def data_sha256(files):
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


def load(f):
    import torch  # noqa: F401  (the pickles hold torch tensors)

    with open(f, "rb") as fh:
        d = pickle.load(fh)
    feats = {m: d[m].double().numpy() for m in MODALITIES}
    gt = d["scene_transition_boundary_ground_truth"].numpy().astype(np.float64)
    return d["imdb_id"], feats, gt


def unit(x):
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def window_features(feats):
    """16 similarity features for each of the n-1 boundaries."""
    cols = []
    for m in MODALITIES:
        x = unit(feats[m])
        n = len(x)
        pad = np.concatenate([np.repeat(x[:1], 3, 0), x, np.repeat(x[-1:], 3, 0)])
        idx = np.arange(n - 1) + 3  # boundary b sits after shot b (padded index b + 3)

        def mean(offsets):
            return unit(np.mean([pad[idx + o] for o in offsets], axis=0))

        def cos(a, b):
            return np.sum(a * b, axis=1)

        cols.append(cos(pad[idx], pad[idx + 1]))
        cols.append(cos(mean([-1, 0]), mean([1, 2])))
        cols.append(cos(mean([-3, -2, -1, 0]), mean([1, 2, 3, 4])))
        cross = [cos(pad[idx + i], pad[idx + j]) for i in (-1, 0) for j in (1, 2)]
        cols.append(np.max(cross, axis=0))
    return np.stack(cols, axis=1)


def fit_logistic(X, y, l2=1e-3, iters=50):
    """Class-balanced L2 logistic regression by Newton's method."""
    mu, sd = X.mean(0), X.std(0) + 1e-12
    Z = np.hstack([(X - mu) / sd, np.ones((len(X), 1))])
    pos = y.mean()
    w_sample = np.where(y > 0.5, 0.5 / pos, 0.5 / (1 - pos))
    w = np.zeros(Z.shape[1])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-Z @ w))
        g = Z.T @ (w_sample * (p - y)) + l2 * len(X) * np.r_[w[:-1], 0]
        H = (Z * (w_sample * p * (1 - p))[:, None]).T @ Z + l2 * len(X) * np.diag(np.r_[np.ones(len(w) - 1), 0])
        step = np.linalg.solve(H, g)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return lambda X2: 1 / (1 + np.exp(-np.hstack([(X2 - mu) / sd, np.ones((len(X2), 1))]) @ w))


def baseline(train_files, test_files, out_dir):
    X, y = [], []
    for f in train_files:
        _, feats, gt = load(f)
        X.append(window_features(feats))
        y.append(gt)
    predict = fit_logistic(np.vstack(X), np.concatenate(y))
    os.makedirs(out_dir, exist_ok=True)
    for f in test_files:
        imdb_id, feats, _ = load(f)
        p = predict(window_features(feats))
        with open(os.path.join(out_dir, imdb_id + ".json"), "w") as fh:
            json.dump({"imdb_id": imdb_id, "boundary_probabilities": p.tolist()}, fh)


def git_commit():
    """$LGSS_COMMIT (the commit the --lgss binary was built from), else HEAD."""
    if os.environ.get("LGSS_COMMIT"):
        return os.environ["LGSS_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        out = ""
    return out or "?"


def machine():
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def settings(a, method):
    """A grouped method's γ and λ (each line records its own, so a new
    default adds lines without retraining); {} for the other methods, and
    with --val-movies, where the model's training chose them."""
    if method not in GROUPED or a.val_movies:
        return {}
    return {"coherence": a.coherence, "length_weight": 0.0 if method == "global" else a.length_weight}


def grouping_flags(a, method):
    """`segment` flags of a grouped method: with --val-movies only λ 0 for
    `global` (γ and λ otherwise the model's, chosen on its validation
    movies)."""
    off = ["--length-weight", "0"] if method == "global" else []
    if a.val_movies:
        return ["--global", *off]
    return ["--global", "--coherence", str(a.coherence), "--length-weight",
            "0" if method == "global" else str(a.length_weight)]


def stored_choice(ckpt):
    """The γ and λ `lgss train --val-movies` stored in a checkpoint."""
    with open(ckpt, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        meta = json.loads(fh.read(n)).get("__metadata__", {})
    c = json.loads(meta["grouping_choice"])
    return {"coherence": c["coherence"], "length_weight": c["length_weight"]}


def matches(line, a):
    return all(line.get(k) == v for k, v in settings(a, line["method"]).items())


def mean_sd(got, key):
    """`key` over the lines `got`: mean ± std (nan for one line)."""
    v = [l[key] for l in got]
    sd = statistics.stdev(v) if len(v) > 1 else float("nan")
    return f"{statistics.mean(v):.3f} ± {sd:.3f}"


def table(lines, protocol, a):
    rows = [l for l in lines if same_protocol(l["protocol"], protocol) and matches(l, a)]
    seeds = sorted({l["seed"] for l in rows})
    out = [
        f"{len(seeds)} seed(s) {seeds}; {protocol['movies']} full-width movies of "
        f"{protocol['shots']} shots, {protocol['test_movies']} test; {protocol['config']}, "
        f"{protocol['epochs']} epochs on {protocol['device']}, "
        + (f"validation on {a.val_movies} movies, which chose global grouping's γ and λ; " if a.val_movies else
           f"global γ {a.coherence:g} (global+prior: λ {a.length_weight:g}); ")
        + "mean ± std over seeds",
        "",
        "| method | AP | mAP | Miou | F1 | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for m in METHODS:
        got = [l for l in rows if l["method"] == m]
        if not got:
            continue

        cell = lambda k: mean_sd(got, k)  # noqa: E731
        out.append(f"| {m} | {cell('AP')} | {cell('mAP')} | {cell('Miou')} | {cell('F1')} | {len(got)} |")
    trained = [l for l in rows if l["method"] == "lgss"]
    if trained:
        secs = statistics.mean(l["train_seconds"] for l in trained)
        out.append("")
        out.append(
            f"training: {protocol['epochs']} epochs, {secs:.0f} s a seed on average "
            f"({trained[-1]['machine']})"
        )
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--variant", default="default",
                    help="data texture(s), comma-separated, or `all`: " + ", ".join(VARIANTS))
    ap.add_argument("--movies", type=int, default=30)
    ap.add_argument("--test-movies", type=int, default=10)
    ap.add_argument("--shots", default="300..700")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runtime", default="tch")
    ap.add_argument("--coherence", type=float, default=1.0)
    ap.add_argument("--length-weight", type=float, default=1.5)
    ap.add_argument("--val-movies", type=int, default=None,
                    help="validate on the last K training movies (`lgss train --val-movies`), which also "
                         "chooses global grouping's γ and λ")
    ap.add_argument("--config", default=os.path.join(ROOT, "models/lgss.toml"))
    ap.add_argument("--lgss", default=os.path.join(ROOT, "target/release/lgss"))
    ap.add_argument("--work", default="/tmp/lgss-quality")
    ap.add_argument("--jsonl", default=os.path.join(ROOT, "benches/quality.jsonl"))
    ap.add_argument("--table-only", action="store_true")
    a = ap.parse_args()
    if not 0 < a.test_movies < a.movies - 1:
        sys.exit("--test-movies must leave at least two movies to train and validate on")
    with open(a.config) as fh:
        config_text = fh.read()
    protocol = {
        "movies": a.movies,
        "test_movies": a.test_movies,
        "shots": a.shots,
        "epochs": a.epochs,
        "config": os.path.basename(a.config),
        "config_sha256": settings_sha256(config_text),
        "device": a.device,
    }
    if a.val_movies:
        protocol["val_movies"] = a.val_movies
    variants = list(VARIANTS) if a.variant == "all" else a.variant.split(",")
    for v in variants:
        if v not in VARIANTS:
            sys.exit(f"--variant {v}: not one of {', '.join(VARIANTS)}")
    lines = []
    if os.path.exists(a.jsonl):
        with open(a.jsonl) as fh:
            lines = [json.loads(l) for l in fh if l.strip()]
    if a.table_only:
        if len(variants) > 1:
            print(variants_table(lines, protocol, a, variants))
        else:
            print(table(lines, variant_protocol(protocol, variants[0]), a))
        return
    for variant in variants:
        run_variant(a, lines, variant_protocol(protocol, variant), variant, config_text)
        print(table(lines, variant_protocol(protocol, variant), a))


def settings_sha256(config_text):
    """The identity of a config: SHA-256 of its lines less comment lines and
    blank lines, so a config whose comments change (or a grid recipe promoted
    to models/lgss.toml with new comments) keeps its lines."""
    settings = [l.rstrip() for l in config_text.splitlines() if l.strip() and not l.lstrip().startswith("#")]
    return hashlib.sha256("\n".join(settings).encode()).hexdigest()[:16]


def same_protocol(line_protocol, protocol):
    """Whether a line was made under `protocol`: every field but the
    config's file name, which is a label (its settings are in the hash)."""
    strip = lambda p: {k: v for k, v in p.items() if k != "config"}  # noqa: E731
    return strip(line_protocol) == strip(protocol)


def variant_protocol(protocol, variant):
    """The protocol of a data variant (the default's is the plain protocol,
    so its lines from before variants existed count)."""
    return protocol if variant == "default" else dict(protocol, variant=variant)


def run_variant(a, lines, protocol, variant, config_text):
    """Every seed of one variant: the methods not yet in `lines` (appended)."""
    for seed in [int(s) for s in a.seeds.split(",")]:
        work = os.path.join(a.work, f"seed{seed}" if variant == "default" else f"{variant}/seed{seed}")
        movies = os.path.join(work, "movies")
        if not os.path.isdir(movies):
            run([a.lgss, "synth", "--out", movies, "--movies", str(a.movies), "--seed", str(seed),
                 "--size", "full", "--shots", a.shots, *VARIANTS[variant]])
        files = sorted(glob.glob(os.path.join(movies, "tt*.pkl")))
        data = data_sha256(files)
        done = {l["method"] for l in lines if same_protocol(l["protocol"], protocol) and l["seed"] == seed
                and l["data_sha256"] == data and matches(l, a)}
        # Lines of this seed made from other data: the generator changed.
        lines[:] = [l for l in lines if not (same_protocol(l["protocol"], protocol) and l["seed"] == seed and l["data_sha256"] != data)]
        todo = [m for m in METHODS if m not in done]
        if not todo:
            print(f"seed {seed}: done", file=sys.stderr)
            continue
        n_train = a.movies - a.test_movies
        test = os.path.join(work, "test")
        os.makedirs(test, exist_ok=True)
        for f in files[n_train:]:
            link = os.path.join(test, os.path.basename(f))
            if not os.path.exists(link):
                os.symlink(f, link)
        base = {"protocol": protocol, "seed": seed, "data_sha256": data, "lgss_commit": git_commit(),
                "machine": machine()}
        results = {}
        if "provided" in todo:
            results["provided"] = scores(a.lgss, test)
        if "baseline" in todo:
            baseline(files[:n_train], files[n_train:], os.path.join(work, "baseline"))
            results["baseline"] = scores(a.lgss, test, os.path.join(work, "baseline"))
        trained = [l for l in lines if same_protocol(l["protocol"], protocol) and l["seed"] == seed
                   and l["data_sha256"] == data and l["method"] == "lgss"]
        run_dir = os.path.join(work, "run")
        ckpt = os.path.join(run_dir, "best.safetensors")
        model = os.path.join(run_dir, "model.onnx")
        grouped = [(m, grouping_flags(a, m)) for m in GROUPED]
        if trained and os.path.exists(ckpt) and "lgss" not in todo:
            # Training finished earlier: segment with its best checkpoint.
            add_scene_lengths(ckpt, files[:n_train])
            if a.runtime.startswith(("ort", "tract")):
                run([a.lgss, "export", "--onnx", model, "--checkpoint", ckpt])
            for method, extra in grouped:
                if method not in todo:
                    continue
                out = os.path.join(work, method)
                run([a.lgss, "segment", "--runtime", a.runtime, "--checkpoint", ckpt, "--model", model,
                     "--out", out, *extra, test])
                t = trained[-1]
                results[method] = dict(scores(a.lgss, test, out), train_seconds=t["train_seconds"],
                                       best_epoch=t["best_epoch"], best_val_AP=t["best_val_AP"],
                                       epochs_run=t.get("epochs_run", a.epochs))
                results[method].update(settings(a, method))
                if a.val_movies and method in GROUPED:
                    chosen = stored_choice(ckpt)
                    results[method].update(chosen, length_weight=0.0 if method == "global" else chosen["length_weight"])
        elif "lgss" in todo or any(m in todo for m, _ in grouped):
            # floor(movies * (1 - f)) = n_train: the last test_movies are test.
            cfg = os.path.join(work, "config.toml")
            if config_text.count("test_fraction = ") != 1:
                sys.exit(f"{a.config}: no single `test_fraction = ` line to set the test split with")
            split = "\n".join(
                f"test_fraction = {(a.test_movies - 0.5) / a.movies}" if l.startswith("test_fraction = ") else l
                for l in config_text.splitlines()
            )
            with open(cfg, "w") as fh:
                fh.write(split + "\n")
            t0 = time.time()
            summary = json.loads(run([a.lgss, "train", "--data", movies, "--config", cfg, "--out", run_dir,
                                      "--epochs", str(a.epochs), "--seed", str(seed), "--device", a.device, "--json",
                                      *(["--val-movies", str(a.val_movies)] if a.val_movies else [])]))
            train_seconds = time.time() - t0
            best = max(summary["history"], key=lambda h: h["val_AP"])
            if a.runtime.startswith(("ort", "tract")):
                run([a.lgss, "export", "--onnx", model, "--checkpoint", ckpt])
            for method, extra in [("lgss", ["--local"]), *grouped]:
                out = os.path.join(work, method)
                run([a.lgss, "segment", "--runtime", a.runtime, "--checkpoint", ckpt, "--model", model,
                     "--out", out, *extra, test])
                results[method] = dict(scores(a.lgss, test, out), train_seconds=train_seconds,
                                       best_epoch=best["epoch"], best_val_AP=best["val_AP"],
                                       epochs_run=len(summary["history"]))
                results[method].update(settings(a, method))
                if a.val_movies and method in GROUPED:
                    chosen = stored_choice(ckpt)
                    results[method].update(chosen, length_weight=0.0 if method == "global" else chosen["length_weight"])
        with open(a.jsonl, "a") as fh:
            for m in METHODS:
                if m in results:
                    line = dict(base, method=m, **results[m])
                    lines.append(line)
                    fh.write(json.dumps(line, sort_keys=True) + "\n")
        print(f"{variant} seed {seed}: " + ", ".join(f"{m} AP {r['AP']:.3f} Miou {r['Miou']:.3f}"
                                                    for m, r in results.items()), file=sys.stderr)


def variants_table(lines, protocol, a, variants):
    """Variants × methods, AP and Miou mean ± std over seeds."""
    out = [
        f"{protocol['movies']} full-width movies of {protocol['shots']} shots per seed, {protocol['test_movies']} test; "
        f"{protocol['config']}, {protocol['epochs']} epochs on {protocol['device']}; mean ± std over seeds (n)",
        "",
        "| variant | method | AP | Miou | F1 | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for v in variants:
        p = variant_protocol(protocol, v)
        rows = [l for l in lines if same_protocol(l["protocol"], p) and matches(l, a)]
        for m in METHODS:
            got = [l for l in rows if l["method"] == m]
            if not got:
                continue

            cell = lambda k: mean_sd(got, k)  # noqa: E731
            out.append(f"| {v} | {m} | {cell('AP')} | {cell('Miou')} | {cell('F1')} | {len(got)} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
