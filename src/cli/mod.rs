//! The `lgss` command line: one file per subcommand.

mod doctor;
mod eval;
mod export;
mod import_torch;
mod info;
pub mod progress;
mod segment;
mod synth;
mod train;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// LGSS movie scene segmentation: MovieScenes data, training, ONNX export,
/// inference and the challenge's metrics.
#[derive(Debug, Parser)]
#[command(name = "lgss", version, about)]
pub struct Cli {
    /// ONNX Runtime library to load (default: $LGSS_ORT_LIB, else the project's .venv).
    #[arg(long, global = true, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Describe MovieScenes pickles: shapes, boundaries, scenes, frames.
    Info(info::Args),
    /// Score predictions exactly as the challenge's evaluate_sceneseg.py.
    Eval(eval::Args),
    /// Write synthetic movies in the MovieScenes format.
    Synth(synth::Args),
    /// Train LGSS with libtorch (CUDA or CPU), with checkpoints and resume.
    Train(train::Args),
    /// Write a checkpoint as an ONNX model (built in Rust, opset 17).
    Export(export::Args),
    /// Segment movies into scenes with tract, ONNX Runtime (CPU/CUDA) or libtorch.
    Segment(segment::Args),
    /// Run the same movies through several runtimes and check AP and Miou agree.
    Verify(verify::Args),
    /// Turn a PyTorch LGSS state_dict (safetensors) into a checkpoint.
    ImportTorch(import_torch::Args),
    /// Show which libtorch and ONNX Runtime this binary uses, and whether CUDA works.
    Doctor,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(a) => info::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Train(a) => train::run(a),
        Command::Export(a) => export::run(a),
        Command::Segment(a) => segment::run(a, cli.ort_lib.as_deref()),
        Command::Verify(a) => verify::run(a, cli.ort_lib.as_deref()),
        Command::ImportTorch(a) => import_torch::run(a),
        Command::Doctor => doctor::run(cli.ort_lib.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
