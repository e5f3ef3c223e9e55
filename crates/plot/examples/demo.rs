//! Writes sample charts to /tmp/plot-demo/ (SVG and PNG) for eyeballing the layout.
//! Run: cargo run --release -p valuedrift-plot --example demo

use std::path::Path;
use valuedrift_plot::*;

fn main() -> Result<()> {
    let out = Path::new("/tmp/plot-demo");
    write_chart(&line_chart_svg(&stance_chart()), &out.join("stance"))?;
    write_chart(&histogram_svg(&margin_histogram()), &out.join("histogram"))?;
    write_chart(&bar_groups_svg(&category_shares()), &out.join("categories"))?;
    if !fonts_available() {
        eprintln!("no system fonts: the PNGs have no text");
    }
    println!("wrote {}", out.display());
    Ok(())
}

/// SFT checkpoints every 100 steps up to 400, then DPO at 500..600 (8 in all).
fn stance_chart() -> LineChart {
    let steps = [0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 550.0, 600.0];
    let support = [0.20, 0.24, 0.29, 0.33, 0.38, 0.47, 0.54, 0.60];
    let oppose = [0.45, 0.42, 0.38, 0.36, 0.33, 0.25, 0.21, 0.17];
    let neutral: Vec<f64> = support.iter().zip(&oppose).map(|(s, o)| 1.0 - s - o).collect();
    let series = |label: &str, color: &str, means: &[f64], ci: f64| Series {
        label: label.into(),
        color: color.into(),
        points: steps.iter().zip(means).map(|(&x, &mean)| Band { x, mean, low: mean - ci, high: mean + ci }).collect(),
    };
    LineChart {
        title: "Stance on \"universal basic income\" during post-training".into(),
        subtitle: Some("0.5B model, 200 prompts per checkpoint, judge: stance classifier".into()),
        x_label: "training step".into(),
        y_label: "stance probability".into(),
        y_range: Some((0.0, 1.0)),
        series: vec![
            series("support", STANCE_COLORS[0], &support, 0.05),
            series("neutral", STANCE_COLORS[1], &neutral, 0.04),
            series("oppose", STANCE_COLORS[2], &oppose, 0.05),
        ],
        phases: vec![Phase { label: "SFT".into(), start: 0.0, end: 400.0 }, Phase { label: "DPO".into(), start: 400.0, end: 600.0 }],
    }
}

/// Drift (support at last minus first checkpoint) over 40 topics.
fn margin_histogram() -> Histogram {
    let counts = [1.0, 0.0, 3.0, 5.0, 9.0, 8.0, 6.0, 4.0, 2.0, 0.0, 1.0, 1.0];
    let bins = counts.iter().enumerate().map(|(i, &n)| (-0.3 + i as f64 * 0.05, -0.25 + i as f64 * 0.05, n)).collect();
    Histogram {
        title: "Support drift across 40 topics".into(),
        x_label: "Δ support (last − first checkpoint)".into(),
        y_label: "topics".into(),
        bins,
        color: "#4c72b0".into(),
    }
}

fn category_shares() -> BarGroups {
    let categories = ["economy", "immigration & borders", "healthcare", "climate policy", "technology regulation"];
    let shares = [[0.42, 0.31, 0.27], [0.25, 0.30, 0.45], [0.51, 0.29, 0.20], [0.47, 0.33, 0.20], [0.35, 0.40, 0.25]];
    let series = ["support", "neutral", "oppose"]
        .iter()
        .enumerate()
        .map(|(j, label)| BarSeries { label: label.to_string(), color: STANCE_COLORS[j].into(), values: shares.iter().map(|row| row[j]).collect() })
        .collect();
    BarGroups {
        title: "Stance shares per category (final checkpoint)".into(),
        subtitle: None,
        x_label: String::new(),
        y_label: "share of prompts".into(),
        categories: categories.iter().map(|c| c.to_string()).collect(),
        series,
        y_range: Some((0.0, 0.6)),
    }
}
