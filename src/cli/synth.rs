//! `lgss synth`: synthetic MovieScenes data.

use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::data::synth::{write_dataset, SynthSize};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to write tt*.pkl files into (created if missing).
    #[arg(long)]
    out: PathBuf,
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
    let mut size = SynthSize::by_name(args.size.name()).context("unknown --size")?;
    if let Some(r) = &args.shots {
        (size.min_shots, size.max_shots) = parse_range(r)?;
    }
    if args.movies == 0 {
        bail!("--movies must be at least 1");
    }
    let pb = super::progress::bar(args.movies, "synth");
    let paths = write_dataset(&args.out, args.seed, args.movies, &size, &|| pb.inc(1))?;
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
