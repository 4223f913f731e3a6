//! A movie from a path: a MovieScenes pickle, or the movie of a scene318
//! tree that its label file stands for. The one place that knows both
//! layouts, so neither reader depends on the other.

use std::path::Path;

use super::movie::{LoadError, Movie, Schema};
use super::scene318;
use crate::regular_file;

impl Movie {
    /// Reads and validates a MovieScenes pickle, or the movie of a scene318
    /// tree its label file stands for ([`scene318`]).
    pub fn load(path: &Path, schema: &Schema) -> Result<Movie, LoadError> {
        let err = |problem: String| LoadError {
            path: path.to_path_buf(),
            problem,
        };
        if let Some((root, id)) = scene318::locate(path) {
            let movie = scene318::load(&root, &id)?.movie;
            if movie.ground_truth.is_none() && schema.require_ground_truth {
                return Err(err(
                    "no ground truth: the tree has no label file for this movie (a tree made from video has none)"
                        .into(),
                ));
            }
            movie.validate(schema).map_err(err)?;
            return Ok(movie);
        }
        let file = regular_file::open(path).map_err(|e| err(format!("cannot read: {e}")))?;
        if file.len == 0 {
            return Err(err("empty file".into()));
        }
        // Mapped: the page faults then happen in the parallel tensor copies.
        let map = file.map().map_err(|e| err(format!("cannot read: {e}")))?;
        Movie::from_pickle_bytes(&map, schema).map_err(err)
    }
}
