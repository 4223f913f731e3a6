"""Reference place features for lgss's tests: torchvision's transforms and
PyTorch's forward of a randomly initialised torchvision ResNet, on the
keyframes FFmpeg decodes.

    python place_reference.py export MODEL.onnx WEIGHTS.pt [ARCH]
    python place_reference.py compare VIDEO ROOT ID WEIGHTS.pt OUT.json [ARCH]

`export` builds the network (torchvision, seeded, no weights downloaded),
drops its classifier (the output is the average pool's, as SceneSeg's
`pre/place` keeps) and writes it as ONNX with a dynamic batch, and its
weights. `compare` decodes each shot's middle frame (ShotDetect's middle
keyframe of three) with the `ffmpeg` program as lgss does, applies
SceneSeg's transforms to it as a PIL image (Resize(256), CenterCrop(224),
ToTensor, ImageNet Normalize), runs the network in float32 and float64, and
writes lgss's `place_feat` rows' differences from both.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms


def network(arch):
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None)
    model.fc = torch.nn.Identity()
    return model.eval()


def export(onnx_path, weights_path, arch):
    model = network(arch)
    x = torch.randn(2, 3, 224, 224)
    torch.onnx.export(model, (x,), onnx_path, input_names=["image"], output_names=["feature"],
                      dynamic_axes={"image": {0: "n"}, "feature": {0: "n"}}, opset_version=17, dynamo=False)
    torch.save(model.state_dict(), weights_path)


def keyframes(video, wanted, width, height):
    p = subprocess.Popen(["ffmpeg", "-v", "error", "-nostdin", "-i", video, "-map", "0:v:0", "-an",
                          "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"],
                         stdout=subprocess.PIPE)
    size = width * height * 3
    got = {}
    n = 0
    while len(got) < len(wanted):
        buf = p.stdout.read(size)
        if len(buf) < size:
            break
        if n in wanted:
            got[n] = np.frombuffer(buf, np.uint8).reshape(height, width, 3)
        n += 1
    p.kill()
    p.wait()
    return got


def compare(video, root, movie, weights_path, out, arch):
    root = Path(root)
    meta = json.loads((root / "meta" / "videos" / f"{movie}.json").read_text())
    shots = [[int(x) for x in line.split()[:2]] for line in (root / "shot_movie318" / f"{movie}.txt").read_text().splitlines()]
    middles = [first + (last - first) // 2 for first, last in shots]
    frames = keyframes(video, set(middles), meta["width"], meta["height"])
    transform = transforms.Compose([
        transforms.Resize(256),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])
    batch = torch.stack([transform(Image.fromarray(frames[m][:, :, ::-1].copy())) for m in middles])
    model = network(arch)
    model.load_state_dict(torch.load(weights_path, weights_only=True))
    with torch.no_grad():
        f32 = model(batch).numpy()
        f64 = model.double()(batch.double()).numpy()
    got = np.stack([np.load(root / "place_feat" / movie / f"shot_{s:04d}.npy") for s in range(len(shots))])
    result = {
        "shape": list(got.shape),
        "want_shape": list(f32.shape),
        # How far float32 arithmetic itself strays from float64, per shot.
        "torch_f32_err": np.max(np.abs(f32 - f64), axis=1).tolist(),
        "lgss_err": np.max(np.abs(got - f64), axis=1).tolist(),
        "lgss_vs_torch_f32": np.max(np.abs(got - f32), axis=1).tolist(),
        "scale": np.max(np.abs(f64), axis=1).tolist(),
        # The transformed inputs, to tell a transform difference from a network one.
        "input_sums": batch.double().sum(dim=(1, 2, 3)).tolist(),
    }
    with open(out, "w") as f:
        json.dump(result, f)


def main():
    if sys.argv[1] == "export":
        export(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "resnet18")
    else:
        video, root, movie, weights, out = sys.argv[2:7]
        compare(video, root, movie, weights, out, sys.argv[7] if len(sys.argv) > 7 else "resnet18")


if __name__ == "__main__":
    main()
