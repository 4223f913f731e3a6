//! The `tch` and `tch-cuda` runtimes: the checkpoint in libtorch.

use std::path::Path;

use tch::{Device, Kind, Tensor};

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
        let data = super::checked_shots(&c, shots, n_shots)?;
        let device = self.model.device();
        let resident = phases.time("shots to device", || -> anyhow::Result<Vec<Tensor>> {
            data.iter()
                .zip(shots)
                .map(|(data, f)| shots_on(data, [n_shots as i64, f.ncols() as i64], device))
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

/// One modality's per-shot features (`data`, row-major `shape`) on
/// `device`. On CUDA the one host copy goes into page-locked memory
/// (libtorch's caching host allocator, reused movie after movie), from
/// which the copy to the device is a DMA queued without waiting, at about
/// twice pageable memory's bandwidth (libtorch keeps the page-locked block
/// until that copy is done). On the CPU, a plain copy.
fn shots_on(data: &[f32], shape: [i64; 2], device: Device) -> anyhow::Result<Tensor> {
    if !device.is_cuda() {
        return Ok(Tensor::from_slice(data).view(shape));
    }
    let pinned = with_borrowed(data, shape, |host| host.f_pin_memory(device))??;
    Ok(pinned.f_to_device_(device, Kind::Float, true, false)?)
}

/// Runs `f` on a CPU tensor that borrows `data` (row-major `shape`, no
/// copy); `f` must not keep it (nor a shallow clone) past its return.
fn with_borrowed<R>(data: &[f32], shape: [i64; 2], f: impl FnOnce(&Tensor) -> R) -> anyhow::Result<R> {
    anyhow::ensure!(
        shape.iter().all(|&d| d >= 0) && data.len() as i64 == shape[0] * shape[1],
        "{} values do not fill shape {shape:?}",
        data.len()
    );
    // SAFETY: `data` holds shape[0]·shape[1] f32 in row-major order (checked
    // above) and outlives `borrowed`, which is dropped before returning.
    let borrowed = unsafe {
        Tensor::f_from_blob(
            data.as_ptr().cast(),
            &shape,
            &[shape[1], 1],
            Kind::Float,
            Device::Cpu,
        )?
    };
    Ok(f(&borrowed))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The page-locked upload starts from a tensor borrowing the features:
    /// it must read exactly them (CUDA's half is checked by gpu-check).
    #[test]
    fn a_borrowed_host_tensor_reads_the_features_in_place() {
        let data: Vec<f32> = (0..35).map(|i| i as f32 * 0.25 - 3.0).collect();
        let copied = with_borrowed(&data, [5, 7], |t| {
            assert_eq!(t.data_ptr() as *const f32, data.as_ptr());
            t.copy()
        })
        .unwrap();
        assert!(copied.equal(&Tensor::from_slice(&data).view([5, 7])));
        assert!(with_borrowed(&data, [6, 7], |_| ()).is_err());
        assert!(with_borrowed(&data, [-5, -7], |_| ()).is_err());
        assert_eq!(shots_on(&data, [5, 7], Device::Cpu).unwrap().size(), [5, 7]);
    }
}
