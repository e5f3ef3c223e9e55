//! Line chart: one line per series with markers and a translucent 95% CI band,
//! over shaded training phases.

use crate::scale::{min_max, nice_domain, nice_step, non_degenerate, ticks, Scale};
use crate::svg::{self, escape, fit, px, Rect, Svg, Swatch, Ticks, MUTED, TICK_SIZE};
use crate::{HEIGHT, WIDTH};

/// One checkpoint: the mean and its 95% confidence interval at step `x`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Band {
    pub x: f64,
    pub mean: f64,
    pub low: f64,
    pub high: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    pub label: String,
    /// Any SVG color, e.g. "#1b9e77" (see [`crate::STANCE_COLORS`]).
    pub color: String,
    pub points: Vec<Band>,
}

/// The x range of a training phase, e.g. "SFT" over steps 0..500.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Phase {
    pub label: String,
    pub start: f64,
    pub end: f64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub subtitle: Option<String>,
    pub x_label: String,
    pub y_label: String,
    /// Fixed y range, e.g. `Some((0.0, 1.0))` for probabilities; `None` fits the data.
    pub y_range: Option<(f64, f64)>,
    pub series: Vec<Series>,
    pub phases: Vec<Phase>,
}

const PHASE_FILLS: [&str; 2] = ["#eef2f7", "#f7f3ec"];
const PHASE_LABEL_ROOM: f64 = 22.0;

/// Renders the chart as a standalone SVG document of [`WIDTH`] x [`HEIGHT`] pixels.
pub fn line_chart_svg(chart: &LineChart) -> String {
    let series: Vec<Vec<Band>> = chart.series.iter().map(|s| clean(&s.points)).collect();
    let phases: Vec<&Phase> = chart.phases.iter().filter(|p| p.start.is_finite() && p.end.is_finite()).collect();
    let (y_domain, y_ticks) = y_axis(chart.y_range, &series);
    let labels: Vec<&str> = chart.series.iter().map(|s| s.label.as_str()).collect();

    let mut svg = Svg::new(WIDTH, HEIGHT);
    let header_bottom = svg::header(&mut svg, &chart.title, chart.subtitle.as_deref());
    let gap = if phases.is_empty() { 20.0 } else { PHASE_LABEL_ROOM + 6.0 };
    let area = Rect {
        left: svg::plot_left(&y_ticks, &chart.y_label),
        top: header_bottom + gap,
        right: WIDTH - svg::legend_width(&labels),
        bottom: svg::plot_bottom(HEIGHT, &chart.x_label),
    };
    let x = x_axis(&series, &phases, (area.left, area.right));
    let sx = x.scale;
    let sy = Scale::new(y_domain, (area.bottom, area.top));

    draw_phases(&mut svg, area, &x, &phases);
    svg::y_axis(&mut svg, area, sy, &y_ticks, &chart.y_label);
    svg::x_ticks(&mut svg, area, sx, &x.ticks);
    draw_phase_boundaries(&mut svg, area, &x, &phases);
    let clip = svg::clip_path(&mut svg, area);
    svg.raw(&format!(r#"<g clip-path="url(#{clip})">"#));
    for (points, s) in series.iter().zip(&chart.series) {
        draw_series(&mut svg, points, &escape(&s.color), sx, sy);
    }
    svg.raw("</g>");
    if series.iter().all(Vec::is_empty) {
        svg::no_data(&mut svg, area);
    }
    svg::axis_lines(&mut svg, area);
    svg::x_label(&mut svg, area, HEIGHT, &chart.x_label);

    let rows: Vec<(&str, &str)> = chart.series.iter().map(|s| (s.label.as_str(), s.color.as_str())).collect();
    let any_band = series.iter().any(|p| p.iter().any(|b| b.high > b.low));
    let note = any_band.then_some("band: 95% CI");
    svg::legend(&mut svg, (area.right + 14.0, area.top + 8.0), &rows, Swatch::LineBand, note);
    svg.finish()
}

/// Drops points without a finite x or mean, treats a missing bound as "no interval",
/// and sorts by x so that lines and bands never zig-zag.
fn clean(points: &[Band]) -> Vec<Band> {
    let mut out: Vec<Band> = points
        .iter()
        .filter(|b| b.x.is_finite() && b.mean.is_finite())
        .map(|b| {
            let low = if b.low.is_finite() { b.low } else { b.mean };
            let high = if b.high.is_finite() { b.high } else { b.mean };
            Band { low: low.min(high), high: low.max(high), ..*b }
        })
        .collect();
    out.sort_by(|a, b| a.x.total_cmp(&b.x));
    out
}

struct XAxis {
    /// Smallest and largest x of data and phases.
    extent: (f64, f64),
    scale: Scale,
    ticks: Ticks,
}

/// Spans data and phases, padded so that markers at the ends clear the y axis.
fn x_axis(series: &[Vec<Band>], phases: &[&Phase], pixels: (f64, f64)) -> XAxis {
    let xs = series.iter().flatten().map(|b| b.x);
    let phase_xs = phases.iter().flat_map(|p| [p.start, p.end]);
    let all: Vec<f64> = xs.chain(phase_xs).collect();
    let (lo, hi) = non_degenerate(min_max(all.iter().copied()).unwrap_or((0.0, 1.0)));
    // Checkpoint steps are integers: never put ticks between them.
    let integer = all.iter().all(|x| x.fract() == 0.0);
    let step = nice_step(hi - lo, 7, integer);
    let pad = (hi - lo) * 0.03;
    XAxis { extent: (lo, hi), scale: Scale::new((lo - pad, hi + pad), pixels), ticks: Ticks::new(ticks((lo, hi), step), step) }
}

/// The y domain (fixed or fitted to means and intervals) and its ticks.
fn y_axis(fixed: Option<(f64, f64)>, series: &[Vec<Band>]) -> ((f64, f64), Ticks) {
    let fixed = fixed.filter(|(lo, hi)| lo.is_finite() && hi.is_finite() && hi > lo);
    let domain = fixed.unwrap_or_else(|| {
        let ys = series.iter().flatten().flat_map(|b| [b.low, b.high]);
        nice_domain(min_max(ys).unwrap_or((0.0, 1.0)), 5)
    });
    let step = nice_step(domain.1 - domain.0, 5, false);
    (domain, Ticks::new(ticks(domain, step), step))
}

/// Alternating light backgrounds with each phase's name above its region. A phase that
/// starts or ends the run is shaded up to the plot's edge, across the x padding.
fn draw_phases(svg: &mut Svg, area: Rect, x: &XAxis, phases: &[&Phase]) {
    let label_attrs = format!(r#"font-size="{TICK_SIZE}" font-weight="bold" text-anchor="middle" fill="{MUTED}""#);
    let to_px = |v: f64| match v {
        v if v <= x.extent.0 => area.left,
        v if v >= x.extent.1 => area.right,
        v => x.scale.map(v),
    };
    let regions = phases.iter().map(|p| (p, to_px(p.start.min(p.end)), to_px(p.start.max(p.end))));
    // A zero-width phase gets only its boundary line, and must not break the alternation.
    let visible = regions.filter(|(_, left, right)| right - left >= 0.5);
    for (i, (phase, left, right)) in visible.enumerate() {
        svg.rect(Rect { left, right, ..area }, &format!(r#"fill="{}""#, PHASE_FILLS[i % 2]));
        let label = fit(&phase.label, right - left - 4.0, TICK_SIZE);
        if label.chars().count() > 1 {
            svg.text((left + right) / 2.0, area.top - 8.0, &label_attrs, &label);
        }
    }
}

/// Dashed vertical lines between phases; the outermost starts and ends are the plot's
/// own edges and need no marking.
fn draw_phase_boundaries(svg: &mut Svg, area: Rect, x: &XAxis, phases: &[&Phase]) {
    let (first, last) = x.extent;
    let mut xs: Vec<f64> = phases.iter().flat_map(|p| [p.start, p.end]).filter(|&v| v > first && v < last).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    for v in xs {
        let x = x.scale.map(v);
        svg.line((x, area.top), (x, area.bottom), r##"stroke="#666666" stroke-width="1.2" stroke-dasharray="5 4""##);
    }
}

/// Band first, then line, then markers, so every marker stays visible.
fn draw_series(svg: &mut Svg, points: &[Band], color: &str, sx: Scale, sy: Scale) {
    match points {
        [] => {}
        [only] => draw_error_bar(svg, only, color, sx, sy),
        _ => {
            let upper = points.iter().map(|b| (sx.map(b.x), sy.map(b.high)));
            let lower = points.iter().rev().map(|b| (sx.map(b.x), sy.map(b.low)));
            let band = path(upper.chain(lower)) + " Z";
            svg.raw(&format!(r#"<path class="band" d="{band}" fill="{color}" fill-opacity="0.18" stroke="none"/>"#));
            let line = path(points.iter().map(|b| (sx.map(b.x), sy.map(b.mean))));
            svg.raw(&format!(r#"<path class="line" d="{line}" fill="none" stroke="{color}" stroke-width="2" stroke-linejoin="round"/>"#));
        }
    }
    // Dense series get small plain dots: white-rimmed ones would read as a dashed line.
    let marker = if points.len() > 40 { r#"r="2.5""# } else { r#"r="3.5" stroke="white" stroke-width="1""# };
    for b in points {
        let (cx, cy) = (px(sx.map(b.x)), px(sy.map(b.mean)));
        svg.raw(&format!(r#"<circle cx="{cx}" cy="{cy}" fill="{color}" {marker}/>"#));
    }
}

/// A lone checkpoint has no band to draw: show its interval as a capped vertical bar.
fn draw_error_bar(svg: &mut Svg, b: &Band, color: &str, sx: Scale, sy: Scale) {
    let (x, low, high) = (sx.map(b.x), sy.map(b.low), sy.map(b.high));
    let attrs = format!(r#"stroke="{color}" stroke-width="1.5""#);
    svg.line((x, low), (x, high), &attrs);
    for y in [low, high] {
        svg.line((x - 5.0, y), (x + 5.0, y), &attrs);
    }
}

fn path(points: impl Iterator<Item = (f64, f64)>) -> String {
    let mut d = String::new();
    for (i, (x, y)) in points.enumerate() {
        d.push_str(if i == 0 { "M" } else { " L" });
        d.push_str(&format!("{} {}", px(x), px(y)));
    }
    d
}
