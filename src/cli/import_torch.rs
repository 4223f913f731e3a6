//! `lgss import-torch`: PyTorch LGSS weights as a checkpoint — a
//! `torch.save` checkpoint (zip or legacy format, read by the inert pickle
//! reader: nothing in it runs) or a safetensors state dict.

use std::path::PathBuf;

#[cfg(feature = "tch")]
use crate::model::checkpoint::{load_weights, Checkpoint};
#[cfg(feature = "tch")]
use crate::model::{Config, Lgss};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A `torch.save` checkpoint (e.g. SceneSeg's `model_best.pth.tar`,
    /// either format; `module.` prefixes and SceneSeg's `bnet_act`/`bnet_aud`
    /// names are mapped), or `safetensors.torch.save_file(model.state_dict(),
    /// FILE)` output.
    file: PathBuf,
    /// The model's architecture (TOML; default: the paper's, as PyTorch
    /// LGSS is published; SceneSeg's checkpoints: models/sceneseg.toml).
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
    let tensors = read_weights(&args.file, &config.model)?;
    let mut model = Lgss::new(&config.model, tch::Device::Cpu);
    load_weights(&mut model, &tensors).map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
    let extra: Vec<&String> = tensors
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

/// The file's weights under lgss's names: a `torch.save` checkpoint's
/// state dict (SceneSeg's module names mapped, and its audio branch's
/// unused window conv dropped), or a safetensors file's tensors.
#[cfg(feature = "tch")]
fn read_weights(
    path: &std::path::Path,
    config: &crate::model::config::ModelConfig,
) -> anyhow::Result<std::collections::BTreeMap<String, crate::data::tensor::Tensor>> {
    let bytes = crate::regular_file::read(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    // Anything else is read as safetensors (which starts with its header's length).
    if !crate::data::pickle::is_torch_save(&bytes) {
        return Ok(Checkpoint::from_bytes(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?
            .tensors);
    }
    let state = crate::data::pickle::load_state_dict(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a readable PyTorch checkpoint: {e}", path.display()))?;
    let stft = config.is_stft(crate::data::movie::Modality::Audio);
    let mut out = std::collections::BTreeMap::new();
    for (name, t) in state {
        let name = sceneseg_name(&name);
        // SceneSeg's BNet_aud builds a window conv its forward never uses.
        if stft && name.starts_with("bnet_audio.bnet.conv1.") {
            continue;
        }
        if out.insert(name.clone(), t).is_some() {
            anyhow::bail!("{}: weight {name} appears twice", path.display());
        }
    }
    Ok(out)
}

/// SceneSeg's branch names (`bnet_act`, `bnet_aud`) as lgss's modality
/// keys; every other name is already PyTorch's.
#[cfg(feature = "tch")]
fn sceneseg_name(name: &str) -> String {
    for (theirs, ours) in [("bnet_act.", "bnet_action."), ("bnet_aud.", "bnet_audio.")] {
        if let Some(rest) = name.strip_prefix(theirs) {
            return format!("{ours}{rest}");
        }
    }
    name.to_string()
}
