"""`lgss serve` under load, against `lgss segment` on the same movies.

A bounded load client on loopback: for each runtime, movie set and
concurrency C, REQUESTS requests (movies in turn) from C threads, each on
its own keep-alive connection; it stops by itself. Per point: movies/s,
boundaries/s (the windows every movie needs: one per boundary) and
p50/p95/p99 latency, with batching across requests on and off
(`--per-request-batches`). Baselines in the same run: one `lgss segment`
process per movie (model load included, as a per-request CLI would pay),
and one `lgss segment DIR` over the same movies (`--baseline-passes` times
over the set; each line records its `movies`). Then the server at twice the
highest concurrency measured: with the bench's roomy limits (every request
admitted; peak memory, VmHWM) and with the default limits (`--queue 32
--max-uploads 8`: the share refused with 503, and the memory they bound).

Movies: `lgss synth --size full`, long (2,400 shots) and short (50-300
shots), written once under --work.

usage: .venv/bin/python benches/serve_load.py --model M.onnx
       [--lgss target/release/lgss] [--runtimes ort-cpu,tract]
       [--sets long,short] [--concurrency 1,8,32] [--requests 200]
       [--modes baselines,serve,per-request,2x,2x-default] [--baseline-passes 1]
       [--work /tmp/lgss-serve-load] [--jsonl benches/serve-load.jsonl]
"""

import argparse
import glob
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quality import ROOT, machine  # noqa: E402

SETS = {"long": ("2400..2400", 8), "short": ("50..300", 40)}


def movies(a, name):
    shots, count = SETS[name]
    d = os.path.join(a.work, name)
    if not glob.glob(os.path.join(d, "tt*.pkl")):
        subprocess.run([a.lgss, "synth", "--out", d, "--movies", str(count), "--seed", "7", "--size", "full",
                        "--shots", shots], check=True, capture_output=True)
    files = sorted(glob.glob(os.path.join(d, "tt*.pkl")))
    return files, [open(f, "rb").read() for f in files]


def boundaries(lgss, files):
    out = {}
    for f in files:
        info = json.loads(subprocess.run([lgss, "info", "--json", f], check=True, capture_output=True).stdout)
        info = info[0] if isinstance(info, list) else info
        out[f] = info["shots"] - 1
    return out


# Limits that admit every request of a point and let it wait as long as the
# point takes (a throughput measurement); the default limits are measured
# apart, at twice the load.
ROOMY = ["--queue", "256", "--max-uploads", "64", "--timeout", "3600"]


class Server:
    def __init__(self, a, runtime, extra):
        self.p = subprocess.Popen([a.lgss, "serve", "--runtime", runtime, "--model", a.model, "--listen",
                                   "127.0.0.1:0", *extra],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in self.p.stderr:
            if "listening on http://" in line:
                host, port = line.split("http://")[1].split()[0].split(":")
                self.addr = (host, int(port))
                break
        else:
            raise SystemExit("lgss serve did not start")
        threading.Thread(target=lambda: [None for _ in self.p.stderr], daemon=True).start()

    def peak_rss_mb(self):
        with open(f"/proc/{self.p.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024

    def stop(self):
        self.p.terminate()
        self.p.wait(30)


def load(addr, bodies, n_requests, concurrency):
    """(seconds, latencies, statuses) of n_requests from `concurrency` threads;
    status 0: the connection was closed or reset before an answer was read."""
    lock = threading.Lock()
    next_i = [0]
    lat, statuses = [], []

    def worker():
        conn = http.client.HTTPConnection(*addr, timeout=600)
        while True:
            with lock:
                i = next_i[0]
                next_i[0] += 1
            if i >= n_requests:
                break
            body = bodies[i % len(bodies)]
            t = time.perf_counter()
            try:
                conn.request("POST", "/v1/segment", body=body)
                r = conn.getresponse()
                r.read()
                status = r.status
            except (OSError, http.client.HTTPException):
                # The server closed or reset the connection: no answer read.
                status = 0
                conn.close()
                conn = http.client.HTTPConnection(*addr, timeout=600)
            dt = time.perf_counter() - t
            with lock:
                lat.append(dt)
                statuses.append(status)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, lat, statuses


def baselines(a, set_name, runtime, files, nb, emit):
    """A `segment` process per movie, and `segment DIR`, `--baseline-passes` times over the set."""
    passes = a.baseline_passes
    n, b = passes * len(files), passes * sum(nb.values())
    t = time.perf_counter()
    for _ in range(passes):
        for f in files:
            subprocess.run([a.lgss, "segment", "--runtime", runtime, "--model", a.model, "--out",
                            os.path.join(a.work, "out"), f], check=True, capture_output=True)
    dt = time.perf_counter() - t
    emit({"set": set_name, "runtime": runtime, "mode": "segment per movie", "requests": None, "movies": n,
          "movies_per_s": n / dt, "boundaries_per_s": b / dt})
    t = time.perf_counter()
    for _ in range(passes):
        subprocess.run([a.lgss, "segment", "--runtime", runtime, "--model", a.model, "--out",
                        os.path.join(a.work, "out"), os.path.join(a.work, set_name)], check=True, capture_output=True)
    dt = time.perf_counter() - t
    emit({"set": set_name, "runtime": runtime, "mode": "segment DIR", "requests": None, "movies": n,
          "movies_per_s": n / dt, "boundaries_per_s": b / dt})


def statuses_count(st):
    return {str(k): st.count(k) for k in sorted(set(st))}


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--lgss", default=os.path.join(ROOT, "target/release/lgss"))
    ap.add_argument("--runtimes", default="ort-cpu,tract")
    ap.add_argument("--sets", default="long,short")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--modes", default="baselines,serve,per-request,2x,2x-default")
    ap.add_argument("--baseline-passes", type=int, default=1)
    ap.add_argument("--work", default="/tmp/lgss-serve-load")
    ap.add_argument("--jsonl", default=os.path.join(ROOT, "benches/serve-load.jsonl"))
    a = ap.parse_args()
    concurrencies = [int(c) for c in a.concurrency.split(",")]
    modes = set(a.modes.split(","))
    base = {"machine": machine(), "requests": a.requests}
    rows = []

    def emit(line):
        line = dict(base, **line)
        rows.append(line)
        with open(a.jsonl, "a") as fh:
            fh.write(json.dumps(line, sort_keys=True) + "\n")
        print(json.dumps(line), file=sys.stderr, flush=True)

    for set_name in a.sets.split(","):
        files, bodies = movies(a, set_name)
        nb = boundaries(a.lgss, files)
        mean_b = statistics.mean(nb.values())
        for runtime in a.runtimes.split(","):
            if "baselines" in modes:
                baselines(a, set_name, runtime, files, nb, emit)
            for mode, extra in [("serve", ROOMY), ("serve, per-request batches", ROOMY + ["--per-request-batches"])]:
                if {"serve": "serve", "serve, per-request batches": "per-request"}[mode] not in modes:
                    continue
                server = Server(a, runtime, extra)
                try:
                    load(server.addr, bodies[:1], 1, 1)  # warm-up
                    for c in concurrencies:
                        secs, lat, st = load(server.addr, bodies, a.requests, c)
                        ok = sum(s == 200 for s in st)
                        emit({"set": set_name, "runtime": runtime, "mode": mode, "concurrency": c,
                              "ok": ok, "statuses": statuses_count(st), "movies_per_s": ok / secs, "boundaries_per_s": ok * mean_b / secs,
                              "p50_s": pct(lat, 50), "p95_s": pct(lat, 95), "p99_s": pct(lat, 99)})
                finally:
                    server.stop()
            c = 2 * max(concurrencies)
            for mode, extra in [("2x", ROOMY), ("2x-default", [])]:
                if mode not in modes:
                    continue
                server = Server(a, runtime, extra)
                try:
                    load(server.addr, bodies[:1], 1, 1)
                    n = max(a.requests // 2, 2 * c)
                    secs, lat, st = load(server.addr, bodies, n, c)
                    ok_lat = [t for t, s in zip(lat, st) if s == 200]
                    emit({"set": set_name, "runtime": runtime, "concurrency": c, "requests": n,
                          "mode": "serve at 2x" if mode == "2x" else "serve at 2x, default limits",
                          "limits": " ".join(extra) or "default", "ok": len(ok_lat),
                          "refused": sum(s == 503 for s in st), "reset": sum(s == 0 for s in st),
                          "other": sum(s not in (0, 200, 503) for s in st),
                          "seconds": secs, "p99_s": pct(ok_lat, 99) if ok_lat else None,
                          "peak_rss_mb": server.peak_rss_mb()})
                finally:
                    server.stop()
    print("| set | runtime | mode | C | movies/s | boundaries/s | p50 | p95 | p99 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "movies_per_s" not in r:
            continue
        f = lambda k: f"{r[k]:.2f} s" if k in r else ""  # noqa: E731
        print(f"| {r['set']} | {r['runtime']} | {r['mode']} | {r.get('concurrency', '')} | "
              f"{r['movies_per_s']:.2f} | {r['boundaries_per_s']:.0f} | {f('p50_s')} | {f('p95_s')} | {f('p99_s')} |")


if __name__ == "__main__":
    main()
