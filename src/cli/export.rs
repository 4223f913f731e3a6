//! `lgss export`: a checkpoint as an ONNX model. `lgss export --onnx` with
//! no paths exports the workspace's latest run to `runs/latest/model.onnx`.

use std::path::PathBuf;

use super::workspace::Workspace;
use crate::model::checkpoint::Checkpoint;
use crate::onnx::export::export_checkpoint;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// ONNX file to write (default: model.onnx in the checkpoint's run,
    /// i.e. runs/latest/model.onnx).
    #[arg(long, num_args = 0..=1, value_name = "OUT.onnx")]
    onnx: Option<Option<PathBuf>>,
    /// Checkpoint to export (default: runs/latest/best.safetensors).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
}

pub fn run(args: Args, ws: &Workspace) -> anyhow::Result<()> {
    let checkpoint = match args.checkpoint {
        Some(c) => c,
        None => ws.latest_checkpoint()?,
    };
    let out = match args.onnx.flatten() {
        Some(o) => o,
        None => {
            // Beside the checkpoint, in the run's real folder (not via the link).
            let dir = checkpoint
                .parent()
                .map(|d| d.canonicalize().unwrap_or_else(|_| d.to_path_buf()))
                .unwrap_or_default();
            dir.join("model.onnx")
        }
    };
    let ckpt = Checkpoint::load(&checkpoint)?;
    export_checkpoint(&ckpt, &out)?;
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {} ({:.1} MB) from {}",
        out.display(),
        size as f64 / 1e6,
        checkpoint.display()
    );
    Ok(())
}
