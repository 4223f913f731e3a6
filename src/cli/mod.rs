//! The `lgss` command line: one file per subcommand.

mod completions;
mod doctor;
mod eval;
mod export;
mod extract;
mod import_torch;
mod info;
pub mod progress;
mod segment;
mod serve;
mod synth;
mod train;
mod verify;
pub mod workspace;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// LGSS movie scene segmentation: MovieScenes data, training, ONNX export,
/// inference and the challenge's metrics.
#[derive(Debug, Parser)]
#[command(name = "lgss", version = env!("LGSS_LONG_VERSION"), about)]
pub struct Cli {
    /// ONNX Runtime library to load (default: $LGSS_ORT_LIB, else the project's .venv).
    #[arg(long, global = true, value_name = "PATH")]
    ort_lib: Option<PathBuf>,
    /// Workspace holding data/movies, runs/ and an optional lgss.toml
    /// (default: $LGSS_WORKSPACE, else the current folder).
    #[arg(long, global = true, value_name = "DIR")]
    workspace: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Describe MovieScenes pickles: shapes, boundaries, scenes, frames.
    Info(info::Args),
    /// Score predictions exactly as the challenge's evaluate_sceneseg.py (or
    /// SceneSeg's evaluation, the paper's: --metrics sceneseg|all).
    Eval(eval::Args),
    /// Write synthetic movies in the MovieScenes format.
    Synth(synth::Args),
    /// Train LGSS with libtorch (CUDA or CPU), with checkpoints and resume.
    Train(train::Args),
    /// Write a checkpoint as an ONNX model (built in Rust, opset 17).
    Export(export::Args),
    /// Turn videos into a scene318 tree: shots, place and audio features, as SceneSeg's pre-processing.
    Extract(extract::Args),
    /// Segment movies into scenes with tract, ONNX Runtime (CPU/CUDA) or libtorch.
    Segment(segment::Args),
    /// Serve scenes over HTTP from a model loaded once (batched across requests).
    Serve(serve::Args),
    /// Run the same movies through several runtimes and check AP and Miou agree.
    Verify(verify::Args),
    /// Turn a PyTorch LGSS state_dict (safetensors) into a checkpoint.
    ImportTorch(import_torch::Args),
    /// Show which libtorch and ONNX Runtime this binary uses, and whether CUDA works.
    Doctor(doctor::Args),
    /// Print a shell completion script: `lgss completions bash > /etc/bash_completion.d/lgss`.
    Completions(completions::Args),
}

/// Exit codes, so batch jobs can tell a bad file from a broken run.
pub mod exit {
    /// Everything worked.
    pub const OK: u8 = 0;
    /// lgss itself failed (a library, the disk, a bug): worth a retry or a report.
    pub const FAILURE: u8 = 1;
    /// The command line was wrong (clap's code).
    pub const USAGE: u8 = 2;
    /// An input file is invalid: retrying will not help; the rest was done.
    pub const INVALID_INPUT: u8 = 3;
}

/// An error caused by the input (a file that cannot be read as a movie,
/// two files with one imdb_id, …), as opposed to a failure of lgss itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// The error of a command this build does not have.
#[allow(dead_code)]
fn not_built(command: &str, feature: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "`lgss {command}` is not in this build of lgss: build it with the `{feature}` feature \
         (cargo install --path . --locked --features {feature}; it needs libtorch, which \
         the README's set-up installs)"
    )
}

fn is_invalid_input(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| c.is::<InvalidInput>() || c.is::<crate::data::LoadError>())
}

pub fn main() -> ExitCode {
    // Die quietly on a closed pipe (`lgss segment … | head`), as Unix tools
    // do, instead of panicking in println!.
    // SAFETY: restoring the default disposition of one signal at start-up,
    // before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let ws = workspace::Workspace::new(cli.workspace.as_deref());
    let result = match cli.command {
        Command::Info(a) => info::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Train(a) => train::run(a, &ws),
        Command::Export(a) => export::run(a, &ws),
        Command::Extract(a) => extract::run(a, cli.ort_lib.as_deref()),
        Command::Segment(a) => segment::run(a, cli.ort_lib.as_deref(), &ws),
        Command::Serve(a) => serve::run(a, cli.ort_lib.as_deref(), &ws),
        Command::Verify(a) => verify::run(a, cli.ort_lib.as_deref(), &ws),
        Command::ImportTorch(a) => import_torch::run(a),
        Command::Doctor(a) => doctor::run(a, cli.ort_lib.as_deref()),
        Command::Completions(a) => completions::run(a),
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(if is_invalid_input(&e) {
                exit::INVALID_INPUT
            } else {
                exit::FAILURE
            })
        }
    }
}
