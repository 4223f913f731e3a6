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
//! binding), each run binds only its window indices (and a per-shot
//! modality's run shots, `crate::runtime::input`), the windows are
//! gathered on the device, and runs are as large as
//! [`super::DEVICE_INPUT_BUDGET`] allows. The CPU keeps the window
//! interface: there the windows cost ~1% and the session reads them in
//! place. ONNX Runtime's CUDA graphs need fixed shapes and addresses, which
//! movies of different lengths do not have; they are not used.

use std::borrow::Cow;
use std::path::Path;

use anyhow::{anyhow, Context};
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{Session, SessionInputValue};
use ort::value::{Tensor, TensorRef};

use super::input::run_shots;
use super::{onnx_meta, ort_lib, Backend, ModalityInput, RunInput, RuntimeOptions};
use crate::data::windows::{batch_rows, Sequence};
use crate::model::config::ModelConfig;
use crate::onnx::contract::rows_input;
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
    /// Each window position's shot embedded on its own
    /// ([`super::RuntimeOptions::per_window`]).
    per_window: bool,
}

/// One run of the per-shot form: the window rows into the movie's shots
/// bound for the window modalities, and each per-shot modality's run
/// shots and rows ([`crate::runtime::input`]), in the config's order.
struct PerShotRun {
    rows: Vec<i64>,
    shots: Vec<(ndarray::Array2<f32>, Vec<i64>)>,
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
            per_window: opts.per_window,
        })
    }

    /// Probabilities with the per-shot form: the window modalities'
    /// per-shot features (`movie`, `[n_shots, D]` each, in the config's
    /// order) bound once, then each of `runs` bound and run.
    fn run_per_shot(
        &mut self,
        movie: &[ndarray::ArrayView2<'_, f32>],
        mut runs: impl Iterator<Item = PerShotRun>,
        phases: &mut Phases,
    ) -> anyhow::Result<Vec<f32>> {
        let c = self.config.clone();
        let window_modalities: Vec<_> = c.modalities.iter().filter(|&&m| !c.takes_shots(m)).collect();
        let shot_modalities: Vec<_> = c.modalities.iter().filter(|&&m| c.takes_shots(m)).collect();
        let ort_err = |what: &str| {
            let what = what.to_string();
            move |e: ort::Error| anyhow!("{what}: {e}")
        };
        let mut binding = self.session.create_binding().map_err(ort_err("ort binding"))?;
        phases.time("shots to device", || -> anyhow::Result<()> {
            for (f, &m) in movie.iter().zip(&window_modalities) {
                // Owned: ort 2.0.0-rc.15 deadlocks binding a borrowed tensor
                // it decides to copy (`Value::clone` re-enters the lock of
                // its copy sessions). One host copy of the movie's shots.
                let t = Tensor::from_array(f.to_owned()).map_err(ort_err(&format!("ort input {m}")))?;
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
            let Some(run) = phases.time("windows", || runs.next()) else {
                break;
            };
            let positions = [run.rows.len() / (c.seq_len * c.shot_num), c.seq_len, c.shot_num];
            if !window_modalities.is_empty() {
                let rows = Tensor::from_array(([run.rows.len()], run.rows)).map_err(ort_err("ort rows"))?;
                binding.bind_input(ROWS, &rows).map_err(ort_err("ort rows"))?;
            }
            for ((shots, rows), &m) in run.shots.into_iter().zip(&shot_modalities) {
                let what = format!("ort input {m}");
                let t = Tensor::from_array(shots).map_err(ort_err(&what))?;
                binding.bind_input(m.key(), &t).map_err(ort_err(&what))?;
                let r = Tensor::from_array((positions, rows)).map_err(ort_err(&what))?;
                binding
                    .bind_input(rows_input(m.key()), &r)
                    .map_err(ort_err(&what))?;
            }
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

impl OrtBackend {
    /// [`Backend::run_input`] of a checked input.
    fn run_checked(&mut self, input: &RunInput<'_>) -> anyhow::Result<Vec<f32>> {
        let c = self.config.clone();
        if self.per_shot {
            // Windows given whole: each window position is its own "shot",
            // taken in order.
            let positions = input.batch() * c.seq_len * c.shot_num;
            let mut movie = Vec::new();
            let mut shots = Vec::new();
            for x in input.modalities() {
                match x {
                    ModalityInput::Windows(w) => {
                        let d = w.dim().3;
                        movie.push(
                            w.view()
                                .into_shape_with_order((positions, d))
                                .map_err(|e| anyhow!("ort input: {e}"))?,
                        );
                    }
                    ModalityInput::Shots { shots: s, rows } => shots.push((s.to_owned(), rows.clone())),
                }
            }
            let run = PerShotRun {
                rows: (0..positions as i64).collect(),
                shots,
            };
            return self.run_per_shot(&movie, std::iter::once(run), &mut Phases::new());
        }
        let mut values = Vec::with_capacity(input.modalities().len() + 1);
        // The graph's inputs are named after the modalities (onnx::export);
        // ONNX Runtime reads the caller's arrays in place.
        for (&m, x) in c.modalities.iter().zip(input.modalities()) {
            let err = |e: ort::Error| anyhow!("ort input {m}: {e}");
            match x {
                ModalityInput::Windows(w) => {
                    let t = TensorRef::from_array_view(w.view()).map_err(err)?;
                    values.push((Cow::from(m.key()), SessionInputValue::from(t)));
                }
                ModalityInput::Shots { shots, rows } => {
                    let t = TensorRef::from_array_view(shots.view()).map_err(err)?;
                    values.push((Cow::from(m.key()), SessionInputValue::from(t)));
                    let positions = [input.batch(), c.seq_len, c.shot_num];
                    let r = Tensor::from_array((positions, rows.clone())).map_err(err)?;
                    values.push((Cow::from(rows_input(m.key())), SessionInputValue::from(r)));
                }
            }
        }
        let outputs = self.session.run(values).map_err(|e| anyhow!("ort run: {e}"))?;
        let (_, prob) = outputs["prob"]
            .try_extract_tensor::<f32>()
            .map_err(|e| anyhow!("ort output: {e}"))?;
        Ok(prob.to_vec())
    }
}

impl Backend for OrtBackend {
    fn name(&self) -> &str {
        self.name
    }

    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn run_input(&mut self, input: &RunInput<'_>) -> anyhow::Result<Vec<f32>> {
        input.check(&self.config)?;
        if self.per_window {
            self.run_checked(&input.per_window())
        } else {
            self.run_checked(input)
        }
    }

    /// The per-window form runs whole `--batch` runs, as it did.
    fn max_sequences_per_run(&self) -> usize {
        if self.per_window {
            usize::MAX
        } else {
            super::max_sequences_per_run(&self.config, false)
        }
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
        super::checked_shots(&c, shots, n_shots)?;
        let per_run = super::sequences_per_run(&c, self.device, batch);
        let (movie, per_shot): (Vec<_>, Vec<_>) = c
            .modalities
            .iter()
            .zip(shots)
            .partition(|(&m, _)| !c.takes_shots(m));
        let movie: Vec<ndarray::ArrayView2<f32>> = movie.into_iter().map(|(_, f)| f.view()).collect();
        let per_window = self.per_window;
        let runs = seqs.chunks(per_run).map(|run| {
            let rows = batch_rows(run, &[0], &[n_shots], c.seq_len, c.shot_num);
            let shots = per_shot
                .iter()
                .map(|(_, f)| run_shots(f.view(), &rows, per_window))
                .collect();
            PerShotRun { rows, shots }
        });
        self.run_per_shot(&movie, runs, phases)
    }
}
