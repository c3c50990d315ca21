//! The trade-off plot: p75 per-function cold-start % against idle
//! replica-seconds (relative to fixed 10-minute keep-alive), one point per
//! policy and setting, written as SVG.

use std::path::Path;

use plotters::prelude::*;

use super::report::PolicyReport;

/// Why the plot could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Drawing or writing the SVG failed.
    #[error("drawing {path}: {reason}")]
    Draw {
        /// Output file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// Draws `reports` into an SVG file at `path`.
pub fn svg(path: &Path, title: &str, reports: &[PolicyReport]) -> Result<(), PlotError> {
    let fail = |e: &dyn std::fmt::Display| PlotError::Draw {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let max_x = reports
        .iter()
        .map(|r| r.idle_vs_fixed_10m)
        .fold(1.0, f64::max)
        * 1.1;
    let max_y = reports
        .iter()
        .map(|r| r.cold_start_p75_pct)
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("idle replica-seconds / fixed 10-minute keep-alive")
        .y_desc("p75 per-function cold-start %")
        .draw()
        .map_err(|e| fail(&e))?;
    let families = [
        ("fixed", BLUE),
        ("adaptive", RED),
        ("kpa", BLACK),
        ("cost-aware", GREEN),
        ("learned", MAGENTA),
    ];
    for (family, color) in families {
        let points: Vec<(f64, f64, &str)> = reports
            .iter()
            .filter(|r| super::frontier::in_family(&r.policy, family))
            .map(|r| (r.idle_vs_fixed_10m, r.cold_start_p75_pct, r.policy.as_str()))
            .collect();
        if points.is_empty() {
            continue;
        }
        let front = super::frontier::Curve::of(reports, family);
        chart
            .draw_series(LineSeries::new(front.points().iter().copied(), color))
            .map_err(|e| fail(&e))?
            .label(family)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(points.iter().map(|&(x, y, name)| {
                EmptyElement::at((x, y))
                    + Circle::new((0, 0), 4, color.filled())
                    + Text::new(name.to_owned(), (6, -14), ("sans-serif", 12))
            }))
            .map_err(|e| fail(&e))?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}
