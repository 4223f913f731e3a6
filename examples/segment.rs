//! How a Rust service segments a movie with lgss as a library: open a
//! MovieScenes pickle, load the exported ONNX model with tract (or
//! `RuntimeKind::OrtCpu` for ONNX Runtime) and get scenes.
//!
//! cargo run --release --example segment -- model.onnx movie.pkl

use std::path::PathBuf;

use lgss::data::Movie;
use lgss::runtime::{open, RuntimeKind, RuntimeOptions};
use lgss::segment::{movie_probabilities, scenes, schema_for};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(model), Some(movie)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: segment MODEL.onnx MOVIE.pkl");
    };
    let opts = RuntimeOptions {
        onnx: Some(PathBuf::from(model)),
        batch: 32,
        ..Default::default()
    };
    let mut backend = open(RuntimeKind::Tract, &opts)?;
    let movie = Movie::load(movie.as_ref(), &schema_for(backend.config()))?;
    let prob = movie_probabilities(backend.as_mut(), &movie, opts.batch)?;
    for s in scenes(&prob, &movie.shot_end_frame, 0.5, 24.0) {
        println!(
            "scene {:>3}: shots {:>4}-{:<4} {} - {} (confidence {:.2})",
            s.index, s.first_shot, s.last_shot, s.start, s.end, s.confidence
        );
    }
    Ok(())
}
