//! Files that are not regular files in a file's place (a FIFO, `/dev/zero`
//! and `/dev/urandom` through symlinks, a directory named like a movie),
//! and split files with repeated or overlapping ids: every reader refuses
//! them at once, naming the path and what stands there, instead of
//! blocking forever or reading without end.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{fixtures, lgss, mkfifo, tempdir};

/// Far longer than any refusal takes; only a hang reaches it (a FIFO
/// without a writer blocks forever, `/dev/zero` reads until memory ends).
const HANG: Duration = Duration::from_secs(60);

/// Runs `cmd` to its end, or kills it and fails the test when it hangs.
fn run_or_hang(mut cmd: Command, what: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > HANG {
            let _ = child.kill();
            panic!("{what}: still running after {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The command fails with one line naming `path` and `what` stands there.
fn assert_refused(cmd: Command, path: &Path, what: &str) {
    let label = format!("{cmd:?}");
    let out = run_or_hang(cmd, &label);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{label}: succeeded");
    assert!(
        err.contains(&path.display().to_string()) && err.contains(what),
        "{label}: expected {} and \"{what}\" in:\n{err}",
        path.display()
    );
}

/// A copy of the scene318 fixture tree (written by real numpy and pickle).
fn tree_copy(dir: &Path) -> PathBuf {
    let root = dir.join("tree");
    copy_dir(&fixtures().join("scene318"), &root);
    root
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn info(path: &Path) -> Command {
    let mut cmd = lgss();
    cmd.arg("info").arg(path);
    cmd
}

/// A shot's `.npy`, the label file and the split of a tree, each replaced
/// by a FIFO, by a link to `/dev/zero` or `/dev/urandom`, or by a folder.
#[test]
fn a_tree_with_special_files_is_refused_at_once_by_name() {
    let dir = tempdir("special-tree");
    let cases: [(&str, &str); 4] = [
        ("place_feat/tt0100001/shot_0003.npy", "fifo"),
        ("aud_feat/tt0100003/shot_0000.npy", "/dev/zero"),
        ("place_feat/tt0100002/shot_0001.npy", "/dev/urandom"),
        ("label318/tt0100001.txt", "dir"),
    ];
    for (i, (file, kind)) in cases.iter().enumerate() {
        let root = tree_copy(&dir.join(i.to_string()));
        let path = root.join(file);
        std::fs::remove_file(&path).unwrap();
        let what = match *kind {
            "fifo" => {
                mkfifo(&path);
                "a named pipe (FIFO), not a regular file".to_string()
            }
            "dir" => {
                std::fs::create_dir(&path).unwrap();
                "a directory, not a regular file".to_string()
            }
            device => {
                std::os::unix::fs::symlink(device, &path).unwrap();
                format!("a symbolic link to a character device ({device}), not a regular file")
            }
        };
        assert_refused(info(&root), &path, &what);
        // Through the library too: train and segment read movies this way.
        let err = lgss::data::Movie::load(
            &lgss::data::scene318::movie_path(&root, "tt0100001"),
            &lgss::data::Schema::any(),
        );
        if file.contains("tt0100001") {
            let e = err.expect_err(file).to_string();
            assert!(e.contains(&what), "{e}");
        }
    }
    let root = tree_copy(&dir.join("split"));
    let split = root.join("meta/split318.json");
    std::fs::remove_file(&split).unwrap();
    mkfifo(&split);
    assert_refused(info(&root), &split, "a named pipe (FIFO)");
}

/// A folder of pickles holding a FIFO, a link to `/dev/zero`, and a
/// directory, each named like a movie; and such a file named directly.
#[test]
fn movie_names_that_are_not_files_are_refused_by_name() {
    let dir = tempdir("special-pickles");
    for (name, what) in [
        ("tt0000001.pkl", "a named pipe (FIFO)"),
        (
            "tt0000002.pkl",
            "a symbolic link to a character device (/dev/zero)",
        ),
        ("tt0000003.pkl", "a directory"),
    ] {
        let folder = dir.join(name.trim_end_matches(".pkl"));
        std::fs::create_dir_all(&folder).unwrap();
        let good = fixtures().join("movies/tt0000011.pkl");
        std::fs::copy(&good, folder.join("tt0000000.pkl")).unwrap();
        let path = folder.join(name);
        match name {
            "tt0000001.pkl" => mkfifo(&path),
            "tt0000002.pkl" => std::os::unix::fs::symlink("/dev/zero", &path).unwrap(),
            _ => std::fs::create_dir(&path).unwrap(),
        }
        assert_refused(info(&folder), &path, what);
        if !path.is_dir() {
            // (A folder named directly is a folder of movies.)
            assert_refused(info(&path), &path, what);
        }
        let mut eval = lgss();
        eval.arg("eval").arg(&folder);
        assert_refused(eval, &path, what);
    }
    // A symlink to a regular movie keeps working (trees are linked across disks).
    let linked = dir.join("linked");
    std::fs::create_dir_all(&linked).unwrap();
    std::os::unix::fs::symlink(
        fixtures().join("movies/tt0000011.pkl"),
        linked.join("tt0000001.pkl"),
    )
    .unwrap();
    let out = run_or_hang(info(&linked), "info on a symlinked movie");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Every other file a user names (config, checkpoint, ONNX model, file
/// list, token, torch checkpoint, split) as a FIFO: refused at once.
#[test]
fn every_file_a_command_reads_refuses_a_fifo() {
    let dir = tempdir("special-every");
    let fifo = dir.join("in.fifo");
    mkfifo(&fifo);
    let movie = fixtures().join("movies/tt0000011.pkl");
    let checkpoint = fixtures().join("lgss-tiny/weights.safetensors");
    let mut cases: Vec<Command> = Vec::new();
    let mut c = lgss();
    c.args(["train", "--epochs", "1", "--data"])
        .arg(fixtures().join("movies"))
        .arg("--config")
        .arg(&fifo)
        .arg("--out")
        .arg(dir.join("run"));
    cases.push(c);
    let mut c = lgss();
    c.args(["export", "--onnx"])
        .arg(dir.join("m.onnx"))
        .arg("--checkpoint")
        .arg(&fifo);
    cases.push(c);
    for runtime in ["tract", "ort-cpu"] {
        let mut c = lgss();
        c.args(["segment", "--runtime", runtime, "--model"])
            .arg(&fifo)
            .arg(&movie);
        cases.push(c);
    }
    let mut c = lgss();
    c.args(["segment", "--runtime", "tch", "--checkpoint"])
        .arg(&fifo)
        .arg(&movie);
    cases.push(c);
    let mut c = lgss();
    c.args(["segment", "--runtime", "tch", "--checkpoint"])
        .arg(&checkpoint)
        .arg("--out")
        .arg(dir.join("seg"))
        .arg("--files-from")
        .arg(&fifo);
    cases.push(c);
    let mut c = lgss();
    c.args([
        "serve",
        "--runtime",
        "tch",
        "--listen",
        "127.0.0.1:0",
        "--checkpoint",
    ])
    .arg(&checkpoint)
    .arg("--token-file")
    .arg(&fifo);
    cases.push(c);
    let mut c = lgss();
    c.arg("import-torch")
        .arg(&fifo)
        .arg("--config")
        .arg(fixtures().join("../../models/lgss-small.toml"))
        .arg("--out")
        .arg(dir.join("imported.safetensors"));
    cases.push(c);
    let mut c = lgss();
    c.args(["train", "--epochs", "1", "--data"])
        .arg(fixtures().join("movies"))
        .arg("--split")
        .arg(&fifo)
        .arg("--out")
        .arg(dir.join("run2"));
    cases.push(c);
    for cmd in cases {
        assert_refused(cmd, &fifo, "a named pipe (FIFO), not a regular file");
    }
}

/// Splits are checked before any movie is read, in time linear in their
/// size: the same id 2,000,000 times in `all` (a 24 MB file), an id twice
/// in one list, an id in two lists.
#[test]
fn a_split_with_repeated_or_overlapping_ids_is_refused_by_name() {
    let dir = tempdir("special-split");
    let mut huge = String::from(
        "{\"train\": [\"tt0100001\"], \"val\": [\"tt0100003\"], \"test\": [\"tt0100002\"], \"all\": [",
    );
    for i in 0..2_000_000 {
        huge.push_str(if i == 0 { "\"tt0100001\"" } else { ",\"tt0100001\"" });
    }
    huge.push_str("]}");
    let cases = [
        (huge, "the all list names movie \"tt0100001\" twice"),
        (
            r#"{"train": ["tt0100001", "tt0100001"], "val": ["tt0100003"], "test": ["tt0100002"]}"#.to_string(),
            "the train list names movie \"tt0100001\" twice",
        ),
        (
            r#"{"train": ["tt0100001", "tt0100002"], "val": ["tt0100003"], "test": ["tt0100002"]}"#.to_string(),
            "movie \"tt0100002\" is in both the train and the test lists",
        ),
        (
            r#"{"train": ["tt0100001", "../x"], "val": ["tt0100003"], "test": ["tt0100002"], "all": ["tt0100001"]}"#
                .to_string(),
            "movie id \"../x\" is not a plain name",
        ),
    ];
    for (i, (text, what)) in cases.iter().enumerate() {
        let root = tree_copy(&dir.join(i.to_string()));
        let split = root.join("meta/split318.json");
        std::fs::write(&split, text).unwrap();
        assert_refused(info(&root), &split, what);
        // Bad input, as a bad movie is: exit code 3.
        assert_eq!(run_or_hang(info(&root), "info").status.code(), Some(3), "{what}");
        // As train's --split, over the tree's own good split.
        let good = tree_copy(&dir.join(format!("{i}-good")));
        let mut train = lgss();
        train
            .args(["train", "--epochs", "1", "--data"])
            .arg(&good)
            .arg("--config")
            .arg(fixtures().join("../../models/lgss-small.toml"))
            .arg("--split")
            .arg(&split)
            .arg("--out")
            .arg(dir.join(format!("run{i}")));
        assert_refused(train, &split, what);
    }
}
