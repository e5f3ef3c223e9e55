//! Writes awkward inputs to /tmp/plot-demo/edge-* for eyeballing that they degrade gracefully.
//! Run: cargo run --release -p valuedrift-plot --example edge_cases

use std::path::Path;
use valuedrift_plot::*;

fn band(x: f64, mean: f64, ci: f64) -> Band {
    Band { x, mean, low: mean - ci, high: mean + ci }
}

fn series(label: &str, color: &str, points: Vec<Band>) -> Series {
    Series { label: label.into(), color: color.into(), points }
}

fn main() -> Result<()> {
    let out = Path::new("/tmp/plot-demo");
    let messy = LineChart {
        title: "A <very> long title with \"quotes\" & ampersands that keeps going well past the width of the canvas".into(),
        subtitle: Some("single point, empty series, NaNs, a zero-width phase; y fitted".into()),
        x_label: "step".into(),
        y_label: "P(support)".into(),
        y_range: None,
        series: vec![
            series("lone checkpoint", STANCE_COLORS[0], vec![band(250.0, 0.4, 0.08)]),
            series("empty", STANCE_COLORS[1], vec![]),
            series(
                "with NaNs and a very long legend label",
                STANCE_COLORS[2],
                vec![
                    band(0.0, 0.3, 0.03),
                    band(100.0, f64::NAN, 0.03),
                    Band { x: 200.0, mean: 0.35, low: f64::NAN, high: 0.4 },
                    band(f64::NAN, 0.5, 0.03),
                    band(300.0, 0.32, 0.03),
                ],
            ),
        ],
        phases: vec![
            Phase { label: "SFT".into(), start: 0.0, end: 150.0 },
            Phase { label: "empty".into(), start: 150.0, end: 150.0 },
            Phase { label: "RLHF with a long name".into(), start: 150.0, end: 300.0 },
        ],
    };
    write_chart(&line_chart_svg(&messy), &out.join("edge-messy"))?;

    let flat = LineChart {
        title: "All-equal values over 20k steps, 60 checkpoints".into(),
        x_label: "step".into(),
        y_label: "probability".into(),
        series: vec![series("flat", "#1b9e77", (0..60).map(|i| Band { x: i as f64 * 350.0, mean: 0.5, low: 0.5, high: 0.5 }).collect())],
        ..Default::default()
    };
    write_chart(&line_chart_svg(&flat), &out.join("edge-flat"))?;

    write_chart(&line_chart_svg(&LineChart::default()), &out.join("edge-empty"))?;
    let empty_hist = Histogram { title: "No bins".into(), x_label: "x".into(), y_label: "count".into(), ..Default::default() };
    write_chart(&histogram_svg(&empty_hist), &out.join("edge-empty-hist"))?;
    println!("wrote {}/edge-*", out.display());
    Ok(())
}
