//! Synthetic MovieScenes data: the real format, with structure like the real
//! data, for demos and tests where the real dataset cannot be had.
//!
//! A movie is a sequence of scenes of heavy-tailed length (about 13 shots on
//! average, so about 7.6% of transitions are boundaries). Each scene takes
//! place at a location from a recurring set, with two or three camera set-ups
//! that alternate (shot / reverse shot) and a few recurring characters.
//! - `place`: non-negative and sparse (post-ReLU CNN features): the
//!   location's prototype (mostly the film's overall look) plus the set-up's
//!   offset plus noise.
//! - `cast`: the mean of the visible characters' embeddings; an all-zero row
//!   when nobody is visible, as in the real data.
//! - `action`: the scene's activity plus per-shot motion; sometimes all zero,
//!   sometimes continuing from the previous scene.
//! - `audio`: the scene's ambience plus noise; it sometimes carries over a
//!   scene cut (music over a montage), which makes some cuts hard.
//!
//! Locations recur across scenes and consecutive scenes sometimes share a
//! location, so no single cue gives every boundary: a good model's AP stays
//! well below 1. Shot lengths are log-normal (median ~2.5 s at 24 fps). The
//! provided prediction is a weak baseline built from adjacent place features.
//! Every movie is a pure function of (seed, index).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::movie::{Features, Movie};
use crate::rng::Rng;

/// Feature widths, movie lengths and texture of a synthetic data set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SynthSpec {
    pub dims: [usize; 4],
    pub min_shots: usize,
    pub max_shots: usize,
    pub texture: Texture,
}

/// How the movies look beyond their size: knobs that change what makes a
/// cut visible, so that a training recipe can be checked on data it was not
/// tuned on. The defaults are the generator's own values: they give the
/// same bytes as before the knobs existed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Texture {
    /// Median scene length in shots (scene lengths are log-normal, 1–120).
    pub scene_median: f64,
    /// σ of the scene lengths' log-normal: their spread and tail.
    pub scene_spread: f64,
    /// Multipliers of the per-shot noise of place, cast, action and audio:
    /// how much each modality's shots vary around their scene's look, i.e.
    /// how uninformative the modality is.
    pub noise: [f64; 4],
    /// Chance that a scene's sound carries over its cut (music over a montage).
    pub audio_carryover: f64,
    /// Chance that a cut is a story cut with nothing visible or audible changing.
    pub story_cuts: f64,
    /// Chance that a cut stays in the same place.
    pub same_place: f64,
}

impl Default for Texture {
    fn default() -> Texture {
        Texture {
            scene_median: 9.0,
            scene_spread: 0.85,
            noise: [1.0; 4],
            audio_carryover: 0.35,
            story_cuts: 0.15,
            same_place: 0.3,
        }
    }
}

impl Texture {
    /// Every knob in its range, or what is wrong with it.
    pub fn validate(&self) -> Result<(), String> {
        let chance = [
            ("audio carry-over", self.audio_carryover),
            ("story cuts", self.story_cuts),
            ("same place", self.same_place),
        ];
        for (what, p) in chance {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{what} chance {p} is not within [0, 1]"));
            }
        }
        if !(1.0..=120.0).contains(&self.scene_median) {
            return Err(format!(
                "scene median {} is not within [1, 120] shots",
                self.scene_median
            ));
        }
        if !(0.0..=3.0).contains(&self.scene_spread) {
            return Err(format!("scene spread {} is not within [0, 3]", self.scene_spread));
        }
        for (m, k) in ["place", "cast", "action", "audio"].iter().zip(self.noise) {
            if !(0.0..=100.0).contains(&k) {
                return Err(format!("{m} noise multiplier {k} is not within [0, 100]"));
            }
        }
        Ok(())
    }
}

impl SynthSpec {
    /// The real data's widths and movie lengths.
    pub fn full() -> SynthSpec {
        SynthSpec {
            dims: [2048, 512, 512, 512],
            min_shots: 500,
            max_shots: 2500,
            texture: Texture::default(),
        }
    }

    /// Small widths for fast tests and CPU demos.
    pub fn small() -> SynthSpec {
        SynthSpec {
            dims: [64, 32, 32, 32],
            min_shots: 150,
            max_shots: 400,
            texture: Texture::default(),
        }
    }

    pub fn by_name(name: &str) -> Option<SynthSpec> {
        match name {
            "full" => Some(SynthSpec::full()),
            "small" => Some(SynthSpec::small()),
            _ => None,
        }
    }
}

/// File name of synthetic movie `index` (IMDb style, 1-based).
pub fn imdb_id(index: usize) -> String {
    format!("tt{:07}", index + 1)
}

fn unit_vector(rng: &mut Rng, dim: usize) -> Vec<f32> {
    let v: Vec<f64> = (0..dim).map(|_| rng.normal()).collect();
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    v.iter().map(|x| (x / norm) as f32).collect()
}

/// A sparse non-negative place prototype: about a third of the units active.
fn place_prototype(rng: &mut Rng, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|_| {
            if rng.bernoulli(0.35) {
                (rng.log_normal(-0.3, 0.6)) as f32
            } else {
                0.0
            }
        })
        .collect()
}

#[derive(Clone)]
struct Scene {
    len: usize,
    location: usize,
    characters: Vec<usize>,
    activity: Vec<f32>,
    audio: Vec<f32>,
    setups: Vec<Vec<f32>>,
}

/// Generates synthetic movie `index` of the data set `seed`.
pub fn movie(seed: u64, index: usize, size: &SynthSpec) -> Movie {
    let mut rng = Rng::derive(seed, index as u64);
    let [dp, dc, da, du] = size.dims;
    let t = &size.texture;
    // The generator's per-shot noise scales times the texture's multipliers
    // (1 by default: the same f32 values, so the same bytes).
    let noise = |base: f32, m: usize| base * t.noise[m] as f32;
    let (place_noise, cast_noise) = (noise(0.9, 0), noise(0.3, 1));
    let (action_noise, audio_noise) = (noise(1.6, 2), noise(1.5, 3));
    let n_target = rng.range(size.min_shots, size.max_shots.max(size.min_shots));

    let n_locations = rng.range(8, 24);
    // A film has one look: most of every location's features are the
    // film's, a minority its own, so places differ less than random scenes.
    let look = place_prototype(&mut rng, dp);
    let locations: Vec<Vec<f32>> = (0..n_locations)
        .map(|_| {
            let own = place_prototype(&mut rng, dp);
            look.iter()
                .zip(own)
                .map(|(&l, o)| if rng.bernoulli(0.7) { l } else { o })
                .collect()
        })
        .collect();
    let n_characters = rng.range(6, 30);
    let characters: Vec<Vec<f32>> = (0..n_characters).map(|_| unit_vector(&mut rng, dc)).collect();
    // Zipf-like popularity: lead characters and main locations recur most.
    let pick_zipf = |rng: &mut Rng, n: usize| -> usize {
        let h: f64 = (1..=n).map(|k| 1.0 / k as f64).sum();
        let mut u = rng.uniform() * h;
        for k in 1..=n {
            u -= 1.0 / k as f64;
            if u <= 0.0 {
                return k - 1;
            }
        }
        n - 1
    };

    // Scenes until the movie is long enough.
    let mut scenes: Vec<Scene> = Vec::new();
    let mut total = 0usize;
    while total < n_target {
        let len = (rng.log_normal(t.scene_median.ln(), t.scene_spread).round() as usize).clamp(1, 120);
        let len = len.min(n_target - total).max(1);
        let prev_loc = scenes.last().map(|s| s.location);
        let location = match prev_loc {
            Some(p) if rng.bernoulli(t.same_place) => p, // a cut that stays in the same place
            _ => pick_zipf(&mut rng, n_locations),
        };
        let n_chars = rng.range(1, 3);
        let mut chars: Vec<usize> = (0..n_chars).map(|_| pick_zipf(&mut rng, n_characters)).collect();
        // Stories continue: a character often stays on across the cut.
        if let Some(prev) = scenes.last() {
            if rng.bernoulli(0.5) {
                chars[0] = prev.characters[rng.range(0, prev.characters.len() - 1)];
            }
        }
        let activity: Vec<f32> = match scenes.last() {
            Some(prev) if rng.bernoulli(0.3) => prev.activity.clone(),
            _ => (0..da).map(|_| rng.normal() as f32 * 0.8).collect(),
        };
        let audio = match scenes.last() {
            // Music or sound that carries over the cut.
            Some(prev) if rng.bernoulli(t.audio_carryover) => prev.audio.clone(),
            _ => (0..du).map(|_| rng.normal() as f32).collect(),
        };
        let n_setups = rng.range(2, 3);
        let setups = (0..n_setups)
            .map(|_| (0..dp).map(|_| rng.normal() as f32 * 0.8).collect())
            .collect();
        let scene = Scene {
            len,
            location,
            characters: chars,
            activity,
            audio,
            setups,
        };
        // A story cut with nothing visible or audible changing: the same
        // place, people, action and sound go on (annotators cut by story).
        let scene = match scenes.last() {
            Some(prev) if rng.bernoulli(t.story_cuts) => Scene { len, ..prev.clone() },
            _ => scene,
        };
        scenes.push(scene);
        total += len;
    }
    let n = total;

    let mut place = Vec::with_capacity(n * dp);
    let mut cast = Vec::with_capacity(n * dc);
    let mut action = Vec::with_capacity(n * da);
    let mut audio = Vec::with_capacity(n * du);
    let mut ground_truth = Vec::with_capacity(n - 1);
    for (si, scene) in scenes.iter().enumerate() {
        for k in 0..scene.len {
            // Shot / reverse shot: set-ups alternate, with occasional inserts.
            let setup = if rng.bernoulli(0.15) {
                rng.range(0, scene.setups.len() - 1)
            } else {
                k % 2
            };
            let setup = &scene.setups[setup.min(scene.setups.len() - 1)];
            // A cutaway: one shot of somewhere else inside the scene.
            let cutaway = rng.bernoulli(0.06);
            let loc = if cutaway {
                &locations[rng.range(0, n_locations - 1)]
            } else {
                &locations[scene.location]
            };
            for d in 0..dp {
                let v = loc[d] + setup[d] + rng.normal() as f32 * place_noise;
                place.push(if loc[d] > 0.0 || rng.bernoulli(0.05) {
                    v.max(0.0)
                } else {
                    0.0
                });
            }
            // Visible characters: the set-up's character, sometimes all, sometimes none.
            let visible: Vec<usize> = if cutaway || rng.bernoulli(0.22) {
                Vec::new()
            } else if rng.bernoulli(0.3) {
                scene.characters.clone()
            } else {
                vec![scene.characters[k % scene.characters.len()]]
            };
            if visible.is_empty() {
                cast.extend(std::iter::repeat_n(0.0f32, dc));
            } else {
                let start = cast.len();
                cast.resize(start + dc, 0.0);
                for &c in &visible {
                    for (out, &e) in cast[start..].iter_mut().zip(&characters[c]) {
                        *out += e / visible.len() as f32;
                    }
                }
                for out in &mut cast[start..] {
                    *out += rng.normal() as f32 * cast_noise;
                }
            }
            if rng.bernoulli(0.08) {
                action.extend(std::iter::repeat_n(0.0f32, da));
            } else {
                action.extend(
                    scene
                        .activity
                        .iter()
                        .map(|&a| a + rng.normal() as f32 * action_noise),
                );
            }
            audio.extend(scene.audio.iter().map(|&a| a + rng.normal() as f32 * audio_noise));
            let last_shot = si + 1 == scenes.len() && k + 1 == scene.len;
            if !last_shot {
                ground_truth.push(k + 1 == scene.len);
            }
        }
    }

    let mut shot_end_frame = Vec::with_capacity(n);
    let mut frame = -1i64;
    for _ in 0..n {
        frame += (rng.log_normal(60.0f64.ln(), 0.8).round() as i64).clamp(6, 2400);
        shot_end_frame.push(frame);
    }

    let prediction = baseline_prediction(&place, dp, n, &mut rng);
    let feat = |rows: usize, dim: usize, data: Vec<f32>| {
        Some(Features::from_shape_vec((rows, dim), data).expect("rows × dim values generated"))
    };
    Movie {
        imdb_id: imdb_id(index),
        features: [
            feat(n, dp, place),
            feat(n, dc, cast),
            feat(n, da, action),
            feat(n, du, audio),
        ],
        ground_truth: Some(ground_truth),
        scored: None,
        shot_end_frame,
        prediction: Some(prediction),
    }
}

/// A weak baseline: how different the places of the two shots before and
/// the two after each boundary look (standardised per movie, with much
/// noise), squashed to [0, 1].
fn baseline_prediction(place: &[f32], dim: usize, n: usize, rng: &mut Rng) -> Vec<f64> {
    let mean_rows = |a: usize, b: usize| -> Vec<f64> {
        let mut m = vec![0f64; dim];
        for i in a..=b {
            for (acc, &x) in m.iter_mut().zip(&place[i * dim..(i + 1) * dim]) {
                *acc += x as f64;
            }
        }
        m
    };
    let cos = |a: &[f64], b: &[f64]| {
        let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
        for (&x, &y) in a.iter().zip(b) {
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        ab / (aa.sqrt() * bb.sqrt()).max(1e-8)
    };
    let d: Vec<f64> = (0..n - 1)
        .map(|i| {
            1.0 - cos(
                &mean_rows(i.saturating_sub(1), i),
                &mean_rows(i + 1, (i + 2).min(n - 1)),
            )
        })
        .collect();
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    let sd = (d.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / d.len() as f64)
        .sqrt()
        .max(1e-12);
    d.iter()
        .map(|&x| {
            let z = (x - mean) / sd * 1.0 - 1.8 + rng.normal() * 1.6;
            // Stored as f32 in the file; round here so memory and file agree.
            (1.0 / (1.0 + (-z).exp())) as f32 as f64
        })
        .collect()
}

/// Replaces a synthetic movie's audio vectors by SceneSeg-style 257×90
/// STFT images (flattened): each frequency bin takes the level of one of
/// the vector's elements (bands of ~257/D bins), around −40 dB in steps of
/// 10 dB per unit, plus ±2 dB of per-pixel noise. What the vectors said
/// about scenes (ambience, carry-over, noise) is what the images say.
pub fn stft_audio(movie: &mut Movie, seed: u64, index: usize) {
    use super::stft_image;
    let Some(vectors) = movie.features[super::movie::Modality::Audio.index()].take() else {
        return;
    };
    let [bins, frames] = stft_image::SHAPE;
    let (n, du) = vectors.dim();
    let mut rng = Rng::derive(seed ^ 0x5354_4654_u64, index as u64);
    let mut images = Features::zeros((n, stft_image::DIM));
    for (mut image, v) in images.rows_mut().into_iter().zip(vectors.rows()) {
        for f in 0..bins {
            let level = -40.0 + 10.0 * v[f * du / bins];
            for t in 0..frames {
                image[f * frames + t] = level + 2.0 * rng.normal() as f32;
            }
        }
    }
    movie.features[super::movie::Modality::Audio.index()] = Some(images);
}

/// How synthetic audio is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AudioForm {
    /// One vector a shot (MovieScenes' and scene318's 512-d features).
    #[default]
    Features,
    /// One 257×90 STFT image a shot, as SceneSeg's `aud_feat`
    /// (`--layout scene318` only; models with `audio_input = "stft"`).
    Stft,
}

/// How a data set is laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    /// One MovieScenes pickle a movie (`<imdb_id>.pkl`).
    Pickle,
    /// MovieNet's scene318 tree (SceneSeg's), with its split file.
    Scene318,
}

/// Writes `count` movies into `dir` as MovieScenes pickles, returning their paths.
pub fn write_dataset(
    dir: &Path,
    seed: u64,
    count: usize,
    size: &SynthSpec,
    on_done: &(dyn Fn() + Sync),
) -> anyhow::Result<Vec<PathBuf>> {
    write_dataset_as(
        Layout::Pickle,
        dir,
        seed,
        count,
        size,
        AudioForm::Features,
        on_done,
    )
}

/// Writes `count` movies into `dir` in `layout`, returning the paths that
/// stand for them. The same seed gives the same movies in either layout; a
/// scene318 tree gets the split lgss makes of a folder of pickles
/// ([`super::scene318::Split::of_ids`]).
pub fn write_dataset_as(
    layout: Layout,
    dir: &Path,
    seed: u64,
    count: usize,
    size: &SynthSpec,
    audio: AudioForm,
    on_done: &(dyn Fn() + Sync),
) -> anyhow::Result<Vec<PathBuf>> {
    if audio == AudioForm::Stft && layout != Layout::Scene318 {
        anyhow::bail!("STFT audio is written in the scene318 layout only (SceneSeg's aud_feat images)");
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("{}: cannot create directory: {e}", dir.display()))?;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(count.max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<anyhow::Result<Vec<(usize, PathBuf)>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= count {
                            return Ok(done);
                        }
                        let mut m = movie(seed, i, size);
                        if audio == AudioForm::Stft {
                            stft_audio(&mut m, seed, i);
                        }
                        let path = match layout {
                            Layout::Pickle => {
                                let path = dir.join(format!("{}.pkl", m.imdb_id));
                                super::pickle_write::write_movie(&path, &m)?;
                                path
                            }
                            Layout::Scene318 => super::scene318::write_movie(dir, &m)?,
                        };
                        on_done();
                        done.push((i, path));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a synth worker panicked")))
            })
            .collect()
    });
    let mut all = Vec::with_capacity(count);
    for r in results {
        all.extend(r?);
    }
    all.sort();
    if layout == Layout::Scene318 {
        let ids: Vec<String> = (0..count).map(imdb_id).collect();
        super::scene318::Split::of_ids(&ids)?.write(dir)?;
    }
    Ok(all.into_iter().map(|(_, p)| p).collect())
}
