//! Which movies are tested on, and which sequences train and validate.

use std::collections::HashMap;

use anyhow::{anyhow, bail};

use super::bank::Bank;
use crate::data::dataset::file_stem;
use crate::data::scene318::Split as NamedSplit;
use crate::data::windows::Sequence;
use crate::rng::Rng;

/// Stream id for [`Rng::derive`] of the validation split.
const VAL_STREAM: u64 = 0x0076_616c;

/// A run's movies and sequences.
pub(super) struct Split {
    /// Movies trained and validated on.
    pub trainval: Vec<usize>,
    /// Movies held out for the final test.
    pub test: Vec<usize>,
    pub train_seqs: Vec<Sequence>,
    pub val_seqs: Vec<Sequence>,
    /// Validation by whole movies: the last this many of `trainval`.
    pub val_movies: Option<usize>,
}

impl Split {
    pub fn new(
        bank: &Bank,
        test_fraction: f64,
        val_movies: Option<usize>,
        val_fraction: f64,
        seed: u64,
    ) -> anyhow::Result<Split> {
        let (trainval, test) = split_movies(bank.movies.len(), test_fraction)?;
        let (train_seqs, val_seqs) = split_train_val(bank, &trainval, val_movies, val_fraction, seed)?;
        Ok(Split {
            trainval,
            test,
            train_seqs,
            val_seqs,
            val_movies,
        })
    }

    /// The movies a split file names for each part (`--split`, a scene318
    /// root's `meta/split318.json`), matched to the loaded files by stem:
    /// train on `train`, validate on the whole `val` movies, test on `test`.
    pub fn named(bank: &Bank, named: &NamedSplit) -> anyhow::Result<Split> {
        let index: HashMap<String, usize> = bank
            .movies
            .iter()
            .enumerate()
            .map(|(i, m)| (file_stem(&m.file), i))
            .collect();
        let mut seen = vec![false; bank.movies.len()];
        let mut part = |ids: &[String], name: &str| -> anyhow::Result<Vec<usize>> {
            if ids.is_empty() {
                bail!("the split's {name} list is empty: training needs train, val and test movies");
            }
            ids.iter()
                .map(|id| {
                    let i = *index.get(id).ok_or_else(|| {
                        anyhow!("the split's {name} movie {id} is not among the movies loaded")
                    })?;
                    if std::mem::replace(&mut seen[i], true) {
                        bail!("the split lists movie {id} twice");
                    }
                    Ok(i)
                })
                .collect()
        };
        let train = part(&named.train, "train")?;
        let val = part(&named.val, "val")?;
        let test = part(&named.test, "test")?;
        let mut val_seqs = bank.sequences_of(&val);
        val_seqs.sort_by_key(|s| (s.movie, s.start));
        Ok(Split {
            train_seqs: bank.trainable_sequences_of(&train),
            val_seqs,
            val_movies: Some(val.len()),
            trainval: train.into_iter().chain(val).collect(),
            test,
        })
    }
}

/// Movie indices of (train+val, test): the last `test_fraction` of the
/// movies by file name are the test set.
pub fn split_movies(n: usize, test_fraction: f64) -> anyhow::Result<(Vec<usize>, Vec<usize>)> {
    if n < 2 {
        bail!("need at least 2 movies (one to train on, one to test on), found {n}");
    }
    let n_trainval = ((n as f64 * (1.0 - test_fraction)).floor() as usize).clamp(1, n - 1);
    Ok(((0..n_trainval).collect(), (n_trainval..n).collect()))
}

/// Splits the train+val movies' sequences into (train, val).
fn split_train_val(
    bank: &Bank,
    trainval: &[usize],
    val_movies: Option<usize>,
    val_fraction: f64,
    seed: u64,
) -> anyhow::Result<(Vec<Sequence>, Vec<Sequence>)> {
    match val_movies {
        Some(k) => {
            if k == 0 || k >= trainval.len() {
                bail!(
                    "--val-movies {k}: need between 1 and {} (there are {} non-test movies)",
                    trainval.len() - 1,
                    trainval.len()
                );
            }
            let cut = trainval.len() - k;
            Ok((
                bank.trainable_sequences_of(&trainval[..cut]),
                bank.sequences_of(&trainval[cut..]),
            ))
        }
        None => {
            let mut seqs = bank.sequences_of(trainval);
            Rng::derive(seed, VAL_STREAM).shuffle(&mut seqs);
            let n_val = ((seqs.len() as f64) * val_fraction).round() as usize;
            if n_val == 0 || n_val >= seqs.len() {
                bail!(
                    "{} sequences cannot be split {val_fraction} for validation",
                    seqs.len()
                );
            }
            let mut train = seqs.split_off(n_val);
            train.retain(|q| bank.has_scored(q));
            let mut val = seqs;
            val.sort_by_key(|s| (s.movie, s.start));
            Ok((train, val))
        }
    }
}
