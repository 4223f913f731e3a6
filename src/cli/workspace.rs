//! The workspace: where `lgss train`, `lgss export --onnx` and `lgss
//! segment` look when given no paths, so the three commands run as typed.
//!
//! A workspace is a folder (`--workspace DIR`, else `$LGSS_WORKSPACE`, else
//! the current folder) holding `data/movies/` (the challenge's `tt*.pkl`),
//! `runs/<timestamp>/` (one per `lgss train`), `runs/latest` (a link to the
//! newest finished run) and, optionally, `lgss.toml` (the model and recipe
//! `train` uses; else the paper's, built in).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// models/lgss.toml (the paper's architecture, this project's recipe), for a
/// workspace without its own `lgss.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("../../models/lgss.toml");

pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// The workspace `--workspace` names, else `$LGSS_WORKSPACE`, else `.`.
    pub fn new(flag: Option<&Path>) -> Workspace {
        let root = flag
            .map(Path::to_path_buf)
            .or_else(|| {
                std::env::var_os("LGSS_WORKSPACE")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            })
            .unwrap_or_else(|| PathBuf::from("."));
        Workspace { root }
    }

    /// Where the movies to train on are.
    pub fn data(&self) -> PathBuf {
        self.root.join("data/movies")
    }

    /// Where `segment --plot` draws when there is no `--out`.
    pub fn plots(&self) -> PathBuf {
        self.root.join("plots")
    }

    /// The feature store of `train --max-memory` named `key`.
    pub fn feature_store(&self, key: &str) -> PathBuf {
        self.root.join("cache/features").join(key)
    }

    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// The link to the newest run.
    pub fn latest(&self) -> PathBuf {
        self.runs().join("latest")
    }

    /// The workspace's own config, if it has one.
    pub fn config(&self) -> Option<PathBuf> {
        Some(self.root.join("lgss.toml")).filter(|p| p.exists())
    }

    /// The data folder, or an error that says how to get data.
    pub fn require_data(&self) -> anyhow::Result<PathBuf> {
        let d = self.data();
        if !d.is_dir() {
            bail!(super::InvalidInput(format!(
                "no movies at {}: put the challenge's tt*.pkl files there (or pass --data DIR), \
                 or try lgss with synthetic ones: lgss synth --out {} --movies 12 --seed 1",
                d.display(),
                d.display()
            )));
        }
        Ok(d)
    }

    /// A new run folder, `runs/YYYYMMDD-HHMMSS` (UTC), not yet created.
    pub fn new_run(&self) -> PathBuf {
        let stamp = utc_stamp(std::time::SystemTime::now());
        let mut run = self.runs().join(&stamp);
        let mut n = 2;
        while run.exists() {
            run = self.runs().join(format!("{stamp}-{n}"));
            n += 1;
        }
        run
    }

    /// Points `runs/latest` at `run` (a relative link, replaced atomically).
    pub fn set_latest(&self, run: &Path) -> anyhow::Result<()> {
        let name = run.file_name().context("a run folder has a name")?;
        let tmp = self.runs().join(format!(".latest.{}.tmp", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(name, &tmp)
            .and_then(|()| std::fs::rename(&tmp, self.latest()))
            .with_context(|| {
                format!(
                    "{}: cannot point it at {}",
                    self.latest().display(),
                    run.display()
                )
            })
    }

    /// Whether `run` sits directly in `runs/` (so `latest` may follow it).
    pub fn is_run(&self, run: &Path) -> bool {
        let canon = |p: &Path| p.canonicalize().ok();
        run.parent().and_then(canon).is_some() && run.parent().and_then(canon) == canon(&self.runs())
    }

    /// The latest run's best checkpoint, or an error naming the command
    /// that makes one.
    pub fn latest_checkpoint(&self) -> anyhow::Result<PathBuf> {
        let p = self.latest().join("best.safetensors");
        if !p.exists() {
            bail!(
                "no checkpoint given and none at {}: train one with `lgss train`, or pass --checkpoint",
                p.display()
            );
        }
        Ok(p)
    }

    /// The latest run's exported model, or an error naming the command.
    pub fn latest_model(&self) -> anyhow::Result<PathBuf> {
        let p = self.latest().join("model.onnx");
        if !p.exists() {
            bail!(
                "no model given and none at {}: make one with `lgss export --onnx` (after `lgss train`), \
                 or pass --model",
                p.display()
            );
        }
        Ok(p)
    }
}

/// `YYYYMMDD-HHMMSS` of a time, in UTC.
fn utc_stamp(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_stamps() {
        let at = |s: u64| super::utc_stamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(at(0), "19700101-000000");
        // 2026-11-27 10:20:31 UTC, and a leap day.
        assert_eq!(at(1_795_774_831), "20261127-102031");
        assert_eq!(at(951_782_400), "20000229-000000");
    }
}
