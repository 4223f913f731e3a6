//! Inference speed on one full-size movie (2,400 shots unless
//! `LGSS_BENCH_SHOTS` says otherwise) with the paper config: windows/s of
//! lgss's tch, ort-cpu and tract runtimes beside three Python baselines on
//! the same weights and windows, same machine, one run: onnxruntime on a
//! `torch.onnx.export` of the seed's LGSS as written (the ratio column's
//! baseline), onnxruntime on lgss's own ONNX file, and PyTorch eager.
//! Then what the default rule (global grouping, host-side, after any
//! runtime) adds to a movie, as a share of each runtime's time for it.
//! `LGSS_BENCH_KEEP=1` keeps the movie, checkpoint and ONNX file.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use lgss::data::synth::{self, SynthSpec};
use lgss::data::Movie;
use lgss::grouping::LengthPrior;
use lgss::model::checkpoint::Checkpoint;
use lgss::model::checkpoint::StoredChoices;
use lgss::model::{Config, Lgss};
use lgss::runtime::{open, RuntimeKind, RuntimeOptions};
use lgss::segment::{decide, grouping_params, movie_probabilities, schema_for};

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shots: usize = std::env::var("LGSS_BENCH_SHOTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2400);
    let config_name = std::env::var("LGSS_BENCH_CONFIG").unwrap_or_else(|_| "lgss-paper".into());
    let batch = 32;
    let dir = std::env::temp_dir().join(format!("lgss-bench-infer-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = Config::load(&root.join(format!("models/{config_name}.toml")))?;
    let m = &config.model;
    let size = if m.feature_dims.place == 2048 {
        SynthSpec::full()
    } else {
        SynthSpec::small()
    };
    let size = SynthSpec {
        min_shots: shots,
        max_shots: shots,
        ..size
    };
    let movie_path = dir.join("tt0000001.pkl");
    lgss::data::pickle_write::write_movie(&movie_path, &synth::movie(1, 0, &size))?;

    tch::manual_seed(0);
    let model = Lgss::new(m, tch::Device::Cpu);
    let ckpt = Checkpoint::of_model(&model, &config)?;
    let ck = dir.join("model.safetensors");
    ckpt.save(&ck)?;
    let onnx = dir.join("model.onnx");
    lgss::onnx::export::export_checkpoint(&ckpt, &onnx)?;
    let movie = Movie::load(&movie_path, &schema_for(m))?;
    println!(
        "inference on one {shots}-shot movie ({} windows), config {config_name} (C={}, H={}), batch {batch} sequences, {} cores",
        shots - 1,
        m.sim_channel,
        m.lstm_hidden_size,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let python = |mode: &str| -> anyhow::Result<f64> {
        let out = Command::new(root.join(".venv/bin/python"))
            .arg(root.join("benches/infer_reference.py"))
            .arg(mode)
            .arg(&onnx)
            .arg(&ck)
            .arg(&movie_path)
            .args([m.shot_num, m.seq_len, m.sim_channel, m.lstm_hidden_size, batch].map(|v| v.to_string()))
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "python {mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    };
    let baseline = python("ort-torch-export")?;
    let row = |name: &str, rate: f64, extra: &str| {
        println!(
            "  {name:<38} {rate:9.1} windows/s {:7.2}x{extra}",
            rate / baseline
        );
    };
    row("Python onnxruntime, torch.onnx.export", baseline, "");
    let same_file = python("ort")?;
    row("Python onnxruntime, lgss's ONNX file", same_file, "");
    row("PyTorch eager (seed LGSS)", python("torch")?, "");
    // Each runtime: plan compilation (open) timed apart from inference.
    let mut rates = Vec::new();
    let mut probabilities = Vec::new();
    let variants: [(&str, RuntimeKind, bool); 4] = [
        ("ort-cpu", RuntimeKind::OrtCpu, true),
        ("tract", RuntimeKind::Tract, true),
        ("tract, tract's own window max", RuntimeKind::Tract, false),
        ("tch", RuntimeKind::Tch, true),
    ];
    for (name, kind, rust_window_max) in variants {
        let opts = RuntimeOptions {
            onnx: Some(onnx.clone()),
            checkpoint: Some(ck.clone()),
            batch,
            ..Default::default()
        };
        let t_open = Instant::now();
        let mut backend = if rust_window_max {
            open(kind, &opts)?
        } else {
            let b = lgss::runtime::tract::TractBackend::open_with(&onnx, &opts, false)?;
            Box::new(b) as Box<dyn lgss::runtime::Backend>
        };
        let open_secs = t_open.elapsed().as_secs_f64();
        let warm = trim(&movie, (batch * m.seq_len + 1).min(shots));
        movie_probabilities(backend.as_mut(), &warm, batch)?;
        let t0 = Instant::now();
        probabilities = movie_probabilities(backend.as_mut(), &movie, batch)?;
        let rate = (shots - 1) as f64 / t0.elapsed().as_secs_f64();
        let secs = (shots - 1) as f64 / rate;
        let extra = format!(
            "   {secs:.2} s for the movie (+{open_secs:.2} s to open), {:.2}x Python onnxruntime on the same file",
            rate / same_file
        );
        row(&format!("lgss {name}"), rate, &extra);
        rates.push((name, rate));
    }
    let rate_of = |n: &str| rates.iter().find(|r| r.0 == n).map_or(f64::NAN, |r| r.1);
    println!(
        "tract / ort-cpu: {:.2} (with tract's own window max: {:.2}); plan compilation excluded",
        rate_of("tract") / rate_of("ort-cpu"),
        rate_of("tract, tract's own window max") / rate_of("ort-cpu")
    );
    // The default rule's cost: the best of 3 of `decide` by each rule, with
    // a scene-length prior learned from the movie's own scenes.
    let counts = LengthPrior::count_scenes([movie.ground_truth.as_deref().unwrap_or_default()]);
    let stored = StoredChoices {
        threshold: None,
        length_prior: Some(LengthPrior::from_counts(&counts)?),
        grouping: None,
    };
    let params = grouping_params(0.5, &stored, &Default::default());
    let best_of_3 = |global| -> anyhow::Result<f64> {
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t = Instant::now();
            decide(&probabilities, &movie, &m.ratio, 0.5, 24.0, global)?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    let (local, global) = (best_of_3(None)?, best_of_3(Some(&params))?);
    let movie_secs = |n: &str| (shots - 1) as f64 / rate_of(n);
    println!(
        "deciding scenes: global grouping (the default) {:.1} ms, threshold rule (--local) {:.2} ms: +{:.1}% of ort-cpu's time for the movie, +{:.1}% of tract's",
        global * 1e3,
        local * 1e3,
        100.0 * (global - local) / movie_secs("ort-cpu"),
        100.0 * (global - local) / movie_secs("tract")
    );
    if std::env::var_os("LGSS_BENCH_KEEP").is_some() {
        println!("kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// The first `n` shots of a movie (for a warm-up run).
fn trim(movie: &Movie, n: usize) -> Movie {
    let mut m = movie.clone();
    for f in m.features.iter_mut().flatten() {
        *f = f.slice(ndarray::s![..n, ..]).to_owned();
    }
    m.shot_end_frame.truncate(n);
    m.ground_truth = m.ground_truth.map(|g| g[..n - 1].to_vec());
    m.prediction = m.prediction.map(|p| p[..n - 1].to_vec());
    m
}
