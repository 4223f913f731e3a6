//! A data set: a directory of `<imdb_id>.pkl` movies.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::movie::{Movie, Schema};

/// The `tt*.pkl` files of `dir`, sorted by name (the challenge's file order).
pub fn movie_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("{}: cannot list directory", dir.display()))?;
    let mut files = Vec::new();
    for e in entries {
        let path = e
            .with_context(|| format!("{}: cannot list directory", dir.display()))?
            .path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("tt") && name.ends_with(".pkl") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
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
        } else if p.exists() {
            files.push(p.clone());
        } else {
            bail!("{}: no such file or directory", p.display());
        }
    }
    Ok(files)
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
