"""Time to a target validation AP for PyTorch LGSS as written (the seed's
recipe: Adam lr 1e-3, L2 5e-4, batch 8), on the split `lgss train
--val-movies 2` makes of the same DATA_DIR: the last 10% of the movies by
file name (at least one) are test movies, the 2 before them validation,
the rest training. Each epoch trains on the training sequences in a seeded
shuffle, then scores the validation boundaries; AP is pooled over them as
`evaluate_sceneseg.py` (scikit-learn's average_precision_score) does.
The clock runs from the first batch to the end of the epoch that reaches
TARGET (validation included, as lgss's metrics.jsonl `seconds` does),
and stops at MAX_SECONDS.

usage: train_to_ap_reference.py DATA_DIR SHOT_NUM SEQ_LEN C H TARGET MAX_SECONDS [DEVICE]
prints: one JSON object (target, reached, seconds, epochs, val_AP per epoch, windows_per_s)
"""
import json
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from lgss_reference import parse_args, seed_recipe  # noqa: E402


def average_precision(truth, score):
    """scikit-learn's average_precision_score: sum over distinct thresholds,
    from the highest, of (recall step) x precision."""
    order = np.argsort(-score, kind="mergesort")
    truth, score = truth[order], score[order]
    last = np.r_[np.where(np.diff(score))[0], truth.size - 1]
    tps = np.cumsum(truth)[last]
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def main():
    movies, (shot_num, seq_len, channel, hidden), target_ap, max_seconds = parse_args(sys.argv)
    target_ap, max_seconds = float(target_ap), float(max_seconds)
    device = movies.device
    n = len(movies.lengths)
    n_trainval = min(max(int(n * 0.9), 1), n - 1)
    train = movies.sequences(range(n_trainval - 2))
    val = movies.sequences(range(n_trainval - 2, n_trainval))
    model, opt, weight = seed_recipe(movies, shot_num, seq_len, channel, hidden)
    rng = random.Random(0)
    aps, windows, trained = [], 0, 0.0
    reached = None
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    while reached is None and time.perf_counter() - t0 < max_seconds:
        rng.shuffle(train)
        model.train()
        t_epoch = time.perf_counter()
        for i in range(0, len(train), 8):
            chunk = train[i:i + 8]
            xs, target = movies.batch(chunk)
            loss = F.cross_entropy(model(xs), target, weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            windows += sum(c[2] for c in chunk)
        sync()
        trained += time.perf_counter() - t_epoch
        model.eval()
        truth, score = [], []
        with torch.no_grad():
            for i in range(0, len(val), 64):
                chunk = val[i:i + 64]
                xs, target = movies.batch(chunk)
                prob = torch.softmax(model(xs), 1)[:, 1].cpu().numpy()
                keep = (target != -100).cpu().numpy()
                truth.append(target.cpu().numpy()[keep])
                score.append(prob[keep])
        aps.append(average_precision(np.concatenate(truth), np.concatenate(score)))
        if aps[-1] >= target_ap:
            reached = time.perf_counter() - t0
    print(json.dumps({
        "target": target_ap,
        "reached": reached is not None,
        "seconds": reached if reached is not None else time.perf_counter() - t0,
        "epochs": len(aps),
        "val_AP": aps,
        "windows_per_s": windows / trained if trained else 0.0,
    }))


if __name__ == "__main__":
    main()
