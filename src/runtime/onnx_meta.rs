//! The model configuration `lgss export` stores in the ONNX metadata.

use std::path::Path;

use anyhow::{anyhow, Context};
use prost::Message;
use tract_onnx::pb;

use crate::model::config::{Config, ModelConfig};
use crate::onnx::export::{META_CONFIG, META_DECISION_THRESHOLD, META_INTERFACE};

/// The metadata of an ONNX file, which must decode as a model.
fn metadata_props(path: &Path) -> anyhow::Result<Vec<pb::StringStringEntryProto>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let model = pb::ModelProto::decode(bytes.as_slice())
        .map_err(|e| anyhow!("{}: not an ONNX model: {e}", path.display()))?;
    Ok(model.metadata_props)
}

/// The decision threshold an exported model carries, if any.
pub fn decision_threshold_of(path: &Path) -> anyhow::Result<Option<f64>> {
    let props = metadata_props(path)?;
    let value = props
        .iter()
        .find(|p| p.key == META_DECISION_THRESHOLD)
        .map(|p| p.value.as_str());
    crate::model::checkpoint::parse_threshold(value)
        .with_context(|| format!("{}: bad {META_DECISION_THRESHOLD}", path.display()))
}

/// Reads the LGSS config from an exported ONNX file.
pub fn config_of(path: &Path) -> anyhow::Result<ModelConfig> {
    let props = metadata_props(path)?;
    // Models from before the interface was recorded use windows too.
    if let Some(p) = props.iter().find(|p| p.key == META_INTERFACE) {
        if p.value != super::INTERFACE {
            anyhow::bail!(
                "{}: the model's input interface is \"{}\", this lgss reads \"{}\": export the checkpoint again with this lgss",
                path.display(),
                crate::data::pickle::printable(&p.value),
                super::INTERFACE
            );
        }
    }
    let text = props
        .iter()
        .find(|p| p.key == META_CONFIG)
        .map(|p| p.value.clone())
        .ok_or_else(|| {
            anyhow!(
                "{}: no {META_CONFIG} metadata (not exported by lgss export)",
                path.display()
            )
        })?;
    Ok(Config::from_toml(&text)
        .with_context(|| format!("{}: bad {META_CONFIG}", path.display()))?
        .model)
}
