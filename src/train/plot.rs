//! `curves.png`: training and validation loss, and validation AP / mAP /
//! Miou, per epoch. Text uses an embedded DejaVu font, so nothing depends on
//! the machine's fonts.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use super::EpochLog;

/// Draws the curves to `path` (PNG), atomically.
pub fn curves(history: &[EpochLog], path: &Path) -> anyhow::Result<()> {
    if history.is_empty() {
        return Ok(());
    }
    crate::timeline::register_font();
    let tmp = crate::fsutil::temp_path(path).with_extension("png");
    draw(history, &tmp).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow!("{}: {e}", path.display())
    })?;
    std::fs::rename(&tmp, path).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Writes the same curves as a page (`curves.html`), atomically: inline
/// SVG with each point's value on hover, and every epoch's numbers.
pub fn curves_page(history: &[EpochLog], path: &Path) -> anyhow::Result<()> {
    use crate::page::curves::{page, Panel, Series, Table};
    let series = |name: &'static str, colour: &'static str, f: fn(&EpochLog) -> f64| Series {
        name,
        colour,
        points: history.iter().map(|l| (l.epoch as f64, f(l))).collect(),
    };
    let panels = [
        Panel {
            title: "Loss",
            series: vec![
                series("train", "#1f77b4", |l| l.train_loss),
                series("validation", "#ff7f0e", |l| l.val_loss),
            ],
        },
        Panel {
            title: "Validation scores",
            series: vec![
                series("AP", "#2ca02c", |l| l.val_ap),
                series("mAP", "#9467bd", |l| l.val_map),
                series("Miou", "#d62728", |l| l.val_miou),
                series("Miou at threshold", "#8c564b", |l| l.val_miou_at_threshold),
            ],
        },
    ];
    let header = [
        "epoch",
        "lr",
        "train loss",
        "val loss",
        "AP",
        "mAP",
        "Miou",
        "threshold",
        "Miou at threshold",
        "windows/s",
        "seconds",
    ];
    let table = Table {
        header: header.iter().map(|h| h.to_string()).collect(),
        rows: history
            .iter()
            .map(|l| {
                let mut row = vec![
                    l.epoch.to_string(),
                    format!("{:.3e}", l.lr),
                    format!("{:.5}", l.train_loss),
                    format!("{:.5}", l.val_loss),
                    format!("{:.4}", l.val_ap),
                    format!("{:.4}", l.val_map),
                    format!("{:.4}", l.val_miou),
                    format!("{}", l.decision_threshold),
                    format!("{:.4}", l.val_miou_at_threshold),
                    format!("{:.0}", l.windows_per_s),
                    format!("{:.1}", l.seconds),
                ];
                if l.stopped_early {
                    row[0].push_str(" (stopped early)");
                }
                row
            })
            .collect(),
    };
    let run = path
        .parent()
        .map_or_else(String::new, |p| p.display().to_string());
    let html = page(
        "Training curves",
        &format!("lgss train, {run}: {} epochs, from metrics.jsonl", history.len()),
        &panels,
        &table,
    );
    crate::fsutil::write_atomic(path, html.as_bytes())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// One line of a panel: its legend, its value per epoch, its colour.
type Line = (&'static str, fn(&EpochLog) -> f64, RGBColor);

fn draw(history: &[EpochLog], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::new(path, (1100, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(550);
    let last = history.last().map_or(1, |l| l.epoch) as f64;
    let first = history.first().map_or(1, |l| l.epoch) as f64;
    let x_range = first.min(last - 1.0).max(0.0)..last.max(first + 1.0);
    let max_loss = history
        .iter()
        .flat_map(|l| [l.train_loss, l.val_loss])
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let loss_lines: [Line; 2] = [("train", |l| l.train_loss, BLUE), ("val", |l| l.val_loss, RED)];
    panel(
        &left,
        "loss",
        history,
        x_range.clone(),
        (max_loss * 1.1).max(1e-6),
        &loss_lines,
    )?;
    let val_lines: [Line; 3] = [
        ("AP", |l| l.val_ap, BLUE),
        ("mAP", |l| l.val_map, RED),
        ("Miou", |l| l.val_miou, RGBColor(0, 140, 0)),
    ];
    panel(&right, "validation", history, x_range, 1.0, &val_lines)?;
    root.present()?;
    Ok(())
}

fn panel(
    area: &Area<'_>,
    caption: &str,
    history: &[EpochLog],
    x_range: std::ops::Range<f64>,
    y_max: f64,
    lines: &[Line],
) -> Result<(), Box<dyn std::error::Error>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(x_range, 0.0..y_max)?;
    chart.configure_mesh().x_desc("epoch").draw()?;
    for &(label, value, color) in lines {
        let points: Vec<(f64, f64)> = history.iter().map(|l| (l.epoch as f64, value(l))).collect();
        chart
            .draw_series(LineSeries::new(points, &color))?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
