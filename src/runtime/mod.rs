//! Inference runtimes behind one trait, one file per backend: libtorch
//! (`tch`, from a checkpoint), ONNX Runtime (`ort`, CPU or CUDA) and tract,
//! both from the exported ONNX file. Every backend gets the same windows
//! (`crate::segment`) and returns boundary probabilities.

pub mod libtorch;
pub mod onnx_meta;
pub mod onnxruntime;
pub mod ort_lib;
pub mod tract;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::model::config::ModelConfig;

/// A model that maps windows to boundary probabilities.
pub trait Backend {
    /// The runtime's name as `--runtime` spells it.
    fn name(&self) -> &str;
    /// Probabilities for `batch` sequences: `inputs[i]` holds the i-th
    /// configured modality as `[batch, seq_len, shot_num, D]`, row-major.
    /// Returns `[batch * seq_len]`.
    fn run(&mut self, batch: usize, inputs: &[Vec<f32>]) -> anyhow::Result<Vec<f32>>;
}

/// The runtimes `--runtime` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    Tch,
    TchCuda,
    OrtCpu,
    OrtCuda,
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
}

fn need<'a>(p: &'a Option<PathBuf>, what: &str, kind: RuntimeKind) -> anyhow::Result<&'a Path> {
    p.as_deref()
        .with_context(|| format!("--runtime {kind} needs {what}"))
}

/// Opens a runtime and returns it with the model's configuration.
pub fn open(kind: RuntimeKind, opts: &RuntimeOptions) -> anyhow::Result<(Box<dyn Backend>, ModelConfig)> {
    if opts.batch == 0 {
        bail!("--batch must be at least 1");
    }
    Ok(match kind {
        RuntimeKind::Tch | RuntimeKind::TchCuda => {
            let ckpt = need(&opts.checkpoint, "--checkpoint", kind)?;
            let (b, c) = libtorch::TchBackend::open(ckpt, kind == RuntimeKind::TchCuda, opts)?;
            (Box::new(b), c)
        }
        RuntimeKind::OrtCpu | RuntimeKind::OrtCuda => {
            let model = need(&opts.onnx, "--model (an ONNX file)", kind)?;
            let (b, c) = onnxruntime::OrtBackend::open(model, kind == RuntimeKind::OrtCuda, opts)?;
            (Box::new(b), c)
        }
        RuntimeKind::Tract => {
            let model = need(&opts.onnx, "--model (an ONNX file)", kind)?;
            let (b, c) = tract::TractBackend::open(model, opts.batch, opts.threads)?;
            (Box::new(b), c)
        }
    })
}
