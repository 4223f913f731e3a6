//! `lgss eval`: the challenge's metrics (and the paper's, SceneSeg's) over
//! a directory of movies.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::InvalidInput;
use crate::data::dataset::{files_named, is_movie_name, load_all, movie_files};
use crate::data::movie::{Movie, Schema};
use crate::metrics::{evaluate, MovieBoundaries, Scores};
use crate::sceneseg_metrics::SceneSegScores;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory of tt*.pkl files with ground truth and shot end frames.
    dir: PathBuf,
    /// Take predictions from this directory instead of each file's own
    /// scene_transition_boundary_prediction: its tt*.pkl movies, or the .json
    /// files `lgss segment --out` writes, matched by imdb_id.
    #[arg(long)]
    pred: Option<PathBuf>,
    /// Print one JSON object with the script's keys (AP, mAP, Miou, …).
    #[arg(long)]
    json: bool,
    /// Which metrics: `eluvio` (the challenge's evaluate_sceneseg.py),
    /// `sceneseg` (the paper's: SceneSeg's AP, mAP, Miou, Recall,
    /// Recall_time), or `all` (the challenge's, with SceneSeg's under
    /// `sceneseg` in the JSON).
    #[arg(long, value_enum, default_value_t = Metrics::Eluvio)]
    metrics: Metrics,
}

/// The metric families `eval` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Metrics {
    Eluvio,
    Sceneseg,
    All,
}

/// Loads the ground truth of `dir`, with predictions from `pred` or the files themselves.
pub fn load_scored(dir: &std::path::Path, pred: Option<&std::path::Path>) -> anyhow::Result<Vec<Movie>> {
    let files = movie_files(dir)?;
    let pb = super::progress::bar(files.len(), "load");
    let truth_schema = Schema {
        require_prediction: pred.is_none(),
        ..Schema::evaluation()
    };
    let mut movies = load_all(&files, &truth_schema, &|| pb.inc(1))?;
    pb.finish_and_clear();
    // A score over a set with one movie twice would mislead: name both files.
    let mut seen: HashMap<&str, &PathBuf> = HashMap::new();
    for (m, f) in movies.iter().zip(&files) {
        if let Some(first) = seen.insert(&m.imdb_id, f) {
            bail!(InvalidInput(format!(
                "{} and {} hold the same imdb_id {}",
                first.display(),
                f.display(),
                m.imdb_id
            )));
        }
    }
    if let Some(pred_dir) = pred {
        let pred_files = prediction_files(pred_dir)?;
        let schema = Schema {
            require_prediction: true,
            ..Schema::any()
        };
        let mut by_id: HashMap<String, (PathBuf, Vec<f64>)> = HashMap::new();
        for f in pred_files {
            let (imdb_id, p) = if f.extension().is_some_and(|e| e == "json") {
                read_segment_json(&f)?
            } else {
                let m = Movie::load(&f, &schema)?;
                (m.imdb_id, m.prediction.context("validated prediction missing")?)
            };
            if let Some((first, _)) = by_id.get(&imdb_id) {
                bail!(InvalidInput(format!(
                    "{} and {} hold the same imdb_id {}",
                    first.display(),
                    f.display(),
                    imdb_id
                )));
            }
            by_id.insert(imdb_id, (f, p));
        }
        for m in &mut movies {
            let Some((file, p)) = by_id.remove(&m.imdb_id) else {
                bail!(InvalidInput(format!(
                    "{}: no prediction for {}",
                    pred_dir.display(),
                    m.imdb_id
                )));
            };
            if p.len() != m.n_shots() - 1 {
                bail!(InvalidInput(format!(
                    "{}: {} predictions for {} ({} shots, so {} boundaries)",
                    file.display(),
                    p.len(),
                    m.imdb_id,
                    m.n_shots(),
                    m.n_shots() - 1
                )));
            }
            m.prediction = Some(p);
        }
    }
    Ok(movies)
}

/// The prediction files of `dir`: tt*.pkl movies and `segment`'s .json
/// outputs, sorted by name.
fn prediction_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let files = files_named(dir, |name| {
        is_movie_name(name) || (name.ends_with(".json") && !name.starts_with('.'))
    })?;
    if files.is_empty() {
        bail!(InvalidInput(format!(
            "{}: no predictions (tt*.pkl movies or `lgss segment --out` .json files)",
            dir.display()
        )));
    }
    Ok(files)
}

/// The imdb_id and boundary probabilities of a `lgss segment` JSON output.
fn read_segment_json(path: &Path) -> anyhow::Result<(String, Vec<f64>)> {
    #[derive(serde::Deserialize)]
    struct Output {
        imdb_id: String,
        boundary_probabilities: Vec<f64>,
    }
    let bad = |problem: String| {
        anyhow::Error::from(crate::data::LoadError {
            path: path.to_path_buf(),
            problem,
        })
    };
    let bytes = crate::regular_file::read(path).map_err(|e| bad(format!("cannot read: {e}")))?;
    let out: Output = serde_json::from_slice(&bytes).map_err(|e| {
        bad(format!(
            "not an `lgss segment` JSON output (imdb_id, boundary_probabilities): {e}"
        ))
    })?;
    if let Some(i) = out
        .boundary_probabilities
        .iter()
        .position(|p| !(0.0..=1.0).contains(p))
    {
        return Err(bad(format!(
            "boundary_probabilities[{i}] = {} is not a probability",
            out.boundary_probabilities[i]
        )));
    }
    Ok((out.imdb_id, out.boundary_probabilities))
}

/// Loaded movies' boundaries to score (each must have ground truth and a
/// prediction).
fn boundaries(movies: &[Movie]) -> anyhow::Result<Vec<MovieBoundaries<'_>>> {
    movies
        .iter()
        .map(|m| {
            Ok(MovieBoundaries {
                imdb_id: &m.imdb_id,
                ground_truth: m.ground_truth.as_deref().context("ground truth missing")?,
                prediction: m.prediction.as_deref().context("prediction missing")?,
                shot_end_frame: &m.shot_end_frame,
                scored: m.scored.as_deref(),
            })
        })
        .collect()
}

/// The challenge's scores of loaded movies.
pub fn score(movies: &[Movie]) -> anyhow::Result<Scores> {
    Ok(evaluate(&boundaries(movies)?)?)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let movies = load_scored(&args.dir, args.pred.as_deref())?;
    let scores = score(&movies)?;
    let paper = match args.metrics {
        Metrics::Eluvio => None,
        Metrics::Sceneseg | Metrics::All => Some(score_sceneseg(&movies)?),
    };
    if args.json {
        let json = match (args.metrics, &paper) {
            (Metrics::Sceneseg, Some(p)) => serde_json::to_value(p)?,
            (Metrics::All, Some(p)) => {
                let mut v = serde_json::to_value(&scores)?;
                v["sceneseg"] = serde_json::to_value(p)?;
                v
            }
            _ => serde_json::to_value(&scores)?,
        };
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    if args.metrics != Metrics::Sceneseg {
        print_table(&scores);
    }
    if let Some(p) = &paper {
        print_sceneseg(p);
    }
    Ok(())
}

/// SceneSeg's scores of loaded movies.
pub fn score_sceneseg(movies: &[Movie]) -> anyhow::Result<SceneSegScores> {
    Ok(crate::sceneseg_metrics::evaluate(&boundaries(movies)?)?)
}

/// SceneSeg's scores as one line, with the paper's names.
pub fn print_sceneseg(p: &SceneSegScores) {
    let miou = p.miou.map_or("none (a movie has no true cut)".to_string(), |m| {
        format!("{m:.4}")
    });
    println!(
        "SceneSeg (the paper's): AP {:.4}  mAP {:.4}  Miou {miou}  Recall {:.4}  Recall@3s {:.4}",
        p.ap, p.map, p.recall, p.recall_time
    );
}

/// The scores as a table: one row per movie, then the overall row.
pub fn print_table(s: &Scores) {
    println!(
        "{:<12} {:>8} {:>8} {:>9} {:>8} {:>8}",
        "movie", "AP", "Miou", "Precision", "Recall", "F1"
    );
    for (id, ap) in &s.ap_dict {
        let g = |d: &std::collections::BTreeMap<String, f64>| d.get(id).copied().unwrap_or(f64::NAN);
        println!(
            "{:<12} {:>8.4} {:>8.4} {:>9.4} {:>8.4} {:>8.4}",
            id,
            ap,
            g(&s.miou_dict),
            g(&s.precision_dict),
            g(&s.recall_dict),
            g(&s.f1_dict)
        );
    }
    println!(
        "{:<12} {:>8.4} {:>8.4} {:>9.4} {:>8.4} {:>8.4}   mAP {:.4}  ({} movies)",
        "all",
        s.ap,
        s.miou,
        s.precision,
        s.recall,
        s.f1,
        s.map,
        s.ap_dict.len()
    );
}
