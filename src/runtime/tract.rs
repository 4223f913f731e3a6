//! The `tract` runtime: the ONNX file as an optimised tract plan.
//!
//! tract 0.23.9 panics on an LSTM whose batch dimension is symbolic, so the
//! plan is compiled for a fixed batch and shorter batches are zero-padded
//! (zero windows are well defined: cosine similarity clamps the norm). An
//! STFT audio branch's shot count is symbolic (only its CNN and the gather
//! of its windows see it), so a run embeds exactly its own shots.
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

use super::{onnx_meta, Backend, ModalityInput, RunInput};
use crate::model::config::{FeatureNorm, ModelConfig};
use crate::onnx::contract::{window_max_name, window_max_weight_names};

type Plan = std::sync::Arc<TypedRunnableModel>;

pub struct TractBackend {
    plan: Plan,
    config: ModelConfig,
    /// The plan's shapes.
    shape: PlanShape,
    /// Per modality, the window conv's rows that can win, when the window
    /// max runs in Rust (`None` for a branch without one: STFT audio).
    window_max: Option<BranchConvs>,
    threads: usize,
    /// Each window position's shot embedded on its own
    /// ([`super::RuntimeOptions::per_window`]).
    per_window: bool,
}

/// What a plan is compiled for: `batch` sequences (a short run is
/// zero-padded), and for a per-shot modality at most `shots` shots a run
/// (the plan's shot count is symbolic: a run embeds its own shots, none
/// padded; the bound keeps a run's activations in the budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanShape {
    pub batch: usize,
    pub shots: usize,
}

impl PlanShape {
    /// `batch` sequences, or fewer where an STFT model's activations would
    /// not fit ([`super::max_sequences_per_run`]); room for the shots of
    /// that many consecutive sequences of one movie, or with `per_window`
    /// for each of their window positions.
    pub fn for_model(config: &ModelConfig, batch: usize, per_window: bool) -> PlanShape {
        let batch = batch.min(super::max_sequences_per_run(config, per_window)).max(1);
        let (s, k) = (config.seq_len, config.shot_num);
        let shots = if per_window {
            batch * s * k
        } else {
            batch * s + k - 1
        };
        PlanShape { batch, shots }
    }
}

/// Per modality, the window conv a Rust window max computes from (`None`
/// for a branch without one).
pub type BranchConvs = Vec<Option<WindowConv>>;

/// The window conv's active rows: `w` is `[c, k]`, `b` is `[c]`.
#[derive(Debug, Clone)]
pub struct WindowConv {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub k: usize,
}

impl TractBackend {
    /// The backend as `--runtime tract` uses it: window max in Rust.
    pub fn open(model: &Path, opts: &super::RuntimeOptions) -> anyhow::Result<TractBackend> {
        Self::open_with(model, opts, true)
    }

    /// `rust_window_max: false` leaves the whole graph to tract.
    pub fn open_with(
        model: &Path,
        opts: &super::RuntimeOptions,
        rust_window_max: bool,
    ) -> anyhow::Result<TractBackend> {
        let err = |e: TractError| anyhow!("{}: tract: {e:#}", model.display());
        let (m, config, shape, window_max) =
            typed_model(model, opts.batch, opts.per_window, rust_window_max)?;
        let threads = opts
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |t| t.get()))
            .max(1);
        // tract runs its matrix products on one thread unless given a pool.
        let options = tract_onnx::tract_core::runtime::RunOptions {
            executor: (threads > 1).then(|| tract_linalg::multithread::Executor::multithread(threads)),
            ..Default::default()
        };
        let plan = m.into_runnable_with_options(&options).map_err(err)?;
        Ok(TractBackend {
            plan,
            config,
            shape,
            window_max,
            threads,
            per_window: opts.per_window,
        })
    }
}

/// The optimised tract model the backend runs, with the shape it is
/// compiled for ([`PlanShape::for_model`]): the ONNX file's graph, less
/// each branch's window max when `rust_window_max` (those become inputs
/// `[batch·seq_len, d]` after the graph's own, in the modalities' order;
/// an STFT audio branch has none), with the conv rows to compute them from.
pub fn typed_model(
    model: &Path,
    batch: usize,
    per_window: bool,
    rust_window_max: bool,
) -> anyhow::Result<(TypedModel, ModelConfig, PlanShape, Option<BranchConvs>)> {
    let config = onnx_meta::config_of(model)?;
    let err = |e: TractError| anyhow!("{}: tract: {e:#}", model.display());
    let bytes =
        crate::regular_file::read(model).with_context(|| format!("{}: cannot read", model.display()))?;
    let mut proto = pb::ModelProto::decode(bytes.as_slice())
        .map_err(|e| anyhow!("{}: not an ONNX model: {e}", model.display()))?;
    // A plan holds its activations for the whole batch at once: an STFT
    // audio network's would need gigabytes at 32 sequences (and padding a
    // short movie to them multiplies its work).
    let shape = PlanShape::for_model(&config, batch, per_window);
    let n = shape.batch * config.seq_len;
    let window_max = if rust_window_max {
        let mut convs = Vec::new();
        for &m in &config.modalities {
            if config.takes_shots(m) {
                convs.push(None);
                continue;
            }
            let conv = cut_window_max(
                &mut proto,
                &format!("bnet_{}", m.key()),
                n,
                config.feature_dims.get(m),
            )
            .with_context(|| format!("{}: {m} branch", model.display()))?;
            convs.push(Some(conv));
        }
        Some(convs)
    } else {
        None
    };
    let mut m = tract_onnx::onnx().model_for_proto_model(&proto).map_err(err)?;
    let mut input = 0;
    for &md in &config.modalities {
        let d = config.feature_dims.get(md);
        if config.takes_shots(md) {
            // The shot count is symbolic (only the CNN and the gather see
            // it): a run embeds its own shots, none padded.
            let shots = m.sym("shots").to_dim();
            m = m
                .with_input_fact(input, f32::fact([shots, d.to_dim()]).into())
                .map_err(err)?;
            let rows = [shape.batch, config.seq_len, config.shot_num];
            m = m
                .with_input_fact(input + 1, i64::fact(rows).into())
                .map_err(err)?;
            input += 2;
        } else {
            let windows = config.input_shape(md, shape.batch);
            m = m.with_input_fact(input, f32::fact(windows).into()).map_err(err)?;
            input += 1;
        }
    }
    if let Some(convs) = &window_max {
        for (&md, conv) in config.modalities.iter().zip(convs) {
            if conv.is_some() {
                let maxes = [n, config.feature_dims.get(md)];
                m = m.with_input_fact(input, f32::fact(maxes).into()).map_err(err)?;
                input += 1;
            }
        }
    }
    Ok((m.into_optimized().map_err(err)?, config, shape, window_max))
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

/// Each `d`-row of `x` as `x·√d / max(‖x‖₂, ε)` ([`FeatureNorm::Rms`]); the
/// norm is summed in f64, so it is the f32 nearest the exact value.
pub fn rms_normalised(x: &[f32], d: usize) -> Vec<f32> {
    let sqrt_d = (d as f32).sqrt();
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(d.max(1)) {
        let norm = (row
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt() as f32)
            .max(FeatureNorm::EPS as f32);
        let scale = sqrt_d / norm;
        out.extend(row.iter().map(|&v| v * scale));
    }
    out
}

/// Columns computed together: the block of each of the window's k rows
/// and the running maximum stay in registers while every channel passes.
const LANES: usize = 16;

/// `out[n, j] = max_c (b[c] + Σ_i w[c, i]·x[n, i, j])` for windows `x`
/// `[n, k, d]` (row-major), the branch's window max, on `threads` threads.
pub fn window_max(conv: &WindowConv, x: &[f32], d: usize, threads: usize) -> Vec<f32> {
    let k = conv.k;
    let n = x.len() / (k * d).max(1);
    let mut out = vec![0f32; n * d];
    let per = n.div_ceil(threads.max(1)).max(1);
    let work = |xs: &[f32], outs: &mut [f32]| {
        for (win, o) in xs.chunks_exact(k * d).zip(outs.chunks_exact_mut(d)) {
            window_max_one(conv, win, d, o);
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

/// One window: picks the widest instruction set this CPU has (the binary
/// targets plain x86-64) and a body specialised for the usual k.
fn window_max_one(conv: &WindowConv, win: &[f32], d: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA, checked just above.
            unsafe { window_max_avx2(conv, win, d, out) };
            return;
        }
    }
    dispatch_k::<false>(conv, win, d, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn window_max_avx2(conv: &WindowConv, win: &[f32], d: usize, out: &mut [f32]) {
    dispatch_k::<true>(conv, win, d, out);
}

#[inline(always)]
fn dispatch_k<const FMA: bool>(conv: &WindowConv, win: &[f32], d: usize, out: &mut [f32]) {
    match conv.k {
        2 => columns::<2, FMA>(conv, win, d, out),
        4 => columns::<4, FMA>(conv, win, d, out),
        6 => columns::<6, FMA>(conv, win, d, out),
        8 => columns::<8, FMA>(conv, win, d, out),
        _ => columns_any::<FMA>(conv, win, d, out),
    }
}

#[inline(always)]
fn madd<const FMA: bool>(w: f32, x: f32, acc: f32) -> f32 {
    if FMA {
        w.mul_add(x, acc)
    } else {
        w * x + acc
    }
}

/// The window max for a compile-time k: LANES columns at a time, the k
/// rows' values and the running maxima held in registers across channels.
#[inline(always)]
fn columns<const K: usize, const FMA: bool>(conv: &WindowConv, win: &[f32], d: usize, out: &mut [f32]) {
    let full = d - d % LANES;
    for j0 in (0..full).step_by(LANES) {
        let mut xs = [[0f32; LANES]; K];
        for (i, row) in xs.iter_mut().enumerate() {
            row.copy_from_slice(&win[i * d + j0..i * d + j0 + LANES]);
        }
        let mut best = [f32::NEG_INFINITY; LANES];
        for (wc, &bc) in conv.w.chunks_exact(K).zip(&conv.b) {
            let mut v = [bc; LANES];
            for (i, row) in xs.iter().enumerate() {
                for (a, &xv) in v.iter_mut().zip(row) {
                    *a = madd::<FMA>(wc[i], xv, *a);
                }
            }
            for (m, &a) in best.iter_mut().zip(&v) {
                *m = if a > *m { a } else { *m };
            }
        }
        out[j0..j0 + LANES].copy_from_slice(&best);
    }
    tail::<FMA>(conv, win, d, full, out);
}

/// Any k: the same, one column at a time.
#[inline(always)]
fn columns_any<const FMA: bool>(conv: &WindowConv, win: &[f32], d: usize, out: &mut [f32]) {
    tail::<FMA>(conv, win, d, 0, out);
}

/// Columns `from..d`, one at a time.
#[inline(always)]
fn tail<const FMA: bool>(conv: &WindowConv, win: &[f32], d: usize, from: usize, out: &mut [f32]) {
    let k = conv.k;
    for j in from..d {
        let mut best = f32::NEG_INFINITY;
        for (wc, &bc) in conv.w.chunks_exact(k).zip(&conv.b) {
            let mut a = bc;
            for (i, &wi) in wc.iter().enumerate() {
                a = madd::<FMA>(wi, win[i * d + j], a);
            }
            best = if a > best { a } else { best };
        }
        out[j] = best;
    }
}

impl Backend for TractBackend {
    fn name(&self) -> &str {
        "tract"
    }

    fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Runs of more sequences than the plan's batch, or (from several
    /// movies) of more shots than it has room for, are cut into runs that
    /// fit.
    fn run_input(&mut self, input: &RunInput<'_>) -> anyhow::Result<Vec<f32>> {
        input.check(&self.config)?;
        let batch = input.batch();
        let mut out = Vec::with_capacity(batch * self.config.seq_len);
        for start in (0..batch).step_by(self.shape.batch) {
            let end = (start + self.shape.batch).min(batch);
            if start == 0 && end == batch {
                self.run_fitting(input, &mut out)?;
            } else {
                self.run_fitting(&input.sequences(start..end, &self.config), &mut out)?;
            }
        }
        Ok(out)
    }
}

impl TractBackend {
    /// A run of at most the plan's batch, halved until its shots fit.
    fn run_fitting(&mut self, input: &RunInput<'_>, out: &mut Vec<f32>) -> anyhow::Result<()> {
        let shots = input.max_shots();
        let batch = input.batch();
        let fits = if self.per_window {
            true
        } else {
            shots <= self.shape.shots
        };
        if fits || batch <= 1 {
            let prob = if self.per_window {
                self.run_plan(&input.per_window())?
            } else {
                self.run_plan(input)?
            };
            out.extend(prob);
            return Ok(());
        }
        let half = batch / 2;
        self.run_fitting(&input.sequences(0..half, &self.config), out)?;
        self.run_fitting(&input.sequences(half..batch, &self.config), out)
    }

    /// One plan run: the input padded to the plan's batch (zero windows,
    /// row 0), the padding's probabilities dropped.
    fn run_plan(&mut self, input: &RunInput<'_>) -> anyhow::Result<Vec<f32>> {
        let c = &self.config;
        let (plan_batch, plan_shots) = (self.shape.batch, self.shape.shots);
        let batch = input.batch();
        let mut values: TVec<TValue> = TVec::new();
        let mut maxes: TVec<TValue> = TVec::new();
        let tensor_err = |e: TractError| anyhow!("tract input: {e}");
        for (i, (&m, x)) in c.modalities.iter().zip(input.modalities()).enumerate() {
            let d = c.feature_dims.get(m);
            match x {
                ModalityInput::Windows(_) => {
                    let data = input.windows_slice(i)?;
                    let shape = c.input_shape(m, plan_batch);
                    let padded = padded(data, shape.iter().product());
                    if let Some(Some(conv)) = self.window_max.as_ref().map(|convs| &convs[i]) {
                        // The graph normalises its own input; the cut-out window
                        // max must see the rows as the graph would have passed them.
                        let ctx = match c.feature_norm {
                            FeatureNorm::None => window_max(conv, &padded, d, self.threads),
                            FeatureNorm::Rms => {
                                window_max(conv, &rms_normalised(&padded, d), d, self.threads)
                            }
                        };
                        let t = Tensor::from_shape(&[plan_batch * c.seq_len, d], &ctx).map_err(tensor_err)?;
                        maxes.push(t.into());
                    }
                    values.push(Tensor::from_shape(&shape, &padded).map_err(tensor_err)?.into());
                }
                ModalityInput::Shots { shots, rows } => {
                    anyhow::ensure!(
                        shots.nrows() <= plan_shots,
                        "{m}: {} shots in a run, the plan holds {plan_shots}",
                        shots.nrows()
                    );
                    let data = shots
                        .as_slice()
                        .ok_or_else(|| anyhow!("{m} shots are not in standard layout"))?;
                    values.push(
                        Tensor::from_shape(&[shots.nrows(), d], data)
                            .map_err(tensor_err)?
                            .into(),
                    );
                    let positions = [plan_batch, c.seq_len, c.shot_num];
                    let mut padded_rows = rows.clone();
                    padded_rows.resize(positions.iter().product(), 0);
                    values.push(
                        Tensor::from_shape(&positions, &padded_rows)
                            .map_err(tensor_err)?
                            .into(),
                    );
                }
            }
        }
        values.extend(maxes);
        let out = self.plan.run(values).map_err(|e| anyhow!("tract run: {e:#}"))?;
        let prob = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| anyhow!("tract output: {e}"))?;
        Ok(prob.iter().take(batch * c.seq_len).copied().collect())
    }
}

/// `data` zero-padded to `len` values; copied only when short.
fn padded(data: &[f32], len: usize) -> std::borrow::Cow<'_, [f32]> {
    if data.len() == len {
        std::borrow::Cow::Borrowed(data)
    } else {
        let mut v = data.to_vec();
        v.resize(len, 0.0);
        std::borrow::Cow::Owned(v)
    }
}
