//! The `tch` and `tch-cuda` runtimes: the checkpoint in libtorch.

use std::path::Path;

use tch::{Device, Kind, Tensor};

use super::{Backend, ModalityInput, RunInput, RuntimeOptions};
use crate::data::windows::{batch_rows, Sequence};
use crate::model::checkpoint::{model_from_checkpoint, Checkpoint};
use crate::model::config::ModelConfig;
use crate::model::lgss::BranchInput;
use crate::model::Lgss;
use crate::phases::Phases;

pub struct TchBackend {
    model: Lgss,
    name: &'static str,
    /// Each window position's shot embedded on its own
    /// ([`super::RuntimeOptions::per_window`]).
    per_window: bool,
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
            per_window: opts.per_window,
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

    fn run_input(&mut self, input: &RunInput<'_>) -> anyhow::Result<Vec<f32>> {
        input.check(&self.model.config)?;
        if self.per_window {
            self.run_checked(&input.per_window())
        } else {
            self.run_checked(input)
        }
    }

    /// The movie's shots go to the model's device once, one copy per
    /// modality; each run's windows are gathered there
    /// ([`crate::model::lgss::gather_windows_on`]), and a per-shot modality's network embeds
    /// the run's shots once ([`crate::runtime::input`]); the probabilities
    /// come back once.
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
        let (rows, rows_on_device) = phases.time("windows", || {
            let rows = batch_rows(seqs, &[0], &[n_shots], c.seq_len, c.shot_num);
            let on_device = Tensor::from_slice(&rows).to_device(device);
            (rows, on_device)
        });
        let per_run = if device.is_cuda() {
            super::sequences_per_run(&c, true, batch)
        } else {
            // The per-window form runs whole `--batch` runs, as it did.
            let most = if self.per_window {
                usize::MAX
            } else {
                super::max_sequences_per_run(&c, false)
            };
            batch.clamp(1, most)
        };
        let window_rows = c.seq_len * c.shot_num;
        let prob = phases.time("model", || {
            let prob = tch::no_grad(|| {
                let parts: Vec<Tensor> = (0..seqs.len())
                    .step_by(per_run)
                    .map(|first| {
                        let n = per_run.min(seqs.len() - first);
                        let (from, to) = (first * window_rows, (first + n) * window_rows);
                        let idx = rows_on_device.narrow(0, from as i64, (to - from) as i64);
                        let run_shots: Vec<Option<(Tensor, Tensor)>> = c
                            .modalities
                            .iter()
                            .zip(&resident)
                            .map(|(&m, f)| c.takes_shots(m).then(|| self.run_shots(f, &idx, &rows[from..to])))
                            .collect();
                        let inputs: Vec<BranchInput> = resident
                            .iter()
                            .zip(&run_shots)
                            .map(|(f, own)| match own {
                                Some((shots, rows)) => BranchInput::Shots { shots, rows },
                                None => BranchInput::Shots { shots: f, rows: &idx },
                            })
                            .collect();
                        self.model.forward_inputs(&inputs).prob()
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

impl TchBackend {
    /// [`Backend::run_input`] of a checked input.
    fn run_checked(&mut self, input: &RunInput<'_>) -> anyhow::Result<Vec<f32>> {
        let c = &self.model.config;
        let device = self.model.device();
        let tensors = c
            .modalities
            .iter()
            .zip(input.modalities())
            .map(|(&m, x)| -> anyhow::Result<(Tensor, Option<Tensor>)> {
                let not_standard = || anyhow::anyhow!("{m} input is not in standard layout");
                Ok(match x {
                    ModalityInput::Windows(w) => {
                        let shape = c.input_shape(m, input.batch()).map(|d| d as i64);
                        let data = w.as_slice().ok_or_else(not_standard)?;
                        (Tensor::from_slice(data).view(shape).to_device(device), None)
                    }
                    ModalityInput::Shots { shots, rows } => {
                        let data = shots.as_slice().ok_or_else(not_standard)?;
                        let shape = [shots.nrows() as i64, shots.ncols() as i64];
                        (
                            Tensor::from_slice(data).view(shape).to_device(device),
                            Some(Tensor::from_slice(rows).to_device(device)),
                        )
                    }
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let inputs: Vec<BranchInput> = tensors
            .iter()
            .map(|(t, rows)| match rows {
                None => BranchInput::Windows(t),
                Some(rows) => BranchInput::Shots { shots: t, rows },
            })
            .collect();
        let prob = tch::no_grad(|| self.model.forward_inputs(&inputs).prob());
        crate::model::f32_values(&prob)
    }

    /// A per-shot modality's input for a run of one movie's consecutive
    /// sequences (`idx` on the device, `rows` on the host: the same window
    /// rows into the movie's `shots`): the shots they span, which are
    /// contiguous, and the rows into that span; or with `per_window`, each
    /// position's shot on its own.
    fn run_shots(&self, shots: &Tensor, idx: &Tensor, rows: &[i64]) -> (Tensor, Tensor) {
        if self.per_window {
            let positions = Tensor::arange(idx.size()[0], (Kind::Int64, idx.device()));
            return (shots.index_select(0, idx), positions);
        }
        let first = rows.iter().copied().min().unwrap_or(0);
        let last = rows.iter().copied().max().unwrap_or(0);
        (shots.narrow(0, first, last - first + 1), idx - first)
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
