//! Shot boundaries from decoded frames, as the LGSS authors cut their
//! shots (SceneSeg's ShotDetect, `ContentDetectorHSVLUV`), or as
//! PySceneDetect's `ContentDetector` does (`--detector content`).
//!
//! Both difference each frame with the one before in 8-bit colour planes
//! ([`super::colour`]) and cut where the difference passes a threshold, at
//! least `min_shot_len` frames after the previous cut. They differ in what
//! they look at and how they thin cuts:
//! - HSV-LUV (SceneSeg): the mean HSV difference must reach the threshold
//!   (20) and either pass it by 10, or a weighted Luv difference must
//!   pass 20 (`luv + 5·(hsv − threshold) > 20`); frames are subsampled
//!   (`frame[::d, ::d]`, d by width from ShotDetect's table).
//! - Content (PySceneDetect 0.7): the mean of the hue, saturation and value
//!   differences against 27; a cut too close to the previous one starts a
//!   merge that ends at the last frame above the threshold once the
//!   difference stays below it long enough (its flash filter's `MERGE`
//!   mode); frames wider than 256 pixels are resized to 256 wide first.

use super::colour::{self, Planes};

/// Which detector cuts the shots.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum DetectorKind {
    /// SceneSeg's ShotDetect (`ContentDetectorHSVLUV`, threshold 20).
    #[default]
    HsvLuv,
    /// PySceneDetect's `ContentDetector` (threshold 27).
    Content,
}

impl DetectorKind {
    pub fn default_threshold(self) -> f64 {
        match self {
            DetectorKind::HsvLuv => 20.0,
            DetectorKind::Content => 27.0,
        }
    }
}

/// How shots are cut.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DetectorSettings {
    pub kind: DetectorKind,
    pub threshold: f64,
    /// Frames from one cut to the next, at least.
    pub min_shot_len: u64,
}

impl DetectorSettings {
    pub fn new(kind: DetectorKind) -> DetectorSettings {
        DetectorSettings {
            kind,
            threshold: kind.default_threshold(),
            min_shot_len: 15,
        }
    }
}

/// ShotDetect's downscale factor for a frame `width` pixels wide.
pub fn sceneseg_downscale(width: usize) -> usize {
    const FACTORS: [(usize, usize); 7] = [
        (3200, 12),
        (2100, 8),
        (1700, 6),
        (1200, 5),
        (900, 4),
        (600, 3),
        (400, 2),
    ];
    FACTORS.iter().find(|(w, _)| width >= *w).map_or(1, |(_, f)| *f)
}

/// PySceneDetect's processing size for a `width × height` frame: the
/// larger side brought to 256 pixels (`None`: no resize).
pub fn pyscenedetect_size(width: usize, height: usize) -> Option<(usize, usize)> {
    let factor = width.max(height) as f64 / 256.0;
    (factor > 1.0).then(|| {
        (
            ((width as f64 / factor).round_ties_even() as usize).max(1),
            ((height as f64 / factor).round_ties_even() as usize).max(1),
        )
    })
}

/// One frame's differences from the frame before (the detectors' stats).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FrameStats {
    pub frame: u64,
    /// Mean absolute difference of hue, saturation, value, and their mean.
    pub hsv: [f64; 4],
    /// The same in Luv (HSV-LUV only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub luv: Option<[f64; 4]>,
}

/// A shot: frames `start..end` (end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Shot {
    pub start: u64,
    pub end: u64,
}

impl Shot {
    /// ShotDetect's middle keyframe of three: `start + ⌊(end − 1 − start) / 2⌋`.
    pub fn middle(&self) -> u64 {
        self.start + (self.end - 1 - self.start) / 2
    }
}

/// SceneSeg's gap: an HSV difference this far past the threshold cuts
/// whatever the Luv difference.
const HSV_LUV_GAP: f64 = 10.0;

/// A detector fed one frame at a time.
pub struct Detector {
    settings: DetectorSettings,
    /// Every frame's Luv differences too, not only where the rule needs them.
    all_stats: bool,
    /// The previous frame: its HSV planes and the (sub)sampled BGR pixels
    /// they came from, for its Luv planes when needed.
    last: Option<(Planes, Vec<u8>)>,
    frame: u64,
    cuts: Vec<u64>,
    stats: Vec<FrameStats>,
    last_cut: Option<u64>,
    flash: FlashMerge,
}

impl Detector {
    /// A detector; `all_stats` computes the Luv differences of every frame
    /// (for `--stats`), where the HSV-LUV rule needs them only when the HSV
    /// difference falls between the threshold and threshold + 10.
    pub fn new(settings: DetectorSettings, all_stats: bool) -> Detector {
        Detector {
            settings,
            all_stats,
            last: None,
            frame: 0,
            cuts: Vec::new(),
            stats: Vec::new(),
            last_cut: None,
            flash: FlashMerge::new(settings.min_shot_len),
        }
    }

    /// The pixels the detector looks at: SceneSeg's `[::d, ::d]`, or
    /// PySceneDetect's frame resized to 256 pixels on its larger side.
    fn sampled(&self, bgr: &[u8], width: usize, height: usize) -> Vec<u8> {
        let mut out = Vec::new();
        match self.settings.kind {
            DetectorKind::HsvLuv => {
                let step = sceneseg_downscale(width);
                out.reserve(width.div_ceil(step) * height.div_ceil(step) * 3);
                for row in (0..height).step_by(step) {
                    let line = &bgr[row * width * 3..(row + 1) * width * 3];
                    for px in line.chunks_exact(3).step_by(step) {
                        out.extend_from_slice(px);
                    }
                }
                out
            }
            DetectorKind::Content => match pyscenedetect_size(width, height) {
                Some((w, h)) => {
                    super::resize::bilinear_opencv(bgr, width, height, w, h, &mut out);
                    out
                }
                None => bgr.to_vec(),
            },
        }
    }

    /// Feeds the next frame (BGR, `width × height × 3`).
    pub fn push(&mut self, bgr: &[u8], width: usize, height: usize) {
        let frame = self.frame;
        self.frame += 1;
        let pixels = self.sampled(bgr, width, height);
        let hsv = colour::planes(&pixels, colour::hsv);
        let Some((last_hsv, last_pixels)) = self.last.take() else {
            if self.settings.kind == DetectorKind::Content {
                // PySceneDetect scores the first frame 0 (below any threshold).
                self.flash.filter(frame, false);
            }
            self.last = Some((hsv, pixels));
            return;
        };
        let hsv_deltas = deltas(&hsv, &last_hsv);
        let t = self.settings.threshold;
        let luv = (self.settings.kind == DetectorKind::HsvLuv
            && (self.all_stats || (hsv_deltas[3] >= t && hsv_deltas[3] - t < HSV_LUV_GAP)))
            .then(|| {
                deltas(
                    &colour::planes(&pixels, colour::luv),
                    &colour::planes(&last_pixels, colour::luv),
                )
            });
        self.last = Some((hsv, pixels));
        let stats = FrameStats {
            frame,
            hsv: hsv_deltas,
            luv,
        };
        self.stats.push(stats);
        match self.settings.kind {
            DetectorKind::HsvLuv => self.hsv_luv_rule(&stats),
            DetectorKind::Content => {
                let above = stats.hsv[3] >= self.settings.threshold;
                if let Some(cut) = self.flash.filter(frame, above) {
                    self.cuts.push(cut);
                }
            }
        }
    }

    /// SceneSeg's `ContentDetectorHSVLUV` rule.
    fn hsv_luv_rule(&mut self, s: &FrameStats) {
        const LUV_THRESHOLD: f64 = 20.0;
        const HSV_WEIGHT: f64 = 5.0;
        let hsv = s.hsv[3];
        let t = self.settings.threshold;
        // Luv is computed exactly where it decides (see `push`).
        let luv = || s.luv.map_or(0.0, |l| l[3]);
        let cut = hsv >= t && (hsv - t >= HSV_LUV_GAP || luv() + HSV_WEIGHT * (hsv - t) > LUV_THRESHOLD);
        let spaced = self
            .last_cut
            .is_none_or(|last| s.frame - last >= self.settings.min_shot_len);
        if cut && spaced {
            self.cuts.push(s.frame);
            self.last_cut = Some(s.frame);
        }
    }

    /// Frames fed so far.
    pub fn frames(&self) -> u64 {
        self.frame
    }

    /// The shots of the frames fed (one shot when there is no cut), and
    /// each frame's stats.
    pub fn finish(mut self) -> (Vec<Shot>, Vec<FrameStats>) {
        self.cuts.sort_unstable();
        self.cuts.dedup();
        let mut shots = Vec::with_capacity(self.cuts.len() + 1);
        let mut start = 0;
        for &cut in self.cuts.iter().filter(|&&c| c > 0 && c < self.frame) {
            shots.push(Shot { start, end: cut });
            start = cut;
        }
        if self.frame > start {
            shots.push(Shot {
                start,
                end: self.frame,
            });
        }
        (shots, self.stats)
    }
}

/// Mean absolute differences of three planes, and their mean (Python's
/// `sum(deltas) / 3.0`, summed in order).
fn deltas(a: &Planes, b: &Planes) -> [f64; 4] {
    let d = [0, 1, 2].map(|i| colour::mean_abs_diff(&a[i], &b[i]));
    [d[0], d[1], d[2], (d[0] + d[1] + d[2]) / 3.0]
}

/// PySceneDetect's flash filter in `MERGE` mode, for a length in frames.
struct FlashMerge {
    length: u64,
    last_above: Option<u64>,
    merge_enabled: bool,
    merge_start: Option<u64>,
}

impl FlashMerge {
    fn new(length: u64) -> FlashMerge {
        FlashMerge {
            length,
            last_above: None,
            merge_enabled: false,
            merge_start: None,
        }
    }

    fn filter(&mut self, frame: u64, above: bool) -> Option<u64> {
        if self.length == 0 {
            return above.then_some(frame);
        }
        let last_above = *self.last_above.get_or_insert(frame);
        let min_length_met = frame - last_above >= self.length;
        if above {
            self.last_above = Some(frame);
        }
        if let Some(start) = self.merge_start {
            let last = self.last_above.unwrap_or(frame);
            if min_length_met && !above && last - start >= self.length {
                self.merge_start = None;
                return Some(last);
            }
            return None;
        }
        if !above {
            return None;
        }
        if min_length_met {
            self.merge_enabled = true;
            return Some(frame);
        }
        if self.merge_enabled {
            self.merge_start = Some(frame);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downscale_factors_follow_both_tools() {
        assert_eq!(sceneseg_downscale(1920), 6);
        assert_eq!(sceneseg_downscale(399), 1);
        assert_eq!(pyscenedetect_size(1920, 1080), Some((256, 144)));
        assert_eq!(pyscenedetect_size(256, 144), None);
        assert_eq!(Shot { start: 10, end: 20 }.middle(), 14);
        assert_eq!(Shot { start: 10, end: 11 }.middle(), 10);
    }
}
