//! Training speed: windows/s of lgss's training step (gather, forward,
//! weighted cross-entropy, backward, Adam) beside PyTorch running the seed's
//! LGSS on the same windows, batch size and machine, in one run.
//!
//! Both use the same synthetic data (full-size features for the paper config,
//! small for lgss-small), the same batches in the same order, and libtorch's
//! default thread count. The first batch of each is a warm-up.
//! `LGSS_BENCH_BATCHES` sets the timed batches (default 3).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use lgss::data::dataset::movie_files;
use lgss::data::synth::{self, SynthSpec};
use lgss::model::lgss::loss;
use lgss::model::{Config, Lgss};
use lgss::train::adam::Adam;
use lgss::train::bank::Bank;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let n_batches: usize = std::env::var("LGSS_BENCH_BATCHES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dir = std::env::temp_dir().join(format!("lgss-bench-train-{}", std::process::id()));
    println!(
        "training step, windows/s (higher is better), {n_batches} timed batches after 1 warm-up, {} threads",
        tch::get_num_threads()
    );
    for (name, size) in [
        ("lgss-small", SynthSpec::small()),
        ("lgss-paper", SynthSpec::full()),
    ] {
        let config = Config::load(&root.join(format!("models/{name}.toml")))?;
        let m = &config.model;
        let data = dir.join(name);
        let size = SynthSpec {
            min_shots: 200,
            max_shots: 200,
            ..size
        };
        synth::write_dataset(&data, 1, 2, &size, &|| {})?;

        let files = movie_files(&data)?;
        let bank = Bank::load(&files, m, tch::Device::Cpu, &|| {})?;
        let seqs = bank.sequences_of(&[0, 1]);
        let batch = config.train.batch_size;
        tch::manual_seed(0);
        let model = Lgss::new(m, tch::Device::Cpu);
        let mut adam = Adam::new(model.parameters(), 1e-3, 5e-4);
        let mut windows = 0;
        let mut t0 = Instant::now();
        for (i, chunk) in seqs.chunks(batch).take(n_batches + 1).enumerate() {
            if i == 1 {
                t0 = Instant::now();
            }
            let b = bank.batch(chunk)?;
            let l = loss(
                &model.forward_inputs(&b.inputs()).logits,
                &b.target,
                config.train.class_weights,
            );
            adam.zero_grad();
            l.backward();
            adam.step()?;
            if i >= 1 {
                windows += b.windows;
            }
        }
        let ours = windows as f64 / t0.elapsed().as_secs_f64();

        let out = Command::new(root.join(".venv/bin/python"))
            .arg(root.join("benches/lgss_reference.py"))
            .arg(&data)
            .args(
                [
                    m.shot_num,
                    m.seq_len,
                    m.sim_channel,
                    m.lstm_hidden_size,
                    batch,
                    n_batches,
                ]
                .map(|v| v.to_string()),
            )
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "reference failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse()?;
        println!(
            "  {name:<11} C={:<4} H={:<4} batch {batch}: lgss {ours:9.1}   PyTorch {theirs:9.1}   ratio {:.2}x",
            m.sim_channel,
            m.lstm_hidden_size,
            ours / theirs
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
