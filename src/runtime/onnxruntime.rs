//! The `ort-cpu` and `ort-cuda` runtimes: the ONNX file in ONNX Runtime.
//! CUDA goes through the CUDA execution provider registered with
//! `error_on_failure()`; otherwise ONNX Runtime silently falls back to CPU.
//! The EP uses TF32 only when asked (`RuntimeOptions::tf32`), so its results
//! agree with the CPU's; cuDNN picks conv algorithms by heuristic, which is
//! deterministic and skips the exhaustive benchmark at start-up.
//!
//! On CUDA the session runs the model's per-shot form
//! ([`crate::onnx::per_shot`]) through an I/O binding: a movie's per-shot
//! features are bound once (ONNX Runtime copies each to the device at
//! binding), each run binds only its window indices, the windows are
//! gathered on the device, and runs are as large as
//! [`super::DEVICE_INPUT_BUDGET`] allows. The CPU keeps the window
//! interface: there the windows cost ~1% and the session reads them in
//! place. ONNX Runtime's CUDA graphs need fixed shapes and addresses, which
//! movies of different lengths do not have; they are not used.

use std::path::Path;

use anyhow::{anyhow, Context};
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::Session;
use ort::value::{Tensor, TensorRef};

use super::{onnx_meta, ort_lib, Backend, RuntimeOptions};
use crate::data::windows::{batch_rows, Sequence};
use crate::model::config::ModelConfig;
use crate::onnx::per_shot::{per_shot_model, shots_input, ROWS};
use crate::phases::Phases;

pub struct OrtBackend {
    session: Session,
    config: ModelConfig,
    name: &'static str,
    /// The session runs the per-shot form (on CUDA).
    per_shot: bool,
    /// Runs on a device: sequences per run from the memory budget.
    device: bool,
}

impl OrtBackend {
    /// `model` in ONNX Runtime, on CUDA in its per-shot form.
    pub fn open(model: &Path, cuda: bool, opts: &RuntimeOptions) -> anyhow::Result<OrtBackend> {
        OrtBackend::open_with(model, cuda, cuda, opts)
    }

    /// [`OrtBackend::open`] with the per-shot form chosen (tests run it on
    /// the CPU).
    pub fn open_with(
        model: &Path,
        cuda: bool,
        per_shot: bool,
        opts: &RuntimeOptions,
    ) -> anyhow::Result<OrtBackend> {
        let config = onnx_meta::config_of(model)?;
        let env = ort_lib::init(opts.ort_lib.as_deref())?;
        let err = |e: ort::Error| anyhow!("{}: ONNX Runtime: {e}", model.display());
        let mut builder = Session::builder(env).map_err(err)?;
        if let Some(t) = opts.threads {
            builder = builder.with_intra_threads(t).map_err(|e| err(e.into()))?;
        }
        if cuda {
            let ep = ort::ep::CUDA::default()
                .with_tf32(opts.tf32)
                .with_conv_algorithm_search(ort::ep::cuda::ConvAlgorithmSearch::Heuristic)
                .build()
                .error_on_failure();
            builder = builder.with_execution_providers([ep]).map_err(|e| {
                anyhow!(
                    "ort-cuda: the CUDA execution provider cannot be used: {}",
                    ort::Error::<()>::from(e)
                )
            })?;
        }
        // Read by lgss, not by ONNX Runtime: only a regular file is opened.
        let bytes =
            crate::regular_file::read(model).with_context(|| format!("{}: cannot read", model.display()))?;
        let session = if per_shot {
            let form = per_shot_model(&bytes, &config).with_context(|| model.display().to_string())?;
            drop(bytes);
            builder.commit_from_memory(&form).map_err(err)?
        } else {
            builder.commit_from_memory(&bytes).map_err(err)?
        };
        Ok(OrtBackend {
            session,
            config,
            name: if cuda { "ort-cuda" } else { "ort-cpu" },
            per_shot,
            device: cuda,
        })
    }

    /// Probabilities from per-shot features `shots` (`[n_shots, D]` per
    /// modality) with the per-shot form: the features bound once, then
    /// each of `runs` (window indices, [`batch_rows`]) bound and run.
    fn run_per_shot(
        &mut self,
        shots: &[ndarray::ArrayView2<'_, f32>],
        n_shots: usize,
        mut runs: impl Iterator<Item = Vec<i64>>,
        phases: &mut Phases,
    ) -> anyhow::Result<Vec<f32>> {
        let c = &self.config;
        let data = super::checked_shots(c, shots, n_shots)?;
        let ort_err = |what: &str| {
            let what = what.to_string();
            move |e: ort::Error| anyhow!("{what}: {e}")
        };
        let mut binding = self.session.create_binding().map_err(ort_err("ort binding"))?;
        phases.time("shots to device", || -> anyhow::Result<()> {
            for ((data, f), &m) in data.iter().zip(shots).zip(&c.modalities) {
                // Owned: ort 2.0.0-rc.15 deadlocks binding a borrowed tensor
                // it decides to copy (`Value::clone` re-enters the lock of
                // its copy sessions). One host copy of the movie's shots.
                let t = Tensor::from_array(([n_shots, f.ncols()], data.to_vec()))
                    .map_err(ort_err(&format!("ort input {m}")))?;
                binding
                    .bind_input(shots_input(m.key()), &t)
                    .map_err(ort_err(&format!("ort input {m}")))?;
            }
            Ok(())
        })?;
        let host = MemoryInfo::new(
            AllocationDevice::CPU,
            0,
            AllocatorType::Device,
            MemoryType::Default,
        )
        .map_err(ort_err("ort output"))?;
        binding
            .bind_output_to_device("prob", &host)
            .map_err(ort_err("ort output"))?;
        let mut prob = Vec::new();
        loop {
            let Some(rows) = phases.time("windows", || {
                runs.next()
                    .map(|rows| Tensor::from_array(([rows.len()], rows)).map_err(ort_err("ort rows")))
                    .transpose()
            })?
            else {
                break;
            };
            binding.bind_input(ROWS, &rows).map_err(ort_err("ort rows"))?;
            phases.time("model", || -> anyhow::Result<()> {
                let outputs = self.session.run_binding(&binding).map_err(ort_err("ort run"))?;
                let (_, p) = outputs["prob"]
                    .try_extract_tensor::<f32>()
                    .map_err(ort_err("ort output"))?;
                prob.extend_from_slice(p);
                Ok(())
            })?;
        }
        Ok(prob)
    }
}

impl Backend for OrtBackend {
    fn name(&self) -> &str {
        self.name
    }

    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn run(&mut self, inputs: &[ndarray::ArrayView4<'_, f32>]) -> anyhow::Result<Vec<f32>> {
        let c = &self.config;
        let (batch, _) = super::checked_inputs(c, inputs)?;
        if self.per_shot {
            // Windows given whole: each window position is its own "shot",
            // taken in order.
            let positions = batch * c.seq_len * c.shot_num;
            let shots = inputs
                .iter()
                .map(|x| {
                    let d = x.dim().3;
                    x.view()
                        .into_shape_with_order((positions, d))
                        .map_err(|e| anyhow!("ort input: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let rows = (0..positions as i64).collect();
            return self.run_per_shot(&shots, positions, std::iter::once(rows), &mut Phases::new());
        }
        let mut values = Vec::with_capacity(inputs.len());
        // The graph's inputs are named after the modalities (onnx::export);
        // ONNX Runtime reads the caller's arrays in place.
        for (&m, x) in c.modalities.iter().zip(inputs) {
            let t = TensorRef::from_array_view(x.view()).map_err(|e| anyhow!("ort input {m}: {e}"))?;
            values.push((
                std::borrow::Cow::from(m.key()),
                ort::session::SessionInputValue::from(t),
            ));
        }
        let outputs = self.session.run(values).map_err(|e| anyhow!("ort run: {e}"))?;
        let (_, prob) = outputs["prob"]
            .try_extract_tensor::<f32>()
            .map_err(|e| anyhow!("ort output: {e}"))?;
        Ok(prob.to_vec())
    }

    /// The per-shot form where the session has it (CUDA), else windows on
    /// the host ([`super::run_movie_by_windows`]).
    fn run_movie(
        &mut self,
        shots: &[ndarray::ArrayView2<'_, f32>],
        n_shots: usize,
        seqs: &[Sequence],
        batch: usize,
        phases: &mut Phases,
    ) -> anyhow::Result<Vec<f32>> {
        if !self.per_shot {
            return super::run_movie_by_windows(self, shots, n_shots, seqs, batch, phases);
        }
        let c = self.config.clone();
        let per_run = super::sequences_per_run(&c, self.device, batch);
        let runs = seqs
            .chunks(per_run)
            .map(|run| batch_rows(run, &[0], &[n_shots], c.seq_len, c.shot_num));
        self.run_per_shot(shots, n_shots, runs, phases)
    }
}
