//! `lgss segment`: its arguments, then the catalogue pipeline
//! ([`crate::catalogue`]), then its report and exit code.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::catalogue::{default_read_threads, Catalogue, Outputs, Summary};
use crate::data::dataset::{expand_inputs, read_file_list, Shard};
use crate::grouping::Params as GroupingParams;
use crate::model::checkpoint::StoredChoices;
use crate::runtime::{RuntimeKind, RuntimeOptions};
use crate::scene_formats::SceneFormat;
use crate::segment::{grouping_params, GroupingOverrides};

/// How scenes are decided, shared by `segment` and `verify`: global optimal
/// grouping by default (LGSS's local-to-global approach), the threshold
/// rule with `--local`.
#[derive(Debug, Clone, clap::Args)]
pub struct RuleArgs {
    /// Decide scenes by the threshold rule alone (a cut wherever the
    /// probability reaches the threshold) instead of global grouping.
    #[arg(long, conflicts_with_all = ["global", "coherence", "length_weight", "max_scene_shots"])]
    pub local: bool,
    /// Decide scenes by global optimal grouping: an exact dynamic program
    /// over the boundary probabilities and the shots' features, with the
    /// threshold as its τ (the book: "Global optimal grouping"). The default;
    /// the flag is kept for scripts that name it.
    #[arg(long)]
    pub global: bool,
    /// Global grouping: γ, the weight of within-scene feature scatter (0 is
    /// the threshold rule). Default: the γ `lgss train --val-movies` chose
    /// on its validation movies, else 1.
    #[arg(long)]
    pub coherence: Option<f64>,
    /// Global grouping: no scene is longer than this many shots [default: 1000].
    #[arg(long)]
    pub max_scene_shots: Option<usize>,
    /// Global grouping: λ, the weight of the scene-length prior the model
    /// learned from its training movies (0 turns it off; models trained
    /// before lgss 0.1 had no prior). Default: the λ `lgss train
    /// --val-movies` chose, else 1.5 (the book: "Choosing γ and λ").
    #[arg(long)]
    pub length_weight: Option<f64>,
}

impl RuleArgs {
    /// Global grouping's settings (τ = `threshold`, the model's prior and
    /// choices unless overridden), or `None` with `--local`.
    pub fn params(&self, threshold: f64, stored: &StoredChoices) -> Option<GroupingParams> {
        let overrides = GroupingOverrides {
            coherence: self.coherence,
            length_weight: self.length_weight,
            max_scene_shots: self.max_scene_shots,
        };
        (!self.local).then(|| grouping_params(threshold, stored, &overrides))
    }
}

/// The threshold and grouping choices stored with the model `runtime`
/// reads (the checkpoint for tch runtimes, else the ONNX file); none
/// without a model file.
pub fn stored_choices(runtime: RuntimeKind, opts: &RuntimeOptions) -> anyhow::Result<StoredChoices> {
    match runtime.feature() {
        "tch" => opts
            .checkpoint
            .as_deref()
            .map(crate::model::checkpoint::Checkpoint::stored_choices_of),
        _ => opts
            .onnx
            .as_deref()
            .map(crate::runtime::onnx_meta::stored_choices_of),
    }
    .transpose()
    .map(Option::unwrap_or_default)
}

/// How to reach a model, shared by `segment` and `verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// The exported ONNX model (for ort-cpu, ort-cuda, tract).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The checkpoint (for tch, tch-cuda).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Intra-op threads (default: the runtime's default).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Sequences of windows per run.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Let CUDA runtimes use TF32 (faster; results then differ from the CPU's
    /// by ~1e-3). Off: full fp32.
    #[arg(long)]
    pub tf32: bool,
}

impl ModelArgs {
    /// The runtime options for `kinds`, with the model and checkpoint the
    /// workspace's latest run has where none was given and a runtime needs it.
    pub fn options(
        &self,
        ort_lib: Option<&Path>,
        ws: &super::workspace::Workspace,
        kinds: &[RuntimeKind],
    ) -> anyhow::Result<RuntimeOptions> {
        let needs_onnx = kinds.iter().any(|k| k.feature() != "tch");
        let needs_checkpoint = kinds.iter().any(|k| k.feature() == "tch");
        let onnx = match &self.model {
            Some(m) => Some(m.clone()),
            None if needs_onnx => Some(ws.latest_model()?),
            None => None,
        };
        let checkpoint = match &self.checkpoint {
            Some(c) => Some(c.clone()),
            None if needs_checkpoint => Some(ws.latest_checkpoint()?),
            None => None,
        };
        Ok(RuntimeOptions {
            onnx,
            checkpoint,
            threads: self.threads,
            ort_lib: ort_lib.map(Path::to_path_buf),
            batch: self.batch,
            tf32: self.tf32,
            per_window: false,
        })
    }
}

/// How videos given to `segment` become movies (`lgss extract`'s options).
#[derive(Debug, Clone, clap::Args)]
pub struct VideoArgs {
    /// Keep the features extracted from video inputs in this scene318 tree
    /// (and reuse them next time); default: a temporary folder, removed.
    #[arg(long, value_name = "DIR")]
    pub features: Option<PathBuf>,
    /// Video inputs: the image network giving place features (ONNX,
    /// [N,3,224,224] → [N,D]; see `lgss extract --help`).
    #[arg(long, value_name = "FILE.onnx")]
    pub place_model: Option<PathBuf>,
    /// Video inputs: the place network's runtime (default: ort-cpu, else tract).
    #[arg(long, value_enum)]
    pub place_runtime: Option<crate::video::place::PlaceRuntime>,
    /// Video inputs: the shot detector.
    #[arg(long, value_enum, default_value_t = crate::video::shots::DetectorKind::HsvLuv)]
    pub detector: crate::video::shots::DetectorKind,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Movie pickles, directories of tt*.pkl, scene318 roots, or video
    /// files (mp4, mkv, mov, …; extracted first, as `lgss extract` does).
    #[arg(required_unless_present = "files_from")]
    inputs: Vec<PathBuf>,
    #[command(flatten)]
    video: VideoArgs,
    /// Also segment the movies listed in LIST, one path a line (`-`: stdin;
    /// blank lines and lines starting with # are skipped).
    #[arg(long, value_name = "LIST")]
    files_from: Option<PathBuf>,
    /// Segment only shard INDEX of COUNT (INDEX from 0): a movie's shard is
    /// the FNV-1a 64-bit hash of its file name stem modulo COUNT, so shards
    /// are disjoint and stable when files are added.
    #[arg(long, value_name = "INDEX/COUNT")]
    shard: Option<Shard>,
    /// Threads that read and decode the next movies while the runtime works
    /// (default: a quarter of the cores, 1 to 4). More help where reads
    /// wait on the storage (network file systems) or a GPU outruns one
    /// reader (a 2,400-shot movie takes ~30 ms to read and decode).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    read_threads: Option<u16>,
    /// Skip movies whose outputs in --out were finished with the same model
    /// and options (see --out's manifest/); redo the others.
    #[arg(long, requires = "out")]
    skip_done: bool,
    /// Exit 0 when the only failures are invalid movies (each still named
    /// in the log and the summary), instead of 3: for batch systems that
    /// retry a non-zero exit and cannot map 3 to done without a shell (a
    /// Kubernetes Indexed Job's pod in an image with none).
    #[arg(long)]
    allow_invalid: bool,
    /// Print a summary of what was done, skipped and failed as JSON on stdout.
    #[arg(long, requires = "out")]
    json: bool,
    /// The runtime (default: the best CPU runtime this build has: ort-cpu,
    /// else tract).
    #[arg(long)]
    runtime: Option<RuntimeKind>,
    #[command(flatten)]
    model: ModelArgs,
    /// Write one file per movie here, named after the movie file's stem, and
    /// a manifest entry per finished movie in manifest/ (else print to stdout).
    #[arg(long)]
    out: Option<PathBuf>,
    /// json (probabilities and scenes), csv, webvtt (chapters), edl (CMX
    /// 3600) or otio (OpenTimelineIO).
    #[arg(long, value_enum, default_value_t = SceneFormat::Json)]
    format: SceneFormat,
    /// A boundary is a scene cut when its probability is at least this
    /// (default: the threshold `lgss train` chose on the validation movies,
    /// stored in the model; else 0.5). Written probabilities are rescaled so
    /// that this threshold is 0.5 (the book: "Decision threshold").
    #[arg(long)]
    threshold: Option<f64>,
    /// The threshold in use: --threshold, the model's, or 0.5.
    #[arg(skip)]
    effective_threshold: f64,
    /// What the model's training stored for global grouping.
    #[arg(skip)]
    stored: StoredChoices,
    #[command(flatten)]
    rule: RuleArgs,
    /// Frames per second, for timecodes (an EDL's: 23.976, 24, 25, 29.97,
    /// 30, 47.952, 48, 50, 59.94 or 60, non-drop frame).
    #[arg(long, default_value_t = 24.0)]
    fps: f64,
    /// Also write each movie back with its prediction replaced (needs --out).
    #[arg(long)]
    write_pkl: bool,
    /// Also draw each movie's timeline as <stem>.png: boundary probability,
    /// threshold, predicted scenes and ground-truth scenes; into --out, else
    /// the workspace's plots/.
    #[arg(long)]
    plot: bool,
    /// Also write each movie's page as <stem>.html: one self-contained file
    /// (opens from disk, asks no network) with the probability curve, the
    /// threshold, the scenes, the ground truth and scores where the movie
    /// has them and, for a video input, the video with the scenes as
    /// chapters and a thumbnail per scene; into --out, else the
    /// workspace's plots/.
    #[arg(long)]
    html: bool,
    /// Print where the time went, phase by phase (waiting for reads, window
    /// assembly, model, grouping, formatting, writing; model load apart;
    /// reading and decoding, which reader threads do ahead of the
    /// runtime, shown apart) on stderr, and as `profile` in `--json`'s
    /// summary.
    #[arg(long)]
    profile: bool,
}

/// The movie files to do: inputs and the list, in the order given (videos
/// as their extracted movies), then this shard's.
fn gather(
    args: &Args,
    videos: &mut dyn FnMut(&[PathBuf]) -> anyhow::Result<Vec<PathBuf>>,
) -> anyhow::Result<(usize, Vec<PathBuf>)> {
    let mut named = args.inputs.clone();
    if let Some(list) = &args.files_from {
        named.extend(read_file_list(list)?);
    }
    let named = videos(&named)?;
    let mut files = expand_inputs(&named)?;
    let listed = files.len();
    if let Some(shard) = &args.shard {
        files.retain(|f| shard.contains(f));
    }
    Ok((listed, files))
}

pub fn run(mut args: Args, ort_lib: Option<&Path>, ws: &super::workspace::Workspace) -> anyhow::Result<()> {
    let runtime = match args.runtime {
        Some(r) => r,
        None => RuntimeKind::default_built().context("this build of lgss has no runtime")?,
    };
    crate::runtime::require_built(runtime)?;
    // The model first: without one there is nothing to do with the inputs.
    let opts = args.model.options(ort_lib, ws, &[runtime])?;
    settle_options(&mut args, runtime, &opts)?;
    let mut features = None;
    let (listed, files) = gather(&args, &mut |named| {
        let (files, dir) = movies_from_videos(named, &args.video, runtime, &opts, ort_lib)?;
        features = dir;
        Ok(files)
    })?;
    if listed == 0 {
        bail!("no movie files given");
    }
    let model_file = match runtime.feature() {
        "tch" => opts.checkpoint.clone(),
        _ => opts.onnx.clone(),
    }
    .context("no model for this runtime")?;
    let plot_dir = picture_dir(&args, args.plot, ws)?;
    let html_dir = picture_dir(&args, args.html, ws)?;
    let outputs = Outputs {
        out: args.out.clone(),
        format: args.format,
        threshold: args.effective_threshold,
        fps: args.fps,
        grouping: args.rule.params(args.effective_threshold, &args.stored),
        write_pkl: args.write_pkl,
        plot_dir: plot_dir.clone(),
        html_dir: html_dir.clone(),
        skip_done: args.skip_done,
    };
    let read_threads = args.read_threads.map_or_else(
        || default_read_threads(std::thread::available_parallelism().map_or(1, |n| n.get())),
        usize::from,
    );
    let catalogue = Catalogue::new(runtime, &opts, model_file, outputs, read_threads)?;
    let started = std::time::Instant::now();
    let pb = super::progress::bar(files.len(), "segment");
    let mut run = catalogue.run(&files, &pb, |text| pb.suspend(|| print!("{text}")));
    pb.finish_and_clear();
    run.summary.shard = args.shard.map(|s| s.to_string());
    run.summary.listed = listed;
    if args.profile {
        let wall = started.elapsed();
        eprintln!(
            "profile: {} movies with {runtime} in {:.3} s\n{}overlapped with those, on the reader and writer threads:\n{}",
            run.summary.done.len(),
            wall.as_secs_f64(),
            run.phases.table(wall),
            run.overlapped.table(wall)
        );
        let mut json = run.phases.to_json();
        json["wall"] = serde_json::json!(wall.as_secs_f64());
        json["overlapped"] = run.overlapped.to_json();
        run.summary.profile = Some(json);
    }
    report(&args, &run.summary, files.len(), plot_dir.or(html_dir).as_deref())?;
    match outcome(&run.failures, &run.summary, files.len()) {
        Err(e) if args.allow_invalid && super::is_invalid_input(&e) => {
            eprintln!("note: {e:#}; --allow-invalid: exiting 0");
            Ok(())
        }
        other => other,
    }
}

/// Checks the output options and fixes the threshold: `--threshold`, else
/// the model's validated one, else 0.5.
fn settle_options(args: &mut Args, runtime: RuntimeKind, opts: &RuntimeOptions) -> anyhow::Result<()> {
    if args.write_pkl && args.out.is_none() {
        bail!("--write-pkl needs --out DIR");
    }
    if !(args.fps > 0.0 && args.fps.is_finite()) {
        bail!("--fps must be positive");
    }
    args.format
        .check_fps(args.fps)
        .map_err(|e| anyhow::anyhow!("--format edl, --{e}"))?;
    let stored = stored_choices(runtime, opts)?;
    args.effective_threshold = match args.threshold {
        Some(t) if t > 0.0 && t < 1.0 => t,
        Some(t) => bail!("--threshold {t} is not inside (0, 1)"),
        None => stored.threshold.unwrap_or(0.5),
    };
    args.stored = stored;
    Ok(())
}

/// Where `--plot` draws and `--html` writes (`wanted`): `--out`, else the
/// workspace's plots/.
fn picture_dir(
    args: &Args,
    wanted: bool,
    ws: &super::workspace::Workspace,
) -> anyhow::Result<Option<PathBuf>> {
    Ok(match (&args.out, wanted) {
        (_, false) => None,
        (Some(out), true) => Some(out.clone()),
        (None, true) => {
            let dir = ws.plots();
            std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
            Some(dir)
        }
    })
}

/// The closing line on stderr and, with `--json`, the summary on stdout.
fn report(args: &Args, summary: &Summary, n_files: usize, plot_dir: Option<&Path>) -> anyhow::Result<()> {
    if let Some(out) = &args.out {
        let of = match &args.shard {
            Some(s) => format!("{n_files} movies in shard {s} ({} listed)", summary.listed),
            None => format!("{n_files} movies"),
        };
        eprintln!(
            "segmented {}, skipped {} already done, {} failed, of {of} with {} into {}",
            summary.done.len(),
            summary.skipped.len(),
            summary.failed.len(),
            summary.runtime,
            out.display()
        );
    }
    if let (Some(dir), None) = (plot_dir, &args.out) {
        let what = match (args.plot, args.html) {
            (true, true) => "timelines and pages",
            (true, false) => "timelines",
            _ => "pages",
        };
        eprintln!("{what} in {}", dir.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(summary)?);
    }
    Ok(())
}

/// Success, or an error naming the failed movies: exit code INVALID_INPUT
/// ("done, with errors") when all were bad input, else a failure of the run.
fn outcome(failures: &[anyhow::Error], summary: &Summary, n_files: usize) -> anyhow::Result<()> {
    if failures.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = summary
        .failed
        .iter()
        .map(|f| f.input.display().to_string())
        .collect();
    let msg = format!(
        "{} of {n_files} movies failed: {}",
        failures.len(),
        names.join(", ")
    );
    if failures
        .iter()
        .all(|e| e.chain().any(|c| c.is::<crate::data::LoadError>()))
    {
        bail!(super::InvalidInput(msg));
    }
    bail!(msg)
}

/// Video inputs extracted into `--features` (or a temporary tree, kept
/// alive by the returned guard) and replaced by their movies; the model is
/// checked first, so nothing is decoded for a model that cannot take them.
fn movies_from_videos(
    named: &[PathBuf],
    video: &VideoArgs,
    runtime: RuntimeKind,
    opts: &RuntimeOptions,
    ort_lib: Option<&Path>,
) -> anyhow::Result<(Vec<PathBuf>, Option<tempfile::TempDir>)> {
    use crate::video::extract::{self, ExtractOptions};
    if !named.iter().any(|p| extract::is_video_input(p)) {
        return Ok((named.to_vec(), None));
    }
    let config = match runtime.feature() {
        "tch" => {
            let path = opts.checkpoint.as_deref().context("no checkpoint")?;
            crate::model::checkpoint::Checkpoint::load(path)?.config()?.model
        }
        _ => crate::runtime::onnx_meta::config_of(opts.onnx.as_deref().context("no model")?)?,
    };
    extract::check_model_for_video(&config, video.place_model.is_some())?;
    let mut model = match &video.place_model {
        Some(p) => Some(crate::video::place::PlaceModel::open(
            p,
            video
                .place_runtime
                .unwrap_or_else(crate::video::place::PlaceRuntime::default_built),
            16,
            ort_lib,
        )?),
        None => None,
    };
    let (root, guard) = match &video.features {
        Some(dir) => (dir.clone(), None),
        None => {
            let dir = tempfile::Builder::new()
                .prefix("lgss-features-")
                .tempdir()
                .context("cannot create a temporary features folder")?;
            (dir.path().to_path_buf(), Some(dir))
        }
    };
    let options = ExtractOptions {
        detector: crate::video::shots::DetectorSettings::new(video.detector),
        stats: false,
        keyframes: false,
    };
    let bars = super::progress::Bars::default();
    let files = extract::movies_from_videos(
        named,
        &root,
        &options,
        model.as_mut().zip(video.place_model.clone()),
        &bars,
        &mut |o| {
            if let extract::Outcome::Done(e) = o {
                eprintln!(
                    "{}: {} shots in {} frames, extracted",
                    e.video.display(),
                    e.shots,
                    e.frames
                );
                for w in &e.warnings {
                    eprintln!("warning: {w}");
                }
            }
        },
    )?;
    Ok((files, guard))
}
