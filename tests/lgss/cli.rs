use std::path::Path;

use crate::common::{assert_close, expected, fixtures, lgss, tempdir};

#[test]
fn eval_json_matches_the_script() {
    let out = lgss()
        .args(["eval", "--json"])
        .arg(fixtures().join("movies"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = &expected()["scores_movies_dir"];
    for key in ["AP", "mAP", "Miou", "Precision", "Recall", "F1"] {
        assert_close(key, got[key].as_f64().unwrap(), want[key].as_f64().unwrap(), 1e-9);
    }
    for (id, v) in want["AP_dict"].as_object().unwrap() {
        assert_close(
            id,
            got["AP_dict"][id].as_f64().unwrap(),
            v.as_f64().unwrap(),
            1e-9,
        );
    }
}

#[test]
fn eval_with_predictions_from_another_dir() {
    // Predictions from numpy-written files scored against torch-written truth:
    // here the same movies, so the result equals the movies' own scores.
    let dir = tempdir("pred");
    for id in ["tt0000011", "tt0000012", "tt0000013"] {
        std::fs::copy(
            fixtures().join(format!("movies/{id}.pkl")),
            dir.join(format!("{id}.pkl")),
        )
        .unwrap();
    }
    let out = lgss()
        .args(["eval", "--json", "--pred"])
        .arg(&dir)
        .arg(fixtures().join("movies"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_close(
        "AP",
        got["AP"].as_f64().unwrap(),
        expected()["scores_movies_dir"]["AP"].as_f64().unwrap(),
        1e-9,
    );
}

#[test]
fn bad_input_exits_nonzero_naming_the_file() {
    let bad = fixtures().join("bad/rows_mismatch.pkl");
    let out = lgss().args(["info"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rows_mismatch.pkl") && err.contains("cast has"),
        "{err}"
    );
    let out = lgss()
        .args(["eval"])
        .arg(fixtures().join("bad"))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn synth_then_info_and_eval() {
    let dir = tempdir("cli-synth");
    let out = lgss()
        .args([
            "synth", "--movies", "2", "--seed", "1", "--size", "small", "--shots", "40..60", "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info = lgss()
        .args(["info", "--json"])
        .arg(dir.join("tt0000001.pkl"))
        .output()
        .unwrap();
    assert!(info.status.success());
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let shots = v["shots"].as_u64().unwrap();
    assert!((40..=60).contains(&shots), "{shots}");
    assert_eq!(v["features"].as_array().unwrap().len(), 4);
    let eval = lgss().arg("eval").arg(&dir).output().unwrap();
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    assert!(String::from_utf8_lossy(&eval.stdout).contains("tt0000002"));
}

#[test]
fn doctor_loads_onnx_runtime_or_says_why() {
    let out = lgss().arg("doctor").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1.31"));
    let out = lgss().args(["doctor", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["features"], serde_json::json!(["tch", "ort", "tract"]));
    assert!(
        report["onnxruntime"]["lib"]
            .as_str()
            .unwrap()
            .ends_with("libonnxruntime.so.1.31.1"),
        "{report}"
    );
    assert_eq!(report["libtorch"]["cuda_available"], tch::Cuda::is_available());
    let out = lgss()
        .args(["doctor", "--ort-lib", "/nonexistent/libonnxruntime.so"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/libonnxruntime.so"));
}

/// `scripts/gpu-check` runs to its end without a GPU: the CUDA steps are
/// skipped with a clear reason and the CPU rehearsal passes.
#[test]
fn gpu_check_rehearses_on_a_cpu() {
    if tch::Cuda::is_available() {
        return; // with a device it runs for real (minutes): not a unit test
    }
    let dir = tempdir("gpu-check");
    let out = std::process::Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gpu-check"))
        .arg(&dir)
        .env("LGSS_BIN", env!("CARGO_BIN_EXE_lgss"))
        .env("LGSS_GPU_EPOCHS", "1")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("| skip | no CUDA device"), "{table}");
    for step in ["segment --runtime tract", "verify tch,ort-cpu,tract"] {
        assert!(
            table.lines().any(|l| l.contains(step) && l.contains("| ok ")),
            "{step}: {table}"
        );
    }
    assert!(dir.join("gpu-check.md").exists());
}

/// The card's three commands as users type them, in a workspace with its
/// own (small) lgss.toml: `lgss train`, `lgss export --onnx`,
/// `lgss segment movie.pkl`; and the errors that say what to run first.
#[test]
fn the_three_commands_run_as_typed_in_a_workspace() {
    let ws = tempdir("workspace");
    let run = |args: &[&str]| {
        let out = lgss()
            .args(args)
            .current_dir(&ws)
            .env_remove("LGSS_WORKSPACE")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = run(&["train"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("data/movies") && err.contains("lgss synth --out"),
        "{err}"
    );
    let (code, _, err) = run(&["segment", "movie.pkl"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("lgss export --onnx"), "{err}");

    let (code, _, err) = run(&[
        "synth",
        "--out",
        "data/movies",
        "--movies",
        "6",
        "--seed",
        "1",
        "--size",
        "small",
        "--shots",
        "40..70",
    ]);
    assert_eq!(code, Some(0), "{err}");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/lgss-small.toml"),
        ws.join("lgss.toml"),
    )
    .unwrap();
    let (code, _, err) = run(&["train", "--epochs", "1", "--device", "cpu"]);
    assert_eq!(code, Some(0), "{err}");
    let latest = ws.join("runs/latest");
    assert!(
        latest.join("best.safetensors").exists(),
        "runs/latest points at the run"
    );
    let first = std::fs::read_link(&latest).unwrap();
    let (code, _, err) = run(&["export", "--onnx"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(latest.join("model.onnx").exists(), "{err}");
    let (code, out, err) = run(&["segment", "data/movies/tt0000006.pkl"]);
    assert_eq!(code, Some(0), "{err}");
    let seg: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(seg["imdb_id"], "tt0000006");
    assert_eq!(seg["runtime"], "ort-cpu", "the best CPU runtime built");
    let (code, _, err) = run(&["segment", "--runtime", "tract", "data/movies/tt0000001.pkl"]);
    assert_eq!(code, Some(0), "{err}");

    // A second run moves runs/latest; --workspace and LGSS_WORKSPACE reach it from elsewhere.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, out, err) = run(&["train", "--epochs", "1", "--device", "cpu", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_ne!(std::fs::read_link(&latest).unwrap(), first);
    // --json: the run's summary on stdout, nothing else.
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["epochs_done"], 1);
    assert_eq!(summary["interrupted"], false);
    assert_eq!(
        ws.join(summary["run"].as_str().unwrap()).canonicalize().unwrap(),
        latest.canonicalize().unwrap()
    );
    let ap = summary["test"]["AP"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&ap), "{summary}");
    let elsewhere = lgss()
        .args(["--workspace"])
        .arg(&ws)
        .args(["export", "--onnx"])
        .output()
        .unwrap();
    assert!(
        elsewhere.status.success(),
        "{}",
        String::from_utf8_lossy(&elsewhere.stderr)
    );
    let via_env = lgss()
        .args(["segment", "--runtime", "tract"])
        .arg(ws.join("data/movies/tt0000002.pkl"))
        .env("LGSS_WORKSPACE", &ws)
        .output()
        .unwrap();
    assert!(
        via_env.status.success(),
        "{}",
        String::from_utf8_lossy(&via_env.stderr)
    );
}

/// `lgss completions bash`, loaded into a real bash, completes
/// subcommands, flags and the choices of value-enum flags.
#[test]
fn bash_completion_completes_flags_and_choices() {
    let script = lgss().args(["completions", "bash"]).output().unwrap();
    assert!(script.status.success());
    let dir = tempdir("completions");
    let file = dir.join("lgss.bash");
    std::fs::write(&file, &script.stdout).unwrap();
    let complete = |words: &str| {
        let probe = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _lgss lgss \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             echo \"${{COMPREPLY[@]}}\"",
            file.display()
        );
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(probe)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(complete("lgss seg"), "segment");
    assert_eq!(complete("lgss segment --sha"), "--shard");
    assert_eq!(
        complete("lgss segment --runtime \"\""),
        "tch tch-cuda ort-cpu ort-cuda tract"
    );
    assert_eq!(complete("lgss synth --size \"\""), "full small");
    assert_eq!(complete("lgss train --device \"\""), "auto cuda cpu");
    for shell in ["zsh", "fish"] {
        let out = lgss().args(["completions", shell]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("skip-done") && text.contains("ort-cuda"),
            "{shell}"
        );
    }
}

/// `eval --pred` reads `lgss segment`'s JSON outputs: the fixture movies' own
/// predictions written in that format by Python score exactly as the
/// challenge script scored them; and a real `segment --out` folder scores as
/// the same run's `--write-pkl` movies do.
#[test]
fn eval_reads_segment_json_predictions() {
    let dir = tempdir("pred-json");
    let json_dir = dir.join("json");
    std::fs::create_dir_all(&json_dir).unwrap();
    crate::common::run_python(
        "import glob, json, os, pickle, sys, torch
for f in sorted(glob.glob(os.path.join(sys.argv[1], 'tt*.pkl'))):
    d = pickle.load(open(f, 'rb'))
    p = d['scene_transition_boundary_prediction'].double().tolist()
    out = {'imdb_id': d['imdb_id'], 'boundary_probabilities': p, 'scenes': []}
    json.dump(out, open(os.path.join(sys.argv[2], d['imdb_id'] + '.json'), 'w'))",
        &[&fixtures().join("movies"), &json_dir],
    );
    let eval_on = |pred: &Path, truth: &Path| {
        let out = lgss()
            .args(["eval", "--json", "--pred"])
            .arg(pred)
            .arg(truth)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let got = eval_on(&json_dir, &fixtures().join("movies"));
    for key in ["AP", "mAP", "Miou"] {
        assert_close(
            key,
            got[key].as_f64().unwrap(),
            expected()["scores_movies_dir"][key].as_f64().unwrap(),
            1e-9,
        );
    }

    let (_, onnx) = crate::runtimes::fixture_model_files(&dir);
    let data = crate::common::synth_small(&dir, 3, 4, None);
    let seg = lgss()
        .args(["segment", "--runtime", "tract", "--write-pkl", "--model"])
        .arg(&onnx)
        .arg("--out")
        .arg(dir.join("seg"))
        .arg(&data)
        .output()
        .unwrap();
    assert!(seg.status.success(), "{}", String::from_utf8_lossy(&seg.stderr));
    let pkl_dir = dir.join("pkl");
    std::fs::create_dir_all(&pkl_dir).unwrap();
    let json_dir = dir.join("seg-json");
    std::fs::create_dir_all(&json_dir).unwrap();
    for e in std::fs::read_dir(dir.join("seg")).unwrap() {
        let p = e.unwrap().path();
        match p.extension().and_then(|x| x.to_str()) {
            Some("pkl") => std::fs::rename(&p, pkl_dir.join(p.file_name().unwrap())).unwrap(),
            Some("json") => std::fs::rename(&p, json_dir.join(p.file_name().unwrap())).unwrap(),
            _ => {}
        }
    }
    assert_eq!(eval_on(&json_dir, &data), eval_on(&pkl_dir, &data));

    // A file that is not a segment output is named with the problem.
    std::fs::write(json_dir.join("notes.json"), b"{\"imdb_id\": \"tt1\"}").unwrap();
    let out = lgss()
        .args(["eval", "--pred"])
        .arg(&json_dir)
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("notes.json") && err.contains("boundary_probabilities"),
        "{err}"
    );
}

/// The palette band rows of a decoded timeline: for each pixel row, the
/// number of runs of solid palette colours (neighbouring scenes differ).
fn band_runs(png_bytes: &[u8]) -> (u32, u32, Vec<usize>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let (w, h) = (info.width, info.height);
    let palette: Vec<[u8; 3]> = lgss::timeline::PALETTE.iter().map(|c| [c.0, c.1, c.2]).collect();
    let runs = (0..h as usize)
        .map(|y| {
            let row = &buf[y * info.line_size..][..w as usize * 3];
            let mut runs = 0;
            let mut last = None;
            for px in row.chunks(3) {
                let idx = palette.iter().position(|c| c == px);
                if idx.is_some() && idx != last {
                    runs += 1;
                }
                last = idx;
            }
            runs
        })
        .collect();
    (w, h, runs)
}

/// `segment --plot` draws one timeline per movie: wide enough, with the
/// predicted scenes as a row of bands (as many as the JSON output says)
/// and the ground-truth scenes beneath (as many as Python counts in the
/// pickle). Without --out the pictures go to the workspace's plots/.
#[test]
fn segment_plot_draws_predicted_and_true_scenes() {
    let dir = tempdir("plot");
    let (_, onnx) = crate::runtimes::fixture_model_files(&dir);
    let data = crate::common::synth_small(&dir, 2, 9, Some((60, 90)));
    let out = dir.join("out");
    // A threshold that cuts often, so the predicted row has many bands.
    let seg = lgss()
        .args([
            "segment",
            "--runtime",
            "tract",
            "--plot",
            "--threshold",
            "0.3",
            "--model",
        ])
        .arg(&onnx)
        .arg("--out")
        .arg(&out)
        .arg(&data)
        .output()
        .unwrap();
    assert!(seg.status.success(), "{}", String::from_utf8_lossy(&seg.stderr));
    let truth: Vec<usize> = crate::common::run_python(
        "import glob, os, pickle, sys, torch
for f in sorted(glob.glob(os.path.join(sys.argv[1], 'tt*.pkl'))):
    d = pickle.load(open(f, 'rb'))
    print(int(d['scene_transition_boundary_ground_truth'].sum()) + 1)",
        &[&data],
    )
    .lines()
    .map(|l| l.trim().parse().unwrap())
    .collect();
    for (i, stem) in ["tt0000001", "tt0000002"].iter().enumerate() {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(format!("{stem}.json"))).unwrap()).unwrap();
        let predicted = json["scenes"].as_array().unwrap().len();
        assert!(predicted > 3, "{stem}: {predicted} scenes");
        let (w, h, runs) = band_runs(&std::fs::read(out.join(format!("{stem}.png"))).unwrap());
        assert!(w >= 1600 && h >= 400, "{w}x{h}");
        // Band rows are many pixels tall: require a thick stripe of each.
        let rows_with = |n: usize| runs.iter().filter(|&&r| r == n).count();
        assert!(
            rows_with(predicted) >= 10,
            "{stem}: no band row of {predicted} predicted scenes: {runs:?}"
        );
        assert!(
            rows_with(truth[i]) >= 10,
            "{stem}: no band row of {} true scenes: {runs:?}",
            truth[i]
        );
        let entry = std::fs::read_to_string(out.join(format!("manifest/{stem}.json"))).unwrap();
        assert!(entry.contains(&format!("{stem}.png")), "{entry}");
    }

    let ws = dir.join("ws");
    let seg = lgss()
        .args(["segment", "--runtime", "tract", "--plot", "--workspace"])
        .arg(&ws)
        .arg("--model")
        .arg(&onnx)
        .arg(data.join("tt0000001.pkl"))
        .output()
        .unwrap();
    assert!(seg.status.success(), "{}", String::from_utf8_lossy(&seg.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&seg.stdout).unwrap();
    assert_eq!(printed["imdb_id"], "tt0000001");
    assert!(ws.join("plots/tt0000001.png").exists());
}

/// `lgss train` chooses a decision threshold on the validation movies and
/// stores it in the checkpoint; export carries it into the ONNX metadata;
/// `segment` uses it by default (the scenes cut where the model's
/// probability reaches it, the written probabilities rescaled so that it is
/// 0.5) and AP is unchanged by the rescaling.
#[test]
fn the_validated_threshold_travels_from_training_to_segment() {
    let dir = tempdir("threshold");
    let (data, ck, onnx) = crate::common::trained_small(&dir, 8, 31, (120, 200), 2);
    let meta = lgss::model::checkpoint::Checkpoint::load(&ck).unwrap().metadata;
    let tau: f64 = meta["decision_threshold"].parse().unwrap();
    assert!(lgss::segment::THRESHOLD_GRID.contains(&tau), "{tau}");
    // metrics.jsonl logs the same threshold for the best epoch.
    let logs: Vec<serde_json::Value> = std::fs::read_to_string(dir.join("run/metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let best = logs
        .iter()
        .max_by(|a, b| {
            a["val_AP"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["val_AP"].as_f64().unwrap())
        })
        .unwrap();
    assert_eq!(best["decision_threshold"].as_f64().unwrap(), tau);

    assert_eq!(
        lgss::runtime::onnx_meta::stored_choices_of(&onnx)
            .unwrap()
            .threshold,
        Some(tau)
    );

    let movie = data.join("tt0000008.pkl");
    // The threshold rule (`--local`): cuts exactly where the model reaches τ.
    for (rt, extra) in [
        ("tract", vec![]),
        ("tch", vec![]),
        ("tract", vec!["--threshold", "0.3"]),
    ] {
        let out = lgss()
            .args(["segment", "--local", "--runtime", rt, "--model"])
            .arg(&onnx)
            .arg("--checkpoint")
            .arg(&ck)
            .args(&extra)
            .arg(&movie)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let want_tau = if extra.is_empty() { tau } else { 0.3 };
        assert_eq!(v["threshold"].as_f64().unwrap(), want_tau, "{rt} {extra:?}");
        let written: Vec<f64> = serde_json::from_value(v["boundary_probabilities"].clone()).unwrap();
        let model: Vec<f64> = match v.get("model_probabilities") {
            Some(m) => serde_json::from_value(m.clone()).unwrap(),
            None => written.clone(),
        };
        let cuts: Vec<usize> = (0..model.len()).filter(|&b| model[b] >= want_tau).collect();
        let written_cuts: Vec<usize> = (0..written.len()).filter(|&b| written[b] >= 0.5).collect();
        assert_eq!(cuts, written_cuts);
        let starts: Vec<usize> = v["scenes"].as_array().unwrap()[1..]
            .iter()
            .map(|s| s["first_shot"].as_u64().unwrap() as usize - 1)
            .collect();
        assert_eq!(starts, cuts, "scenes start after each cut");
        // Rescaling keeps every ranking: the order of boundaries is the same.
        let mut a: Vec<usize> = (0..model.len()).collect();
        let mut b = a.clone();
        a.sort_by(|&i, &j| model[i].total_cmp(&model[j]).then(i.cmp(&j)));
        b.sort_by(|&i, &j| written[i].total_cmp(&written[j]).then(i.cmp(&j)));
        assert_eq!(a, b);
    }
}

/// `segment --profile`: every phase of the run is timed, their sum fits
/// inside the wall time, and the outputs are those of a run without it.
#[test]
fn segment_profile_times_every_phase() {
    let dir = tempdir("segment-profile");
    let (data, _ck, onnx) = crate::common::trained_small(&dir, 3, 71, (40, 80), 1);
    let run = |out: &str, extra: &[&str]| {
        let o = lgss()
            .args(["segment", "--runtime", "tract", "--json", "--out"])
            .arg(dir.join(out))
            .arg("--model")
            .arg(&onnx)
            .args(extra)
            .arg(&data)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (
            serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (plain, _) = run("plain", &[]);
    assert!(plain.get("profile").is_none(), "{plain}");
    let (summary, stderr) = run("profiled", &["--profile"]);
    let p = &summary["profile"];
    let wall = p["wall"].as_f64().unwrap();
    let mut sum = 0.0;
    for phase in [
        "model load",
        "wait for reads",
        "windows",
        "model",
        "wait for writers",
    ] {
        let s = p[phase].as_f64().unwrap_or_else(|| panic!("no {phase} in {p}"));
        assert!(s >= 0.0, "{phase}: {s}");
        sum += s;
    }
    assert!(sum <= wall, "phases {sum} s > wall {wall} s");
    assert!(p["model"].as_f64().unwrap() > 0.0);
    // Reading runs on its own thread, beside the phases above.
    let read = p["overlapped"]["read and decode"].as_f64().unwrap();
    assert!(
        read > 0.0 && read <= wall,
        "read and decode: {read} s of {wall} s"
    );
    assert!(stderr.contains("profile: 3 movies with tract"), "{stderr}");
    for f in std::fs::read_dir(dir.join("plain"))
        .unwrap()
        .map(|e| e.unwrap().path())
    {
        if f.extension().is_some_and(|e| e == "json") {
            let other = dir.join("profiled").join(f.file_name().unwrap());
            assert_eq!(
                std::fs::read(&f).unwrap(),
                std::fs::read(other).unwrap(),
                "{}",
                f.display()
            );
        }
    }
}

/// `segment DIR` with several reader threads (round robin, one bounded
/// channel each): stdout, files and the failure of a bad movie in the
/// middle are those of one reader, in the files' order.
#[test]
fn segment_with_several_readers_keeps_the_files_order() {
    let dir = tempdir("segment-readers");
    let (_, onnx) = crate::runtimes::fixture_model_files(&dir);
    let data = crate::common::synth_small(&dir, 6, 13, Some((30, 70)));
    std::fs::write(data.join("tt0000003.pkl"), b"not a pickle").unwrap();
    // To stdout, then into files.
    let run = |readers: &str| {
        let out = dir.join(format!("out-{readers}"));
        let [o, files] = [None, Some(&out)].map(|dest| {
            let mut cmd = lgss();
            cmd.args([
                "segment",
                "--runtime",
                "tract",
                "--read-threads",
                readers,
                "--model",
            ])
            .arg(&onnx);
            if let Some(d) = dest {
                cmd.arg("--out").arg(d);
            }
            cmd.arg(&data).output().unwrap()
        });
        assert_eq!(o.status.code(), files.status.code());
        (o, out)
    };
    let (one, one_dir) = run("1");
    let (three, three_dir) = run("3");
    // 3: some movies failed, the others were done.
    assert_eq!(
        one.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    assert_eq!(three.status.code(), Some(3));
    assert_eq!(one.stdout, three.stdout);
    let stdout = String::from_utf8_lossy(&three.stdout);
    let order: Vec<usize> = ["tt0000001", "tt0000002", "tt0000004", "tt0000005", "tt0000006"]
        .iter()
        .map(|stem| {
            stdout
                .find(stem)
                .unwrap_or_else(|| panic!("{stem} missing: {stdout}"))
        })
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    let stderr = String::from_utf8_lossy(&three.stderr);
    assert!(stderr.contains("tt0000003.pkl"), "{stderr}");
    for stem in ["tt0000001", "tt0000002", "tt0000004", "tt0000005", "tt0000006"] {
        let name = format!("{stem}.json");
        assert_eq!(
            std::fs::read(one_dir.join(&name)).unwrap(),
            std::fs::read(three_dir.join(&name)).unwrap(),
            "{name}"
        );
    }
    assert!(!three_dir.join("tt0000003.json").exists());
    // --allow-invalid: the same work and the same named failure, exit 0.
    let allowed_dir = dir.join("out-allowed");
    let allowed = lgss()
        .args(["segment", "--runtime", "tract", "--allow-invalid", "--model"])
        .arg(&onnx)
        .arg("--out")
        .arg(&allowed_dir)
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&allowed.stderr);
    assert_eq!(allowed.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("tt0000003.pkl") && stderr.contains("--allow-invalid"),
        "{stderr}"
    );
    for stem in ["tt0000001", "tt0000006"] {
        let name = format!("{stem}.json");
        assert_eq!(
            std::fs::read(one_dir.join(&name)).unwrap(),
            std::fs::read(allowed_dir.join(&name)).unwrap()
        );
    }
    let refused = lgss()
        .args(["segment", "--read-threads", "0"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
}
