//! Scenes where video tools read them: lgss's JSON, CSV, WebVTT chapters,
//! CMX 3600 EDL and OpenTimelineIO JSON. Every format is written from the
//! same scenes (frames are exact; timecodes at the movie's fps), and says
//! which rule decided them: a comment (`rule`, from
//! [`crate::segment::rule_description`]) in CSV, WebVTT and EDL (the first
//! event's), metadata in OTIO (and a field in the JSON).

use std::path::Path;

use crate::grouping::Params;
use crate::segment::{rule_description, Scene, Segmentation};

/// Which rule decided, as OTIO metadata (`metadata.lgss` of the timeline).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleMetadata<'a> {
    /// `global` or `local`.
    pub rule: &'a str,
    pub threshold: f64,
    /// Global grouping's settings (null with the threshold rule).
    pub global: Option<&'a Params>,
}

/// `rule` on one line, whatever it holds.
fn one_line(rule: &str) -> String {
    rule.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `--format` of `lgss segment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SceneFormat {
    /// lgss's JSON: probabilities and scenes (one object per movie).
    Json,
    /// One row per scene.
    Csv,
    /// WebVTT chapters (one cue per scene), for players.
    Webvtt,
    /// CMX 3600 edit decision list (one event per scene), for editors.
    Edl,
    /// OpenTimelineIO JSON (one clip per scene on a video track).
    Otio,
}

impl SceneFormat {
    /// The file extension outputs get.
    pub fn extension(self) -> &'static str {
        match self {
            SceneFormat::Json => "json",
            SceneFormat::Csv => "csv",
            SceneFormat::Webvtt => "vtt",
            SceneFormat::Edl => "edl",
            SceneFormat::Otio => "otio",
        }
    }

    /// The media type `lgss serve` answers with.
    pub fn media_type(self) -> &'static str {
        match self {
            SceneFormat::Json | SceneFormat::Otio => "application/json",
            SceneFormat::Csv => "text/csv; charset=utf-8",
            SceneFormat::Webvtt => "text/vtt; charset=utf-8",
            SceneFormat::Edl => "text/plain; charset=utf-8",
        }
    }

    /// The format named as `--format` names it (`?format=` of `lgss serve`).
    pub fn parse(name: &str) -> Option<SceneFormat> {
        <SceneFormat as clap::ValueEnum>::from_str(name, false).ok()
    }

    /// Whether this format can state times at `fps`: an EDL counts
    /// timecode at broadcast rates only ([`edl_timebase`]); the others take
    /// any positive fps. Checked with the options, before any movie is read.
    pub fn check_fps(self, fps: f64) -> Result<(), String> {
        match self {
            SceneFormat::Edl => edl_timebase(fps).map(drop),
            _ => Ok(()),
        }
    }
}

/// A movie's segmentation in `format`: the bytes `lgss segment` writes and
/// `lgss serve` answers.
pub fn render(seg: &Segmentation, format: SceneFormat) -> anyhow::Result<String> {
    let rule = rule_description(seg.threshold, seg.global.as_ref());
    Ok(match format {
        SceneFormat::Json => serde_json::to_string(seg)? + "\n",
        SceneFormat::Csv => csv(&seg.imdb_id, &seg.scenes, &rule),
        SceneFormat::Webvtt => webvtt(&seg.scenes, &rule),
        SceneFormat::Edl => edl(&seg.imdb_id, &seg.scenes, seg.fps, &rule, seg.media.as_deref())
            .map_err(anyhow::Error::msg)?,
        SceneFormat::Otio => {
            let how = RuleMetadata {
                rule: seg.rule,
                threshold: seg.threshold,
                global: seg.global.as_ref(),
            };
            serde_json::to_string_pretty(&otio(
                &seg.imdb_id,
                &seg.scenes,
                seg.fps,
                &how,
                seg.media.as_deref(),
            ))? + "\n"
        }
    })
}

/// One row per scene, with a header, after a `# lgss: <rule>` comment line
/// (`pandas.read_csv(f, comment="#")`).
pub fn csv(imdb_id: &str, scenes: &[Scene], rule: &str) -> String {
    let mut out = format!(
        "# lgss: {}\nimdb_id,scene,first_shot,last_shot,first_frame,last_frame,start,end,confidence\n",
        one_line(rule)
    );
    for sc in scenes {
        out.push_str(&format!(
            "{imdb_id},{},{},{},{},{},{},{},{:.6}\n",
            sc.index,
            sc.first_shot,
            sc.last_shot,
            sc.first_frame,
            sc.last_frame,
            sc.start,
            sc.end,
            sc.confidence
        ));
    }
    out
}

/// WebVTT chapters: a cue per scene from its first frame to the end of
/// its last, titled "Scene N", after a NOTE block saying the rule.
pub fn webvtt(scenes: &[Scene], rule: &str) -> String {
    // A NOTE may not hold "-->"; the rule's text never does, but make sure.
    let note = one_line(rule).replace("-->", "->");
    let mut out = format!("WEBVTT\n\nNOTE lgss: {note}\n\n");
    for sc in scenes {
        out.push_str(&format!(
            "{}\n{} --> {}\nScene {}\n\n",
            sc.index + 1,
            sc.start,
            sc.end,
            sc.index + 1
        ));
    }
    out
}

/// The frame rates an EDL can count timecode at: (the rate, its timebase).
/// NTSC's 1000/1001 rates count at the next whole number (non-drop frame).
const EDL_RATES: [(f64, i64); 10] = [
    (24000.0 / 1001.0, 24),
    (24.0, 24),
    (25.0, 25),
    (30000.0 / 1001.0, 30),
    (30.0, 30),
    (48000.0 / 1001.0, 48),
    (48.0, 48),
    (50.0, 50),
    (60000.0 / 1001.0, 60),
    (60.0, 60),
];

/// The timecode base of `fps` in an EDL, or why there is none. A rate as
/// users type it (23.976, 29.97, 59.94) is within 0.0005 of the exact
/// 1000/1001 rate, so that is the tolerance (half the last digit of
/// three decimals, plus the float's own error).
pub fn edl_timebase(fps: f64) -> Result<i64, String> {
    EDL_RATES
        .iter()
        .find(|(rate, _)| (fps - rate).abs() <= 0.0005 + f64::EPSILON * rate)
        .map(|&(_, base)| base)
        .ok_or_else(|| {
            format!(
                "fps {fps}: an EDL counts timecode at 23.976, 24, 25, 29.97, 30, 47.952, 48, 50, 59.94 or 60 fps"
            )
        })
}

/// `HH:MM:SS:FF` of a frame at an integer timebase (non-drop frame).
fn smpte(frame: i64, base: i64) -> String {
    let (secs, ff) = (frame / base, frame % base);
    format!(
        "{:02}:{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ff
    )
}

/// A CMX 3600 EDL: one video cut event per scene, source and record times
/// equal (the movie itself), non-drop frame at the fps's timebase
/// ([`edl_timebase`]: 23.976 counts at 24, 29.97 at 30), so every frame is
/// exact and a label at 29.97 runs 0.1% behind the wall clock (the JSON,
/// CSV and WebVTT carry wall-clock times).
///
/// The rule is a `*` comment of the first event, after its clip name: a
/// CMX 3600 comment belongs to the event above it, and readers refuse one
/// before any event (OpenTimelineIO: "Unknown event type"). Editors' tools
/// keep an event's comments with its clip (OTIO as the first clip's
/// `metadata.cmx_3600.comments`, pycmx as the event's remarks, NLEs as
/// clip notes), so the rule travels with the timeline. No blank line
/// between events, as OTIO's own writer and Avid write them.
///
/// With `media` (the video the movie came from), each event also names it
/// in `* SOURCE FILE:` and `* FROM FILE:` comments, which editors, pycmx
/// and OpenTimelineIO take as the clip's media.
///
/// Timecode wraps at 24 hours, so a movie that long has no EDL.
pub fn edl(
    imdb_id: &str,
    scenes: &[Scene],
    fps: f64,
    rule: &str,
    media: Option<&Path>,
) -> Result<String, String> {
    let base = edl_timebase(fps)?;
    if let Some(last) = scenes.last() {
        if last.last_frame + 1 > 24 * 3600 * base {
            return Err(format!(
                "{imdb_id}: the movie runs {} frames, past CMX 3600 timecode's 24 hours at {base} fps",
                last.last_frame + 1
            ));
        }
    }
    let title: String = imdb_id.chars().filter(|c| !c.is_control()).take(70).collect();
    let mut out = format!("TITLE: {title}\nFCM: NON-DROP FRAME\n\n");
    for sc in scenes {
        let (a, b) = (smpte(sc.first_frame, base), smpte(sc.last_frame + 1, base));
        out.push_str(&format!(
            "{:03}  AX       V     C        {a} {b} {a} {b}\n* FROM CLIP NAME: {title} scene {}\n",
            sc.index + 1,
            sc.index + 1
        ));
        if let Some(media) = media {
            // Two dialects name an event's media: pycmx and Avid read
            // SOURCE FILE, OpenTimelineIO's adapter (and Nucoda) FROM FILE.
            let media = one_line(&media.display().to_string());
            out.push_str(&format!("* SOURCE FILE: {media}\n* FROM FILE: {media}\n"));
        }
        if sc.index == 0 {
            out.push_str(&format!("* lgss: {}\n", one_line(rule)));
        }
    }
    Ok(out)
}

/// OpenTimelineIO JSON: a timeline with one video track holding a clip per
/// scene, each with its source range in frames at the movie's fps; the
/// rule in the timeline's `metadata.lgss`. With `media`, each clip's media
/// is that video (an external reference by `file://` URL, available over
/// the whole movie); without, a missing reference named after the movie.
pub fn otio(
    imdb_id: &str,
    scenes: &[Scene],
    fps: f64,
    rule: &RuleMetadata<'_>,
    media: Option<&Path>,
) -> serde_json::Value {
    let time = |v: i64| serde_json::json!({"OTIO_SCHEMA": "RationalTime.1", "rate": fps, "value": v as f64});
    let frames = scenes.last().map_or(0, |sc| sc.last_frame + 1);
    let media_reference = match media {
        Some(path) => serde_json::json!({
            "OTIO_SCHEMA": "ExternalReference.1",
            "name": path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            "metadata": {},
            "available_range": {"OTIO_SCHEMA": "TimeRange.1", "start_time": time(0), "duration": time(frames)},
            "available_image_bounds": null,
            "target_url": file_url(path),
        }),
        None => {
            serde_json::json!({"OTIO_SCHEMA": "MissingReference.1", "name": imdb_id, "metadata": {}, "available_range": null})
        }
    };
    let clips: Vec<serde_json::Value> = scenes
        .iter()
        .map(|sc| {
            serde_json::json!({
                "OTIO_SCHEMA": "Clip.1",
                "name": format!("Scene {}", sc.index + 1),
                "metadata": {"lgss": {"first_shot": sc.first_shot, "last_shot": sc.last_shot, "confidence": sc.confidence}},
                "source_range": {
                    "OTIO_SCHEMA": "TimeRange.1",
                    "start_time": time(sc.first_frame),
                    "duration": time(sc.last_frame + 1 - sc.first_frame),
                },
                "effects": [],
                "markers": [],
                "enabled": true,
                "media_reference": media_reference.clone(),
            })
        })
        .collect();
    serde_json::json!({
        "OTIO_SCHEMA": "Timeline.1",
        "name": imdb_id,
        "metadata": {"lgss": rule},
        "global_start_time": null,
        "tracks": {
            "OTIO_SCHEMA": "Stack.1",
            "name": "tracks",
            "metadata": {},
            "source_range": null,
            "effects": [],
            "markers": [],
            "enabled": true,
            "children": [{
                "OTIO_SCHEMA": "Track.1",
                "name": "scenes",
                "kind": "Video",
                "metadata": {},
                "source_range": null,
                "effects": [],
                "markers": [],
                "enabled": true,
                "children": clips,
            }],
        },
    })
}

/// A `file://` URL of an absolute path, bytes outside RFC 3986's
/// unreserved set and `/` percent-encoded.
pub fn file_url(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    const PATH: &percent_encoding::AsciiSet = &URL_PATH_PART.remove(b'/');
    format!(
        "file://{}",
        percent_encoding::percent_encode(path.as_os_str().as_bytes(), PATH)
    )
}

/// What a URL's path part escapes: every byte but letters, digits and
/// `-._~` (RFC 3986's unreserved characters).
pub const URL_PATH_PART: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
