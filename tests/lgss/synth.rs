use lgss::data::movie::{Movie, Schema};
use lgss::data::synth::{self, SynthSize};
use lgss::metrics::{average_precision, evaluate, MovieBoundaries};

use crate::common::tempdir;

#[test]
fn same_seed_same_bytes_other_seed_other_data() {
    let size = SynthSize {
        min_shots: 60,
        max_shots: 90,
        ..SynthSize::small()
    };
    let a = tempdir("synth-a");
    let b = tempdir("synth-b");
    let c = tempdir("synth-c");
    let pa = synth::write_dataset(&a, 3, 3, &size, &|| {}).unwrap();
    let pb = synth::write_dataset(&b, 3, 3, &size, &|| {}).unwrap();
    let pc = synth::write_dataset(&c, 4, 3, &size, &|| {}).unwrap();
    for ((x, y), z) in pa.iter().zip(&pb).zip(&pc) {
        let (x, y, z) = (
            std::fs::read(x).unwrap(),
            std::fs::read(y).unwrap(),
            std::fs::read(z).unwrap(),
        );
        assert_eq!(x, y);
        assert_ne!(x, z);
    }
}

/// The generated data has the real data's shape and statistics.
#[test]
fn full_size_movies_look_like_movie_scenes() {
    let size = SynthSize::full();
    let movies: Vec<Movie> = (0..4).map(|i| synth::movie(11, i, &size)).collect();
    let mut cuts = 0usize;
    let mut boundaries = 0usize;
    let mut zero_cast = 0usize;
    let mut place_zero = 0usize;
    let mut place_total = 0usize;
    for m in &movies {
        m.validate(&Schema::movie_scenes()).unwrap();
        let n = m.n_shots();
        assert!((500..=2500).contains(&n), "{n} shots");
        let gt = m.ground_truth.as_ref().unwrap();
        cuts += gt.iter().filter(|&&b| b).count();
        boundaries += gt.len();
        let cast = m.features(lgss::data::Modality::Cast).unwrap();
        zero_cast += (0..n).filter(|&i| cast.row(i).iter().all(|&x| x == 0.0)).count();
        let place = m.features(lgss::data::Modality::Place).unwrap();
        assert!(place.data.iter().all(|&x| x >= 0.0), "place is non-negative");
        place_zero += place.data.iter().filter(|&&x| x == 0.0).count();
        place_total += place.data.len();
    }
    let rate = cuts as f64 / boundaries as f64;
    assert!((0.05..0.11).contains(&rate), "boundary rate {rate}");
    assert!(zero_cast > 0, "some shots show nobody");
    let sparsity = place_zero as f64 / place_total as f64;
    assert!((0.4..0.9).contains(&sparsity), "place sparsity {sparsity}");
}

/// The provided prediction is a weak baseline: better than chance, far from perfect.
#[test]
fn provided_prediction_is_a_weak_baseline() {
    let size = SynthSize::small();
    let movies: Vec<Movie> = (0..6).map(|i| synth::movie(5, i, &size)).collect();
    let rows: Vec<MovieBoundaries> = movies
        .iter()
        .map(|m| MovieBoundaries {
            imdb_id: &m.imdb_id,
            ground_truth: m.ground_truth.as_deref().unwrap(),
            prediction: m.prediction.as_deref().unwrap(),
            shot_end_frame: &m.shot_end_frame,
        })
        .collect();
    let s = evaluate(&rows).unwrap();
    let gt: Vec<bool> = rows.iter().flat_map(|r| r.ground_truth.iter().copied()).collect();
    let chance = average_precision(&gt, &vec![0.5; gt.len()]);
    assert!(s.ap > chance * 1.5, "AP {} vs chance {chance}", s.ap);
    assert!(s.ap < 0.8, "AP {} is too easy", s.ap);
}
