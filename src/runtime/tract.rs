//! The `tract` runtime: the ONNX file as an optimised tract plan.
//!
//! tract 0.23.9 panics on an LSTM whose batch dimension is symbolic, so the
//! plan is compiled for a fixed batch and shorter batches are zero-padded
//! (zero windows are well defined: cosine similarity clamps the norm).
//!
//! Each branch's window max (the max over channels of the window conv,
//! `[n, d, k+1] × [k+1, C']` then ReduceMax) is a skinny MatMul that tract
//! runs at ~1.4 GFLOP/s: about 85% of its time on the paper model
//! (`examples/tract_profile.rs`). So by default the backend computes that
//! subgraph itself ([`window_max`]: the same function over the same
//! initializers, tested against the ONNX path) and hands tract the rest of
//! the graph with each branch's window max as an input. The exported file
//! is untouched and standard; [`TractBackend::open_with`] can keep tract's
//! own window max for comparison.

use std::path::Path;

use anyhow::{anyhow, bail, Context};
use prost::Message;
use tract_onnx::pb;
use tract_onnx::prelude::*;

use super::{onnx_meta, Backend};
use crate::model::config::ModelConfig;
use crate::onnx::export::{window_max_name, window_max_weight_names};

type Plan = std::sync::Arc<TypedRunnableModel>;

pub struct TractBackend {
    plan: Plan,
    config: ModelConfig,
    batch: usize,
    /// Per modality, the window conv's rows that can win, when the window
    /// max runs in Rust.
    window_max: Option<Vec<WindowConv>>,
    threads: usize,
}

/// The window conv's active rows: `w` is `[c, k]`, `b` is `[c]`.
#[derive(Debug, Clone)]
pub struct WindowConv {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub k: usize,
}

impl TractBackend {
    /// The backend as `--runtime tract` uses it: window max in Rust.
    pub fn open(
        model: &Path,
        batch: usize,
        threads: Option<usize>,
    ) -> anyhow::Result<(TractBackend, ModelConfig)> {
        Self::open_with(model, batch, threads, true)
    }

    /// `rust_window_max: false` leaves the whole graph to tract.
    pub fn open_with(
        model: &Path,
        batch: usize,
        threads: Option<usize>,
        rust_window_max: bool,
    ) -> anyhow::Result<(TractBackend, ModelConfig)> {
        let config = onnx_meta::config_of(model)?;
        let err = |e: TractError| anyhow!("{}: tract: {e:#}", model.display());
        let bytes = std::fs::read(model).with_context(|| format!("{}: cannot read", model.display()))?;
        let mut proto = pb::ModelProto::decode(bytes.as_slice())
            .map_err(|e| anyhow!("{}: not an ONNX model: {e}", model.display()))?;
        let n = batch * config.seq_len;
        let window_max = if rust_window_max {
            let mut convs = Vec::new();
            for &m in &config.modalities {
                let conv = cut_window_max(
                    &mut proto,
                    &format!("bnet_{}", m.key()),
                    n,
                    config.feature_dims.get(m),
                )
                .with_context(|| format!("{}: {m} branch", model.display()))?;
                convs.push(conv);
            }
            Some(convs)
        } else {
            None
        };
        let mut m = tract_onnx::onnx().model_for_proto_model(&proto).map_err(err)?;
        for (i, &md) in config.modalities.iter().enumerate() {
            let shape = [
                batch,
                config.seq_len,
                config.shot_num,
                config.feature_dims.get(md),
            ];
            m = m.with_input_fact(i, f32::fact(shape).into()).map_err(err)?;
        }
        if window_max.is_some() {
            let first = config.modalities.len();
            for (i, &md) in config.modalities.iter().enumerate() {
                let shape = [n, config.feature_dims.get(md)];
                m = m
                    .with_input_fact(first + i, f32::fact(shape).into())
                    .map_err(err)?;
            }
        }
        let plan = m.into_optimized().map_err(err)?.into_runnable().map_err(err)?;
        let threads = threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |t| t.get()))
            .max(1);
        Ok((
            TractBackend {
                plan,
                config: config.clone(),
                batch,
                window_max,
                threads,
            },
            config,
        ))
    }
}

/// Removes the node that names branch `p`'s window max, makes that name a
/// graph input `[n, d]` instead, and returns the conv rows it was computed
/// from. tract then never evaluates the subgraph (nothing else uses it).
fn cut_window_max(proto: &mut pb::ModelProto, p: &str, n: usize, d: usize) -> anyhow::Result<WindowConv> {
    let graph = proto.graph.as_mut().ok_or_else(|| anyhow!("no graph"))?;
    let name = window_max_name(p);
    let Some(at) = graph
        .node
        .iter()
        .position(|node| node.output.first() == Some(&name))
    else {
        bail!("no {name} node: export the model again with this lgss");
    };
    graph.node.remove(at);
    let (w_name, b_name) = window_max_weight_names(p);
    let floats = |name: &str| -> anyhow::Result<(Vec<i64>, Vec<f32>)> {
        let t = graph
            .initializer
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| anyhow!("initializer {name} missing"))?;
        let values = if !t.float_data.is_empty() {
            t.float_data.clone()
        } else {
            crate::data::pickle::decode_le(&t.raw_data, f32::from_le_bytes)
        };
        Ok((t.dims.clone(), values))
    };
    let (w_dims, w) = floats(&w_name)?;
    let (_, b) = floats(&b_name)?;
    let [c, k] = w_dims[..] else {
        bail!("{w_name} has shape {w_dims:?}, expected [C, k]");
    };
    if (c as usize) != b.len() || w.len() != (c * k) as usize {
        bail!("{w_name} and {b_name} do not fit together");
    }
    use pb::tensor_shape_proto::dimension::Value;
    let dim = |v: usize| pb::tensor_shape_proto::Dimension {
        value: Some(Value::DimValue(v as i64)),
        ..Default::default()
    };
    graph.input.push(pb::ValueInfoProto {
        name,
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: vec![dim(n), dim(d)],
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    });
    Ok(WindowConv { w, b, k: k as usize })
}

/// Columns computed together: a block of the window's rows and the running
/// maximum stay in L1 while every channel passes over them.
const BLOCK: usize = 64;

/// `out[n, j] = max_c (b[c] + Σ_i w[c, i]·x[n, i, j])` for windows `x`
/// `[n, k, d]` (row-major), the branch's window max, on `threads` threads.
pub fn window_max(conv: &WindowConv, x: &[f32], d: usize, threads: usize) -> Vec<f32> {
    let k = conv.k;
    let n = x.len() / (k * d).max(1);
    let mut out = vec![0f32; n * d];
    let per = n.div_ceil(threads.max(1)).max(1);
    let work = |xs: &[f32], outs: &mut [f32]| {
        for (win, o) in xs.chunks_exact(k * d).zip(outs.chunks_exact_mut(d)) {
            for j0 in (0..d).step_by(BLOCK) {
                let j1 = (j0 + BLOCK).min(d);
                let mut best = [f32::NEG_INFINITY; BLOCK];
                let mut acc = [0f32; BLOCK];
                let width = j1 - j0;
                for (wc, &bc) in conv.w.chunks_exact(k).zip(&conv.b) {
                    acc[..width].fill(bc);
                    for (i, &wi) in wc.iter().enumerate() {
                        let row = &win[i * d + j0..i * d + j1];
                        for (a, &xv) in acc[..width].iter_mut().zip(row) {
                            *a += wi * xv;
                        }
                    }
                    for (m, &a) in best[..width].iter_mut().zip(&acc[..width]) {
                        if a > *m {
                            *m = a;
                        }
                    }
                }
                o[j0..j1].copy_from_slice(&best[..width]);
            }
        }
    };
    if threads <= 1 || n < 2 * threads {
        work(x, &mut out);
    } else {
        std::thread::scope(|s| {
            for (xs, outs) in x.chunks(per * k * d).zip(out.chunks_mut(per * d)) {
                s.spawn(move || work(xs, outs));
            }
        });
    }
    out
}

impl Backend for TractBackend {
    fn name(&self) -> &str {
        "tract"
    }

    fn run(&mut self, batch: usize, inputs: &[Vec<f32>]) -> anyhow::Result<Vec<f32>> {
        let c = &self.config;
        anyhow::ensure!(
            batch <= self.batch,
            "tract plan is for {} sequences, got {batch}",
            self.batch
        );
        let mut values: TVec<TValue> = TVec::new();
        let mut maxes: TVec<TValue> = TVec::new();
        for (i, (&m, data)) in c.modalities.iter().zip(inputs).enumerate() {
            let d = c.feature_dims.get(m);
            let shape = [self.batch, c.seq_len, c.shot_num, d];
            let mut padded = data.clone();
            padded.resize(shape.iter().product(), 0.0);
            if let Some(convs) = &self.window_max {
                let ctx = window_max(&convs[i], &padded, d, self.threads);
                let t = Tensor::from_shape(&[self.batch * c.seq_len, d], &ctx)
                    .map_err(|e| anyhow!("tract input: {e}"))?;
                maxes.push(t.into());
            }
            let t = Tensor::from_shape(&shape, &padded).map_err(|e| anyhow!("tract input: {e}"))?;
            values.push(t.into());
        }
        values.extend(maxes);
        let out = self.plan.run(values).map_err(|e| anyhow!("tract run: {e:#}"))?;
        let prob = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| anyhow!("tract output: {e}"))?;
        Ok(prob.iter().take(batch * c.seq_len).copied().collect())
    }
}
