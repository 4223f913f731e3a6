use lgss::data::movie::{Movie, Schema};
use lgss::data::synth::{self, SynthSpec};
use lgss::metrics::{average_precision, evaluate, MovieBoundaries};

use crate::common::tempdir;

#[test]
fn same_seed_same_bytes_other_seed_other_data() {
    let size = SynthSpec {
        min_shots: 60,
        max_shots: 90,
        ..SynthSpec::small()
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
    let size = SynthSpec::full();
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
        assert!(place.iter().all(|&x| x >= 0.0), "place is non-negative");
        place_zero += place.iter().filter(|&&x| x == 0.0).count();
        place_total += place.len();
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
    let size = SynthSpec::small();
    let movies: Vec<Movie> = (0..6).map(|i| synth::movie(5, i, &size)).collect();
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
    let gt: Vec<bool> = rows.iter().flat_map(|r| r.ground_truth.iter().copied()).collect();
    let chance = average_precision(&gt, &vec![0.5; gt.len()]);
    assert!(s.ap > chance * 1.5, "AP {} vs chance {chance}", s.ap);
    assert!(s.ap < 0.8, "AP {} is too easy", s.ap);
}

/// The texture knobs at their defaults give the bytes the generator gave
/// before they existed: SHA-256 of the files `lgss synth --movies 3 --seed 5
/// --size small --shots 40..90` wrote at commit 7398179 (the last commit
/// without knobs), so `benches/quality.jsonl`'s data stays valid.
#[test]
fn default_texture_gives_the_bytes_of_the_generator_before_its_knobs() {
    let dir = tempdir("synth-default-texture");
    let size = SynthSpec {
        min_shots: 40,
        max_shots: 90,
        ..SynthSpec::small()
    };
    let files = synth::write_dataset(&dir, 5, 3, &size, &|| {}).unwrap();
    let want = [
        "001805cdde668259267d1ab797034788c61cada343d49b9a27dc6f14d49fe364",
        "e716c55b807595ac2ba040f5a94c0c0839c697dd09bd6119e07d02e56fe9c8a1",
        "3de6a2254ffc744b231088597c1df6a8b83a9be26008eb16a26f2ad62ff46cdb",
    ];
    for (f, w) in files.iter().zip(want) {
        assert_eq!(lgss::manifest::sha256_file(f).unwrap(), w, "{}", f.display());
    }
}

/// Each knob moves what it says, through the command line: longer scenes
/// mean fewer boundaries; with no audio noise a scene's shots share one
/// audio row, and with every scene's sound carried over, the whole movie
/// does; out-of-range values are refused by name.
#[test]
fn texture_knobs_change_what_they_name() {
    let dir = tempdir("synth-knobs");
    let synth_with = |name: &str, flags: &[&str]| -> Vec<Movie> {
        let out = dir.join(name);
        let run = crate::common::lgss()
            .args([
                "synth", "--movies", "4", "--seed", "2", "--size", "small", "--shots", "300..400", "--out",
            ])
            .arg(&out)
            .args(flags)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{flags:?}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let schema = Schema {
            require_ground_truth: true,
            ..Schema::any()
        };
        lgss::data::dataset::movie_files(&out)
            .unwrap()
            .iter()
            .map(|f| Movie::load(f, &schema).unwrap())
            .collect()
    };
    let rate = |movies: &[Movie]| {
        let gt: Vec<bool> = movies
            .iter()
            .flat_map(|m| m.ground_truth.clone().unwrap())
            .collect();
        gt.iter().filter(|&&b| b).count() as f64 / gt.len() as f64
    };
    let default = rate(&synth_with("default", &[]));
    let long = rate(&synth_with(
        "long",
        &["--scene-median", "18", "--scene-spread", "0.6"],
    ));
    assert!(
        long < 0.7 * default,
        "boundary rate {long} with longer scenes vs {default}"
    );

    let audio_rows = |m: &Movie| -> Vec<Vec<f32>> {
        let f = m.features(lgss::data::movie::Modality::Audio).unwrap();
        f.rows().into_iter().map(|r| r.to_vec()).collect()
    };
    let quiet = synth_with("quiet", &["--modality-noise", "audio=0"]);
    let mut changes_at_cuts = 0;
    for m in &quiet {
        let rows = audio_rows(m);
        for (b, &cut) in m.ground_truth.as_ref().unwrap().iter().enumerate() {
            if !cut {
                assert_eq!(
                    rows[b],
                    rows[b + 1],
                    "{} shot {b}: audio changed inside a scene",
                    m.imdb_id
                );
            } else if rows[b] != rows[b + 1] {
                changes_at_cuts += 1;
            }
        }
    }
    assert!(changes_at_cuts > 0, "no scene has its own sound");
    for m in synth_with(
        "carried",
        &["--modality-noise", "audio=0", "--audio-carryover", "1"],
    ) {
        let rows = audio_rows(&m);
        assert!(
            rows.iter().all(|r| *r == rows[0]),
            "{}: sound not carried over every cut",
            m.imdb_id
        );
    }

    for (flags, needle) in [
        (&["--story-cuts", "1.5"][..], "story cuts"),
        (&["--modality-noise", "smell=2"][..], "smell"),
        (&["--scene-median", "0"][..], "scene median"),
    ] {
        let out = crate::common::lgss()
            .args(["synth", "--movies", "1", "--out"])
            .arg(dir.join("refused"))
            .args(flags)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(needle), "{flags:?}: {err}");
        assert!(!dir.join("refused").exists(), "{flags:?} wrote files");
    }
}
