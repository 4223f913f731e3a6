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
    }];
    let err = evaluate(&rows).unwrap_err().to_string();
    assert!(err.contains("tt1") && err.contains("predictions"), "{err}");
    assert!(evaluate(&[]).is_err());
}
