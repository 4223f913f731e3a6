//! `lgss import-torch`: a PyTorch LGSS state_dict (safetensors) as a checkpoint.

use std::path::PathBuf;

#[cfg(feature = "tch")]
use crate::model::checkpoint::{load_weights, Checkpoint};
#[cfg(feature = "tch")]
use crate::model::{Config, Lgss};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `safetensors.torch.save_file(model.state_dict(), FILE)` output.
    file: PathBuf,
    /// The model's architecture (TOML; default: the paper's, as PyTorch
    /// LGSS is published).
    #[arg(long, default_value = "models/lgss-paper.toml")]
    config: PathBuf,
    /// How the PyTorch model scaled each shot's features before its boundary
    /// nets; replaces the config's `feature_norm`. The seed's and the paper's
    /// PyTorch LGSS take raw features.
    #[arg(long, value_enum, default_value_t = Norm::None)]
    feature_norm: Norm,
    /// Checkpoint to write.
    #[arg(long)]
    out: PathBuf,
}

/// `model.feature_norm` as a command-line choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Norm {
    /// Raw features (PyTorch LGSS as published).
    None,
    /// Each shot's features scaled to unit RMS (`feature_norm = "rms"`).
    Rms,
}

#[cfg(not(feature = "tch"))]
pub fn run(_: Args) -> anyhow::Result<()> {
    Err(super::not_built("import-torch", "tch"))
}

#[cfg(feature = "tch")]
pub fn run(args: Args) -> anyhow::Result<()> {
    let mut config = Config::load(&args.config)?;
    config.model.feature_norm = match args.feature_norm {
        Norm::None => crate::model::config::FeatureNorm::None,
        Norm::Rms => crate::model::config::FeatureNorm::Rms,
    };
    let state = Checkpoint::load(&args.file)?;
    let mut model = Lgss::new(&config.model, tch::Device::Cpu);
    load_weights(&mut model, &state.tensors).map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    let extra: Vec<&String> = state
        .tensors
        .keys()
        .filter(|k| !model.vs.variables().contains_key(*k))
        .collect();
    if !extra.is_empty() {
        anyhow::bail!(
            "{}: tensors the config has no place for: {:?}",
            args.file.display(),
            extra
        );
    }
    let mut ckpt = Checkpoint::of_model(&model, &config)?;
    ckpt.metadata
        .insert("imported_from".into(), args.file.display().to_string());
    ckpt.save(&args.out)?;
    eprintln!(
        "wrote {} ({} parameters)",
        args.out.display(),
        model.parameter_count()
    );
    Ok(())
}
