//! FFmpeg's `ffprobe` and `ffmpeg` programs as subprocesses: what a video
//! holds, its frames as BGR pixels, its first audio track as 16 kHz mono.
//!
//! Programs rather than a libav* binding: a decoder that crashes on a
//! hostile file takes down its own process, not lgss (the error names the
//! file); lgss builds statically without FFmpeg's libraries (the tract-only
//! image stays `FROM scratch`); and the user's FFmpeg is whatever their
//! distribution ships, with every codec it has. The frames cross a pipe,
//! which costs little next to decoding.
//!
//! Only the named local file is read. lgss opens it itself (a regular file,
//! [`crate::regular_file`]) and hands the open file to FFmpeg as its
//! standard input, named `file:/dev/stdin`, with the `file` protocol the
//! only one allowed and the demuxers that open other files (playlists,
//! concat lists, DASH manifests, image sequences, SDP/RTSP sessions) left
//! off the allowed formats: an `.m3u8` or `ffconcat` list is refused as
//! "format not on whitelist" rather than followed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context};

use crate::regular_file;

/// The largest frame decoded (8K is 33 megapixels): a header claiming more
/// is refused before a byte of pixels is read, so memory stays bounded.
pub const MAX_PIXELS: u64 = 36_000_000;

/// Audio features are computed at SceneSeg's rate.
pub const AUDIO_RATE: u32 = 16_000;

/// Demuxers that read files or network resources other than their input.
const FOLLOWING_DEMUXERS: &[&str] = &[
    "hls",
    "concat",
    "dash",
    "imf",
    "image2",
    "sdp",
    "rtsp",
    "rtp",
    "sap",
    "lavfi",
    "webm_dash_manifest",
];

/// A rational frame rate, as FFmpeg reports it (`30000/1001`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Rate {
    pub num: u64,
    pub den: u64,
}

impl Rate {
    fn parse(s: &str) -> Option<Rate> {
        let (n, d) = s.split_once('/')?;
        let (num, den) = (n.parse().ok()?, d.parse().ok()?);
        (num > 0 && den > 0).then_some(Rate { num, den })
    }

    pub fn fps(&self) -> f64 {
        self.num as f64 / self.den as f64
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

/// The first audio stream.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioStream {
    pub channels: u32,
    pub sample_rate: u32,
    /// Seconds, on the container's clock.
    pub start: f64,
    /// How many audio streams the file has (the first is used).
    pub streams: usize,
}

/// What a video file holds, as far as lgss needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub path: PathBuf,
    pub container: String,
    pub codec: String,
    /// Frame size as displayed (rotation metadata applied, as FFmpeg
    /// applies it when decoding).
    pub width: u32,
    pub height: u32,
    pub rotation: i32,
    /// The rate frames are numbered at: the stream's own for constant
    /// frame rate; for variable frame rate its average, frames then being
    /// sampled by timestamp.
    pub rate: Rate,
    pub variable_rate: bool,
    /// Seconds, on the container's clock.
    pub video_start: f64,
    pub duration: Option<f64>,
    pub audio: Option<AudioStream>,
}

fn tool(name: &str) -> anyhow::Result<PathBuf> {
    let var = format!("LGSS_{}", name.to_ascii_uppercase());
    if let Some(p) = std::env::var_os(&var) {
        return Ok(PathBuf::from(p));
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    found.ok_or_else(|| {
        anyhow!(
            "{name} not found on PATH: lgss decodes video with FFmpeg's programs \
             (Debian/Ubuntu: apt install ffmpeg; or set ${var})"
        )
    })
}

/// The demuxers this FFmpeg has, less those that follow references.
fn allowed_formats() -> anyhow::Result<&'static str> {
    static LIST: OnceLock<Result<String, String>> = OnceLock::new();
    let list = LIST.get_or_init(|| {
        let ffmpeg = tool("ffmpeg").map_err(|e| e.to_string())?;
        let out = Command::new(&ffmpeg)
            .args(["-hide_banner", "-demuxers"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: cannot run: {e}", ffmpeg.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let names: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("--"))
            .skip(1)
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                let flags = parts.next()?;
                flags.contains('D').then_some(parts.next()?)
            })
            .flat_map(|names| names.split(','))
            .filter(|n| !FOLLOWING_DEMUXERS.contains(n))
            .collect();
        if names.is_empty() {
            return Err(format!("{}: lists no demuxers", ffmpeg.display()));
        }
        Ok(names.join(","))
    });
    list.as_deref().map_err(|e| anyhow!("{e}"))
}

/// `program` reading `path` (opened here, a regular file) as its input.
fn command_on(program: &str, path: &Path) -> anyhow::Result<Command> {
    let file = regular_file::open(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if file.len == 0 {
        bail!("{}: empty file", path.display());
    }
    let mut cmd = Command::new(tool(program)?);
    cmd.args(["-hide_banner", "-v", "error"]);
    if program == "ffmpeg" {
        // The input is standard input: no keyboard commands read from it.
        cmd.arg("-nostdin");
    }
    cmd.args([
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        allowed_formats()?,
    ]);
    cmd.stdin(Stdio::from(file.file));
    Ok(cmd)
}

/// The input argument for [`command_on`]'s file.
const INPUT: &str = "file:/dev/stdin";

/// FFmpeg's words for why a file failed, one line.
fn ffmpeg_error(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.strip_suffix(": Invalid data found when processing input")
                .unwrap_or(l)
        })
        .collect();
    match lines.as_slice() {
        [] => "FFmpeg failed without a message".into(),
        ls => ls
            .iter()
            .take(3)
            .copied()
            .collect::<Vec<_>>()
            .join("; ")
            .replace(INPUT, "input"),
    }
}

#[derive(serde::Deserialize)]
struct ProbeJson {
    #[serde(default)]
    streams: Vec<StreamJson>,
    format: Option<FormatJson>,
}

#[derive(serde::Deserialize)]
struct FormatJson {
    format_name: Option<String>,
    duration: Option<String>,
}

#[derive(serde::Deserialize)]
struct StreamJson {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u64>,
    height: Option<u64>,
    r_frame_rate: Option<String>,
    avg_frame_rate: Option<String>,
    start_time: Option<String>,
    sample_rate: Option<String>,
    channels: Option<u32>,
    #[serde(default)]
    side_data_list: Vec<serde_json::Value>,
    #[serde(default)]
    tags: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    disposition: serde_json::Map<String, serde_json::Value>,
}

/// Reads what `path` holds with `ffprobe`; errors name the file and say
/// what is wrong (not a video, no video stream, an absurd frame size).
pub fn probe(path: &Path) -> anyhow::Result<Probe> {
    let out = command_on("ffprobe", path)?
        .args(["-print_format", "json", "-show_format", "-show_streams", INPUT])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("{}: cannot run ffprobe", path.display()))?;
    if !out.status.success() {
        bail!(
            "{}: not a video FFmpeg can read: {}",
            path.display(),
            ffmpeg_error(&out.stderr)
        );
    }
    let json: ProbeJson = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{}: ffprobe's answer is not JSON", path.display()))?;
    let is = |s: &StreamJson, kind: &str| s.codec_type.as_deref() == Some(kind);
    // Cover art is a video stream of one picture: not the movie.
    let attached = |s: &StreamJson| s.disposition.get("attached_pic").and_then(|v| v.as_i64()) == Some(1);
    let video = json
        .streams
        .iter()
        .find(|s| is(s, "video") && !attached(s))
        .ok_or_else(|| anyhow!("{}: no video stream", path.display()))?;
    let (w, h) = (video.width.unwrap_or(0), video.height.unwrap_or(0));
    if w == 0 || h == 0 {
        bail!("{}: the video stream has no frame size", path.display());
    }
    if w.saturating_mul(h) > MAX_PIXELS {
        bail!(
            "{}: frames of {w}×{h} pixels: larger than the {MAX_PIXELS}-pixel limit",
            path.display()
        );
    }
    let rotation = rotation_of(video);
    let (width, height) = if rotation.rem_euclid(180) == 90 {
        (h, w)
    } else {
        (w, h)
    };
    let r = video.r_frame_rate.as_deref().and_then(Rate::parse);
    let avg = video.avg_frame_rate.as_deref().and_then(Rate::parse);
    let (rate, variable_rate) = match (r, avg) {
        (Some(r), Some(a)) if r.num * a.den == a.num * r.den => (r, false),
        (_, Some(a)) => (a, true),
        (Some(r), None) => (r, false),
        (None, None) => bail!("{}: the video stream has no frame rate", path.display()),
    };
    if rate.fps() > 1000.0 {
        bail!("{}: a frame rate of {rate}: not a movie's", path.display());
    }
    let seconds = |s: &Option<String>| s.as_deref().and_then(|s| s.parse::<f64>().ok());
    let audio_streams: Vec<&StreamJson> = json.streams.iter().filter(|s| is(s, "audio")).collect();
    let audio = audio_streams.first().map(|a| AudioStream {
        channels: a.channels.unwrap_or(1).max(1),
        sample_rate: a.sample_rate.as_deref().and_then(|r| r.parse().ok()).unwrap_or(0),
        start: seconds(&a.start_time).unwrap_or(0.0),
        streams: audio_streams.len(),
    });
    let format = json.format.as_ref();
    Ok(Probe {
        path: path.to_path_buf(),
        container: format.and_then(|f| f.format_name.clone()).unwrap_or_default(),
        codec: video.codec_name.clone().unwrap_or_default(),
        width: width as u32,
        height: height as u32,
        rotation,
        rate,
        variable_rate,
        video_start: seconds(&video.start_time).unwrap_or(0.0),
        duration: format.and_then(|f| seconds(&f.duration)),
        audio,
    })
}

/// Degrees of the display rotation (the display matrix, or an old `rotate` tag).
fn rotation_of(s: &StreamJson) -> i32 {
    let from_matrix = s
        .side_data_list
        .iter()
        .find_map(|d| d.get("rotation").and_then(|r| r.as_f64()));
    let from_tag = s.tags.get("rotate").and_then(|r| r.as_str()?.parse::<f64>().ok());
    from_matrix.or(from_tag).map_or(0, |r| r.round() as i32)
}

/// A running decoder: its frames, one BGR image (`height × width × 3`,
/// row-major) at a time, numbered from 0 at [`Probe::rate`].
pub struct Frames {
    child: Child,
    stdout: ChildStdout,
    stderr: std::thread::JoinHandle<Vec<u8>>,
    path: PathBuf,
    pub width: usize,
    pub height: usize,
    /// Frames read so far.
    pub count: u64,
}

/// Starts decoding `probe`'s first video stream.
pub fn frames(probe: &Probe) -> anyhow::Result<Frames> {
    frames_selected(probe, None, Pictures::default())
}

/// Thumbnails' width in pixels (height from the picture's aspect).
pub const THUMBNAIL_WIDTH: u32 = 160;

/// FFmpeg's filter making a thumbnail of a frame.
fn thumbnail_scale() -> String {
    format!("scale={THUMBNAIL_WIDTH}:-2:flags=area")
}

/// JPEGs FFmpeg writes of the selected frames besides sending them, numbered
/// from 0 in the selection's order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pictures<'a> {
    /// Full size, without chroma subsampling: `shot_NNNN_img_1.jpg`
    /// (ShotDetect's name for a shot's middle keyframe).
    pub keyframes: Option<&'a Path>,
    /// [`THUMBNAIL_WIDTH`] wide: `shot_NNNN.jpg`.
    pub thumbnails: Option<&'a Path>,
}

/// The filters numbering `probe`'s frames (by timestamp at the average
/// rate where the rate varies) and keeping those in `only` (ascending).
fn selection_filters(probe: &Probe, only: Option<&[u64]>) -> Vec<String> {
    let mut filters = Vec::new();
    if probe.variable_rate {
        // Frames by timestamp: frame n is the picture shown at n / rate.
        filters.push(format!("fps={}", probe.rate));
    }
    if let Some(frames) = only {
        let terms: Vec<String> = frames.iter().map(|n| format!("eq(n,{n})")).collect();
        filters.push(format!("select='{}'", terms.join("+")));
    }
    filters
}

/// Starts decoding `probe`'s first video stream, handing over only the
/// frames numbered in `only` (ascending) when given: FFmpeg still decodes
/// every frame, but converts and sends those alone. The selection goes to
/// FFmpeg as a filter script file (`scratch`), as a long film's list is
/// longer than a command-line argument may be. With `pictures` (and a
/// selection), FFmpeg also writes the selected frames as JPEGs.
pub fn frames_selected(
    probe: &Probe,
    only: Option<(&[u64], &Path)>,
    pictures: Pictures<'_>,
) -> anyhow::Result<Frames> {
    let mut cmd = command_on("ffmpeg", &probe.path)?;
    cmd.args(["-i", INPUT]);
    let filters = selection_filters(probe, only.map(|(frames, _)| frames));
    let raw = [
        "-fps_mode",
        "passthrough",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "bgr24",
        "pipe:1",
    ];
    let wants_pictures = pictures.keyframes.is_some() || pictures.thumbnails.is_some();
    match only {
        Some((_, script)) if wants_pictures => {
            // (folder, name after `shot_NNNN`, filter, JPEG quality)
            let outputs: Vec<(&Path, &str, String, &str)> = [
                // The JPEGs from the BGR frames lgss sees (as SceneSeg's
                // keyframes are OpenCV's BGR frames written by imwrite),
                // without chroma subsampling.
                pictures
                    .keyframes
                    .map(|d| (d, "_img_1.jpg", "format=bgr24,format=yuvj444p".to_string(), "2")),
                pictures.thumbnails.map(|d| (d, ".jpg", thumbnail_scale(), "4")),
            ]
            .into_iter()
            .flatten()
            .collect();
            let mut graph = format!("[0:v:0]{},split={}[raw]", filters.join(","), outputs.len() + 1);
            for i in 0..outputs.len() {
                graph.push_str(&format!("[p{i}]"));
            }
            for (i, (_, _, filter, _)) in outputs.iter().enumerate() {
                graph.push_str(&format!(";[p{i}]{filter}[jpg{i}]"));
            }
            std::fs::write(script, graph).with_context(|| format!("{}: cannot write", script.display()))?;
            cmd.arg("-filter_complex_script").arg(script);
            cmd.args(["-map", "[raw]"]).args(raw);
            for (i, (dir, suffix, _, quality)) in outputs.iter().enumerate() {
                let pattern = image2_pattern(dir, "shot_", suffix);
                cmd.args(["-map", &format!("[jpg{i}]")]).args(IMAGE2_OUT);
                cmd.args(["-q:v", quality, &pattern]);
            }
        }
        Some((_, script)) => {
            std::fs::write(script, filters.join(","))
                .with_context(|| format!("{}: cannot write", script.display()))?;
            cmd.args(["-map", "0:v:0", "-an", "-sn", "-dn"])
                .arg("-filter_script:v")
                .arg(script)
                .args(raw);
        }
        None => {
            cmd.args(["-map", "0:v:0", "-an", "-sn", "-dn"]);
            if !filters.is_empty() {
                cmd.args(["-vf", &filters.join(",")]);
            }
            cmd.args(raw);
        }
    }
    let (child, stdout, stderr) = spawn(cmd, &probe.path)?;
    Ok(Frames {
        child,
        stdout,
        stderr,
        path: probe.path.clone(),
        width: probe.width as usize,
        height: probe.height as usize,
        count: 0,
    })
}

/// Thumbnails ([`THUMBNAIL_WIDTH`] wide JPEGs) of the frames numbered in
/// `only` (ascending, at the probe's rate): one FFmpeg run that decodes the
/// stream and scales and encodes those frames alone. A frame past the end
/// of the stream has none.
pub fn thumbnails(probe: &Probe, only: &[u64]) -> anyhow::Result<Vec<Option<Vec<u8>>>> {
    if only.is_empty() {
        return Ok(Vec::new());
    }
    let scratch = tempfile::Builder::new()
        .prefix("lgss-thumbnails-")
        .tempdir()
        .context("cannot create a temporary folder")?;
    let mut filters = selection_filters(probe, Some(only));
    filters.push(thumbnail_scale());
    let script = scratch.path().join("filters.txt");
    std::fs::write(&script, filters.join(","))
        .with_context(|| format!("{}: cannot write", script.display()))?;
    let pattern = image2_pattern(scratch.path(), "", ".jpg");
    let mut cmd = command_on("ffmpeg", &probe.path)?;
    cmd.args(["-i", INPUT, "-map", "0:v:0", "-an", "-sn", "-dn"])
        .arg("-filter_script:v")
        .arg(&script)
        .args(IMAGE2_OUT)
        .args(["-q:v", "4"])
        .arg(pattern);
    let (child, stdout, stderr) = spawn(cmd, &probe.path)?;
    drop(stdout);
    finish(child, stderr, &probe.path)?;
    let mut out = Vec::with_capacity(only.len());
    for i in 0..only.len() {
        let path = scratch.path().join(format!("{i:04}.jpg"));
        out.push(std::fs::read(&path).ok());
    }
    Ok(out)
}

/// Output options of numbered JPEGs, one per frame that reaches the
/// output, from 0.
const IMAGE2_OUT: [&str; 6] = ["-fps_mode", "passthrough", "-f", "image2", "-start_number", "0"];

/// FFmpeg's image2 output pattern for `dir/<prefix>NNNN<suffix>` (numbered
/// from 0, four digits or more): a `%` of the path itself is doubled, as
/// image2 reads `%` as a pattern.
fn image2_pattern(dir: &Path, prefix: &str, suffix: &str) -> String {
    let escape = |s: &str| s.replace('%', "%%");
    format!(
        "{}/{}%04d{}",
        escape(&dir.display().to_string()),
        escape(prefix),
        escape(suffix)
    )
}

type Spawned = (Child, ChildStdout, std::thread::JoinHandle<Vec<u8>>);

fn spawn(mut cmd: Command, path: &Path) -> anyhow::Result<Spawned> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("{}: cannot run ffmpeg", path.display()))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("ffmpeg: no stdout"))?;
    // A larger pipe (up to the system's unprivileged limit, 1 MiB by
    // default) means fewer switches between FFmpeg and lgss per frame.
    // SAFETY: fcntl on the pipe this process owns; failure leaves 64 KiB.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::fcntl(stdout.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
    let mut err = child.stderr.take().ok_or_else(|| anyhow!("ffmpeg: no stderr"))?;
    // FFmpeg's messages, the first 64 KiB kept: read on the side so a
    // chatty decoder never blocks on a full pipe.
    let stderr = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let _ = (&mut err).take(64 << 10).read_to_end(&mut kept);
        let _ = std::io::copy(&mut err, &mut std::io::sink());
        kept
    });
    Ok((child, stdout, stderr))
}

/// How a decoder ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// FFmpeg's error messages (damaged packets it decoded past), if any.
    pub warnings: Option<String>,
}

fn finish(
    mut child: Child,
    stderr: std::thread::JoinHandle<Vec<u8>>,
    path: &Path,
) -> anyhow::Result<Finished> {
    let status = child
        .wait()
        .with_context(|| format!("{}: ffmpeg did not finish", path.display()))?;
    let messages = stderr.join().unwrap_or_default();
    if !status.success() {
        bail!(
            "{}: FFmpeg cannot decode it: {}",
            path.display(),
            ffmpeg_error(&messages)
        );
    }
    Ok(Finished {
        warnings: (!messages.iter().all(u8::is_ascii_whitespace)).then(|| ffmpeg_error(&messages)),
    })
}

impl Frames {
    pub fn frame_bytes(&self) -> usize {
        self.width * self.height * 3
    }

    /// Reads the next frame into `buf` (resized to one frame); false at the end.
    pub fn next_into(&mut self, buf: &mut Vec<u8>) -> anyhow::Result<bool> {
        buf.resize(self.frame_bytes(), 0);
        let mut filled = 0;
        while filled < buf.len() {
            match self.stdout.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(anyhow!("{}: reading decoded frames: {e}", self.path.display())),
            }
        }
        if filled == 0 {
            return Ok(false);
        }
        if filled < buf.len() {
            bail!(
                "{}: FFmpeg's output ended inside frame {} ({filled} of {} bytes)",
                self.path.display(),
                self.count,
                buf.len()
            );
        }
        self.count += 1;
        Ok(true)
    }

    /// Waits for FFmpeg; an error if it failed, its messages if it decoded
    /// past damage.
    pub fn finish(self) -> anyhow::Result<Finished> {
        drop(self.stdout);
        finish(self.child, self.stderr, &self.path)
    }

    /// Stops FFmpeg before the end of the video (what was wanted is read).
    pub fn finish_early(mut self) -> anyhow::Result<Finished> {
        let _ = self.child.kill();
        drop(self.stdout);
        let _ = self.child.wait();
        let _ = self.stderr.join();
        Ok(Finished { warnings: None })
    }
}

/// The first audio track, mixed down to mono as librosa does (the mean of
/// the channels) and resampled to 16 kHz with the SoX resampler (`soxr`,
/// FFmpeg's `aresample`; librosa's default `soxr_hq` is the same library at
/// the same 20-bit precision), read in order as f32 samples from the audio
/// stream's start ([`AudioStream::start`] on the container's clock).
pub struct Samples {
    child: Child,
    stdout: std::io::BufReader<ChildStdout>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
    path: PathBuf,
    /// Samples read so far.
    pub position: u64,
}

/// Starts decoding `probe`'s first audio track; `None` without one.
pub fn audio_16k_mono(probe: &Probe) -> anyhow::Result<Option<Samples>> {
    let Some(audio) = &probe.audio else {
        return Ok(None);
    };
    let n = audio.channels;
    let gain = format!("{:.17}", 1.0 / f64::from(n));
    let mix: Vec<String> = (0..n).map(|c| format!("{gain}*c{c}")).collect();
    let filter = format!(
        "pan=mono|c0={},aresample={AUDIO_RATE}:resampler=soxr",
        mix.join("+")
    );
    let mut cmd = command_on("ffmpeg", &probe.path)?;
    cmd.args(["-i", INPUT, "-map", "0:a:0", "-vn", "-sn", "-dn", "-af", &filter])
        .args(["-f", "f32le", "-ac", "1", "pipe:1"]);
    let (child, stdout, stderr) = spawn(cmd, &probe.path)?;
    Ok(Some(Samples {
        child,
        stdout: std::io::BufReader::with_capacity(1 << 16, stdout),
        stderr,
        path: probe.path.clone(),
        position: 0,
    }))
}

impl Samples {
    /// Appends up to `n` next samples to `out`; fewer only at the end (a
    /// last partial sample is dropped).
    pub fn read(&mut self, n: u64, out: &mut Vec<f32>) -> anyhow::Result<()> {
        let mut bytes = Vec::with_capacity((n as usize).min(1 << 22) * 4);
        (&mut self.stdout)
            .take(n * 4)
            .read_to_end(&mut bytes)
            .map_err(|e| anyhow!("{}: reading decoded audio: {e}", self.path.display()))?;
        let samples = bytes.chunks_exact(4);
        self.position += samples.len() as u64;
        out.extend(samples.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        Ok(())
    }

    /// Skips up to `n` samples.
    pub fn skip(&mut self, n: u64) -> anyhow::Result<()> {
        let mut scratch = Vec::new();
        let mut left = n;
        while left > 0 {
            scratch.clear();
            let step = left.min(1 << 16);
            self.read(step, &mut scratch)?;
            if (scratch.len() as u64) < step {
                break;
            }
            left -= step;
        }
        Ok(())
    }

    /// Waits for FFmpeg (the rest of the track read and dropped).
    pub fn finish(mut self) -> anyhow::Result<Finished> {
        let _ = std::io::copy(&mut self.stdout, &mut std::io::sink());
        drop(self.stdout);
        finish(self.child, self.stderr, &self.path)
    }
}
