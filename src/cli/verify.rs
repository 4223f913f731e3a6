//! `lgss verify`: the same movies through several runtimes; AP and Miou must agree.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use serde::Serialize;

use crate::data::dataset::movie_files;
use crate::data::movie::{Movie, Schema};
use crate::metrics::{evaluate, MovieBoundaries, Scores, THRESHOLD};
use crate::runtime::{open, RuntimeKind};
use crate::segment::movie_probabilities;

use super::segment::ModelArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory of tt*.pkl movies with ground truth.
    #[arg(long)]
    data: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Runtimes to compare; the first is the reference.
    #[arg(long, value_delimiter = ',', default_value = "tch,ort-cpu,tract")]
    runtimes: Vec<RuntimeKind>,
    /// Largest allowed |ΔAP| and |ΔMiou| (default 1e-6, or 1e-4 with a CUDA runtime).
    #[arg(long)]
    tolerance: Option<f64>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub runtime: String,
    /// Why the runtime could not be used, if it could not.
    pub error: Option<String>,
    /// The challenge's scores of this runtime's predictions.
    pub scores: Option<Scores>,
    pub max_abs_dp: f64,
    pub flips: usize,
    pub seconds: f64,
    pub windows_per_s: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub movies: usize,
    pub windows: usize,
    pub tolerance: f64,
    pub rows: Vec<Row>,
    pub ok: bool,
}

pub fn verify(args: &Args, ort_lib: Option<&Path>) -> anyhow::Result<Report> {
    if args.runtimes.is_empty() {
        bail!("--runtimes is empty");
    }
    let tolerance = args
        .tolerance
        .unwrap_or(if args.runtimes.iter().any(|r| r.is_cuda()) {
            1e-4
        } else {
            1e-6
        });
    let files = movie_files(&args.data)?;
    let mut movies: Option<Vec<Movie>> = None;
    let mut reference: Option<Vec<Vec<f64>>> = None;
    let mut rows = Vec::new();
    let mut ok = true;
    let mut windows = 0;
    for &kind in &args.runtimes {
        let opened = open(kind, &args.model.options(ort_lib));
        let (mut backend, config) = match opened {
            Ok(x) => x,
            Err(e) => {
                ok = false;
                rows.push(Row {
                    runtime: kind.to_string(),
                    error: Some(format!("{e:#}")),
                    scores: None,
                    max_abs_dp: f64::NAN,
                    flips: 0,
                    seconds: 0.0,
                    windows_per_s: 0.0,
                });
                continue;
            }
        };
        if movies.is_none() {
            let schema = Schema {
                require_ground_truth: true,
                ..crate::segment::schema_for(&config)
            };
            let pb = super::progress::bar(files.len(), "load");
            movies = Some(crate::data::dataset::load_all(&files, &schema, &|| pb.inc(1))?);
            pb.finish_and_clear();
        }
        let movies = movies.as_deref().unwrap_or_default();
        let pb = super::progress::bar(movies.len(), kind.name());
        let t0 = Instant::now();
        let mut probs = Vec::with_capacity(movies.len());
        for m in movies {
            probs.push(movie_probabilities(
                backend.as_mut(),
                m,
                &config,
                args.model.batch,
            )?);
            pb.inc(1);
        }
        let seconds = t0.elapsed().as_secs_f64();
        pb.finish_and_clear();
        windows = probs.iter().map(Vec::len).sum();
        let boundaries: Vec<MovieBoundaries> = movies
            .iter()
            .zip(&probs)
            .map(|(m, p)| MovieBoundaries {
                imdb_id: &m.imdb_id,
                ground_truth: m.ground_truth.as_deref().unwrap_or_default(),
                prediction: p,
                shot_end_frame: &m.shot_end_frame,
            })
            .collect();
        let s = evaluate(&boundaries)?;
        let (mut max_dp, mut flips) = (0.0f64, 0usize);
        if let Some(r) = &reference {
            for (a, b) in r.iter().flatten().zip(probs.iter().flatten()) {
                max_dp = max_dp.max((a - b).abs());
                flips += usize::from((*a >= THRESHOLD) != (*b >= THRESHOLD));
            }
        }
        let row = Row {
            runtime: kind.to_string(),
            error: None,
            scores: Some(s),
            max_abs_dp: max_dp,
            flips,
            seconds,
            windows_per_s: windows as f64 / seconds,
        };
        let first = rows.iter().find_map(|r: &Row| r.scores.as_ref());
        if let (Some(first), Some(this)) = (first, &row.scores) {
            if (first.ap - this.ap).abs() > tolerance || (first.miou - this.miou).abs() > tolerance {
                ok = false;
            }
        }
        if reference.is_none() {
            reference = Some(probs);
        }
        rows.push(row);
    }
    Ok(Report {
        movies: files.len(),
        windows,
        tolerance,
        rows,
        ok,
    })
}

pub fn run(args: Args, ort_lib: Option<&Path>) -> anyhow::Result<()> {
    let report = verify(&args, ort_lib)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if !report.ok {
        let missing: Vec<&str> = report
            .rows
            .iter()
            .filter(|r| r.scores.is_none())
            .map(|r| r.runtime.as_str())
            .collect();
        if !missing.is_empty() {
            bail!("runtime(s) unavailable: {}", missing.join(", "));
        }
        bail!(
            "AP or Miou differ between runtimes by more than {:e}",
            report.tolerance
        );
    }
    Ok(())
}

pub fn print_report(r: &Report) {
    println!(
        "{} movies, {} windows; tolerance {:e} on AP and Miou",
        r.movies, r.windows, r.tolerance
    );
    println!(
        "{:<9} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>10} {:>6} {:>8} {:>10}",
        "runtime", "AP", "mAP", "Miou", "P", "R", "F1", "max|Δp|", "flips", "wall s", "windows/s"
    );
    for row in &r.rows {
        let Some(s) = &row.scores else {
            println!(
                "{:<9} unavailable: {}",
                row.runtime,
                row.error.as_deref().unwrap_or("")
            );
            continue;
        };
        println!(
            "{:<9} {:>8.6} {:>8.6} {:>8.6} {:>7.4} {:>7.4} {:>7.4} {:>10.2e} {:>6} {:>8.2} {:>10.1}",
            row.runtime,
            s.ap,
            s.map,
            s.miou,
            s.precision,
            s.recall,
            s.f1,
            row.max_abs_dp,
            row.flips,
            row.seconds,
            row.windows_per_s
        );
    }
    println!(
        "{}",
        if r.ok {
            "runtimes agree"
        } else {
            "RUNTIMES DISAGREE or are unavailable"
        }
    );
}
