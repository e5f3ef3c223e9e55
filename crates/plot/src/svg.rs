//! A minimal SVG text builder plus the parts every chart shares: header, axes, legend.

use crate::scale::{format_tick, Scale};
use crate::FONT_FAMILY;
use std::fmt::Write;

/// Average advance of DejaVu Sans in em; text extents are estimated, never measured.
const CHAR_WIDTH: f64 = 0.6;

pub(crate) const TICK_SIZE: f64 = 12.0;
pub(crate) const LABEL_SIZE: f64 = 13.0;
pub(crate) const TITLE_SIZE: f64 = 16.0;
const SUBTITLE_SIZE: f64 = 12.5;
const LEGEND_SIZE: f64 = 12.5;
const MARGIN: f64 = 16.0;

pub(crate) const TEXT: &str = "#222222";
pub(crate) const MUTED: &str = "#555555";
const GRID: &str = "#e3e3e3";
const AXIS: &str = "#444444";

pub(crate) fn text_width(s: &str, size: f64) -> f64 {
    s.chars().count() as f64 * size * CHAR_WIDTH
}

/// Truncates `s` with "…" so that it fits into `width` pixels at font `size`.
pub(crate) fn fit(s: &str, width: f64, size: f64) -> String {
    truncate(s, (width / (size * CHAR_WIDTH)).floor().max(0.0) as usize)
}

/// Trims `s` and cuts it to at most `max` characters, the last one being "…".
pub(crate) fn truncate(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        return s.to_string();
    }
    let kept: String = s.chars().take(max.saturating_sub(1)).collect();
    kept.trim_end().to_string() + "…"
}

/// Escapes text for XML content and attributes; drops control characters XML forbids.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Pixel coordinate with at most two decimals, to keep the SVG small.
pub(crate) fn px(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Pixel rectangle of a plotting area.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rect {
    pub left: f64,
    pub top: f64,
    pub right: f64,
    pub bottom: f64,
}

impl Rect {
    pub fn width(&self) -> f64 {
        self.right - self.left
    }

    pub fn height(&self) -> f64 {
        self.bottom - self.top
    }
}

pub(crate) struct Svg {
    buf: String,
    width: f64,
}

impl Svg {
    pub fn new(width: f64, height: f64) -> Self {
        let (w, h) = (px(width), px(height));
        let mut buf = String::new();
        let _ =
            writeln!(buf, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{FONT_FAMILY}">"#);
        let _ = writeln!(buf, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        Svg { buf, width }
    }

    pub fn width(&self) -> f64 {
        self.width
    }

    /// Appends a pre-built element; its attribute values must already be escaped.
    pub fn raw(&mut self, element: &str) {
        self.buf.push_str(element);
        self.buf.push('\n');
    }

    /// `attrs` is trusted markup (font size, anchor...); `content` is escaped here.
    pub fn text(&mut self, x: f64, y: f64, attrs: &str, content: &str) {
        let (x, y, content) = (px(x), px(y), escape(content));
        self.raw(&format!(r#"<text x="{x}" y="{y}" {attrs}>{content}</text>"#));
    }

    pub fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), attrs: &str) {
        let (x1, y1, x2, y2) = (px(x1), px(y1), px(x2), px(y2));
        self.raw(&format!(r#"<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" {attrs}/>"#));
    }

    pub fn rect(&mut self, r: Rect, attrs: &str) {
        let (x, y, w, h) = (px(r.left), px(r.top), px(r.width()), px(r.height()));
        self.raw(&format!(r#"<rect x="{x}" y="{y}" width="{w}" height="{h}" {attrs}/>"#));
    }

    pub fn finish(mut self) -> String {
        self.buf.push_str("</svg>\n");
        self.buf
    }
}

/// Title and optional subtitle, left-aligned; returns the y below them.
pub(crate) fn header(svg: &mut Svg, title: &str, subtitle: Option<&str>) -> f64 {
    let width = svg.width() - 2.0 * MARGIN;
    let mut y = 10.0;
    if !title.trim().is_empty() {
        y += TITLE_SIZE + 2.0;
        let attrs = format!(r#"font-size="{TITLE_SIZE}" font-weight="bold" fill="{TEXT}""#);
        svg.text(MARGIN, y, &attrs, &fit(title, width, TITLE_SIZE));
    }
    if let Some(sub) = subtitle.filter(|s| !s.trim().is_empty()) {
        y += SUBTITLE_SIZE + 6.0;
        let attrs = format!(r#"font-size="{SUBTITLE_SIZE}" fill="{MUTED}""#);
        svg.text(MARGIN, y, &attrs, &fit(sub, width, SUBTITLE_SIZE));
    }
    y
}

/// Tick values with their labels, formatted for the tick step.
pub(crate) struct Ticks {
    pub values: Vec<f64>,
    pub labels: Vec<String>,
}

impl Ticks {
    pub fn new(values: Vec<f64>, step: f64) -> Self {
        let labels = values.iter().map(|&v| format_tick(v, step)).collect();
        Ticks { values, labels }
    }

    fn max_label_width(&self) -> f64 {
        self.labels.iter().map(|l| text_width(l, TICK_SIZE)).fold(0.0, f64::max)
    }
}

/// Left edge of the plot area: room for the rotated y label and the widest tick label.
pub(crate) fn plot_left(y_ticks: &Ticks, y_label: &str) -> f64 {
    let label_room = if y_label.trim().is_empty() { 0.0 } else { LABEL_SIZE + 10.0 };
    MARGIN + label_room + y_ticks.max_label_width() + 8.0
}

/// Bottom edge of the plot area: room for x tick labels and the x label.
pub(crate) fn plot_bottom(height: f64, x_label: &str) -> f64 {
    let label_room = if x_label.trim().is_empty() { 0.0 } else { LABEL_SIZE + 8.0 };
    height - 12.0 - label_room - TICK_SIZE - 8.0
}

/// Horizontal gridlines, y tick labels and the rotated y-axis label.
pub(crate) fn y_axis(svg: &mut Svg, area: Rect, scale: Scale, ticks: &Ticks, label: &str) {
    let grid = format!(r#"stroke="{GRID}" stroke-width="1""#);
    let attrs = format!(r#"font-size="{TICK_SIZE}" text-anchor="end" fill="{TEXT}""#);
    for (&v, text) in ticks.values.iter().zip(&ticks.labels) {
        let y = scale.map(v);
        svg.line((area.left, y), (area.right, y), &grid);
        svg.text(area.left - 6.0, y + TICK_SIZE * 0.35, &attrs, text);
    }
    if !label.trim().is_empty() {
        let (x, y) = (MARGIN + LABEL_SIZE * 0.8, (area.top + area.bottom) / 2.0);
        let attrs = format!(r#"font-size="{LABEL_SIZE}" text-anchor="middle" fill="{TEXT}" transform="rotate(-90 {} {})""#, px(x), px(y));
        svg.text(x, y, &attrs, &fit(label, area.height(), LABEL_SIZE));
    }
}

/// Vertical gridlines and x tick labels.
pub(crate) fn x_ticks(svg: &mut Svg, area: Rect, scale: Scale, ticks: &Ticks) {
    let grid = format!(r#"stroke="{GRID}" stroke-width="1""#);
    let attrs = format!(r#"font-size="{TICK_SIZE}" text-anchor="middle" fill="{TEXT}""#);
    for (&v, text) in ticks.values.iter().zip(&ticks.labels) {
        let x = scale.map(v);
        svg.line((x, area.top), (x, area.bottom), &grid);
        svg.line((x, area.bottom), (x, area.bottom + 4.0), &format!(r#"stroke="{AXIS}""#));
        svg.text(x, area.bottom + 6.0 + TICK_SIZE, &attrs, text);
    }
}

/// The x-axis label, centered under the plot area at the bottom of the canvas.
pub(crate) fn x_label(svg: &mut Svg, area: Rect, height: f64, label: &str) {
    if label.trim().is_empty() {
        return;
    }
    let attrs = format!(r#"font-size="{LABEL_SIZE}" text-anchor="middle" fill="{TEXT}""#);
    let text = fit(label, area.width(), LABEL_SIZE);
    svg.text((area.left + area.right) / 2.0, height - 14.0, &attrs, &text);
}

/// Left and bottom axis lines, drawn last so that data never hides them.
pub(crate) fn axis_lines(svg: &mut Svg, area: Rect) {
    let attrs = format!(r#"stroke="{AXIS}" stroke-width="1""#);
    svg.line((area.left, area.top), (area.left, area.bottom), &attrs);
    svg.line((area.left, area.bottom), (area.right, area.bottom), &attrs);
}

/// Says so in the middle of an empty plot, rather than leaving the reader to wonder.
pub(crate) fn no_data(svg: &mut Svg, area: Rect) {
    let attrs = format!(r#"font-size="{LABEL_SIZE}" text-anchor="middle" fill="{MUTED}""#);
    svg.text((area.left + area.right) / 2.0, (area.top + area.bottom) / 2.0, &attrs, "no data");
}

/// What a legend row shows next to its label.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Swatch {
    /// Line with a marker over a translucent band (line charts).
    LineBand,
    /// Filled square (bar charts).
    Block,
}

const LEGEND_MAX_CHARS: f64 = 18.0;
const SWATCH_WIDTH: f64 = 24.0;
const LEGEND_ROW: f64 = 22.0;

/// Width the legend needs right of the plot area (0 when there is nothing to list).
pub(crate) fn legend_width(labels: &[&str]) -> f64 {
    let longest = labels.iter().map(|l| l.trim().chars().count()).max();
    match longest {
        None => MARGIN,
        Some(n) => 14.0 + SWATCH_WIDTH + 8.0 + n.min(LEGEND_MAX_CHARS as usize).max(6) as f64 * LEGEND_SIZE * CHAR_WIDTH + MARGIN,
    }
}

/// Legend rows starting at (x, y), outside the plot area so it never covers data.
pub(crate) fn legend(svg: &mut Svg, (x, y): (f64, f64), rows: &[(&str, &str)], swatch: Swatch, note: Option<&str>) {
    let label_attrs = format!(r#"font-size="{LEGEND_SIZE}" fill="{TEXT}""#);
    let max_label = LEGEND_MAX_CHARS * LEGEND_SIZE * CHAR_WIDTH;
    for (i, (label, color)) in rows.iter().enumerate() {
        let cy = y + i as f64 * LEGEND_ROW;
        let color = escape(color);
        let band = Rect { left: x, top: cy - 6.0, right: x + SWATCH_WIDTH, bottom: cy + 6.0 };
        match swatch {
            Swatch::LineBand => {
                svg.rect(band, &format!(r#"fill="{color}" fill-opacity="0.18""#));
                svg.line((x, cy), (x + SWATCH_WIDTH, cy), &format!(r#"stroke="{color}" stroke-width="2""#));
                let cx = px(x + SWATCH_WIDTH / 2.0);
                svg.raw(&format!(r#"<circle cx="{cx}" cy="{}" r="3.5" fill="{color}" stroke="white" stroke-width="1"/>"#, px(cy)));
            }
            Swatch::Block => {
                let square = Rect { left: x + 10.0, right: x + SWATCH_WIDTH, ..band };
                svg.rect(square, &format!(r#"fill="{color}""#));
            }
        }
        svg.text(x + SWATCH_WIDTH + 8.0, cy + LEGEND_SIZE * 0.35, &label_attrs, &fit(label, max_label, LEGEND_SIZE));
    }
    if let Some(note) = note {
        let cy = y + rows.len() as f64 * LEGEND_ROW + 4.0;
        let attrs = format!(r#"font-size="{TICK_SIZE}" fill="{MUTED}""#);
        svg.text(x, cy + TICK_SIZE * 0.35, &attrs, note);
    }
}

/// Clip path a little larger than the plot area so that markers on its edge stay whole.
/// The id is derived from the geometry: equal ids in one HTML page then mean equal clips.
pub(crate) fn clip_path(svg: &mut Svg, area: Rect) -> String {
    let pad = 5.0;
    let r = Rect { left: area.left - pad, top: area.top - pad, right: area.right + pad, bottom: area.bottom + pad };
    let id = format!("clip-{:.0}-{:.0}-{:.0}-{:.0}", r.left, r.top, r.width(), r.height());
    let (x, y, w, h) = (px(r.left), px(r.top), px(r.width()), px(r.height()));
    svg.raw(&format!(r#"<defs><clipPath id="{id}"><rect x="{x}" y="{y}" width="{w}" height="{h}"/></clipPath></defs>"#));
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_controls() {
        assert_eq!(escape(r#"a&b<c>"d" 'e'"#), "a&amp;b&lt;c&gt;&quot;d&quot; &apos;e&apos;");
        assert_eq!(escape("x\u{0}y"), "x y");
    }

    #[test]
    fn fit_truncates_with_ellipsis() {
        assert_eq!(fit("short", 100.0, 10.0), "short");
        let long = fit("a very long title that does not fit", 60.0, 10.0);
        assert_eq!(long.chars().count(), 10);
        assert!(long.ends_with('…'));
    }
}
