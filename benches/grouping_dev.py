"""Global grouping's γ (coherence) and λ (length weight) on development movies.

The defaults of `segment --global` are chosen here, never on the quality
bench's test movies: for each seed S whose quality-bench run finished
(WORK/seedS/run/best.safetensors, trained on seed S's first movies), `lgss
synth` writes DEV fresh full-width movies with seed DEV_SEED + S (every
movie is a pure function of (seed, index), so they share no movie with any
bench seed's training or test movies). Each grid point (γ, λ) segments them
with that checkpoint (`segment --global --coherence γ --length-weight λ`)
and scores them with `lgss eval`; `local` is the plain threshold rule.

Every (config, seed, γ, λ) appends one line to JSONL (committed), so the
study resumes where it stopped. The table is mean ± std over seeds, best
mean dev Miou first; the default is the best grid point whose mean dev AP
is not below local's.

usage: .venv/bin/python benches/grouping_dev.py --work /tmp/lgss-quality
       [--config models/lgss.toml] [--seeds 1,2,3] [--dev-movies 10]
       [--coherence 0.1,0.3,0.5,1,2] [--length-weight 0,0.5,1,1.5,2]
       [--lgss target/release/lgss] [--jsonl benches/grouping-dev.jsonl]
       [--table-only]
"""

import argparse
import hashlib
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quality import ROOT, data_sha256, git_commit, machine, run, same_protocol, scores, settings_sha256  # noqa: E402

DEV_SEED = 100


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def key(line):
    return (line["seed"], line["coherence"], line["length_weight"])


def table(lines, protocol):
    rows = [l for l in lines if same_protocol(l["protocol"], protocol)]
    points = {(l["coherence"], l["length_weight"]) for l in rows}
    seeds = sorted({l["seed"] for l in rows})

    def stats(g, lw, k):
        v = [l[k] for l in rows if (l["coherence"], l["length_weight"]) == (g, lw)]
        sd = statistics.stdev(v) if len(v) > 1 else float("nan")
        return statistics.mean(v), sd, len(v)

    local = stats(None, None, "Miou") if (None, None) in points else None
    local_ap = stats(None, None, "AP")[0] if local else None
    ranked = sorted(points, key=lambda p: (-stats(*p, "Miou")[0], p[0] is None, p))
    out = [
        f"{len(seeds)} seed(s) {seeds}; {protocol['dev_movies']} dev movies of {protocol['shots']} shots "
        f"a seed (synth seed {DEV_SEED} + seed); {protocol['config']} checkpoints of the quality bench; "
        "mean ± std over seeds, best dev Miou first",
        "",
        "| γ | λ | dev AP | dev Miou | Miou − local | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for g, lw in ranked:
        ap, ap_sd, n = stats(g, lw, "AP")
        mi, mi_sd, _ = stats(g, lw, "Miou")
        gain = f"{mi - local[0]:+.3f}" if local and g is not None else ""
        name = ("local", "") if g is None else (f"{g:g}", f"{lw:g}")
        out.append(f"| {name[0]} | {name[1]} | {ap:.3f} ± {ap_sd:.3f} | {mi:.3f} ± {mi_sd:.3f} | {gain} | {n} |")
    if local:
        ok = [p for p in ranked if p[0] is not None and stats(*p, "AP")[0] >= local_ap]
        if ok:
            out += ["", f"default: γ {ok[0][0]:g}, λ {ok[0][1]:g} (best mean dev Miou with dev AP ≥ local's)"]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="the quality bench's --work directory")
    ap.add_argument("--config", default=os.path.join(ROOT, "models/lgss.toml"))
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--dev-movies", type=int, default=10)
    ap.add_argument("--shots", default="300..700")
    ap.add_argument("--coherence", default="0.1,0.3,0.5,1,2")
    ap.add_argument("--length-weight", default="0,0.5,1,1.5,2")
    ap.add_argument("--runtime", default="tch")
    ap.add_argument("--lgss", default=os.path.join(ROOT, "target/release/lgss"))
    ap.add_argument("--jsonl", default=os.path.join(ROOT, "benches/grouping-dev.jsonl"))
    ap.add_argument("--table-only", action="store_true")
    a = ap.parse_args()
    with open(a.config) as fh:
        config_text = fh.read()
    protocol = {
        "config": os.path.basename(a.config),
        "config_sha256": settings_sha256(config_text),
        "dev_movies": a.dev_movies,
        "shots": a.shots,
    }
    lines = []
    if os.path.exists(a.jsonl):
        with open(a.jsonl) as fh:
            lines = [json.loads(l) for l in fh if l.strip()]
    if a.table_only:
        print(table(lines, protocol))
        return
    grid = [(None, None)] + [
        (float(g), float(lw)) for g in a.coherence.split(",") for lw in a.length_weight.split(",")
    ]
    for seed in [int(s) for s in a.seeds.split(",")]:
        ckpt = os.path.join(a.work, f"seed{seed}", "run", "best.safetensors")
        if not os.path.exists(ckpt):
            print(f"seed {seed}: no finished quality-bench run at {ckpt}; skipped", file=sys.stderr)
            continue
        dev = os.path.join(a.work, f"seed{seed}", "dev")
        if not os.path.isdir(dev):
            run([a.lgss, "synth", "--out", dev, "--movies", str(a.dev_movies), "--seed", str(DEV_SEED + seed),
                 "--size", "full", "--shots", a.shots])
        base = {"protocol": protocol, "seed": seed, "data_sha256": data_sha256(sorted(
            os.path.join(dev, f) for f in os.listdir(dev) if f.endswith(".pkl"))),
            "checkpoint_sha256": sha256(ckpt), "lgss_commit": git_commit(), "machine": machine()}
        done = {key(l) for l in lines if same_protocol(l["protocol"], protocol)
                and l["checkpoint_sha256"] == base["checkpoint_sha256"] and l["data_sha256"] == base["data_sha256"]}
        for g, lw in grid:
            if (seed, g, lw) in done:
                continue
            out = os.path.join(a.work, f"seed{seed}", "dev-out")
            extra = ["--local"] if g is None else ["--global", "--coherence", str(g), "--length-weight", str(lw)]
            run([a.lgss, "segment", "--runtime", a.runtime, "--checkpoint", ckpt, "--out", out, *extra, dev])
            line = dict(base, coherence=g, length_weight=lw, **scores(a.lgss, dev, out))
            lines.append(line)
            with open(a.jsonl, "a") as fh:
                fh.write(json.dumps(line, sort_keys=True) + "\n")
            print(f"seed {seed} γ {g} λ {lw}: AP {line['AP']:.4f} Miou {line['Miou']:.4f}", file=sys.stderr)
    print(table(lines, protocol))


if __name__ == "__main__":
    main()
