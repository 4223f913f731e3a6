//! How a Rust service segments a movie with lgss as a library: open a
//! MovieScenes pickle, load the exported ONNX model with tract (or
//! `RuntimeKind::OrtCpu` for ONNX Runtime) and get scenes by the default
//! rule, global grouping with what the model's training stored (its
//! threshold, scene-length prior, γ and λ), as `lgss segment` does.
//!
//! cargo run --release --example segment -- model.onnx movie.pkl

use std::path::PathBuf;

use lgss::data::Movie;
use lgss::runtime::{onnx_meta, open, RuntimeKind, RuntimeOptions};
use lgss::segment::{decide, grouping_params, movie_probabilities, rule_description, schema_for};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(model), Some(movie)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: segment MODEL.onnx MOVIE.pkl");
    };
    let model = PathBuf::from(model);
    let stored = onnx_meta::stored_choices_of(&model)?;
    let opts = RuntimeOptions {
        onnx: Some(model),
        batch: 32,
        ..Default::default()
    };
    let mut backend = open(RuntimeKind::Tract, &opts)?;
    let movie = Movie::load(movie.as_ref(), &schema_for(backend.config()))?;
    let prob = movie_probabilities(backend.as_mut(), &movie, opts.batch)?;
    let threshold = stored.threshold.unwrap_or(0.5);
    // `None` instead of the grouping gives the threshold rule (`--local`).
    let grouping = grouping_params(threshold, &stored, &Default::default());
    let decided = decide(
        &prob,
        &movie,
        &backend.config().ratio,
        threshold,
        24.0,
        Some(&grouping),
    )?;
    println!("{}", rule_description(threshold, Some(&grouping)));
    for s in decided.scenes {
        println!(
            "scene {:>3}: shots {:>4}-{:<4} {} - {} (confidence {:.2})",
            s.index, s.first_shot, s.last_shot, s.start, s.end, s.confidence
        );
    }
    Ok(())
}
