use lgss::data::movie::{Modality, Movie, Schema};
use lgss::data::pickle::{self, PickleError};

use crate::common::{expected, fixtures};

fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

#[test]
fn fixture_movies_match_expected_values_exactly() {
    let exp = expected();
    let movies = exp["movies"].as_object().expect("movies");
    assert_eq!(movies.len(), 4);
    for (rel, want) in movies {
        let path = fixtures().join(rel);
        let m = Movie::load(&path, &Schema::movie_scenes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.imdb_id, want["imdb_id"].as_str().unwrap(), "{rel}");
        let n = want["n_shots"].as_u64().unwrap() as usize;
        assert_eq!(m.n_shots(), n, "{rel}");
        for md in Modality::ALL {
            let f = m.features(md).expect("modality present");
            assert_eq!(f.dim(), (n, md.full_dim()), "{rel} {md}");
            let first = f64s(&want["feature_first"][md.key()]);
            let last = f64s(&want["feature_last"][md.key()]);
            // The first and last values of the flattened (row-major) tensor.
            let data = f.as_slice().unwrap();
            let got_first: Vec<f64> = data[..first.len()].iter().map(|&x| x as f64).collect();
            let got_last: Vec<f64> = data[data.len() - last.len()..]
                .iter()
                .map(|&x| x as f64)
                .collect();
            assert_eq!(got_first, first, "{rel} {md} first row");
            assert_eq!(got_last, last, "{rel} {md} last row");
            let sum: f64 = data.iter().map(|&x| x as f64).sum();
            let want_sum = want["feature_sums"][md.key()].as_f64().unwrap();
            assert!(
                (sum - want_sum).abs() <= 1e-9 * want_sum.abs().max(1.0),
                "{rel} {md}: sum {sum} vs {want_sum}"
            );
        }
        let gt: Vec<bool> = want["ground_truth"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_bool().unwrap())
            .collect();
        assert_eq!(m.ground_truth.as_ref().unwrap(), &gt, "{rel}");
        let frames: Vec<i64> = want["shot_end_frame"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        assert_eq!(m.shot_end_frame, frames, "{rel}");
        assert_eq!(
            m.prediction.as_ref().unwrap(),
            &f64s(&want["prediction"]),
            "{rel}"
        );
    }
}

/// Each malformed file names itself and the problem; nothing panics.
#[test]
fn bad_files_give_clear_errors() {
    let cases = [
        ("empty.pkl", "empty file"),
        ("truncated.pkl", "ends early"),
        ("text.pkl", "not a pickle"),
        ("missing_place.pkl", "required key 'place' missing"),
        ("gt_length.pkl", "ground truth must have n_shots-1"),
        ("rows_mismatch.pkl", "cast has"),
        ("nan_place.pkl", "place has a non-finite value"),
        ("place_dim.pkl", "place has 48 columns, model expects 64"),
        ("list.pkl", "top level is a list"),
        ("end_frames_decreasing.pkl", "shot_end_frame not increasing"),
        ("evil_global.pkl", "refuses global posix.system"),
    ];
    let listed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("bad/README.json")).unwrap()).unwrap();
    assert_eq!(
        listed.as_object().unwrap().len(),
        cases.len(),
        "every bad fixture has a case"
    );
    // The widths of `lgss synth --size small`, which the bad files have.
    let schema = Schema {
        modalities: Modality::ALL
            .iter()
            .map(|&m| (m, Some(if m == Modality::Place { 64 } else { 32 })))
            .collect(),
        ..Schema::any()
    };
    for (file, needle) in cases {
        let path = fixtures().join("bad").join(file);
        let err = Movie::load(&path, &schema).expect_err(file);
        let msg = err.to_string();
        assert!(msg.contains(file), "{file}: error does not name the file: {msg}");
        assert!(msg.contains(needle), "{file}: error '{msg}' lacks '{needle}'");
    }
}

#[test]
fn nan_error_names_the_shot() {
    let err = Movie::load(&fixtures().join("bad/nan_place.pkl"), &Schema::any()).unwrap_err();
    assert!(err.to_string().contains("shot 5"), "{err}");
}

#[test]
fn evil_pickle_runs_nothing() {
    let canary = std::path::Path::new("/tmp/lgss-pwned");
    let _ = std::fs::remove_file(canary);
    let bytes = std::fs::read(fixtures().join("bad/evil_global.pkl")).unwrap();
    let err = pickle::load(&bytes).unwrap_err();
    assert_eq!(err, PickleError::ForbiddenGlobal("posix.system".into()));
    assert!(!canary.exists(), "the evil pickle's command ran");
}

/// Hand-made hostile pickles: each is refused without a large allocation.
#[test]
fn hostile_pickles_are_bounded() {
    // BINBYTES8 claiming 2^60 bytes.
    let mut huge = vec![0x80, 4, 0x8e];
    huge.extend_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(pickle::load(&huge), Err(PickleError::Truncated(_))));
    // A memo index far beyond the input: the slots it would add exceed the budget.
    let memo = [0x80, 2, b'N', b'r', 0xff, 0xff, 0xff, 0x7f, b'.'];
    assert!(matches!(pickle::load(&memo), Err(PickleError::TooLarge(_))));
    // Deep nesting: a million nested lists.
    let mut deep = vec![0x80, 2];
    deep.extend(std::iter::repeat_n(b']', 1_000_000));
    assert!(matches!(pickle::load(&deep), Err(PickleError::TooLarge(_))));
    // builtins.eval by GLOBAL.
    let eval = b"\x80\x02cbuiltins\neval\nX\x01\x00\x00\x001\x85R.";
    assert_eq!(
        pickle::load(eval).unwrap_err(),
        PickleError::ForbiddenGlobal("builtins.eval".into())
    );
    // Protocol 0 and 1 are refused up front.
    assert!(matches!(
        pickle::load(b"(lp0\n."),
        Err(PickleError::NotPickle(b'('))
    ));
}

/// A stride-0 view that claims a huge shape over a tiny storage is refused
/// by the allocation budget rather than materialised.
#[test]
fn broadcast_views_cannot_exhaust_memory() {
    let mut m = Movie::load(&fixtures().join("movies/tt0000011.pkl"), &Schema::any()).unwrap();
    m.features = Default::default();
    let mut bytes = lgss::data::pickle_write::movie_to_pickle(&m);
    // Rewrite shot_end_frame's size/stride: (n,) (1,) -> (2^31-1,) (0,).
    let n = m.n_shots() as u8;
    let pat = [b'(', b'K', n, b't', b'(', b'K', 1, b't'];
    let at = bytes
        .windows(pat.len())
        .position(|w| w == pat)
        .expect("size/stride pattern");
    let mut evil = bytes[..at].to_vec();
    evil.extend_from_slice(&[b'(', b'J', 0xff, 0xff, 0xff, 0x7f, b't', b'(', b'K', 0, b't']);
    evil.extend_from_slice(&bytes[at + pat.len()..]);
    bytes = evil;
    assert!(matches!(pickle::load(&bytes), Err(PickleError::TooLarge(_))));
}
