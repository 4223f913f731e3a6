//! LGSS as an ONNX graph of standard opset-17 operators.
//!
//! Inputs: one `[batch, seq_len, shot_num, D]` tensor per modality, named
//! after it; STFT audio, which its CNN embeds shot by shot, instead takes
//! the run's shots `[shots, D]` under its name and their rows `[batch,
//! seq_len, shot_num]` (int64, [`rows_input`]): each shot is embedded once
//! and the windows gather the embeddings (`crate::runtime::input`). Outputs: `prob` `[batch, seq_len]` (softmax class 1) and
//! `logits` `[batch, seq_len, 2]`. The LSTM uses `layout = 0` with explicit
//! Transposes (ONNX Runtime refuses layout 1; tract mis-handles it), gates
//! reordered from PyTorch's i,f,g,o to ONNX's i,o,f,c, bias `[b_ih, b_hh]`.
//! Cosine similarity keeps PyTorch's eps clamp, `x / max(‖x‖, 1e-8)`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Context};

use super::contract::{
    rows_input, window_max_name, window_max_weight_names, INTERFACE, META_ACTIVE_CHANNELS, META_CONFIG,
    META_DATA, META_DECISION_THRESHOLD, META_FEATURE_DIMS, META_GROUPING, META_INTERFACE, META_MODALITIES,
    META_SCENE_LENGTHS, META_VERSION,
};
use super::graph::{Attr, Dim, GraphBuilder};
use crate::data::tensor::Tensor;
use crate::model::checkpoint::Checkpoint;
use crate::model::config::{FeatureNorm, ModelConfig};

/// Reorders PyTorch LSTM gate blocks (i, f, g, o) into ONNX's (i, o, f, c).
fn onnx_gates(v: &[f32], h: usize) -> Vec<f32> {
    let block = v.len() / 4;
    debug_assert_eq!(block % h, 0);
    let [i, f, g, o] = [0, 1, 2, 3].map(|k| &v[k * block..(k + 1) * block]);
    [i, o, f, g].concat()
}

/// Feature columns per block of the window max. Measured with ONNX Runtime
/// on 2 cores (place branch, D = 2048, C = 512; windows/s at 10 / 40 / 320
/// windows a run): MatMul + Add + ReduceMax over C, 256 columns: 1594 / 1694
/// / 856; bias folded into the MatMul and the max over the last axis, 64
/// columns: 7389 / 4103 / 3547 (also the best block size of 64 … 2048).
const WINDOW_MAX_BLOCK: i64 = 64;

/// `max_c (Σ_k w[c,k]·x[k,d] + b[c])` per window and column without ever
/// holding `[C, D]` per window: the columns are cut into blocks, and each
/// block is one MatMul `[n, block, k+1] × [k+1, C]` (a row of ones carries
/// the bias) followed by ReduceMax over the last, contiguous axis.
/// `x4`: `[n, k, d]`; returns `[n, d]`.
fn window_max(
    g: &mut GraphBuilder,
    p: &str,
    x4: &str,
    w: &[f32],
    b: &[f32],
    k: i64,
    d: i64,
) -> (String, usize) {
    // Only the channels that can be the maximum (see model::envelope): the
    // same function with a fraction of the work. Stored once, as those rows
    // of the conv's weights and bias; [w | b]ᵀ is formed in the graph and
    // constant-folded.
    let active = crate::model::envelope::active_channels(w, b, k as usize);
    let c = active.len() as i64;
    let w: Vec<f32> = active
        .iter()
        .flat_map(|&ch| w[ch * k as usize..(ch + 1) * k as usize].to_vec())
        .collect();
    let b: Vec<f32> = active.iter().map(|&ch| b[ch]).collect();
    let (w_name, b_name) = window_max_weight_names(p);
    let w = g.weight(&w_name, &[c, k], &w);
    let b = g.weight(&b_name, &[c], &b);
    let axis1 = g.ints("axis1", &[1], &[1]);
    let bcol = g.node("Unsqueeze", &[&b, &axis1], vec![]); // [C, 1]
    let wb = g.node("Concat", &[&w, &bcol], vec![("axis", Attr::Int(1))]); // [C, k+1]
    let wbt = g.node("Transpose", &[&wb], vec![("perm", Attr::Ints(vec![1, 0]))]); // [k+1, C]
                                                                                   // [n, k+1, d]: the window with a row of ones.
    let s0 = g.ints("at0", &[1], &[0]);
    let s1 = g.ints("at1", &[1], &[1]);
    let first_row = g.node("Slice", &[x4, &s0, &s1, &axis1], vec![]);
    let zero = g.weight("f32_zero", &[], &[0.0]);
    let one = g.weight("f32_one", &[], &[1.0]);
    let zeros = g.node("Mul", &[&first_row, &zero], vec![]);
    let ones = g.node("Add", &[&zeros, &one], vec![]);
    let xa = g.node("Concat", &[x4, &ones], vec![("axis", Attr::Int(1))]);
    let xt = g.node("Transpose", &[&xa], vec![("perm", Attr::Ints(vec![0, 2, 1]))]); // [n, d, k+1]
    let mut blocks = Vec::new();
    for d0 in (0..d).step_by(WINDOW_MAX_BLOCK as usize) {
        let d1 = (d0 + WINDOW_MAX_BLOCK).min(d);
        let xb = if d0 == 0 && d1 == d {
            xt.clone()
        } else {
            let a = g.ints(&format!("at{d0}"), &[1], &[d0]);
            let z = g.ints(&format!("at{d1}"), &[1], &[d1]);
            g.node("Slice", &[&xt, &a, &z, &axis1], vec![])
        };
        let y = g.node("MatMul", &[&xb, &wbt], vec![]); // [n, block, C]
        blocks.push(g.node(
            "ReduceMax",
            &[&y],
            vec![("axes", Attr::Ints(vec![2])), ("keepdims", Attr::Int(0))],
        ));
    }
    if blocks.len() == 1 {
        return (blocks.remove(0), active.len());
    }
    let refs: Vec<&str> = blocks.iter().map(String::as_str).collect();
    (
        g.node("Concat", &refs, vec![("axis", Attr::Int(1))]),
        active.len(),
    )
}

/// Cosine similarity of the half-window convs from the window's Gram
/// matrix, in f64 (see `model::lgss::half_window_cosine`): MatMuls over
/// `[n, k, k]` and `[n, k, C]` instead of two `[n, C, D]` convs.
/// `x4`: `[n, k, d]`; returns `[n, C]` (f32).
#[allow(clippy::too_many_arguments)]
fn half_window_cosine(
    g: &mut GraphBuilder,
    conv: &str,
    x4: &str,
    w: &[f32],
    b: &[f32],
    c: i64,
    k: i64,
    d: i64,
) -> String {
    // The conv's weights are stored once, as f32 [C, k/2]; the f64 operand
    // matrices first[c] = [w_c, 0] and second[c] = [0, w_c] (transposed to
    // [k, C]) are computed from them in the graph and constant-folded.
    let h = k / 2;
    let w = g.weight(&format!("{conv}.weight"), &[c, h], w);
    let b = g.weight(&format!("{conv}.bias"), &[c], b);
    let wd = g.node("Cast", &[&w], vec![("to", Attr::Int(11))]); // DOUBLE
    let wt = g.node("Transpose", &[&wd], vec![("perm", Attr::Ints(vec![1, 0]))]); // [h, C]
    let pad_below = g.ints(&format!("pads_below{h}"), &[4], &[0, 0, h, 0]);
    let pad_above = g.ints(&format!("pads_above{h}"), &[4], &[h, 0, 0, 0]);
    let first_t = g.node("Pad", &[&wt, &pad_below], vec![]); // [k, C]
    let second_t = g.node("Pad", &[&wt, &pad_above], vec![]);
    let bias = g.node("Cast", &[&b], vec![("to", Attr::Int(11))]);
    let two = g.doubles("two", &[], &[2.0]);
    let bias2 = g.node("Mul", &[&bias, &two], vec![]);
    let dd = g.doubles(&format!("d{d}"), &[], &[d as f64]);
    let bb = g.node("Mul", &[&bias, &bias], vec![]);
    let bbd = g.node("Mul", &[&bb, &dd], vec![]);
    let eps2 = g.doubles("eps_sq", &[], &[1e-16]);

    let xd = g.node("Cast", &[x4], vec![("to", Attr::Int(11))]); // DOUBLE
    let xt = g.node("Transpose", &[&xd], vec![("perm", Attr::Ints(vec![0, 2, 1]))]);
    let gram = g.node("MatMul", &[&xd, &xt], vec![]); // [n, k, k]
    let axis2 = g.ints("axis2", &[1], &[2]);
    let axis1 = g.ints("axis1", &[1], &[1]);
    let sums = g.node("ReduceSum", &[&xd, &axis2], vec![("keepdims", Attr::Int(0))]); // [n, k]
    let gv_second = g.node("MatMul", &[&gram, &second_t], vec![]); // [n, k, C]
    let gv_first = g.node("MatMul", &[&gram, &first_t], vec![]);
    let form = |g: &mut GraphBuilder, gv: &str, left: &str| {
        let m = g.node("Mul", &[gv, left], vec![]);
        g.node("ReduceSum", &[&m, &axis1], vec![("keepdims", Attr::Int(0))]) // [n, C]
    };
    let q12 = form(g, &gv_second, &first_t);
    let q11 = form(g, &gv_first, &first_t);
    let q22 = form(g, &gv_second, &second_t);
    let lin1 = g.node("MatMul", &[&sums, &first_t], vec![]); // [n, C]
    let lin2 = g.node("MatMul", &[&sums, &second_t], vec![]);
    let lin12 = g.node("Add", &[&lin1, &lin2], vec![]);
    let t = g.node("Mul", &[&lin12, &bias], vec![]);
    let dot = g.node("Add", &[&q12, &t], vec![]);
    let dot = g.node("Add", &[&dot, &bbd], vec![]);
    let norm = |g: &mut GraphBuilder, q: &str, lin: &str| {
        let t = g.node("Mul", &[lin, &bias2], vec![]);
        let n = g.node("Add", &[q, &t], vec![]);
        let n = g.node("Add", &[&n, &bbd], vec![]);
        let n = g.node("Max", &[&n, &eps2], vec![]);
        g.node("Sqrt", &[&n], vec![])
    };
    let n1 = norm(g, &q11, &lin1);
    let n2 = norm(g, &q22, &lin2);
    let den = g.node("Mul", &[&n1, &n2], vec![]);
    let cos = g.node("Div", &[&dot, &den], vec![]);
    g.node("Cast", &[&cos], vec![("to", Attr::Int(1))]) // FLOAT
}

/// A checkpoint weight by name, checked against the shape the config implies.
type WeightLookup<'a> = dyn Fn(&str, &[i64]) -> anyhow::Result<Vec<f32>> + 'a;

/// PyTorch's `nn.Linear` named `name` (`out` × `inp`) applied to `x`: the
/// weight stored transposed (`[inp, out]`) so the graph is a plain MatMul,
/// then the bias.
fn linear(
    g: &mut GraphBuilder,
    get: &WeightLookup<'_>,
    x: &str,
    name: &str,
    out: i64,
    inp: i64,
) -> anyhow::Result<String> {
    let wv = get(&format!("{name}.weight"), &[out, inp])?;
    let wt: Vec<f32> = (0..inp as usize)
        .flat_map(|i| (0..out as usize).map(move |o| (i, o)))
        .map(|(i, o)| wv[o * inp as usize + i])
        .collect();
    let wn = g.weight(&format!("{name}.weight_t"), &[inp, out], &wt);
    let bn = g.weight(
        &format!("{name}.bias"),
        &[out],
        &get(&format!("{name}.bias"), &[out])?,
    );
    let mm = g.node("MatMul", &[x, &wn], vec![]);
    Ok(g.node("Add", &[&mm, &bn], vec![]))
}

/// SceneSeg's audio CNN on each shot's STFT image (`shots`: `[n, 257·90]`),
/// as Conv, BatchNormalization (inference form, PyTorch's ε and running
/// statistics: the checkpoint's numbers unchanged, runtimes fold them into
/// the convs themselves), Relu and MaxPool nodes, then the fc. Returns the
/// shots' embeddings `[n, C₆]`.
fn audnet(
    g: &mut GraphBuilder,
    p: &str,
    shots: &str,
    channels: &[usize; 6],
    get: &WeightLookup<'_>,
) -> anyhow::Result<String> {
    use crate::model::config::AudioInput;
    let [h, w] = AudioInput::STFT_SHAPE.map(|d| d as i64);
    let shape = g.ints(&format!("{p}.shape_image"), &[4], &[-1, 1, h, w]);
    let mut y = g.node("Reshape", &[shots, &shape], vec![]);
    let mut in_ch = 1i64;
    for (i, (b, &out)) in crate::model::audnet_geometry::BLOCKS
        .iter()
        .zip(channels)
        .enumerate()
    {
        let out = out as i64;
        let conv = format!("{p}.bnet.audnet.conv{}", i + 1);
        let bn = format!("{p}.bnet.audnet.bn{}", i + 1);
        let cw = get(&format!("{conv}.weight"), &[out, in_ch, b.kernel[0], b.kernel[1]])?;
        let cw = g.weight(
            &format!("{conv}.weight"),
            &[out, in_ch, b.kernel[0], b.kernel[1]],
            &cw,
        );
        let cb = get(&format!("{conv}.bias"), &[out])?;
        let cb = g.weight(&format!("{conv}.bias"), &[out], &cb);
        y = g.node(
            "Conv",
            &[&y, &cw, &cb],
            vec![
                ("kernel_shape", Attr::Ints(b.kernel.to_vec())),
                ("strides", Attr::Ints(b.stride.to_vec())),
            ],
        );
        let mut bn_inputs = Vec::new();
        for part in ["weight", "bias", "running_mean", "running_var"] {
            let v = get(&format!("{bn}.{part}"), &[out])?;
            bn_inputs.push(g.weight(&format!("{bn}.{part}"), &[out], &v));
        }
        let refs: Vec<&str> = std::iter::once(y.as_str())
            .chain(bn_inputs.iter().map(String::as_str))
            .collect();
        y = g.node(
            "BatchNormalization",
            &refs,
            vec![(
                "epsilon",
                Attr::Float(crate::model::audnet_geometry::BN_EPS as f32),
            )],
        );
        y = g.node("Relu", &[&y], vec![]);
        if let Some(pool) = b.pool {
            y = g.node(
                "MaxPool",
                &[&y],
                vec![
                    ("kernel_shape", Attr::Ints(pool.to_vec())),
                    ("strides", Attr::Ints(pool.to_vec())),
                ],
            );
        }
        in_ch = out;
    }
    // [n, C₆, 1, 1] -> [n, C₆], then the fc.
    let y = g.node("Flatten", &[&y], vec![("axis", Attr::Int(1))]);
    linear(g, get, &y, &format!("{p}.bnet.audnet.fc"), in_ch, in_ch)
}

/// `x·√D / max(‖x‖₂, ε)` over the last axis of `x` (`[n, k, d]`), the
/// same ops in the same order as [`crate::model::lgss::rms_normalised`].
fn rms_normalised(g: &mut GraphBuilder, p: &str, x: &str, d: i64) -> String {
    let norm = g.node(
        "ReduceL2",
        &[x],
        vec![("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))],
    );
    let eps = g.weight(&format!("{p}.norm_eps"), &[], &[FeatureNorm::EPS as f32]);
    let norm = g.node("Max", &[&norm, &eps], vec![]);
    let sqrt_d = g.weight(&format!("{p}.sqrt_d"), &[], &[(d as f32).sqrt()]);
    let scale = g.node("Div", &[&sqrt_d, &norm], vec![]);
    g.node("Mul", &[x, &scale], vec![])
}

/// Builds the ONNX model for `config` with `weights` (PyTorch state_dict names).
pub fn build(
    config: &ModelConfig,
    weights: &BTreeMap<String, Tensor>,
    metadata: &[(String, String)],
) -> anyhow::Result<Vec<u8>> {
    // Each weight with the shape the config implies: a checkpoint of
    // another config is an error, never an out-of-bounds index.
    let get = |name: &str, shape: &[i64]| -> anyhow::Result<Vec<f32>> {
        let t = weights
            .get(name)
            .ok_or_else(|| anyhow!("weight {name} missing"))?;
        if !t.shape().iter().map(|&d| d as i64).eq(shape.iter().copied()) {
            anyhow::bail!(
                "weight {name} has shape {:?}, the config implies {shape:?}",
                t.shape()
            );
        }
        Ok(t.to_f32().into_iter().collect())
    };
    let (k, s) = (config.shot_num as i64, config.seq_len as i64);
    let c = config.sim_channel as i64;
    let h = config.lstm_hidden_size as i64;
    let f = config.fc_hidden as i64;
    let dirs: i64 = if config.bidirectional { 2 } else { 1 };
    let mut g = GraphBuilder::new();
    let batch = || Dim::Named("batch".into());

    let mut total: Option<String> = None;
    let mut active_channels = Vec::new();
    for &m in &config.modalities {
        let d = config.feature_dims.get(m) as i64;
        let p = format!("bnet_{}", m.key());
        let (feat, input) = if config.takes_shots(m) {
            let shots = g.input(
                m.key(),
                &[Dim::Named(format!("{}_shots", m.key())), Dim::Fixed(d)],
            );
            let rows = g.input_i64(&rows_input(m.key()), &[batch(), Dim::Fixed(s), Dim::Fixed(k)]);
            let embedded = audnet(&mut g, &p, &shots, &config.stft_channels, &get)?;
            let width = config.stft_channels[5] as i64;
            // [batch, s, k, C₆] -> [batch·s, k, C₆]: the windows of embeddings.
            let windows = g.node("Gather", &[&embedded, &rows], vec![("axis", Attr::Int(0))]);
            let shape = g.ints(&format!("{p}.shape_nkc"), &[3], &[-1, k, width]);
            let shots = g.node("Reshape", &[&windows, &shape], vec![]);
            let conv = format!("{p}.bnet.conv2");
            let cos_w = get(&format!("{conv}.weight"), &[c, 1, k / 2, 1])?;
            let cos_b = get(&format!("{conv}.bias"), &[c])?;
            (
                half_window_cosine(&mut g, &conv, &shots, &cos_w, &cos_b, c, k, width),
                c,
            )
        } else {
            let x = g.input(m.key(), &[batch(), Dim::Fixed(s), Dim::Fixed(k), Dim::Fixed(d)]);
            let shape = g.ints(&format!("{p}.shape_nkd"), &[3], &[-1, k, d]);
            let x4 = g.node("Reshape", &[&x, &shape], vec![]);
            let x4 = match config.feature_norm {
                FeatureNorm::None => x4,
                FeatureNorm::Rms => rms_normalised(&mut g, &p, &x4, d),
            };
            let conv_w = get(&format!("{p}.bnet.conv1.weight"), &[c, 1, k, 1])?;
            let conv_b = get(&format!("{p}.bnet.conv1.bias"), &[c])?;
            let (ctx, kept) = window_max(&mut g, &p, &x4, &conv_w, &conv_b, k, d);
            // A stable name, so the tract runtime can compute this part itself.
            let ctx = g.named(&ctx, &window_max_name(&p));
            active_channels.push(format!("{}={kept}/{c}", m.key()));
            let conv = format!("{p}.bnet.cos.conv1");
            let cos_w = get(&format!("{conv}.weight"), &[c, 1, k / 2, 1])?;
            let cos_b = get(&format!("{conv}.bias"), &[c])?;
            let sim = half_window_cosine(&mut g, &conv, &x4, &cos_w, &cos_b, c, k, d);
            let feat = g.node("Concat", &[&ctx, &sim], vec![("axis", Attr::Int(1))]);
            (feat, d + c)
        };

        // BiLSTM over the sequence (layout 0: [seq, batch, input]).
        let shape_bsi = g.ints(&format!("{p}.shape_bsi"), &[3], &[-1, s, input]);
        let feat = g.node("Reshape", &[&feat, &shape_bsi], vec![]);
        let feat = g.node("Transpose", &[&feat], vec![("perm", Attr::Ints(vec![1, 0, 2]))]);
        let sfx: &[&str] = if config.bidirectional {
            &["", "_reverse"]
        } else {
            &[""]
        };
        let (mut w, mut r, mut bias) = (Vec::new(), Vec::new(), Vec::new());
        for sx in sfx {
            let hh = h as usize;
            let (wih, whh) = ([4 * h, input], [4 * h, h]);
            w.extend(onnx_gates(&get(&format!("{p}.lstm.weight_ih_l0{sx}"), &wih)?, hh));
            r.extend(onnx_gates(&get(&format!("{p}.lstm.weight_hh_l0{sx}"), &whh)?, hh));
            bias.extend(onnx_gates(
                &get(&format!("{p}.lstm.bias_ih_l0{sx}"), &[4 * h])?,
                hh,
            ));
            bias.extend(onnx_gates(
                &get(&format!("{p}.lstm.bias_hh_l0{sx}"), &[4 * h])?,
                hh,
            ));
        }
        let w = g.weight(&format!("{p}.lstm.W"), &[dirs, 4 * h, input], &w);
        let r = g.weight(&format!("{p}.lstm.R"), &[dirs, 4 * h, h], &r);
        let bias = g.weight(&format!("{p}.lstm.B"), &[dirs, 8 * h], &bias);
        let direction = if config.bidirectional {
            "bidirectional"
        } else {
            "forward"
        };
        let y = g.node_n(
            "LSTM",
            &[&feat, &w, &r, &bias],
            vec![
                ("hidden_size", Attr::Int(h)),
                ("direction", Attr::Str(direction.into())),
                ("layout", Attr::Int(0)),
            ],
            1,
        );
        // Y: [seq, dirs, batch, H] -> [batch, seq, dirs * H]
        let y = g.node(
            "Transpose",
            &[&y[0]],
            vec![("perm", Attr::Ints(vec![2, 0, 1, 3]))],
        );
        let shape_bs_ = g.ints(&format!("{p}.shape_bs2h"), &[3], &[-1, s, dirs * h]);
        let y = g.node("Reshape", &[&y, &shape_bs_], vec![]);

        let y = linear(&mut g, &get, &y, &format!("{p}.fc1"), f, dirs * h)?;
        let y = g.node("Relu", &[&y], vec![]);
        let logits = linear(&mut g, &get, &y, &format!("{p}.fc2"), 2, f)?;
        let ratio = g.weight(&format!("ratio.{}", m.key()), &[], &[config.ratio.get(m) as f32]);
        let weighted = g.node("Mul", &[&logits, &ratio], vec![]);
        total = Some(match total {
            None => weighted,
            Some(t) => g.node("Add", &[&t, &weighted], vec![]),
        });
    }
    let logits = total.ok_or_else(|| anyhow!("config has no modalities"))?;
    let probs = g.node("Softmax", &[&logits], vec![("axis", Attr::Int(-1))]);
    let one = g.ints("one", &[], &[1]);
    let prob = g.node("Gather", &[&probs, &one], vec![("axis", Attr::Int(2))]);
    g.output(&prob, "prob", &[batch(), Dim::Fixed(s)]);
    g.output(&logits, "logits", &[batch(), Dim::Fixed(s), Dim::Fixed(2)]);
    let mut metadata = metadata.to_vec();
    metadata.push((META_ACTIVE_CHANNELS.to_string(), active_channels.join(",")));
    Ok(g.encode("lgss", &metadata))
}

/// Exports a checkpoint to `out` (atomically), with metadata describing it.
pub fn export_checkpoint(ckpt: &Checkpoint, out: &Path) -> anyhow::Result<()> {
    let config = ckpt.config()?;
    let m = &config.model;
    let dims: Vec<String> = m
        .modalities
        .iter()
        .map(|&x| format!("{}={}", x.key(), m.feature_dims.get(x)))
        .collect();
    let mut meta = vec![
        (META_VERSION.to_string(), env!("CARGO_PKG_VERSION").to_string()),
        (META_INTERFACE.to_string(), INTERFACE.to_string()),
        (META_CONFIG.to_string(), config.to_toml()?),
        (
            META_MODALITIES.to_string(),
            m.modalities.iter().map(|x| x.key()).collect::<Vec<_>>().join(","),
        ),
        (META_FEATURE_DIMS.to_string(), dims.join(",")),
    ];
    if let Some(d) = ckpt.metadata.get("data") {
        meta.push((META_DATA.to_string(), d.clone()));
    }
    let threshold = crate::model::checkpoint::META_DECISION_THRESHOLD;
    if let Some(t) = ckpt.metadata.get(threshold) {
        crate::model::checkpoint::parse_threshold(Some(t))
            .with_context(|| format!("checkpoint's {threshold}"))?;
        meta.push((META_DECISION_THRESHOLD.to_string(), t.clone()));
    }
    let lengths = crate::model::checkpoint::META_SCENE_LENGTHS;
    if let Some(t) = ckpt.metadata.get(lengths) {
        crate::model::checkpoint::parse_scene_lengths(Some(t))
            .with_context(|| format!("checkpoint's {lengths}"))?;
        meta.push((META_SCENE_LENGTHS.to_string(), t.clone()));
    }
    let grouping = crate::model::checkpoint::META_GROUPING;
    if let Some(t) = ckpt.metadata.get(grouping) {
        crate::model::checkpoint::parse_grouping_choice(Some(t))
            .with_context(|| format!("checkpoint's {grouping}"))?;
        meta.push((META_GROUPING.to_string(), t.clone()));
    }
    let weights: BTreeMap<String, Tensor> = ckpt.weights().map(|(k, v)| (k.clone(), v.clone())).collect();
    let bytes = build(m, &weights, &meta).context("building the ONNX graph")?;
    crate::fsutil::write_atomic(out, &bytes)
}
