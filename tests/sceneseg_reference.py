"""PyTorch truth for `lgss import-torch`: a model built the way SceneSeg's
LGSS is (AnyiRao/SceneSeg, lgss/src/models/lgss.py: the same modules, names
and forward, written here with narrow widths), saved through nn.DataParallel
as SceneSeg's run.py saves it (`{'state_dict': ..., 'epoch': ...}`), in both
of torch.save's formats, and its probabilities on a scene318 tree read with
numpy and pickle the way SceneSeg's data code reads one.

    python sceneseg_reference.py --tree ROOT --out DIR [--full]

writes DIR/model_best.pth.tar (zip), DIR/model_best_legacy.pth.tar (the
legacy format of torch < 1.6), DIR/evil.pth.tar (a checkpoint whose pickle
would run a shell command that creates DIR/executed), and DIR/reference.json:
the configuration, each movie's boundary probabilities in eval mode, and one
training-mode forward (logits and BatchNorm running statistics after it).
The widths are models/sceneseg-small.toml's; `--full` gives SceneSeg's own
(models/sceneseg.toml, for a tree of `lgss synth --size full`).

Windows and sequences are lgss's (src/data/windows.rs): boundary b sees shots
b-k/2+1 ..= b+k/2 clamped to the movie, sequences of seq_len boundaries from
0, the last padded with its last boundary.
"""

import argparse
import copy
import json
import os
import pickle

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SHOT_NUM, SEQ_LEN, CHANNEL, HIDDEN = 4, 10, 16, 32
DIMS = {"place": 64, "cast": 32, "act": 32}
AUD_WIDTHS = [4, 8, 8, 8, 8, 16]
RATIO = [0.5, 0.2, 0.2, 0.1]


class AudNet(nn.Module):
    """SceneSeg's audnet: six conv/BN/ReLU blocks over a 257x90 STFT image."""

    def __init__(self, w):
        super().__init__()
        geometry = [((3, 3), (2, 1)), ((3, 3), (2, 1)), ((3, 3), (2, 1)),
                    ((3, 3), (2, 2)), ((3, 3), (2, 2)), ((3, 2), (1, 1))]
        inputs = [1] + w[:-1]
        for i, ((kernel, stride), cin, cout) in enumerate(zip(geometry, inputs, w), 1):
            setattr(self, f"conv{i}", nn.Conv2d(cin, cout, kernel_size=kernel, stride=stride, padding=0))
            setattr(self, f"bn{i}", nn.BatchNorm2d(cout))
        self.pool1 = nn.MaxPool2d(kernel_size=(1, 3))
        self.pool5 = nn.MaxPool2d(kernel_size=(2, 2))
        self.fc = nn.Linear(w[-1], w[-1])

    def forward(self, x):
        for i in range(1, 7):
            x = F.relu(getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(x)))
            if i == 1:
                x = self.pool1(x)
            if i == 5:
                x = self.pool5(x)
        return self.fc(x.flatten(1))


class Cos(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, CHANNEL, kernel_size=(SHOT_NUM // 2, 1))

    def forward(self, x):
        x = x.view(-1, 1, x.shape[2], x.shape[3])
        a, b = torch.split(x, [SHOT_NUM // 2] * 2, dim=2)
        return F.cosine_similarity(self.conv1(a).squeeze(2), self.conv1(b).squeeze(2), dim=2)


class BNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, CHANNEL, kernel_size=(SHOT_NUM, 1))
        self.max3d = nn.MaxPool3d(kernel_size=(CHANNEL, 1, 1))
        self.cos = Cos()

    def forward(self, x):
        context = x.view(x.shape[0] * x.shape[1], 1, -1, x.shape[-1])
        context = self.max3d(self.conv1(context)).flatten(1)
        return torch.cat((context, self.cos(x)), dim=1)


class BNetAud(nn.Module):
    def __init__(self):
        super().__init__()
        self.audnet = AudNet(AUD_WIDTHS)
        # SceneSeg's BNet_aud holds conv1 and max3d but its forward never uses them.
        self.conv1 = nn.Conv2d(1, CHANNEL, kernel_size=(SHOT_NUM, 1))
        self.conv2 = nn.Conv2d(1, CHANNEL, kernel_size=(SHOT_NUM // 2, 1))
        self.max3d = nn.MaxPool3d(kernel_size=(CHANNEL, 1, 1))

    def forward(self, x):
        b, s = x.shape[0], x.shape[1]
        shots = self.audnet(x.reshape(b * s * SHOT_NUM, 1, x.shape[-2], x.shape[-1]))
        shots = shots.view(b * s, 1, SHOT_NUM, -1)
        p1, p2 = torch.split(shots, [SHOT_NUM // 2] * 2, dim=2)
        return F.cosine_similarity(self.conv2(p1).squeeze(2), self.conv2(p2).squeeze(2), dim=2)


class LGSSone(nn.Module):
    def __init__(self, mode):
        super().__init__()
        if mode == "aud":
            self.bnet, width = BNetAud(), CHANNEL
        else:
            self.bnet, width = BNet(), DIMS[mode] + CHANNEL
        self.lstm = nn.LSTM(input_size=width, hidden_size=HIDDEN, num_layers=1,
                            batch_first=True, bidirectional=True)
        self.fc1 = nn.Linear(HIDDEN * 2, 100)
        self.fc2 = nn.Linear(100, 2)

    def forward(self, x):
        x = self.bnet(x)
        x = x.view(-1, SEQ_LEN, x.shape[-1])
        out, _ = self.lstm(x, None)
        return self.fc2(F.relu(self.fc1(out))).view(-1, 2)


MODES = ("place", "cast", "act", "aud")


class LGSS(nn.Module):
    """SceneSeg's LGSS: a branch for each modality of `mode` (its
    `cfg.dataset.mode`), their outputs weighted by its ratios and summed."""

    def __init__(self, mode=MODES):
        super().__init__()
        self.mode = mode
        for m in mode:
            setattr(self, f"bnet_{m}", LGSSone(m))

    def forward(self, place, cast, act, aud):
        out = 0
        for k, (m, x) in enumerate(zip(MODES, (place, cast, act, aud))):
            if m in self.mode:
                out = out + RATIO[k] * getattr(self, f"bnet_{m}")(x)
        return out


def read_movie(root, imdb_id):
    """One movie of the tree, per shot, as SceneSeg's data code reads it."""
    with open(os.path.join(root, "shot_movie318", f"{imdb_id}.txt")) as f:
        n = sum(1 for line in f if line.strip())
    place = np.stack([np.load(os.path.join(root, "place_feat", imdb_id, f"shot_{s:04d}.npy"))
                      for s in range(n)])
    aud = np.stack([np.load(os.path.join(root, "aud_feat", imdb_id, f"shot_{s:04d}.npy"))
                    for s in range(n)])
    with open(os.path.join(root, "cast_feat", f"{imdb_id}.pkl"), "rb") as f:
        cast_dict = pickle.load(f)
    with open(os.path.join(root, "act_feat", f"{imdb_id}.pkl"), "rb") as f:
        act_dict = pickle.load(f)
    cast = np.stack([np.mean(cast_dict[f"{s:04d}"], axis=0) for s in range(n)])
    act = np.stack([act_dict[f"{s:04d}"] for s in range(n)])
    return [torch.from_numpy(a.astype(np.float32)) for a in (place, cast, act, aud)]


def windows(features, n):
    """[sequences, seq_len, shot_num, ...] for every boundary of the movie."""
    rows = []
    for start in range(0, n - 1, SEQ_LEN):
        valid = min(SEQ_LEN, n - 1 - start)
        for t in range(SEQ_LEN):
            b = start + min(t, valid - 1)
            rows.extend(min(max(b - SHOT_NUM // 2 + 1 + j, 0), n - 1) for j in range(SHOT_NUM))
    x = features[torch.tensor(rows)]
    return x.view(-1, SEQ_LEN, SHOT_NUM, *features.shape[1:])


class Evil:
    """What a hostile checkpoint carries: unpickling it runs a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--full", action="store_true", help="SceneSeg's widths")
    ap.add_argument("--mode", default="place,cast,act,aud", help="SceneSeg's mode, e.g. place,aud")
    args = ap.parse_args()
    if args.full:
        global CHANNEL, HIDDEN, AUD_WIDTHS
        CHANNEL, HIDDEN, AUD_WIDTHS = 512, 512, [64, 192, 384, 256, 256, 512]
        DIMS.update(place=2048, cast=512, act=512)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.backends.mkldnn.enabled = False
    model = LGSS(tuple(args.mode.split(",")))
    with torch.no_grad():
        # Non-trivial BatchNorm affine parameters, so they matter.
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    with open(os.path.join(args.tree, "meta", "split318.json")) as f:
        ids = json.load(f)["all"]
    movies = {i: read_movie(args.tree, i) for i in ids}

    # Three training-mode forwards move the running statistics off their
    # initial values (and count num_batches_tracked to 3).
    model.train()
    for i in ids[:3]:
        feats = movies[i]
        n = feats[0].shape[0]
        with torch.no_grad():
            model(*[windows(f, n) for f in feats])

    os.makedirs(args.out, exist_ok=True)
    dp = nn.DataParallel(model)  # as SceneSeg's run.py: keys gain "module."
    state = {"state_dict": dp.state_dict(), "epoch": 4}
    torch.save(state, os.path.join(args.out, "model_best.pth.tar"))
    torch.save(state, os.path.join(args.out, "model_best_legacy.pth.tar"),
               _use_new_zipfile_serialization=False)
    torch.save({"state_dict": dp.state_dict(), "hook": Evil(os.path.join(args.out, "executed"))},
               os.path.join(args.out, "evil.pth.tar"))
    saved = copy.deepcopy(model.state_dict())

    # One more training-mode forward from the saved state, recorded as the
    # truth for lgss's training mode: batch statistics, then the running
    # statistics as updated by it.
    first = ids[0]
    n0 = movies[first][0].shape[0]
    train_logits = model(*[windows(f, n0) for f in movies[first]]).detach()
    audnet = model.bnet_aud.bnet.audnet
    running = {
        f"bnet_audio.bnet.audnet.bn{i}.{stat}": getattr(getattr(audnet, f"bn{i}"), stat).tolist()
        for i in range(1, 7) for stat in ("running_mean", "running_var")
    }
    model.load_state_dict(saved)

    model.eval()
    probs = {}
    with torch.no_grad():
        for i in ids:
            feats = movies[i]
            n = feats[0].shape[0]
            p = F.softmax(model(*[windows(f, n) for f in feats]), dim=1)[:, 1]
            probs[i] = p.view(-1, SEQ_LEN)  # sequences x seq_len
            valid = []
            for s, start in enumerate(range(0, n - 1, SEQ_LEN)):
                valid.extend(probs[i][s, : min(SEQ_LEN, n - 1 - start)].tolist())
            probs[i] = valid
    out = {
        "torch": torch.__version__,
        "model": {"shot_num": SHOT_NUM, "seq_len": SEQ_LEN, "sim_channel": CHANNEL,
                  "lstm_hidden_size": HIDDEN, "dims": DIMS, "stft_channels": AUD_WIDTHS,
                  "ratio": RATIO},
        "probabilities": probs,
        "train_forward": {"movie": first, "logits": train_logits.tolist(), "running_after": running},
    }
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
