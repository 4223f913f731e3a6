//! `lgss segment`: movies to scenes with any runtime.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::data::dataset::{expand_inputs, file_stem, read_file_list, Shard};
use crate::data::movie::{output_stem, Movie};
use crate::grouping::Params as GroupingParams;
use crate::manifest::{RunKey, Status};
use crate::model::checkpoint::StoredChoices;
use crate::phases::Phases;
use crate::runtime::{open, RuntimeKind, RuntimeOptions};
use crate::scene_formats::{self, SceneFormat};
use crate::segment::{
    grouping_params, movie_probabilities_timed, scenes, schema_for, GroupingOverrides, Segmentation,
};

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
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Movie pickles or directories of tt*.pkl.
    #[arg(required_unless_present = "files_from")]
    inputs: Vec<PathBuf>,
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
    /// Print where the time went, phase by phase (waiting for reads, window
    /// assembly, model, grouping, formatting, writing; model load apart;
    /// reading and decoding, which reader threads do ahead of the
    /// runtime, shown apart) on stderr, and as `profile` in `--json`'s
    /// summary.
    #[arg(long)]
    profile: bool,
}

/// `--json`'s summary.
#[derive(Debug, Default, Serialize)]
struct Summary {
    runtime: String,
    model: PathBuf,
    model_sha256: String,
    shard: Option<String>,
    out: PathBuf,
    /// Movies given (files, directories' tt*.pkl and the list), before sharding.
    listed: usize,
    done: Vec<Finished>,
    skipped: Vec<Finished>,
    failed: Vec<Failed>,
    /// With `--profile`: seconds per phase, `model load` apart, and `wall`.
    #[serde(skip_serializing_if = "Option::is_none")]
    profile: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct Finished {
    stem: String,
    input: PathBuf,
}

#[derive(Debug, Serialize)]
struct Failed {
    input: PathBuf,
    error: String,
}

/// The movie files to do: inputs and the list, in the order given, then
/// this shard's.
fn gather(args: &Args) -> anyhow::Result<(usize, Vec<PathBuf>)> {
    let mut named = args.inputs.clone();
    if let Some(list) = &args.files_from {
        named.extend(read_file_list(list)?);
    }
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
    let (listed, files) = gather(&args)?;
    if listed == 0 {
        bail!("no movie files given");
    }
    let model_file = match runtime.feature() {
        "tch" => opts.checkpoint.clone(),
        _ => opts.onnx.clone(),
    }
    .context("no model for this runtime")?;
    let mut summary = Summary {
        runtime: runtime.to_string(),
        model: model_file.clone(),
        shard: args.shard.map(|s| s.to_string()),
        listed,
        ..Summary::default()
    };
    let key = prepare_out(&args, &model_file, &mut summary)?;
    let plot_dir = plot_dir(&args, ws)?;
    let dest = Dest {
        key: key.as_ref(),
        model_file: &model_file,
        plot_dir: plot_dir.as_deref(),
    };
    let started = std::time::Instant::now();
    let mut phases = Phases::new();
    let mut overlapped = Phases::new();
    let failures = segment_files(
        &files,
        &args,
        runtime,
        &opts,
        &dest,
        &mut summary,
        &mut phases,
        &mut overlapped,
    );
    if args.profile {
        let wall = started.elapsed();
        eprintln!(
            "profile: {} movies with {runtime} in {:.3} s\n{}overlapped with those, on the reader and writer threads:\n{}",
            summary.done.len(),
            wall.as_secs_f64(),
            phases.table(wall),
            overlapped.table(wall)
        );
        let mut json = phases.to_json();
        json["wall"] = serde_json::json!(wall.as_secs_f64());
        json["overlapped"] = overlapped.to_json();
        summary.profile = Some(json);
    }
    report(&args, &summary, files.len(), plot_dir.as_deref())?;
    match outcome(&failures, &summary, files.len()) {
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

/// Creates `--out` and returns the key that says which results in it are
/// this run's (model and options), or None without `--out`.
fn prepare_out(args: &Args, model_file: &Path, summary: &mut Summary) -> anyhow::Result<Option<RunKey>> {
    let Some(out) = &args.out else {
        return Ok(None);
    };
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    summary.out = out.clone();
    summary.model_sha256 = crate::manifest::sha256_file(model_file)?;
    Ok(Some(RunKey {
        model_sha256: summary.model_sha256.clone(),
        options: serde_json::json!({
            "format": args.format.extension(),
            "threshold": args.effective_threshold,
            "fps": args.fps,
            "write_pkl": args.write_pkl,
            "plot": args.plot,
            "global": global_params(args),
        }),
    }))
}

/// Where `--plot` draws: `--out`, else the workspace's plots/.
fn plot_dir(args: &Args, ws: &super::workspace::Workspace) -> anyhow::Result<Option<PathBuf>> {
    Ok(match (&args.out, args.plot) {
        (_, false) => None,
        (Some(out), true) => Some(out.clone()),
        (None, true) => {
            let dir = ws.plots();
            std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
            Some(dir)
        }
    })
}

/// What one input file needs.
enum Plan {
    /// Its outputs would overwrite another input's.
    Collides(anyhow::Error),
    /// `--skip-done`: this run's outputs are already there.
    Done,
    Todo,
}

/// Movies read ahead of the runtime, in all, besides those being read
/// (each up to ~35 MB for 2,400 shots).
const READ_AHEAD: usize = 2;

/// Reader threads by default: a quarter of the cores, 1 to 4 (one on the
/// 2-core machines, where a second would take the runtime's core).
fn default_read_threads(cores: usize) -> usize {
    (cores / 4).clamp(1, 4)
}

/// A movie the runtime has done, for a writer: scenes, formats, files.
struct Finish {
    index: usize,
    movie: Movie,
    prob: Vec<f64>,
}

/// Threads that turn probabilities into scenes and files while the runtime
/// works on the next movies (global grouping of a 2,400-shot movie takes
/// ~70 ms: a GPU runtime would otherwise wait on it). Half the cores, at
/// most 8, at least 1.
fn writer_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 8))
}

/// Segments every file, recording each in `summary` in the files' order.
/// One bad movie does not stop the others: each failure is reported by
/// name as it happens and returned. Three stages overlap: reader threads
/// read and decode the next movies, this thread runs the runtime, and
/// writer threads group, format and write (their time goes to
/// `overlapped`; the runtime side's waits for them to `phases`). Scenes
/// printed to stdout come in the files' order.
#[allow(clippy::too_many_arguments)]
fn segment_files(
    files: &[PathBuf],
    args: &Args,
    runtime: RuntimeKind,
    opts: &RuntimeOptions,
    dest: &Dest,
    summary: &mut Summary,
    phases: &mut Phases,
    overlapped: &mut Phases,
) -> Vec<anyhow::Error> {
    let pb = super::progress::bar(files.len(), "segment");
    let (stems, plans) = plan_files(files, args, dest, &pb);
    // Opened only when a movie is to be done, so a rerun with nothing left
    // costs no model load.
    let todo: Vec<&PathBuf> = files
        .iter()
        .zip(&plans)
        .filter(|(_, p)| matches!(p, Plan::Todo))
        .map(|(f, _)| f)
        .collect();
    let mut backend = match todo.is_empty() {
        true => None,
        false => Some(phases.time("model load", || open(runtime, opts))),
    };
    let (schema, ratio) = match &backend {
        Some(Ok(b)) => (Some(schema_for(b.config())), Some(b.config().ratio)),
        _ => (None, None),
    };
    let mut outcomes = Outcomes::new(files.len(), &pb, |text| pb.suspend(|| print!("{text}")));
    let workers = writer_threads();
    let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<Finish>(workers);
    let job_rx = std::sync::Mutex::new(job_rx);
    let n_readers = args.read_threads.map_or_else(
        || default_read_threads(std::thread::available_parallelism().map_or(1, |n| n.get())),
        usize::from,
    );
    std::thread::scope(|scope| {
        // Reader r reads the to-do files r, r + R, r + 2R, ... into its own
        // bounded channel; the runtime takes them round robin, so movies
        // arrive in the files' order with no reordering buffer.
        let mut read_rxs = Vec::new();
        let mut readers = Vec::new();
        if let Some(schema) = &schema {
            let todo = &todo;
            for r in 0..n_readers.min(todo.len()) {
                let (read_tx, read_rx) = std::sync::mpsc::sync_channel((READ_AHEAD / n_readers).max(1));
                read_rxs.push(read_rx);
                readers.push(scope.spawn(move || {
                    let mut reads = Phases::new();
                    for file in todo.iter().skip(r).step_by(n_readers) {
                        let movie = reads.time("read and decode", || Movie::load(file, schema));
                        if read_tx.send(movie).is_err() {
                            break; // the runtime side stopped
                        }
                    }
                    reads
                }));
            }
        }
        let mut next_read = 0usize;
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        // Without a runtime no movie reaches the writers: none are started.
        let writers: Vec<_> = ratio
            .into_iter()
            .flat_map(|ratio| std::iter::repeat_n(ratio, workers))
            .map(|ratio| {
                let (job_rx, done_tx, stems, pb) = (&job_rx, done_tx.clone(), &stems, &pb);
                scope.spawn(move || {
                    let mut own = Phases::new();
                    loop {
                        let job = job_rx
                            .lock()
                            .map_err(|_| ())
                            .and_then(|rx| rx.recv().map_err(|_| ()));
                        let Ok(job) = job else { break };
                        let file = &files[job.index];
                        let r = finish_one(
                            file,
                            job.movie,
                            &job.prob,
                            &stems[job.index],
                            args,
                            runtime,
                            &ratio,
                            pb,
                            dest,
                            &mut own,
                        );
                        if done_tx.send((job.index, r)).is_err() {
                            break;
                        }
                    }
                    own
                })
            })
            .collect();
        drop(done_tx);
        for (index, (file, plan)) in files.iter().zip(plans).enumerate() {
            match plan {
                Plan::Collides(e) => outcomes.settle(index, Err(e)),
                Plan::Done => outcomes.skipped(index),
                Plan::Todo => {
                    let b = match backend.as_mut() {
                        Some(Ok(b)) => b,
                        Some(Err(e)) => {
                            outcomes.settle(index, Err(anyhow::anyhow!("{e:#}")));
                            continue;
                        }
                        None => {
                            outcomes.settle(index, Err(anyhow::anyhow!("no backend")));
                            continue;
                        }
                    };
                    let t = std::time::Instant::now();
                    let read = match read_rxs.get(next_read % n_readers.max(1)) {
                        Some(rx) => rx.recv(),
                        None => Err(std::sync::mpsc::RecvError),
                    };
                    next_read += 1;
                    phases.add("wait for reads", t.elapsed());
                    let movie = match read {
                        Ok(Ok(m)) => m,
                        Ok(Err(e)) => {
                            outcomes.settle(index, Err(e.into()));
                            continue;
                        }
                        Err(_) => {
                            let e = anyhow::anyhow!("{}: the reader thread stopped", file.display());
                            outcomes.settle(index, Err(e));
                            continue;
                        }
                    };
                    match movie_probabilities_timed(b.as_mut(), &movie, args.model.batch, phases)
                        .with_context(|| format!("{}", file.display()))
                    {
                        Ok(prob) => {
                            let t = std::time::Instant::now();
                            let sent = job_tx.send(Finish { index, movie, prob });
                            phases.add("wait for writers", t.elapsed());
                            if sent.is_err() {
                                outcomes.settle(index, Err(anyhow::anyhow!("the writer threads stopped")));
                            }
                        }
                        Err(e) => outcomes.settle(index, Err(e)),
                    }
                }
            }
            while let Ok((i, r)) = done_rx.try_recv() {
                outcomes.settle(i, r);
            }
        }
        drop(job_tx);
        drop(read_rxs);
        let t = std::time::Instant::now();
        for (i, r) in done_rx.iter() {
            outcomes.settle(i, r);
        }
        phases.add("wait for writers", t.elapsed());
        for w in writers {
            if let Ok(own) = w.join() {
                overlapped.merge(&own);
            }
        }
        for r in readers {
            if let Ok(reads) = r.join() {
                overlapped.merge(&reads);
            }
        }
    });
    pb.finish_and_clear();
    outcomes.into_summary(files, &stems, summary)
}

/// What became of each file, in the files' order whatever order they
/// finish in; scenes for stdout go to `print` in that order too.
struct Outcomes<'a, P: FnMut(&str)> {
    results: Vec<Option<anyhow::Result<bool>>>,
    /// Scenes for stdout (no `--out`) of finished files not yet printed.
    texts: std::collections::BTreeMap<usize, String>,
    /// The first file whose outcome has not been printed yet.
    next: usize,
    pb: &'a indicatif::ProgressBar,
    print: P,
}

impl<'a, P: FnMut(&str)> Outcomes<'a, P> {
    fn new(n: usize, pb: &'a indicatif::ProgressBar, print: P) -> Outcomes<'a, P> {
        Outcomes {
            results: (0..n).map(|_| None).collect(),
            texts: Default::default(),
            next: 0,
            pb,
            print,
        }
    }

    fn skipped(&mut self, index: usize) {
        self.results[index] = Some(Ok(false));
        self.advance();
    }

    /// A file done (with the scenes to print, without `--out`) or failed.
    fn settle(&mut self, index: usize, r: anyhow::Result<Option<String>>) {
        self.results[index] = Some(match r {
            Ok(text) => {
                if let Some(text) = text {
                    self.texts.insert(index, text);
                }
                Ok(true)
            }
            Err(e) => {
                self.pb.suspend(|| eprintln!("error: {e:#}"));
                Err(e)
            }
        });
        self.advance();
    }

    fn advance(&mut self) {
        self.pb.inc(1);
        while self.next < self.results.len() && self.results[self.next].is_some() {
            if let Some(text) = self.texts.remove(&self.next) {
                (self.print)(&text);
            }
            self.next += 1;
        }
    }

    fn into_summary(self, files: &[PathBuf], stems: &[String], summary: &mut Summary) -> Vec<anyhow::Error> {
        let mut failures = Vec::new();
        for ((r, file), stem) in self.results.into_iter().zip(files).zip(stems) {
            match r {
                Some(Ok(true)) => summary.done.push(Finished {
                    stem: stem.clone(),
                    input: file.clone(),
                }),
                Some(Ok(false)) => summary.skipped.push(Finished {
                    stem: stem.clone(),
                    input: file.clone(),
                }),
                Some(Err(e)) => {
                    summary.failed.push(Failed {
                        input: file.clone(),
                        error: format!("{e:#}"),
                    });
                    failures.push(e);
                }
                None => {
                    let e = anyhow::anyhow!("{}: not segmented (a worker thread stopped)", file.display());
                    summary.failed.push(Failed {
                        input: file.clone(),
                        error: format!("{e:#}"),
                    });
                    failures.push(e);
                }
            }
        }
        failures
    }
}

/// Each file's output stem and whether it is to be done: a second input
/// with the same stem is refused (never written over the first's
/// outputs), and with `--skip-done` finished ones are skipped.
fn plan_files(
    files: &[PathBuf],
    args: &Args,
    dest: &Dest,
    pb: &indicatif::ProgressBar,
) -> (Vec<String>, Vec<Plan>) {
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    let mut stems = Vec::with_capacity(files.len());
    let mut plans = Vec::with_capacity(files.len());
    for file in files {
        let stem = output_stem(&file_stem(file));
        let plan = if let Some(first) = seen.insert(stem.clone(), file.clone()) {
            Plan::Collides(
                crate::data::LoadError {
                    path: file.to_path_buf(),
                    problem: format!(
                        "its outputs would be named {stem}, as those of {}: not written over them",
                        first.display()
                    ),
                }
                .into(),
            )
        } else if let (true, Some(out), Some(key)) = (args.skip_done, &args.out, dest.key) {
            match crate::manifest::status(out, &stem, key) {
                Status::Done => Plan::Done,
                Status::Redo(why) => {
                    pb.suspend(|| eprintln!("note: {}: redoing: {why}", file.display()));
                    Plan::Todo
                }
                Status::New => Plan::Todo,
            }
        } else {
            Plan::Todo
        };
        stems.push(stem);
        plans.push(plan);
    }
    (stems, plans)
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
        eprintln!("timelines in {}", dir.display());
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

/// Where a movie's outputs go beyond stdout.
struct Dest<'a> {
    /// Set with `--out`: the manifest's key for this run.
    key: Option<&'a RunKey>,
    model_file: &'a Path,
    plot_dir: Option<&'a Path>,
}

/// Scenes, formats and files of a movie the runtime has done: the scenes
/// to print on stdout without `--out`, else nothing (they are written).
#[allow(clippy::too_many_arguments)]
fn finish_one(
    file: &Path,
    mut movie: Movie,
    prob: &[f64],
    stem: &str,
    args: &Args,
    runtime: RuntimeKind,
    ratio: &crate::model::config::PerModality<f64>,
    pb: &indicatif::ProgressBar,
    dest: &Dest<'_>,
    phases: &mut Phases,
) -> anyhow::Result<Option<String>> {
    if args.out.is_some() && file_stem(file) != movie.imdb_id {
        pb.suspend(|| {
            eprintln!(
                "note: {}: imdb_id \"{}\" differs from the file name; its outputs are named {stem}",
                file.display(),
                crate::data::pickle::printable(&movie.imdb_id)
            )
        });
    }
    let seg = phases
        .time("scenes (grouping)", || {
            Segmentation::new(
                &movie,
                file,
                &runtime.to_string(),
                prob,
                ratio,
                args.effective_threshold,
                args.fps,
                global_params(args),
            )
        })
        .with_context(|| format!("{}: global grouping", file.display()))?;
    let text = phases.time("format", || scene_formats::render(&seg, args.format))?;
    if let Some(dir) = dest.plot_dir {
        let truth = movie.ground_truth.as_ref().map(|gt| {
            let p: Vec<f64> = gt.iter().map(|&b| f64::from(u8::from(b))).collect();
            scenes(&p, &movie.shot_end_frame, 0.5, args.fps)
        });
        let how = match &seg.global {
            Some(g) => match &g.length_prior {
                Some(w) => format!("global grouping, γ {}, λ {}", g.coherence, w.weight),
                None => format!("global grouping, γ {}", g.coherence),
            },
            None => "threshold rule".to_string(),
        };
        let title = format!(
            "{}: {} shots, {} scene{} ({runtime}, {how})",
            crate::data::pickle::printable(&movie.imdb_id),
            movie.n_shots(),
            seg.scenes.len(),
            if seg.scenes.len() == 1 { "" } else { "s" },
        );
        let timeline = crate::timeline::Timeline {
            title: &title,
            fps: args.fps,
            shot_end_frame: &movie.shot_end_frame,
            boundary_probabilities: prob,
            threshold: args.effective_threshold,
            scenes: &seg.scenes,
            truth: truth.as_deref(),
        };
        phases.time("plot", || {
            crate::timeline::write(&timeline, &dir.join(format!("{stem}.png")))
        })?;
    }
    let (Some(out), Some(key)) = (&args.out, dest.key) else {
        // Printed by the runtime side, in the files' order.
        return Ok(Some(text));
    };
    let mut outputs = vec![format!("{stem}.{}", args.format.extension())];
    if args.write_pkl {
        let pkl = out.join(format!("{stem}.pkl"));
        if same_file(&pkl, file) {
            bail!(
                "{}: --write-pkl would write over this input; choose another --out",
                file.display()
            );
        }
        movie.prediction = Some(seg.boundary_probabilities.clone());
        phases.time("write", || crate::data::pickle_write::write_movie(&pkl, &movie))?;
        outputs.push(format!("{stem}.pkl"));
    }
    if args.plot {
        outputs.push(format!("{stem}.png"));
    }
    phases.time("write", || {
        crate::fsutil::write_atomic(&out.join(&outputs[0]), text.as_bytes())?;
        crate::manifest::record(
            out,
            stem,
            file,
            &movie.imdb_id,
            dest.model_file,
            &runtime.to_string(),
            key,
            &outputs,
        )
    })?;
    Ok(None)
}

fn global_params(args: &Args) -> Option<GroupingParams> {
    args.rule.params(args.effective_threshold, &args.stored)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reader_on_small_machines_up_to_four_on_large_ones() {
        let readers: Vec<usize> = [1, 2, 4, 8, 16, 64]
            .into_iter()
            .map(default_read_threads)
            .collect();
        assert_eq!(readers, [1, 1, 1, 2, 4, 4]);
    }

    /// Writer threads finish movies in any order; what is printed, and the
    /// summary, follow the files' order.
    #[test]
    fn outcomes_print_and_summarise_in_file_order() {
        let pb = indicatif::ProgressBar::hidden();
        let mut printed = Vec::new();
        let files: Vec<PathBuf> = ["a", "b", "c", "d"].iter().map(PathBuf::from).collect();
        let stems: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let mut summary = Summary::default();
        let failures = {
            let mut o = Outcomes::new(4, &pb, |t: &str| printed.push(t.to_string()));
            o.settle(2, Ok(Some("c".into())));
            o.settle(3, Err(anyhow::anyhow!("d failed")));
            o.settle(0, Ok(Some("a".into())));
            o.skipped(1);
            o.into_summary(&files, &stems, &mut summary)
        };
        assert_eq!(printed, ["a", "c"]);
        assert_eq!(failures.len(), 1);
        let names = |v: &[Finished]| v.iter().map(|f| f.stem.clone()).collect::<Vec<_>>();
        assert_eq!(names(&summary.done), ["a", "c"]);
        assert_eq!(names(&summary.skipped), ["b"]);
        assert_eq!(summary.failed[0].input, PathBuf::from("d"));
    }
}
