"""Reference audio features for lgss's tests: SceneSeg's `run_wav2stft`
(pre/audio/extract_feat.py) with librosa, on the 16 kHz samples lgss reads.

    python audio_reference.py VIDEO ROOT ID OUT.json

The samples come from the `ffmpeg` program with lgss's arguments (the first
audio track, the channels' mean, the SoX resampler to 16 kHz, f32), and are
cut into shots at the shot file's frames (`round((frame / fps + video start
- audio start) * 16000)`). Each shot then goes through librosa as SceneSeg's
script does, and the result is compared with lgss's `aud_feat` image.

Also measures FFmpeg's resampling against `librosa.load(sr=16000)` (soxr_hq)
of the track decoded at its own rate to 16-bit WAV, as SceneSeg's pipeline
hands it to librosa.

Writes {"shots": N, "max_abs": [...], "max_value": [...],
"resampler": {"max_abs": x, "rms": y, "signal_rms": z}}.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import librosa
import numpy as np


def ffprobe(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", path],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["streams"]


def samples_16k(path, channels):
    mix = "+".join(f"{1.0 / channels:.17f}*c{c}" for c in range(channels))
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", path, "-map", "0:a:0", "-vn", "-sn", "-dn",
         "-af", f"pan=mono|c0={mix},aresample=16000:resampler=soxr", "-f", "f32le", "-ac", "1", "pipe:1"],
        check=True, capture_output=True).stdout
    return np.frombuffer(out, np.float32)


def sceneseg_stft(data, fs=16000):
    """SceneSeg's run_wav2stft after librosa.load, verbatim in its steps."""
    k = 3
    time_unit = 3
    mean = (data.max() + data.min()) / 2
    span = (data.max() - data.min()) / 2
    if span < 1e-6:
        span = 1
    data = (data - mean) / span
    D = librosa.core.stft(data, n_fft=512)
    freq = np.abs(D)
    freq = librosa.core.amplitude_to_db(freq)
    rate = freq.shape[1] / (len(data) / fs)
    thr = int(np.ceil(time_unit * rate / k * (k + 1)))
    copy_ = freq.copy()
    while freq.shape[1] < thr:
        tmp = copy_.copy()
        freq = np.concatenate((freq, tmp), axis=1)
    n = freq.shape[1]
    milestone = [x[0] for x in np.array_split(np.arange(n), k + 1)[1:]]
    span = 15
    stft_img = []
    for i in range(k):
        stft_img.append(freq[:, milestone[i] - span:milestone[i] + span])
    return np.concatenate(stft_img, axis=1)


def main():
    video, root, movie, out = sys.argv[1:5]
    root = Path(root)
    meta = json.loads((root / "meta" / "videos" / f"{movie}.json").read_text())
    fps = meta["fps_num"] / meta["fps_den"]
    streams = ffprobe(video)
    vstream = next(s for s in streams if s["codec_type"] == "video")
    astream = next(s for s in streams if s["codec_type"] == "audio")
    offset = float(vstream.get("start_time", 0)) - float(astream.get("start_time", 0))
    data = samples_16k(video, int(astream["channels"]))
    shots = [[int(x) for x in line.split()[:2]] for line in (root / "shot_movie318" / f"{movie}.txt").read_text().splitlines()]
    at = lambda frame: max(0, round((frame / fps + offset) * 16000))
    result = {"shots": len(shots), "max_abs": [], "max_value": []}
    for s, (first, last) in enumerate(shots):
        chunk = data[at(first):at(last + 1)]
        if len(chunk) == 0:
            chunk = np.zeros(16000 * 4, np.float32)
        want = sceneseg_stft(chunk)
        got = np.load(root / "aud_feat" / movie / f"shot_{s:04d}.npy")
        assert got.shape == want.shape == (257, 90), (got.shape, want.shape)
        result["max_abs"].append(float(np.max(np.abs(got.astype(np.float64) - want))))
        result["max_value"].append(float(np.max(np.abs(want))))
    # FFmpeg's soxr against librosa.load's, on the whole track.
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "track.wav"
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", video, "-map", "0:a:0", "-f", "wav", str(wav)], check=True)
        ref, _ = librosa.load(wav, sr=16000)
    n = min(len(ref), len(data))
    diff = ref[:n].astype(np.float64) - data[:n]
    result["resampler"] = {
        "max_abs": float(np.max(np.abs(diff))),
        "rms": float(np.sqrt(np.mean(diff ** 2))),
        "signal_rms": float(np.sqrt(np.mean(ref[:n].astype(np.float64) ** 2))),
        "samples": [len(ref), len(data)],
    }
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
