//! A page of training curves (`train`'s `curves.html`): one inline SVG
//! chart per panel, each point titled with its value, and the numbers as a
//! table. No script at all: it opens anywhere, from `file://` too.

use super::{document, escape};

/// One line of a chart.
pub struct Series<'a> {
    pub name: &'a str,
    pub colour: &'a str,
    /// `(epoch, value)`, by epoch.
    pub points: Vec<(f64, f64)>,
}

/// One chart.
pub struct Panel<'a> {
    pub title: &'a str,
    pub series: Vec<Series<'a>>,
}

/// The table below the charts: a header and rows of cells.
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

const W: f64 = 560.0;
const H: f64 = 300.0;
const L: f64 = 52.0;
const R: f64 = 14.0;
const T: f64 = 14.0;
const B: f64 = 34.0;

/// A number short enough for an axis label.
fn tick_label(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

fn chart(panel: &Panel<'_>) -> String {
    let all = || panel.series.iter().flat_map(|s| s.points.iter());
    let finite = |v: &f64| v.is_finite();
    let (x0, x1) = all()
        .map(|p| p.0)
        .filter(finite)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    let (mut y0, mut y1) = all()
        .map(|p| p.1)
        .filter(finite)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
    if !y0.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    y0 = y0.min(0.0);
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let (x0, x1) = if x0.is_finite() && x1 > x0 {
        (x0, x1)
    } else {
        (x0.min(0.0), x0.max(0.0) + 1.0)
    };
    let x = |v: f64| L + (v - x0) / (x1 - x0) * (W - L - R);
    let y = |v: f64| T + (1.0 - (v - y0) / (y1 - y0)) * (H - T - B);
    let legend: String = panel
        .series
        .iter()
        .map(|s| {
            format!(
                " <span class=\"key\"><svg width=\"14\" height=\"6\" aria-hidden=\"true\">\
                 <rect width=\"14\" height=\"6\" fill=\"{}\"/></svg> {}</span>",
                s.colour,
                escape(s.name)
            )
        })
        .collect();
    let mut svg = format!(
        "<figure class=\"panel\"><figcaption>{}{legend}</figcaption>\
         <svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-label=\"{}\">",
        escape(panel.title),
        escape(panel.title)
    );
    for i in 0..=4 {
        let v = y0 + (y1 - y0) * f64::from(i) / 4.0;
        svg.push_str(&format!(
            "<line class=\"grid\" x1=\"{L}\" x2=\"{}\" y1=\"{y:.2}\" y2=\"{y:.2}\"/>\
             <text class=\"tick\" x=\"{}\" y=\"{:.2}\" text-anchor=\"end\">{}</text>",
            W - R,
            L - 6.0,
            y(v) + 4.0,
            tick_label(v),
            y = y(v)
        ));
    }
    let epochs: Vec<f64> = {
        let mut e: Vec<f64> = all().map(|p| p.0).collect();
        e.sort_by(f64::total_cmp);
        e.dedup();
        e
    };
    let step = (epochs.len() / 10).max(1);
    for e in epochs.iter().step_by(step) {
        svg.push_str(&format!(
            "<text class=\"tick\" x=\"{:.2}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x(*e),
            H - B + 16.0,
            tick_label(*e)
        ));
    }
    svg.push_str(&format!(
        "<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">epoch</text>",
        (L + W - R) / 2.0,
        H - 4.0
    ));
    for s in &panel.series {
        let pts: Vec<String> = s
            .points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(e, v)| format!("{:.2},{:.2}", x(e), y(v)))
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
            s.colour,
            pts.join(" ")
        ));
        for &(e, v) in s.points.iter().filter(|p| p.1.is_finite()) {
            svg.push_str(&format!(
                "<circle cx=\"{:.2}\" cy=\"{:.2}\" r=\"3.5\" fill=\"{}\" data-series=\"{}\" data-epoch=\"{e}\" data-value=\"{v}\">\
                 <title>{} at epoch {e}: {v:.4}</title></circle>",
                x(e),
                y(v),
                s.colour,
                escape(s.name),
                escape(s.name)
            ));
        }
    }
    svg.push_str("</svg></figure>");
    svg
}

const CURVES_STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;color:#1d2330;margin:0}\
main{max-width:1200px;margin:0 auto;padding:16px 20px}h1{font-size:20px}\
.panels{display:flex;flex-wrap:wrap;gap:16px}.panel{margin:0;background:#fff;border:1px solid #d5dae3;border-radius:6px;padding:6px}\
figcaption{font-weight:600}.key{font-weight:400;color:#5b6475;margin-left:12px}.grid{stroke:#e3e6ec}.tick,.legend{fill:#5b6475;font-size:11px}\
table{border-collapse:collapse;margin-top:16px;font-variant-numeric:tabular-nums}\
th,td{border-bottom:1px solid #e3e6ec;padding:3px 10px;text-align:right}";

/// The page: a heading, the charts, the table.
pub fn page(title: &str, note: &str, panels: &[Panel<'_>], table: &Table) -> String {
    let mut body = format!(
        "<main>\n<h1>{}</h1>\n<p>{}</p>\n<div class=\"panels\">",
        escape(title),
        escape(note)
    );
    for p in panels {
        body.push_str(&chart(p));
    }
    body.push_str("</div>\n<table>\n<thead><tr>");
    for h in &table.header {
        body.push_str(&format!("<th scope=\"col\">{}</th>", escape(h)));
    }
    body.push_str("</tr></thead>\n<tbody>\n");
    for row in &table.rows {
        body.push_str("<tr>");
        for c in row {
            body.push_str(&format!("<td>{}</td>", escape(c)));
        }
        body.push_str("</tr>\n");
    }
    body.push_str("</tbody>\n</table>\n</main>");
    let policy = format!("default-src 'none'; style-src {}", super::csp_hash(CURVES_STYLE));
    document(title, &policy, CURVES_STYLE, &body, None, None)
}
