//! One model run's input, per modality: windows, or the run's distinct
//! shots with the row each window position takes.
//!
//! Most modalities go in as windows (`[batch, seq_len, shot_num, D]`,
//! [`ModelConfig::input_shape`]): their boundary net looks at the window
//! as a whole. A modality whose network first embeds each shot on its own
//! ([`ModelConfig::takes_shots`]: SceneSeg's STFT audio CNN) goes in as
//! the run's distinct shots `[n, D]` and, per window position, the row of
//! its shot (`[batch · seq_len · shot_num]`): the network then embeds each
//! shot once and the windows gather the embeddings, instead of embedding
//! every shot once per window it is in (`shot_num` times). BatchNorm in
//! evaluation mode normalises each sample by its running statistics, so
//! both give the same function. A run of B consecutive sequences of one
//! movie holds B·seq_len + shot_num − 1 distinct shots for
//! B·seq_len·shot_num window positions.

use std::ops::Range;

use anyhow::{ensure, Context};
use ndarray::{Array2, ArrayView2, ArrayView4, Axis, CowArray, Ix2, Ix4};

use crate::data::windows::{distinct_rows, gather_windows_stacked};
use crate::model::config::ModelConfig;

/// One modality's part of a run.
#[derive(Debug, Clone)]
pub enum ModalityInput<'a> {
    /// `[batch, seq_len, shot_num, D]`.
    Windows(CowArray<'a, f32, Ix4>),
    /// The run's shots `[n, D]`, and for each window position, in the
    /// windows' order, the row of `shots` that fills it.
    Shots {
        shots: CowArray<'a, f32, Ix2>,
        rows: Vec<i64>,
    },
}

/// The input of one model run: `batch` sequences, one
/// [`ModalityInput`] per configured modality, in the config's order, each
/// of the form [`ModelConfig::takes_shots`] gives it.
#[derive(Debug, Clone)]
pub struct RunInput<'a> {
    batch: usize,
    modalities: Vec<ModalityInput<'a>>,
}

impl<'a> RunInput<'a> {
    /// A run from windows given whole (checked against `config`). A
    /// per-shot modality's window positions each become a shot of their
    /// own: the same function, at the per-window cost.
    pub fn from_windows(
        config: &ModelConfig,
        windows: &'a [ArrayView4<'_, f32>],
    ) -> anyhow::Result<RunInput<'a>> {
        ensure!(
            windows.len() == config.modalities.len(),
            "{} inputs for a model of {} modalities",
            windows.len(),
            config.modalities.len()
        );
        let batch = windows.first().map_or(0, |x| x.dim().0);
        let mut modalities = Vec::with_capacity(windows.len());
        for (&m, x) in config.modalities.iter().zip(windows) {
            let want = config.input_shape(m, batch);
            ensure!(
                x.shape() == want,
                "{m} input has shape {:?}, the model takes {want:?}",
                x.shape()
            );
            modalities.push(if config.takes_shots(m) {
                let positions = batch * config.seq_len * config.shot_num;
                let shots = x
                    .view()
                    .into_shape_with_order((positions, want[3]))
                    .map_err(|e| anyhow::anyhow!("{m} input: {e}"))?;
                ModalityInput::Shots {
                    shots: CowArray::from(shots),
                    rows: (0..positions as i64).collect(),
                }
            } else {
                ModalityInput::Windows(CowArray::from(x.view()))
            });
        }
        Ok(RunInput { batch, modalities })
    }

    /// The run of `parts`, one after another: each is one movie's per-shot
    /// features (one `[n_shots, D]` per configured modality) and the rows
    /// of its sequences ([`crate::data::windows::batch_rows`]).
    pub fn gather(config: &ModelConfig, parts: &[(&[ArrayView2<'_, f32>], &[i64])]) -> RunInput<'static> {
        let (s, k) = (config.seq_len, config.shot_num);
        let positions: usize = parts.iter().map(|(_, rows)| rows.len()).sum();
        let modalities = config
            .modalities
            .iter()
            .enumerate()
            .map(|(i, &m)| {
                if config.takes_shots(m) {
                    let compacted: Vec<(Array2<f32>, Vec<i64>)> = parts
                        .iter()
                        .map(|(features, rows)| compact(features[i].view(), rows))
                        .collect();
                    let (shots, rows) = concatenate(compacted, config.feature_dims.get(m));
                    ModalityInput::Shots {
                        shots: CowArray::from(shots),
                        rows,
                    }
                } else {
                    let stacked: Vec<(ArrayView2<f32>, &[i64])> =
                        parts.iter().map(|(f, rows)| (f[i].view(), *rows)).collect();
                    ModalityInput::Windows(CowArray::from(gather_windows_stacked(&stacked, s, k)))
                }
            })
            .collect();
        RunInput {
            batch: positions / (s * k).max(1),
            modalities,
        }
    }

    /// Sequences in the run.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The modalities' inputs, in the config's order.
    pub fn modalities(&self) -> &[ModalityInput<'a>] {
        &self.modalities
    }

    /// Sequences `range` of this run as a run of their own (a per-shot
    /// modality keeps only the shots they use).
    pub fn sequences(&self, range: Range<usize>, config: &ModelConfig) -> RunInput<'_> {
        let per_sequence = config.seq_len * config.shot_num;
        let modalities = self
            .modalities
            .iter()
            .map(|x| match x {
                ModalityInput::Windows(w) => {
                    ModalityInput::Windows(CowArray::from(w.slice_axis(Axis(0), range.clone().into())))
                }
                ModalityInput::Shots { shots, rows } => {
                    let rows = &rows[range.start * per_sequence..range.end * per_sequence];
                    let (shots, rows) = compact(shots.view(), rows);
                    ModalityInput::Shots {
                        shots: CowArray::from(shots),
                        rows,
                    }
                }
            })
            .collect();
        RunInput {
            batch: range.len(),
            modalities,
        }
    }

    /// The same run with every window position of a per-shot modality its
    /// own shot: the per-window cost (each shot embedded once per window
    /// it is in), for measuring what the per-shot form saves.
    pub fn per_window(&self) -> RunInput<'_> {
        let modalities = self
            .modalities
            .iter()
            .map(|x| match x {
                ModalityInput::Shots { shots, rows } => {
                    let (shots, rows) = run_shots(shots.view(), rows, true);
                    ModalityInput::Shots {
                        shots: CowArray::from(shots),
                        rows,
                    }
                }
                ModalityInput::Windows(w) => ModalityInput::Windows(CowArray::from(w.view())),
            })
            .collect();
        RunInput {
            batch: self.batch,
            modalities,
        }
    }

    /// The most shots any per-shot modality holds (0 without one).
    pub fn max_shots(&self) -> usize {
        self.modalities
            .iter()
            .map(|x| match x {
                ModalityInput::Shots { shots, .. } => shots.nrows(),
                ModalityInput::Windows(_) => 0,
            })
            .max()
            .unwrap_or(0)
    }

    /// Checks the run against `config`: one input per modality, of the
    /// form and width it takes, every row naming one of its shots.
    pub fn check(&self, config: &ModelConfig) -> anyhow::Result<()> {
        ensure!(
            self.modalities.len() == config.modalities.len(),
            "{} inputs for a model of {} modalities",
            self.modalities.len(),
            config.modalities.len()
        );
        let positions = self.batch * config.seq_len * config.shot_num;
        for (&m, x) in config.modalities.iter().zip(&self.modalities) {
            let d = config.feature_dims.get(m);
            match x {
                ModalityInput::Windows(w) => {
                    ensure!(
                        !config.takes_shots(m),
                        "{m} input is windows, the model takes shots"
                    );
                    let want = config.input_shape(m, self.batch);
                    ensure!(
                        w.shape() == want,
                        "{m} input has shape {:?}, the model takes {want:?}",
                        w.shape()
                    );
                    ensure!(w.is_standard_layout(), "{m} input is not in standard layout");
                }
                ModalityInput::Shots { shots, rows } => {
                    ensure!(
                        config.takes_shots(m),
                        "{m} input is shots, the model takes windows"
                    );
                    ensure!(
                        shots.ncols() == d,
                        "{m} shots have {} columns, the model takes {d}",
                        shots.ncols()
                    );
                    ensure!(shots.is_standard_layout(), "{m} shots are not in standard layout");
                    ensure!(
                        rows.len() == positions,
                        "{m} has {} window rows for {positions} window positions",
                        rows.len()
                    );
                    let n = shots.nrows() as i64;
                    if let Some(r) = rows.iter().find(|&&r| !(0..n).contains(&r)) {
                        anyhow::bail!("{m} window row {r} is not one of its {n} shots");
                    }
                }
            }
        }
        Ok(())
    }

    /// Input `i`'s windows as one slice (`[batch, seq_len, shot_num, D]`).
    pub fn windows_slice(&self, i: usize) -> anyhow::Result<&[f32]> {
        match &self.modalities[i] {
            ModalityInput::Windows(w) => w.as_slice().context("windows not in standard layout"),
            ModalityInput::Shots { .. } => anyhow::bail!("input {i} is shots, not windows"),
        }
    }
}

/// A per-shot modality's input for window positions `rows` (into one
/// movie's `features`): its distinct shots and the rows renumbered into
/// them, or with `per_window` each position's shot on its own.
pub fn run_shots(features: ArrayView2<'_, f32>, rows: &[i64], per_window: bool) -> (Array2<f32>, Vec<i64>) {
    if per_window {
        let index: Vec<usize> = rows.iter().map(|&r| r as usize).collect();
        (features.select(Axis(0), &index), (0..rows.len() as i64).collect())
    } else {
        compact(features, rows)
    }
}

/// The distinct rows of `features` that `rows` name, in increasing order,
/// and `rows` renumbered into them.
fn compact(features: ArrayView2<'_, f32>, rows: &[i64]) -> (Array2<f32>, Vec<i64>) {
    let (distinct, rows) = distinct_rows(rows);
    (features.select(Axis(0), &distinct), rows)
}

/// Several parts' compacted shots stacked, each part's rows offset by the
/// shots before it.
fn concatenate(parts: Vec<(Array2<f32>, Vec<i64>)>, d: usize) -> (Array2<f32>, Vec<i64>) {
    if parts.len() == 1 {
        return parts
            .into_iter()
            .next()
            .unwrap_or_else(|| (Array2::zeros((0, d)), Vec::new()));
    }
    let n: usize = parts.iter().map(|(s, _)| s.nrows()).sum();
    let mut data = Vec::with_capacity(n * d);
    let mut rows = Vec::with_capacity(parts.iter().map(|(_, r)| r.len()).sum());
    let mut offset = 0i64;
    for (shots, part_rows) in parts {
        rows.extend(part_rows.iter().map(|r| r + offset));
        offset += shots.nrows() as i64;
        data.extend(shots);
    }
    (
        Array2::from_shape_vec((n, d), data).expect("each part's shots are d wide"),
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::movie::Modality;
    use crate::data::windows::{batch_rows, gather_windows, sequences};

    fn config() -> ModelConfig {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/sceneseg-small.toml");
        let mut c = crate::model::Config::load(&path).unwrap().model;
        c.modalities = vec![Modality::Place, Modality::Audio];
        c.feature_dims.place = 3;
        c
    }

    fn features(n: usize, d: usize, salt: f32) -> Array2<f32> {
        Array2::from_shape_fn((n, d), |(i, j)| salt + i as f32 * 10.0 + j as f32 * 0.01)
    }

    /// Per-shot rows, looked up, give exactly the windows; one movie's run
    /// of B consecutive sequences holds B·s + k − 1 distinct shots (fewer
    /// at the movie's ends, where windows clamp).
    #[test]
    fn shots_and_rows_give_the_windows() {
        let c = config();
        let (s, k) = (c.seq_len, c.shot_num);
        let d_audio = c.feature_dims.audio;
        let n = 57;
        let place = features(n, 3, 0.0);
        let audio = features(n, d_audio, 0.5);
        let seqs = sequences(0, n, s);
        let movie = [place.view(), audio.view()];
        for run in seqs.chunks(2) {
            let rows = batch_rows(run, &[0], &[n], s, k);
            let input = RunInput::gather(&c, &[(&movie, &rows)]);
            input.check(&c).unwrap();
            assert_eq!(input.batch(), run.len());
            let ModalityInput::Shots { shots, rows: local } = &input.modalities()[1] else {
                panic!("audio is per shot");
            };
            let looked_up = shots.select(Axis(0), &local.iter().map(|&r| r as usize).collect::<Vec<_>>());
            let windows = gather_windows(audio.view(), &rows, s, k);
            assert_eq!(looked_up.as_slice().unwrap(), windows.as_slice().unwrap());
            let first = run[0].start as isize - k as isize / 2 + 1;
            let last = (run[run.len() - 1].start + s - 1) as isize + k as isize / 2;
            let expected = (last.min(n as isize - 1) - first.max(0) + 1) as usize;
            assert_eq!(shots.nrows(), expected);
            assert!(expected < run.len() * s + k);
            let ModalityInput::Windows(w) = &input.modalities()[0] else {
                panic!("place is windows");
            };
            assert_eq!(w, &gather_windows(place.view(), &rows, s, k));
            // A part of the run, and the per-window form, name the same shots.
            let half = input.sequences(run.len() - 1..run.len(), &c);
            half.check(&c).unwrap();
            let wide = input.per_window();
            wide.check(&c).unwrap();
            let ModalityInput::Shots { shots: all, rows: id } = &wide.modalities()[1] else {
                panic!("audio is per shot");
            };
            assert_eq!(all.nrows(), run.len() * s * k);
            assert_eq!(all.as_slice().unwrap(), windows.as_slice().unwrap());
            assert!(id.iter().enumerate().all(|(i, &r)| r == i as i64));
        }
    }

    /// Windows given whole become shots one per window position; parts of
    /// two movies stack; a row outside the shots is refused.
    #[test]
    fn windows_and_parts_of_several_movies() {
        let c = config();
        let (s, k) = (c.seq_len, c.shot_num);
        let d_audio = c.feature_dims.audio;
        let (a, b) = (
            [features(20, 3, 0.0), features(20, d_audio, 0.0)],
            [features(31, 3, 7.0), features(31, d_audio, 7.0)],
        );
        let (va, vb) = ([a[0].view(), a[1].view()], [b[0].view(), b[1].view()]);
        let ra = batch_rows(&sequences(0, 20, s)[..1], &[0], &[20], s, k);
        let rb = batch_rows(&sequences(0, 31, s)[1..3], &[0], &[31], s, k);
        let both = RunInput::gather(&c, &[(&va, &ra), (&vb, &rb)]);
        both.check(&c).unwrap();
        assert_eq!(both.batch(), 3);
        let ModalityInput::Shots { shots, rows } = &both.modalities()[1] else {
            panic!("audio is per shot");
        };
        let looked_up = shots.select(Axis(0), &rows.iter().map(|&r| r as usize).collect::<Vec<_>>());
        let mut expected = gather_windows(a[1].view(), &ra, s, k).into_raw_vec_and_offset().0;
        expected.extend(gather_windows(b[1].view(), &rb, s, k).into_raw_vec_and_offset().0);
        assert_eq!(looked_up.as_slice().unwrap(), expected.as_slice());

        let windows = [
            gather_windows(a[0].view(), &ra, s, k),
            gather_windows(a[1].view(), &ra, s, k),
        ];
        let views: Vec<_> = windows.iter().map(|w| w.view()).collect();
        let given = RunInput::from_windows(&c, &views).unwrap();
        given.check(&c).unwrap();
        let ModalityInput::Shots { shots, .. } = &given.modalities()[1] else {
            panic!("audio is per shot");
        };
        assert_eq!(shots.nrows(), s * k);

        let mut bad = both.clone();
        if let ModalityInput::Shots { rows, .. } = &mut bad.modalities[1] {
            rows[5] = 10_000;
        }
        let e = bad.check(&c).unwrap_err().to_string();
        assert!(e.contains("audio window row 10000 is not one of its"), "{e}");
    }
}
