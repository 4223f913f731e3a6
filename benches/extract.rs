//! Video extraction: lgss against the Python tools on the same file, in one
//! run on one machine.
//!
//! FFmpeg makes a 1080p H.264 video with AAC stereo audio and known cuts
//! (`LGSS_BENCH_SECONDS`, default 60 s, at 24 fps: test sources of 3–6 s
//! each). Then:
//! - shot detection: lgss's PySceneDetect content detector (FFmpeg decoding,
//!   frames resized to 256 wide as PySceneDetect does) against
//!   `scenedetect.detect(ContentDetector())` (OpenCV decoding);
//! - the whole extraction: `lgss extract` (SceneSeg's HSV-LUV shots, a
//!   random torchvision ResNet-50 as the place network on the default
//!   runtime (ort-cpu where built), STFT
//!   audio) against the same steps in Python as SceneSeg's scripts run them
//!   (`benches/extract_reference.py chain`).
//!
//! Prints the times, the ratios and lgss's speed against real time, with
//! the machine's CPU.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn ffmpeg(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn python(args: &[&std::ffi::OsStr]) -> anyhow::Result<serde_json::Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("benches/extract_reference.py"))
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn main() -> anyhow::Result<()> {
    let seconds: u32 = std::env::var("LGSS_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let dir = std::env::temp_dir().join(format!("lgss-bench-extract-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let video = dir.join("film.mp4");
    // Sources cycled, 3–6 s each.
    let sources = [
        "testsrc2",
        "smptebars",
        "mandelbrot",
        "rgbtestsrc",
        "testsrc",
        "cellauto",
    ];
    let mut args: Vec<String> = Vec::new();
    let mut graph = String::new();
    let (mut t, mut n) = (0u32, 0usize);
    while t < seconds {
        let d = (3 + (n as u32 * 7) % 4).min(seconds - t);
        let s = sources[n % sources.len()];
        let opts = if s == "cellauto" {
            "s=1920x1080:r=24:rule=110"
        } else {
            "s=1920x1080:r=24"
        };
        args.extend(["-f", "lavfi", "-i"].map(String::from));
        args.push(format!("{s}={opts},trim=duration={d}"));
        graph.push_str(&format!("[{n}:v]"));
        t += d;
        n += 1;
    }
    args.extend(["-f", "lavfi", "-i"].map(String::from));
    args.push(format!(
        "anoisesrc=d={seconds}:r=48000:a=0.2,aformat=channel_layouts=stereo"
    ));
    graph.push_str(&format!("concat=n={n}:v=1:a=0[v]"));
    args.extend([
        "-filter_complex".into(),
        graph,
        "-map".into(),
        "[v]".into(),
        "-map".into(),
        format!("{n}:a"),
    ]);
    args.extend(
        [
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac",
        ]
        .map(String::from),
    );
    args.push(video.display().to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    eprintln!("bench: making a {seconds} s 1080p video with {n} shots");
    ffmpeg(&refs)?;

    // Shot detection alone, the content detector on both sides.
    let probe = lgss::video::ffmpeg::probe(&video)?;
    let settings = lgss::video::shots::DetectorSettings::new(lgss::video::shots::DetectorKind::Content);
    let t = Instant::now();
    let (shots, _) = lgss::video::extract::detect_shots(
        &probe,
        settings,
        false,
        &lgss::progress::Silent,
        &mut Vec::new(),
    )?;
    let lgss_shots = t.elapsed().as_secs_f64();
    let py_shots = python(&["shots".as_ref(), video.as_os_str()])?;
    let py_shots_s = py_shots["seconds"].as_f64().unwrap_or(f64::NAN);

    // The whole extraction with a random ResNet-50.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let onnx = dir.join("resnet50.onnx");
    let weights = dir.join("resnet50.pt");
    let out = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/place_reference.py"))
        .args([
            "export".as_ref(),
            onnx.as_os_str(),
            weights.as_os_str(),
            "resnet50".as_ref(),
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_lgss"))
        .arg("extract")
        .arg(&video)
        .arg("--out")
        .arg(dir.join("tree"))
        .arg("--place-model")
        .arg(&onnx)
        .status()?;
    anyhow::ensure!(status.success(), "lgss extract failed");
    let lgss_all = t.elapsed().as_secs_f64();
    let chain = python(&[
        "chain".as_ref(),
        video.as_os_str(),
        weights.as_os_str(),
        "resnet50".as_ref(),
    ])?;
    let chain_s = chain["seconds"].as_f64().unwrap_or(f64::NAN);

    println!(
        "extract bench: {seconds} s of 1080p24 H.264 + AAC, {n} shots, on {} ({} cores)",
        cpu(),
        std::thread::available_parallelism().map_or(1, |c| c.get())
    );
    println!(
        "  shots (content detector): lgss {lgss_shots:.2} s ({} shots), PySceneDetect {py_shots_s:.2} s ({} shots, {}): {:.2}x; lgss at {:.1}x real time",
        shots.len(),
        py_shots["shots"],
        py_shots["versions"],
        py_shots_s / lgss_shots,
        f64::from(seconds) / lgss_shots
    );
    println!(
        "  whole extraction (HSV-LUV shots, ResNet-50 place on {:?}, STFT audio): lgss {lgss_all:.2} s, Python chain {chain_s:.2} s {} ({}): {:.2}x; lgss at {:.1}x real time",
        lgss::video::place::PlaceRuntime::default_built(),
        chain["steps"],
        chain["versions"],
        chain_s / lgss_all,
        f64::from(seconds) / lgss_all
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
