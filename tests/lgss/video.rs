//! Video in (`lgss extract`, `lgss segment movie.mp4`) against the reference
//! tools at test time, on videos FFmpeg's lavfi sources make here: shots
//! against SceneSeg's rule on OpenCV and against PySceneDetect
//! (`tests/shotdetect_reference.py`), audio images against librosa
//! (`tests/audio_reference.py`), place features against torchvision and
//! PyTorch (`tests/place_reference.py`); hostile files refused by name.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{lgss, python, tempdir};

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(args)
        .output()
        .expect("run ffmpeg (the README's set-up installs it)");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Concatenates video sources (lavfi graphs of one `duration` each) and
/// audio sources into an H.264/AAC mp4; the cuts fall where sources meet.
fn make_video(path: &Path, size: &str, video: &[&str], audio: &[&str], extra: &[&str]) -> PathBuf {
    let mut args: Vec<String> = Vec::new();
    for v in video {
        // Size and rate are the source's options (the first filter of the chain).
        let (source, rest) = v
            .split_once(',')
            .map_or((*v, String::new()), |(s, r)| (s, format!(",{r}")));
        let rate = if source.contains(":r=") { "" } else { ":r=25" };
        let join = if source.contains('=') { ':' } else { '=' };
        args.extend([
            "-f".into(),
            "lavfi".into(),
            "-i".into(),
            format!("{source}{join}s={size}{rate}{rest}"),
        ]);
    }
    for a in audio {
        args.extend(["-f".into(), "lavfi".into(), "-i".into(), (*a).to_string()]);
    }
    let n = video.len();
    let mut graph = String::new();
    for i in 0..n {
        graph.push_str(&format!("[{i}:v]"));
        if !audio.is_empty() {
            graph.push_str(&format!("[{}:a]", n + i));
        }
    }
    graph.push_str(&format!(
        "concat=n={n}:v=1:a={}[v]{}",
        u8::from(!audio.is_empty()),
        if audio.is_empty() { "" } else { "[a]" }
    ));
    args.extend(["-filter_complex".into(), graph, "-map".into(), "[v]".into()]);
    if !audio.is_empty() {
        args.extend(["-map".into(), "[a]".into(), "-c:a".into(), "aac".into()]);
    }
    args.extend(["-c:v", "libx264", "-pix_fmt", "yuv420p"].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(path.display().to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    ffmpeg(&refs);
    path.to_path_buf()
}

/// Four clean cuts (frames 30, 70, 95), stereo tones and noise.
fn cuts_video(dir: &Path, size: &str) -> PathBuf {
    make_video(
        &dir.join(format!("cuts_{size}.mp4")),
        size,
        &[
            "color=c=red:d=1.2",
            "testsrc2=d=1.6",
            "smptebars=d=1.0",
            "color=c=blue:d=1.4",
        ],
        &[
            "sine=f=440:d=1.2:r=44100,aformat=channel_layouts=stereo",
            "sine=f=880:d=1.6:r=44100,aformat=channel_layouts=stereo",
            "anoisesrc=d=1.0:r=44100:a=0.3,aformat=channel_layouts=stereo",
            "sine=f=220:d=1.4:r=44100,aformat=channel_layouts=stereo",
        ],
        &[],
    )
}

/// Hue shifts of growing size (differences near the thresholds, where
/// SceneSeg's Luv rule decides), a two-frame flash, and a fractal.
fn near_video(dir: &Path) -> PathBuf {
    make_video(
        &dir.join("near.mp4"),
        "192x108",
        &[
            "testsrc2=d=0.8",
            "testsrc2=d=0.8,hue=h=12",
            "testsrc2=d=0.8,hue=h=24",
            "testsrc2=d=0.8,hue=h=36,eq=saturation=0.7",
            "color=c=white:d=0.08",
            "testsrc2=d=0.8,hue=h=36,eq=saturation=0.7",
            "mandelbrot,trim=duration=1.0",
        ],
        &[],
        &[],
    )
}

fn extract(video: &Path, root: &Path, extra: &[&str]) -> String {
    let out = lgss()
        .arg("extract")
        .arg(video)
        .arg("--out")
        .arg(root)
        .args(extra)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "extract {}: {err}", video.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Shot starts after the first, from the tree's shot file.
fn cuts_of(root: &Path, id: &str) -> Vec<u64> {
    let text = std::fs::read_to_string(root.join("shot_movie318").join(format!("{id}.txt"))).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

fn reference(script: &str, args: &[&Path], extra: &[&str]) -> serde_json::Value {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir = tempdir(&format!(
        "ref-{}",
        CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let out_json = dir.join("out.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join(script);
    let mut cmd = Command::new(python());
    cmd.arg(&script).args(args).arg(&out_json).args(extra);
    // argv order: the script's positional arguments, then OUT.json, then flags.
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(&out_json).unwrap()).unwrap()
}

fn stats_rows(root: &Path, id: &str) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(root.join("shot_stats").join(format!("{id}.csv"))).unwrap();
    text.lines()
        .skip(1)
        .map(|l| l.split(',').map(|x| x.parse().unwrap_or(f64::NAN)).collect())
        .collect()
}

fn u64s(v: &serde_json::Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

/// SceneSeg's HSV-LUV detector: the same cuts as the reference on OpenCV
/// fed the same frames; HSV differences equal to the last digit; Luv
/// within 2 levels (OpenCV's 8-bit Luv table and lgss's formula differ by
/// at most one level a pixel, so a mean absolute frame difference by at
/// most two).
#[test]
fn hsv_luv_shots_match_sceneseg_on_opencv() {
    let dir = tempdir("video-hsvluv");
    let videos = [
        cuts_video(&dir, "192x108"),
        near_video(&dir),
        cuts_video(&dir, "640x360"),
    ];
    for video in &videos {
        let root = dir.join("tree");
        extract(video, &root, &["--stats"]);
        let id = video.file_stem().unwrap().to_str().unwrap();
        let want = reference("shotdetect_reference.py", &[video, Path::new("hsv-luv")], &[]);
        assert_eq!(cuts_of(&root, id), u64s(&want["cuts"]), "{id}: cuts");
        let rows = stats_rows(&root, id);
        let want_rows = want["stats"].as_array().unwrap();
        assert_eq!(rows.len(), want_rows.len(), "{id}: frames");
        for (got, want) in rows.iter().zip(want_rows) {
            let want: Vec<f64> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(got[..5], want[..5], "{id}: HSV stats of frame {}", want[0]);
            for (g, w) in got[5..].iter().zip(&want[5..]) {
                assert!(
                    (g - w).abs() <= 2.0,
                    "{id}: Luv stats of frame {}: {g} vs {w}",
                    want[0]
                );
            }
        }
    }
}

/// PySceneDetect's ContentDetector: the same cuts as `scenedetect` itself,
/// both fed lgss's frames and reading the file on its own; frame scores
/// equal where no resize happens (frames under 256 pixels wide).
#[test]
fn content_shots_match_pyscenedetect() {
    let dir = tempdir("video-content");
    let videos = [
        cuts_video(&dir, "192x108"),
        near_video(&dir),
        cuts_video(&dir, "640x360"),
    ];
    for video in &videos {
        let root = dir.join("tree");
        extract(video, &root, &["--detector", "content", "--stats"]);
        let id = video.file_stem().unwrap().to_str().unwrap();
        let got = cuts_of(&root, id);
        let want = reference("shotdetect_reference.py", &[video, Path::new("content")], &[]);
        assert_eq!(
            got,
            u64s(&want["cuts"]),
            "{id}: cuts against ContentDetector on the same frames"
        );
        let file_api = reference(
            "shotdetect_reference.py",
            &[video, Path::new("content")],
            &["--file-api"],
        );
        assert_eq!(
            got,
            u64s(&file_api["cuts"]),
            "{id}: cuts against scenedetect.detect()"
        );
        if !id.contains("640x360") {
            let rows = stats_rows(&root, id);
            for (row, w) in rows.iter().zip(want["stats"].as_array().unwrap()) {
                assert_eq!(
                    row[1],
                    w[1].as_f64().unwrap(),
                    "{id}: content_val of frame {}",
                    row[0]
                );
            }
        }
    }
}

/// ulp of an f32 near `x`.
fn ulp(x: f64) -> f64 {
    let x = x.abs().max(f64::from(f32::MIN_POSITIVE)) as f32;
    f64::from(f32::from_bits(x.to_bits() + 1) - x)
}

/// Audio images as SceneSeg's script makes them with librosa, from the
/// same 16 kHz samples: within 8 ulp of the image's largest |dB| (f32
/// magnitudes, log10 and the ×10 each round; numpy's and libm's log10 may
/// differ by an ulp or two).
#[test]
fn audio_images_match_librosa() {
    let dir = tempdir("video-audio");
    let stereo = cuts_video(&dir, "192x108");
    // Two audio tracks: the first is the movie's.
    let two = dir.join("two_tracks.mkv");
    ffmpeg(&[
        "-i",
        stereo.to_str().unwrap(),
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=d=5.2:r=48000:a=0.8",
        "-map",
        "0:v",
        "-map",
        "0:a",
        "-map",
        "1:a",
        "-c:v",
        "copy",
        "-c:a",
        "flac",
        two.to_str().unwrap(),
    ]);
    for video in [&stereo, &two] {
        let root = dir.join("tree");
        extract(video, &root, &[]);
        let id = video.file_stem().unwrap().to_str().unwrap();
        let r = reference("audio_reference.py", &[video, &root, Path::new(id)], &[]);
        for (s, (err, scale)) in r["max_abs"]
            .as_array()
            .unwrap()
            .iter()
            .zip(r["max_value"].as_array().unwrap())
            .enumerate()
        {
            let (err, scale) = (err.as_f64().unwrap(), scale.as_f64().unwrap());
            assert!(
                err <= 8.0 * ulp(scale),
                "{id} shot {s}: |Δ| {err} dB over 8 ulp of {scale}"
            );
        }
        let res = &r["resampler"];
        eprintln!("{id}: FFmpeg soxr vs librosa.load: {res}");
        // librosa's path quantises to 16 bits first (SceneSeg's WAV): half
        // a step of 2^-15 a sample, plus the resampler's own error.
        assert!(res["max_abs"].as_f64().unwrap() < 1e-3, "{id}: {res}");
    }
}

/// Place features of a randomly initialised torchvision ResNet-18 (built
/// and exported at test time) against torchvision's transforms and
/// PyTorch's forward on the same keyframes: lgss's distance from the
/// float64 forward is within 4× PyTorch's own float32 distance from it
/// (the transforms are exact; the network sums in another order).
#[test]
fn place_features_match_torchvision() {
    let dir = tempdir("video-place");
    let onnx = dir.join("resnet18.onnx");
    let weights = dir.join("resnet18.pt");
    let out = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/place_reference.py"))
        .args(["export".as_ref(), onnx.as_os_str(), weights.as_os_str()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Upscaled (192×108 → 455×256) and downscaled (640×360 → 455×256) keyframes.
    for size in ["192x108", "640x360"] {
        let video = cuts_video(&dir, size);
        let root = dir.join("tree");
        let mut args = vec!["--place-model", onnx.to_str().unwrap()];
        for runtime in ["tract", "ort-cpu"] {
            args.extend(["--place-runtime", runtime]);
            extract(&video, &root, &args);
            let id = video.file_stem().unwrap().to_str().unwrap();
            let r = reference(
                "place_reference.py",
                &[Path::new("compare"), &video, &root, Path::new(id), &weights],
                &[],
            );
            assert_eq!(r["shape"], r["want_shape"], "{id}");
            let torch = r["torch_f32_err"].as_array().unwrap();
            for (s, err) in r["lgss_err"].as_array().unwrap().iter().enumerate() {
                let (err, bound) = (err.as_f64().unwrap(), 4.0 * torch[s].as_f64().unwrap());
                assert!(err <= bound, "{id} {runtime} shot {s}: {err} > {bound}");
            }
            args.truncate(2);
        }
    }
}

/// Bad and hostile videos: a clear error naming the file, nothing written
/// for them, no other file opened (playlists and concat lists refused).
#[test]
fn hostile_videos_are_refused_by_name() {
    let dir = tempdir("video-hostile");
    let good = cuts_video(&dir, "192x108");
    let root = dir.join("tree");
    let case = |path: &Path, what: &str| {
        let out = lgss()
            .arg("extract")
            .arg(path)
            .arg("--out")
            .arg(&root)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}: succeeded", path.display());
        assert!(
            err.contains(&path.display().to_string()) && err.contains(what),
            "{}: expected \"{what}\" in:\n{err}",
            path.display()
        );
    };
    let fifo = dir.join("pipe.mp4");
    crate::common::mkfifo(&fifo);
    case(&fifo, "a named pipe (FIFO), not a regular file");
    let empty = dir.join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    case(&empty, "empty file");
    let text = dir.join("notes.mp4");
    std::fs::write(&text, b"not a video at all, just words\n").unwrap();
    case(&text, "not a video FFmpeg can read");
    // A playlist and a concat list naming a real video (and a FIFO, which
    // would hang a reader that followed it): refused, not followed.
    let m3u8 = dir.join("list.m3u8");
    std::fs::write(
        &m3u8,
        format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:5\n#EXTINF:5,\n{}\n#EXTINF:5,\n{}\n#EXT-X-ENDLIST\n",
            good.display(),
            fifo.display()
        ),
    )
    .unwrap();
    case(&m3u8, "not on whitelist");
    let concat = dir.join("list.txt");
    std::fs::write(
        &concat,
        format!(
            "ffconcat version 1.0\nfile '{}'\nfile '{}'\n",
            good.display(),
            fifo.display()
        ),
    )
    .unwrap();
    case(&concat, "not on whitelist");
    // No video stream.
    let audio_only = dir.join("tone.m4a");
    ffmpeg(&["-f", "lavfi", "-i", "sine=d=1", audio_only.to_str().unwrap()]);
    case(&audio_only, "no video stream");
    // Truncated in the middle, index at the end: FFmpeg cannot open it.
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.join("truncated.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    case(&cut, "not a video FFmpeg can read");
    // A frame size past the limit, refused before decoding.
    let huge = dir.join("huge.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=s=8000x5000:d=0.04",
        "-c:v",
        "ffv1",
        huge.to_str().unwrap(),
    ]);
    case(&huge, "larger than the 36000000-pixel limit");
    // A URL is not a local file.
    case(Path::new("http://127.0.0.1:9/movie.mp4"), "no such file");
    // Nothing of the refused videos reached the tree.
    let listed = std::fs::read_dir(&root).map(|d| d.count()).unwrap_or(0);
    assert!(
        !root.join("meta/split318.json").exists(),
        "{listed} entries written"
    );
    // A video truncated with its index first (faststart): decoded up to
    // the damage, with FFmpeg's words as a warning.
    let fast = dir.join("fast.mp4");
    ffmpeg(&[
        "-i",
        good.to_str().unwrap(),
        "-c",
        "copy",
        "-movflags",
        "+faststart",
        fast.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&fast).unwrap();
    let damaged = dir.join("damaged.mp4");
    std::fs::write(&damaged, &bytes[..bytes.len() * 3 / 4]).unwrap();
    let out = lgss()
        .arg("extract")
        .arg(&damaged)
        .arg("--out")
        .arg(&root)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("decoded past damage"), "{err}");
}

/// Variable frame rate (frames by timestamp), rotation metadata, and no
/// audio track (every shot SceneSeg's silence).
#[test]
fn frame_rate_rotation_and_silence() {
    let dir = tempdir("video-quirks");
    let good = cuts_video(&dir, "192x108");
    // VFR: 2 s at 25 fps, then 2 s at 50 fps, in one stream; frames are
    // taken by timestamp at the average rate, so the cut stays at 2 s.
    let vfr = make_video(
        &dir.join("vfr.mp4"),
        "192x108",
        &["testsrc2=d=2", "color=c=red:d=2:r=50"],
        &[],
        &["-fps_mode", "passthrough"],
    );
    let root = dir.join("tree");
    extract(&vfr, &root, &[]);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("meta/videos/vfr.json")).unwrap()).unwrap();
    assert_eq!(meta["variable_frame_rate"], true, "{meta}");
    let fps = meta["fps_num"].as_f64().unwrap() / meta["fps_den"].as_f64().unwrap();
    let cuts = cuts_of(&root, "vfr");
    assert_eq!(cuts.len(), 1, "{cuts:?}");
    assert!(
        (cuts[0] as f64 / fps - 2.0).abs() <= 1.0 / fps,
        "cut at frame {} of {fps} fps",
        cuts[0]
    );
    // Rotated 90°: frames come upright (portrait), as players show them.
    let rotated = dir.join("rotated.mp4");
    ffmpeg(&[
        "-i",
        good.to_str().unwrap(),
        "-c",
        "copy",
        "-metadata:s:v:0",
        "rotate=90",
        rotated.to_str().unwrap(),
    ]);
    extract(&rotated, &root, &[]);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("meta/videos/rotated.json")).unwrap()).unwrap();
    assert_eq!(
        (meta["width"].as_u64(), meta["height"].as_u64()),
        (Some(108), Some(192)),
        "{meta}"
    );
    assert_eq!(cuts_of(&root, "rotated"), [30, 70, 95]);
    // No audio track: SceneSeg's stand-in, 4 s of silence, every shot.
    let silent = dir.join("silent.mp4");
    ffmpeg(&[
        "-i",
        good.to_str().unwrap(),
        "-an",
        "-c",
        "copy",
        silent.to_str().unwrap(),
    ]);
    let said = extract(&silent, &root, &[]);
    assert!(said.contains("no audio track"), "{said}");
    let movie = lgss::data::scene318::load(&root, "silent").unwrap().movie;
    let audio = movie.features(lgss::data::Modality::Audio).unwrap();
    let first = audio[[0, 0]];
    assert!((first + 100.0).abs() < 1e-4 && audio.iter().all(|&v| v == first));
}

/// `lgss segment movie.mp4`: a place+audio model (trained here on a
/// synthetic scene318 tree) and a random ResNet-18 with 64 outputs as the
/// place network; the scenes at the video's frame rate, the EDL and OTIO
/// pointing at the video, every format read back by its users' tools
/// (OpenTimelineIO, pycmx, webvtt-py); models that cannot take video
/// refused before anything is decoded.
#[test]
fn segment_a_video_file() {
    let dir = tempdir("video-segment");
    let tree = dir.join("synthetic");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = lgss().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let os = |s: &str| std::ffi::OsStr::new(s).to_owned();
    run(&[
        &os("synth"),
        &os("--out"),
        tree.as_os_str(),
        &os("--movies"),
        &os("4"),
        &os("--seed"),
        &os("1"),
        &os("--size"),
        &os("small"),
        &os("--layout"),
        &os("scene318"),
        &os("--audio"),
        &os("stft"),
        &os("--shots"),
        &os("30..40"),
    ]);
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/sceneseg-place-audio-small.toml");
    let runs = dir.join("run");
    run(&[
        &os("train"),
        &os("--data"),
        tree.as_os_str(),
        &os("--config"),
        config.as_os_str(),
        &os("--out"),
        runs.as_os_str(),
        &os("--epochs"),
        &os("1"),
    ]);
    let model = dir.join("model.onnx");
    crate::common::export_onnx(&runs.join("best.safetensors"), &model);
    let place = dir.join("place.onnx");
    // The user-facing export script, with a seeded random network.
    let out = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/export-place-model"))
        .args(["--arch", "resnet18", "--random", "--features", "64", "--out"])
        .arg(&place)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let video = cuts_video(&dir, "192x108");
    let video_abs = std::path::absolute(&video).unwrap();
    let seg = dir.join("scenes");
    let features = dir.join("features");
    // `segment` of the video into `out`, the features kept and reused.
    let segment = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            os("segment"),
            video.as_os_str().to_owned(),
            os("--runtime"),
            os("tract"),
            os("--model"),
            model.as_os_str().to_owned(),
            os("--place-model"),
            place.as_os_str().to_owned(),
            os("--features"),
            features.as_os_str().to_owned(),
            os("--out"),
            out.as_os_str().to_owned(),
        ];
        args.extend(extra.iter().map(|a| os(a)));
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        run(&refs);
    };
    for format in ["json", "edl", "otio", "webvtt", "csv"] {
        segment(&seg, &["--format", format]);
    }
    let id = video.file_stem().unwrap().to_str().unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(seg.join(format!("{id}.json"))).unwrap()).unwrap();
    assert_eq!(json["fps"], 25.0, "{json}");
    assert_eq!(json["n_shots"], 4, "{json}");
    assert_eq!(json["media"], video_abs.display().to_string(), "{json}");
    assert_eq!(json["file"], video_abs.display().to_string(), "{json}");
    let last = json["scenes"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["last_frame"], 129, "{json}");
    assert_eq!(last["end"], "00:00:05.200", "{json}");
    let counts = crate::common::read_back_scenes(&[format!(
        "25,{},{}",
        json["rule"].as_str().unwrap(),
        seg.display()
    )]);
    for ext in ["edl", "otio", "vtt", "csv"] {
        assert_eq!(counts[ext], 1, "{counts}");
    }
    // The features were extracted once and reused.
    assert!(features.join("shot_movie318").join(format!("{id}.txt")).exists());

    // Its page: the video with the scenes as chapters, a thumbnail per
    // scene showing the scene's frame (OpenCV decodes the truth), clicks
    // that seek to the scene's first frame. A cut at every boundary (the
    // threshold rule at 0.001), so each of the four sources is a scene.
    let pages = dir.join("pages");
    segment(&pages, &["--html", "--local", "--threshold", "0.001"]);
    let seg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pages.join(format!("{id}.json"))).unwrap()).unwrap();
    let scenes = seg["scenes"].as_array().unwrap();
    assert_eq!(scenes.len(), 4, "{seg}");
    let page = pages.join(format!("{id}.html"));
    let shot = crate::pages::screenshot("video-page.png");
    let seen = crate::pages::page_check(&[
        &os("movie"),
        page.as_os_str(),
        shot.as_os_str(),
        &os("--video"),
        video.as_os_str(),
    ]);
    let urls = [
        seen["page_url"].as_str().unwrap(),
        seen["video_url"].as_str().unwrap(),
    ];
    crate::pages::assert_movie_page(&seen, &seg, &urls);
    assert_eq!(seen["video"], true);
    crate::common::assert_close("video duration", seen["duration"].as_f64().unwrap(), 5.2, 0.05);
    let frame = 1.0 / 25.0;
    let start = |k: usize| scenes[k]["first_frame"].as_f64().unwrap() / 25.0;
    let cues = seen["chapters"]["cues"].as_array().unwrap();
    assert_eq!(seen["chapters"]["kind"], "chapters");
    assert_eq!(cues.len(), scenes.len(), "one chapter per scene");
    for (k, cue) in cues.iter().enumerate() {
        // WebVTT times are in milliseconds.
        crate::common::assert_close("chapter start", cue[0].as_f64().unwrap(), start(k), 5e-4);
    }
    // Played across the first cut, the page moved its current scene by itself.
    assert_eq!(seen["playing"]["before"], 0, "{seen}");
    assert!(seen["playing"]["time"].as_f64().unwrap() >= start(1), "{seen}");
    for c in seen["clicks"].as_array().unwrap() {
        let k = c["scene"].as_u64().unwrap() as usize;
        let t = c["time"].as_f64().unwrap();
        assert!(
            (t - start(k)).abs() < frame,
            "scene {k}: seeked to {t}, starts at {}",
            start(k)
        );
    }
    let b = seen["point_click"]["boundary"].as_u64().unwrap() as usize;
    let after = (seg["shot_end_frame"][b].as_f64().unwrap() + 1.0) / 25.0;
    assert!(
        (seen["point_click"]["time"].as_f64().unwrap() - after).abs() < frame,
        "{seen}"
    );
    // Each thumbnail shows its scene's frame: the extraction's own (its
    // keyframe pass wrote one a shot), then, for a tree without them, one
    // FFmpeg pass at page time.
    let thumbnails = features.join("thumbnails").join(id);
    assert_eq!(std::fs::read_dir(&thumbnails).unwrap().count(), 4, "one a shot");
    let assert_thumbnails = |seen: &serde_json::Value| {
        let thumbs = seen["thumbnail_diffs"].as_array().unwrap();
        assert_eq!(thumbs.len(), scenes.len());
        for (k, t) in thumbs.iter().enumerate() {
            assert_eq!(t["width"], 160, "{t}");
            // JPEG and the two area filters differ by a few levels; another
            // scene's frame by tens.
            let (own, other) = (t["own"].as_f64().unwrap(), t["nearest_other"].as_f64().unwrap());
            assert!(own < 12.0 && own < other / 2.0, "scene {k}'s thumbnail: {t}");
        }
    };
    assert_thumbnails(&seen);
    std::fs::remove_dir_all(&thumbnails).unwrap();
    let pages_again = dir.join("pages-again");
    segment(&pages_again, &["--html", "--local", "--threshold", "0.001"]);
    let again = crate::pages::page_check(&[
        &os("movie"),
        pages_again.join(format!("{id}.html")).as_os_str(),
        crate::pages::screenshot("video-page-again.png").as_os_str(),
        &os("--video"),
        video.as_os_str(),
    ]);
    assert_thumbnails(&again);
    crate::pages::assert_valid_html(&[&page]);

    // Models that cannot take video are refused before decoding.
    let refused = |args: &[&std::ffi::OsStr], what: &str| {
        let out = lgss().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(what), "{args:?}: {err}");
    };
    refused(
        &[
            &os("segment"),
            video.as_os_str(),
            &os("--runtime"),
            &os("tract"),
            &os("--model"),
            model.as_os_str(),
        ],
        "the model takes place features: give --place-model",
    );
}

/// A folder of videos extracted in two shards into one tree (disjoint, all
/// covered, the split listing every movie), then again with --skip-done:
/// nothing redone; other settings redo it.
#[test]
fn a_folder_extracts_in_shards_and_skips_what_is_done() {
    let dir = tempdir("video-shards");
    let videos = dir.join("videos");
    std::fs::create_dir_all(&videos).unwrap();
    for (name, source) in [
        ("a", "testsrc2=d=1"),
        ("b", "smptebars=d=1"),
        ("c", "color=c=red:d=1"),
    ] {
        make_video(
            &videos.join(format!("{name}.mp4")),
            "192x108",
            &[source, "color=c=blue:d=1"],
            &[],
            &[],
        );
    }
    let root = dir.join("tree");
    let mut seen = Vec::new();
    for shard in ["0/2", "1/2"] {
        let said = extract(&videos, &root, &["--shard", shard, "--json"]);
        seen.extend(
            said.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].clone()),
        );
    }
    seen.sort_by_key(|v| v.to_string());
    assert_eq!(seen, ["a", "b", "c"]);
    let split: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("meta/split318.json")).unwrap()).unwrap();
    let mut all: Vec<&str> = split["all"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    all.sort();
    assert_eq!(all, ["a", "b", "c"]);
    let out = lgss()
        .arg("extract")
        .arg(&videos)
        .arg("--out")
        .arg(&root)
        .arg("--skip-done")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.matches("skipped").count() == 3,
        "{err}"
    );
    let out = lgss()
        .arg("extract")
        .arg(&videos)
        .args(["--out"])
        .arg(&root)
        .args(["--skip-done", "--detector", "content"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("skipped"), "{err}");
    // The tree reads everywhere but scores nowhere.
    let out = lgss().arg("eval").arg(&root).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("ground truth"), "{err}");
}

/// `--keyframes`: each shot's middle keyframe as a JPEG, read back by
/// OpenCV and compared with that frame as FFmpeg decodes it: one file a
/// shot, the right frame (PSNR ≥ 38 dB against it, and higher than
/// against its neighbours' frames where they differ).
#[test]
fn keyframes_are_the_middle_frames_as_jpeg() {
    let dir = tempdir("video-keyframes");
    let video = make_video(
        &dir.join("moving.mp4"),
        "192x108",
        &[
            "testsrc2=d=1.2",
            "smptebars=d=1.0",
            "mandelbrot,trim=duration=1.2",
        ],
        &[],
        &[],
    );
    let root = dir.join("tree");
    extract(&video, &root, &["--keyframes"]);
    let code = r#"
import subprocess, sys, json
from pathlib import Path
import cv2, numpy as np
video, root = sys.argv[1], Path(sys.argv[2])
shots = [[int(x) for x in l.split()[:2]] for l in (root / "shot_movie318" / "moving.txt").read_text().splitlines()]
raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", video, "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
                     capture_output=True, check=True).stdout
frames = np.frombuffer(raw, np.uint8).reshape(-1, 108, 192, 3).astype(np.float64)
def psnr(a, b):
    mse = np.mean((a - b) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255 ** 2 / mse)
files = sorted((root / "shot_keyf" / "moving").iterdir())
out = []
for s, (first, last) in enumerate(shots):
    mid = first + (last - first) // 2
    img = cv2.imread(str(root / "shot_keyf" / "moving" / f"shot_{s:04d}_img_1.jpg")).astype(np.float64)
    out.append([psnr(img, frames[mid]), psnr(img, frames[max(mid - 3, 0)]), psnr(img, frames[min(mid + 3, len(frames) - 1)])])
print(json.dumps({"files": len(files), "shots": len(shots), "psnr": out}))
"#;
    let r: serde_json::Value =
        serde_json::from_str(crate::common::run_python(code, &[&video, &root]).trim()).unwrap();
    assert_eq!(r["files"], r["shots"], "{r}");
    for (s, p) in r["psnr"].as_array().unwrap().iter().enumerate() {
        let p: Vec<f64> = p
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert!(p[0] >= 38.0, "shot {s}: {p:?}");
        assert!(
            p[0] >= p[1] && p[0] >= p[2],
            "shot {s}: not the middle frame: {p:?}"
        );
    }
}
