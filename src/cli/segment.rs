//! `lgss segment`: movies to scenes with any runtime.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::data::dataset::expand_inputs;
use crate::data::movie::Movie;
use crate::runtime::{open, RuntimeKind, RuntimeOptions};
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
}

impl ModelArgs {
    pub fn options(&self, ort_lib: Option<&Path>) -> RuntimeOptions {
        RuntimeOptions {
            onnx: self.model.clone(),
            checkpoint: self.checkpoint.clone(),
            threads: self.threads,
            ort_lib: ort_lib.map(Path::to_path_buf),
            batch: self.batch,
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Movie pickles or directories of tt*.pkl.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[arg(long, default_value = "ort-cpu")]
    runtime: RuntimeKind,
    #[command(flatten)]
    model: ModelArgs,
    /// Write one file per movie here (else print to stdout).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value = "json", value_parser = ["json", "csv"])]
    format: String,
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

fn csv(s: &Segmentation) -> String {
    let mut out =
        String::from("imdb_id,scene,first_shot,last_shot,first_frame,last_frame,start,end,confidence\n");
    for sc in &s.scenes {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{:.6}\n",
            s.imdb_id,
            sc.index,
            sc.first_shot,
            sc.last_shot,
            sc.first_frame,
            sc.last_frame,
            sc.start,
            sc.end,
            sc.confidence
        ));
    }
    out
}

pub fn run(args: Args, ort_lib: Option<&Path>) -> anyhow::Result<()> {
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
    let (mut backend, config) = open(args.runtime, &args.model.options(ort_lib))?;
    let schema = schema_for(&config);
    let pb = super::progress::bar(files.len(), "segment");
    for file in &files {
        let mut movie = Movie::load(file, &schema)?;
        let prob = movie_probabilities(backend.as_mut(), &movie, &config, args.model.batch)
            .with_context(|| format!("{}", file.display()))?;
        let seg = Segmentation {
            imdb_id: movie.imdb_id.clone(),
            file: file.clone(),
            runtime: args.runtime.to_string(),
            n_shots: movie.n_shots(),
            threshold: args.threshold,
            fps: args.fps,
            scenes: scenes(&prob, &movie.shot_end_frame, args.threshold, args.fps),
            boundary_probabilities: prob.clone(),
        };
        let text = if args.format == "csv" {
            csv(&seg)
        } else {
            serde_json::to_string(&seg)? + "\n"
        };
        match &args.out {
            Some(out) => {
                crate::fsutil::write_atomic(
                    &out.join(format!("{}.{}", seg.imdb_id, args.format)),
                    text.as_bytes(),
                )?;
                if args.write_pkl {
                    movie.prediction = Some(prob);
                    crate::data::pickle_write::write_movie(
                        &out.join(format!("{}.pkl", seg.imdb_id)),
                        &movie,
                    )?;
                }
            }
            None => {
                pb.suspend(|| print!("{text}"));
            }
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    if let Some(out) = &args.out {
        eprintln!(
            "segmented {} movies with {} into {}",
            files.len(),
            args.runtime,
            out.display()
        );
    }
    Ok(())
}
