//! `lgss verify`'s rule: the AP interval a max|Δp| can reach contains every
//! perturbation's AP (scikit-learn's tie semantics included), is AP itself
//! at ε = 0, and `compare` fails exactly on what ε cannot explain.

use lgss::agreement::{ap_interval, compare, max_dp_bound, swappable_pairs, MoviePair};
use lgss::metrics::{average_precision, evaluate, MovieBoundaries};
use lgss::rng::Rng;

/// Scores on a coarse grid, so that ties (which sklearn's AP treats as one
/// threshold) are frequent.
fn grid_scores(rng: &mut Rng, n: usize, grid: usize) -> Vec<f64> {
    (0..n).map(|_| rng.range(0, grid) as f64 / grid as f64).collect()
}

#[test]
fn ap_interval_at_zero_is_ap_itself() {
    let mut rng = Rng::new(11);
    for _ in 0..2000 {
        let n = rng.range(1, 30);
        let truth: Vec<bool> = (0..n).map(|_| rng.bernoulli(0.3)).collect();
        let grid = [3, 10, 1000][rng.range(0, 2)];
        let p = grid_scores(&mut rng, n, grid);
        let (lo, hi) = ap_interval(&truth, &p, 0.0);
        let ap = average_precision(&truth, &p);
        assert!(
            (lo - ap).abs() <= 1e-12 && (hi - ap).abs() <= 1e-12,
            "{truth:?} {p:?}: [{lo}, {hi}] vs {ap}"
        );
    }
}

/// Every q within ε of p scores an AP inside the interval: q at the ends of
/// the ε-box (which split and merge ties) and inside it.
#[test]
fn ap_interval_contains_every_perturbation() {
    let mut rng = Rng::new(12);
    let mut widest = 0.0f64;
    for case in 0..20_000 {
        let n = rng.range(1, 16);
        let truth: Vec<bool> = (0..n).map(|_| rng.bernoulli(0.4)).collect();
        let grid = [4, 8, 100][rng.range(0, 2)];
        let p = grid_scores(&mut rng, n, grid);
        let eps = [0.0, 0.25, 0.5, 1.0, 2.0][rng.range(0, 4)] / grid as f64;
        let q: Vec<f64> = p
            .iter()
            .map(|&x| match rng.range(0, 3) {
                0 => x - eps,
                1 => x + eps,
                2 => x,
                _ => x + eps * (2.0 * rng.uniform() - 1.0),
            })
            .collect();
        let (lo, hi) = ap_interval(&truth, &p, eps);
        let ap = average_precision(&truth, &q);
        assert!(
            lo - 1e-12 <= ap && ap <= hi + 1e-12,
            "case {case}: truth {truth:?} p {p:?} q {q:?} eps {eps}: AP {ap} outside [{lo}, {hi}]"
        );
        widest = widest.max(hi - lo);
    }
    assert!(
        widest > 0.3,
        "the cases never exercised a wide interval ({widest})"
    );
}

#[test]
fn swappable_pairs_counts_close_positive_negative_pairs() {
    let truth = [true, false, false, true, false];
    let p = [0.50, 0.51, 0.90, 0.10, 0.1003];
    // (0.50, 0.51) within 2·0.01; (0.10, 0.1003) too; (0.50, 0.90) not.
    assert_eq!(swappable_pairs(&truth, &p, 0.005), 2);
    assert_eq!(swappable_pairs(&truth, &p, 0.0001), 0);
    assert_eq!(swappable_pairs(&truth, &p, 0.0002), 1);
}

struct Movie {
    id: String,
    truth: Vec<bool>,
    frames: Vec<i64>,
}

fn movies(rng: &mut Rng) -> (Vec<Movie>, Vec<Vec<f64>>) {
    let mut ms = Vec::new();
    let mut ps = Vec::new();
    for k in 0..3 {
        let n = 300;
        ms.push(Movie {
            id: format!("tt{k:07}"),
            truth: (0..n).map(|_| rng.bernoulli(0.08)).collect(),
            frames: (0..=n as i64).map(|i| 10 * i + 9).collect(),
        });
        // f32 probabilities, as runtimes return them.
        ps.push((0..n).map(|_| rng.uniform() as f32 as f64).collect());
    }
    (ms, ps)
}

fn scores(ms: &[Movie], ps: &[Vec<f64>]) -> lgss::metrics::Scores {
    let rows: Vec<MovieBoundaries> = ms
        .iter()
        .zip(ps)
        .map(|(m, p)| MovieBoundaries {
            imdb_id: &m.id,
            ground_truth: &m.truth,
            prediction: p,
            shot_end_frame: &m.frames,
            scored: None,
        })
        .collect();
    evaluate(&rows).unwrap()
}

fn agreement(ms: &[Movie], r: &[Vec<f64>], o: &[Vec<f64>], bound: f64) -> lgss::agreement::Agreement {
    let pairs: Vec<MoviePair> = ms
        .iter()
        .zip(r.iter().zip(o))
        .map(|(m, (r, o))| MoviePair {
            imdb_id: &m.id,
            ground_truth: &m.truth,
            reference: r,
            other: o,
        })
        .collect();
    compare(&pairs, &scores(ms, r), &scores(ms, o), bound)
}

#[test]
fn compare_explains_small_differences_and_refuses_large_ones() {
    let mut rng = Rng::new(13);
    let (ms, p) = movies(&mut rng);
    // Identical: a point interval, nothing near the threshold flips.
    let same = agreement(&ms, &p, &p, max_dp_bound(false));
    assert!(same.ok(), "{:?}", same.unexplained);
    assert_eq!((same.max_abs_dp, same.flips), (0.0, 0));
    assert_eq!(same.ap_interval.0, same.ap_interval.1);

    // Within the bound, with near-ties made to swap and a decision made to
    // flip: AP and Miou change, and the rule explains both.
    let mut r = p.clone();
    r[0][0] = 0.5 + 2e-6;
    r[0][1] = 0.3;
    r[0][2] = 0.3 + 1e-6;
    let mut o = r.clone();
    for (x, y) in r.iter().flatten().zip(o.iter_mut().flatten()) {
        *y = x + 4e-6 * (rng.uniform() - 0.5);
    }
    o[0][0] = 0.5 - 2e-6;
    o[0][1] = 0.3 + 3e-6;
    o[0][2] = 0.3 - 2e-6;
    let close = agreement(&ms, &r, &o, max_dp_bound(false));
    assert!(close.ok(), "{:?}", close.unexplained);
    assert_eq!(close.flips, 1);
    assert!(close.near_threshold >= 1);
    let (sr, so) = (scores(&ms, &r), scores(&ms, &o));
    assert_ne!(
        sr.miou_dict["tt0000000"], so.miou_dict["tt0000000"],
        "the flip changes Miou"
    );

    // The same shape of difference above the bound fails on max|Δp| alone.
    let mut far = r.clone();
    far[1][7] += 5e-5;
    let a = agreement(&ms, &r, &far, max_dp_bound(false));
    assert!(!a.ok());
    assert!(
        a.unexplained.iter().any(|u| u.contains("exceeds its bound")),
        "{:?}",
        a.unexplained
    );
    // TF32's bound is the fp32 one scaled by the ratio of unit roundoffs.
    assert!((max_dp_bound(true) / max_dp_bound(false) - 8192.0).abs() < 1e-9);
    assert!(agreement(&ms, &r, &far, max_dp_bound(true)).ok());

    // A runtime that returns another movie's probabilities (a plumbing bug).
    let swapped = vec![p[1].clone(), p[0].clone(), p[2].clone()];
    assert!(!agreement(&ms, &p, &swapped, max_dp_bound(false)).ok());
}
