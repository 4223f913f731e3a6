//! The per-shot form of an exported model, for ONNX Runtime on a GPU: the
//! windows are gathered inside the graph, so a movie's per-shot features
//! cross to the device once and only window indices cross per run.
//!
//! Made in memory from the exported (window-interface) file when a GPU
//! session opens it: each modality's input `<m>` (`[batch, seq_len,
//! shot_num, D]`) becomes `shots_<m>` (`[shots, D]`), and one int64 input
//! [`ROWS`] (`[batch · seq_len · shot_num]`, [`crate::data::windows::batch_rows`])
//! says which shot fills each window position. A Gather and a Reshape
//! rebuild exactly the windows `crate::data::windows` would have given, under
//! the old input's name, so the rest of the graph is untouched. The file on
//! disk keeps the window interface: tract's fixed-batch plan cannot compile
//! a gather over a per-movie axis.

use anyhow::Context;
use prost::Message;
use tract_onnx::pb;

use super::graph::{attribute, value_info, Attr, Dim};
use crate::model::config::ModelConfig;

/// The window-index input of the per-shot form.
pub const ROWS: &str = "rows";

/// The per-shot features input of modality `key`.
pub fn shots_input(key: &str) -> String {
    format!("shots_{key}")
}

/// `model` (an exported lgss ONNX file's bytes, of `config`) in the
/// per-shot form.
pub fn per_shot_model(model: &[u8], config: &ModelConfig) -> anyhow::Result<Vec<u8>> {
    let mut proto = pb::ModelProto::decode(model).context("not an ONNX model")?;
    let graph = proto.graph.as_mut().context("the ONNX model has no graph")?;
    let (s, k) = (config.seq_len as i64, config.shot_num as i64);
    use pb::tensor_proto::DataType;
    let mut prefix = Vec::new();
    if config.modalities.iter().any(|&m| !config.takes_shots(m)) {
        graph.input.push(value_info(
            ROWS,
            DataType::Int64,
            &[Dim::Named("window_positions".into())],
        ));
    }
    // A modality that already takes shots (STFT audio) keeps its inputs: its
    // network embeds the run's shots, so they are bound run by run.
    for &m in config.modalities.iter().filter(|&&m| !config.takes_shots(m)) {
        let key = m.key();
        let d = config.feature_dims.get(m) as i64;
        let at = graph
            .input
            .iter()
            .position(|i| i.name == key)
            .with_context(|| format!("the ONNX model has no input {key}"))?;
        graph.input.remove(at);
        let shots = shots_input(key);
        graph.input.push(value_info(
            &shots,
            DataType::Float,
            &[Dim::Named("shots".into()), Dim::Fixed(d)],
        ));
        let shape = format!("per_shot.{key}.window_shape");
        graph.initializer.push(pb::TensorProto {
            dims: vec![4],
            data_type: DataType::Int64 as i32,
            name: shape.clone(),
            raw_data: [-1, s, k, d].iter().flat_map(|v: &i64| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        let gathered = format!("per_shot.{key}.rows");
        prefix.push(pb::NodeProto {
            input: vec![shots, ROWS.into()],
            output: vec![gathered.clone()],
            name: format!("per_shot_gather_{key}"),
            op_type: "Gather".into(),
            attribute: vec![attribute("axis", Attr::Int(0))],
            ..Default::default()
        });
        prefix.push(pb::NodeProto {
            input: vec![gathered, shape],
            output: vec![key.to_string()],
            name: format!("per_shot_windows_{key}"),
            op_type: "Reshape".into(),
            ..Default::default()
        });
    }
    // Nodes stay in topological order: the gathers feed everything else.
    prefix.append(&mut graph.node);
    graph.node = prefix;
    Ok(proto.encode_to_vec())
}
