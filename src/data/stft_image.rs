//! The shape of SceneSeg's audio feature: one STFT image a shot
//! (`pre/audio/extract_feat.py`: `n_fft = 512`, so 257 frequency bins, and
//! three 30-frame spans), stored flattened row-major where a movie holds
//! one vector a shot. The data layer reads and writes it; the model's
//! audio network takes it.

/// Frequency bins and frames of one image.
pub const SHAPE: [usize; 2] = [257, 90];
/// The image flattened row-major: the audio feature width it implies.
pub const DIM: usize = SHAPE[0] * SHAPE[1];
