//! The model configuration `lgss export` stores in the ONNX metadata.

use std::path::Path;

use anyhow::{anyhow, Context};
use prost::Message;
use tract_onnx::pb;

use crate::model::checkpoint::StoredChoices;
use crate::model::config::{Config, ModelConfig};
use crate::onnx::contract::{
    INTERFACE_WINDOWS_ONLY, META_CONFIG, META_DECISION_THRESHOLD, META_GROUPING, META_INTERFACE,
    META_SCENE_LENGTHS,
};

/// `ModelProto` field numbers this reader needs.
const FIELD_GRAPH: u64 = 7;
const FIELD_METADATA_PROPS: u64 = 14;

/// The metadata of an ONNX file, read without decoding its graph: the
/// top-level fields are scanned and all but `metadata_props` seeked over,
/// so asking a 400 MB model for its config costs a few reads, not a decode
/// of its weights (which the runtime does once, when it opens the model).
/// A file whose top level is not a protobuf message, or that has no graph,
/// is refused as not an ONNX model.
fn metadata_props(path: &Path) -> anyhow::Result<Vec<pb::StringStringEntryProto>> {
    let bad = |why: String| anyhow!("{}: not an ONNX model: {why}", path.display());
    let crate::regular_file::Regular { file, len } =
        crate::regular_file::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut r = std::io::BufReader::new(file);
    let mut pos = 0u64;
    let mut props = Vec::new();
    let mut has_graph = false;
    while pos < len {
        let key = read_varint(&mut r, &mut pos).map_err(|e| bad(format!("{e} at byte {pos}")))?;
        let (field, wire) = (key >> 3, key & 7);
        if field == 0 {
            return Err(bad(format!("field number 0 at byte {pos}")));
        }
        let skip = match wire {
            0 => {
                read_varint(&mut r, &mut pos).map_err(|e| bad(format!("{e} at byte {pos}")))?;
                0
            }
            1 => 8,
            5 => 4,
            2 => read_varint(&mut r, &mut pos).map_err(|e| bad(format!("{e} at byte {pos}")))?,
            _ => return Err(bad(format!("wire type {wire} at byte {pos}"))),
        };
        if skip > len - pos {
            return Err(bad(format!(
                "a field of {skip} bytes at byte {pos} runs past the end ({len} bytes): truncated?"
            )));
        }
        if wire == 2 && field == FIELD_GRAPH {
            has_graph = true;
        }
        if wire == 2 && field == FIELD_METADATA_PROPS {
            let mut buf = vec![0u8; skip as usize];
            std::io::Read::read_exact(&mut r, &mut buf)
                .with_context(|| format!("{}: cannot read", path.display()))?;
            props.push(
                pb::StringStringEntryProto::decode(buf.as_slice())
                    .map_err(|e| bad(format!("metadata_props at byte {pos}: {e}")))?,
            );
        } else {
            r.seek_relative(skip as i64)
                .with_context(|| format!("{}: cannot read", path.display()))?;
        }
        pos += skip;
    }
    if !has_graph {
        return Err(bad("it has no graph".into()));
    }
    Ok(props)
}

/// A protobuf base-128 varint, advancing `pos`.
fn read_varint(r: &mut impl std::io::Read, pos: &mut u64) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for i in 0..10 {
        let mut byte = [0u8];
        r.read_exact(&mut byte)
            .map_err(|_| "a varint runs past the end")?;
        *pos += 1;
        value |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a varint longer than 10 bytes")
}

/// The decision threshold, scene-length prior and grouping choice an
/// exported model carries.
pub fn stored_choices_of(path: &Path) -> anyhow::Result<StoredChoices> {
    let props = metadata_props(path)?;
    StoredChoices::parse(
        path,
        [META_DECISION_THRESHOLD, META_SCENE_LENGTHS, META_GROUPING],
        |k| props.iter().find(|p| p.key == k).map(|p| p.value.as_str()),
    )
}

/// Reads the LGSS config from an exported ONNX file.
pub fn config_of(path: &Path) -> anyhow::Result<ModelConfig> {
    let props = metadata_props(path)?;
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
    let config = Config::from_toml(&text)
        .with_context(|| format!("{}: bad {META_CONFIG}", path.display()))?
        .model;
    // Models from before the interface was recorded use windows only.
    let interface = props
        .iter()
        .find(|p| p.key == META_INTERFACE)
        .map_or(INTERFACE_WINDOWS_ONLY, |p| p.value.as_str());
    let per_shot = config.modalities.iter().any(|&m| config.takes_shots(m));
    if interface != super::INTERFACE && (per_shot || interface != INTERFACE_WINDOWS_ONLY) {
        anyhow::bail!(
            "{}: the model's input interface is \"{}\", this lgss reads \"{}\": export the checkpoint again with this lgss",
            path.display(),
            crate::data::pickle::printable(interface),
            super::INTERFACE
        );
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str) -> pb::StringStringEntryProto {
        pb::StringStringEntryProto {
            key: key.into(),
            value: value.into(),
        }
    }

    /// A model with every kind of top-level field around its metadata.
    fn model() -> pb::ModelProto {
        let weights = pb::TensorProto {
            name: "w".into(),
            dims: vec![300],
            data_type: 1,
            raw_data: (0..1200u32).map(|i| (i * 7) as u8).collect(),
            ..Default::default()
        };
        pb::ModelProto {
            ir_version: 8,
            producer_name: "lgss".into(),
            model_version: 3,
            opset_import: vec![pb::OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            graph: Some(pb::GraphProto {
                name: "g".into(),
                initializer: vec![weights],
                ..Default::default()
            }),
            metadata_props: vec![
                entry("a", "1"),
                entry(META_DECISION_THRESHOLD, "0.65"),
                entry("ü", ""),
            ],
            ..Default::default()
        }
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn scanned_metadata_equals_prost_full_decode() {
        let dir = std::env::temp_dir().join(format!("lgss-onnx-meta-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bytes = model().encode_to_vec();
        let path = write(&dir, "m.onnx", &bytes);
        let full = pb::ModelProto::decode(bytes.as_slice()).unwrap().metadata_props;
        assert_eq!(metadata_props(&path).unwrap(), full);
        assert_eq!(stored_choices_of(&path).unwrap().threshold, Some(0.65));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn truncated_and_foreign_files_are_refused_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("lgss-onnx-meta-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bytes = model().encode_to_vec();
        // Cut inside the graph's weights: the graph field runs past the end.
        let half = bytes.len() / 2;
        let cut = write(&dir, "cut.onnx", &bytes[..half]);
        let e = format!("{:#}", metadata_props(&cut).unwrap_err());
        assert!(e.contains("cut.onnx") && e.contains("truncated"), "{e}");
        // prost agrees that the cut file is no model.
        assert!(pb::ModelProto::decode(&bytes[..half]).is_err());
        for (name, data) in [
            ("empty.onnx", &b""[..]),
            ("pickle.onnx", &b"\x80\x02}q\x00."[..]),
            ("text.onnx", &b"not a model at all"[..]),
        ] {
            let path = write(&dir, name, data);
            let e = format!("{:#}", metadata_props(&path).unwrap_err());
            assert!(e.contains(name) && e.contains("not an ONNX model"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
