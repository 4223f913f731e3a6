//! Results as web pages: one self-contained HTML file per segmented movie
//! (`segment --html`), the upload page `lgss serve` answers at `/`, and
//! `train`'s curves ([`curves`]).
//!
//! A page carries everything inline — CSS, the script, the data as JSON,
//! thumbnails and the chapters track as `data:` URLs — so it opens from
//! `file://`, mails as one file and asks no network for anything. Its
//! Content-Security-Policy allows only its own inline script and style (by
//! hash), `data:` images and the movie's own video file.

pub mod curves;

use std::path::Path;

use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::metrics::{MetricsError, MovieBoundaries, Scores};
use crate::segment::{Scene, Segmentation};

const STYLE: &str = include_str!("view.css");
const VIEW_JS: &str = include_str!("view.js");
const SERVE_JS: &str = include_str!("serve.js");

/// What a movie's page shows: the segmentation (as `segment` writes it in
/// JSON) and what only a page needs.
#[derive(Debug, Serialize)]
pub struct View<'a> {
    pub segmentation: &'a Segmentation,
    /// The model's file name.
    pub model: Option<String>,
    /// Ground-truth scenes, where the movie has ground truth.
    pub truth: Option<Vec<Scene>>,
    /// The movie's scores as `lgss eval` gives them, with ground truth.
    pub scores: Option<Scores>,
    /// The video, as a URL relative to the page.
    pub media: Option<String>,
    /// The scenes as WebVTT chapters (what `--format webvtt` writes).
    pub chapters: Option<String>,
    /// One picture per scene as a `data:` URL, or none.
    pub thumbnails: Vec<String>,
}

/// The scores of `seg` against `truth`, the movie's boundaries, as `lgss
/// eval` gives them (at the challenge's 0.5 on the written probabilities).
pub fn movie_scores(seg: &Segmentation, truth: &[bool]) -> Result<Scores, MetricsError> {
    crate::metrics::evaluate(&[MovieBoundaries {
        imdb_id: &seg.imdb_id,
        ground_truth: truth,
        prediction: &seg.boundary_probabilities,
        shot_end_frame: &seg.shot_end_frame,
        scored: None,
    }])
}

/// The frame each scene is shown by: the middle keyframe of its middle
/// shot, as ShotDetect picks a shot's keyframe.
pub fn scene_frames(scenes: &[Scene], shot_end_frame: &[i64]) -> Vec<u64> {
    middle_shots(scenes)
        .map(|shot| {
            let start = if shot == 0 {
                0
            } else {
                shot_end_frame[shot - 1] + 1
            };
            crate::video::shots::Shot {
                start: start.max(0) as u64,
                end: (shot_end_frame[shot] + 1).max(start + 1) as u64,
            }
            .middle()
        })
        .collect()
}

/// The middle shot of each scene: the one it is shown by.
fn middle_shots(scenes: &[Scene]) -> impl Iterator<Item = usize> + '_ {
    scenes
        .iter()
        .map(|s| s.first_shot + (s.last_shot - s.first_shot) / 2)
}

/// Thumbnails of `scenes` as `data:` URLs: the extraction's own
/// (`extracted`, a folder of `shot_NNNN.jpg`, `lgss extract` makes them in
/// its keyframe pass) where it has every one, else from `video` in one
/// FFmpeg run; none, with the returned warning, where the video is not
/// readable (the page then shows no pictures).
pub fn scene_thumbnails(
    video: &Path,
    scenes: &[Scene],
    shot_end_frame: &[i64],
    extracted: Option<&Path>,
) -> (Vec<String>, Option<String>) {
    let kept: Option<Vec<Vec<u8>>> = extracted.and_then(|dir| {
        middle_shots(scenes)
            .map(|shot| crate::regular_file::read(&dir.join(format!("shot_{shot:04}.jpg"))).ok())
            .collect()
    });
    let pictures = match kept {
        Some(k) => Ok(k.into_iter().map(Some).collect()),
        None => crate::video::ffmpeg::probe(video).and_then(|probe| {
            crate::video::ffmpeg::thumbnails(&probe, &scene_frames(scenes, shot_end_frame))
        }),
    };
    match pictures {
        Ok(p) => (
            p.iter()
                .map(|j| j.as_deref().map(jpeg_data_url).unwrap_or_default())
                .collect(),
            None,
        ),
        Err(e) => (Vec::new(), Some(format!("no thumbnails: {e:#}"))),
    }
}

/// A JPEG as a `data:` URL.
pub fn jpeg_data_url(jpeg: &[u8]) -> String {
    format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(jpeg)
    )
}

/// The URL of `target` relative to a page in `page_dir` (both resolved, so
/// links and `..` do not mislead), each part percent-encoded; the absolute
/// `file://` URL where no relative path exists.
pub fn relative_url(page_dir: &Path, target: &Path) -> String {
    use std::path::Component;
    let (Ok(from), Ok(to)) = (page_dir.canonicalize(), target.canonicalize()) else {
        return crate::scene_formats::file_url(target);
    };
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    if common == 0 {
        return crate::scene_formats::file_url(target);
    }
    let mut parts: Vec<String> = vec!["..".to_string(); from.len() - common];
    for c in &to[common..] {
        // The name's own bytes, so a name that is not UTF-8 still links.
        let bytes = c.as_os_str().as_encoded_bytes();
        parts.push(percent_encoding::percent_encode(bytes, crate::scene_formats::URL_PATH_PART).to_string());
    }
    parts.join("/")
}

/// JSON that can sit inside a `<script>` element: `<`, `>` and `&` escaped,
/// so no string in the data can close the element.
fn script_json(value: &impl Serialize) -> anyhow::Result<String> {
    let json = serde_json::to_string(value)?;
    Ok(json
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029"))
}

/// CSP's hash source of an inline element's text.
fn csp_hash(text: &str) -> String {
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
    )
}

/// Text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: `style`, `body`, then the data (JSON) and the script.
fn document(
    title: &str,
    policy: &str,
    style: &str,
    body: &str,
    data: Option<&str>,
    script: Option<&str>,
) -> String {
    let data = data.map_or(String::new(), |d| {
        format!("<script type=\"application/json\" id=\"lgss-data\">{d}</script>\n")
    });
    let script = script.map_or(String::new(), |s| format!("<script>{s}</script>\n"));
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{policy}\">\n\
         <meta name=\"generator\" content=\"lgss {version}\">\n\
         <title>{title}</title>\n<style>{style}</style>\n</head>\n<body>\n{body}\n{data}{script}</body>\n</html>\n",
        title = escape(title),
        version = env!("CARGO_PKG_VERSION"),
    )
}

/// The script of a movie page: the view, then drawing the embedded data.
fn movie_script() -> String {
    format!(
        "{VIEW_JS}\nlgssView(document.getElementById(\"view\"), \
         JSON.parse(document.getElementById(\"lgss-data\").textContent));\n"
    )
}

/// A movie's page: one self-contained HTML file.
pub fn movie_page(view: &View<'_>) -> anyhow::Result<String> {
    let script = movie_script();
    let policy = format!(
        "default-src 'none'; script-src {}; style-src {}; img-src data:; media-src 'self' file: data:",
        csp_hash(&script),
        csp_hash(STYLE)
    );
    let title = format!(
        "{} — lgss scenes",
        crate::data::pickle::printable(&view.segmentation.imdb_id)
    );
    let body = "<main id=\"view\"><noscript>This page draws the scenes with JavaScript.</noscript></main>";
    Ok(document(
        &title,
        &policy,
        STYLE,
        body,
        Some(&script_json(view)?),
        Some(&script),
    ))
}

/// A size as people read it: `128 MiB`, `1.5 KiB`, `300 bytes`.
fn human_bytes(n: usize) -> String {
    let units = [(1usize << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in units {
        if n >= size {
            let v = n as f64 / size as f64;
            return if n.is_multiple_of(size) {
                format!("{} {unit}", n / size)
            } else {
                format!("{v:.1} {unit}")
            };
        }
    }
    format!("{n} bytes")
}

/// What `lgss serve`'s page needs to know of the server.
#[derive(Debug, Serialize)]
pub struct ServeSettings {
    /// The model's file name.
    pub model: String,
    /// Uploads over this many bytes are refused before they are sent.
    pub max_body: usize,
    /// Whether the API asks for `Authorization: Bearer TOKEN`.
    pub token_required: bool,
}

/// The page `lgss serve` answers at `/`.
pub fn serve_page(settings: &ServeSettings) -> anyhow::Result<ServePage> {
    let script = format!("{VIEW_JS}\n{SERVE_JS}");
    let policy = format!(
        "default-src 'none'; script-src {}; style-src {}; img-src data:; connect-src 'self'; form-action 'none'; base-uri 'none'",
        csp_hash(&script),
        csp_hash(STYLE)
    );
    let body = format!(
        "<main>\n<h1>lgss serve</h1>\n<p class=\"note\">Scenes of a movie file (a MovieScenes pickle) with \
         <strong>{model}</strong>. The file goes to this server's <code>POST /v1/segment</code> and nowhere else.</p>\n\
         <form class=\"form\" id=\"options\">\n<label id=\"token-field\"{hidden}>Token <input type=\"password\" id=\"token\" autocomplete=\"off\"></label>\n\
         <label>Rule <select id=\"rule\"><option value=\"\">global grouping (the model's)</option>\
         <option value=\"local\">threshold rule</option></select></label>\n\
         <span class=\"note\">Up to {limit}.</span>\n</form>\n\
         <div class=\"drop\" id=\"drop\"><p>Drop a movie file here, or choose one:</p>\
         <input type=\"file\" id=\"file\" accept=\".pkl\" aria-label=\"movie file\"></div>\n\
         <p class=\"status\" id=\"status\" aria-live=\"polite\"></p>\n<p class=\"error\" id=\"error\" role=\"alert\"></p>\n\
         <div id=\"view\" hidden></div>\n</main>",
        model = escape(&settings.model),
        hidden = if settings.token_required { "" } else { " hidden" },
        limit = human_bytes(settings.max_body),
    );
    Ok(ServePage {
        html: document(
            "lgss serve",
            &policy,
            STYLE,
            &body,
            Some(&script_json(settings)?),
            Some(&script),
        ),
        policy,
    })
}

/// `lgss serve`'s page and the policy to send with it as a header too.
pub struct ServePage {
    pub html: String,
    pub policy: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_json_cannot_close_the_element() {
        let s =
            script_json(&serde_json::json!({"id": "</script><script>alert(1)</script>&\u{2028}"})).unwrap();
        assert!(!s.contains('<') && !s.contains('>') && !s.contains('&') && !s.contains('\u{2028}'));
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back["id"], "</script><script>alert(1)</script>&\u{2028}");
    }

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(human_bytes(128 << 20), "128 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(300), "300 bytes");
    }

    #[test]
    fn relative_urls_climb_and_escape() {
        let dir = std::env::temp_dir().join(format!("lgss-page-url-{}", std::process::id()));
        let (pages, media) = (dir.join("out/pages"), dir.join("videos/a b#1%.mp4"));
        std::fs::create_dir_all(&pages).unwrap();
        std::fs::create_dir_all(media.parent().unwrap()).unwrap();
        std::fs::write(&media, b"x").unwrap();
        assert_eq!(relative_url(&pages, &media), "../../videos/a%20b%231%25.mp4");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
