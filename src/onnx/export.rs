//! LGSS as an ONNX graph of standard opset-17 operators.
//!
//! Inputs: one `[batch, seq_len, shot_num, D]` tensor per modality, named
//! after it. Outputs: `prob` `[batch, seq_len]` (softmax class 1) and
//! `logits` `[batch, seq_len, 2]`. The LSTM uses `layout = 0` with explicit
//! Transposes (ONNX Runtime refuses layout 1; tract mis-handles it), gates
//! reordered from PyTorch's i,f,g,o to ONNX's i,o,f,c, bias `[b_ih, b_hh]`.
//! Cosine similarity keeps PyTorch's eps clamp, `x / max(‖x‖, 1e-8)`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Context};
use tch::{Kind, Tensor};

use super::graph::{Attr, Dim, GraphBuilder};
use crate::model::checkpoint::Checkpoint;
use crate::model::config::ModelConfig;

/// Metadata keys written into the model.
pub const META_CONFIG: &str = "lgss.config";
pub const META_VERSION: &str = "lgss.version";
pub const META_MODALITIES: &str = "lgss.modalities";
pub const META_FEATURE_DIMS: &str = "lgss.feature_dims";
pub const META_DATA: &str = "lgss.training_data";

fn values(t: &Tensor) -> anyhow::Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(
        t.to_device(tch::Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous()
            .flatten(0, -1),
    )?)
}

/// Reorders PyTorch LSTM gate blocks (i, f, g, o) into ONNX's (i, o, f, c).
fn onnx_gates(v: &[f32], h: usize) -> Vec<f32> {
    let block = v.len() / 4;
    debug_assert_eq!(block % h, 0);
    let [i, f, g, o] = [0, 1, 2, 3].map(|k| &v[k * block..(k + 1) * block]);
    [i, o, f, g].concat()
}

/// Builds the ONNX model for `config` with `weights` (PyTorch state_dict names).
pub fn build(
    config: &ModelConfig,
    weights: &BTreeMap<String, Tensor>,
    metadata: &[(String, String)],
) -> anyhow::Result<Vec<u8>> {
    let get = |name: &str| -> anyhow::Result<Vec<f32>> {
        values(
            weights
                .get(name)
                .ok_or_else(|| anyhow!("weight {name} missing"))?,
        )
    };
    let (k, s) = (config.shot_num as i64, config.seq_len as i64);
    let c = config.sim_channel as i64;
    let h = config.lstm_hidden_size as i64;
    let f = config.fc_hidden as i64;
    let dirs: i64 = if config.bidirectional { 2 } else { 1 };
    let mut g = GraphBuilder::new();
    let batch = || Dim::Named("batch".into());

    let mut total: Option<String> = None;
    for &m in &config.modalities {
        let d = config.feature_dims.get(m) as i64;
        let p = format!("bnet_{}", m.key());
        let x = g.input(m.key(), &[batch(), Dim::Fixed(s), Dim::Fixed(k), Dim::Fixed(d)]);
        let shape = g.ints(&format!("{p}.shape_n1kd"), &[4], &[-1, 1, k, d]);
        let x4 = g.node("Reshape", &[&x, &shape], vec![]);

        // Context: conv over the window, max over the C channels.
        let cw = g.weight(
            &format!("{p}.bnet.conv1.weight"),
            &[c, 1, k, 1],
            &get(&format!("{p}.bnet.conv1.weight"))?,
        );
        let cb = g.weight(
            &format!("{p}.bnet.conv1.bias"),
            &[c],
            &get(&format!("{p}.bnet.conv1.bias"))?,
        );
        let conv = g.node(
            "Conv",
            &[&x4, &cw, &cb],
            vec![("kernel_shape", Attr::Ints(vec![k, 1]))],
        );
        let ctx = g.node(
            "ReduceMax",
            &[&conv],
            vec![("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(0))],
        );
        let shape_nd = g.ints(&format!("{p}.shape_nd"), &[2], &[-1, d]);
        let ctx = g.node("Reshape", &[&ctx, &shape_nd], vec![]);

        // Similarity: the same conv on each half-window, cosine along D.
        let qw = g.weight(
            &format!("{p}.bnet.cos.conv1.weight"),
            &[c, 1, k / 2, 1],
            &get(&format!("{p}.bnet.cos.conv1.weight"))?,
        );
        let qb = g.weight(
            &format!("{p}.bnet.cos.conv1.bias"),
            &[c],
            &get(&format!("{p}.bnet.cos.conv1.bias"))?,
        );
        let axis2 = g.ints("axis2", &[1], &[2]);
        let zero = g.ints("zero", &[1], &[0]);
        let half = g.ints(&format!("half{}", k / 2), &[1], &[k / 2]);
        let full = g.ints(&format!("full{k}"), &[1], &[k]);
        let shape_ncd = g.ints(&format!("{p}.shape_ncd"), &[3], &[-1, c, d]);
        let mut normed = Vec::new();
        for (a, b) in [(&zero, &half), (&half, &full)] {
            let part = g.node("Slice", &[&x4, a, b, &axis2], vec![]);
            let conv = g.node(
                "Conv",
                &[&part, &qw, &qb],
                vec![("kernel_shape", Attr::Ints(vec![k / 2, 1]))],
            );
            let v = g.node("Reshape", &[&conv, &shape_ncd], vec![]);
            let norm = g.node(
                "ReduceL2",
                &[&v],
                vec![("axes", Attr::Ints(vec![2])), ("keepdims", Attr::Int(1))],
            );
            let eps = g.weight("eps", &[], &[1e-8]);
            let norm = g.node("Max", &[&norm, &eps], vec![]);
            normed.push(g.node("Div", &[&v, &norm], vec![]));
        }
        let prod = g.node("Mul", &[&normed[0], &normed[1]], vec![]);
        let sim = g.node("ReduceSum", &[&prod, &axis2], vec![("keepdims", Attr::Int(0))]);

        // BiLSTM over the sequence (layout 0: [seq, batch, input]).
        let feat = g.node("Concat", &[&ctx, &sim], vec![("axis", Attr::Int(1))]);
        let shape_bsi = g.ints(&format!("{p}.shape_bsi"), &[3], &[-1, s, d + c]);
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
            w.extend(onnx_gates(&get(&format!("{p}.lstm.weight_ih_l0{sx}"))?, hh));
            r.extend(onnx_gates(&get(&format!("{p}.lstm.weight_hh_l0{sx}"))?, hh));
            bias.extend(onnx_gates(&get(&format!("{p}.lstm.bias_ih_l0{sx}"))?, hh));
            bias.extend(onnx_gates(&get(&format!("{p}.lstm.bias_hh_l0{sx}"))?, hh));
        }
        let w = g.weight(&format!("{p}.lstm.W"), &[dirs, 4 * h, d + c], &w);
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

        let fc = |g: &mut GraphBuilder, x: &str, name: &str, out: i64, inp: i64| -> anyhow::Result<String> {
            let wv = get(&format!("{p}.{name}.weight"))?;
            // Stored transposed ([in, out]) so the graph is a plain MatMul.
            let wt: Vec<f32> = (0..inp as usize)
                .flat_map(|i| (0..out as usize).map(move |o| (i, o)))
                .map(|(i, o)| wv[o * inp as usize + i])
                .collect();
            let wn = g.weight(&format!("{p}.{name}.weight_t"), &[inp, out], &wt);
            let bn = g.weight(
                &format!("{p}.{name}.bias"),
                &[out],
                &get(&format!("{p}.{name}.bias"))?,
            );
            let mm = g.node("MatMul", &[x, &wn], vec![]);
            Ok(g.node("Add", &[&mm, &bn], vec![]))
        };
        let y = fc(&mut g, &y, "fc1", f, dirs * h)?;
        let y = g.node("Relu", &[&y], vec![]);
        let logits = fc(&mut g, &y, "fc2", 2, f)?;
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
    Ok(g.encode("lgss", metadata))
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
        (META_CONFIG.to_string(), config.to_toml()),
        (
            META_MODALITIES.to_string(),
            m.modalities.iter().map(|x| x.key()).collect::<Vec<_>>().join(","),
        ),
        (META_FEATURE_DIMS.to_string(), dims.join(",")),
    ];
    if let Some(d) = ckpt.metadata.get("data") {
        meta.push((META_DATA.to_string(), d.clone()));
    }
    let weights: BTreeMap<String, Tensor> = ckpt
        .weights()
        .map(|(k, v)| (k.clone(), v.shallow_clone()))
        .collect();
    let bytes = build(m, &weights, &meta).context("building the ONNX graph")?;
    crate::fsutil::write_atomic(out, &bytes)
}
