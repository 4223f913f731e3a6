//! Checkpoints: one safetensors file with the weights (PyTorch state_dict
//! names), optionally the optimizer's state, and metadata (the config as
//! TOML, the training position and seed) — everything `--resume` needs to
//! continue exactly. Written atomically.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use tch::{Device, Tensor};

use super::config::Config;
use super::lgss::Lgss;
use crate::data::pickle::decode_le;
use crate::fsutil::write_atomic;

/// Prefixes of optimizer tensors; model weights have none.
pub const EXP_AVG: &str = "adam.exp_avg.";
pub const EXP_AVG_SQ: &str = "adam.exp_avg_sq.";

const FORMAT: &str = "lgss-checkpoint-1";

/// A checkpoint in memory: named f32 tensors (on the CPU) and metadata.
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
        self.tensors.iter().filter(|(k, _)| !k.starts_with("adam."))
    }

    /// Writes the checkpoint atomically.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        write_atomic(path, &self.to_bytes()?)
    }

    /// The checkpoint as a safetensors file.
    pub fn to_bytes(&self) -> anyhow::Result<Vec<u8>> {
        let mut owned: Vec<(&str, Vec<f32>, Vec<usize>)> = Vec::with_capacity(self.tensors.len());
        for (name, t) in &self.tensors {
            let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
            let values = super::f32_values(t).with_context(|| format!("checkpoint tensor {name}"))?;
            owned.push((name, values, shape));
        }
        let mut views = Vec::with_capacity(owned.len());
        for (name, values, shape) in &owned {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytemuck::cast_slice(values))
                .map_err(|e| anyhow!("checkpoint tensor {name}: {e:?}"))?;
            views.push((*name, view));
        }
        let mut meta: HashMap<String, String> = self.metadata.clone().into_iter().collect();
        meta.insert("format".into(), FORMAT.into());
        safetensors::serialize(views, &Some(meta)).map_err(|e| anyhow!("{e:?}"))
    }

    pub fn load(path: &Path) -> anyhow::Result<Checkpoint> {
        let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
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
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            let data = view.data();
            let t = match view.dtype() {
                Dtype::F32 => Tensor::from_slice(&decode_le::<f32, 4>(data, f32::from_le_bytes)),
                Dtype::I64 => Tensor::from_slice(&decode_le::<i64, 8>(data, i64::from_le_bytes)),
                other => bail!("tensor {name} is {other:?}; F32 and I64 are supported"),
            };
            tensors.insert(name, t.view(shape.as_slice()));
        }
        Ok(Checkpoint { tensors, metadata })
    }
}

/// Copies weights into the model; every model variable must be present with
/// its shape (extra tensors, such as optimizer state, are ignored).
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
            if src.size() != dst.size() {
                bail!(
                    "weight {name} has shape {:?}, the model expects {:?}",
                    src.size(),
                    dst.size()
                );
            }
            dst.copy_(src);
        }
        Ok(())
    })
}

/// A model built from a checkpoint's config and weights.
pub fn model_from_checkpoint(ckpt: &Checkpoint, device: Device) -> anyhow::Result<Lgss> {
    let config = ckpt.config()?;
    let mut model = Lgss::new(&config.model, device);
    load_weights(&mut model, &ckpt.tensors)?;
    Ok(model)
}
