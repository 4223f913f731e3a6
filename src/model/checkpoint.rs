//! Checkpoints: one safetensors file with the weights (PyTorch state_dict
//! names), optionally the optimizer's state, and metadata (the config as
//! TOML, the training position and seed) — everything `--resume` needs to
//! continue exactly. Written atomically.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::config::Config;
use crate::data::pickle::decode_le;
use crate::data::tensor::Tensor;
use crate::fsutil::write_atomic;

/// Prefixes of optimizer tensors; model weights have none.
pub const EXP_AVG: &str = "adam.exp_avg.";
pub const EXP_AVG_SQ: &str = "adam.exp_avg_sq.";
/// Prefix of the weights the optimizer trains when the model's weights are
/// their moving average (`train.ema_decay`): training state, like Adam's.
pub const TRAINED: &str = "train.weights.";

/// Whether a checkpoint tensor is training state rather than a model weight.
fn is_training_state(name: &str) -> bool {
    name.starts_with("adam.") || name.starts_with("train.")
}

const FORMAT: &str = "lgss-checkpoint-1";

/// Metadata key of the validation-chosen decision threshold.
pub const META_DECISION_THRESHOLD: &str = "decision_threshold";

/// Metadata key of the training scenes' length histogram (a JSON array:
/// element `L − 1` counts the scenes of `L` shots), global grouping's prior.
pub const META_SCENE_LENGTHS: &str = "scene_length_counts";

/// Metadata key of global grouping's γ and λ as `lgss train --val-movies`
/// chose them on the validation movies (a JSON [`GroupingChoice`]).
pub const META_GROUPING: &str = "grouping_choice";

/// Global grouping's settings chosen on validation movies. The stored JSON
/// also says what they scored there (`val_Miou`, `local_val_Miou`,
/// `val_movies`); only these two are read back.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GroupingChoice {
    /// γ, `segment --global --coherence`'s default for this model.
    pub coherence: f64,
    /// λ, `segment --global --length-weight`'s default for this model.
    pub length_weight: f64,
}

/// A stored grouping choice: absent, or finite non-negative γ and λ.
pub fn parse_grouping_choice(text: Option<&str>) -> anyhow::Result<Option<GroupingChoice>> {
    let Some(t) = text else { return Ok(None) };
    let c: GroupingChoice = serde_json::from_str(t)
        .map_err(|e| anyhow!("not a JSON object with numbers coherence and length_weight: {e}"))?;
    for (name, v) in [("coherence", c.coherence), ("length_weight", c.length_weight)] {
        if !(v.is_finite() && v >= 0.0) {
            bail!("{name} {v} is not a finite number ≥ 0");
        }
    }
    Ok(Some(c))
}

/// A stored scene-length histogram: absent, or counts a prior can learn from.
pub fn parse_scene_lengths(text: Option<&str>) -> anyhow::Result<Option<crate::grouping::LengthPrior>> {
    let Some(t) = text else { return Ok(None) };
    let counts: Vec<u64> =
        serde_json::from_str(t).map_err(|e| anyhow!("not a JSON array of scene counts: {e}"))?;
    Ok(Some(crate::grouping::LengthPrior::from_counts(&counts)?))
}

/// A stored decision threshold: absent, or a number inside (0, 1).
pub fn parse_threshold(text: Option<&str>) -> anyhow::Result<Option<f64>> {
    let Some(t) = text else { return Ok(None) };
    let v: f64 = t.trim().parse().map_err(|_| anyhow!("\"{t}\" is not a number"))?;
    if !(v > 0.0 && v < 1.0) {
        bail!("{v} is not inside (0, 1)");
    }
    Ok(Some(v))
}

/// What `lgss train` stores with a model besides its weights, in checkpoint
/// and ONNX metadata alike.
#[derive(Debug, Default, Clone)]
pub struct StoredChoices {
    /// The decision threshold chosen on the validation movies.
    pub threshold: Option<f64>,
    /// Global grouping's scene-length prior.
    pub length_prior: Option<crate::grouping::LengthPrior>,
    /// Global grouping's γ and λ chosen on validation movies.
    pub grouping: Option<GroupingChoice>,
}

impl StoredChoices {
    /// From a model file's metadata: `get` looks a key up; `keys` are the
    /// file format's keys of the threshold, the scene lengths and the
    /// grouping choice.
    pub fn parse<'a>(
        path: &Path,
        [threshold, lengths, grouping]: [&str; 3],
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> anyhow::Result<StoredChoices> {
        Ok(StoredChoices {
            threshold: parse_threshold(get(threshold))
                .with_context(|| format!("{}: bad {threshold}", path.display()))?,
            length_prior: parse_scene_lengths(get(lengths))
                .with_context(|| format!("{}: bad {lengths}", path.display()))?,
            grouping: parse_grouping_choice(get(grouping))
                .with_context(|| format!("{}: bad {grouping}", path.display()))?,
        })
    }
}

/// A checkpoint in memory: named f32 (or i64) tensors as plain host arrays,
/// and metadata. Host arrays, so that export and the inference-only build
/// need no libtorch.
#[derive(Debug, Default)]
pub struct Checkpoint {
    pub tensors: BTreeMap<String, Tensor>,
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    pub fn config(&self) -> anyhow::Result<Config> {
        let text = self
            .metadata
            .get("config")
            .ok_or_else(|| anyhow!("checkpoint has no config"))?;
        Config::from_toml(text).context("checkpoint config")
    }

    pub fn meta<T: std::str::FromStr>(&self, key: &str) -> anyhow::Result<Option<T>> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| anyhow!("checkpoint metadata {key}={v} is malformed")),
        }
    }

    /// Model weights only (no optimizer state), by state_dict name.
    pub fn weights(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.tensors.iter().filter(|(k, _)| !is_training_state(k))
    }

    /// Writes the checkpoint atomically.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }

    /// The checkpoint as a safetensors file.
    pub fn to_bytes(&self) -> anyhow::Result<Vec<u8>> {
        let mut owned: Vec<(&str, Dtype, Vec<u8>, Vec<usize>)> = Vec::with_capacity(self.tensors.len());
        for (name, t) in &self.tensors {
            let dtype = match t {
                Tensor::F32(_) => Dtype::F32,
                Tensor::I64(_) => Dtype::I64,
                other => bail!(
                    "checkpoint tensor {name} is {}; F32 and I64 are supported",
                    other.dtype()
                ),
            };
            let mut bytes = Vec::new();
            t.write_le(&mut bytes);
            owned.push((name, dtype, bytes, t.shape().to_vec()));
        }
        let mut views = Vec::with_capacity(owned.len());
        for (name, dtype, bytes, shape) in &owned {
            let view = TensorView::new(*dtype, shape.clone(), bytes)
                .map_err(|e| anyhow!("checkpoint tensor {name}: {e:?}"))?;
            views.push((*name, view));
        }
        let mut meta: HashMap<String, String> = self.metadata.clone().into_iter().collect();
        meta.insert("format".into(), FORMAT.into());
        safetensors::serialize(views, &Some(meta)).map_err(|e| anyhow!("{e:?}"))
    }

    /// The decision threshold, scene-length prior and grouping choice
    /// `lgss train` stored with these weights; reads only the file's header.
    pub fn stored_choices_of(path: &Path) -> anyhow::Result<StoredChoices> {
        let v = Checkpoint::header_of(path)?;
        let meta = &v["__metadata__"];
        StoredChoices::parse(
            path,
            [META_DECISION_THRESHOLD, META_SCENE_LENGTHS, META_GROUPING],
            |k| meta[k].as_str(),
        )
    }

    /// The file's safetensors header (names, shapes, metadata), read alone.
    fn header_of(path: &Path) -> anyhow::Result<serde_json::Value> {
        use std::io::Read;
        let crate::regular_file::Regular {
            file: mut f,
            len: file_len,
        } = crate::regular_file::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let mut len = [0u8; 8];
        f.read_exact(&mut len)
            .with_context(|| format!("{}: not a safetensors file", path.display()))?;
        let n = u64::from_le_bytes(len);
        if n > file_len.saturating_sub(8) || n > 100 << 20 {
            bail!("{}: not a safetensors file (header of {n} bytes)", path.display());
        }
        let mut header = vec![0u8; n as usize];
        f.read_exact(&mut header)
            .with_context(|| format!("{}: truncated header", path.display()))?;
        serde_json::from_slice(&header)
            .with_context(|| format!("{}: not a safetensors header", path.display()))
    }

    pub fn load(path: &Path) -> anyhow::Result<Checkpoint> {
        let bytes =
            crate::regular_file::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        Checkpoint::from_bytes(&bytes).with_context(|| format!("{}: not a valid checkpoint", path.display()))
    }

    /// Reads any safetensors file of f32 tensors (a checkpoint, or a PyTorch
    /// state_dict saved with `safetensors.torch.save_file`).
    pub fn from_bytes(bytes: &[u8]) -> anyhow::Result<Checkpoint> {
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| anyhow!("{e:?}"))?;
        let metadata: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let st = SafeTensors::deserialize(bytes).map_err(|e| anyhow!("{e:?}"))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let data = view.data();
            let tensor = match view.dtype() {
                Dtype::F32 => {
                    Tensor::from_shape_vec(view.shape(), decode_le::<f32, 4>(data, f32::from_le_bytes))
                }
                Dtype::I64 => {
                    Tensor::from_shape_vec(view.shape(), decode_le::<i64, 8>(data, i64::from_le_bytes))
                }
                other => bail!("tensor {name} is {other:?}; F32 and I64 are supported"),
            }
            .map_err(|e| anyhow!("tensor {name}: {e}"))?;
            tensors.insert(name, tensor);
        }
        Ok(Checkpoint { tensors, metadata })
    }
}

/// Conversions between checkpoint tensors and libtorch's.
#[cfg(feature = "tch")]
mod libtorch {
    use std::collections::BTreeMap;

    use anyhow::{anyhow, bail};

    use ndarray::ArrayD;

    use super::{Checkpoint, Tensor};
    use crate::model::Lgss;

    /// A host tensor as a libtorch CPU tensor.
    pub fn to_tch(t: &Tensor) -> tch::Tensor {
        let shape: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
        let flat = match t {
            Tensor::F32(a) => row_major(a),
            Tensor::F64(a) => row_major(a),
            Tensor::I64(a) => row_major(a),
            Tensor::I32(a) => row_major(a),
            Tensor::U8(a) => row_major(a),
            Tensor::Bool(a) => row_major(a),
        };
        flat.view(shape.as_slice())
    }

    /// The elements in row-major order as a flat libtorch tensor (one copy).
    fn row_major<T: tch::kind::Element + Clone>(a: &ArrayD<T>) -> tch::Tensor {
        match a.as_slice() {
            Some(values) => tch::Tensor::from_slice(values),
            None => tch::Tensor::from_slice(&a.iter().cloned().collect::<Vec<T>>()),
        }
    }

    /// A libtorch tensor (any device) as a host tensor: i64 stays i64
    /// (BatchNorm's `num_batches_tracked`), anything else becomes f32.
    pub fn from_tch(t: &tch::Tensor) -> anyhow::Result<Tensor> {
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        if t.kind() == tch::Kind::Int64 {
            let flat = t.to_device(tch::Device::Cpu).contiguous().flatten(0, -1);
            return Tensor::from_shape_vec(&shape, Vec::<i64>::try_from(flat)?).map_err(|e| anyhow!(e));
        }
        Tensor::from_shape_vec(&shape, crate::model::f32_values(t)?).map_err(|e| anyhow!(e))
    }

    impl Checkpoint {
        /// A tensor as a libtorch CPU tensor.
        pub fn tch(&self, name: &str) -> anyhow::Result<tch::Tensor> {
            self.tensors
                .get(name)
                .map(to_tch)
                .ok_or_else(|| anyhow!("checkpoint has no tensor {name}"))
        }

        /// A model's weights (by state_dict name) with its config.
        pub fn of_model(model: &Lgss, config: &crate::model::Config) -> anyhow::Result<Checkpoint> {
            let mut c = Checkpoint::default();
            for (name, t) in model.named_variables() {
                c.insert_tch(name, &t.detach())?;
            }
            c.metadata.insert("config".into(), config.to_toml()?);
            Ok(c)
        }

        /// Stores a libtorch tensor (copied to the host as f32).
        pub fn insert_tch(&mut self, name: impl Into<String>, t: &tch::Tensor) -> anyhow::Result<()> {
            let name = name.into();
            let host = from_tch(t).map_err(|e| anyhow!("checkpoint tensor {name}: {e}"))?;
            self.tensors.insert(name, host);
            Ok(())
        }
    }

    /// Copies weights into the model; every model variable must be present
    /// with its shape (extra tensors, such as optimizer state, are ignored).
    pub fn load_weights(model: &mut Lgss, weights: &BTreeMap<String, Tensor>) -> anyhow::Result<()> {
        let vars = model.vs.variables();
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort();
        tch::no_grad(|| -> anyhow::Result<()> {
            for name in names {
                let src = weights
                    .get(name)
                    .ok_or_else(|| anyhow!("weight {name} missing"))?;
                let mut dst = vars[name].shallow_clone();
                let want: Vec<usize> = dst.size().iter().map(|&d| d as usize).collect();
                if src.shape() != want.as_slice() {
                    bail!(
                        "weight {name} has shape {:?}, the model expects {want:?}",
                        src.shape()
                    );
                }
                dst.copy_(&to_tch(src));
            }
            Ok(())
        })
    }

    /// A model built from a checkpoint's config and weights.
    pub fn model_from_checkpoint(ckpt: &Checkpoint, device: tch::Device) -> anyhow::Result<Lgss> {
        let config = ckpt.config()?;
        let mut model = Lgss::new(&config.model, device);
        load_weights(&mut model, &ckpt.tensors)?;
        Ok(model)
    }
}

#[cfg(feature = "tch")]
pub use libtorch::{from_tch, load_weights, model_from_checkpoint, to_tch};
