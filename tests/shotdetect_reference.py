"""Reference shot detection for lgss's tests, on the frames FFmpeg decodes.

    python shotdetect_reference.py VIDEO hsv-luv|content OUT.json [--file-api]

Frames come from the `ffmpeg` program with the arguments lgss uses (BGR24,
the first video stream, frames by timestamp at the average rate when the
frame rate varies), so both sides see the same pixels. Then:

- hsv-luv: SceneSeg's ShotDetect rule (`ContentDetectorHSVLUV`, threshold
  20, gap 10, Luv threshold 20, HSV weight 5, minimum shot 15 frames,
  frames subsampled `[::d, ::d]` with ShotDetect's factor for the width),
  written here after reading SceneSeg's `pre/ShotDetection`, with OpenCV's
  `cvtColor` for HSV and Luv;
- content: PySceneDetect's own `ContentDetector` (PyPI `scenedetect`), fed
  the frames one by one after `SceneManager`'s downscale (`cv2.resize`,
  linear, the larger side to 256 pixels).

With `--file-api`, `content` instead runs `scenedetect.detect()` on the file
(PySceneDetect decoding it itself, with OpenCV), as its users run it.

Writes {"frames": N, "cuts": [...], "stats": [[frame, hsv, h, s, v, (luv, l, u, v)]...]}.
"""

import json
import subprocess
import sys

import cv2
import numpy as np


def probe(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", path],
        check=True, capture_output=True, text=True,
    ).stdout
    streams = [s for s in json.loads(out)["streams"]
               if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")]
    return streams[0]


def frames(path):
    s = probe(path)
    w, h = s["width"], s["height"]
    rotation = 0
    for d in s.get("side_data_list", []):
        rotation = int(d.get("rotation", rotation))
    if rotation % 180 != 0:
        w, h = h, w
    args = ["ffmpeg", "-v", "error", "-nostdin", "-i", path, "-map", "0:v:0", "-an", "-sn", "-dn"]
    r, avg = s.get("r_frame_rate", "0/0"), s.get("avg_frame_rate", "0/0")
    def frac(x):
        n, d = (int(v) for v in x.split("/"))
        return (n, d) if n > 0 and d > 0 else None
    if frac(r) and frac(avg) and frac(r)[0] * frac(avg)[1] != frac(avg)[0] * frac(r)[1]:
        args += ["-vf", f"fps={avg}"]
    args += ["-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"]
    p = subprocess.Popen(args, stdout=subprocess.PIPE)
    size = w * h * 3
    while True:
        buf = p.stdout.read(size)
        if len(buf) < size:
            break
        yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
    p.wait()


def sceneseg_downscale(width):
    for w, f in [(3200, 12), (2100, 8), (1700, 6), (1200, 5), (900, 4), (600, 3), (400, 2)]:
        if width >= w:
            return f
    return 1


def mean_abs(a, b):
    return [np.sum(np.abs(a[i].astype(np.int32) - b[i].astype(np.int32))) / float(a[i].size) for i in range(3)]


def hsv_luv(path):
    threshold, gap, luv_threshold, weight, min_len = 20.0, 10, 20, 5, 15
    last = None
    last_cut = None
    cuts, stats, n = [], [], 0
    for num, frame in enumerate(frames(path)):
        n += 1
        d = sceneseg_downscale(frame.shape[1])
        frame = frame[::d, ::d, :]
        hsv = cv2.split(cv2.cvtColor(frame, cv2.COLOR_BGR2HSV))
        luv = cv2.split(cv2.cvtColor(frame, cv2.COLOR_BGR2Luv))
        if last is not None:
            dh = mean_abs(hsv, last[0])
            dl = mean_abs(luv, last[1])
            h_avg = sum(dh) / 3.0
            l_avg = sum(dl) / 3.0
            stats.append([num, h_avg, *dh, l_avg, *dl])
            cut = h_avg >= threshold and (h_avg - threshold >= gap
                                          or l_avg + weight * (h_avg - threshold) > luv_threshold)
            if cut and (last_cut is None or num - last_cut >= min_len):
                cuts.append(num)
                last_cut = num
        last = (hsv, luv)
    return {"frames": n, "cuts": cuts, "stats": stats}


def content(path):
    from scenedetect import ContentDetector
    from scenedetect.common import FrameTimecode

    s = probe(path)
    fps = eval(s.get("avg_frame_rate") or s["r_frame_rate"])
    detector = ContentDetector()
    cuts, stats, n = [], [], 0
    for num, frame in enumerate(frames(path)):
        n += 1
        h, w = frame.shape[:2]
        factor = max(w, h) / 256.0
        if factor > 1.0:
            frame = cv2.resize(frame, (max(1, round(w / factor)), max(1, round(h / factor))),
                               interpolation=cv2.INTER_LINEAR)
        found = detector.process_frame(FrameTimecode(num, fps), frame)
        if num > 0:
            stats.append([num, detector._frame_score])
        cuts += [c.frame_num for c in found]
    return {"frames": n, "cuts": sorted(set(cuts)), "stats": stats}


def content_file_api(path):
    from scenedetect import ContentDetector, detect

    scenes = detect(path, ContentDetector(), start_in_scene=True)
    return {"frames": scenes[-1][1].frame_num if scenes else 0,
            "cuts": [start.frame_num for start, _ in scenes[1:]], "stats": []}


def main():
    path, mode, out = sys.argv[1:4]
    if mode == "hsv-luv":
        result = hsv_luv(path)
    elif "--file-api" in sys.argv:
        result = content_file_api(path)
    else:
        result = content(path)
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
