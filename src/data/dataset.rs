//! A data set: a directory of `<imdb_id>.pkl` movies, or a scene318 tree
//! (its movies stand as their label files, [`super::scene318`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::hash::fnv1a64;
use super::movie::{Movie, Schema};

/// The entries of `dir` whose (UTF-8) name `keep` accepts, sorted. Not
/// only regular files: a pipe or folder named like a movie is listed, so
/// its reader refuses it by name rather than the movie going missing.
pub fn files_named(dir: &Path, keep: impl Fn(&str) -> bool) -> anyhow::Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list directory", dir.display()))?;
    let mut files = Vec::new();
    for e in entries {
        let path = e
            .with_context(|| format!("{}: cannot list directory", dir.display()))?
            .path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if keep(name) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Whether a file name is a MovieScenes movie's (`tt*.pkl`).
pub fn is_movie_name(name: &str) -> bool {
    name.starts_with("tt") && name.ends_with(".pkl")
}

/// The `tt*.pkl` files of `dir`, sorted by name (the challenge's file
/// order); for a scene318 root, its split's movies in the order of `all`.
pub fn movie_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if super::scene318::is_root(dir) {
        let split = super::scene318::Split::read(&dir.join(super::scene318::SPLIT_FILE))?;
        if split.all.is_empty() {
            bail!(
                "{}: the split lists no movies",
                dir.join(super::scene318::SPLIT_FILE).display()
            );
        }
        return Ok(split
            .all
            .iter()
            .map(|id| super::scene318::movie_path(dir, id))
            .collect());
    }
    let files = files_named(dir, is_movie_name)?;
    if files.is_empty() {
        bail!("{}: no tt*.pkl movie files", dir.display());
    }
    Ok(files)
}

/// Expands files and directories into a sorted list of movie files.
pub fn expand_inputs(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in inputs {
        if p.is_dir() {
            files.extend(movie_files(p)?);
        } else if p.exists() || unlabelled_tree_movie(p) {
            files.push(p.clone());
        } else {
            bail!("{}: no such file or directory", p.display());
        }
    }
    Ok(files)
}

/// Whether `p` stands for a movie of a scene318 tree that has no label
/// file (a tree made from video): its shot file is there.
fn unlabelled_tree_movie(p: &Path) -> bool {
    super::scene318::locate(p)
        .is_some_and(|(root, id)| root.join("shot_movie318").join(format!("{id}.txt")).exists())
}

/// Loads every file, calling `progress` after each; stops at the first bad file.
pub fn load_all(files: &[PathBuf], schema: &Schema, progress: &dyn Fn()) -> anyhow::Result<Vec<Movie>> {
    let mut movies = Vec::with_capacity(files.len());
    for f in files {
        movies.push(Movie::load(f, schema)?);
        progress();
    }
    Ok(movies)
}

/// One of `count` disjoint parts of a catalogue (`--shard INDEX/COUNT`,
/// INDEX from 0). A movie belongs to the shard `fnv1a64(stem) % COUNT`, where
/// stem is its file name without `.pkl`: adding files never moves another
/// file to a different shard, and a shard never opens another's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub fn of(stem: &str, count: u64) -> u64 {
        fnv1a64(stem.as_bytes()) % count
    }

    pub fn contains(&self, file: &Path) -> bool {
        Shard::of(&file_stem(file), self.count) == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("\"{s}\" is not INDEX/COUNT with 0 <= INDEX < COUNT (e.g. 0/4)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u64 = i.trim().parse().map_err(|_| bad())?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A movie file's stem: its name without the `.pkl` extension (lossy UTF-8).
pub fn file_stem(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The paths listed in `list`, one a line (`--files-from`). Blank lines and
/// lines starting with `#` are skipped; relative paths are relative to the
/// current folder, as in tar and rsync. `-` reads standard input.
pub fn read_file_list(list: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let text = if list.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("standard input: cannot read the file list")?
    } else {
        crate::regular_file::read_to_string(list)
            .with_context(|| format!("{}: cannot read the file list", list.display()))?
    };
    Ok(text
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(PathBuf::from)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_refuse_out_of_range() {
        assert_eq!("2/5".parse::<Shard>(), Ok(Shard { index: 2, count: 5 }));
        for bad in ["5/5", "0/0", "1", "-1/3", "a/b", "1/2/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
