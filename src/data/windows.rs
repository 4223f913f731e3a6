//! From movies to model inputs: boundary windows and sequences of them.
//!
//! Boundary `i` (between shots `i` and `i + 1`) is seen through the window
//! of shots `i - shot_num/2 + 1 ..= i + shot_num/2`, edge shots replicated,
//! so every boundary of every movie gets a prediction. A sample is
//! `seq_len` consecutive boundaries; a movie's last sequence is padded (with
//! its last boundary) and the padding is masked out of loss and metrics.
//! Training, evaluation and every runtime use these same functions.

/// Shot indices of the window of `boundary` in a movie of `n_shots` shots.
pub fn window_shots(boundary: usize, n_shots: usize, shot_num: usize) -> impl Iterator<Item = usize> {
    let first = boundary as isize - shot_num as isize / 2 + 1;
    let last = n_shots as isize - 1;
    (0..shot_num as isize).map(move |j| (first + j).clamp(0, last) as usize)
}

/// One sample: `seq_len` consecutive boundaries of one movie starting at
/// `start`, of which the first `valid` are real.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequence {
    pub movie: usize,
    pub start: usize,
    pub valid: usize,
}

/// Cuts a movie's boundaries into sequences of `seq_len`.
pub fn sequences(movie: usize, n_shots: usize, seq_len: usize) -> Vec<Sequence> {
    let n_boundaries = n_shots.saturating_sub(1);
    (0..n_boundaries)
        .step_by(seq_len)
        .map(|start| Sequence {
            movie,
            start,
            valid: seq_len.min(n_boundaries - start),
        })
        .collect()
}

/// Row indices into a bank of all movies' shots stacked (`offsets[m]` is
/// movie `m`'s first row), as `[batch, seq_len, shot_num]` flattened; padded
/// slots repeat the sequence's last real boundary.
pub fn batch_rows(
    batch: &[Sequence],
    offsets: &[usize],
    n_shots: &[usize],
    seq_len: usize,
    shot_num: usize,
) -> Vec<i64> {
    let mut rows = Vec::with_capacity(batch.len() * seq_len * shot_num);
    for s in batch {
        for t in 0..seq_len {
            let boundary = s.start + t.min(s.valid - 1);
            let base = offsets[s.movie];
            rows.extend(window_shots(boundary, n_shots[s.movie], shot_num).map(|r| (base + r) as i64));
        }
    }
    rows
}

/// The distinct rows that window `rows` name, increasing, and `rows`
/// renumbered into them: what a network that embeds each shot once needs
/// (each distinct shot embedded, the windows gathered from the embeddings).
pub fn distinct_rows(rows: &[i64]) -> (Vec<usize>, Vec<i64>) {
    let mut distinct: Vec<usize> = rows.iter().map(|&r| r as usize).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let local = rows
        .iter()
        .map(|&r| distinct.partition_point(|&d| d < r as usize) as i64)
        .collect();
    (distinct, local)
}

/// The model input of `n_sequences` sequences from one movie's per-shot
/// features `[n_shots, D]`: the rows [`batch_rows`] names, gathered, as
/// `[n_sequences, seq_len, shot_num, D]`.
pub fn gather_windows(
    features: ndarray::ArrayView2<'_, f32>,
    rows: &[i64],
    seq_len: usize,
    shot_num: usize,
) -> ndarray::Array4<f32> {
    gather_windows_stacked(&[(features, rows)], seq_len, shot_num)
}

/// [`gather_windows`] of several movies' sequences at once, stacked in the
/// order given: each part is one movie's per-shot features and its
/// [`batch_rows`]. One copy of each row (no per-movie arrays to join).
pub fn gather_windows_stacked(
    parts: &[(ndarray::ArrayView2<'_, f32>, &[i64])],
    seq_len: usize,
    shot_num: usize,
) -> ndarray::Array4<f32> {
    let dim = parts.first().map_or(0, |(f, _)| f.ncols());
    let n_rows: usize = parts.iter().map(|(_, rows)| rows.len()).sum();
    let mut data = Vec::with_capacity(n_rows * dim);
    for (features, rows) in parts {
        for &r in *rows {
            let row = features.row(r as usize);
            match row.as_slice() {
                Some(values) => data.extend_from_slice(values),
                None => data.extend(row.iter().copied()),
            }
        }
    }
    let n_sequences = n_rows / (seq_len * shot_num).max(1);
    ndarray::Array4::from_shape_vec((n_sequences, seq_len, shot_num, dim), data)
        .expect("batch_rows gives seq_len × shot_num rows a sequence, each of the features' width")
}
