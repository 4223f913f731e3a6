//! Hostile and huge inputs (each case reproduces a finding of the attack on
//! commit a654f63): no panic, no blow-up, no escape from `--out`, and valid
//! files that were refused are read as Python reads them.

use std::path::Path;
use std::process::Command;

use lgss::data::movie::Movie;
use lgss::data::pickle::{self, PickleError, Value};
use lgss::data::pickle_write::write_movie;
use lgss::data::synth::{self, SynthSpec};

use crate::common::{fixtures, lgss, tempdir};

/// Valid files Python reads (written by tests/fixtures/make_regress.py with
/// real numpy and torch): a memo'd numpy array under two keys (protocols 2
/// and 4), an empty numpy array at protocol 2, a zero-element tensor whose
/// offset lies past its storage (it panicked the reader).
#[test]
fn valid_files_once_refused_read_as_python_reads_them() {
    let dir = fixtures().join("regress");
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("README.json")).unwrap()).unwrap();
    for (file, case) in want.as_object().unwrap() {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let Value::Dict(d) = pickle::load(&bytes).unwrap_or_else(|e| panic!("{file}: {e}")) else {
            panic!("{file}: not a dict");
        };
        let d = d.borrow();
        assert_eq!(d.len(), case["shapes"].as_object().unwrap().len(), "{file}");
        for (k, v) in d.iter() {
            let (Value::Str(key), Value::Tensor(t)) = (k, v) else {
                panic!("{file}: {k:?} -> {}", v.kind());
            };
            let shape: Vec<usize> = case["shapes"][*key]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(t.shape(), shape.as_slice(), "{file} {key}");
            let sum: f64 = t.to_f64().iter().sum();
            assert_eq!(sum, case["sums"][*key].as_f64().unwrap(), "{file} {key}");
        }
    }
}

/// `_codecs.encode` over one memoised 1 MB string, 40,000 times: each copy
/// is charged, so the file is refused instead of allocating ~40 GB.
#[test]
fn repeated_decoding_of_a_memoised_string_is_refused() {
    let mut p = vec![0x80, 2, b'X'];
    let text = vec![b'a'; 1 << 20];
    p.extend_from_slice(&(text.len() as u32).to_le_bytes());
    p.extend_from_slice(&text);
    p.extend_from_slice(b"q\x00");
    for _ in 0..40_000 {
        p.extend_from_slice(b"c_codecs\nencode\nh\x00X\x06\x00\x00\x00latin1\x86R0");
    }
    p.extend_from_slice(b"N.");
    assert!(
        matches!(pickle::load(&p), Err(PickleError::TooLarge(_))),
        "{:?}",
        pickle::load(&p).map(|v| v.kind())
    );
}

/// 150,000 SETITEMs of distinct keys (a 2.5 MB file): linear, not
/// quadratic, and each key once.
#[test]
fn setitem_one_key_at_a_time_is_linear() {
    let mut p = vec![0x80, 2, b'}'];
    let n = 150_000;
    for i in 0..n {
        let k = format!("k{i:09}");
        p.push(0x8c);
        p.push(k.len() as u8);
        p.extend_from_slice(k.as_bytes());
        p.extend_from_slice(b"K\x01s");
    }
    // A repeated key replaces the earlier value, as in Python.
    p.extend_from_slice(b"\x8c\x0ak000000007K\x02s.");
    let Value::Dict(d) = pickle::load(&p).unwrap() else {
        panic!("not a dict")
    };
    let d = d.borrow();
    assert_eq!(d.len(), n);
    let v = d
        .iter()
        .find(|(k, _)| matches!(k, Value::Str("k000000007")))
        .map(|(_, v)| v.clone());
    assert!(matches!(v, Some(Value::Int(2))));
}

/// A refused global's name is printed escaped: no ESC, CR or NUL reaches
/// the terminal, whatever the file says.
#[test]
fn refused_names_cannot_steer_the_terminal() {
    let p = b"\x80\x02cos\x1b[2J\x1b[H\rall files OK\x00\nsystem\n.";
    let msg = pickle::load(p).unwrap_err().to_string();
    assert!(!msg.contains(['\x1b', '\r', '\0']), "{msg:?}");
    assert!(msg.contains("\\u{1b}[2J"), "{msg}");
    let dir = tempdir("hostile-ansi");
    let f = dir.join("tt1.pkl");
    std::fs::write(&f, p).unwrap();
    let out = lgss().arg("info").arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "invalid input has its own exit code");
    assert!(!out.stderr.contains(&0x1b));
}

/// A movie for the fixture model (widths 64/32/32/32) with `shots` shots.
fn small_movie(seed: u64, shots: usize) -> Movie {
    synth::movie(
        seed,
        0,
        &SynthSpec {
            min_shots: shots,
            max_shots: shots,
            ..SynthSpec::small()
        },
    )
}

/// A 10^5-shot movie (a TV season) is read, scored and segmented: Miou in
/// memory linear in shots (the script's table would need 10^10 cells).
#[test]
fn a_hundred_thousand_shots_work_in_info_eval_and_segment() {
    let dir = tempdir("hostile-huge");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut m = small_movie(5, 100_000);
    let n = m.n_shots();
    assert_eq!(n, 100_000);
    // A prediction that cuts often, so both scene lists are long.
    m.prediction = Some((0..n - 1).map(|i| ((i * 7919) % 13) as f64 / 12.0).collect());
    write_movie(&data.join(format!("{}.pkl", m.imdb_id)), &m).unwrap();
    for args in [vec!["info"], vec!["eval", "--json"]] {
        let out = lgss().args(&args).arg(&data).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (ck, onnx) = crate::runtimes::fixture_model_files(&dir);
    let out = lgss()
        .args([
            "segment",
            "--runtime",
            "ort-cpu",
            "--format",
            "csv",
            "--batch",
            "256",
            "--model",
        ])
        .arg(&onnx)
        .arg("--checkpoint")
        .arg(&ck)
        .arg("--out")
        .arg(dir.join("seg"))
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = std::fs::read_to_string(dir.join("seg").join(format!("{}.csv", m.imdb_id))).unwrap();
    let last = csv.lines().last().unwrap();
    assert!(
        last.contains(",99999,"),
        "the last scene ends at the last shot: {last}"
    );
    // The movie is 64 MB: do not leave it behind.
    let _ = std::fs::remove_dir_all(&dir);
}

fn segment(dir: &Path, out: &Path, inputs: &[&Path]) -> std::process::Output {
    let (ck, onnx) = crate::runtimes::fixture_model_files(dir);
    let mut c = lgss();
    c.args(["segment", "--runtime", "tract", "--write-pkl", "--model"])
        .arg(&onnx)
        .arg("--checkpoint")
        .arg(&ck)
        .arg("--out")
        .arg(out)
        .args(inputs);
    c.output().unwrap()
}

/// Output names come from the file's stem, never from its imdb_id, so no
/// id can send them out of `--out`; the real ids are unchanged.
#[test]
fn outputs_never_leave_the_output_folder() {
    let dir = tempdir("hostile-out");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let outside = dir.join("x.json");
    let abs = dir.join("abs");
    let ids = [
        "../x".to_string(),
        format!("{}", abs.display()),
        "tt0000042".into(),
    ];
    for (i, id) in ids.iter().enumerate() {
        let mut m = small_movie(i as u64, 20);
        m.imdb_id = id.clone();
        write_movie(&data.join(format!("tt{i}.pkl")), &m).unwrap();
    }
    let out_dir = dir.join("out");
    let out = segment(&dir, &out_dir, &[&data]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!outside.exists() && !abs.with_extension("json").exists());
    let mut names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    // Named after the files, whatever their ids say; one manifest entry each.
    let want: Vec<String> = [
        "manifest", "tt0.json", "tt0.pkl", "tt1.json", "tt1.pkl", "tt2.json", "tt2.pkl",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(names, want);
    assert_eq!(std::fs::read_dir(out_dir.join("manifest")).unwrap().count(), 3);
    assert!(String::from_utf8_lossy(&out.stderr).contains("differs from the file name"));
}

/// One bad movie does not stop a folder: every good one is written, the
/// bad one named, and the exit code says "invalid input" (3). `eval` stays
/// all-or-nothing but names both files that share an id.
#[test]
fn bad_movies_are_reported_and_the_rest_segmented() {
    let dir = tempdir("hostile-dir");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..3 {
        let mut m = small_movie(10 + i, 25);
        m.imdb_id = format!("tt000000{i}");
        write_movie(&data.join(format!("tt000000{i}.pkl")), &m).unwrap();
    }
    std::fs::copy(fixtures().join("bad/nan_place.pkl"), data.join("tt0000001b.pkl")).unwrap();
    let out_dir = dir.join("out");
    let out = segment(&dir, &out_dir, &[&data]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("tt0000001b.pkl") && err.contains("1 of 4 movies failed"),
        "{err}"
    );
    let json = std::fs::read_dir(&out_dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count();
    assert_eq!(json, 3);

    // Two files, one imdb_id.
    let twin = dir.join("twin");
    std::fs::create_dir_all(&twin).unwrap();
    let mut m = small_movie(1, 12);
    m.prediction = Some(vec![0.5; 11]);
    m.imdb_id = "tt0000777".into();
    write_movie(&twin.join("tt1.pkl"), &m).unwrap();
    write_movie(&twin.join("tt2.pkl"), &m).unwrap();
    let out = lgss().arg("eval").arg(&twin).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("tt1.pkl") && err.contains("tt2.pkl") && err.contains("tt0000777"),
        "{err}"
    );
}

/// Temp files of killed runs are removed by the next write into their
/// folder (dead process on this host, or untouched for over an hour);
/// a live process's stays.
#[test]
fn stale_temp_files_are_cleaned_up() {
    let dir = tempdir("hostile-tmp");
    let host = lgss::fsutil::host();
    // A pid that is not running: above the kernel's pid_max.
    let dead = dir.join(format!(".tt0000001.pkl.{host}.4194305.0.tmp"));
    let live = dir.join(format!(".tt0000002.pkl.{host}.{}.0.tmp", std::process::id()));
    let old = dir.join(".tt0000003.pkl.elsewhere.77.0.tmp");
    let fresh_elsewhere = dir.join(".tt0000004.pkl.elsewhere.78.0.tmp");
    for f in [&dead, &live, &old, &fresh_elsewhere] {
        std::fs::write(f, b"partial").unwrap();
    }
    let hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(hours_ago)
        .unwrap();
    let out = lgss()
        .args([
            "synth", "--size", "small", "--movies", "1", "--shots", "10..12", "--out",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dead.exists(), "a dead process's temp file stays");
    assert!(!old.exists(), "an hour-old temp file stays");
    assert!(live.exists(), "a live process's temp file was removed");
    assert!(
        fresh_elsewhere.exists(),
        "another host's fresh temp file was removed"
    );
}

/// Printing into a closed pipe ends quietly, as Unix tools do, instead of
/// a panic.
#[test]
fn a_closed_pipe_is_not_a_panic() {
    let dir = tempdir("hostile-pipe");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    for i in 0..3 {
        write_movie(&data.join(format!("tt000000{i}.pkl")), &small_movie(i, 400)).unwrap();
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "'{}' info {} | head -c 10 >/dev/null; echo \"${{PIPESTATUS[0]}}\"",
            env!("CARGO_BIN_EXE_lgss"),
            data.display()
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

/// A checkpoint that does not fit its config is an error naming the
/// weight, not an out-of-bounds panic.
#[test]
fn export_checks_weight_shapes() {
    let dir = tempdir("hostile-export");
    let (ck, _) = crate::runtimes::fixture_model_files(&dir);
    let mut c = lgss::model::checkpoint::Checkpoint::load(&ck).unwrap();
    let w = c.tch("bnet_place.fc1.weight").unwrap().narrow(0, 0, 50).copy();
    c.insert_tch("bnet_place.fc1.weight", &w).unwrap();
    let bad = dir.join("bad.safetensors");
    c.save(&bad).unwrap();
    let out = lgss()
        .args(["export", "--onnx"])
        .arg(dir.join("x.onnx"))
        .arg("--checkpoint")
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
    assert!(
        err.contains("bnet_place.fc1.weight") && err.contains("shape"),
        "{err}"
    );
    assert!(!dir.join("x.onnx").exists());
}

/// Resuming a run whose metrics.jsonl was damaged is an error naming the
/// line, not a silent rewrite that drops epochs.
#[test]
fn resume_refuses_a_damaged_log() {
    let dir = tempdir("hostile-resume");
    let data = dir.join("data");
    let size = SynthSpec {
        min_shots: 30,
        max_shots: 40,
        ..SynthSpec::small()
    };
    synth::write_dataset(&data, 4, 6, &size, &|| {}).unwrap();
    let run = dir.join("run");
    let out = crate::common::train_small(&data, &run, 1).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log = run.join("metrics.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("{not json\n");
    std::fs::write(&log, &text).unwrap();
    let out = crate::common::train_small(&data, &run, 1)
        .arg("--resume")
        .arg(run.join("last.safetensors"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("metrics.jsonl: line 2"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        text,
        "the log was rewritten"
    );
}
