//! The training features on disk, so that a movie set larger than memory
//! trains: built once from the movies (pickles or a scene318 tree), one
//! file of little-endian f32 rows `[all shots, D]` per modality, and
//! reused across runs while its sources are unchanged.
//!
//! `index.json` holds what training keeps of each movie besides its
//! features (labels, shot ends, left-out boundaries) and, for each movie,
//! every file it was read from with its length and modification time: a
//! store whose sources differ in any of them, or list other files, or
//! other modalities and widths, is rebuilt (what `make` trusts; a file
//! rewritten with the same length and time is not noticed). Rows are read
//! with positioned reads rather than a memory map: pages of a mapped file
//! count in the process's resident memory as they are touched, and a
//! limit on address space (`ulimit -v`) refuses a map larger than itself.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::movie::{Modality, Movie, Schema};

/// The layout's version; another is rebuilt.
const VERSION: u32 = 1;
const INDEX: &str = "index.json";

/// One file a movie was read from, as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Source {
    path: PathBuf,
    len: u64,
    modified_ns: i128,
}

/// What is kept of a movie besides its features.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredMovie {
    /// The file it stands as (a pickle, or a tree's label file).
    pub file: PathBuf,
    pub imdb_id: String,
    pub n_shots: usize,
    pub ground_truth: Option<Vec<bool>>,
    pub shot_end_frame: Vec<i64>,
    /// The pickle's own prediction, as f64 bits (JSON has no NaN).
    prediction_bits: Option<Vec<u64>>,
    pub scored: Option<Vec<bool>>,
    sources: Vec<Source>,
}

impl StoredMovie {
    /// The pickle's own prediction, if it had one.
    pub fn prediction(&self) -> Option<Vec<f64>> {
        self.prediction_bits
            .as_ref()
            .map(|b| b.iter().map(|&v| f64::from_bits(v)).collect())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Index {
    version: u32,
    /// Each modality's key and width, in the store's (the config's) order.
    modalities: Vec<(String, usize)>,
    movies: Vec<StoredMovie>,
}

/// A feature store, open for reading.
pub struct FeatureStore {
    dir: PathBuf,
    /// One `[total, D]` file per modality.
    files: Vec<File>,
    dims: Vec<usize>,
    pub movies: Vec<StoredMovie>,
    /// First row of each movie.
    pub offsets: Vec<usize>,
}

/// Whether [`FeatureStore::open_or_build`] found the store current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Reused,
    /// Built, and why (no store yet, or what changed).
    Built(String),
}

impl FeatureStore {
    /// The store at `dir` for `files` (in this order) and `modalities` of
    /// the given widths: reused when current, else (re)built from the
    /// movies, validated by `schema`, one movie in memory at a time;
    /// `progress` is called after each movie read.
    pub fn open_or_build(
        dir: &Path,
        files: &[PathBuf],
        modalities: &[(Modality, usize)],
        schema: &Schema,
        progress: &dyn Fn(),
    ) -> anyhow::Result<(FeatureStore, Opened)> {
        match FeatureStore::open_current(dir, files, modalities) {
            Ok(store) => Ok((store, Opened::Reused)),
            Err(why) => {
                let why = format!("{why:#}");
                FeatureStore::build(dir, files, modalities, schema, progress)?;
                let store = FeatureStore::open_current(dir, files, modalities)
                    .with_context(|| format!("{}: the store just built", dir.display()))?;
                Ok((store, Opened::Built(why)))
            }
        }
    }

    /// The store at `dir` if it is current for `files` and `modalities`;
    /// otherwise an error saying what differs.
    fn open_current(
        dir: &Path,
        files: &[PathBuf],
        modalities: &[(Modality, usize)],
    ) -> anyhow::Result<FeatureStore> {
        let index_path = dir.join(INDEX);
        if !index_path.exists() {
            bail!("no store at {}", dir.display());
        }
        let bytes = crate::regular_file::read(&index_path)
            .with_context(|| format!("{}: cannot read", index_path.display()))?;
        let index: Index = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not a store index", index_path.display()))?;
        if index.version != VERSION {
            bail!(
                "the store is of layout {}, this lgss writes {VERSION}",
                index.version
            );
        }
        let want: Vec<(String, usize)> = modalities
            .iter()
            .map(|(m, d)| (m.key().to_string(), *d))
            .collect();
        if index.modalities != want {
            bail!("the store holds {:?}, the model takes {want:?}", index.modalities);
        }
        if index.movies.len() != files.len() || index.movies.iter().zip(files).any(|(m, f)| &m.file != f) {
            bail!("the store holds other movies");
        }
        for m in &index.movies {
            let now = sources_of(&m.file)?;
            if now != m.sources {
                let changed = now
                    .iter()
                    .find(|s| !m.sources.contains(s))
                    .or_else(|| m.sources.iter().find(|s| !now.contains(s)))
                    .map_or_else(|| m.file.clone(), |s| s.path.clone());
                bail!("{} changed since the store was built", changed.display());
            }
        }
        let mut offsets = Vec::with_capacity(index.movies.len());
        let mut total = 0usize;
        for m in &index.movies {
            offsets.push(total);
            total += m.n_shots;
        }
        let mut opened = Vec::with_capacity(modalities.len());
        for (m, d) in modalities {
            let path = dir.join(data_file(*m));
            let crate::regular_file::Regular { file, len } = crate::regular_file::open(&path)
                .with_context(|| format!("{}: cannot read", path.display()))?;
            let want = (total * d * 4) as u64;
            if len != want {
                bail!("{}: {len} bytes, the index implies {want}", path.display());
            }
            opened.push(file);
        }
        Ok(FeatureStore {
            dir: dir.to_path_buf(),
            files: opened,
            dims: modalities.iter().map(|(_, d)| *d).collect(),
            movies: index.movies,
            offsets,
        })
    }

    /// Writes the store into a folder beside `dir`, then puts it in
    /// `dir`'s place: an interrupted build leaves the old store or none,
    /// never half of one.
    fn build(
        dir: &Path,
        files: &[PathBuf],
        modalities: &[(Modality, usize)],
        schema: &Schema,
        progress: &dyn Fn(),
    ) -> anyhow::Result<()> {
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).with_context(|| format!("{}: cannot create", parent.display()))?;
        let staging = tempfile::Builder::new()
            .prefix(".lgss-store-")
            .tempdir_in(parent)
            .with_context(|| format!("{}: cannot create a folder", parent.display()))?;
        let mut writers = Vec::with_capacity(modalities.len());
        for (m, _) in modalities {
            let path = staging.path().join(data_file(*m));
            let file = File::create(&path).with_context(|| format!("{}: cannot create", path.display()))?;
            writers.push((path, BufWriter::with_capacity(1 << 20, file)));
        }
        let mut movies = Vec::with_capacity(files.len());
        let mut ids = std::collections::HashSet::new();
        for f in files {
            // Taken before the read: a file changed while it is read differs next time.
            let sources = sources_of(f)?;
            let movie = Movie::load(f, schema)?;
            if !ids.insert(movie.imdb_id.clone()) {
                bail!("{}: imdb_id {} appears in two files", f.display(), movie.imdb_id);
            }
            for ((m, d), (path, w)) in modalities.iter().zip(&mut writers) {
                let features = movie
                    .features(*m)
                    .with_context(|| format!("{}: no {m} features", f.display()))?;
                anyhow::ensure!(
                    features.ncols() == *d,
                    "{}: {m} has {} columns, the model takes {d}",
                    f.display(),
                    features.ncols()
                );
                let mut bytes = Vec::with_capacity(features.len() * 4);
                bytes.extend(features.iter().flat_map(|v| v.to_le_bytes()));
                w.write_all(&bytes)
                    .with_context(|| format!("{}: cannot write", path.display()))?;
            }
            movies.push(StoredMovie {
                file: f.clone(),
                imdb_id: movie.imdb_id.clone(),
                n_shots: movie.n_shots(),
                ground_truth: movie.ground_truth.clone(),
                shot_end_frame: movie.shot_end_frame.clone(),
                prediction_bits: movie
                    .prediction
                    .as_ref()
                    .map(|p| p.iter().map(|v| v.to_bits()).collect()),
                scored: movie.scored.clone(),
                sources,
            });
            progress();
        }
        for (path, w) in writers {
            let file = w
                .into_inner()
                .map_err(|e| anyhow::anyhow!("{}: cannot write: {}", path.display(), e.error()))?;
            file.sync_all()
                .with_context(|| format!("{}: cannot write", path.display()))?;
        }
        let index = Index {
            version: VERSION,
            modalities: modalities
                .iter()
                .map(|(m, d)| (m.key().to_string(), *d))
                .collect(),
            movies,
        };
        let index_path = staging.path().join(INDEX);
        std::fs::write(&index_path, serde_json::to_vec(&index)?)
            .with_context(|| format!("{}: cannot write", index_path.display()))?;
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("{}: cannot replace", dir.display()))?;
        }
        let staged = staging.keep();
        std::fs::rename(&staged, dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        Ok(())
    }

    /// The store's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Each modality's width, in the store's order.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// Shots in the store.
    pub fn total_shots(&self) -> usize {
        self.movies.iter().map(|m| m.n_shots).sum()
    }

    /// Bytes of features in the store.
    pub fn bytes(&self) -> u64 {
        (self.total_shots() * self.dims.iter().sum::<usize>() * 4) as u64
    }

    /// Rows `rows` (increasing; of all movies stacked, `offsets`) of
    /// modality `m`, appended to `out` in that order: one positioned read
    /// per run of consecutive rows.
    pub fn read_rows(&self, m: usize, rows: &[usize], out: &mut Vec<f32>) -> anyhow::Result<()> {
        let d = self.dims[m];
        let mut bytes = Vec::new();
        let mut i = 0;
        while i < rows.len() {
            let mut j = i + 1;
            while j < rows.len() && rows[j] == rows[j - 1] + 1 {
                j += 1;
            }
            bytes.resize((j - i) * d * 4, 0);
            self.files[m]
                .read_exact_at(&mut bytes, (rows[i] * d * 4) as u64)
                .with_context(|| {
                    format!(
                        "{}: cannot read rows {}..{}",
                        self.dir.display(),
                        rows[i],
                        rows[j - 1] + 1
                    )
                })?;
            out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
            i = j;
        }
        Ok(())
    }
}

/// The data file of modality `m`.
fn data_file(m: Modality) -> String {
    format!("{}.f32", m.key())
}

/// Every file movie `file` is read from, with its length and time.
fn sources_of(file: &Path) -> anyhow::Result<Vec<Source>> {
    let paths = match super::scene318::locate(file) {
        Some((root, id)) => super::scene318::sources(&root, &id)
            .with_context(|| format!("{}: cannot list the movie's files", file.display()))?,
        None => vec![file.to_path_buf()],
    };
    paths
        .into_iter()
        .map(|path| {
            let meta =
                std::fs::metadata(&path).with_context(|| format!("{}: cannot read", path.display()))?;
            let modified = meta
                .modified()
                .with_context(|| format!("{}: no modification time", path.display()))?;
            let modified_ns = match modified.duration_since(std::time::UNIX_EPOCH) {
                Ok(after) => after.as_nanos() as i128,
                Err(before) => -(before.duration().as_nanos() as i128),
            };
            Ok(Source {
                path,
                len: meta.len(),
                modified_ns,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::{self, SynthSpec};

    /// Rows read back are the movies' features, bit for bit; the store is
    /// reused while nothing changed and rebuilt, naming the file, when one
    /// did.
    #[test]
    fn rows_read_back_and_a_changed_file_rebuilds() {
        let dir = tempfile::tempdir().unwrap();
        let size = SynthSpec {
            min_shots: 30,
            max_shots: 45,
            ..SynthSpec::small()
        };
        let files = synth::write_dataset(&dir.path().join("movies"), 5, 3, &size, &|| {}).unwrap();
        let schema = Schema::any();
        let movies: Vec<Movie> = files.iter().map(|f| Movie::load(f, &schema).unwrap()).collect();
        let modalities: Vec<(Modality, usize)> = [Modality::Place, Modality::Audio]
            .iter()
            .map(|&m| (m, movies[0].features(m).unwrap().ncols()))
            .collect();
        let at = dir.path().join("store");
        let (store, opened) = FeatureStore::open_or_build(&at, &files, &modalities, &schema, &|| {}).unwrap();
        assert!(matches!(opened, Opened::Built(_)), "{opened:?}");
        for (i, (m, _)) in modalities.iter().enumerate() {
            for (k, movie) in movies.iter().enumerate() {
                let rows: Vec<usize> = (0..movie.n_shots()).map(|r| store.offsets[k] + r).collect();
                let mut got = Vec::new();
                store.read_rows(i, &rows, &mut got).unwrap();
                let want: Vec<f32> = movie.features(*m).unwrap().iter().copied().collect();
                assert_eq!(
                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                );
            }
            // Scattered rows across movies.
            let rows = [0, 1, 7, store.offsets[1] + 2, store.offsets[2]];
            let mut got = Vec::new();
            store.read_rows(i, &rows, &mut got).unwrap();
            assert_eq!(got.len(), rows.len() * modalities[i].1);
        }
        assert_eq!(store.movies[1].ground_truth, movies[1].ground_truth);
        drop(store);
        let (_, opened) = FeatureStore::open_or_build(&at, &files, &modalities, &schema, &|| {}).unwrap();
        assert_eq!(opened, Opened::Reused);
        // A movie touched is noticed, and named.
        let later =
            std::fs::metadata(&files[1]).unwrap().modified().unwrap() + std::time::Duration::from_secs(1);
        File::options()
            .write(true)
            .open(&files[1])
            .unwrap()
            .set_modified(later)
            .unwrap();
        let (_, opened) = FeatureStore::open_or_build(&at, &files, &modalities, &schema, &|| {}).unwrap();
        let Opened::Built(why) = opened else {
            panic!("rebuilt after a change");
        };
        assert!(why.contains(&files[1].display().to_string()), "{why}");
        let (_, opened) = FeatureStore::open_or_build(&at, &files, &modalities, &schema, &|| {}).unwrap();
        assert_eq!(opened, Opened::Reused);
        // Another width is another store.
        let wider = [(Modality::Place, modalities[0].1 + 1)];
        assert!(FeatureStore::open_or_build(&at, &files, &wider, &schema, &|| {}).is_err());
    }
}
