"""The Python side of `cargo bench --bench extract`: the same steps as
`lgss extract`, as SceneSeg's scripts and PySceneDetect run them, timed.

    python extract_reference.py shots VIDEO          PySceneDetect's detect(ContentDetector()) on the file
    python extract_reference.py chain VIDEO MODEL.pt ARCH
        SceneSeg's chain: ShotDetect's HSV-LUV rule on OpenCV-decoded frames
        (subsampled [::d, ::d] as its VideoManager does), the middle keyframe
        of each shot (seeked and decoded with OpenCV, as its keyframe saver
        does, kept in memory instead of a JPEG), torchvision's transforms and
        the ResNet forward (CPU, batches of 16), and each shot's audio through
        librosa as pre/audio/extract_feat.py (the whole track loaded once
        with librosa.load at 16 kHz and sliced, which is faster than
        SceneSeg's per-shot video split and WAV files).

Prints one JSON line: {"seconds": ..., "steps": {...}, "shots": N, "versions": {...}}.
"""

import json
import sys
import time


def shots_pyscenedetect(video):
    import scenedetect
    from scenedetect import ContentDetector, detect

    t = time.perf_counter()
    scenes = detect(video, ContentDetector(), start_in_scene=True)
    return {"seconds": time.perf_counter() - t, "shots": len(scenes),
            "versions": {"scenedetect": scenedetect.__version__}}


def chain(video, weights, arch):
    import cv2
    import librosa
    import numpy as np
    import torch
    import torchvision
    from PIL import Image
    from torchvision import transforms

    steps = {}
    t0 = time.perf_counter()
    cap = cv2.VideoCapture(video)
    fps = cap.get(cv2.CAP_PROP_FPS)
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    d = next((f for w, f in [(3200, 12), (2100, 8), (1700, 6), (1200, 5), (900, 4), (600, 3), (400, 2)] if width >= w), 1)
    last, last_cut, cuts, n = None, None, [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frame = frame[::d, ::d, :]
        hsv = [x.astype(np.int32) for x in cv2.split(cv2.cvtColor(frame, cv2.COLOR_BGR2HSV))]
        luv = [x.astype(np.int32) for x in cv2.split(cv2.cvtColor(frame, cv2.COLOR_BGR2Luv))]
        if last is not None:
            dh = sum(np.sum(np.abs(hsv[i] - last[0][i])) / float(hsv[i].size) for i in range(3)) / 3.0
            dl = sum(np.sum(np.abs(luv[i] - last[1][i])) / float(luv[i].size) for i in range(3)) / 3.0
            if dh >= 20 and (dh - 20 >= 10 or dl + 5 * (dh - 20) > 20) and (last_cut is None or n - last_cut >= 15):
                cuts.append(n)
                last_cut = n
        last = (hsv, luv)
        n += 1
    bounds = list(zip([0] + cuts, cuts + [n]))
    steps["shots"] = time.perf_counter() - t0

    t = time.perf_counter()
    frames = []
    for start, end in bounds:
        cap.set(cv2.CAP_PROP_POS_FRAMES, start + (end - 1 - start) // 2)
        ok, frame = cap.read()
        frames.append(frame)
    cap.release()
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None)
    model.fc = torch.nn.Identity()
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    transform = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    batch = [transform(Image.fromarray(f[:, :, ::-1].copy())) for f in frames]
    with torch.no_grad():
        for i in range(0, len(batch), 16):
            model(torch.stack(batch[i:i + 16]))
    steps["place"] = time.perf_counter() - t

    t = time.perf_counter()
    data, fs = librosa.load(video, sr=16000)
    for start, end in bounds:
        chunk = data[round(start / fps * fs):round(end / fps * fs)]
        mean = (chunk.max() + chunk.min()) / 2
        span = (chunk.max() - chunk.min()) / 2
        chunk = (chunk - mean) / (span if span >= 1e-6 else 1)
        freq = librosa.core.amplitude_to_db(np.abs(librosa.core.stft(chunk, n_fft=512)))
        rate = freq.shape[1] / (len(chunk) / fs)
        thr = int(np.ceil(3 * rate / 3 * 4))
        copy_ = freq.copy()
        while freq.shape[1] < thr:
            freq = np.concatenate((freq, copy_), axis=1)
        milestone = [x[0] for x in np.array_split(np.arange(freq.shape[1]), 4)[1:]]
        np.concatenate([freq[:, m - 15:m + 15] for m in milestone], axis=1)
    steps["audio"] = time.perf_counter() - t
    return {"seconds": time.perf_counter() - t0, "steps": steps, "shots": len(bounds),
            "versions": {"opencv": cv2.__version__, "torch": torch.__version__, "librosa": librosa.__version__}}


def main():
    if sys.argv[1] == "shots":
        result = shots_pyscenedetect(sys.argv[2])
    else:
        result = chain(sys.argv[2], sys.argv[3], sys.argv[4])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
