//! `lgss segment`: movies to scenes with any runtime.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::data::dataset::expand_inputs;
use crate::data::movie::Movie;
use crate::runtime::{open, RuntimeKind, RuntimeOptions};
use crate::scene_formats::{self, SceneFormat};
use crate::segment::{movie_probabilities, scenes, schema_for, Scene};

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
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// tract, ort-cpu, ort-cuda, tch or tch-cuda (default: the best CPU
    /// runtime this build has: ort-cpu, else tract).
    #[arg(long)]
    runtime: Option<RuntimeKind>,
    #[command(flatten)]
    model: ModelArgs,
    /// Write one file per movie here (else print to stdout).
    #[arg(long)]
    out: Option<PathBuf>,
    /// json (probabilities and scenes), csv, webvtt (chapters), edl (CMX
    /// 3600) or otio (OpenTimelineIO).
    #[arg(long, value_enum, default_value_t = SceneFormat::Json)]
    format: SceneFormat,
    /// A boundary is a scene cut when its probability is at least this.
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// Frames per second, for timecodes.
    #[arg(long, default_value_t = 24.0)]
    fps: f64,
    /// Also write each movie back with its prediction replaced (needs --out).
    #[arg(long)]
    write_pkl: bool,
}

#[derive(Debug, Serialize)]
pub struct Segmentation {
    pub imdb_id: String,
    pub file: PathBuf,
    pub runtime: String,
    pub n_shots: usize,
    pub threshold: f64,
    pub fps: f64,
    pub boundary_probabilities: Vec<f64>,
    pub scenes: Vec<Scene>,
}

pub fn run(args: Args, ort_lib: Option<&Path>, ws: &super::workspace::Workspace) -> anyhow::Result<()> {
    let runtime = match args.runtime {
        Some(r) => r,
        None => RuntimeKind::default_built().context("this build of lgss has no runtime")?,
    };
    crate::runtime::require_built(runtime)?;
    // The model first: without one there is nothing to do with the inputs.
    let opts = args.model.options(ort_lib, ws, &[runtime])?;
    if args.write_pkl && args.out.is_none() {
        bail!("--write-pkl needs --out DIR");
    }
    if args.fps.is_nan() || args.fps <= 0.0 {
        bail!("--fps must be positive");
    }
    let files = expand_inputs(&args.inputs)?;
    if files.is_empty() {
        bail!("no movie files given");
    }
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    }
    let mut backend = open(runtime, &opts)?;
    let schema = schema_for(backend.config());
    let pb = super::progress::bar(files.len(), "segment");
    // One bad movie must not stop the others: each failure is reported by
    // name now and summarised at the end.
    let mut failed: Vec<(PathBuf, anyhow::Error)> = Vec::new();
    let mut written: HashMap<String, PathBuf> = HashMap::new();
    for file in &files {
        let r = segment_one(file, &args, runtime, backend.as_mut(), &schema, &pb, &mut written);
        if let Err(e) = r {
            pb.suspend(|| eprintln!("error: {e:#}"));
            failed.push((file.clone(), e));
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    if let Some(out) = &args.out {
        eprintln!(
            "segmented {} of {} movies with {} into {}",
            files.len() - failed.len(),
            files.len(),
            runtime,
            out.display()
        );
    }
    if failed.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = failed.iter().map(|(f, _)| f.display().to_string()).collect();
    let summary = format!(
        "{} of {} movies failed: {}",
        failed.len(),
        files.len(),
        names.join(", ")
    );
    // Bad input only: exit code INVALID_INPUT ("done, with errors");
    // anything else is a failure of the run.
    if failed
        .iter()
        .all(|(_, e)| e.chain().any(|c| c.is::<crate::data::LoadError>()))
    {
        bail!(super::InvalidInput(summary));
    }
    bail!(summary)
}

#[allow(clippy::too_many_arguments)]
fn segment_one(
    file: &Path,
    args: &Args,
    runtime: RuntimeKind,
    backend: &mut dyn crate::runtime::Backend,
    schema: &crate::data::movie::Schema,
    pb: &indicatif::ProgressBar,
    written: &mut HashMap<String, PathBuf>,
) -> anyhow::Result<()> {
    let mut movie = Movie::load(file, schema)?;
    if args.out.is_some() {
        if let Some(first) = written.get(&movie.output_stem()) {
            return Err(crate::data::LoadError {
                path: file.to_path_buf(),
                problem: format!(
                    "imdb_id {} is also that of {}: not written over its outputs",
                    movie.imdb_id,
                    first.display()
                ),
            }
            .into());
        }
        written.insert(movie.output_stem(), file.to_path_buf());
    }
    let prob = movie_probabilities(backend, &movie, args.model.batch)
        .with_context(|| format!("{}", file.display()))?;
    let seg = Segmentation {
        imdb_id: movie.imdb_id.clone(),
        file: file.to_path_buf(),
        runtime: runtime.to_string(),
        n_shots: movie.n_shots(),
        threshold: args.threshold,
        fps: args.fps,
        scenes: scenes(&prob, &movie.shot_end_frame, args.threshold, args.fps),
        boundary_probabilities: prob.clone(),
    };
    let text = match args.format {
        SceneFormat::Json => serde_json::to_string(&seg)? + "\n",
        SceneFormat::Csv => scene_formats::csv(&seg.imdb_id, &seg.scenes),
        SceneFormat::Webvtt => scene_formats::webvtt(&seg.scenes),
        SceneFormat::Edl => scene_formats::edl(&seg.imdb_id, &seg.scenes, seg.fps),
        SceneFormat::Otio => {
            serde_json::to_string_pretty(&scene_formats::otio(&seg.imdb_id, &seg.scenes, seg.fps))? + "\n"
        }
    };
    match &args.out {
        Some(out) => {
            // Named by a stem that cannot leave `out`, whatever the file's imdb_id says.
            let stem = movie.output_stem();
            if stem != movie.imdb_id {
                pb.suspend(|| {
                    eprintln!(
                        "note: {}: imdb_id \"{}\" is not tt + digits; its outputs are named {stem}",
                        file.display(),
                        crate::data::pickle::printable(&movie.imdb_id)
                    )
                });
            }
            crate::fsutil::write_atomic(
                &out.join(format!("{stem}.{}", args.format.extension())),
                text.as_bytes(),
            )?;
            if args.write_pkl {
                movie.prediction = Some(prob);
                crate::data::pickle_write::write_movie(&out.join(format!("{stem}.pkl")), &movie)?;
            }
        }
        None => {
            pb.suspend(|| print!("{text}"));
        }
    }
    Ok(())
}
