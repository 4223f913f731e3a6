"""PyTorch LGSS as written in the seed solution (BNet with Conv2d + MaxPool3d,
Cos with Conv2d + cosine_similarity, BiLSTM, fc1/fc2, ratio-weighted sum),
trained on the same windows as `lgss train`, to time it on the same machine.

usage: lgss_reference.py DATA_DIR SHOT_NUM SEQ_LEN C H BATCH N_BATCHES [DEVICE]
DEVICE: cpu (default) or cuda (TF32 off, as lgss runs by default)
prints: windows_per_s
"""
import glob
import pickle
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MODALITIES = ["place", "cast", "action", "audio"]
RATIO = [0.5, 0.2, 0.2, 0.1]


class Cos(nn.Module):
    def __init__(self, shot_num, channel):
        super().__init__()
        self.shot_num = shot_num
        self.conv1 = nn.Conv2d(1, channel, kernel_size=(shot_num // 2, 1))

    def forward(self, x):
        x = x.view(-1, 1, x.shape[2], x.shape[3])
        part1, part2 = torch.split(x, [self.shot_num // 2] * 2, dim=2)
        part1 = self.conv1(part1).squeeze()
        part2 = self.conv1(part2).squeeze()
        return F.cosine_similarity(part1, part2, dim=2)


class BNet(nn.Module):
    def __init__(self, shot_num, channel):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channel, kernel_size=(shot_num, 1))
        self.max3d = nn.MaxPool3d(kernel_size=(channel, 1, 1))
        self.cos = Cos(shot_num, channel)

    def forward(self, x):
        context = x.view(x.shape[0] * x.shape[1], 1, -1, x.shape[-1])
        context = self.conv1(context)
        context = self.max3d(context)
        context = context.squeeze()
        sim = self.cos(x)
        return torch.cat((context, sim), dim=1)


class LGSSone(nn.Module):
    def __init__(self, dim, shot_num, seq_len, channel, hidden):
        super().__init__()
        self.seq_len = seq_len
        self.bnet = BNet(shot_num, channel)
        self.lstm = nn.LSTM(dim + channel, hidden, 1, batch_first=True, bidirectional=True)
        self.fc1 = nn.Linear(hidden * 2, 100)
        self.fc2 = nn.Linear(100, 2)

    def forward(self, x):
        x = self.bnet(x)
        x = x.view(-1, self.seq_len, x.shape[-1])
        out, _ = self.lstm(x, None)
        out = F.relu(self.fc1(out))
        return self.fc2(out).view(-1, 2)


class LGSS(nn.Module):
    def __init__(self, dims, shot_num, seq_len, channel, hidden):
        super().__init__()
        self.branches = nn.ModuleList(LGSSone(d, shot_num, seq_len, channel, hidden) for d in dims)

    def forward(self, xs):
        out = 0
        for r, b, x in zip(RATIO, self.branches, xs):
            out += r * b(x)
        return out


class Movies:
    """The movies of DATA_DIR (tt*.pkl, sorted) in one bank per modality on
    `device`, with their ground truth; windows gathered as `lgss train` does."""

    def __init__(self, data, shot_num, seq_len, device):
        self.shot_num, self.seq_len, self.device = shot_num, seq_len, device
        feats = {m: [] for m in MODALITIES}
        self.gts, self.offsets, self.lengths = [], [], []
        total = 0
        for f in sorted(glob.glob(data + "/tt*.pkl")):
            d = pickle.load(open(f, "rb"))
            n = d["place"].shape[0]
            self.offsets.append(total)
            self.lengths.append(n)
            total += n
            for m in MODALITIES:
                feats[m].append(d[m].float())
            self.gts.append(d["scene_transition_boundary_ground_truth"].long())
        self.bank = [torch.cat(feats[m]).to(device) for m in MODALITIES]

    def sequences(self, movies):
        """(movie, start, valid) of seq_len boundaries each, for `movies`."""
        return [(mi, start, min(self.seq_len, self.lengths[mi] - 1 - start))
                for mi in movies for start in range(0, self.lengths[mi] - 1, self.seq_len)]

    def batch(self, chunk):
        """Inputs and targets (-100 on padding) of sequences `chunk`; windows
        of shot_num shots, edges replicated."""
        rows, target = [], []
        for mi, start, valid in chunk:
            for t in range(self.seq_len):
                b = start + min(t, valid - 1)
                for j in range(self.shot_num):
                    s = min(max(b - self.shot_num // 2 + 1 + j, 0), self.lengths[mi] - 1)
                    rows.append(self.offsets[mi] + s)
                target.append(int(self.gts[mi][start + t]) if t < valid else -100)
        idx = torch.tensor(rows, device=self.device)
        xs = [f.index_select(0, idx).view(len(chunk), self.seq_len, self.shot_num, -1) for f in self.bank]
        return xs, torch.tensor(target, device=self.device)


def cuda_without_tf32(name):
    device = torch.device(name)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return device


def seed_recipe(movies, shot_num, seq_len, channel, hidden):
    """The model and optimizer as the seed solution trains them (lr 1e-3,
    L2 5e-4, class weights 0.5/5)."""
    torch.manual_seed(0)
    model = LGSS([b.shape[1] for b in movies.bank], shot_num, seq_len, channel, hidden).to(movies.device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4)
    weight = torch.tensor([0.5, 5.0], device=movies.device)
    return model, opt, weight


def parse_args(argv):
    """DATA_DIR SHOT_NUM SEQ_LEN C H A B [DEVICE]: the movies loaded on the
    device (TF32 off on CUDA), the model's sizes, and A and B as given."""
    data, shot_num, seq_len, channel, hidden, a, b = argv[1:8]
    device = cuda_without_tf32(argv[8] if len(argv) > 8 else "cpu")
    sizes = int(shot_num), int(seq_len), int(channel), int(hidden)
    return Movies(data, sizes[0], sizes[1], device), sizes, a, b


def main():
    movies, (shot_num, seq_len, channel, hidden), batch, n_batches = parse_args(sys.argv)
    batch, n_batches = int(batch), int(n_batches)
    device = movies.device
    seqs = movies.sequences(range(len(movies.lengths)))
    model, opt, weight = seed_recipe(movies, shot_num, seq_len, channel, hidden)
    batches = [seqs[i * batch:(i + 1) * batch] for i in range(n_batches + 1)]
    windows = 0
    t0 = None
    for i, chunk in enumerate(batches):
        if i == 1:  # the first batch warms up
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        xs, target = movies.batch(chunk)
        loss = F.cross_entropy(model(xs), target, weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= 1:
            windows += sum(c[2] for c in chunk)
    if device.type == "cuda":
        torch.cuda.synchronize()
    print(windows / (time.perf_counter() - t0))


if __name__ == "__main__":
    main()
