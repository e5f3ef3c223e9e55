//! Charts for value-drift reports: stance probabilities over training checkpoints
//! with 95% confidence bands, histograms and grouped bars.
//!
//! Charts are written as plain SVG text (no plotting library) and rasterized to PNG
//! with resvg, using the system's fonts.

mod bars;
mod line;
mod render;
mod scale;
mod svg;

pub use bars::{bar_groups_svg, histogram_svg, BarGroups, BarSeries, Histogram};
pub use line::{line_chart_svg, Band, LineChart, Phase, Series};
pub use render::{fonts_available, svg_to_png, write_chart, PNG_SCALE};

use std::path::PathBuf;

/// Canvas size of every chart, in SVG pixels.
pub const WIDTH: f64 = 720.0;
pub const HEIGHT: f64 = 420.0;

/// Font stack asked for by every chart; resvg picks the first one installed.
pub const FONT_FAMILY: &str = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif";

/// Colors for support, neutral and oppose, in that order (ColorBrewer Dark2 and a gray).
pub const STANCE_COLORS: [&str; 3] = ["#1b9e77", "#7f7f7f", "#d95f02"];
/// Colors for other series (tasks, models), in order (ColorBrewer Dark2).
pub const SERIES_COLORS: [&str; 6] = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02"];

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("invalid SVG: {0}")]
    Svg(#[from] resvg::usvg::Error),
    #[error("render scale {0} gives an empty or oversized image")]
    Scale(f32),
    #[error("PNG encoding failed: {0}")]
    Png(String),
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub type Result<T> = std::result::Result<T, PlotError>;
