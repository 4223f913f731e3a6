//! What embedding each shot's STFT audio once saves (`runtime::input`): a
//! model at SceneSeg's widths (`models/sceneseg.toml`, random weights) on
//! one synthetic movie of 600 shots (`LGSS_BENCH_SHOTS`) with STFT audio,
//! every CPU runtime, each run twice in this process: per window (each
//! window position's shot embedded on its own, as before; the runtimes'
//! `per_window` option) and per shot (each run's distinct shots embedded
//! once). Both take the same runs of sequences where the runtime chooses
//! them (ort-cpu and tch: `--batch`, cut to the CPU activation budget);
//! tract's plan holds 4 sequences per window, 18 per shot, its budget's
//! sizes. Prints seconds for the movie, the speed-up and the largest
//! probability difference between the two.

use std::path::Path;
use std::time::Instant;

use lgss::data::synth::{self, SynthSpec};
use lgss::model::checkpoint::Checkpoint;
use lgss::model::{Config, Lgss};
use lgss::runtime::{open, RuntimeKind, RuntimeOptions};
use lgss::segment::movie_probabilities;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let shots: usize = std::env::var("LGSS_BENCH_SHOTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let batch = 32;
    let config = Config::load(&root.join("models/sceneseg.toml"))?;
    let m = &config.model;
    let size = SynthSpec {
        min_shots: shots,
        max_shots: shots,
        ..SynthSpec::full()
    };
    let mut movie = synth::movie(1, 0, &size);
    synth::stft_audio(&mut movie, 1, 0);

    let dir = tempfile::Builder::new().prefix("lgss-bench-per-shot").tempdir()?;
    tch::manual_seed(0);
    let model = Lgss::new(m, tch::Device::Cpu);
    let ckpt = Checkpoint::of_model(&model, &config)?;
    let ck = dir.path().join("model.safetensors");
    ckpt.save(&ck)?;
    let onnx = dir.path().join("model.onnx");
    lgss::onnx::export::export_checkpoint(&ckpt, &onnx)?;
    println!(
        "STFT audio per shot vs per window: one {shots}-shot movie, models/sceneseg.toml (audio CNN {:?}, C={}, H={}), --batch {batch}, {} cores",
        m.stft_channels,
        m.sim_channel,
        m.lstm_hidden_size,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // A short movie first, so that each runtime's one-time work (plans,
    // arenas, thread pools) is not charged to the movie.
    let mut warm = movie.clone();
    let n_warm = (m.seq_len * 2 + 1).min(shots);
    for f in warm.features.iter_mut().flatten() {
        *f = f.slice(ndarray::s![..n_warm, ..]).to_owned();
    }
    warm.shot_end_frame.truncate(n_warm);
    warm.ground_truth = None;
    warm.prediction = None;
    for kind in [RuntimeKind::OrtCpu, RuntimeKind::Tract, RuntimeKind::Tch] {
        let mut secs = [0.0; 2];
        let mut probs: [Vec<f64>; 2] = Default::default();
        for (i, per_window) in [true, false].into_iter().enumerate() {
            let opts = RuntimeOptions {
                onnx: Some(onnx.clone()),
                checkpoint: Some(ck.clone()),
                batch,
                per_window,
                ..Default::default()
            };
            let mut backend = open(kind, &opts)?;
            movie_probabilities(backend.as_mut(), &warm, batch)?;
            let t = Instant::now();
            probs[i] = movie_probabilities(backend.as_mut(), &movie, batch)?;
            secs[i] = t.elapsed().as_secs_f64();
        }
        let dp = probs[0]
            .iter()
            .zip(&probs[1])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        println!(
            "  {:<8} per window {:7.2} s   per shot {:7.2} s   {:5.2}x   max|Δp| {dp:.1e}",
            kind.name(),
            secs[0],
            secs[1],
            secs[0] / secs[1]
        );
    }
    Ok(())
}
