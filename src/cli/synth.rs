//! `lgss synth`: synthetic MovieScenes data, as pickles or a scene318 tree.

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::data::synth::{write_dataset_as, AudioForm, Layout, SynthSpec, Texture};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to write tt*.pkl files into, or the scene318 root
    /// (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// `pickle`: one MovieScenes pickle a movie; `scene318`: MovieNet's
    /// scene318 tree as SceneSeg reads it (per-shot .npy files, dicts of
    /// numpy arrays, labels, shot frames and meta/split318.json: the split
    /// lgss makes of the same movies as pickles).
    #[arg(long, value_enum, default_value_t = Layout::Pickle)]
    layout: Layout,
    /// `features`: one audio vector a shot; `stft`: one 257×90 STFT image a
    /// shot, as SceneSeg's `aud_feat` (`--layout scene318` only; for models
    /// with `audio_input = "stft"`, e.g. models/sceneseg.toml).
    #[arg(long, value_enum, default_value_t = AudioForm::Features)]
    audio: AudioForm,
    /// Number of movies.
    #[arg(long, default_value_t = 20)]
    movies: usize,
    /// Seed: the same seed gives byte-identical files.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// `full`: the real feature widths (2048/512/512/512), 500-2,500 shots;
    /// `small`: narrow features and short movies for tests and CPU demos.
    #[arg(long, value_enum, default_value_t = Size::Full)]
    size: Size,
    /// Shots per movie as MIN..MAX, overriding the size's default.
    #[arg(long, value_name = "MIN..MAX")]
    shots: Option<String>,
    #[command(flatten)]
    texture: TextureArgs,
}

/// The data's texture (the book: "Synthetic data"); the defaults are the
/// generator's own, and give byte-identical files.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Texture")]
struct TextureArgs {
    /// Median scene length in shots.
    #[arg(long, value_name = "SHOTS", default_value_t = Texture::default().scene_median)]
    scene_median: f64,
    /// Spread of scene lengths (σ of their log-normal; larger: more very
    /// short and very long scenes).
    #[arg(long, value_name = "SIGMA", default_value_t = Texture::default().scene_spread)]
    scene_spread: f64,
    /// Multiplier of every modality's per-shot noise.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    noise: f64,
    /// Multipliers of single modalities' noise on top of --noise, e.g.
    /// `place=3,audio=0.5` (a larger one makes that modality less informative).
    #[arg(long, value_name = "MODALITY=X,…", value_delimiter = ',')]
    modality_noise: Vec<String>,
    /// Chance that a scene's sound carries over its cut.
    #[arg(long, value_name = "P", default_value_t = Texture::default().audio_carryover)]
    audio_carryover: f64,
    /// Chance that a cut is a story cut with nothing visible or audible changing.
    #[arg(long, value_name = "P", default_value_t = Texture::default().story_cuts)]
    story_cuts: f64,
    /// Chance that a cut stays in the same place.
    #[arg(long, value_name = "P", default_value_t = Texture::default().same_place)]
    same_place: f64,
}

impl TextureArgs {
    fn texture(&self) -> anyhow::Result<Texture> {
        let mut noise = [self.noise; 4];
        for item in &self.modality_noise {
            let (name, value) = item
                .split_once('=')
                .with_context(|| format!("--modality-noise {item}: want MODALITY=X, e.g. place=2"))?;
            let m = crate::data::movie::Modality::ALL
                .iter()
                .position(|m| m.key() == name.trim())
                .with_context(|| {
                    format!("--modality-noise: no modality '{name}' (place, cast, action, audio)")
                })?;
            let x: f64 = value
                .trim()
                .parse()
                .with_context(|| format!("--modality-noise: '{value}' is not a number"))?;
            noise[m] *= x;
        }
        let t = Texture {
            scene_median: self.scene_median,
            scene_spread: self.scene_spread,
            noise,
            audio_carryover: self.audio_carryover,
            story_cuts: self.story_cuts,
            same_place: self.same_place,
        };
        t.validate().map_err(|e| anyhow::anyhow!("texture: {e}"))?;
        Ok(t)
    }
}

fn parse_range(s: &str) -> anyhow::Result<(usize, usize)> {
    let (a, b) = s
        .split_once("..")
        .context("--shots must look like MIN..MAX, e.g. 200..400")?;
    let a: usize = a
        .trim()
        .parse()
        .with_context(|| format!("--shots: '{a}' is not a number"))?;
    let b: usize = b
        .trim()
        .trim_start_matches('=')
        .parse()
        .with_context(|| format!("--shots: '{b}' is not a number"))?;
    if a < 2 || b < a {
        bail!("--shots {s}: need 2 <= MIN <= MAX");
    }
    Ok((a, b))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut size = SynthSpec::by_name(args.size.name()).context("unknown --size")?;
    if let Some(r) = &args.shots {
        (size.min_shots, size.max_shots) = parse_range(r)?;
    }
    size.texture = args.texture.texture()?;
    if args.movies == 0 {
        bail!("--movies must be at least 1");
    }
    if args.layout == Layout::Scene318 && args.movies < 3 {
        bail!("--layout scene318 needs at least 3 movies (its split has train, val and test)");
    }
    if args.audio == AudioForm::Stft && args.layout != Layout::Scene318 {
        bail!("--audio stft needs --layout scene318 (SceneSeg's aud_feat images; a MovieScenes pickle holds 512-d audio)");
    }
    let pb = super::progress::bar(args.movies, "synth");
    let paths = write_dataset_as(
        args.layout,
        &args.out,
        args.seed,
        args.movies,
        &size,
        args.audio,
        &|| pb.inc(1),
    )?;
    pb.finish_and_clear();
    eprintln!(
        "wrote {} movies ({} size, seed {}) to {}",
        paths.len(),
        args.size.name(),
        args.seed,
        args.out.display()
    );
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Size {
    /// The real feature widths, 500-2,500 shots.
    Full,
    /// Narrow features and short movies.
    Small,
}

impl Size {
    fn name(self) -> &'static str {
        match self {
            Size::Full => "full",
            Size::Small => "small",
        }
    }
}
