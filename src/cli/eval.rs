//! `lgss eval`: the challenge's metrics over a directory of movies.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context};

use super::InvalidInput;
use crate::data::dataset::{load_all, movie_files};
use crate::data::movie::{Movie, Schema};
use crate::metrics::{evaluate, MovieBoundaries, Scores};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory of tt*.pkl files with ground truth and shot end frames.
    dir: PathBuf,
    /// Take predictions from the same-named files in this directory instead
    /// of each file's own scene_transition_boundary_prediction.
    #[arg(long)]
    pred: Option<PathBuf>,
    /// Print one JSON object with the script's keys (AP, mAP, Miou, …).
    #[arg(long)]
    json: bool,
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
        let pred_files = movie_files(pred_dir)?;
        let schema = Schema {
            require_prediction: true,
            ..Schema::any()
        };
        let mut by_id: HashMap<String, (PathBuf, Vec<f64>)> = HashMap::new();
        for f in pred_files {
            let m = Movie::load(&f, &schema)?;
            let p = m.prediction.context("validated prediction missing")?;
            if let Some((first, _)) = by_id.get(&m.imdb_id) {
                bail!(InvalidInput(format!(
                    "{} and {} hold the same imdb_id {}",
                    first.display(),
                    f.display(),
                    m.imdb_id
                )));
            }
            by_id.insert(m.imdb_id, (f, p));
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

/// Scores loaded movies (each must have ground truth and a prediction).
pub fn score(movies: &[Movie]) -> anyhow::Result<Scores> {
    let mut rows = Vec::with_capacity(movies.len());
    for m in movies {
        rows.push(MovieBoundaries {
            imdb_id: &m.imdb_id,
            ground_truth: m.ground_truth.as_deref().context("ground truth missing")?,
            prediction: m.prediction.as_deref().context("prediction missing")?,
            shot_end_frame: &m.shot_end_frame,
        });
    }
    Ok(evaluate(&rows)?)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let movies = load_scored(&args.dir, args.pred.as_deref())?;
    let scores = score(&movies)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&scores)?);
    } else {
        print_table(&scores);
    }
    Ok(())
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
