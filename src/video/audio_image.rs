//! A shot's audio as SceneSeg's 257×90 STFT image
//! (`pre/audio/extract_feat.py`): the shot's 16 kHz mono samples scaled to
//! [−1, 1] by their own extremes, librosa's STFT (`n_fft = 512`, hop 128,
//! periodic Hann window, centred with zero padding), the magnitude in dB
//! (`amplitude_to_db`: floor 1e-5, 80 dB below the shot's loudest bin),
//! the columns tiled until they cover four time units of 3 s, and 30
//! columns around each of the three inner quarter marks.
//!
//! Only the 90 columns kept are stored: tiling repeats the original
//! columns, so each kept column is an original one, and the loudest bin
//! is found in one pass over all of them. Arithmetic follows librosa's
//! dtypes: samples and dB in f32, each frame's FFT in f64 (numpy
//! multiplies the f32 samples by an f64 window), the spectrum rounded to
//! complex64 before its magnitude is taken.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use crate::data::stft_image;

pub const N_FFT: usize = 512;
pub const HOP: usize = N_FFT / 4;
const BINS: usize = N_FFT / 2 + 1;
/// SceneSeg's sampling: k = 3 spans of 30 columns, time unit 3 s.
const SPANS: usize = 3;
const HALF_SPAN: usize = 15;
const TIME_UNIT: f64 = 3.0;
/// SceneSeg's stand-in for a shot without audio: 4 s of silence.
pub const SILENT_SAMPLES: usize = 16_000 * 4;

/// Computes images with one FFT plan.
pub struct AudioImager {
    fft: Arc<dyn Fft<f64>>,
    window: Vec<f64>,
    buf: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
}

impl Default for AudioImager {
    fn default() -> Self {
        AudioImager::new()
    }
}

impl AudioImager {
    pub fn new() -> AudioImager {
        let fft = FftPlanner::new().plan_fft_forward(N_FFT);
        // scipy's get_window('hann', 512, fftbins=True): periodic.
        let window = (0..N_FFT)
            .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / N_FFT as f64).cos())
            .collect();
        let scratch = vec![Complex::default(); fft.get_inplace_scratch_len()];
        AudioImager {
            fft,
            window,
            buf: vec![Complex::default(); N_FFT],
            scratch,
        }
    }

    /// The image of one shot's 16 kHz samples (`bins × 90`, row-major,
    /// [`stft_image::SHAPE`]); silence stands in for an empty shot.
    pub fn image(&mut self, samples: &[f32]) -> Vec<f32> {
        let silence;
        let samples = if samples.is_empty() {
            silence = vec![0f32; SILENT_SAMPLES];
            &silence[..]
        } else {
            samples
        };
        let data = normalise(samples);
        let n0 = 1 + data.len() / HOP;
        let columns = kept_columns(n0, data.len());
        // Each kept original column, in order, with its dB values.
        let mut wanted: Vec<usize> = columns.clone();
        wanted.sort_unstable();
        wanted.dedup();
        let mut kept: Vec<(usize, Vec<f32>)> = Vec::with_capacity(wanted.len());
        let mut loudest = f32::NEG_INFINITY;
        let mut next = wanted.iter().peekable();
        let mut db = vec![0f32; BINS];
        for t in 0..n0 {
            self.frame_db(&data, t, &mut db);
            for &v in &db {
                loudest = loudest.max(v);
            }
            if next.peek() == Some(&&t) {
                next.next();
                kept.push((t, db.clone()));
            }
        }
        let floor = loudest - 80.0;
        let [bins, frames] = stft_image::SHAPE;
        debug_assert_eq!((bins, frames), (BINS, columns.len()));
        let mut image = vec![0f32; bins * frames];
        for (j, col) in columns.iter().enumerate() {
            let Ok(k) = kept.binary_search_by_key(col, |(t, _)| *t) else {
                continue;
            };
            for (b, &v) in kept[k].1.iter().enumerate() {
                image[b * frames + j] = v.max(floor);
            }
        }
        image
    }

    /// Frame `t`'s dB values before the 80 dB floor: 10·log10(max(1e-10, |X|²)).
    fn frame_db(&mut self, data: &[f32], t: usize, out: &mut [f32]) {
        // Centred: the signal padded with n_fft/2 zeros on each side.
        let start = (t * HOP) as isize - (N_FFT / 2) as isize;
        for (i, c) in self.buf.iter_mut().enumerate() {
            let j = start + i as isize;
            let x = if j >= 0 && (j as usize) < data.len() {
                f64::from(data[j as usize])
            } else {
                0.0
            };
            *c = Complex::new(x * self.window[i], 0.0);
        }
        self.fft.process_with_scratch(&mut self.buf, &mut self.scratch);
        for (o, c) in out.iter_mut().zip(&self.buf[..BINS]) {
            let m = (c.re as f32).hypot(c.im as f32);
            *o = 10.0 * (m * m).max(1e-10f32).log10();
        }
    }
}

/// `(x − mid) / half-range` in f32, as SceneSeg scales each shot.
fn normalise(samples: &[f32]) -> Vec<f32> {
    let max = samples.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let min = samples.iter().copied().fold(f32::INFINITY, f32::min);
    let mean = (max + min) / 2.0;
    let mut span = (max - min) / 2.0;
    if span < 1e-6 {
        span = 1.0;
    }
    samples.iter().map(|&x| (x - mean) / span).collect()
}

/// The original columns (of `n0`) behind the 90 SceneSeg samples from the
/// tiled spectrogram of a `len`-sample shot.
pub fn kept_columns(n0: usize, len: usize) -> Vec<usize> {
    let seconds = len as f64 / 16_000.0;
    let rate = n0 as f64 / seconds;
    let k = SPANS as f64;
    let needed = (TIME_UNIT * rate / k * (k + 1.0)).ceil() as usize;
    let n = if n0 >= needed {
        n0
    } else {
        n0 * needed.div_ceil(n0)
    };
    // numpy.array_split(arange(n), 4): the first n % 4 parts one longer.
    let (part, extra) = (n / (SPANS + 1), n % (SPANS + 1));
    (1..=SPANS)
        .flat_map(|i| {
            let milestone = i * part + i.min(extra);
            (milestone.saturating_sub(HALF_SPAN)..milestone + HALF_SPAN).map(move |c| c % n0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_shot_tiles_and_a_long_one_does_not() {
        // 1 s: 126 columns, tiled to 504 (needs ceil(4 × 126) = 504).
        let cols = kept_columns(126, 16_000);
        assert_eq!(cols.len(), 90);
        assert_eq!(cols[0], 126 - 15);
        // 10 s: 1251 columns, no tiling; milestones at 313, 626, 939.
        let cols = kept_columns(1251, 160_000);
        assert_eq!(cols[15], 313);
        assert_eq!(cols[45], 626);
        assert_eq!(cols[75], 939);
    }

    #[test]
    fn silence_is_the_floor_everywhere() {
        let image = AudioImager::new().image(&[]);
        assert_eq!(image.len(), stft_image::DIM);
        // 10·log10(1e-10) in f32.
        assert!((image[0] + 100.0).abs() < 1e-4, "{}", image[0]);
        assert!(image.iter().all(|&v| v == image[0]));
    }
}
