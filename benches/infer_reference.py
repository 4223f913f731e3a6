"""Inference speed of the Python baselines on one movie, on the same windows
as lgss: onnxruntime on lgss's exported ONNX file (`ort`), PyTorch eager
running the seed's LGSS (lgss_reference.py) with the checkpoint's weights
(`torch`), or onnxruntime on `torch.onnx.export` of that model as written
(`ort-torch-export`).

usage: infer_reference.py ort|torch|ort-torch-export MODEL.onnx CHECKPOINT.safetensors MOVIE.pkl SHOT_NUM SEQ_LEN C H BATCH [DEVICE]
DEVICE (torch only): cpu (default) or cuda: TF32 off (as lgss runs by
default), each batch's windows copied to the GPU and the probabilities back,
as a PyTorch user's loop would; after one warm-up batch.
prints: windows_per_s
"""
import json
import pickle
import struct
import sys
import time

import numpy as np
import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from lgss_reference import LGSS, MODALITIES  # noqa: E402


def windows(movie, shot_num, seq_len, batch):
    feats = [movie[m].float().numpy() for m in MODALITIES]
    n = feats[0].shape[0]
    seqs = [(s, min(seq_len, n - 1 - s)) for s in range(0, n - 1, seq_len)]
    for i in range(0, len(seqs), batch):
        chunk = seqs[i:i + batch]
        rows = []
        for start, valid in chunk:
            for t in range(seq_len):
                b = start + min(t, valid - 1)
                rows.extend(min(max(b - shot_num // 2 + 1 + j, 0), n - 1) for j in range(shot_num))
        # The last chunk is padded to a full batch: torch.onnx.export bakes
        # the batch size into the LSTM's initial state.
        rows += rows[-shot_num * seq_len:] * (batch - len(chunk))
        idx = np.array(rows)
        yield [f[idx].reshape(batch, seq_len, shot_num, -1) for f in feats], sum(v for _, v in chunk)


def load_safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__" or k.startswith(("adam.", "train.")):
            continue
        s, e = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(b[8 + n + s:8 + n + e], dtype=np.float32).reshape(v["shape"]).copy())
    return out


def main():
    mode, onnx_path, ckpt, movie_path, shot_num, seq_len, channel, hidden, batch = sys.argv[1:10]
    shot_num, seq_len, channel, hidden, batch = map(int, (shot_num, seq_len, channel, hidden, batch))
    device = torch.device(sys.argv[10] if len(sys.argv) > 10 else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    movie = pickle.load(open(movie_path, "rb"))
    data = list(windows(movie, shot_num, seq_len, batch))
    model = LGSS([movie[m].shape[1] for m in MODALITIES], shot_num, seq_len, channel, hidden)
    state = load_safetensors(ckpt)
    renamed = {}
    for k, v in state.items():
        modality, rest = k.split(".", 1)
        renamed["branches.%d.%s" % (MODALITIES.index(modality[len("bnet_"):]), rest)] = v
    model.load_state_dict(renamed)
    model.eval()
    model.to(device)
    if mode == "ort-torch-export":
        import onnxruntime as ort

        class Prob(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, *xs):
                return torch.softmax(self.m(list(xs)), 1)[:, 1]

        class ChannelMax(torch.nn.Module):
            # torch.onnx.export writes MaxPool3d over a 4-D input as a MaxPool
            # node that onnxruntime rejects; amax over the channels is the
            # same function and exports as ReduceMax.
            def forward(self, x):
                return x.amax(1, keepdim=True)

        for b in model.branches:
            b.bnet.max3d = ChannelMax()
        onnx_path = onnx_path + ".torch-export.onnx"
        torch.onnx.export(Prob(model), tuple(torch.from_numpy(x) for x in data[0][0]), onnx_path,
                          input_names=MODALITIES, output_names=["prob"], opset_version=17, dynamo=False,
                          dynamic_axes={m: {0: "batch"} for m in MODALITIES})
        mode = "ort"
    if mode == "ort":
        import onnxruntime as ort
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        run = lambda xs: sess.run(["prob"], dict(zip(MODALITIES, xs)))[0]
    else:
        def run(xs):
            with torch.no_grad():
                return torch.softmax(model([torch.from_numpy(x).to(device) for x in xs]), 1)[:, 1].cpu()
    run(data[0][0])  # warm-up
    t0 = time.perf_counter()
    total = 0
    for xs, valid in data:
        run(xs)
        total += valid
    print(total / (time.perf_counter() - t0))


if __name__ == "__main__":
    main()
