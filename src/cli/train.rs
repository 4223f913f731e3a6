//! `lgss train`: train LGSS on a directory of MovieScenes pickles or a
//! scene318 tree.

use std::path::PathBuf;
#[cfg(feature = "tch")]
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(feature = "tch")]
use std::sync::Arc;

#[cfg(feature = "tch")]
use anyhow::Context;
#[cfg(feature = "tch")]
use tch::Device;

#[cfg(feature = "tch")]
use crate::data::dataset::{file_stem, movie_files};
#[cfg(feature = "tch")]
use crate::data::scene318::{self, Split};
#[cfg(feature = "tch")]
use crate::model::Config;
#[cfg(feature = "tch")]
use crate::train::{train, StoreOptions, TrainOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory of tt*.pkl movies with ground truth (default: the
    /// workspace's data/movies).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Model and recipe (TOML), e.g. models/lgss-small.toml (default: the
    /// workspace's lgss.toml, else models/lgss.toml, built in).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run directory: checkpoints, metrics.jsonl, curves.png, curves.html,
    /// test_metrics.json (default: a new runs/<timestamp> in the workspace,
    /// which runs/latest then points at).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where to train.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// On CUDA, let cuBLAS/cuDNN use TF32 (faster, ~1e-3 relative error);
    /// off by default so GPU and CPU results agree.
    #[arg(long)]
    tf32: bool,
    /// Override the config's number of epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the config's batch size (sequences per batch).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Override the config's learning rate.
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Hold out the last K non-test movies for validation instead of 20% of
    /// sequences; global grouping's γ and λ are then chosen on them too.
    #[arg(long, conflicts_with = "split")]
    val_movies: Option<usize>,
    /// Train, validate and test on the movies a split file names
    /// (`{"train": [ids], "val": [...], "test": [...]}`, MovieNet's
    /// `split318.json` form; ids are file stems); validation is by whole
    /// movies, as with --val-movies. A scene318 root uses its own
    /// `meta/split318.json` unless this is given.
    #[arg(long, value_name = "FILE")]
    split: Option<PathBuf>,
    /// Continue a run from its checkpoint (last.safetensors), exactly, with
    /// the checkpoint's own config and seed (the overrides above are ignored).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Print the run's summary as JSON on stdout (epochs, checkpoints, test
    /// scores) instead of tables; epoch lines still go to stderr.
    #[arg(long)]
    json: bool,
    /// Time each phase of the run (data load, batch assembly, forward,
    /// backward, optimizer, loss reads, validation), waiting for the GPU at
    /// each phase's end: a table on stderr, and `profile` in `--json`.
    #[arg(long)]
    profile: bool,
    /// On CUDA, launch every step's kernels one by one instead of replaying
    /// a captured CUDA graph of the step (full batches of recipes without
    /// LSTM-input dropout use one by default).
    #[arg(long)]
    no_cuda_graph: bool,
    /// Hold at most this much of the training features in memory (e.g.
    /// `2GiB`, `500MB`): they are read from a feature store on disk, a
    /// batch at a time, some batches ahead of the step, instead of loaded
    /// whole; the results are the same bits. The store is built on first
    /// use (as much disk as the features) and reused while the movies are
    /// unchanged. The model, its activations and libtorch come on top.
    #[arg(long, value_name = "SIZE")]
    max_memory: Option<bytesize::ByteSize>,
    /// Where --max-memory's feature store is (default: the workspace's
    /// cache/features/<a key of the movies and the model's inputs>).
    #[arg(long, value_name = "DIR", requires = "max_memory")]
    feature_store: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// CUDA when libtorch sees a GPU, else the CPU.
    Auto,
    /// The first CUDA device; an error without one.
    Cuda,
    /// The CPU.
    Cpu,
}

/// The device `--device` names; CUDA with its fp32 precision set.
#[cfg(feature = "tch")]
pub fn device(choice: DeviceChoice, tf32: bool) -> anyhow::Result<Device> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda => crate::model::cuda_device("--device cuda", tf32),
        DeviceChoice::Auto if tch::Cuda::is_available() => crate::model::cuda_device("--device auto", tf32),
        DeviceChoice::Auto => Ok(Device::Cpu),
    }
}

#[cfg(not(feature = "tch"))]
pub fn run(_: Args, _: &super::workspace::Workspace) -> anyhow::Result<()> {
    Err(super::not_built("train", "tch"))
}

#[cfg(feature = "tch")]
pub fn run(args: Args, ws: &super::workspace::Workspace) -> anyhow::Result<()> {
    let data = match &args.data {
        Some(d) => d.clone(),
        None => ws.require_data()?,
    };
    let (mut config, config_name) = match args.config.clone().or_else(|| ws.config()) {
        Some(path) => (Config::load(&path)?, path.display().to_string()),
        None => (
            Config::from_toml(super::workspace::DEFAULT_CONFIG).context("the built-in config")?,
            "models/lgss.toml (built in)".to_string(),
        ),
    };
    let out = match &args.out {
        Some(o) => o.clone(),
        None => ws.new_run(),
    };
    if let Some(e) = args.epochs {
        config.train.epochs = e;
    }
    if let Some(b) = args.batch_size {
        config.train.batch_size = b;
    }
    if let Some(lr) = args.lr {
        config.train.lr = lr;
    }
    config.validate().context("after command-line overrides")?;
    let device = device(args.device, args.tf32)?;
    let named = match &args.split {
        Some(file) => Some(Split::read(file)?),
        None if scene318::is_root(&data) => Some(Split::read(&data.join(scene318::SPLIT_FILE))?),
        None => None,
    };
    let files = split_files(movie_files(&data)?, named.as_ref(), args.split.as_deref())?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // A second Ctrl-C kills as usual; the first asks for a clean stop.
    let handler = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping after this batch (Ctrl-C again to abort)...");
    });
    if let Err(e) = handler {
        eprintln!(
            "warning: Ctrl-C will kill training without a checkpoint ({e}); resume from the last epoch's"
        );
    }
    eprintln!(
        "training {config_name} on {} movies from {} on {:?} into {}",
        files.len(),
        data.display(),
        device,
        out.display()
    );
    let store = args.max_memory.map(|max| StoreOptions {
        dir: args
            .feature_store
            .clone()
            .unwrap_or_else(|| ws.feature_store(&store_key(&files, &config))),
        max_memory: max.as_u64(),
    });
    let opts = TrainOptions {
        files,
        config,
        out: out.clone(),
        device,
        seed: args.seed,
        val_movies: args.val_movies,
        split: named,
        resume: args.resume,
        stop_after_epochs: None,
        progress: std::sync::Arc::new(super::progress::Bars::default()),
        profile: args.profile,
        cuda_graph: !args.no_cuda_graph,
        store,
    };
    let result = train(&opts, stop)?;
    if let Some((phases, wall)) = &result.profile {
        eprint!(
            "profile: training on {device:?} in {:.3} s\n{}",
            wall.as_secs_f64(),
            phases.table(*wall)
        );
    }
    // runs/latest follows the newest run of the workspace that has a checkpoint.
    if ws.is_run(&out) && result.last_checkpoint.exists() {
        ws.set_latest(&out)?;
    }
    if args.json {
        #[derive(serde::Serialize)]
        struct Summary<'a> {
            run: &'a std::path::Path,
            #[serde(flatten)]
            result: &'a crate::train::TrainResult,
            /// Seconds per phase and `wall`, with `--profile`.
            #[serde(skip_serializing_if = "Option::is_none")]
            profile: Option<serde_json::Value>,
        }
        let profile = result.profile.as_ref().map(|(phases, wall)| {
            let mut v = phases.to_json();
            v["wall"] = serde_json::json!(wall.as_secs_f64());
            v
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&Summary {
                run: &out,
                result: &result,
                profile,
            })?
        );
    }
    if result.interrupted {
        eprintln!(
            "stopped after {} epochs; continue with: lgss train --data {} --out {} --resume {}",
            result.epochs_done,
            data.display(),
            out.display(),
            result.last_checkpoint.display()
        );
        return Ok(());
    }
    if args.json {
        return Ok(());
    }
    if let Some(test) = &result.test {
        println!(
            "test movies, best checkpoint ({}), threshold rule (segment --local):",
            result.best_checkpoint.display()
        );
        super::eval::print_table(test);
    }
    if let (Some(test), Some(params)) = (&result.test_global, &result.test_grouping) {
        println!(
            "the same movies with global grouping, segment's default: {}",
            crate::segment::rule_description(params.threshold, Some(params))
        );
        super::eval::print_table(test);
    }
    if let Some(p) = &result.test_provided {
        println!(
            "the files' own provided predictions on the same movies: AP {:.4}  mAP {:.4}  Miou {:.4}",
            p.ap, p.map, p.miou
        );
    }
    if let Some(p) = &result.test_sceneseg {
        println!("the same movies as SceneSeg's final test scores them (cuts at p > 0.5):");
        super::eval::print_sceneseg(p);
    }
    if let Some(g) = &result.grouping {
        println!(
            "global grouping chosen on the {} validation movies (segment's defaults for this model): γ {}, λ {}",
            g.val_movies, g.choice.coherence, g.choice.length_weight
        );
    }
    println!(
        "outputs in {}: best.safetensors, last.safetensors, metrics.jsonl, curves.png, curves.html, test_metrics.json (threshold rule), test_metrics_global.json, test_metrics_sceneseg.json",
        out.display()
    );
    Ok(())
}

/// The files a split names, in the folder's order; an error names a listed
/// movie that has no file. Without a split, all of them.
#[cfg(feature = "tch")]
fn split_files(
    files: Vec<PathBuf>,
    named: Option<&Split>,
    split_file: Option<&std::path::Path>,
) -> anyhow::Result<Vec<PathBuf>> {
    let Some(named) = named else {
        return Ok(files);
    };
    let listed: std::collections::HashSet<&str> = named.all.iter().map(String::as_str).collect();
    let kept: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| listed.contains(file_stem(f).as_str()))
        .collect();
    let found: std::collections::HashSet<String> = kept.iter().map(|f| file_stem(f)).collect();
    if let Some(missing) = named.all.iter().find(|id| !found.contains(id.as_str())) {
        let from = split_file.map_or("the split".to_string(), |f| f.display().to_string());
        anyhow::bail!("{from}: movie {missing} has no file in the data folder");
    }
    Ok(kept)
}

/// The default store's name: a hash of the movies' paths (made absolute)
/// and the model's inputs, so other data or another model gets a store of
/// its own.
#[cfg(feature = "tch")]
fn store_key(files: &[PathBuf], config: &Config) -> String {
    let mut text = String::new();
    for f in files {
        let path = std::path::absolute(f).unwrap_or_else(|_| f.clone());
        text.push_str(&path.display().to_string());
        text.push('\n');
    }
    let m = &config.model;
    for &x in &m.modalities {
        text.push_str(&format!("{}={}\n", x.key(), m.feature_dims.get(x)));
    }
    format!("{:016x}", crate::data::hash::fnv1a64(text.as_bytes()))
}
