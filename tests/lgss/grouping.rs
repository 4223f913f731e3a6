//! Global optimal grouping: the dynamic program finds exactly the optimum
//! that an exhaustive search over every partition finds, its pruning never
//! changes the answer of the plain O(n²) recursion, its margins are the
//! exhaustive ones (with and without a scene-length prior), and
//! `segment --global` gives identical scenes in every runtime.

use lgss::data::movie::{Movie, Schema};
use lgss::grouping::{
    group, grouped_probabilities, margin, objective_shift, Descriptors, LengthPrior, Params, WeightedPrior,
    DESCRIPTOR_DIM,
};
use lgss::rng::Rng;
use std::path::Path;

use crate::common::{lgss, tempdir, trained_small};

/// Probabilities and descriptors of `n` shots in a few clustered scenes,
/// with noisy probabilities near the threshold so the coherence term matters.
fn instance(rng: &mut Rng, n: usize) -> (Vec<f64>, Descriptors) {
    let mut data = Vec::with_capacity(n * DESCRIPTOR_DIM);
    let mut centre: Vec<f64> = (0..DESCRIPTOR_DIM).map(|_| rng.normal()).collect();
    let mut prob = Vec::with_capacity(n.saturating_sub(1));
    for i in 0..n {
        let new_scene = i > 0 && rng.bernoulli(0.25);
        if new_scene {
            centre = (0..DESCRIPTOR_DIM).map(|_| rng.normal()).collect();
        }
        if i > 0 {
            let p = if new_scene {
                0.35 + 0.5 * rng.uniform()
            } else {
                0.6 * rng.uniform()
            };
            prob.push(p);
        }
        data.extend(centre.iter().map(|c| 0.3 * c + 0.2 * rng.normal()));
    }
    (prob, Descriptors { n, data })
}

/// E(C) computed directly: centroids, no prefix sums.
fn energy(prob: &[f64], desc: &Descriptors, p: &Params, cuts: &[bool]) -> Option<f64> {
    let logit = |x: f64| {
        let x = x.clamp(1e-7, 1.0 - 1e-7);
        (x / (1.0 - x)).ln()
    };
    let mut e = 0.0;
    let mut start = 0;
    for end in 1..=desc.n {
        if end < desc.n && !cuts[end - 1] {
            continue;
        }
        if end - start > p.max_scene_shots {
            return None;
        }
        let mut mean = vec![0.0; DESCRIPTOR_DIM];
        for i in start..end {
            for (m, x) in mean.iter_mut().zip(desc.row(i)) {
                *m += x / (end - start) as f64;
            }
        }
        for i in start..end {
            e += p.coherence
                * desc
                    .row(i)
                    .iter()
                    .zip(&mean)
                    .map(|(x, m)| (x - m) * (x - m))
                    .sum::<f64>();
        }
        if end < desc.n {
            e += logit(p.threshold) - logit(prob[end - 1]);
        }
        if let Some(w) = &p.length_prior {
            e -= w.weight * w.prior.log_ratio(end - start);
        }
        start = end;
    }
    Some(e)
}

/// A scene-length prior from random counts: anything from one common
/// length to a spread, so that r(L) has bumps the pruning must respect.
fn random_prior(rng: &mut Rng) -> Option<WeightedPrior> {
    if rng.bernoulli(0.3) {
        return None;
    }
    let lengths = rng.range(1, 9);
    let counts: Vec<u64> = (0..lengths)
        .map(|_| {
            if rng.bernoulli(0.4) {
                0
            } else {
                rng.range(1, 30) as u64
            }
        })
        .chain([1])
        .collect();
    let weight = [0.5, 1.0, 3.0][rng.range(0, 2)];
    Some(WeightedPrior::new(
        weight,
        LengthPrior::from_counts(&counts).unwrap(),
    ))
}

/// The best partition by trying all 2^(n−1), optionally with boundary
/// `force.0` decided as `force.1`.
fn exhaustive(
    prob: &[f64],
    desc: &Descriptors,
    p: &Params,
    force: Option<(usize, bool)>,
) -> (f64, Vec<bool>) {
    let m = desc.n - 1;
    let mut best = (f64::INFINITY, vec![]);
    for mask in 0u32..(1 << m) {
        let cuts: Vec<bool> = (0..m).map(|b| mask >> b & 1 == 1).collect();
        if force.is_some_and(|(b, c)| cuts[b] != c) {
            continue;
        }
        if let Some(e) = energy(prob, desc, p, &cuts) {
            if e < best.0 {
                best = (e, cuts);
            }
        }
    }
    best
}

#[test]
fn the_dynamic_program_finds_the_exhaustive_optimum() {
    let mut rng = Rng::new(11);
    let mut cases = 0;
    for n in 1..=12 {
        for _ in 0..12 {
            let (prob, desc) = instance(&mut rng, n);
            let params = Params {
                threshold: [0.5, 0.3, 0.7][rng.range(0, 2)],
                coherence: [0.0, 0.05, 0.2, 1.0, 5.0][rng.range(0, 4)],
                max_scene_shots: if rng.bernoulli(0.3) { rng.range(2, 5) } else { 1000 },
                length_prior: random_prior(&mut rng),
            };
            let got = group(&prob, &desc, &params).unwrap();
            let (want, want_cuts) = exhaustive(&prob, &desc, &params, None);
            let scale = 1.0 + want.abs();
            assert!(
                (got.objective - want).abs() <= 1e-9 * scale,
                "n {n} {params:?}: DP {} vs exhaustive {want}",
                got.objective
            );
            assert_eq!(got.cuts, want_cuts, "n {n} {params:?}");
            let direct = energy(&prob, &desc, &params, &got.cuts).unwrap();
            assert!((direct - got.objective).abs() <= 1e-9 * scale);
            // The margin is the exhaustive gap between deciding b either way.
            if n > 1 {
                let b = rng.range(0, n - 2);
                let (cut, _) = exhaustive(&prob, &desc, &params, Some((b, true)));
                let (keep, _) = exhaustive(&prob, &desc, &params, Some((b, false)));
                let m = margin(&prob, &desc, &params, b).unwrap();
                let want = if cut.is_finite() && keep.is_finite() {
                    (cut - keep).abs()
                } else {
                    f64::INFINITY
                };
                assert!(
                    (m - want).abs() <= 1e-9 * (1.0 + want.abs()) || (m.is_infinite() && want.is_infinite()),
                    "n {n} b {b}: margin {m} vs {want}"
                );
            }
            cases += 1;
        }
    }
    assert_eq!(cases, 144);
}

/// The prior is a distribution: Σ_L exp(r(L))·G(L) = 1 over all lengths,
/// with G the geometric distribution of the counts' mean; past the counts
/// (and the smoothing's reach) r is ln 0.01.
#[test]
fn the_length_prior_is_a_distribution_over_scene_lengths() {
    for counts in [
        vec![0, 2, 1],
        vec![5, 1],
        vec![1, 0, 0, 0, 0, 0, 0, 0, 0, 40, 3],
        vec![0; 7].into_iter().chain([9]).collect(),
    ] {
        let prior = LengthPrior::from_counts(&counts).unwrap();
        let scenes: u64 = counts.iter().sum();
        let shots: u64 = counts.iter().enumerate().map(|(i, c)| (i as u64 + 1) * c).sum();
        let rho = scenes as f64 / shots as f64;
        let mut total = 0.0;
        for len in 1..20_000usize {
            let g = if rho >= 1.0 {
                f64::from(u8::from(len == 1))
            } else {
                rho * (1.0 - rho).powi(len as i32 - 1)
            };
            total += prior.log_ratio(len).exp() * g;
        }
        assert!((total - 1.0).abs() < 1e-9, "{counts:?}: {total}");
        assert_eq!(prior.log_ratio(counts.len() + 3), 0.01f64.ln());
    }
    // A bump far from the mean is favoured over the geometric share there.
    let prior = LengthPrior::from_counts(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 40, 3]).unwrap();
    assert!(prior.log_ratio(10) > 1.0 && prior.log_ratio(1) < 0.0);
    assert!(LengthPrior::from_counts(&[]).is_err());
    assert!(LengthPrior::from_counts(&[0, 0]).is_err());
}

#[test]
fn scene_counts_come_from_the_ground_truth() {
    // Two movies: shots 0-1 | 2 | 3-5, and one scene of 2 shots.
    let a = [false, true, true, false, false];
    let b = [false];
    assert_eq!(LengthPrior::count_scenes([&a[..], &b[..]]), vec![1, 2, 1]);
    assert_eq!(LengthPrior::count_scenes([&[][..]]), vec![1]);
}

/// The plain recursion F(s) = min_t F(t) + pen(t) + γ SSE(t..s) over every
/// t, with SSE from centroids: what the pruned program must equal.
fn quadratic(prob: &[f64], desc: &Descriptors, p: &Params) -> Vec<bool> {
    let n = desc.n;
    let logit = |x: f64| {
        let x = x.clamp(1e-7, 1.0 - 1e-7);
        (x / (1.0 - x)).ln()
    };
    let sse = |t: usize, s: usize| {
        let cuts: Vec<bool> = (0..s - t - 1).map(|_| false).collect();
        let sub = Descriptors {
            n: s - t,
            data: desc.data[t * DESCRIPTOR_DIM..s * DESCRIPTOR_DIM].to_vec(),
        };
        let q = Params {
            coherence: 1.0,
            max_scene_shots: usize::MAX,
            length_prior: None,
            ..p.clone()
        };
        energy(&vec![0.5; s - t - 1], &sub, &q, &cuts).unwrap()
    };
    let mut f = vec![f64::INFINITY; n + 1];
    let mut back = vec![0; n + 1];
    f[0] = 0.0;
    for s in 1..=n {
        for t in s.saturating_sub(p.max_scene_shots)..s {
            let pen = if t == 0 {
                0.0
            } else {
                logit(p.threshold) - logit(prob[t - 1])
            };
            let prior = p
                .length_prior
                .as_ref()
                .map_or(0.0, |w| w.weight * w.prior.log_ratio(s - t));
            let c = f[t] + pen + p.coherence * sse(t, s) - prior;
            if c < f[s] {
                f[s] = c;
                back[s] = t;
            }
        }
    }
    let mut cuts = vec![false; n - 1];
    let mut s = n;
    while s > 0 {
        if back[s] > 0 {
            cuts[back[s] - 1] = true;
        }
        s = back[s];
    }
    cuts
}

#[test]
fn pruning_never_changes_the_answer() {
    let mut rng = Rng::new(12);
    // Scene lengths 1-12 with a bump at 4 (the instances' scenes are
    // geometric with mean 4), and one far from them.
    let near: &[u64] = &[3, 5, 8, 20, 9, 7, 5, 3, 2, 1, 0, 1];
    // Almost every scene 20 shots long, far from the instances' 4: a start
    // looks hopeless for many shots before a 20-shot scene from it wins,
    // which only a slack that looks that far ahead keeps alive.
    let far: &[u64] = &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 200, 0, 1];
    for (n, coherence, cap, weight, counts) in [
        (300, 0.1, 1000, 0.0, near),
        (300, 1.0, 40, 0.0, near),
        (250, 0.02, 1000, 0.0, near),
        (200, 3.0, 25, 0.0, near),
        (300, 0.1, 1000, 1.0, near),
        (300, 0.0, 1000, 1.0, near),
        (250, 0.02, 30, 3.0, near),
        (200, 1.0, 1000, 0.5, near),
        (300, 0.0, 1000, 1.0, far),
        (300, 0.05, 1000, 3.0, far),
        (250, 0.3, 60, 2.0, far),
    ] {
        let (prob, desc) = instance(&mut rng, n);
        let params = Params {
            threshold: 0.5,
            coherence,
            max_scene_shots: cap,
            length_prior: (weight > 0.0)
                .then(|| WeightedPrior::new(weight, LengthPrior::from_counts(counts).unwrap())),
        };
        let got = group(&prob, &desc, &params).unwrap();
        assert_eq!(
            got.cuts,
            quadratic(&prob, &desc, &params),
            "n {n} γ {coherence} cap {cap} λ {weight}"
        );
    }
}

#[test]
fn without_coherence_it_is_the_threshold_and_grouped_probabilities_keep_order() {
    let mut rng = Rng::new(13);
    let (prob, desc) = instance(&mut rng, 500);
    let params = Params {
        threshold: 0.4,
        coherence: 0.0,
        max_scene_shots: 1000,
        length_prior: None,
    };
    let got = group(&prob, &desc, &params).unwrap();
    let want: Vec<bool> = prob.iter().map(|&p| p > 0.4).collect();
    assert_eq!(got.cuts, want);

    let grouped = grouped_probabilities(&prob, &got.cuts);
    for (i, (&g, &cut)) in grouped.iter().zip(&got.cuts).enumerate() {
        assert_eq!(g >= 0.5, cut, "boundary {i}");
    }
    // Within each class the local order is kept.
    for i in 0..prob.len() {
        for j in 0..prob.len() {
            if got.cuts[i] == got.cuts[j] && prob[i] < prob[j] {
                assert!(grouped[i] < grouped[j], "{i} {j}");
            }
        }
    }
    assert!(grouped_probabilities(&[1.0], &[false])[0] < 0.5);
}

/// `verify`'s rule for grouped decisions: when the probabilities move from
/// p to q, every boundary the two groupings decide differently has a
/// margin (under p) within `objective_shift(p, q)`. On perturbations large
/// enough that flips happen; the largest change of one boundary's logit
/// alone is not enough to explain them (so the sum is needed, and the rule
/// is not vacuous).
#[test]
fn grouping_flips_stay_within_the_objective_shift() {
    let mut rng = Rng::new(14);
    let logit = |x: f64| {
        let x = x.clamp(1e-7, 1.0 - 1e-7);
        (x / (1.0 - x)).ln()
    };
    let (mut flips, mut beyond_one_boundary) = (0, 0);
    for _ in 0..300 {
        let n = rng.range(20, 80);
        let (p, desc) = instance(&mut rng, n);
        let params = Params {
            coherence: [0.0, 0.3, 1.0][rng.range(0, 2)],
            length_prior: random_prior(&mut rng),
            ..Params::default()
        };
        // Each boundary's logit moved by up to d (the DP's own clamp kept).
        let d = [0.05, 0.2, 0.5][rng.range(0, 2)];
        let q: Vec<f64> = p
            .iter()
            .map(|&x| 1.0 / (1.0 + (-(logit(x) + d * (2.0 * rng.uniform() - 1.0))).exp()))
            .collect();
        let (gp, gq) = (
            group(&p, &desc, &params).unwrap(),
            group(&q, &desc, &params).unwrap(),
        );
        let shift = objective_shift(&p, &q);
        let one = p
            .iter()
            .zip(&q)
            .map(|(&a, &b)| (logit(a) - logit(b)).abs())
            .fold(0.0, f64::max);
        for b in (0..p.len()).filter(|&b| gp.cuts[b] != gq.cuts[b]) {
            flips += 1;
            let m = margin(&p, &desc, &params, b).unwrap();
            assert!(m <= shift * (1.0 + 1e-12) + 1e-12, "margin {m} > shift {shift}");
            beyond_one_boundary += usize::from(m > one);
        }
    }
    assert!(
        flips >= 20,
        "only {flips} flips: the perturbations are too small to test anything"
    );
    assert!(
        beyond_one_boundary > 0,
        "every flip within one boundary's logit change"
    );
}

/// `segment --global` in tract, ONNX Runtime and libtorch with a trained
/// model: the same scene partition, the grouped probabilities, and the
/// local ones beside them.
#[test]
fn global_grouping_is_identical_across_runtimes() {
    let dir = tempdir("grouping-runtimes");
    let (data, ck, onnx) = trained_small(&dir, 8, 21, (150, 250), 3);
    let movies: Vec<_> = (6..=8).map(|i| data.join(format!("tt000000{i}.pkl"))).collect();
    // The scene-length prior comes from the scenes of the movies trained
    // and validated on: one more than the cuts of each.
    let (trainval, _) = lgss::train::split_movies(8, 0.1).unwrap();
    let scenes_seen: usize = trainval
        .iter()
        .map(|i| {
            let schema = Schema {
                require_ground_truth: true,
                ..Schema::any()
            };
            let m = Movie::load(&data.join(format!("tt000000{}.pkl", i + 1)), &schema).unwrap();
            1 + m.ground_truth.unwrap().iter().filter(|&&c| c).count()
        })
        .sum();
    let mut partitions = Vec::new();
    for rt in ["tract", "ort-cpu", "tch"] {
        let out = dir.join(rt);
        let seg = lgss()
            .args([
                "segment",
                "--global",
                "--coherence",
                "0.1",
                "--runtime",
                rt,
                "--model",
            ])
            .arg(&onnx)
            .arg("--checkpoint")
            .arg(&ck)
            .arg("--out")
            .arg(&out)
            .args(&movies)
            .output()
            .unwrap();
        assert!(
            seg.status.success(),
            "{rt}: {}",
            String::from_utf8_lossy(&seg.stderr)
        );
        let mut per_movie = Vec::new();
        for i in 6..=8 {
            let v: serde_json::Value =
                serde_json::from_slice(&std::fs::read(out.join(format!("tt000000{i}.json"))).unwrap())
                    .unwrap();
            let local = v["model_probabilities"].as_array().unwrap();
            let grouped = v["boundary_probabilities"].as_array().unwrap();
            assert_eq!(local.len(), grouped.len());
            assert_eq!(v["global"]["coherence"], 0.1);
            assert_eq!(v["global"]["length_prior"]["weight"], 1.5);
            assert_eq!(v["global"]["length_prior"]["scenes_seen"], scenes_seen);
            let starts: Vec<u64> = v["scenes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["first_shot"].as_u64().unwrap())
                .collect();
            // Grouping moved some cuts away from the threshold rule, and
            // the grouped probabilities say exactly which.
            let rule: usize = local.iter().filter(|p| p.as_f64().unwrap() >= 0.5).count();
            let cuts: usize = grouped.iter().filter(|p| p.as_f64().unwrap() >= 0.5).count();
            assert_eq!(cuts + 1, starts.len());
            per_movie.push((starts, rule));
        }
        partitions.push(per_movie);
    }
    assert!(
        partitions[0]
            .iter()
            .any(|(starts, rule)| starts.len() != rule + 1),
        "grouping changed nothing: {partitions:?}"
    );
    assert_eq!(partitions[0], partitions[1], "tract vs ort-cpu");
    assert_eq!(partitions[0], partitions[2], "tract vs tch");

    // verify --global: grouped scores per runtime, no cut decided
    // differently, and the same scores `eval --pred` gives segment's outputs.
    let test = dir.join("test");
    std::fs::create_dir_all(&test).unwrap();
    for m in &movies {
        std::fs::copy(m, test.join(m.file_name().unwrap())).unwrap();
    }
    let verify = lgss()
        .args([
            "verify",
            "--global",
            "--coherence",
            "0.1",
            "--json",
            "--runtimes",
            "tch,ort-cpu,tract",
            "--data",
        ])
        .arg(&test)
        .arg("--model")
        .arg(&onnx)
        .arg("--checkpoint")
        .arg(&ck)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    let eval = lgss()
        .args(["eval", "--json", "--pred"])
        .arg(dir.join("tract"))
        .arg(&test)
        .output()
        .unwrap();
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let eval: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    for row in report["rows"].as_array().unwrap() {
        let g = &row["global"];
        assert_eq!(g["differing_cuts"].as_array().unwrap().len(), 0, "{row}");
        // The same probabilities (tract's) give the same scores, exactly.
        if row["runtime"] == "tract" {
            for key in ["AP", "mAP", "Miou", "F1"] {
                assert_eq!(g["scores"][key], eval[key], "{key}");
            }
        }
    }
}

/// Miou of `segment [extra…]` on the movies in `movies`, as `lgss eval`
/// scores them.
fn segment_miou(out: &Path, movies: &Path, extra: &[&str]) -> f64 {
    let _ = std::fs::remove_dir_all(out);
    let seg = lgss()
        .arg("segment")
        .args(extra)
        .arg("--out")
        .arg(out)
        .arg(movies)
        .output()
        .unwrap();
    assert!(
        seg.status.success(),
        "{extra:?}: {}",
        String::from_utf8_lossy(&seg.stderr)
    );
    let ev = lgss()
        .args(["eval", "--json", "--pred"])
        .arg(out)
        .arg(movies)
        .output()
        .unwrap();
    assert!(ev.status.success(), "{}", String::from_utf8_lossy(&ev.stderr));
    let v: serde_json::Value = serde_json::from_slice(&ev.stdout).unwrap();
    v["Miou"].as_f64().unwrap()
}

/// `lgss train --val-movies` chooses global grouping's γ and λ: the grid
/// point whose `segment --global` scenes on the validation movies score the
/// best Miou by `lgss eval` (with the prior of the other training movies;
/// ties to the defaults, then grid order), stored in the checkpoint, copied
/// into the exported model, and `segment --global`'s default there.
#[test]
fn train_chooses_grouping_settings_on_validation_movies() {
    use lgss::model::checkpoint::Checkpoint;
    use lgss::train::grouping_choice::{COHERENCE_GRID, LENGTH_WEIGHT_GRID};

    let dir = tempdir("grouping-choice");
    let data = crate::common::synth_small(&dir, 8, 33, Some((150, 250)));
    let out = crate::common::train_small(&data, &dir.join("run"), 2)
        .args(["--val-movies", "2", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ck_path = dir.join("run/best.safetensors");
    let ck = Checkpoint::load(&ck_path).unwrap();
    let stored: serde_json::Value = serde_json::from_str(&ck.metadata["grouping_choice"]).unwrap();

    // models/lgss-small.toml holds out the last 10% for test: 7 train+val
    // movies, the last 2 of them validation.
    let (trainval, _) = lgss::train::split_movies(8, 0.1).unwrap();
    let (fit, val) = trainval.split_at(trainval.len() - 2);
    let file = |i: usize| data.join(format!("tt{:07}.pkl", i + 1));
    // The prior the choice saw: scene lengths of the movies trained on,
    // counted here from their ground truth.
    let mut counts: Vec<u64> = Vec::new();
    for &i in fit {
        let schema = Schema {
            require_ground_truth: true,
            ..Schema::any()
        };
        let gt = Movie::load(&file(i), &schema).unwrap().ground_truth.unwrap();
        let mut len = 1;
        for cut in gt.iter().chain([&true]) {
            if *cut {
                counts.resize(counts.len().max(len), 0);
                counts[len - 1] += 1;
                len = 1;
            } else {
                len += 1;
            }
        }
    }
    let mut fit_ck = Checkpoint::load(&ck_path).unwrap();
    fit_ck.metadata.insert(
        "scene_length_counts".into(),
        serde_json::to_string(&counts).unwrap(),
    );
    fit_ck.metadata.remove("grouping_choice");
    let fit_path = dir.join("fit-prior.safetensors");
    fit_ck.save(&fit_path).unwrap();
    let val_dir = dir.join("val");
    std::fs::create_dir_all(&val_dir).unwrap();
    for &i in val {
        std::fs::copy(file(i), val_dir.join(file(i).file_name().unwrap())).unwrap();
    }

    let ck_arg = fit_path.to_str().unwrap();
    let tch = ["--runtime", "tch", "--checkpoint", ck_arg];
    let local = segment_miou(&dir.join("seg"), &val_dir, &[&tch[..], &["--local"]].concat());
    assert_eq!(stored["local_val_Miou"].as_f64(), Some(local));
    let grid = std::iter::once((
        lgss::grouping::DEFAULT_COHERENCE,
        lgss::grouping::DEFAULT_LENGTH_WEIGHT,
    ))
    .chain(
        COHERENCE_GRID
            .iter()
            .flat_map(|&g| LENGTH_WEIGHT_GRID.iter().map(move |&l| (g, l))),
    );
    let mut best: Option<((f64, f64), f64)> = None;
    for (g, l) in grid {
        let (gs, ls) = (g.to_string(), l.to_string());
        let extra = [
            &tch[..],
            &["--global", "--coherence", &gs, "--length-weight", &ls],
        ]
        .concat();
        let miou = segment_miou(&dir.join("seg"), &val_dir, &extra);
        if best.is_none_or(|(_, m)| miou > m) {
            best = Some(((g, l), miou));
        }
    }
    let ((g, l), miou) = best.unwrap();
    assert_eq!(stored["coherence"].as_f64(), Some(g), "{stored}");
    assert_eq!(stored["length_weight"].as_f64(), Some(l), "{stored}");
    assert_eq!(stored["val_Miou"].as_f64(), Some(miou), "{stored}");
    assert_eq!(stored["val_movies"], 2);

    // Exported, and the default rule of `segment` with either model: its
    // output equals `--global` with the stored γ and λ given as flags.
    let onnx = dir.join("model.onnx");
    crate::common::export_onnx(&ck_path, &onnx);
    let json_of = |out: &Path, i: usize| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(out.join(format!("tt{:07}.json", i + 1))).unwrap()).unwrap()
    };
    let (gs, ls) = (g.to_string(), l.to_string());
    for model in [
        vec!["--runtime", "tract", "--model", onnx.to_str().unwrap()],
        vec!["--runtime", "tch", "--checkpoint", ck_path.to_str().unwrap()],
    ] {
        let default = dir.join("default");
        let flags = dir.join("flags");
        segment_miou(&default, &val_dir, &model);
        segment_miou(
            &flags,
            &val_dir,
            &[
                &model[..],
                &["--global", "--coherence", &gs, "--length-weight", &ls],
            ]
            .concat(),
        );
        for &i in val {
            let v = json_of(&default, i);
            assert_eq!(v["rule"], "global", "{model:?}");
            assert_eq!(v["global"]["coherence"].as_f64(), Some(g), "{model:?}");
            let weight = v["global"]["length_prior"]["weight"].as_f64().unwrap_or(0.0);
            assert_eq!(weight, l, "{model:?}");
            assert_eq!(
                v,
                json_of(&flags, i),
                "{model:?}: default vs the stored choice as flags"
            );
        }
    }

    // --local is the threshold rule: a cut wherever the model's own
    // probability reaches the stored threshold, probabilities rescaled so
    // that it lands on 0.5.
    let threshold: f64 = ck.metadata["decision_threshold"].parse().unwrap();
    let local_dir = dir.join("local");
    segment_miou(
        &local_dir,
        &val_dir,
        &["--runtime", "tract", "--model", onnx.to_str().unwrap(), "--local"],
    );
    for &i in val {
        let v = json_of(&local_dir, i);
        assert_eq!(v["rule"], "local");
        assert!(v["global"].is_null(), "{}", v["global"]);
        let p: Vec<f64> = v["model_probabilities"]
            .as_array()
            .map(|a| a.iter().map(|x| x.as_f64().unwrap()).collect())
            .unwrap_or_else(|| {
                // Written only where it differs: at τ = 0.5 the two are one.
                assert_eq!(threshold, 0.5);
                v["boundary_probabilities"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .collect()
            });
        let starts: Vec<u64> = std::iter::once(0)
            .chain((0..p.len()).filter(|&b| p[b] >= threshold).map(|b| b as u64 + 1))
            .collect();
        let got: Vec<u64> = v["scenes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["first_shot"].as_u64().unwrap())
            .collect();
        assert_eq!(got, starts, "tt{:07}", i + 1);
        let written: Vec<f64> = v["boundary_probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        for (w, &q) in written.iter().zip(&p) {
            assert_eq!(*w >= 0.5, q >= threshold);
        }
    }

    // train's test rows: the threshold rule and the default rule, each what
    // `segment` + `eval` give on the test movie with this checkpoint.
    let (_, test) = lgss::train::split_movies(8, 0.1).unwrap();
    let test_dir = dir.join("test");
    std::fs::create_dir_all(&test_dir).unwrap();
    for &i in &test {
        std::fs::copy(file(i), test_dir.join(file(i).file_name().unwrap())).unwrap();
    }
    let ck_tch = ["--runtime", "tch", "--checkpoint", ck_path.to_str().unwrap()];
    for (key, extra) in [("test", &["--local"][..]), ("test_global", &[][..])] {
        let miou = segment_miou(&dir.join("seg-test"), &test_dir, &[&ck_tch[..], extra].concat());
        assert_eq!(summary[key]["Miou"].as_f64(), Some(miou), "{key}");
    }
    assert_eq!(summary["test_grouping"]["coherence"].as_f64(), Some(g));
}
