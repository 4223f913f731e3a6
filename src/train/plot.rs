//! `curves.png`: training and validation loss, and validation AP / mAP /
//! Miou, per epoch. Text uses an embedded DejaVu font, so nothing depends on
//! the machine's fonts.

use std::path::Path;
use std::sync::Once;

use anyhow::anyhow;
use plotters::prelude::*;

use super::EpochLog;

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Draws the curves to `path` (PNG), atomically.
pub fn curves(history: &[EpochLog], path: &Path) -> anyhow::Result<()> {
    if history.is_empty() {
        return Ok(());
    }
    register_font();
    let tmp = crate::fsutil::temp_path(path).with_extension("png");
    draw(history, &tmp).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow!("{}: {e}", path.display())
    })?;
    std::fs::rename(&tmp, path).map_err(|e| anyhow!("{}: {e}", path.display()))
}

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
    let mut chart = ChartBuilder::on(&left)
        .caption("loss", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(x_range.clone(), 0.0..(max_loss * 1.1).max(1e-6))?;
    chart.configure_mesh().x_desc("epoch").draw()?;
    let series = |f: fn(&EpochLog) -> f64| {
        history
            .iter()
            .map(move |l| (l.epoch as f64, f(l)))
            .collect::<Vec<_>>()
    };
    chart
        .draw_series(LineSeries::new(series(|l| l.train_loss), &BLUE))?
        .label("train")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
    chart
        .draw_series(LineSeries::new(series(|l| l.val_loss), &RED))?
        .label("val")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let mut chart = ChartBuilder::on(&right)
        .caption("validation", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(x_range, 0.0..1.0)?;
    chart.configure_mesh().x_desc("epoch").draw()?;
    let green = RGBColor(0, 140, 0);
    chart
        .draw_series(LineSeries::new(series(|l| l.val_ap), &BLUE))?
        .label("AP")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE));
    chart
        .draw_series(LineSeries::new(series(|l| l.val_map), &RED))?
        .label("mAP")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED));
    chart
        .draw_series(LineSeries::new(series(|l| l.val_miou), &green))?
        .label("Miou")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], green));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
