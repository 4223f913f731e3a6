//! A catalogue of movies through one runtime, as `lgss segment` runs it:
//! reader threads read and decode the next movies, the runtime runs on the
//! calling thread, and writer threads decide each movie's scenes, format
//! them and write its files and manifest entry. One bad movie does not stop
//! the others; outcomes (and scenes printed instead of written) come in the
//! files' order whatever order they finish in.
//!
//! ```no_run
//! use lgss::catalogue::{Catalogue, Outputs};
//! use lgss::runtime::{RuntimeKind, RuntimeOptions};
//! use lgss::scene_formats::SceneFormat;
//!
//! # fn main() -> anyhow::Result<()> {
//! let options = RuntimeOptions {
//!     onnx: Some("model.onnx".into()),
//!     batch: 32,
//!     ..Default::default()
//! };
//! let outputs = Outputs {
//!     out: Some("scenes".into()),
//!     format: SceneFormat::Json,
//!     threshold: 0.5,
//!     fps: 24.0,
//!     grouping: None, // the threshold rule; `segment::grouping_params` for global grouping
//!     write_pkl: false,
//!     plot_dir: None,
//!     html_dir: None,
//!     skip_done: true,
//! };
//! let catalogue = Catalogue::new(RuntimeKind::Tract, &options, "model.onnx".into(), outputs, 1)?;
//! let files = lgss::data::dataset::expand_inputs(&["movies".into()])?;
//! let run = catalogue.run(&files, &indicatif::ProgressBar::hidden(), |scenes| print!("{scenes}"));
//! println!("{} done, {} failed", run.summary.done.len(), run.failures.len());
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::data::dataset::file_stem;
use crate::data::movie::{output_stem, Movie};
use crate::grouping::Params as GroupingParams;
use crate::manifest::{RunKey, Status};
use crate::phases::Phases;
use crate::runtime::{open, RuntimeKind, RuntimeOptions};
use crate::scene_formats::{self, SceneFormat};
use crate::segment::{movie_probabilities_timed, scenes, schema_for, Segmentation};

/// What each movie's outputs are and where they go.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// Write one file per movie here (named after the file's stem) and a
    /// manifest entry per finished movie in its `manifest/`; `None`: each
    /// movie's scenes go to `run`'s `print`.
    pub out: Option<PathBuf>,
    pub format: SceneFormat,
    /// A boundary is a cut when its probability reaches this; written
    /// probabilities are rescaled so that it is 0.5.
    pub threshold: f64,
    /// Frames per second, for timecodes.
    pub fps: f64,
    /// Global grouping's settings; `None`: the threshold rule.
    pub grouping: Option<GroupingParams>,
    /// Also write each movie back with its prediction replaced (needs `out`).
    pub write_pkl: bool,
    /// Draw each movie's timeline as `<stem>.png` here.
    pub plot_dir: Option<PathBuf>,
    /// Write each movie's page as `<stem>.html` here ([`crate::page`]).
    pub html_dir: Option<PathBuf>,
    /// Skip movies whose outputs in `out` were finished with the same model
    /// and outputs (the manifest says so); redo the others.
    pub skip_done: bool,
}

impl Outputs {
    /// The manifest's key of a run with the model whose SHA-256 is `model_sha256`.
    fn run_key(&self, model_sha256: String) -> RunKey {
        RunKey {
            model_sha256,
            options: serde_json::json!({
                "format": self.format.extension(),
                "threshold": self.threshold,
                "fps": self.fps,
                "write_pkl": self.write_pkl,
                "plot": self.plot_dir.is_some(),
                "html": self.html_dir.is_some(),
                "global": self.grouping,
            }),
        }
    }
}

/// One runtime and model over many movies.
pub struct Catalogue<'a> {
    runtime: RuntimeKind,
    options: &'a RuntimeOptions,
    model_file: PathBuf,
    outputs: Outputs,
    read_threads: usize,
    /// With `out`: which results in it are this run's (model and outputs).
    key: Option<RunKey>,
}

/// What a run did.
pub struct Run {
    pub summary: Summary,
    /// Each failed movie's error, in the files' order (also in `summary`).
    pub failures: Vec<anyhow::Error>,
    /// Time on the calling thread: model load, waits, windows, model.
    pub phases: Phases,
    /// Time on the reader and writer threads, beside `phases`.
    pub overlapped: Phases,
}

impl<'a> Catalogue<'a> {
    /// A catalogue run of `model_file` (the file `options` names for
    /// `runtime`) with `read_threads` reader threads; creates `out`. The
    /// model is opened by [`Catalogue::run`], only if a movie is to be done.
    pub fn new(
        runtime: RuntimeKind,
        options: &'a RuntimeOptions,
        model_file: PathBuf,
        outputs: Outputs,
        read_threads: usize,
    ) -> anyhow::Result<Catalogue<'a>> {
        if outputs.write_pkl && outputs.out.is_none() {
            bail!("writing pickles needs an output folder");
        }
        let key = match &outputs.out {
            Some(out) => {
                std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
                Some(outputs.run_key(crate::manifest::sha256_file(&model_file)?))
            }
            None => None,
        };
        Ok(Catalogue {
            runtime,
            options,
            model_file,
            outputs,
            read_threads,
            key,
        })
    }

    /// Segments `files`, reporting progress on `pb` and each movie's scenes
    /// to `print` in the files' order when there is no `out`.
    pub fn run(&self, files: &[PathBuf], pb: &indicatif::ProgressBar, print: impl FnMut(&str)) -> Run {
        let mut summary = Summary {
            runtime: self.runtime.to_string(),
            model: self.model_file.clone(),
            model_sha256: self
                .key
                .as_ref()
                .map(|k| k.model_sha256.clone())
                .unwrap_or_default(),
            out: self.outputs.out.clone().unwrap_or_default(),
            listed: files.len(),
            ..Summary::default()
        };
        let (mut phases, mut overlapped) = (Phases::new(), Phases::new());
        let failures = self.segment_files(files, pb, print, &mut summary, &mut phases, &mut overlapped);
        Run {
            summary,
            failures,
            phases,
            overlapped,
        }
    }
    /// Segments every file, recording each in `summary` in the files' order.
    /// One bad movie does not stop the others: each failure is reported by
    /// name as it happens and returned. Three stages overlap: reader threads
    /// read and decode the next movies, this thread runs the runtime, and
    /// writer threads group, format and write (their time goes to
    /// `overlapped`; the runtime side's waits for them to `phases`). Scenes
    /// printed to stdout come in the files' order.
    fn segment_files(
        &self,
        files: &[PathBuf],
        pb: &indicatif::ProgressBar,
        print: impl FnMut(&str),
        summary: &mut Summary,
        phases: &mut Phases,
        overlapped: &mut Phases,
    ) -> Vec<anyhow::Error> {
        let (runtime, opts) = (self.runtime, self.options);
        let (stems, plans) = self.plan_files(files, pb);
        // Opened only when a movie is to be done, so a rerun with nothing left
        // costs no model load.
        let todo: Vec<&PathBuf> = files
            .iter()
            .zip(&plans)
            .filter(|(_, p)| matches!(p, Plan::Todo))
            .map(|(f, _)| f)
            .collect();
        let mut backend = match todo.is_empty() {
            true => None,
            false => Some(phases.time("model load", || open(runtime, opts))),
        };
        let (schema, ratio) = match &backend {
            Some(Ok(b)) => (Some(schema_for(b.config())), Some(b.config().ratio)),
            _ => (None, None),
        };
        let mut outcomes = Outcomes::new(files.len(), pb, print);
        let workers = writer_threads();
        let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<Finish>(workers);
        let job_rx = std::sync::Mutex::new(job_rx);
        let n_readers = self.read_threads.max(1);
        std::thread::scope(|scope| {
            // Reader r reads the to-do files r, r + R, r + 2R, ... into its own
            // bounded channel; the runtime takes them round robin, so movies
            // arrive in the files' order with no reordering buffer.
            let mut read_rxs = Vec::new();
            let mut readers = Vec::new();
            if let Some(schema) = &schema {
                let todo = &todo;
                for r in 0..n_readers.min(todo.len()) {
                    let (read_tx, read_rx) = std::sync::mpsc::sync_channel((READ_AHEAD / n_readers).max(1));
                    read_rxs.push(read_rx);
                    readers.push(scope.spawn(move || {
                        let mut reads = Phases::new();
                        for file in todo.iter().skip(r).step_by(n_readers) {
                            let movie = reads.time("read and decode", || Movie::load(file, schema));
                            if read_tx.send(movie).is_err() {
                                break; // the runtime side stopped
                            }
                        }
                        reads
                    }));
                }
            }
            let mut next_read = 0usize;
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            // Without a runtime no movie reaches the writers: none are started.
            let writers: Vec<_> = ratio
                .into_iter()
                .flat_map(|ratio| std::iter::repeat_n(ratio, workers))
                .map(|ratio| {
                    let (job_rx, done_tx, stems) = (&job_rx, done_tx.clone(), &stems);
                    scope.spawn(move || {
                        let mut own = Phases::new();
                        loop {
                            let job = job_rx
                                .lock()
                                .map_err(|_| ())
                                .and_then(|rx| rx.recv().map_err(|_| ()));
                            let Ok(job) = job else { break };
                            let file = &files[job.index];
                            let r = self.finish_one(
                                file,
                                job.movie,
                                &job.prob,
                                &stems[job.index],
                                &ratio,
                                pb,
                                &mut own,
                            );
                            if done_tx.send((job.index, r)).is_err() {
                                break;
                            }
                        }
                        own
                    })
                })
                .collect();
            drop(done_tx);
            for (index, (file, plan)) in files.iter().zip(plans).enumerate() {
                match plan {
                    Plan::Collides(e) => outcomes.settle(index, Err(e)),
                    Plan::Done => outcomes.skipped(index),
                    Plan::Todo => {
                        let b = match backend.as_mut() {
                            Some(Ok(b)) => b,
                            Some(Err(e)) => {
                                outcomes.settle(index, Err(anyhow::anyhow!("{e:#}")));
                                continue;
                            }
                            None => {
                                outcomes.settle(index, Err(anyhow::anyhow!("no backend")));
                                continue;
                            }
                        };
                        let t = std::time::Instant::now();
                        let read = match read_rxs.get(next_read % n_readers.max(1)) {
                            Some(rx) => rx.recv(),
                            None => Err(std::sync::mpsc::RecvError),
                        };
                        next_read += 1;
                        phases.add("wait for reads", t.elapsed());
                        let movie = match read {
                            Ok(Ok(m)) => m,
                            Ok(Err(e)) => {
                                outcomes.settle(index, Err(e.into()));
                                continue;
                            }
                            Err(_) => {
                                let e = anyhow::anyhow!("{}: the reader thread stopped", file.display());
                                outcomes.settle(index, Err(e));
                                continue;
                            }
                        };
                        match movie_probabilities_timed(b.as_mut(), &movie, opts.batch, phases)
                            .with_context(|| format!("{}", file.display()))
                        {
                            Ok(prob) => {
                                let t = std::time::Instant::now();
                                let sent = job_tx.send(Finish { index, movie, prob });
                                phases.add("wait for writers", t.elapsed());
                                if sent.is_err() {
                                    outcomes
                                        .settle(index, Err(anyhow::anyhow!("the writer threads stopped")));
                                }
                            }
                            Err(e) => outcomes.settle(index, Err(e)),
                        }
                    }
                }
                while let Ok((i, r)) = done_rx.try_recv() {
                    outcomes.settle(i, r);
                }
            }
            drop(job_tx);
            drop(read_rxs);
            let t = std::time::Instant::now();
            for (i, r) in done_rx.iter() {
                outcomes.settle(i, r);
            }
            phases.add("wait for writers", t.elapsed());
            for w in writers {
                if let Ok(own) = w.join() {
                    overlapped.merge(&own);
                }
            }
            for r in readers {
                if let Ok(reads) = r.join() {
                    overlapped.merge(&reads);
                }
            }
        });
        outcomes.into_summary(files, &stems, summary)
    }

    /// Each file's output stem and whether it is to be done: a second input
    /// with the same stem is refused (never written over the first's
    /// outputs), and with `--skip-done` finished ones are skipped.
    fn plan_files(&self, files: &[PathBuf], pb: &indicatif::ProgressBar) -> (Vec<String>, Vec<Plan>) {
        let mut seen: HashMap<String, PathBuf> = HashMap::new();
        let mut stems = Vec::with_capacity(files.len());
        let mut plans = Vec::with_capacity(files.len());
        for file in files {
            let stem = output_stem(&file_stem(file));
            let plan = if let Some(first) = seen.insert(stem.clone(), file.clone()) {
                Plan::Collides(
                    crate::data::LoadError {
                        path: file.to_path_buf(),
                        problem: format!(
                            "its outputs would be named {stem}, as those of {}: not written over them",
                            first.display()
                        ),
                    }
                    .into(),
                )
            } else if let (true, Some(out), Some(key)) =
                (self.outputs.skip_done, &self.outputs.out, &self.key)
            {
                match crate::manifest::status(out, &stem, key) {
                    Status::Done => Plan::Done,
                    Status::Redo(why) => {
                        pb.suspend(|| eprintln!("note: {}: redoing: {why}", file.display()));
                        Plan::Todo
                    }
                    Status::New => Plan::Todo,
                }
            } else {
                Plan::Todo
            };
            stems.push(stem);
            plans.push(plan);
        }
        (stems, plans)
    }

    /// Scenes, formats and files of a movie the runtime has done: the scenes
    /// to print on stdout without `--out`, else nothing (they are written).
    #[allow(clippy::too_many_arguments)]
    fn finish_one(
        &self,
        file: &Path,
        mut movie: Movie,
        prob: &[f64],
        stem: &str,
        ratio: &crate::model::config::PerModality<f64>,
        pb: &indicatif::ProgressBar,
        phases: &mut Phases,
    ) -> anyhow::Result<Option<String>> {
        let (o, runtime) = (&self.outputs, self.runtime);
        if o.out.is_some() && file_stem(file) != movie.imdb_id {
            pb.suspend(|| {
                eprintln!(
                    "note: {}: imdb_id \"{}\" differs from the file name; its outputs are named {stem}",
                    file.display(),
                    crate::data::pickle::printable(&movie.imdb_id)
                )
            });
        }
        // A movie extracted from video keeps the video's frame rate and
        // points back at it.
        let video = crate::video::extract::video_of_movie(file);
        let fps = video.as_ref().map_or(o.fps, |v| v.fps());
        let mut seg = phases
            .time("scenes (grouping)", || {
                Segmentation::new(
                    &movie,
                    file,
                    &runtime.to_string(),
                    prob,
                    ratio,
                    o.threshold,
                    fps,
                    o.grouping.clone(),
                )
            })
            .with_context(|| format!("{}: global grouping", file.display()))?;
        if let Some(v) = video {
            // The user gave the video: the outputs name it, not the features.
            seg.file = v.video.clone();
            seg.media = Some(v.video);
        }
        let text = phases.time("format", || scene_formats::render(&seg, o.format))?;
        // The true scenes, for the pictures only.
        let pictures = o.plot_dir.is_some() || o.html_dir.is_some();
        let truth = movie.ground_truth.as_ref().filter(|_| pictures).map(|gt| {
            let p: Vec<f64> = gt.iter().map(|&b| f64::from(u8::from(b))).collect();
            scenes(&p, &movie.shot_end_frame, 0.5, fps)
        });
        if let Some(dir) = &o.plot_dir {
            let how = match &seg.global {
                Some(g) => match &g.length_prior {
                    Some(w) => format!("global grouping, γ {}, λ {}", g.coherence, w.weight),
                    None => format!("global grouping, γ {}", g.coherence),
                },
                None => "threshold rule".to_string(),
            };
            let title = format!(
                "{}: {} shots, {} scene{} ({runtime}, {how})",
                crate::data::pickle::printable(&movie.imdb_id),
                movie.n_shots(),
                seg.scenes.len(),
                if seg.scenes.len() == 1 { "" } else { "s" },
            );
            let timeline = crate::timeline::Timeline {
                title: &title,
                fps,
                shot_end_frame: &movie.shot_end_frame,
                boundary_probabilities: prob,
                threshold: o.threshold,
                scenes: &seg.scenes,
                truth: truth.as_deref(),
            };
            phases.time("plot", || {
                crate::timeline::write(&timeline, &dir.join(format!("{stem}.png")))
            })?;
        }
        if let Some(dir) = &o.html_dir {
            let warning = phases.time("page", || self.write_page(dir, stem, file, &seg, &movie, truth))?;
            if let Some(w) = warning {
                pb.suspend(|| eprintln!("warning: {w}"));
            }
        }
        let (Some(out), Some(key)) = (&o.out, &self.key) else {
            // Printed by the runtime side, in the files' order.
            return Ok(Some(text));
        };
        let mut outputs = vec![format!("{stem}.{}", o.format.extension())];
        if o.write_pkl {
            let pkl = out.join(format!("{stem}.pkl"));
            if same_file(&pkl, file) {
                bail!(
                    "{}: --write-pkl would write over this input; choose another --out",
                    file.display()
                );
            }
            movie.prediction = Some(seg.boundary_probabilities.clone());
            phases.time("write", || crate::data::pickle_write::write_movie(&pkl, &movie))?;
            outputs.push(format!("{stem}.pkl"));
        }
        if o.plot_dir.is_some() {
            outputs.push(format!("{stem}.png"));
        }
        if o.html_dir.is_some() {
            outputs.push(format!("{stem}.html"));
        }
        phases.time("write", || {
            crate::fsutil::write_atomic(&out.join(&outputs[0]), text.as_bytes())?;
            crate::manifest::record(
                out,
                stem,
                file,
                &movie.imdb_id,
                &self.model_file,
                &runtime.to_string(),
                key,
                &outputs,
            )
        })?;
        Ok(None)
    }
}

impl Catalogue<'_> {
    /// The page of `movie` (read from `file`), `<stem>.html` in `dir`:
    /// with its video, chapters and a thumbnail per scene where it was
    /// extracted from one. Returns a warning when the page has no pictures.
    fn write_page(
        &self,
        dir: &Path,
        stem: &str,
        file: &Path,
        seg: &Segmentation,
        movie: &Movie,
        truth: Option<Vec<crate::segment::Scene>>,
    ) -> anyhow::Result<Option<String>> {
        let scores = movie
            .ground_truth
            .as_deref()
            .map(|gt| crate::page::movie_scores(seg, gt))
            .transpose()
            .with_context(|| format!("{}: scoring for the page", seg.file.display()))?;
        let mut warned = None;
        let (media, chapters, thumbnails) = match &seg.media {
            Some(video) => {
                let extracted = crate::data::scene318::locate(file)
                    .map(|(root, id)| crate::video::extract::thumbnails_dir(&root, &id));
                let (thumbnails, warning) = crate::page::scene_thumbnails(
                    video,
                    &seg.scenes,
                    &seg.shot_end_frame,
                    extracted.as_deref(),
                );
                warned = warning.map(|w| format!("{}: {w}", video.display()));
                let rule = crate::segment::rule_description(seg.threshold, seg.global.as_ref());
                (
                    Some(crate::page::relative_url(dir, video)),
                    Some(scene_formats::webvtt(&seg.scenes, &rule)),
                    thumbnails,
                )
            }
            None => (None, None, Vec::new()),
        };
        let view = crate::page::View {
            segmentation: seg,
            model: self
                .model_file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned()),
            truth,
            scores,
            media,
            chapters,
            thumbnails,
        };
        crate::fsutil::write_atomic(
            &dir.join(format!("{stem}.html")),
            crate::page::movie_page(&view)?.as_bytes(),
        )?;
        Ok(warned)
    }
}

/// What a run did, movie by movie in the files' order (`lgss segment
/// --json` prints it).
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub runtime: String,
    pub model: PathBuf,
    pub model_sha256: String,
    pub shard: Option<String>,
    pub out: PathBuf,
    /// Movies given (files, directories' tt*.pkl and the list), before sharding.
    pub listed: usize,
    pub done: Vec<Finished>,
    pub skipped: Vec<Finished>,
    pub failed: Vec<Failed>,
    /// With `--profile`: seconds per phase, `model load` apart, and `wall`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct Finished {
    pub stem: String,
    pub input: PathBuf,
}

#[derive(Debug, Serialize)]
pub struct Failed {
    pub input: PathBuf,
    pub error: String,
}

/// What one input file needs.
enum Plan {
    /// Its outputs would overwrite another input's.
    Collides(anyhow::Error),
    /// `--skip-done`: this run's outputs are already there.
    Done,
    Todo,
}

/// Movies read ahead of the runtime, in all, besides those being read
/// (each up to ~35 MB for 2,400 shots).
const READ_AHEAD: usize = 2;

/// Reader threads by default: a quarter of the cores, 1 to 4 (one on the
/// 2-core machines, where a second would take the runtime's core).
pub fn default_read_threads(cores: usize) -> usize {
    (cores / 4).clamp(1, 4)
}

/// A movie the runtime has done, for a writer: scenes, formats, files.
struct Finish {
    index: usize,
    movie: Movie,
    prob: Vec<f64>,
}

/// Threads that turn probabilities into scenes and files while the runtime
/// works on the next movies (global grouping of a 2,400-shot movie takes
/// ~70 ms: a GPU runtime would otherwise wait on it). Half the cores, at
/// most 8, at least 1.
fn writer_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).clamp(1, 8))
}

/// What became of each file, in the files' order whatever order they
/// finish in; scenes for stdout go to `print` in that order too.
struct Outcomes<'a, P: FnMut(&str)> {
    results: Vec<Option<anyhow::Result<bool>>>,
    /// Scenes for stdout (no `--out`) of finished files not yet printed.
    texts: std::collections::BTreeMap<usize, String>,
    /// The first file whose outcome has not been printed yet.
    next: usize,
    pb: &'a indicatif::ProgressBar,
    print: P,
}

impl<'a, P: FnMut(&str)> Outcomes<'a, P> {
    fn new(n: usize, pb: &'a indicatif::ProgressBar, print: P) -> Outcomes<'a, P> {
        Outcomes {
            results: (0..n).map(|_| None).collect(),
            texts: Default::default(),
            next: 0,
            pb,
            print,
        }
    }

    fn skipped(&mut self, index: usize) {
        self.results[index] = Some(Ok(false));
        self.advance();
    }

    /// A file done (with the scenes to print, without `--out`) or failed.
    fn settle(&mut self, index: usize, r: anyhow::Result<Option<String>>) {
        self.results[index] = Some(match r {
            Ok(text) => {
                if let Some(text) = text {
                    self.texts.insert(index, text);
                }
                Ok(true)
            }
            Err(e) => {
                self.pb.suspend(|| eprintln!("error: {e:#}"));
                Err(e)
            }
        });
        self.advance();
    }

    fn advance(&mut self) {
        self.pb.inc(1);
        while self.next < self.results.len() && self.results[self.next].is_some() {
            if let Some(text) = self.texts.remove(&self.next) {
                (self.print)(&text);
            }
            self.next += 1;
        }
    }

    fn into_summary(self, files: &[PathBuf], stems: &[String], summary: &mut Summary) -> Vec<anyhow::Error> {
        let mut failures = Vec::new();
        for ((r, file), stem) in self.results.into_iter().zip(files).zip(stems) {
            match r {
                Some(Ok(true)) => summary.done.push(Finished {
                    stem: stem.clone(),
                    input: file.clone(),
                }),
                Some(Ok(false)) => summary.skipped.push(Finished {
                    stem: stem.clone(),
                    input: file.clone(),
                }),
                Some(Err(e)) => {
                    summary.failed.push(Failed {
                        input: file.clone(),
                        error: format!("{e:#}"),
                    });
                    failures.push(e);
                }
                None => {
                    let e = anyhow::anyhow!("{}: not segmented (a worker thread stopped)", file.display());
                    summary.failed.push(Failed {
                        input: file.clone(),
                        error: format!("{e:#}"),
                    });
                    failures.push(e);
                }
            }
        }
        failures
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reader_on_small_machines_up_to_four_on_large_ones() {
        let readers: Vec<usize> = [1, 2, 4, 8, 16, 64]
            .into_iter()
            .map(default_read_threads)
            .collect();
        assert_eq!(readers, [1, 1, 1, 2, 4, 4]);
    }

    /// Writer threads finish movies in any order; what is printed, and the
    /// summary, follow the files' order.
    #[test]
    fn outcomes_print_and_summarise_in_file_order() {
        let pb = indicatif::ProgressBar::hidden();
        let mut printed = Vec::new();
        let files: Vec<PathBuf> = ["a", "b", "c", "d"].iter().map(PathBuf::from).collect();
        let stems: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let mut summary = Summary::default();
        let failures = {
            let mut o = Outcomes::new(4, &pb, |t: &str| printed.push(t.to_string()));
            o.settle(2, Ok(Some("c".into())));
            o.settle(3, Err(anyhow::anyhow!("d failed")));
            o.settle(0, Ok(Some("a".into())));
            o.skipped(1);
            o.into_summary(&files, &stems, &mut summary)
        };
        assert_eq!(printed, ["a", "c"]);
        assert_eq!(failures.len(), 1);
        let names = |v: &[Finished]| v.iter().map(|f| f.stem.clone()).collect::<Vec<_>>();
        assert_eq!(names(&summary.done), ["a", "c"]);
        assert_eq!(names(&summary.skipped), ["b"]);
        assert_eq!(summary.failed[0].input, PathBuf::from("d"));
    }
}
