//! The `tch` and `tch-cuda` runtimes: the checkpoint in libtorch.

use std::path::Path;

use anyhow::Context;
use tch::{Device, Tensor};

use super::{Backend, RuntimeOptions};
use crate::data::windows::{batch_rows, Sequence};
use crate::model::checkpoint::{model_from_checkpoint, Checkpoint};
use crate::model::config::ModelConfig;
use crate::model::Lgss;
use crate::phases::Phases;

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

    /// The movie's shots go to the model's device once, one copy per
    /// modality; each run's windows are gathered there
    /// ([`gather_windows_on`]); the probabilities come back once.
    fn run_movie(
        &mut self,
        shots: &[ndarray::ArrayView2<'_, f32>],
        n_shots: usize,
        seqs: &[Sequence],
        batch: usize,
        phases: &mut Phases,
    ) -> anyhow::Result<Vec<f32>> {
        let c = self.model.config.clone();
        anyhow::ensure!(
            shots.len() == c.modalities.len(),
            "{} feature arrays for a model of {} modalities",
            shots.len(),
            c.modalities.len()
        );
        let device = self.model.device();
        let resident = phases.time("shots to device", || -> anyhow::Result<Vec<Tensor>> {
            shots
                .iter()
                .zip(&c.modalities)
                .map(|(f, &m)| {
                    anyhow::ensure!(
                        f.dim() == (n_shots, c.feature_dims.get(m)),
                        "{m} features are {:?}, expected [{n_shots}, {}]",
                        f.dim(),
                        c.feature_dims.get(m)
                    );
                    let data = f.as_slice().context("features not in standard layout")?;
                    Ok(Tensor::from_slice(data)
                        .view([n_shots as i64, f.ncols() as i64])
                        .to_device(device))
                })
                .collect()
        })?;
        let rows = phases.time("windows", || {
            Tensor::from_slice(&batch_rows(seqs, &[0], &[n_shots], c.seq_len, c.shot_num)).to_device(device)
        });
        let per_run = super::sequences_per_run(&c, device.is_cuda(), batch);
        let window_rows = (c.seq_len * c.shot_num) as i64;
        let prob = phases.time("model", || {
            let prob = tch::no_grad(|| {
                let parts: Vec<Tensor> = (0..seqs.len())
                    .step_by(per_run)
                    .map(|first| {
                        let n = per_run.min(seqs.len() - first) as i64;
                        let idx = rows.narrow(0, first as i64 * window_rows, n * window_rows);
                        let xs: Vec<Tensor> = resident
                            .iter()
                            .map(|f| gather_windows_on(f, &idx, c.seq_len, c.shot_num))
                            .collect();
                        self.model.forward(&xs).prob()
                    })
                    .collect();
                Tensor::cat(&parts, 0)
            });
            if let Device::Cuda(i) = device {
                // The kernels above were only queued: charge them here.
                tch::Cuda::synchronize(i as i64);
            }
            prob
        });
        phases.time("device to host", || crate::model::f32_values(&prob))
    }
}

/// The windows named by `rows` (their [`batch_rows`], flattened) gathered
/// from one modality's per-shot features `shots` (`[n_shots, D]`) on the
/// device they live on: `[rows / (seq_len·shot_num), seq_len, shot_num, D]`,
/// exactly [`crate::data::windows::gather_windows`]'s windows.
pub fn gather_windows_on(shots: &Tensor, rows: &Tensor, seq_len: usize, shot_num: usize) -> Tensor {
    let d = shots.size()[1];
    shots
        .index_select(0, rows)
        .view([-1, seq_len as i64, shot_num as i64, d])
}
