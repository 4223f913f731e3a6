//! `lgss extract`: videos into a scene318 tree ([`crate::video::extract`]).

use std::path::PathBuf;

use anyhow::bail;

use crate::data::dataset::{read_file_list, Shard};
use crate::video::extract::{expand_videos, Catalogue, ExtractOptions, Outcome};
use crate::video::place::{PlaceModel, PlaceRuntime};
use crate::video::shots::{DetectorKind, DetectorSettings};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Video files, or folders of them (mp4, mkv, mov, webm, avi, …).
    #[arg(required_unless_present = "files_from")]
    pub inputs: Vec<PathBuf>,
    /// The scene318 tree to write (created if missing; other movies in it stay).
    #[arg(long, value_name = "ROOT")]
    pub out: PathBuf,
    /// An image network as ONNX, [N,3,224,224] → [N,D] (e.g. torchvision's
    /// ResNet-50 up to its average pool; see the book, "From video"): each
    /// shot's middle keyframe gives its place features. Without it the tree
    /// has audio features only.
    #[arg(long, value_name = "FILE.onnx")]
    pub place_model: Option<PathBuf>,
    /// Runtime of the place network (default: the best CPU runtime built,
    /// ort-cpu, else tract).
    #[arg(long, value_enum)]
    pub place_runtime: Option<PlaceRuntime>,
    /// Shot detector: SceneSeg's ShotDetect (HSV and Luv differences), or
    /// PySceneDetect's ContentDetector.
    #[arg(long, value_enum, default_value_t = DetectorKind::HsvLuv)]
    pub detector: DetectorKind,
    /// The detector's threshold [default: 20 for hsv-luv, 27 for content].
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Frames from one cut to the next, at least.
    #[arg(long, default_value_t = 15)]
    pub min_shot_len: u64,
    /// Also write each frame's differences to ROOT/shot_stats/<id>.csv.
    #[arg(long)]
    pub stats: bool,
    /// Also write each shot's middle keyframe as a JPEG:
    /// ROOT/shot_keyf/<id>/shot_NNNN_img_1.jpg (ShotDetect's name for it).
    #[arg(long)]
    pub keyframes: bool,
    /// Read more video paths from this file, one a line (`-`: standard input).
    #[arg(long, value_name = "LIST")]
    pub files_from: Option<PathBuf>,
    /// Extract only the videos of shard INDEX of COUNT (by file name).
    #[arg(long, value_name = "INDEX/COUNT")]
    pub shard: Option<Shard>,
    /// Skip videos already extracted into ROOT with the same settings.
    #[arg(long)]
    pub skip_done: bool,
    /// Print one JSON object a video instead of a line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args, ort_lib: Option<&std::path::Path>) -> anyhow::Result<()> {
    let mut inputs = args.inputs.clone();
    if let Some(list) = &args.files_from {
        inputs.extend(read_file_list(list)?);
    }
    let mut videos = expand_videos(&inputs)?;
    if let Some(shard) = args.shard {
        videos.retain(|v| shard.contains(v));
    }
    let mut settings = DetectorSettings::new(args.detector);
    if let Some(t) = args.threshold {
        if !(t.is_finite() && t > 0.0) {
            bail!("--threshold {t}: want a positive number");
        }
        settings.threshold = t;
    }
    settings.min_shot_len = args.min_shot_len;
    let mut model = match &args.place_model {
        Some(p) => Some(PlaceModel::open(
            p,
            args.place_runtime.unwrap_or_else(PlaceRuntime::default_built),
            16,
            ort_lib,
        )?),
        None => None,
    };
    let mut catalogue = Catalogue {
        root: args.out.clone(),
        options: ExtractOptions {
            detector: settings,
            stats: args.stats,
            keyframes: args.keyframes,
        },
        place: model.as_mut().zip(args.place_model.clone()),
        skip_done: args.skip_done,
    };
    let bars = super::progress::Bars::default();
    let json = args.json;
    let mut report = |o: &Outcome| match o {
        Outcome::Done(e) if json => println!("{}", serde_json::to_string(e).unwrap_or_default()),
        Outcome::Done(e) => {
            for w in &e.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: {} shots in {} frames ({:.1} s at {:.3} fps){}{} -> movie {}",
                e.video.display(),
                e.shots,
                e.frames,
                e.seconds,
                e.fps,
                e.place_dim.map_or(String::new(), |d| format!(", place {d}")),
                if e.audio {
                    ", audio"
                } else {
                    ", no audio track (silence)"
                },
                e.id
            )
        }
        Outcome::Skipped { id, video } => eprintln!("{}: done before (movie {id}), skipped", video.display()),
        Outcome::Failed { error, .. } => eprintln!("error: {error:#}"),
    };
    let outcomes = catalogue.run(&videos, &bars, &mut report)?;
    let failed = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Failed { .. }))
        .count();
    if failed > 0 {
        return Err(super::InvalidInput(format!(
            "{failed} of {} videos could not be extracted (above)",
            outcomes.len()
        ))
        .into());
    }
    Ok(())
}
