//! MovieNet's scene318 layout against a tree written by real numpy and
//! pickle (`tests/fixtures/make_scene318.py`), whose `expected.json` ports
//! SceneSeg's data code: every movie reads as SceneSeg reads it, the
//! boundaries it leaves out are the same, the CLI takes the tree, and bad
//! files are refused by name without running anything.

use std::path::{Path, PathBuf};

use lgss::data::dataset::movie_files;
use lgss::data::movie::{Modality, Movie, Schema};
use lgss::data::scene318;

use crate::common::{fixtures, lgss, tempdir};

fn root() -> PathBuf {
    fixtures().join("scene318")
}

fn expected() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("scene318-expected.json")).unwrap()).unwrap()
}

fn ints(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

#[test]
fn a_scene318_tree_reads_as_sceneseg_reads_it() {
    let want = expected();
    assert_eq!(want["window"], scene318::SCENESEG_WINDOW);
    let files = movie_files(&root()).unwrap();
    let ids: Vec<String> = files.iter().map(|f| lgss::data::dataset::file_stem(f)).collect();
    // The split's `all`, in its order: train, val, test.
    assert_eq!(ids, ["tt0100001", "tt0100003", "tt0100002"]);
    for (id, w) in want["movies"].as_object().unwrap() {
        let tree = scene318::load(&root(), id).unwrap();
        let m = &tree.movie;
        assert_eq!(m.imdb_id, *id);
        assert_eq!(m.n_shots() as u64, w["n_shots"].as_u64().unwrap(), "{id}");
        assert_eq!(m.shot_end_frame, ints(&w["shot_end_frame"]), "{id}");
        let gt: Vec<bool> = w["ground_truth"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_bool().unwrap())
            .collect();
        assert_eq!(m.ground_truth.as_ref().unwrap(), &gt, "{id}");
        for (modality, key) in [
            (Modality::Place, "place"),
            (Modality::Cast, "cast"),
            (Modality::Action, "act"),
            (Modality::Audio, "aud"),
        ] {
            // float32 values widen to float64 exactly: compared with ==.
            let got: Vec<f64> = m.features(modality).unwrap().iter().map(|&x| x as f64).collect();
            let want: Vec<f64> = w["features"][key]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            assert_eq!(got, want, "{id} {key}");
        }
        let left_out: Vec<usize> = tree.left_out(scene318::SCENESEG_WINDOW);
        assert_eq!(
            left_out.iter().map(|&s| s as i64).collect::<Vec<_>>(),
            ints(&w["left_out"]),
            "{id}"
        );
        // The path that stands for the movie reads the same through Movie::load.
        let again = Movie::load(&scene318::movie_path(&root(), id), &Schema::any()).unwrap();
        assert_eq!(again.shot_end_frame, m.shot_end_frame);
        assert_eq!(again.features, m.features);
    }
}

#[test]
fn info_takes_a_scene318_root_and_reports_what_is_left_out() {
    let out = lgss().args(["info", "--json"]).arg(root()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let want = expected();
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for info in &lines {
        let id = info["imdb_id"].as_str().unwrap();
        let w = &want["movies"][id];
        assert_eq!(info["shots"], w["n_shots"], "{id}");
        assert_eq!(
            info["left_out"].as_u64().unwrap() as usize,
            w["left_out"].as_array().unwrap().len(),
            "{id}"
        );
    }
}

/// A copy of the fixture tree to break.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

#[test]
fn bad_scene318_files_are_refused_by_name() {
    let dir = tempdir("scene318-bad");
    let canary = dir.join("canary");
    // (file under the tree, new contents, what the error must say)
    // os.system("touch canary") as a pickle.
    let mut evil = b"\x80\x04cos\nsystem\n(Vtouch ".to_vec();
    evil.extend(canary.to_str().unwrap().as_bytes());
    evil.extend(b"\ntR.");
    // A place vector saved big-endian: its header says '>f8'.
    let mut big_endian = std::fs::read(root().join("place_feat/tt0100001/shot_0003.npy")).unwrap();
    let at = big_endian.windows(3).position(|w| w == b"'<f").unwrap();
    big_endian[at + 1] = b'>';
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "label318/tt0100001.txt",
            b"0000 0\n0001 2\n".to_vec(),
            "label 2 is not 0, 1 or -1",
        ),
        (
            "label318/tt0100001.txt",
            b"0000 0\n0000 1\n".to_vec(),
            "labelled twice",
        ),
        (
            "label318/tt0100001.txt",
            b"0099 1\n".to_vec(),
            "past the movie's 24 shots",
        ),
        (
            "shot_movie318/tt0100001.txt",
            b"0 10\n5 20\n".to_vec(),
            "do not follow",
        ),
        ("shot_movie318/tt0100001.txt", b"0 x\n".to_vec(), "line 1"),
        ("place_feat/tt0100001/shot_0003.npy", big_endian, "dtype >f8"),
        (
            "aud_feat/tt0100001/shot_0099.npy",
            std::fs::read(root().join("aud_feat/tt0100001/shot_0001.npy")).unwrap(),
            "shot 99 is past",
        ),
        ("cast_feat/tt0100001.pkl", evil, "refuses global os.system"),
        (
            "act_feat/tt0100001.pkl",
            b"\x80\x04]\x94.".to_vec(),
            "expected a dict",
        ),
    ];
    for (k, (file, bytes, needle)) in cases.into_iter().enumerate() {
        let tree = dir.join(format!("tree{k}"));
        copy_tree(&root(), &tree);
        std::fs::write(tree.join(file), bytes).unwrap();
        let out = lgss().arg("info").arg(&tree).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{file}: accepted");
        let named = Path::new(file).file_name().unwrap().to_str().unwrap();
        assert!(err.contains(named) && err.contains(needle), "{file}: {err}");
    }
    assert!(!canary.exists(), "a pickle ran code");

    let tree = dir.join("split");
    copy_tree(&root(), &tree);
    std::fs::write(
        tree.join("meta/split318.json"),
        r#"{"train": ["../../etc"], "val": [], "test": []}"#,
    )
    .unwrap();
    let out = lgss().arg("info").arg(&tree).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("split318.json") && err.contains("not a plain name"),
        "{err}"
    );
}

/// The per-movie AP keys of a run's test scores: the movies it tested on.
fn tested_movies(run: &Path) -> Vec<String> {
    let scores: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("test_metrics.json")).unwrap()).unwrap();
    let mut ids: Vec<String> = scores["AP_dict"].as_object().unwrap().keys().cloned().collect();
    ids.sort();
    ids
}

/// `--split FILE` trains, validates and tests on the movies it names (a
/// movie it does not list is not used), validating on whole movies; a
/// listed movie without a file is an error naming both.
#[test]
fn train_takes_a_split_file_for_a_folder_of_pickles() {
    let dir = tempdir("scene318-split");
    let data = crate::common::synth_small(&dir, 7, 5, Some((40, 80)));
    let ids: Vec<String> = (0..7).map(lgss::data::synth::imdb_id).collect();
    let split = dir.join("split.json");
    let write_split = |test: &[&str]| {
        let json = serde_json::json!({
            "train": [&ids[0], &ids[3], &ids[5]],
            "val": [&ids[1]],
            "test": test,
        });
        std::fs::write(&split, json.to_string()).unwrap();
    };
    write_split(&[&ids[2], &ids[4]]);
    let run = dir.join("run");
    let out = crate::common::train_small(&data, &run, 1)
        .arg("--split")
        .arg(&split)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("training models/lgss-small.toml on 6 movies"),
        "{err}"
    );
    assert!(
        err.contains("global grouping on the 1 validation movies"),
        "{err}"
    );
    assert_eq!(tested_movies(&run), [ids[2].clone(), ids[4].clone()]);

    write_split(&["tt9999999"]);
    let out = crate::common::train_small(&data, &dir.join("run2"), 1)
        .arg("--split")
        .arg(&split)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("split.json") && err.contains("tt9999999"),
        "{err}"
    );
}

/// lgss-small's config at the fixture tree's feature widths.
fn tiny_config(dir: &Path) -> PathBuf {
    let mut config =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/lgss-small.toml"))
            .unwrap();
    config = config.replace(
        "feature_dims = { place = 64, cast = 32, action = 32, audio = 32 }",
        "feature_dims = { place = 6, cast = 4, action = 4, audio = 4 }",
    );
    assert!(config.contains("place = 6"));
    let toml = dir.join("tiny.toml");
    std::fs::write(&toml, config).unwrap();
    toml
}

/// `lgss train` of the tree at `data` for `epochs` epochs into `run`: its stderr.
fn train_tree(data: &Path, toml: &Path, run: &Path, epochs: usize) -> String {
    let out = lgss()
        .args([
            "train",
            "--device",
            "cpu",
            "--epochs",
            &epochs.to_string(),
            "--config",
        ])
        .arg(toml)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(run)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

/// A scene318 root trains by its own `meta/split318.json` (test: the
/// split's test movie), and the exported model segments the tree.
#[test]
fn a_scene318_root_trains_by_its_split_and_segments() {
    let dir = tempdir("scene318-train");
    let toml = tiny_config(&dir);
    let run = dir.join("run");
    let err = train_tree(&root(), &toml, &run, 1);
    assert!(err.contains("on 3 movies"), "{err}");
    assert_eq!(tested_movies(&run), ["tt0100002"]);
    // train's test scores by SceneSeg's metrics too: its AP pools the same
    // kept boundaries as the challenge's (the threshold's calibration is
    // monotone, so the order, and AP, is the model's own).
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(run.join(f)).unwrap()).unwrap()
    };
    let (paper, challenge) = (read("test_metrics_sceneseg.json"), read("test_metrics.json"));
    crate::common::assert_close(
        "test AP",
        paper["AP"].as_f64().unwrap(),
        challenge["AP"].as_f64().unwrap(),
        1e-12,
    );
    for key in ["mAP", "Recall", "Recall_time"] {
        assert!(
            (0.0..=1.0).contains(&paper[key].as_f64().unwrap()),
            "{key}: {paper}"
        );
    }

    let onnx = dir.join("model.onnx");
    crate::common::export_onnx(&run.join("best.safetensors"), &onnx);
    let seg = dir.join("seg");
    let out = lgss()
        .args(["segment", "--runtime", "tract", "--model"])
        .arg(&onnx)
        .arg("--out")
        .arg(&seg)
        .arg(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // `eval` scores the tree against those predictions, each movie's AP
    // over the boundaries SceneSeg keeps (expected.json's port of its rule).
    let out = lgss()
        .args(["eval", "--json", "--metrics", "all", "--pred"])
        .arg(&seg)
        .arg(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let scores: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The paper's metrics beside the challenge's: both pool the same kept
    // boundaries' float32 probabilities into AP.
    let paper = &scores["sceneseg"];
    assert_eq!(paper["AP"], scores["AP"], "{paper}");
    for key in ["mAP", "Recall", "Recall_time"] {
        assert!(
            (0.0..=1.0).contains(&paper[key].as_f64().unwrap()),
            "{key}: {paper}"
        );
    }
    for (id, w) in expected()["movies"].as_object().unwrap() {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(seg.join(format!("{id}.json"))).unwrap()).unwrap();
        assert_eq!(json["imdb_id"], *id);
        let p: Vec<f64> = json["boundary_probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(p.len() as u64, w["n_shots"].as_u64().unwrap() - 1);
        let left_out = ints(&w["left_out"]);
        let gt = w["ground_truth"].as_array().unwrap();
        let kept: Vec<usize> = (0..p.len())
            .filter(|b| !left_out.contains(&(*b as i64)))
            .collect();
        let ap = lgss::metrics::average_precision(
            &kept.iter().map(|&b| gt[b].as_bool().unwrap()).collect::<Vec<_>>(),
            &kept.iter().map(|&b| p[b]).collect::<Vec<_>>(),
        );
        let got = scores["AP_dict"][id].as_f64().unwrap();
        crate::common::assert_close(id, got, ap, 1e-12);
    }
}

/// Boundaries SceneSeg leaves out never reach the loss: flipping their
/// labels in the training movie trains the same weights to the bit, while
/// flipping one kept boundary's label does not.
#[test]
fn left_out_boundaries_are_not_learned_from() {
    let dir = tempdir("scene318-left-out");
    let toml = tiny_config(&dir);
    let weights = |tree: &Path, name: &str| {
        let run = dir.join(name);
        train_tree(tree, &toml, &run, 2);
        lgss::model::checkpoint::Checkpoint::load(&run.join("last.safetensors"))
            .unwrap()
            .tensors
    };
    let flipped = |name: &str, shots: &[usize]| {
        let tree = dir.join(name);
        copy_tree(&root(), &tree);
        let file = tree.join("label318/tt0100001.txt");
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                let (shot, label) = l.split_once(' ').unwrap();
                let flip = shots.contains(&shot.parse().unwrap());
                let label = if !flip {
                    label
                } else if label == "0" {
                    "1"
                } else {
                    "0"
                };
                format!("{shot} {label}")
            })
            .collect();
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        tree
    };
    let left_out: Vec<usize> = ints(&expected()["movies"]["tt0100001"]["left_out"])
        .into_iter()
        .map(|s| s as usize)
        .collect();
    assert!(left_out.len() > 5);
    let base = weights(&root(), "base");
    let same = weights(&flipped("left-out", &left_out), "left-out");
    let kept = (0..23).find(|b| !left_out.contains(b)).unwrap();
    let other = weights(&flipped("kept", &[kept]), "kept");
    assert_eq!(base.len(), same.len());
    for (name, t) in &base {
        assert!(t == &same[name], "{name} changed with left-out labels");
    }
    assert!(
        base.iter().any(|(name, t)| t != &other[name]),
        "a kept label changed nothing"
    );
}

/// The same synthetic movies as MovieScenes pickles and as a scene318 tree
/// (`lgss synth --layout`), trained under the same split, give the same
/// weights and the same test scores to the bit.
#[test]
fn the_same_movies_as_pickles_and_as_a_tree_train_identically() {
    let dir = tempdir("scene318-same");
    let synth = |layout: &str, out: &Path| {
        let run = lgss()
            .args([
                "synth", "--size", "small", "--shots", "40..80", "--movies", "6", "--seed", "9", "--layout",
                layout, "--out",
            ])
            .arg(out)
            .output()
            .unwrap();
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    };
    let (pickles, tree) = (dir.join("pickles"), dir.join("tree"));
    synth("pickle", &pickles);
    synth("scene318", &tree);
    let (a, b) = (dir.join("run-pickles"), dir.join("run-tree"));
    let out = crate::common::train_small(&pickles, &a, 2)
        .arg("--split")
        .arg(tree.join("meta/split318.json"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = crate::common::train_small(&tree, &b, 2).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let weights = |run: &Path| {
        lgss::model::checkpoint::Checkpoint::load(&run.join("last.safetensors"))
            .unwrap()
            .tensors
    };
    assert_eq!(weights(&a), weights(&b));
    for scores in [
        "test_metrics.json",
        "test_metrics_global.json",
        "test_metrics_sceneseg.json",
        "metrics.jsonl",
    ] {
        let read = |run: &Path| std::fs::read_to_string(run.join(scores)).unwrap();
        if scores == "metrics.jsonl" {
            // Epoch lines hold wall-clock speeds; compare the rest.
            let strip = |text: String| -> Vec<serde_json::Value> {
                text.lines()
                    .map(|l| {
                        let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                        let o = v.as_object_mut().unwrap();
                        o.retain(|k, _| {
                            !k.contains("per_s") && !k.contains("seconds") && !k.contains("time")
                        });
                        v
                    })
                    .collect()
            };
            assert_eq!(strip(read(&a)), strip(read(&b)));
        } else {
            assert_eq!(read(&a), read(&b), "{scores}");
        }
    }
}
