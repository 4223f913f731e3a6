use std::collections::BTreeMap;

use lgss::data::movie::{Movie, Schema};
use lgss::metrics::{evaluate, MovieBoundaries, Scores};

use crate::common::{assert_close, expected, fixtures};

const TOL: f64 = 1e-9;

fn assert_dict(name: &str, got: &BTreeMap<String, f64>, want: &serde_json::Value) {
    let want = want
        .as_object()
        .unwrap_or_else(|| panic!("{name}: not an object"));
    assert_eq!(got.len(), want.len(), "{name}: movie count");
    for (id, w) in want {
        let g = got.get(id).unwrap_or_else(|| panic!("{name}: no {id}"));
        assert_close(&format!("{name}[{id}]"), *g, w.as_f64().unwrap(), TOL);
    }
}

fn assert_scores(case: &str, s: &Scores, want: &serde_json::Value) {
    for (key, got) in [
        ("AP", s.ap),
        ("mAP", s.map),
        ("Miou", s.miou),
        ("Precision", s.precision),
        ("Recall", s.recall),
        ("F1", s.f1),
    ] {
        assert_close(&format!("{case} {key}"), got, want[key].as_f64().unwrap(), TOL);
    }
    assert_dict(&format!("{case} AP_dict"), &s.ap_dict, &want["AP_dict"]);
    assert_dict(&format!("{case} miou_dict"), &s.miou_dict, &want["miou_dict"]);
    for key in ["precision_dict", "recall_dict", "f1_dict"] {
        if !want[key].is_null() {
            let got = match key {
                "precision_dict" => &s.precision_dict,
                "recall_dict" => &s.recall_dict,
                _ => &s.f1_dict,
            };
            assert_dict(&format!("{case} {key}"), got, &want[key]);
        }
    }
}

#[test]
fn every_metric_case_matches_the_challenge_script() {
    let text = std::fs::read_to_string(fixtures().join("metric_cases.json")).unwrap();
    let cases: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mut owned = Vec::new();
        for (id, m) in case["movies"].as_object().unwrap() {
            let gt: Vec<bool> = m["ground_truth"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_bool().unwrap())
                .collect();
            let pr: Vec<f64> = m["prediction"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_f64().unwrap())
                .collect();
            let fr: Vec<i64> = m["shot_end_frame"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_i64().unwrap())
                .collect();
            owned.push((id.clone(), gt, pr, fr));
        }
        let rows: Vec<MovieBoundaries> = owned
            .iter()
            .map(|(id, gt, pr, fr)| MovieBoundaries {
                imdb_id: id,
                ground_truth: gt,
                prediction: pr,
                shot_end_frame: fr,
                scored: None,
            })
            .collect();
        let s = evaluate(&rows).unwrap();
        assert_scores(name, &s, case);
    }
}

#[test]
fn fixture_movies_score_as_the_script_printed() {
    let files: Vec<_> = ["tt0000011", "tt0000012", "tt0000013"]
        .iter()
        .map(|id| fixtures().join(format!("movies/{id}.pkl")))
        .collect();
    let movies: Vec<Movie> = files
        .iter()
        .map(|f| Movie::load(f, &Schema::evaluation()).unwrap())
        .collect();
    let rows: Vec<MovieBoundaries> = movies
        .iter()
        .map(|m| MovieBoundaries {
            imdb_id: &m.imdb_id,
            ground_truth: m.ground_truth.as_deref().unwrap(),
            prediction: m.prediction.as_deref().unwrap(),
            shot_end_frame: &m.shot_end_frame,
            scored: None,
        })
        .collect();
    let s = evaluate(&rows).unwrap();
    assert_scores("movies/", &s, &expected()["scores_movies_dir"]);
}

#[test]
fn mismatched_lengths_are_errors_not_panics() {
    let gt = [true, false];
    let pr = [0.5];
    let fr = [1, 2, 3];
    let rows = [MovieBoundaries {
        imdb_id: "tt1",
        ground_truth: &gt,
        prediction: &pr,
        shot_end_frame: &fr,
        scored: None,
    }];
    let err = evaluate(&rows).unwrap_err().to_string();
    assert!(err.contains("tt1") && err.contains("predictions"), "{err}");
    assert!(evaluate(&[]).is_err());
}

/// Boundaries left out (scene318's, as SceneSeg leaves them out) count in
/// no score: AP, mAP and P/R/F1 equal the script's scores of the movies
/// with those boundaries removed, Miou theirs with no cut at them in truth
/// or prediction, and a movie with nothing left is not scored at all.
#[test]
fn left_out_boundaries_count_in_no_score() {
    let movies: Vec<Movie> = ["tt0000011", "tt0000012", "tt0000013"]
        .iter()
        .map(|id| {
            Movie::load(
                &fixtures().join(format!("movies/{id}.pkl")),
                &Schema::evaluation(),
            )
            .unwrap()
        })
        .collect();
    // Every third boundary and the first ten left out; none of the last movie.
    let masks: Vec<Vec<bool>> = movies
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let n = m.ground_truth.as_ref().unwrap().len();
            (0..n).map(|b| k == 2 || (b >= 10 && b % 3 != 0)).collect()
        })
        .collect();
    let rows: Vec<MovieBoundaries> = movies
        .iter()
        .zip(&masks)
        .map(|(m, s)| MovieBoundaries {
            imdb_id: &m.imdb_id,
            ground_truth: m.ground_truth.as_deref().unwrap(),
            prediction: m.prediction.as_deref().unwrap(),
            shot_end_frame: &m.shot_end_frame,
            scored: Some(s),
        })
        .collect();
    let masked = evaluate(&rows).unwrap();

    // The same movies with the left-out boundaries taken away (each kept
    // boundary's scene closes at its own shot's end frame)...
    type Owned = (Vec<bool>, Vec<f64>, Vec<i64>);
    let removed: Vec<Owned> = rows
        .iter()
        .map(|r| {
            let s = r.scored.unwrap();
            let keep = |b: &usize| s[*b];
            let idx: Vec<usize> = (0..s.len()).filter(keep).collect();
            let mut frames: Vec<i64> = idx.iter().map(|&b| r.shot_end_frame[b]).collect();
            frames.push(*r.shot_end_frame.last().unwrap());
            (
                idx.iter().map(|&b| r.ground_truth[b]).collect(),
                idx.iter().map(|&b| r.prediction[b]).collect(),
                frames,
            )
        })
        .collect();
    let plain = |data: &[Owned]| {
        let rows: Vec<MovieBoundaries> = data
            .iter()
            .zip(&movies)
            .map(|((g, p, f), m)| MovieBoundaries {
                imdb_id: &m.imdb_id,
                ground_truth: g,
                prediction: p,
                shot_end_frame: f,
                scored: None,
            })
            .collect();
        evaluate(&rows).unwrap()
    };
    let want = plain(&removed);
    for (key, got, w) in [
        ("AP", masked.ap, want.ap),
        ("mAP", masked.map, want.map),
        ("Precision", masked.precision, want.precision),
        ("Recall", masked.recall, want.recall),
        ("F1", masked.f1, want.f1),
    ] {
        assert_close(key, got, w, TOL);
    }
    // ...and, for Miou, left in place with no cut in truth or prediction.
    let uncut: Vec<Owned> = rows
        .iter()
        .map(|r| {
            let s = r.scored.unwrap();
            (
                r.ground_truth.iter().zip(s).map(|(&g, &k)| g && k).collect(),
                r.prediction
                    .iter()
                    .zip(s)
                    .map(|(&p, &k)| if k { p } else { 0.0 })
                    .collect(),
                r.shot_end_frame.to_vec(),
            )
        })
        .collect();
    assert_close("Miou", masked.miou, plain(&uncut).miou, TOL);
    // The last movie counted entirely; every movie is scored.
    assert_eq!(masked.ap_dict.len(), 3);
    // A movie with no boundary left is not scored at all.
    let none = vec![false; masks[0].len()];
    let rows_none = [
        MovieBoundaries {
            scored: Some(&none),
            ..rows[0]
        },
        rows[1],
    ];
    let s = evaluate(&rows_none).unwrap();
    assert_eq!(s.ap_dict.keys().collect::<Vec<_>>(), [&movies[1].imdb_id]);
}

/// SceneSeg's evaluation (the paper's metrics) equals a numpy/scikit-learn
/// implementation of its functions on every case of
/// `tests/fixtures/sceneseg_metric_cases.json`, left-out boundaries,
/// ties, and movies without a predicted or a true cut included.
#[test]
fn sceneseg_metrics_match_numpy_and_scikit_learn() {
    let cases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("sceneseg_metric_cases.json")).unwrap())
            .unwrap();
    let cases = cases["cases"].as_object().unwrap();
    assert!(cases.len() >= 6);
    let bools = |v: &serde_json::Value| -> Vec<bool> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_bool().unwrap())
            .collect()
    };
    for (name, case) in cases {
        type Owned = (String, Vec<bool>, Vec<f64>, Vec<i64>, Vec<bool>);
        let owned: Vec<Owned> = case["movies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["imdb_id"].as_str().unwrap().to_string(),
                    bools(&m["ground_truth"]),
                    m["prediction"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_f64().unwrap())
                        .collect(),
                    m["shot_end_frame"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_i64().unwrap())
                        .collect(),
                    bools(&m["scored"]),
                )
            })
            .collect();
        let rows: Vec<MovieBoundaries> = owned
            .iter()
            .map(|(id, gt, p, fr, s)| MovieBoundaries {
                imdb_id: id,
                ground_truth: gt,
                prediction: p,
                shot_end_frame: fr,
                scored: Some(s),
            })
            .collect();
        let got = lgss::sceneseg_metrics::evaluate(&rows).unwrap();
        let want = &case["expected"];
        for (key, g) in [
            ("AP", got.ap),
            ("mAP", got.map),
            ("Recall", got.recall),
            ("Recall_time", got.recall_time),
        ] {
            assert_close(&format!("{name} {key}"), g, want[key].as_f64().unwrap(), TOL);
        }
        match (got.miou, want["Miou"].as_f64()) {
            (Some(g), Some(w)) => assert_close(&format!("{name} Miou"), g, w, TOL),
            (None, None) => {}
            (g, w) => panic!("{name} Miou: {g:?} vs {w:?}"),
        }
    }
}
