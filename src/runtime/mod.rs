//! Inference runtimes behind one trait, one file per backend: libtorch
//! (`tch`, from a checkpoint), ONNX Runtime (`ort`, CPU or CUDA) and tract,
//! both from the exported ONNX file. Every backend gets the same windows
//! (`crate::segment`) and returns boundary probabilities.
//!
//! **The interface is windows** (`[batch, seq_len, shot_num, D]` per
//! modality, [`ModelConfig::input_shape`]), version [`INTERFACE`], recorded
//! in each exported model's metadata; a model of another version is refused
//! with a message. The one exception is a modality whose network embeds
//! each shot on its own (SceneSeg's STFT audio CNN): it takes the run's
//! distinct shots and the row of each window position ([`input`]), so
//! each shot is embedded once per run rather than once per window it is
//! in. The other modalities stay windows: shots plus window indices would
//! save the `shot_num`-fold replication of their input, but that costs ~1%
//! of CPU inference here (the windows are assembled from cached rows while
//! the LSTM's matrix products take the time). The file keeps this
//! interface, and the CPU runtimes use it. On a GPU, where the
//! replication would cross the bus, both GPU runtimes take a movie's
//! per-shot features instead ([`Backend::run_movie`]): they cross to the
//! device once and the same windows are gathered there, by libtorch's own
//! gather (tch-cuda) or by a Gather that ort-cuda prepends to the graph in
//! memory ([`crate::onnx::per_shot`]; ONNX Runtime builds the windows
//! itself).

pub mod input;
#[cfg(feature = "tch")]
pub mod libtorch;
pub mod onnx_meta;
#[cfg(feature = "ort")]
pub mod onnxruntime;
#[cfg(feature = "ort")]
pub mod ort_lib;
#[cfg(feature = "tract")]
pub mod tract;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::data::windows::{batch_rows, Sequence};
use crate::model::config::ModelConfig;
use crate::phases::Phases;
pub use input::{ModalityInput, RunInput};

/// The version of the window interface (see the module's doc).
pub use crate::onnx::contract::INTERFACE;

/// A model that maps windows to boundary probabilities.
pub trait Backend: Send {
    /// The runtime's name as `--runtime` spells it.
    fn name(&self) -> &str;
    /// The model's configuration (what its inputs look like).
    fn config(&self) -> &ModelConfig;
    /// Probabilities for the run's sequences, `[batch * seq_len]`.
    fn run_input(&mut self, input: &RunInput<'_>) -> anyhow::Result<Vec<f32>>;

    /// The most sequences one of [`Backend::run_movie`]'s runs holds on
    /// the CPU ([`max_sequences_per_run`] of the form it runs).
    fn max_sequences_per_run(&self) -> usize {
        max_sequences_per_run(self.config(), false)
    }

    /// Probabilities for `batch` sequences given as windows: `inputs[i]`
    /// holds the i-th configured modality as [`ModelConfig::input_shape`],
    /// in standard layout ([`RunInput::from_windows`]).
    fn run(&mut self, inputs: &[ndarray::ArrayView4<'_, f32>]) -> anyhow::Result<Vec<f32>> {
        let input = RunInput::from_windows(self.config(), inputs)?;
        self.run_input(&input)
    }

    /// Probabilities of `seqs` (sequences of one movie of `n_shots` shots),
    /// `[seqs.len() * seq_len]`, from the movie's per-shot features
    /// (`shots[i]`: `[n_shots, D]` of the i-th configured modality), in runs
    /// of at most `batch` sequences (fewer where [`max_sequences_per_run`]
    /// says). By default each run's input is assembled on the host
    /// ([`RunInput::gather`], phase `windows`) and given to
    /// [`Backend::run_input`] (phase `model`). libtorch overrides it: the
    /// shots go to its device once and the windows are gathered there (a
    /// movie's windows are `shot_num` times its shots).
    fn run_movie(
        &mut self,
        shots: &[ndarray::ArrayView2<'_, f32>],
        n_shots: usize,
        seqs: &[Sequence],
        batch: usize,
        phases: &mut Phases,
    ) -> anyhow::Result<Vec<f32>> {
        run_movie_by_windows(self, shots, n_shots, seqs, batch, phases)
    }
}

/// [`Backend::run_movie`]'s default: each run's input assembled on the
/// host (phase `windows`) and given to [`Backend::run_input`] (phase
/// `model`).
pub fn run_movie_by_windows<B: Backend + ?Sized>(
    backend: &mut B,
    shots: &[ndarray::ArrayView2<'_, f32>],
    n_shots: usize,
    seqs: &[Sequence],
    batch: usize,
    phases: &mut Phases,
) -> anyhow::Result<Vec<f32>> {
    let config = backend.config().clone();
    checked_shots(&config, shots, n_shots)?;
    let (seq_len, shot_num) = (config.seq_len, config.shot_num);
    let per_run = batch.clamp(1, backend.max_sequences_per_run());
    let mut prob = Vec::with_capacity(seqs.len() * seq_len);
    for run in seqs.chunks(per_run) {
        let input = phases.time("windows", || {
            let rows = batch_rows(run, &[0], &[n_shots], seq_len, shot_num);
            RunInput::gather(&config, &[(shots, &rows)])
        });
        prob.extend(phases.time("model", || backend.run_input(&input))?);
    }
    Ok(prob)
}

/// Gathered window inputs a run on a GPU may hold (1 GiB of f32): the batch
/// on a device is chosen for its memory, not the CPU's `--batch` (a larger
/// one only when this budget allows more).
pub const DEVICE_INPUT_BUDGET: usize = 1 << 30;

/// Sequences per model run: `batch` on the CPU; on a device as many as
/// [`DEVICE_INPUT_BUDGET`] of gathered windows hold, if more.
pub fn sequences_per_run(c: &ModelConfig, on_device: bool, batch: usize) -> usize {
    let batch = batch.max(1);
    if !on_device {
        return batch;
    }
    let width: usize = c.modalities.iter().map(|&m| c.feature_dims.get(m)).sum();
    let per_sequence = c.seq_len * c.shot_num * width * std::mem::size_of::<f32>();
    batch.max(DEVICE_INPUT_BUDGET / per_sequence.max(1))
}

/// What a run's largest activation of the STFT audio network may take: a
/// CPU runtime holds it (tract's plan holds all of a run's activations at
/// once), so runs are cut to fit.
pub const CPU_ACTIVATION_BUDGET: usize = 512 << 20;

/// The most sequences a run may hold on the CPU: unbounded, except for a
/// model with STFT audio, whose largest conv output (the first's) takes
/// C₁×128×88 floats an image (2.9 MB at SceneSeg's widths). A run of B
/// sequences embeds B·seq_len + shot_num − 1 distinct shots ([`input`]):
/// 18 sequences fit at SceneSeg's widths; `per_window` (each window
/// position embedded on its own, B·seq_len·shot_num images), 4.
pub fn max_sequences_per_run(c: &ModelConfig, per_window: bool) -> usize {
    if !c.modalities.iter().any(|&m| c.takes_shots(m)) {
        return usize::MAX;
    }
    let sizes = crate::model::audnet_geometry::block_sizes(crate::model::config::AudioInput::STFT_SHAPE);
    let largest = sizes
        .iter()
        .zip(c.stft_channels)
        .map(|((conv, _), channels)| channels * (conv[0] * conv[1]) as usize)
        .max()
        .unwrap_or(1);
    let images = CPU_ACTIVATION_BUDGET / (largest * std::mem::size_of::<f32>()).max(1);
    let sequences = if per_window {
        images / (c.seq_len * c.shot_num).max(1)
    } else {
        images.saturating_sub(c.shot_num.saturating_sub(1)) / c.seq_len.max(1)
    };
    sequences.max(1)
}

/// A movie's per-shot features (`shots`, [`Backend::run_movie`]'s) after
/// checking that they are one per modality of `config`, each `[n_shots, D]`
/// and in standard layout, each as a slice.
pub fn checked_shots<'a>(
    config: &ModelConfig,
    shots: &'a [ndarray::ArrayView2<'_, f32>],
    n_shots: usize,
) -> anyhow::Result<Vec<&'a [f32]>> {
    anyhow::ensure!(
        shots.len() == config.modalities.len(),
        "{} feature arrays for a model of {} modalities",
        shots.len(),
        config.modalities.len()
    );
    config
        .modalities
        .iter()
        .zip(shots)
        .map(|(&m, f)| {
            let d = config.feature_dims.get(m);
            anyhow::ensure!(
                f.dim() == (n_shots, d),
                "{m} features are {:?}, expected [{n_shots}, {d}]",
                f.dim()
            );
            f.to_slice()
                .ok_or_else(|| anyhow::anyhow!("{m} features are not in standard layout"))
        })
        .collect()
}

/// The runtimes `--runtime` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// The checkpoint in libtorch on the CPU.
    Tch,
    /// The checkpoint in libtorch on CUDA.
    TchCuda,
    /// The ONNX model in ONNX Runtime on the CPU.
    OrtCpu,
    /// The ONNX model in ONNX Runtime's CUDA execution provider.
    OrtCuda,
    /// The ONNX model in tract (pure Rust, CPU).
    Tract,
}

impl RuntimeKind {
    pub const ALL: [RuntimeKind; 5] = [
        RuntimeKind::Tch,
        RuntimeKind::TchCuda,
        RuntimeKind::OrtCpu,
        RuntimeKind::OrtCuda,
        RuntimeKind::Tract,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Tch => "tch",
            RuntimeKind::TchCuda => "tch-cuda",
            RuntimeKind::OrtCpu => "ort-cpu",
            RuntimeKind::OrtCuda => "ort-cuda",
            RuntimeKind::Tract => "tract",
        }
    }

    pub fn is_cuda(self) -> bool {
        matches!(self, RuntimeKind::TchCuda | RuntimeKind::OrtCuda)
    }

    /// The cargo feature that builds this runtime.
    pub fn feature(self) -> &'static str {
        match self {
            RuntimeKind::Tch | RuntimeKind::TchCuda => "tch",
            RuntimeKind::OrtCpu | RuntimeKind::OrtCuda => "ort",
            RuntimeKind::Tract => "tract",
        }
    }

    /// Whether this binary was built with the runtime.
    pub fn is_built(self) -> bool {
        const BUILT: [(&str, bool); 3] = [
            ("tch", cfg!(feature = "tch")),
            ("ort", cfg!(feature = "ort")),
            ("tract", cfg!(feature = "tract")),
        ];
        BUILT.iter().any(|&(f, on)| on && f == self.feature())
    }

    /// The runtime `segment` uses by default: the best CPU runtime built
    /// (ONNX Runtime, else tract, else libtorch).
    pub fn default_built() -> Option<RuntimeKind> {
        [RuntimeKind::OrtCpu, RuntimeKind::Tract, RuntimeKind::Tch]
            .into_iter()
            .find(|k| k.is_built())
    }

    /// The CPU runtimes this binary has, for `verify`'s default.
    pub fn cpu_built() -> Vec<RuntimeKind> {
        [RuntimeKind::Tch, RuntimeKind::OrtCpu, RuntimeKind::Tract]
            .into_iter()
            .filter(|k| k.is_built())
            .collect()
    }
}

impl std::str::FromStr for RuntimeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RuntimeKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown runtime '{s}' (one of: tch, tch-cuda, ort-cpu, ort-cuda, tract)"))
    }
}

impl std::fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the model is and how to run it.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    pub onnx: Option<PathBuf>,
    pub checkpoint: Option<PathBuf>,
    /// Intra-op threads (default: the runtime's own default).
    pub threads: Option<usize>,
    pub ort_lib: Option<PathBuf>,
    /// Sequences per run (tract compiles its plan for this batch size).
    pub batch: usize,
    /// Let CUDA runtimes use TF32 (faster, less exact); off: full fp32.
    pub tf32: bool,
    /// Run as before shots were embedded once: a per-shot modality's shots
    /// embedded once per window position they are in
    /// ([`RunInput::per_window`]), ort and tch in whole `--batch` runs,
    /// tract in its plan of [`max_sequences_per_run`]`(…, true)`. The same
    /// numbers at the old cost, for `benches/per_shot_audio.rs`.
    pub per_window: bool,
}

fn need<'a>(p: &'a Option<PathBuf>, what: &str, kind: RuntimeKind) -> anyhow::Result<&'a Path> {
    p.as_deref()
        .with_context(|| format!("--runtime {kind} needs {what}"))
}

/// An error naming the feature that builds `kind`, if this build lacks it.
pub fn require_built(kind: RuntimeKind) -> anyhow::Result<()> {
    if !kind.is_built() {
        bail!(
            "--runtime {kind} is not in this build of lgss: build it with the `{}` feature \
             (cargo install --path . --locked --features {})",
            kind.feature(),
            kind.feature()
        );
    }
    Ok(())
}

/// Opens a runtime; its [`Backend::config`] is the model's configuration.
pub fn open(kind: RuntimeKind, opts: &RuntimeOptions) -> anyhow::Result<Box<dyn Backend>> {
    if opts.batch == 0 {
        bail!("--batch must be at least 1");
    }
    require_built(kind)?;
    match kind {
        #[cfg(feature = "tch")]
        RuntimeKind::Tch | RuntimeKind::TchCuda => {
            let ckpt = need(&opts.checkpoint, "--checkpoint", kind)?;
            Ok(Box::new(libtorch::TchBackend::open(
                ckpt,
                kind == RuntimeKind::TchCuda,
                opts,
            )?))
        }
        #[cfg(feature = "ort")]
        RuntimeKind::OrtCpu | RuntimeKind::OrtCuda => {
            let model = need(&opts.onnx, "--model (an ONNX file)", kind)?;
            Ok(Box::new(onnxruntime::OrtBackend::open(
                model,
                kind == RuntimeKind::OrtCuda,
                opts,
            )?))
        }
        #[cfg(feature = "tract")]
        RuntimeKind::Tract => {
            let model = need(&opts.onnx, "--model (an ONNX file)", kind)?;
            Ok(Box::new(tract::TractBackend::open(model, opts)?))
        }
        #[allow(unreachable_patterns)]
        _ => bail!("--runtime {kind} is not in this build of lgss"),
    }
}

#[cfg(test)]
mod run_size_tests {
    use super::max_sequences_per_run;
    use crate::model::Config;

    /// SceneSeg's widths take 2.9 MB an image in the first conv: a run of
    /// B sequences embeds 10·B + 3 images per shot, 40·B per window
    /// position; the small config's 4 channels fit 74 per-window sequences;
    /// no STFT, no bound.
    #[test]
    fn stft_models_run_few_sequences_at_once() {
        let load = |name: &str| {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("models")
                .join(name);
            Config::load(&path).unwrap().model
        };
        let sceneseg = load("sceneseg.toml");
        assert_eq!(max_sequences_per_run(&sceneseg, false), 18);
        assert_eq!(max_sequences_per_run(&sceneseg, true), 4);
        assert_eq!(max_sequences_per_run(&load("sceneseg-small.toml"), true), 74);
        assert_eq!(max_sequences_per_run(&load("lgss-paper.toml"), false), usize::MAX);
    }
}
