//! Where tract's time goes: runs an exported LGSS (random weights, the
//! config named by the first argument, default `lgss`; batch the second,
//! default 32) through the tract plan the `tract` runtime builds, timing
//! every node, and prints the time per operator type and the slowest
//! nodes. A third argument `whole` profiles tract's own window max too
//! (the runtime computes it in Rust; its time is then printed apart).
//!
//! ```sh
//! cargo run --release --example tract_profile -- lgss 32
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use lgss::model::checkpoint::Checkpoint;
use lgss::model::{Config, Lgss};
use tract_onnx::prelude::*;
use tract_onnx::tract_core;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "lgss".into());
    let batch: usize = args.next().map_or(Ok(32), |b| b.parse())?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = Config::load(&root.join(format!("models/{name}.toml")))?;
    let m = &config.model;
    tch::manual_seed(0);
    let model = Lgss::new(m, tch::Device::Cpu);
    let ckpt = Checkpoint::of_model(&model, &config)?;
    let dir = std::env::temp_dir().join(format!("lgss-tract-profile-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let onnx = dir.join("model.onnx");
    lgss::onnx::export::export_checkpoint(&ckpt, &onnx)?;

    let whole = args.next().as_deref() == Some("whole");
    let t = Instant::now();
    let (typed, _, _, convs) = lgss::runtime::tract::typed_model(&onnx, batch, false, !whole)?;
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    let options = tract_core::runtime::RunOptions {
        executor: (threads > 1).then(|| tract_linalg::multithread::Executor::multithread(threads)),
        ..Default::default()
    };
    let plan = typed.into_runnable_with_options(&options)?;
    println!("plan compiled in {:.2} s", t.elapsed().as_secs_f64());
    let inputs: TVec<TValue> = m
        .modalities
        .iter()
        .map(|&md| {
            let shape = [batch, m.seq_len, m.shot_num, m.feature_dims.get(md)];
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 1000.0).collect();
            Tensor::from_shape(&shape, &data).map(TValue::from)
        })
        .collect::<TractResult<_>>()?;
    // The window maxes the runtime computes in Rust, timed here.
    let mut inputs = inputs;
    let mut rust_secs = 0.0;
    if let Some(convs) = &convs {
        let t = Instant::now();
        let mut maxes = TVec::new();
        for ((conv, &md), x) in convs.iter().zip(&m.modalities).zip(inputs.clone()) {
            let Some(conv) = conv else { continue };
            let d = m.feature_dims.get(md);
            let x = x
                .to_plain_array_view::<f32>()?
                .iter()
                .copied()
                .collect::<Vec<f32>>();
            let ctx = lgss::runtime::tract::window_max(conv, &x, d, threads);
            maxes.push(Tensor::from_shape(&[batch * m.seq_len, d], &ctx)?.into());
        }
        rust_secs = t.elapsed().as_secs_f64();
        inputs.extend(maxes);
    }
    let mut state = tract_core::plan::SimpleState::new(&plan)?;
    state.run(inputs.clone())?; // warm-up
    let runs = 3;
    let mut by_op: BTreeMap<String, Duration> = BTreeMap::new();
    let mut by_node: BTreeMap<String, Duration> = BTreeMap::new();
    let t = Instant::now();
    for _ in 0..runs {
        state.run_plan_with_eval(inputs.clone(), |session, op_state, node, input| {
            let t = Instant::now();
            let r = tract_core::plan::eval(session, op_state, node, input);
            let e = t.elapsed();
            *by_op.entry(node.op.name().to_string()).or_default() += e;
            *by_node
                .entry(format!("{} ({})", node.name, node.op.name()))
                .or_default() += e;
            r
        })?;
    }
    let total = t.elapsed();
    let windows = (batch * m.seq_len * runs) as f64;
    println!(
        "{runs} runs of {batch} sequences: {:.0} windows/s in tract; window max in Rust {:.1} ms a run ({:.0} windows/s)",
        windows / total.as_secs_f64(),
        rust_secs * 1e3,
        (batch * m.seq_len) as f64 / rust_secs
    );
    let mut ops: Vec<_> = by_op.into_iter().collect();
    ops.sort_by_key(|o| std::cmp::Reverse(o.1));
    println!("time by operator:");
    for (op, d) in ops.iter().take(12) {
        println!("  {:>6.1}%  {op}", 100.0 * d.as_secs_f64() / total.as_secs_f64());
    }
    let mut nodes: Vec<_> = by_node.into_iter().collect();
    nodes.sort_by_key(|o| std::cmp::Reverse(o.1));
    println!("slowest nodes:");
    for (node, d) in nodes.iter().take(24) {
        println!(
            "  {:>6.1}%  {node}",
            100.0 * d.as_secs_f64() / total.as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
