//! A movie's scenes at a glance (`segment --plot`): a PNG timeline with the
//! boundary probability over time, the threshold, the predicted scenes as
//! coloured bands and, when the file has them, the ground-truth scenes
//! beneath. Text uses an embedded DejaVu font, so nothing depends on the
//! machine's fonts.

use std::path::Path;
use std::sync::Once;

use anyhow::anyhow;
use plotters::prelude::*;
use plotters::series::DashedLineSeries;

use crate::segment::Scene;

/// Image size: wide enough that a 2,400-shot movie's scenes stay apart.
pub const WIDTH: u32 = 1800;
pub const HEIGHT: u32 = 560;

/// Band colours; neighbouring scenes always differ.
pub const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Band rows below the probability axis, in its units.
const PRED_BAND: (f64, f64) = (-0.24, -0.06);
const TRUTH_BAND: (f64, f64) = (-0.50, -0.32);

/// What one picture shows.
pub struct Timeline<'a> {
    pub title: &'a str,
    pub fps: f64,
    pub shot_end_frame: &'a [i64],
    pub boundary_probabilities: &'a [f64],
    pub threshold: f64,
    pub scenes: &'a [Scene],
    /// Ground-truth scenes, when the file has ground truth.
    pub truth: Option<&'a [Scene]>,
}

pub(crate) fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

/// The PNG's bytes.
pub fn png(t: &Timeline<'_>) -> anyhow::Result<Vec<u8>> {
    register_font();
    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    draw(t, &mut rgb).map_err(|e| anyhow!("drawing the timeline: {e}"))?;
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header()?;
    w.write_image_data(&rgb)?;
    w.finish()?;
    Ok(out)
}

/// Writes the PNG to `path` atomically.
pub fn write(t: &Timeline<'_>, path: &Path) -> anyhow::Result<()> {
    crate::fsutil::write_atomic(path, &png(t)?)
}

fn minutes(frame: i64, fps: f64) -> f64 {
    frame as f64 / fps / 60.0
}

fn scene_span(s: &Scene, fps: f64) -> (f64, f64) {
    (minutes(s.first_frame, fps), minutes(s.last_frame + 1, fps))
}

fn draw(t: &Timeline<'_>, rgb: &mut [u8]) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(rgb, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let end = t.shot_end_frame.last().map_or(1, |&f| f + 1);
    let x_max = minutes(end, t.fps).max(1e-3);
    let y_min = if t.truth.is_some() {
        TRUTH_BAND.0 - 0.04
    } else {
        PRED_BAND.0 - 0.04
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(t.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(96)
        .build_cartesian_2d(0.0..x_max, y_min..1.08)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(WHITE.mix(0.0))
        .x_desc("time (minutes:seconds)")
        .y_desc("boundary probability")
        .y_labels(6)
        .y_label_formatter(&|y| {
            if *y < -1e-9 {
                String::new()
            } else {
                format!("{y:.1}")
            }
        })
        .x_label_formatter(&|x| {
            let secs = (x * 60.0).round() as i64;
            format!("{}:{:02}", secs / 60, secs % 60)
        })
        .draw()?;

    // Predicted scenes: faint behind the curve, solid in their own row.
    let bands = |scenes: &[Scene], (lo, hi): (f64, f64), faint: bool| {
        scenes
            .iter()
            .map(|s| {
                let (a, b) = scene_span(s, t.fps);
                let c = PALETTE[s.index % PALETTE.len()];
                let style = if faint { c.mix(0.10).filled() } else { c.filled() };
                Rectangle::new([(a, lo), (b, hi)], style)
            })
            .collect::<Vec<_>>()
    };
    chart.draw_series(bands(t.scenes, (0.0, 1.0), true))?;
    chart
        .draw_series(bands(t.scenes, PRED_BAND, false))?
        .label(format!("predicted scenes ({})", t.scenes.len()))
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], PALETTE[0].filled()));
    if let Some(truth) = t.truth {
        chart
            .draw_series(bands(truth, TRUTH_BAND, false))?
            .label(format!("ground-truth scenes ({})", truth.len()))
            .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], PALETTE[1].filled()));
    }
    let row_label = |text: &str, y: f64| {
        Text::new(
            text.to_string(),
            (x_max * 0.002, y),
            ("sans-serif", 14).into_font().color(&BLACK),
        )
    };
    chart.draw_series([row_label("predicted", PRED_BAND.1 + 0.05)])?;
    if t.truth.is_some() {
        chart.draw_series([row_label("ground truth", TRUTH_BAND.1 + 0.05)])?;
    }

    // The probability of the boundary after each shot, at that shot's end.
    let curve = t
        .boundary_probabilities
        .iter()
        .zip(t.shot_end_frame)
        .map(|(&p, &f)| (minutes(f + 1, t.fps), p));
    chart
        .draw_series(LineSeries::new(curve, BLACK.stroke_width(1)))?
        .label("boundary probability")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK));
    let th = t.threshold;
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, th), (x_max, th)],
            8,
            6,
            RED.stroke_width(2),
        ))?
        .label(format!("threshold {th}"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present()?;
    Ok(())
}
