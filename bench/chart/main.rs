//! Renders the benchmark suite's latency-vs-load chart: p50 and p99 of the
//! app called directly, through nginx and through the Flint gateway, at each
//! fixed request rate of the sweep, as an SVG.
//!
//! `bench/run` builds and calls it: `chart <results.json> <out.svg>`.

use plotters::prelude::*;
use serde_json::Value;

/// One target's points: (rate, p50 µs, p99 µs).
type Series = Vec<(f64, f64, f64)>;

fn series(results: &Value, target: &str) -> Series {
    results["sweep"][target]
        .as_array()
        .map(|points| {
            points
                .iter()
                .filter_map(|p| {
                    Some((
                        p["rate"].as_f64()?,
                        p["p50_us"].as_f64()?,
                        p["p99_us"].as_f64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` adds `--bench`; the chart takes two positional arguments.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let [input, output] = args.as_slice() else {
        return Err("usage: chart <results.json> <out.svg>".into());
    };
    let results: Value = serde_json::from_str(&std::fs::read_to_string(input)?)?;
    let targets = [("direct", BLACK), ("nginx", BLUE), ("gateway", RED)];
    let all: Vec<(&str, RGBColor, Series)> = targets
        .iter()
        .map(|(name, color)| (*name, *color, series(&results, name)))
        .collect();
    let max_rate = all
        .iter()
        .flat_map(|(_, _, s)| s.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let max_us = all
        .iter()
        .flat_map(|(_, _, s)| s.iter().map(|p| p.2))
        .fold(1.0, f64::max);
    let root = SVGBackend::new(output, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Latency vs load (constant rate, 16 connections)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (200.0..max_rate * 1.3).log_scale(),
            (20.0..max_us * 1.5).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("offered load, requests/s")
        .y_desc("latency, µs")
        .draw()?;
    for (name, color, points) in &all {
        let p50: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.1)).collect();
        let p99: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.2)).collect();
        chart
            .draw_series(LineSeries::new(p50.clone(), color.stroke_width(2)))?
            .label(format!("{name} p50"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(
            p50.iter()
                .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
        )?;
        let dashed = color.mix(0.5).stroke_width(2);
        chart
            .draw_series(LineSeries::new(p99.clone(), dashed))?
            .label(format!("{name} p99"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], dashed));
        chart.draw_series(
            p99.iter()
                .map(|&(x, y)| TriangleMarker::new((x, y), 4, color.mix(0.5).filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    println!("wrote {output}");
    Ok(())
}
