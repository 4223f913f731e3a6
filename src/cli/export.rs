//! `lgss export`: a checkpoint as an ONNX model.

use std::path::PathBuf;

use crate::model::checkpoint::Checkpoint;
use crate::onnx::export::export_checkpoint;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// ONNX file to write.
    #[arg(long)]
    onnx: PathBuf,
    /// Checkpoint to export (e.g. runs/NAME/best.safetensors).
    #[arg(long)]
    checkpoint: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let ckpt = Checkpoint::load(&args.checkpoint)?;
    export_checkpoint(&ckpt, &args.onnx)?;
    let size = std::fs::metadata(&args.onnx).map(|m| m.len()).unwrap_or(0);
    eprintln!("wrote {} ({:.1} MB)", args.onnx.display(), size as f64 / 1e6);
    Ok(())
}
