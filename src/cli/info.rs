//! `lgss info`: what a MovieScenes file (or a scene318 tree's movie) holds.

use std::path::PathBuf;

use serde::Serialize;

use crate::data::movie::{Modality, Movie, Schema};
use crate::data::scene318;
use crate::metrics::{scene_frame_ranges, THRESHOLD};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Movie pickles, directories of tt*.pkl, or scene318 roots (or their
    /// label318/<id>.txt).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Feature widths to require: `full` (2048/512/512/512, all four), or `any`.
    #[arg(long, value_enum, default_value_t = Expect::Any)]
    expect: Expect,
    /// Print one JSON object per file instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Expect {
    /// Any feature widths, any modalities.
    Any,
    /// MovieScenes' widths: place 2048, cast/action/audio 512.
    Full,
}

#[derive(Debug, Serialize)]
struct FeatureInfo {
    modality: Modality,
    shape: [usize; 2],
    all_zero_rows: usize,
}

#[derive(Debug, Serialize)]
struct Info {
    file: PathBuf,
    imdb_id: String,
    shots: usize,
    features: Vec<FeatureInfo>,
    boundaries: usize,
    scene_cuts: Option<usize>,
    boundary_rate: Option<f64>,
    scenes: Option<usize>,
    mean_scene_shots: Option<f64>,
    predicted_cuts: Option<usize>,
    first_frame: i64,
    last_frame: i64,
    median_shot_frames: i64,
    /// scene318 movies: the boundaries SceneSeg leaves out of training and
    /// scoring (a shot of their window lacks features or a label).
    #[serde(skip_serializing_if = "Option::is_none")]
    left_out: Option<usize>,
}

fn describe(file: PathBuf, m: &Movie) -> Info {
    let n = m.n_shots();
    let features = Modality::ALL
        .iter()
        .filter_map(|&md| {
            m.features(md).map(|f| FeatureInfo {
                modality: md,
                shape: [f.nrows(), f.ncols()],
                all_zero_rows: f
                    .rows()
                    .into_iter()
                    .filter(|r| r.iter().all(|&x| x == 0.0))
                    .count(),
            })
        })
        .collect();
    let cuts = m
        .ground_truth
        .as_ref()
        .map(|gt| gt.iter().filter(|&&b| b).count());
    let mut lengths: Vec<i64> = std::iter::once(m.shot_end_frame[0] + 1)
        .chain(m.shot_end_frame.windows(2).map(|w| w[1] - w[0]))
        .collect();
    lengths.sort_unstable();
    let scenes = m
        .ground_truth
        .as_ref()
        .map(|gt| scene_frame_ranges(gt.iter().copied(), &m.shot_end_frame).len());
    Info {
        file,
        imdb_id: m.imdb_id.clone(),
        shots: n,
        features,
        boundaries: n - 1,
        scene_cuts: cuts,
        boundary_rate: cuts.map(|c| c as f64 / (n - 1) as f64),
        scenes,
        mean_scene_shots: scenes.map(|s| n as f64 / s as f64),
        predicted_cuts: m
            .prediction
            .as_ref()
            .map(|p| p.iter().filter(|&&x| x >= THRESHOLD).count()),
        first_frame: 0,
        last_frame: m.shot_end_frame[n - 1],
        median_shot_frames: lengths[lengths.len() / 2],
        left_out: m.scored.as_ref().map(|s| s.iter().filter(|&&k| !k).count()),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let schema = if args.expect == Expect::Full {
        Schema::movie_scenes()
    } else {
        Schema::any()
    };
    let files = crate::data::dataset::expand_inputs(&args.files)?;
    for file in files {
        let movie = Movie::load(&file, &schema)?;
        let info = describe(file, &movie);
        if args.json {
            println!("{}", serde_json::to_string(&info)?);
        } else {
            print_text(&info);
        }
    }
    Ok(())
}

fn print_text(i: &Info) {
    println!("{}", i.file.display());
    println!("  imdb_id     {}", i.imdb_id);
    println!("  shots       {}", i.shots);
    for f in &i.features {
        println!(
            "  {:<11} [{}, {}] float32, {} all-zero rows",
            f.modality.key(),
            f.shape[0],
            f.shape[1],
            f.all_zero_rows
        );
    }
    match (i.scene_cuts, i.boundary_rate, i.scenes, i.mean_scene_shots) {
        (Some(c), Some(r), Some(s), Some(ms)) => println!(
            "  truth       {c} scene cuts of {} boundaries ({:.1}%), {s} scenes, {ms:.1} shots per scene",
            i.boundaries,
            100.0 * r
        ),
        _ => println!("  truth       none"),
    }
    match i.predicted_cuts {
        Some(p) => println!("  prediction  {p} boundaries at p >= {THRESHOLD}"),
        None => println!("  prediction  none"),
    }
    println!(
        "  frames      {}..={} (median shot {} frames)",
        i.first_frame, i.last_frame, i.median_shot_frames
    );
    if let Some(n) = i.left_out {
        println!(
            "  left out    {n} of {} boundaries (a shot of their {}-shot window lacks features or a label, as SceneSeg leaves them out)",
            i.boundaries,
            scene318::SCENESEG_WINDOW
        );
    }
}
