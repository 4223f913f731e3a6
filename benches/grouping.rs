//! Global optimal grouping's cost: the shot descriptors of a full-width
//! 2,400-shot movie, and the dynamic program on 10^3 to 10^5 shots, each
//! with its wall time and peak heap (a counting allocator), to show time
//! about linear in shots and memory O(n·d), never O(n²); without and with a
//! scene-length prior (learned from the synthetic movie's scenes), at the
//! default γ and λ.
//!
//!     cargo bench --bench grouping

use std::time::Instant;

use lgss::data::synth::{movie, SynthSpec};
use lgss::grouping::{
    descriptors, group, Descriptors, LengthPrior, Params, WeightedPrior, DEFAULT_LENGTH_WEIGHT,
    DESCRIPTOR_DIM,
};
use lgss::model::config::PerModality;
use lgss::rng::Rng;

#[global_allocator]
static ALLOC: lgss::heap::Counting = lgss::heap::Counting;

/// `n` shots in scenes of ~12 shots; probabilities high at scene changes
/// and noisy elsewhere, descriptors clustered per scene.
fn instance(n: usize, seed: u64) -> (Vec<f64>, Descriptors) {
    let mut rng = Rng::new(seed);
    let mut data = Vec::with_capacity(n * DESCRIPTOR_DIM);
    let mut centre: Vec<f64> = (0..DESCRIPTOR_DIM).map(|_| rng.normal()).collect();
    let mut prob = Vec::with_capacity(n - 1);
    for i in 0..n {
        let change = i > 0 && rng.bernoulli(1.0 / 12.0);
        if change {
            centre = (0..DESCRIPTOR_DIM).map(|_| rng.normal()).collect();
        }
        if i > 0 {
            prob.push(if change {
                0.3 + 0.7 * rng.uniform()
            } else {
                0.6 * rng.uniform()
            });
        }
        data.extend(centre.iter().map(|c| 0.12 * c + 0.08 * rng.normal()));
    }
    (prob, Descriptors { n, data })
}

fn main() {
    let weights = PerModality {
        place: 0.5,
        cast: 0.2,
        action: 0.2,
        audio: 0.1,
    };
    let size = SynthSpec {
        min_shots: 2400,
        max_shots: 2400,
        ..SynthSpec::full()
    };
    let m = movie(8, 1, &size);
    let t = Instant::now();
    let d = descriptors(&m, &weights);
    println!(
        "descriptors of a full-width 2,400-shot movie: {:.1} ms ({} × {DESCRIPTOR_DIM})",
        t.elapsed().as_secs_f64() * 1e3,
        d.n
    );
    let counts = LengthPrior::count_scenes([m.ground_truth.as_deref().expect("synthetic ground truth")]);
    let prior = LengthPrior::from_counts(&counts).expect("scenes");
    println!(
        "{:>8} {:>6} {:>10} {:>10} {:>12} {:>8}",
        "shots", "prior", "ms", "µs/shot", "peak heap", "cuts"
    );
    for (&n, with_prior) in [1_000usize, 10_000, 100_000]
        .iter()
        .flat_map(|n| [(n, false), (n, true)])
    {
        let (prob, desc) = instance(n, n as u64);
        let params = Params {
            length_prior: with_prior.then(|| WeightedPrior::new(DEFAULT_LENGTH_WEIGHT, prior.clone())),
            ..Params::default()
        };
        let base = lgss::heap::start();
        let t = Instant::now();
        let g = group(&prob, &desc, &params).expect("valid instance");
        let secs = t.elapsed().as_secs_f64();
        let peak = lgss::heap::peak_since(base);
        println!(
            "{n:>8} {:>6} {:>10.1} {:>10.2} {:>9.1} MB {:>8}",
            if with_prior { "yes" } else { "none" },
            secs * 1e3,
            secs * 1e6 / n as f64,
            peak as f64 / 1e6,
            g.cuts.iter().filter(|&&c| c).count()
        );
    }
}
