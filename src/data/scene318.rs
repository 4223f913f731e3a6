//! MovieNet's scene318 layout, as the LGSS authors released their benchmark
//! with SceneSeg: per-shot feature files instead of one pickle per movie.
//!
//! ```text
//! ROOT/meta/split318.json            {"train": [ids], "val": [...], "test": [...], "all": [...]}
//! ROOT/label318/<id>.txt             "<4-digit shot id> <label>" a line (-1 counts as 1; absent: no ground truth)
//! ROOT/shot_movie318/<id>.txt        "<first frame> <last frame> …" a shot
//! ROOT/place_feat/<id>/shot_NNNN.npy place, one vector a shot
//! ROOT/aud_feat/<id>/shot_NNNN.npy   audio, one vector or one 257×90 STFT image a shot
//! ROOT/cast_feat/<id>.pkl            {shot id: faces × dim}, averaged over the faces
//! ROOT/act_feat/<id>.pkl             {shot id: dim}
//! ```
//!
//! A movie of such a tree is addressed by its label file
//! (`ROOT/label318/<id>.txt`, the one file every annotated movie has), so
//! every command that takes movie files or a folder of them takes a tree
//! too: [`crate::data::Movie::load`] reads it, and
//! [`crate::data::dataset::movie_files`] lists a root's movies in the order
//! of its split's `all`.
//!
//! The semantics are SceneSeg's data code's (`lgss/src/data/all.py`): the
//! boundary after shot s is labelled by s's line; shot end frames are the
//! second column of the shot file; a shot's cast is the float32 mean of its
//! faces (zeros for a shot with no face, an empty array, where numpy would
//! give NaN). A shot whose file or entry is missing in a modality present
//! in the tree gets zeros, and every boundary whose window of shots holds
//! such a shot, or a shot without a label, is *left out* (SceneSeg leaves
//! those out of training and scoring; [`Scene318Movie::left_out`] lists
//! them). SceneSeg checks only place features and labels and would fail on
//! a missing cast, action or audio entry; here those leave boundaries out
//! too. SceneSeg also drops every movie's first 6 and last 7 boundaries,
//! whose windows reach past its ends; lgss pads those windows (as for
//! pickles) and keeps them.
//!
//! Every file goes through lgss's own readers: `.npy` through
//! [`crate::data::npy`], the dicts through the inert pickle reader with its
//! budgets, so nothing in a tree executes anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::Array2;

use super::movie::{Features, LoadError, Modality, Movie};
use super::pickle::{self, Value};
use super::stft_image;
use super::tensor::Tensor;
use crate::fsutil::write_atomic;
use crate::regular_file;

/// The split file that marks a scene318 root.
pub const SPLIT_FILE: &str = "meta/split318.json";

/// SceneSeg's window (config/all.py: seq_len 10 + shot_num 4): a boundary
/// is left out when any of its shots s-6 … s+7 inside the movie lacks
/// features or a label.
pub const SCENESEG_WINDOW: usize = 14;

/// The train/val/test lists of a split file (`meta/split318.json`, or any
/// file of that form given with `--split`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Split {
    pub train: Vec<String>,
    pub val: Vec<String>,
    pub test: Vec<String>,
    /// Every movie; the three lists in order when the file has none.
    #[serde(default)]
    pub all: Vec<String>,
}

impl Split {
    /// Reads and checks a split file, in time linear in its size, before
    /// any movie is read: ids are plain names (letters, digits, `_`, `-`,
    /// `.`, not starting with `.`), so none reaches outside the tree; no
    /// list names a movie twice, and no movie is in two of train, val and
    /// test (a test movie trained on would inflate every score).
    pub fn read(path: &Path) -> anyhow::Result<Split> {
        // A bad split is bad input (exit code 3), as a bad movie is.
        let bad = |problem: String| LoadError {
            path: path.to_path_buf(),
            problem,
        };
        let text = regular_file::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        let mut split: Split = serde_json::from_str(&text).map_err(|e| {
            bad(format!(
                "not a split file ({{\"train\": [...], \"val\": [...], \"test\": [...]}}): {e}"
            ))
        })?;
        if split.all.is_empty() {
            split.all = [&split.train, &split.val, &split.test]
                .into_iter()
                .flatten()
                .cloned()
                .collect();
        }
        split.check().map_err(bad)?;
        Ok(split)
    }

    /// The checks of [`Split::read`]; the error names the id and the lists.
    fn check(&self) -> Result<(), String> {
        let mut part_of: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
        let parts = [("train", &self.train), ("val", &self.val), ("test", &self.test)];
        for (name, ids) in parts {
            for id in ids.iter() {
                if let Some(first) = part_of.insert(id, name) {
                    let id = pickle::printable(id);
                    return Err(if first == name {
                        format!("the {name} list names movie \"{id}\" twice")
                    } else {
                        format!("movie \"{id}\" is in both the {first} and the {name} lists")
                    });
                }
            }
        }
        let mut all = std::collections::HashSet::with_capacity(self.all.len());
        for id in &self.all {
            if !all.insert(id.as_str()) {
                return Err(format!(
                    "the all list names movie \"{}\" twice",
                    pickle::printable(id)
                ));
            }
        }
        for id in part_of.keys().copied().chain(all.iter().copied()) {
            let plain = !id.is_empty()
                && !id.starts_with('.')
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !plain {
                return Err(format!(
                    "movie id \"{}\" is not a plain name",
                    pickle::printable(id)
                ));
            }
        }
        Ok(())
    }
}

impl Split {
    /// A split of `ids` in their order, as lgss splits a folder of pickles
    /// by file name: the last tenth (at least one) tests, the fifth before
    /// it (at least one) validates, the rest trains.
    pub fn of_ids(ids: &[String]) -> anyhow::Result<Split> {
        let n = ids.len();
        if n < 3 {
            anyhow::bail!("a split needs at least 3 movies (train, val, test), got {n}");
        }
        let test = ((n as f64 * 0.1).round() as usize).max(1);
        let val = ((n as f64 * 0.2).round() as usize).max(1).min(n - test - 1);
        let cut = n - test - val;
        Ok(Split {
            train: ids[..cut].to_vec(),
            val: ids[cut..n - test].to_vec(),
            test: ids[n - test..].to_vec(),
            all: ids.to_vec(),
        })
    }

    /// Writes the split as `meta/split318.json` of `root`.
    pub fn write(&self, root: &Path) -> anyhow::Result<()> {
        let path = root.join(SPLIT_FILE);
        std::fs::create_dir_all(path.parent().unwrap_or(root))
            .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", root.display()))?;
        write_atomic(&path, (serde_json::to_string_pretty(self)? + "\n").as_bytes())
    }
}

/// Writes `movie` into the tree at `root` as SceneSeg lays movies out (its
/// prediction, which the layout has no place for, is dropped) and returns
/// the path that stands for it. Each shot's cast is one face.
pub fn write_movie(root: &Path, movie: &Movie) -> anyhow::Result<PathBuf> {
    let id = &movie.imdb_id;
    let n = movie.n_shots();
    let mut labels = String::new();
    if let Some(gt) = &movie.ground_truth {
        for (s, &cut) in gt.iter().enumerate() {
            labels.push_str(&format!("{s:04} {}\n", u8::from(cut)));
        }
    }
    let mut shots = String::new();
    let mut first = 0;
    for &last in &movie.shot_end_frame {
        shots.push_str(&format!("{first} {last}\n"));
        first = last + 1;
    }
    let file = |dir: &str, name: String| -> anyhow::Result<PathBuf> {
        let d = root.join(dir);
        std::fs::create_dir_all(&d).map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", d.display()))?;
        Ok(d.join(name))
    };
    write_atomic(&file("shot_movie318", format!("{id}.txt"))?, shots.as_bytes())?;
    for m in Modality::ALL {
        let Some(f) = movie.features(m) else { continue };
        let rows: Vec<&[f32]> = f
            .rows()
            .into_iter()
            .map(|r| r.to_slice().unwrap_or(&[]))
            .collect();
        match m {
            Modality::Place | Modality::Audio => {
                // Audio of STFT width is written as the images SceneSeg reads.
                let shape = |row: &[f32]| match m {
                    Modality::Audio if row.len() == stft_image::DIM => stft_image::SHAPE.to_vec(),
                    _ => vec![row.len()],
                };
                for (s, row) in rows.iter().enumerate() {
                    write_atomic(
                        &file(&format!("{}/{id}", feature_dir(m)), format!("shot_{s:04}.npy"))?,
                        &super::npy::save_f32_shaped(row, &shape(row)),
                    )?;
                }
            }
            Modality::Cast | Modality::Action => {
                let shape = |row: &[f32]| match m {
                    Modality::Cast => vec![1, row.len()],
                    _ => vec![row.len()],
                };
                let items = rows
                    .iter()
                    .enumerate()
                    .map(|(s, row)| (format!("{s:04}"), shape(row), *row));
                write_atomic(
                    &file(feature_dir(m), format!("{id}.pkl"))?,
                    &super::pickle_write::numpy_dict_to_pickle(items),
                )?;
            }
        }
    }
    // The label file last: it stands for the movie once all else is there.
    // A movie without ground truth has none (and reads back without).
    let path = file("label318", format!("{id}.txt"))?;
    if movie.ground_truth.is_some() {
        write_atomic(&path, labels.as_bytes())?;
    }
    debug_assert_eq!(shots.lines().count(), n);
    Ok(path)
}

/// Whether `dir` is a scene318 root (it holds `meta/split318.json`).
/// Whatever stands there: a split that is not a regular file is then
/// refused by its reader, by name.
pub fn is_root(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(SPLIT_FILE)).is_ok()
}

/// The path that stands for movie `id` of the tree at `root`.
pub fn movie_path(root: &Path, id: &str) -> PathBuf {
    root.join("label318").join(format!("{id}.txt"))
}

/// The root and id of a path made by [`movie_path`] (`…/label318/<id>.txt`).
pub fn locate(path: &Path) -> Option<(PathBuf, String)> {
    if path.extension()? != "txt" {
        return None;
    }
    let dir = path.parent()?;
    if dir.file_name()? != "label318" {
        return None;
    }
    let id = path.file_stem()?.to_str()?.to_string();
    Some((dir.parent()?.to_path_buf(), id))
}

/// A movie of a scene318 tree, with what SceneSeg needs to leave
/// boundaries out.
#[derive(Debug, Clone)]
pub struct Scene318Movie {
    pub movie: Movie,
    /// Per shot: every modality present in the tree has its features.
    pub complete: Vec<bool>,
    /// Per shot: `label318` has a line for it.
    pub labelled: Vec<bool>,
}

impl Scene318Movie {
    /// The boundaries SceneSeg leaves out with a window of `window` shots
    /// (even; [`SCENESEG_WINDOW`] for its config): boundary s when any of
    /// shots s - window/2 + 1 … s + window/2 inside the movie lacks
    /// features or a label (the last shot, with no boundary after it,
    /// needs none). Unlike SceneSeg, the movie's ends leave nothing out:
    /// lgss pads the windows that reach past them, as for MovieScenes
    /// pickles, so a complete tree scores every boundary, as the same
    /// movies as pickles do.
    pub fn left_out(&self, window: usize) -> Vec<usize> {
        let n = self.complete.len();
        let ok = |i: isize| {
            let inside = i >= 0 && (i as usize) < n;
            !inside || (self.complete[i as usize] && (self.labelled[i as usize] || i as usize == n - 1))
        };
        let (before, after) = (window as isize / 2 - 1, window as isize / 2);
        (0..n.saturating_sub(1))
            .filter(|&s| (s as isize - before..=s as isize + after).any(|i| !ok(i)))
            .collect()
    }
}

/// Reads movie `id` of the tree at `root`. Errors name the file and the problem.
pub fn load(root: &Path, id: &str) -> Result<Scene318Movie, LoadError> {
    let fail = |path: &Path, problem: String| LoadError {
        path: path.to_path_buf(),
        problem,
    };
    let shots_file = root.join("shot_movie318").join(format!("{id}.txt"));
    let shot_end_frame = read_shots(&shots_file).map_err(|p| fail(&shots_file, p))?;
    let n = shot_end_frame.len();
    let label_file = movie_path(root, id);
    // A tree made from video (`lgss extract`) has no labels: its movies
    // segment, and score nowhere.
    let labels = if std::fs::symlink_metadata(&label_file).is_ok() {
        Some(read_labels(&label_file, n).map_err(|p| fail(&label_file, p))?)
    } else {
        None
    };

    let mut complete = vec![true; n];
    let mut features: [Option<Features>; 4] = Default::default();
    for m in Modality::ALL {
        let got = match m {
            Modality::Place | Modality::Audio => {
                let dir = root.join(feature_dir(m)).join(id);
                if !dir.exists() {
                    continue;
                }
                read_npy_shots(&dir, n, m)?
            }
            Modality::Cast | Modality::Action => {
                let file = root.join(feature_dir(m)).join(format!("{id}.pkl"));
                if !file.exists() {
                    continue;
                }
                read_dict_shots(&file, n, m).map_err(|p| fail(&file, p))?
            }
        };
        let (rows, present) = got;
        for (c, p) in complete.iter_mut().zip(&present) {
            *c &= *p;
        }
        features[m.index()] = Some(rows);
    }
    let labelled: Vec<bool> = match &labels {
        Some(labels) => labels.iter().map(Option::is_some).collect(),
        None => vec![false; n],
    };
    let ground_truth = labels.map(|l| l[..n - 1].iter().map(|l| *l == Some(true)).collect());
    let mut tree = Scene318Movie {
        movie: Movie {
            imdb_id: id.to_string(),
            features,
            ground_truth,
            shot_end_frame,
            prediction: None,
            scored: None,
        },
        complete,
        labelled,
    };
    if tree.movie.ground_truth.is_some() {
        let mut scored = vec![true; n - 1];
        for b in tree.left_out(SCENESEG_WINDOW) {
            scored[b] = false;
        }
        tree.movie.scored = Some(scored);
    }
    Ok(tree)
}

/// Every file movie `id` of the tree at `root` is read from (those that
/// exist: its shot and label files, each modality's folder of shot files
/// or its pickle), sorted within each folder: what a feature store checks
/// to know the movie unchanged.
pub fn sources(root: &Path, id: &str) -> std::io::Result<Vec<PathBuf>> {
    let mut paths = vec![root.join("shot_movie318").join(format!("{id}.txt"))];
    let label = movie_path(root, id);
    if std::fs::symlink_metadata(&label).is_ok() {
        paths.push(label);
    }
    for m in Modality::ALL {
        match m {
            Modality::Place | Modality::Audio => {
                let dir = root.join(feature_dir(m)).join(id);
                if !dir.exists() {
                    continue;
                }
                let mut files = std::fs::read_dir(&dir)?
                    .map(|e| e.map(|e| e.path()))
                    .collect::<std::io::Result<Vec<_>>>()?;
                files.sort();
                paths.extend(files);
            }
            Modality::Cast | Modality::Action => {
                let file = root.join(feature_dir(m)).join(format!("{id}.pkl"));
                if file.exists() {
                    paths.push(file);
                }
            }
        }
    }
    Ok(paths)
}

/// Where a modality's features live in the tree.
fn feature_dir(m: Modality) -> &'static str {
    match m {
        Modality::Place => "place_feat",
        Modality::Cast => "cast_feat",
        Modality::Action => "act_feat",
        Modality::Audio => "aud_feat",
    }
}

/// The files of this layout are small; anything past this is not one.
const MAX_TEXT_BYTES: u64 = 64 << 20;

fn read_text(path: &Path) -> Result<String, String> {
    let file = regular_file::open(path).map_err(|e| format!("cannot read: {e}"))?;
    if file.len > MAX_TEXT_BYTES {
        return Err(format!(
            "{} bytes: larger than any {MAX_TEXT_BYTES}-byte text file of this layout",
            file.len
        ));
    }
    let bytes = file.read_all().map_err(|e| format!("cannot read: {e}"))?;
    String::from_utf8(bytes).map_err(|e| format!("cannot read as text: {e}"))
}

/// Each shot's last frame: the second number of each line.
fn read_shots(path: &Path) -> Result<Vec<i64>, String> {
    let text = read_text(path)?;
    let mut ends = Vec::new();
    let mut last_end = -1i64;
    for (k, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let nums: Vec<&str> = line.split_whitespace().collect();
        let frame = |i: usize| -> Result<i64, String> {
            nums.get(i)
                .and_then(|x| x.parse::<i64>().ok())
                .filter(|&f| f >= 0)
                .ok_or_else(|| {
                    format!(
                        "line {}: expected \"<first frame> <last frame>\", got \"{}\"",
                        k + 1,
                        pickle::printable(line)
                    )
                })
        };
        let (first, last) = (frame(0)?, frame(1)?);
        if first > last || first <= last_end {
            return Err(format!(
                "line {}: shot frames {first}..{last} do not follow the previous shot",
                k + 1
            ));
        }
        last_end = last;
        ends.push(last);
    }
    if ends.len() < 2 {
        return Err(format!("{} shots: a movie needs at least 2", ends.len()));
    }
    Ok(ends)
}

/// Each shot's label (`None`: no line), -1 counted as 1.
fn read_labels(path: &Path, n: usize) -> Result<Vec<Option<bool>>, String> {
    let text = read_text(path)?;
    let mut labels = vec![None; n];
    for (k, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = || {
            format!(
                "line {}: expected \"<shot id> <label>\", got \"{}\"",
                k + 1,
                pickle::printable(line)
            )
        };
        let mut parts = line.split_whitespace();
        let (Some(shot), Some(label), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let shot: usize = shot.parse().map_err(|_| bad())?;
        let label = match label {
            "1" | "-1" => true,
            "0" => false,
            other => {
                return Err(format!(
                    "line {}: label {} is not 0, 1 or -1",
                    k + 1,
                    pickle::printable(other)
                ))
            }
        };
        let slot = labels
            .get_mut(shot)
            .ok_or_else(|| format!("line {}: shot {shot} is past the movie's {n} shots", k + 1))?;
        if slot.replace(label).is_some() {
            return Err(format!("line {}: shot {shot} labelled twice", k + 1));
        }
    }
    Ok(labels)
}

/// Rows of a modality, zeros where a shot has none, and which shots have them.
type Shots = (Features, Vec<bool>);

/// One vector a shot from `dir/shot_NNNN.npy`, read by several threads.
fn read_npy_shots(dir: &Path, n: usize, m: Modality) -> Result<Shots, LoadError> {
    let fail = |path: PathBuf, problem: String| LoadError { path, problem };
    let entries = std::fs::read_dir(dir).map_err(|e| fail(dir.to_path_buf(), format!("cannot list: {e}")))?;
    let mut files: Vec<Option<PathBuf>> = vec![None; n];
    for e in entries {
        let path = e
            .map_err(|e| fail(dir.to_path_buf(), format!("cannot list: {e}")))?
            .path();
        let Some(name) = path.file_name().and_then(|s| s.to_str()) else {
            continue;
        };
        let Some(shot) = name.strip_prefix("shot_").and_then(|s| s.strip_suffix(".npy")) else {
            continue;
        };
        let index: usize = shot
            .parse()
            .map_err(|_| fail(path.clone(), "not a shot file name (shot_NNNN.npy)".into()))?;
        match files.get_mut(index) {
            Some(slot) => *slot = Some(path),
            None => return Err(fail(path, format!("shot {index} is past the movie's {n} shots"))),
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get()).min(8);
    let per = n.div_ceil(threads).max(64);
    let read: Vec<Result<Option<Vec<f32>>, LoadError>> = std::thread::scope(|s| {
        let jobs: Vec<_> = files
            .chunks(per)
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|f| match f {
                            None => Ok(None),
                            Some(path) => read_vector(path, m).map(Some).map_err(|p| fail(path.clone(), p)),
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        jobs.into_iter()
            .flat_map(|j| {
                j.join()
                    .unwrap_or_else(|_| vec![Err(fail(dir.to_path_buf(), "a reader thread failed".into()))])
            })
            .collect()
    });
    let mut vectors = Vec::with_capacity(n);
    for r in read {
        vectors.push(r?);
    }
    stack(vectors, m).map_err(|p| fail(dir.to_path_buf(), p))
}

/// A shot's features from a `.npy` file: a one-dimensional array, or for
/// audio SceneSeg's 257×90 STFT image, flattened row-major (the model's
/// `audio_input = "stft"` takes it so).
fn read_vector(path: &Path, m: Modality) -> Result<Vec<f32>, String> {
    let bytes = regular_file::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let t = super::npy::load(&bytes).map_err(|e| e.to_string())?;
    let [bins, frames] = stft_image::SHAPE;
    match (m, t.shape()) {
        (_, [_]) => Ok(into_vec(t)),
        (Modality::Audio, [b, f]) if (*b, *f) == (bins, frames) => Ok(into_vec(t)),
        (Modality::Audio, [rows, cols]) => Err(format!(
            "a {rows}×{cols} array: an audio STFT image is {bins}×{frames} (SceneSeg's)"
        )),
        (_, other) => Err(format!("shape {other:?}: expected one feature vector")),
    }
}

/// A vector's values as f32, in order: its own buffer when it is already
/// float32 (iterating a dynamic-rank array element by element costs more
/// than reading the file).
fn into_vec(t: Tensor) -> Vec<f32> {
    let a = t.into_f32();
    if a.is_standard_layout() {
        let len = a.len();
        let (mut v, offset) = a.into_raw_vec_and_offset();
        let start = offset.unwrap_or(0);
        if start == 0 && v.len() == len {
            return v;
        }
        v.truncate(start + len);
        return v.split_off(start);
    }
    a.iter().copied().collect()
}

/// Shots' vectors as rows; every present vector must have the same width.
fn stack(vectors: Vec<Option<Vec<f32>>>, m: Modality) -> Result<Shots, String> {
    let n = vectors.len();
    let widths: BTreeMap<usize, usize> = vectors
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.as_ref().map(|v| (v.len(), i)))
        .collect();
    let dim = match widths.len() {
        0 => return Err(format!("no shot has {m} features")),
        1 => *widths.keys().next().unwrap_or(&0),
        _ => {
            let shown: Vec<String> = widths.iter().map(|(w, i)| format!("{w} (shot {i})")).collect();
            return Err(format!("{m} features of different widths: {}", shown.join(", ")));
        }
    };
    let present: Vec<bool> = vectors.iter().map(Option::is_some).collect();
    let mut rows = Array2::<f32>::zeros((n, dim));
    for (mut row, v) in rows.rows_mut().into_iter().zip(vectors) {
        if let Some(v) = v {
            row.assign(&ndarray::ArrayView1::from(&v));
        }
    }
    Ok((rows, present))
}

/// One vector a shot from a pickled dict `{"NNNN": array}`: actions are a
/// vector, casts one row a face, averaged.
fn read_dict_shots(path: &Path, n: usize, m: Modality) -> Result<Shots, String> {
    let file = regular_file::open(path).map_err(|e| format!("cannot read: {e}"))?;
    if file.len == 0 {
        return Err("empty file".into());
    }
    let map = file.map().map_err(|e| format!("cannot read: {e}"))?;
    let value = pickle::load(&map).map_err(|e| e.to_string())?;
    let Value::Dict(dict) = value else {
        return Err(format!(
            "top level is a {}, expected a dict of shot id → array",
            value.kind()
        ));
    };
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; n];
    for (k, v) in dict.borrow_mut().take_items() {
        let shot = match &k {
            Value::Str(s) => s.parse::<usize>().ok(),
            Value::Int(i) => usize::try_from(*i).ok(),
            _ => None,
        }
        .ok_or_else(|| format!("key of kind {}: expected a shot id like \"0012\"", k.kind()))?;
        let slot = vectors
            .get_mut(shot)
            .ok_or_else(|| format!("shot {shot} is past the movie's {n} shots"))?;
        let Value::Tensor(t) = v.resolved() else {
            return Err(format!("shot {shot}: not a numpy array"));
        };
        *slot = Some(shot_vector(&t, m).map_err(|e| format!("shot {shot}: {e}"))?);
    }
    stack(vectors, m)
}

/// A shot's vector: an action vector as it is, a cast array's faces
/// averaged as `np.mean(faces, axis=0)` does (summed in order in the
/// array's own float type, then divided), zeros (empty) for no face.
fn shot_vector(t: &Tensor, m: Modality) -> Result<Vec<f32>, String> {
    match (m, t.shape()) {
        (_, [_]) => Ok(into_vec(t.clone())),
        (Modality::Cast, &[faces, dim]) => {
            if faces == 0 {
                return Ok(vec![0.0; dim]);
            }
            Ok(match t {
                Tensor::F32(a) => {
                    let mut sum = vec![0f32; dim];
                    for row in a.rows() {
                        sum.iter_mut().zip(row).for_each(|(s, x)| *s += x);
                    }
                    sum.into_iter().map(|s| s / faces as f32).collect()
                }
                Tensor::F64(a) => {
                    let mut sum = vec![0f64; dim];
                    for row in a.rows() {
                        sum.iter_mut().zip(row).for_each(|(s, x)| *s += x);
                    }
                    sum.into_iter().map(|s| (s / faces as f64) as f32).collect()
                }
                other => return Err(format!("dtype {}: expected float32 or float64", other.dtype())),
            })
        }
        (_, shape) => Err(format!(
            "shape {shape:?}: expected one vector{}",
            if m == Modality::Cast {
                " or faces × dim"
            } else {
                ""
            }
        )),
    }
}
