//! Charts must be well-formed SVG, carry their text escaped, and render to PNG,
//! whatever awkward data they are given.

use resvg::usvg;
use valuedrift_plot::*;

fn parse(svg: &str) -> usvg::Tree {
    usvg::Tree::from_str(svg, &usvg::Options::default()).unwrap_or_else(|e| panic!("{e}\n{svg}"))
}

fn band(x: f64, mean: f64) -> Band {
    Band { x, mean, low: mean - 0.05, high: mean + 0.05 }
}

fn series(label: &str, color: &str, points: Vec<Band>) -> Series {
    Series { label: label.into(), color: color.into(), points }
}

fn stance_chart() -> LineChart {
    let steps = [0.0, 100.0, 200.0, 300.0, 400.0, 500.0, 550.0, 600.0];
    let stance = |label: &str, color: &str, from: f64, to: f64| {
        let points = steps.iter().map(|&x| band(x, from + (to - from) * x / 600.0)).collect();
        series(label, color, points)
    };
    LineChart {
        title: r#"Stance <UBI> & "friends""#.into(),
        subtitle: Some("it's a subtitle".into()),
        x_label: "step".into(),
        y_label: "probability".into(),
        y_range: Some((0.0, 1.0)),
        series: vec![
            stance("support", STANCE_COLORS[0], 0.2, 0.6),
            stance("neutral", STANCE_COLORS[1], 0.35, 0.23),
            stance("oppose", STANCE_COLORS[2], 0.45, 0.17),
        ],
        phases: vec![Phase { label: "SFT".into(), start: 0.0, end: 400.0 }, Phase { label: "DPO".into(), start: 400.0, end: 600.0 }],
    }
}

#[test]
fn line_chart_is_well_formed_with_escaped_text_legend_and_bands() {
    let svg = line_chart_svg(&stance_chart());
    parse(&svg);
    assert!(svg.contains("Stance &lt;UBI&gt; &amp; &quot;friends&quot;"), "{svg}");
    assert!(svg.contains("it&apos;s a subtitle"));
    for label in ["support", "neutral", "oppose", "SFT", "DPO"] {
        assert!(svg.contains(&format!(">{label}</text>")), "missing {label}");
    }
    assert_eq!(svg.matches(r#"class="band""#).count(), 3);
    assert_eq!(svg.matches(r#"class="line""#).count(), 3);
    assert!(svg.contains("stroke-dasharray"), "phase boundary at step 400");
    assert!(svg.contains(&format!(r#"font-family="{FONT_FAMILY}""#)));
}

#[test]
fn step_ticks_are_integers_and_probability_ticks_round() {
    let svg = line_chart_svg(&stance_chart());
    for tick in [">0<", ">200<", ">400<", ">600<", ">0.0<", ">0.2<", ">1.0<"] {
        assert!(svg.contains(tick), "missing tick {tick}");
    }
    assert!(!svg.contains(">400.0<"));
}

#[test]
fn png_has_signature_and_scaled_size() {
    let png = svg_to_png(&line_chart_svg(&stance_chart()), 2.0).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let be = |i: usize| u32::from_be_bytes(png[i..i + 4].try_into().unwrap());
    assert_eq!((be(16), be(20)), (2 * WIDTH as u32, 2 * HEIGHT as u32), "IHDR width, height");
}

#[test]
fn bad_scale_is_an_error_not_a_panic() {
    let svg = histogram_svg(&Histogram::default());
    for scale in [0.0, -1.0, f32::NAN, 1e6] {
        assert!(matches!(svg_to_png(&svg, scale), Err(PlotError::Scale(_))), "scale {scale}");
    }
    assert!(matches!(svg_to_png("<svg", 1.0), Err(PlotError::Svg(_))));
}

#[test]
fn edge_cases_render() {
    let long_title = "x".repeat(300);
    let cases = [
        LineChart::default(),
        LineChart { series: vec![series("lone", "#1b9e77", vec![band(250.0, 0.4)])], ..Default::default() },
        LineChart { series: vec![series("empty", "#1b9e77", vec![])], ..Default::default() },
        LineChart {
            title: long_title.clone(),
            series: vec![series("flat", "#1b9e77", (0..5).map(|i| Band { x: i as f64, mean: 0.5, low: 0.5, high: 0.5 }).collect())],
            ..Default::default()
        },
        LineChart {
            y_range: Some((f64::NAN, 1.0)),
            series: vec![series(
                "nan & co",
                "#d95f02",
                vec![
                    band(0.0, 0.3),
                    band(f64::NAN, 0.3),
                    band(1.0, f64::NAN),
                    Band { x: 2.0, mean: 0.3, low: f64::NAN, high: f64::INFINITY },
                    band(3.0, 0.35),
                ],
            )],
            phases: vec![
                Phase { label: "zero".into(), start: 1.0, end: 1.0 },
                Phase { label: "reversed".into(), start: 3.0, end: 1.0 },
                Phase { label: "nan".into(), start: f64::NAN, end: 1.0 },
            ],
            ..Default::default()
        },
    ];
    for chart in &cases {
        let svg = line_chart_svg(chart);
        parse(&svg);
        svg_to_png(&svg, 1.0).unwrap();
    }
    let lone = line_chart_svg(&cases[1]);
    assert_eq!(lone.matches(r#"class="band""#).count(), 0, "a single point has an error bar, no band");
    assert!(lone.contains("<circle"));
    assert!(line_chart_svg(&cases[2]).contains(">no data<"));
    let truncated = line_chart_svg(&cases[3]);
    assert!(truncated.contains('…') && !truncated.contains(&long_title));
    assert!(line_chart_svg(&cases[4]).contains("nan &amp; co"));
}

#[test]
fn histogram_handles_empty_and_odd_bins() {
    let empty = Histogram { title: "none".into(), ..Default::default() };
    let odd = Histogram {
        title: "drift <Δ>".into(),
        x_label: "Δ support".into(),
        y_label: "topics".into(),
        bins: vec![(-0.2, -0.1, 2.0), (-0.1, 0.0, 0.0), (0.0, 0.1, 5.0), (0.1, 0.1, 3.0), (f64::NAN, 0.3, 1.0)],
        color: "#4c72b0".into(),
    };
    for h in [&empty, &odd] {
        let svg = histogram_svg(h);
        parse(&svg);
        svg_to_png(&svg, 1.0).unwrap();
    }
    let svg = histogram_svg(&odd);
    assert!(svg.contains("drift &lt;Δ&gt;"));
    assert_eq!(svg.matches(r##"fill="#4c72b0""##).count(), 2, "only non-empty, valid bins get bars");
}

#[test]
fn grouped_bars_rotate_long_category_names() {
    let groups = |categories: &[&str]| BarGroups {
        title: "shares".into(),
        y_label: "share".into(),
        categories: categories.iter().map(|c| c.to_string()).collect(),
        series: ["support", "neutral", "oppose"]
            .iter()
            .zip(STANCE_COLORS)
            .map(|(l, c)| BarSeries { label: l.to_string(), color: c.into(), values: vec![0.3, f64::NAN, 0.5] })
            .collect(),
        y_range: Some((0.0, 1.0)),
        ..Default::default()
    };
    let short = bar_groups_svg(&groups(&["a", "b", "c"]));
    // Six slots of ~90px cannot hold 20-odd characters side by side.
    let long = bar_groups_svg(&groups(&["immigration & border policy", "technology regulation", "c", "d", "e", "f"]));
    parse(&short);
    parse(&long);
    assert!(!short.contains("rotate(-35"));
    assert!(long.contains("rotate(-35") && long.contains("immigration &amp; border"));
    assert_eq!(long.matches(r##"fill="#1b9e77""##).count(), 3, "2 bars + legend swatch: NaN and missing values have none");
    parse(&bar_groups_svg(&BarGroups::default()));
}

#[test]
fn write_chart_writes_svg_and_png_next_to_a_dotted_stem() {
    let dir = std::env::temp_dir().join(format!("valuedrift-plot-test-{}", std::process::id()));
    let stem = dir.join("nested").join("stance.v2");
    let svg = line_chart_svg(&stance_chart());
    write_chart(&svg, &stem).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("nested/stance.v2.svg")).unwrap(), svg);
    assert!(std::fs::read(dir.join("nested/stance.v2.png")).unwrap().starts_with(b"\x89PNG"));
    std::fs::remove_dir_all(&dir).unwrap();
}
