//! The `tch` and `tch-cuda` runtimes: the checkpoint in libtorch.

use std::path::Path;

use tch::{Device, Tensor};

use super::{Backend, RuntimeOptions};
use crate::model::checkpoint::{model_from_checkpoint, Checkpoint};
use crate::model::config::ModelConfig;
use crate::model::Lgss;

pub struct TchBackend {
    model: Lgss,
    name: &'static str,
}

impl TchBackend {
    pub fn open(checkpoint: &Path, cuda: bool, opts: &RuntimeOptions) -> anyhow::Result<TchBackend> {
        let device = if cuda {
            crate::model::cuda_device("tch-cuda", opts.tf32)?
        } else {
            Device::Cpu
        };
        if let Some(t) = opts.threads {
            tch::set_num_threads(t as i32);
        }
        let ckpt = Checkpoint::load(checkpoint)?;
        let mut model = model_from_checkpoint(&ckpt, device)?;
        model.prune_for_inference()?;
        Ok(TchBackend {
            model,
            name: if cuda { "tch-cuda" } else { "tch" },
        })
    }
}

impl Backend for TchBackend {
    fn name(&self) -> &str {
        self.name
    }

    fn config(&self) -> &ModelConfig {
        &self.model.config
    }

    fn run(&mut self, inputs: &[ndarray::ArrayView4<'_, f32>]) -> anyhow::Result<Vec<f32>> {
        let c = &self.model.config;
        let (batch, inputs) = super::checked_inputs(c, inputs)?;
        let device = self.model.device();
        let xs: Vec<Tensor> = c
            .modalities
            .iter()
            .zip(&inputs)
            .map(|(&m, &data)| {
                let shape = c.input_shape(m, batch).map(|d| d as i64);
                Tensor::from_slice(data).view(shape).to_device(device)
            })
            .collect();
        let prob = tch::no_grad(|| self.model.forward(&xs).prob());
        crate::model::f32_values(&prob)
    }
}
