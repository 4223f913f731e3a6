//! A video file into a movie of a scene318 tree, as SceneSeg's `pre/`
//! scripts make one: shots, each shot's middle keyframe through a place
//! network, each shot's audio as an STFT image. Everything downstream
//! (`segment`, `info`, `train`, Python) then reads the tree unchanged.
//!
//! ```text
//! ROOT/shot_movie318/<id>.txt          "<first> <last> <k1> <k2> <k3>" a shot (ShotDetect's shot_txt)
//! ROOT/place_feat/<id>/shot_NNNN.npy   the place network's vector (with --place-model)
//! ROOT/aud_feat/<id>/shot_NNNN.npy     the 257×90 STFT image
//! ROOT/shot_stats/<id>.csv             each frame's differences (with --stats)
//! ROOT/shot_keyf/<id>/shot_NNNN_img_1.jpg  each shot's middle keyframe (with --keyframes)
//! ROOT/thumbnails/<id>/shot_NNNN.jpg   its thumbnail, 160 pixels wide (for `segment --html`)
//! ROOT/meta/videos/<id>.json           the video: path, frame rate, size, detector
//! ROOT/meta/split318.json              every movie of the tree in `all`
//! ```
//!
//! The video is decoded twice (shots, then keyframes: a middle frame is
//! known only when its shot ends) and its audio once, each by FFmpeg
//! ([`super::ffmpeg`]); memory holds two frames, one batch of keyframes
//! and one shot's audio, whatever the length of the film. A movie's files
//! are written before its entry in the split, so a tree never lists a
//! movie whose files are not all there.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, Context};
use serde::Serialize;

use super::audio_image::AudioImager;
use super::ffmpeg::{self, Probe, AUDIO_RATE};
use super::place::{self, PlaceModel};
use super::shots::{Detector, DetectorSettings, FrameStats, Shot};
use crate::data::npy::save_f32_shaped;
use crate::data::scene318::{Split, SPLIT_FILE};
use crate::data::stft_image;
use crate::fsutil::write_atomic;
use crate::progress::Progress;

/// File extensions taken as videos when a folder is given.
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg", "ts", "mts", "m2ts", "wmv", "flv", "ogv",
    "3gp", "mxf",
];

/// Whether `path` is named like a video.
pub fn is_video_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// A movie id from a video's file name: its stem, with anything but
/// letters, digits, `_`, `-` and `.` as `_` (ids name files of the tree).
pub fn video_id(path: &Path) -> anyhow::Result<String> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let id = id.trim_start_matches('.').to_string();
    if id.is_empty() {
        anyhow::bail!("{}: no file name to take a movie id from", path.display());
    }
    Ok(id)
}

/// What to extract besides shots and audio.
#[derive(Debug, Clone, Serialize)]
pub struct ExtractOptions {
    pub detector: DetectorSettings,
    /// Write each frame's differences to `shot_stats/<id>.csv`.
    pub stats: bool,
    /// Write each shot's middle keyframe to `shot_keyf/<id>/shot_NNNN_img_1.jpg`.
    #[serde(default)]
    pub keyframes: bool,
}

/// What the video's movie is, written beside it (`meta/videos/<id>.json`)
/// for the outputs that point back at the picture.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct VideoMeta {
    pub id: String,
    /// The video's path, absolute, as extracted.
    pub video: PathBuf,
    /// Frames are numbered at this rate from the video's first frame.
    pub fps_num: u64,
    pub fps_den: u64,
    pub variable_frame_rate: bool,
    pub width: u32,
    pub height: u32,
    pub rotation: i32,
    pub frames: u64,
    pub container: String,
    pub codec: String,
    pub audio: bool,
    pub detector: DetectorSettings,
    pub place_model: Option<PathBuf>,
}

impl VideoMeta {
    pub fn fps(&self) -> f64 {
        self.fps_num as f64 / self.fps_den as f64
    }

    /// Reads `ROOT/meta/videos/<id>.json`, if the tree has it.
    pub fn read(root: &Path, id: &str) -> anyhow::Result<Option<VideoMeta>> {
        let path = meta_path(root, id);
        if std::fs::symlink_metadata(&path).is_err() {
            return Ok(None);
        }
        let text = crate::regular_file::read_to_string(&path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("{}: not a video description", path.display()))
    }
}

fn meta_path(root: &Path, id: &str) -> PathBuf {
    root.join("meta/videos").join(format!("{id}.json"))
}

/// One video done.
#[derive(Debug, Clone, Serialize)]
pub struct Extracted {
    pub id: String,
    pub video: PathBuf,
    pub frames: u64,
    pub shots: usize,
    pub fps: f64,
    pub seconds: f64,
    pub audio: bool,
    pub place_dim: Option<usize>,
    /// FFmpeg's messages about damage it decoded past.
    pub warnings: Vec<String>,
    /// Wall time of each pass, seconds.
    pub shot_seconds: f64,
    pub place_seconds: f64,
    pub audio_seconds: f64,
}

/// Extracts `video` into the tree at `root` as movie `id`.
pub fn extract_video(
    video: &Path,
    id: &str,
    root: &Path,
    options: &ExtractOptions,
    place: Option<&mut PlaceModel>,
    place_path: Option<&Path>,
    progress: &dyn Progress,
) -> anyhow::Result<Extracted> {
    let probe = ffmpeg::probe(video)?;
    let mut warnings = Vec::new();

    let t = Instant::now();
    let (shots, stats) = detect_shots(&probe, options.detector, options.stats, progress, &mut warnings)?;
    let shot_seconds = t.elapsed().as_secs_f64();
    if shots.len() < 2 {
        anyhow::bail!(
            "{}: {} shot{} in {} frames: a movie needs at least 2 to segment",
            video.display(),
            shots.len(),
            if shots.len() == 1 { "" } else { "s" },
            shots.last().map_or(0, |s| s.end)
        );
    }
    let frames = shots.last().map_or(0, |s| s.end);

    let t = Instant::now();
    let jpegs = options.keyframes.then(|| root.join("shot_keyf").join(id));
    let thumbnails = thumbnails_dir(root, id);
    let place_rows = if place.is_some() || jpegs.is_some() {
        keyframe_pass(
            &probe,
            &shots,
            place,
            jpegs.as_deref(),
            Some(&thumbnails),
            progress,
            &mut warnings,
        )?
    } else {
        None
    };
    let place_seconds = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let audio_images = audio_features(&probe, &shots, progress, &mut warnings)?;
    let audio_seconds = t.elapsed().as_secs_f64();

    write_movie(root, id, &shots, place_rows.as_ref(), &audio_images)?;
    if options.stats {
        write_stats(root, id, &stats)?;
    }
    let meta = VideoMeta {
        id: id.to_string(),
        video: std::path::absolute(video).unwrap_or_else(|_| video.to_path_buf()),
        fps_num: probe.rate.num,
        fps_den: probe.rate.den,
        variable_frame_rate: probe.variable_rate,
        width: probe.width,
        height: probe.height,
        rotation: probe.rotation,
        frames,
        container: probe.container.clone(),
        codec: probe.codec.clone(),
        audio: probe.audio.is_some(),
        detector: options.detector,
        place_model: place_path.map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())),
    };
    let meta_file = meta_path(root, id);
    create_parent(&meta_file)?;
    write_atomic(
        &meta_file,
        (serde_json::to_string_pretty(&meta)? + "\n").as_bytes(),
    )?;
    add_to_split(root, id)?;
    Ok(Extracted {
        id: id.to_string(),
        video: video.to_path_buf(),
        frames,
        shots: shots.len(),
        fps: probe.rate.fps(),
        seconds: frames as f64 / probe.rate.fps(),
        audio: probe.audio.is_some(),
        place_dim: place_rows.as_ref().map(|r| r.ncols()),
        warnings,
        shot_seconds,
        place_seconds,
        audio_seconds,
    })
}

/// The first pass: every frame through the detector.
pub fn detect_shots(
    probe: &Probe,
    settings: DetectorSettings,
    all_stats: bool,
    progress: &dyn Progress,
    warnings: &mut Vec<String>,
) -> anyhow::Result<(Vec<Shot>, Vec<FrameStats>)> {
    let frames = ffmpeg::frames(probe)?;
    let expected = probe
        .duration
        .map_or(0, |d| (d * probe.rate.fps()).round() as usize);
    progress.start("shots", expected, 0);
    let mut detector = Detector::new(settings, all_stats);
    let (width, height) = (frames.width, frames.height);
    // One thread reads the pipe while this one looks at the frame before,
    // so FFmpeg does not wait on the detector: three buffers go round.
    let frames = std::thread::scope(|s| -> anyhow::Result<ffmpeg::Frames> {
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        for _ in 0..3 {
            let _ = empty_tx.send(Vec::new());
        }
        let reader = s.spawn(move || -> anyhow::Result<ffmpeg::Frames> {
            let mut frames = frames;
            while let Ok(mut buf) = empty_rx.recv() {
                if !frames.next_into(&mut buf)? || full_tx.send(buf).is_err() {
                    break;
                }
            }
            Ok(frames)
        });
        for buf in full_rx {
            detector.push(&buf, width, height);
            progress.advance(1);
            let _ = empty_tx.send(buf);
        }
        drop(empty_tx);
        reader.join().map_err(|_| anyhow!("the frame reader failed"))?
    })?;
    progress.finish();
    if let Some(w) = frames.finish()?.warnings {
        warnings.push(format!("{}: decoded past damage: {w}", probe.path.display()));
    }
    if detector.frames() == 0 {
        anyhow::bail!("{}: no frame could be decoded", probe.path.display());
    }
    Ok(detector.finish())
}

/// Keyframes in one batch before the network runs.
const PLACE_BATCH: usize = 16;

/// A folder's staging twin, created empty: FFmpeg writes into it, and it
/// is renamed into place when complete.
fn staging_for(dir: &Path) -> anyhow::Result<PathBuf> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = dir.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).with_context(|| format!("{}: cannot create", staging.display()))?;
    Ok(staging)
}

/// The second pass: each shot's middle frame through the place network
/// (with `model`), and written by FFmpeg as a JPEG into `jpegs` and as a
/// thumbnail into `thumbnails` (each through a staging folder renamed into
/// place when complete).
fn keyframe_pass(
    probe: &Probe,
    shots: &[Shot],
    mut model: Option<&mut PlaceModel>,
    jpegs: Option<&Path>,
    thumbnails: Option<&Path>,
    progress: &dyn Progress,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Option<ndarray::Array2<f32>>> {
    let middles: Vec<u64> = shots.iter().map(Shot::middle).collect();
    // FFmpeg reads the script when it starts; it is removed when this returns.
    let script = tempfile::Builder::new()
        .prefix("lgss-select-")
        .suffix(".txt")
        .tempfile()
        .context("cannot create a temporary file")?;
    let jpegs_staging = jpegs.map(staging_for).transpose()?;
    let thumbnails_staging = thumbnails.map(staging_for).transpose()?;
    let pictures = ffmpeg::Pictures {
        keyframes: jpegs_staging.as_deref(),
        thumbnails: thumbnails_staging.as_deref(),
    };
    // (staging, final folder) of each folder FFmpeg writes.
    let staged: Vec<(&Path, &Path)> = [
        (jpegs_staging.as_deref(), jpegs),
        (thumbnails_staging.as_deref(), thumbnails),
    ]
    .into_iter()
    .filter_map(|(staging, dir)| Some((staging?, dir?)))
    .collect();
    let mut frames = ffmpeg::frames_selected(probe, Some((&middles, script.path())), pictures)?;
    progress.start("keyframes", shots.len(), 0);
    let mut rows: Vec<ndarray::Array2<f32>> = Vec::new();
    let mut batch: Vec<Vec<f32>> = Vec::with_capacity(PLACE_BATCH);
    let mut buf = Vec::new();
    let mut got = 0;
    while got < middles.len() && frames.next_into(&mut buf)? {
        got += 1;
        progress.advance(1);
        let Some(model) = model.as_deref_mut() else {
            continue;
        };
        batch.push(place::input_tensor(&buf, frames.width, frames.height));
        if batch.len() == PLACE_BATCH {
            rows.push(model.features(&batch)?);
            batch.clear();
        }
    }
    if got < middles.len() {
        anyhow::bail!(
            "{}: the second decoding gave {got} of the {} keyframes the first found",
            probe.path.display(),
            middles.len()
        );
    }
    if let (Some(model), false) = (model.as_deref_mut(), batch.is_empty()) {
        rows.push(model.features(&batch)?);
    }
    progress.finish();
    drop(buf);
    let done = if staged.is_empty() {
        // The rest of the video is not needed: stop FFmpeg.
        frames.finish_early()?
    } else {
        // FFmpeg finishes its JPEGs before it ends: wait for it.
        while frames.next_into(&mut Vec::new())? {}
        let done = frames.finish()?;
        for (staging, dir) in &staged {
            let _ = std::fs::remove_dir_all(dir);
            std::fs::rename(staging, dir).with_context(|| format!("{}: cannot write", dir.display()))?;
        }
        done
    };
    if let Some(w) = done.warnings {
        warnings.push(format!("{}: decoded past damage: {w}", probe.path.display()));
    }
    if model.is_none() {
        return Ok(None);
    }
    let views: Vec<ndarray::ArrayView2<'_, f32>> = rows.iter().map(|r| r.view()).collect();
    Ok(Some(
        ndarray::concatenate(ndarray::Axis(0), &views).map_err(|e| anyhow!("place features: {e}"))?,
    ))
}

/// Each shot's audio image; SceneSeg's silence for a video without audio.
fn audio_features(
    probe: &Probe,
    shots: &[Shot],
    progress: &dyn Progress,
    warnings: &mut Vec<String>,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut imager = AudioImager::new();
    let Some(mut samples) = ffmpeg::audio_16k_mono(probe)? else {
        let silent = imager.image(&[]);
        return Ok(vec![silent; shots.len()]);
    };
    let audio_start = probe.audio.as_ref().map_or(0.0, |a| a.start);
    let fps = probe.rate.fps();
    // A frame's time on the audio track's sample clock.
    let sample_at = |frame: u64| -> u64 {
        let t = frame as f64 / fps + probe.video_start - audio_start;
        (t * f64::from(AUDIO_RATE)).round().max(0.0) as u64
    };
    progress.start("audio", shots.len(), 0);
    let mut images = Vec::with_capacity(shots.len());
    let mut shot_samples = Vec::new();
    for shot in shots {
        let (from, to) = (sample_at(shot.start), sample_at(shot.end));
        if from > samples.position {
            samples.skip(from - samples.position)?;
        }
        shot_samples.clear();
        samples.read(to.saturating_sub(samples.position.max(from)), &mut shot_samples)?;
        images.push(imager.image(&shot_samples));
        progress.advance(1);
    }
    progress.finish();
    if let Some(w) = samples.finish()?.warnings {
        warnings.push(format!(
            "{}: audio decoded past damage: {w}",
            probe.path.display()
        ));
    }
    Ok(images)
}

fn create_parent(path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))
}

/// The movie's files; the shot file last of them.
fn write_movie(
    root: &Path,
    id: &str,
    shots: &[Shot],
    place: Option<&ndarray::Array2<f32>>,
    audio: &[Vec<f32>],
) -> anyhow::Result<()> {
    let write_rows = |dir: &str, row: &dyn Fn(usize) -> Vec<u8>| -> anyhow::Result<()> {
        let dir = root.join(dir).join(id);
        // A re-extraction replaces the movie's shots: none of the old may stay.
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("{}: cannot replace", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        for s in 0..shots.len() {
            write_atomic(&dir.join(format!("shot_{s:04}.npy")), &row(s))?;
        }
        Ok(())
    };
    if let Some(place) = place {
        write_rows("place_feat", &|s| {
            let row: Vec<f32> = place.row(s).to_vec();
            save_f32_shaped(&row, &[row.len()])
        })?;
    }
    write_rows("aud_feat", &|s| save_f32_shaped(&audio[s], &stft_image::SHAPE))?;
    let mut text = String::new();
    for shot in shots {
        // ShotDetect's shot_txt: first, last, and three frames between.
        let (first, last) = (shot.start, shot.end - 1);
        let step = (last - first) / 4;
        text.push_str(&format!(
            "{first} {last} {} {} {}\n",
            first + step,
            first + 2 * step,
            first + 3 * step
        ));
    }
    let path = root.join("shot_movie318").join(format!("{id}.txt"));
    create_parent(&path)?;
    write_atomic(&path, text.as_bytes())
}

fn write_stats(root: &Path, id: &str, stats: &[FrameStats]) -> anyhow::Result<()> {
    let mut text = String::from("frame,hsv_content_val,delta_hsv_hue,delta_hsv_sat,delta_hsv_lum,luv_content_val,delta_luv_hue,delta_luv_sat,delta_luv_lum\n");
    for s in stats {
        let luv = s.luv.map_or(
            [String::new(), String::new(), String::new(), String::new()],
            |l| l.map(|x| format!("{x:?}")),
        );
        text.push_str(&format!(
            "{},{:?},{:?},{:?},{:?},{},{},{},{}\n",
            s.frame, s.hsv[3], s.hsv[0], s.hsv[1], s.hsv[2], luv[3], luv[0], luv[1], luv[2]
        ));
    }
    let path = root.join("shot_stats").join(format!("{id}.csv"));
    create_parent(&path)?;
    write_atomic(&path, text.as_bytes())
}

/// Lists `id` in the tree's split (`all`; train/val/test stay as they are),
/// writing a new split when the tree has none.
fn add_to_split(root: &Path, id: &str) -> anyhow::Result<()> {
    let path = root.join(SPLIT_FILE);
    let mut split = if std::fs::symlink_metadata(&path).is_ok() {
        Split::read(&path)?
    } else {
        Split {
            train: Vec::new(),
            val: Vec::new(),
            test: Vec::new(),
            all: Vec::new(),
        }
    };
    if !split.all.iter().any(|a| a == id) {
        split.all.push(id.to_string());
        split.write(root)?;
    }
    Ok(())
}

/// The videos among `inputs`: files as given, folders' videos by name
/// ([`VIDEO_EXTENSIONS`]), sorted within each folder.
pub fn expand_videos(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut videos = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let found = crate::data::dataset::files_named(p, |name| is_video_name(Path::new(name)))?;
            if found.is_empty() {
                anyhow::bail!(
                    "{}: no video files ({})",
                    p.display(),
                    VIDEO_EXTENSIONS.join(", ")
                );
            }
            videos.extend(found);
        } else if std::fs::symlink_metadata(p).is_ok() {
            videos.push(p.clone());
        } else {
            anyhow::bail!("{}: no such file or directory", p.display());
        }
    }
    Ok(videos)
}

/// Extracts videos into one tree: skips those done with the same settings
/// (`skip_done`, by the tree's manifest), goes on past a bad video and
/// reports it. `report` hears each video's outcome as it ends.
pub struct Catalogue<'a> {
    pub root: PathBuf,
    pub options: ExtractOptions,
    pub place: Option<(&'a mut PlaceModel, PathBuf)>,
    pub skip_done: bool,
}

/// How one video ended.
#[derive(Debug)]
pub enum Outcome {
    Done(Extracted),
    Skipped { id: String, video: PathBuf },
    Failed { video: PathBuf, error: anyhow::Error },
}

impl Catalogue<'_> {
    fn key(&self) -> anyhow::Result<crate::manifest::RunKey> {
        let model_sha256 = match &self.place {
            Some((_, path)) => crate::manifest::sha256_file(path)?,
            None => String::new(),
        };
        Ok(crate::manifest::RunKey {
            model_sha256,
            options: serde_json::to_value(&self.options)?,
        })
    }

    pub fn run(
        &mut self,
        videos: &[PathBuf],
        progress: &dyn Progress,
        report: &mut dyn FnMut(&Outcome),
    ) -> anyhow::Result<Vec<Outcome>> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("{}: cannot create", self.root.display()))?;
        let key = self.key()?;
        let mut ids = std::collections::HashMap::new();
        for v in videos {
            let id = video_id(v)?;
            if let Some(other) = ids.insert(id.clone(), v.clone()) {
                anyhow::bail!(
                    "{} and {}: both would be movie {id} of the tree; rename one",
                    other.display(),
                    v.display()
                );
            }
        }
        let mut outcomes = Vec::with_capacity(videos.len());
        for video in videos {
            let id = video_id(video)?;
            let shot_file = format!("shot_movie318/{id}.txt");
            if self.skip_done
                && crate::manifest::status(&self.root, &id, &key) == crate::manifest::Status::Done
                && Split::read(&self.root.join(SPLIT_FILE)).is_ok_and(|s| s.all.contains(&id))
            {
                let o = Outcome::Skipped {
                    id,
                    video: video.clone(),
                };
                report(&o);
                outcomes.push(o);
                continue;
            }
            let (model, model_path) = match &mut self.place {
                Some((m, p)) => (Some(&mut **m), Some(p.as_path())),
                None => (None, None),
            };
            let o = match extract_video(video, &id, &self.root, &self.options, model, model_path, progress) {
                Ok(done) => {
                    crate::manifest::record(
                        &self.root,
                        &id,
                        video,
                        &id,
                        model_path.unwrap_or(Path::new("")),
                        "extract",
                        &key,
                        &[shot_file],
                    )?;
                    Outcome::Done(done)
                }
                Err(error) => Outcome::Failed {
                    video: video.clone(),
                    error,
                },
            };
            report(&o);
            outcomes.push(o);
        }
        Ok(outcomes)
    }
}

/// Whether `path` stands for videos to extract: a video file, or a folder
/// of videos that is neither a scene318 root nor holds `tt*.pkl` movies.
pub fn is_video_input(path: &Path) -> bool {
    if path.is_dir() {
        if crate::data::scene318::is_root(path) {
            return false;
        }
        let Ok(entries) = std::fs::read_dir(path) else {
            return false;
        };
        let names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        let movie = |p: &PathBuf| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(crate::data::dataset::is_movie_name)
        };
        return !names.iter().any(movie) && names.iter().any(|p| is_video_name(p));
    }
    is_video_name(path)
}

/// Why a model cannot segment movies made from video, if it cannot: it
/// needs features lgss does not extract (cast, action), audio other than
/// STFT images, or place features without a place network.
pub fn check_model_for_video(
    config: &crate::model::config::ModelConfig,
    has_place_model: bool,
) -> anyhow::Result<()> {
    use crate::data::movie::Modality;
    let missing: Vec<String> = config
        .modalities
        .iter()
        .filter(|m| matches!(m, Modality::Cast | Modality::Action))
        .map(|m| m.to_string())
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "the model takes {} features, which lgss cannot extract from video (they need face and \
             action detectors): use a model over place and audio (models/sceneseg-place-audio.toml)",
            missing.join(" and ")
        );
    }
    if config.modalities.contains(&Modality::Audio) && !config.is_stft(Modality::Audio) {
        anyhow::bail!(
            "the model takes audio as feature vectors; video gives SceneSeg's STFT images \
             (a model with audio_input = \"stft\", e.g. models/sceneseg-place-audio.toml)"
        );
    }
    if config.modalities.contains(&Modality::Place) && !has_place_model {
        anyhow::bail!(
            "the model takes place features: give --place-model FILE.onnx, an image network \
             [N,3,224,224] → [N,D] (the book's \"From video\" chapter exports torchvision's ResNet-50 \
             in a few lines)"
        );
    }
    Ok(())
}

/// `inputs` with each video input replaced by its movies in the tree at
/// `features` (extracted there, or reused when done with the same
/// settings); other inputs as they are. Fails on the first bad video.
pub fn movies_from_videos(
    inputs: &[PathBuf],
    features: &Path,
    options: &ExtractOptions,
    place: Option<(&mut PlaceModel, PathBuf)>,
    progress: &dyn Progress,
    report: &mut dyn FnMut(&Outcome),
) -> anyhow::Result<Vec<PathBuf>> {
    // Each input once: a folder of videos is listed here and nowhere else.
    let listed: Vec<Option<Vec<PathBuf>>> = inputs
        .iter()
        .map(|p| {
            is_video_input(p)
                .then(|| expand_videos(std::slice::from_ref(p)))
                .transpose()
        })
        .collect::<anyhow::Result<_>>()?;
    if listed.iter().all(Option::is_none) {
        return Ok(inputs.to_vec());
    }
    let mut catalogue = Catalogue {
        root: features.to_path_buf(),
        options: options.clone(),
        place,
        skip_done: true,
    };
    let expanded: Vec<PathBuf> = listed.iter().flatten().flatten().cloned().collect();
    let mut outcomes = catalogue.run(&expanded, progress, report)?;
    let mut movie_of = std::collections::HashMap::new();
    for o in outcomes.drain(..) {
        match o {
            Outcome::Done(e) => {
                movie_of.insert(e.video.clone(), e.id);
            }
            Outcome::Skipped { id, video } => {
                movie_of.insert(video, id);
            }
            Outcome::Failed { error, .. } => return Err(error),
        }
    }
    let mut out = Vec::new();
    for (p, videos) in inputs.iter().zip(&listed) {
        let Some(videos) = videos else {
            out.push(p.clone());
            continue;
        };
        for v in videos {
            let id = movie_of
                .get(v)
                .ok_or_else(|| anyhow!("{}: not extracted", v.display()))?;
            out.push(crate::data::scene318::movie_path(features, id));
        }
    }
    Ok(out)
}

/// Where the keyframe pass leaves each shot's thumbnail (`shot_NNNN.jpg`,
/// [`ffmpeg::THUMBNAIL_WIDTH`] wide), for the movie's page.
pub fn thumbnails_dir(root: &Path, id: &str) -> PathBuf {
    root.join("thumbnails").join(id)
}

/// The video a scene318 movie path was extracted from, if it was.
pub fn video_of_movie(movie_file: &Path) -> Option<VideoMeta> {
    let (root, id) = crate::data::scene318::locate(movie_file)?;
    VideoMeta::read(&root, &id).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str) -> crate::model::config::ModelConfig {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(name);
        crate::model::Config::load(&path).unwrap().model
    }

    #[test]
    fn only_place_and_stft_audio_models_take_video() {
        let err = |name: &str, place: bool| {
            check_model_for_video(&model(name), place)
                .unwrap_err()
                .to_string()
        };
        assert!(err("sceneseg.toml", true).contains("takes cast and action features"));
        assert!(err("sceneseg-place-audio.toml", false).contains("give --place-model"));
        check_model_for_video(&model("sceneseg-place-audio.toml"), true).unwrap();
    }

    #[test]
    fn ids_are_plain_names_of_the_file() {
        assert_eq!(
            video_id(Path::new("/v/My Film (2019).mp4")).unwrap(),
            "My_Film__2019_"
        );
        assert_eq!(video_id(Path::new("/v/.hidden.mkv")).unwrap(), "hidden");
        assert!(is_video_name(Path::new("a.MKV")) && !is_video_name(Path::new("a.pkl")));
    }
}
