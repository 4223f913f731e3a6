//! What `segment --out DIR` leaves beside its outputs so that a rerun can
//! skip finished movies (`--skip-done`) without opening them: one entry per
//! movie, `DIR/manifest/<stem>.json`, written after the movie's outputs, so
//! an entry means they are complete. It records the model's SHA-256 and the
//! options that shape the outputs; a rerun with another model or other
//! options redoes the movie instead of mixing outputs.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The manifest folder inside an output folder.
pub const DIR: &str = "manifest";
const VERSION: u32 = 1;
/// An entry is a few hundred bytes; anything much larger is not ours.
const MAX_ENTRY_BYTES: u64 = 1 << 20;

/// What makes two runs' outputs interchangeable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunKey {
    pub model_sha256: String,
    /// The options that change what is written (format, threshold, fps, …).
    pub options: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub name: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub manifest_version: u32,
    pub stem: String,
    pub input: PathBuf,
    pub imdb_id: String,
    pub model: PathBuf,
    pub runtime: String,
    #[serde(flatten)]
    pub key: RunKey,
    pub outputs: Vec<Output>,
    pub lgss_version: String,
}

/// Whether a movie needs doing, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Done,
    /// Never finished: no entry.
    New,
    /// Finished differently, or its outputs changed since: the reason.
    Redo(&'static str),
}

/// SHA-256 of a file, hex; streams it, so memory stays constant.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let crate::regular_file::Regular { file, len } =
        crate::regular_file::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut std::io::Read::take(file, len), &mut hasher)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn entry_path(out: &Path, stem: &str) -> PathBuf {
    out.join(DIR).join(format!("{stem}.json"))
}

/// Whether `stem`'s outputs in `out` were finished by a run with `key`,
/// and are all still there at the size written.
pub fn status(out: &Path, stem: &str, key: &RunKey) -> Status {
    let path = entry_path(out, stem);
    let Ok(meta) = std::fs::metadata(&path) else {
        return Status::New;
    };
    if meta.len() > MAX_ENTRY_BYTES {
        return Status::Redo("its manifest entry is damaged");
    }
    let entry: Entry = match crate::regular_file::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(e) => e,
        None => return Status::Redo("its manifest entry is damaged"),
    };
    if entry.manifest_version != VERSION {
        return Status::Redo("its manifest entry is of another version");
    }
    if entry.key.model_sha256 != key.model_sha256 {
        return Status::Redo("done with another model");
    }
    if entry.key.options != key.options {
        return Status::Redo("done with other options");
    }
    let complete = entry
        .outputs
        .iter()
        .all(|o| std::fs::metadata(out.join(&o.name)).is_ok_and(|m| m.len() == o.bytes));
    if !complete {
        return Status::Redo("an output is missing or changed");
    }
    Status::Done
}

/// Records that `stem`'s outputs (names inside `out`) are complete. Call
/// after they are written.
#[allow(clippy::too_many_arguments)]
pub fn record(
    out: &Path,
    stem: &str,
    input: &Path,
    imdb_id: &str,
    model: &Path,
    runtime: &str,
    key: &RunKey,
    outputs: &[String],
) -> anyhow::Result<()> {
    let outputs = outputs
        .iter()
        .map(|name| {
            let path = out.join(name);
            let bytes = std::fs::metadata(&path)
                .with_context(|| format!("{}: just written, now unreadable", path.display()))?
                .len();
            Ok(Output {
                name: name.clone(),
                bytes,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let entry = Entry {
        manifest_version: VERSION,
        stem: stem.to_string(),
        input: input.to_path_buf(),
        imdb_id: imdb_id.to_string(),
        model: model.to_path_buf(),
        runtime: runtime.to_string(),
        key: key.clone(),
        outputs,
        lgss_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let dir = out.join(DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    crate::fsutil::write_atomic(
        &entry_path(out, stem),
        (serde_json::to_string_pretty(&entry)? + "\n").as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 test vector (FIPS 180-2, "abc").
    #[test]
    fn sha256_file_matches_the_standard_vector() {
        let dir = std::env::temp_dir().join(format!("lgss-sha-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("abc");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(
            sha256_file(&f).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
