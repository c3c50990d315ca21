//! Comparing two policies' trade-off curves: whether one family's p75
//! cold-start curve lies strictly below another's over a range of idle
//! budgets, and by how much at its closest. What `flint sim --plot` prints
//! under the table, and what the acceptance test on the dev trace checks.

use std::fmt;

use super::report::PolicyReport;

/// One family's frontier: the settings no other setting of the family
/// beats on both idle and p75 cold starts (idle relative to fixed 10
/// minutes, p75 cold-start %), sorted by idle and read between points by
/// straight lines, as the plot draws them. A dominated setting is one
/// nobody would choose (another costs no more and starts fewer cold), so
/// it is not part of the curve; the plot still marks it.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    points: Vec<(f64, f64)>,
}

impl Curve {
    /// The frontier of the reports named `family` or `family-<setting>`.
    pub fn of(reports: &[PolicyReport], family: &str) -> Self {
        let mut all: Vec<(f64, f64)> = reports
            .iter()
            .filter(|r| in_family(&r.policy, family))
            .map(|r| (r.idle_vs_fixed_10m, r.cold_start_p75_pct))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        let mut points: Vec<(f64, f64)> = Vec::with_capacity(all.len());
        for p in all {
            if points.last().is_none_or(|last| p.1 < last.1) {
                points.push(p);
            }
        }
        Self { points }
    }

    /// The frontier's points, by idle.
    pub fn points(&self) -> &[(f64, f64)] {
        &self.points
    }

    /// The idle budgets the curve covers, if it has a point.
    pub fn span(&self) -> Option<(f64, f64)> {
        Some((self.points.first()?.0, self.points.last()?.0))
    }

    /// The curve's p75 at idle budget `x`: `None` below its cheapest
    /// setting; beyond its most expensive one, that setting's p75 (a larger
    /// budget can always be left unspent, and the family has no setting
    /// that would spend it).
    pub fn at(&self, x: f64) -> Option<f64> {
        let (lo, hi) = self.span()?;
        if x < lo {
            return None;
        }
        if x >= hi {
            return self.points.last().map(|p| p.1);
        }
        let mut best: Option<f64> = None;
        for pair in self.points.windows(2) {
            let [(x0, y0), (x1, y1)] = [pair[0], pair[1]];
            if x < x0 || x > x1 {
                continue;
            }
            let y = if x1 > x0 {
                y0 + (y1 - y0) * (x - x0) / (x1 - x0)
            } else {
                y0.min(y1)
            };
            best = Some(best.map_or(y, |b: f64| b.min(y)));
        }
        best.or_else(|| self.points.iter().find(|p| p.0 == x).map(|p| p.1))
    }
}

/// Whether `name` is `family` itself or one of its settings.
pub(super) fn in_family(name: &str, family: &str) -> bool {
    name == family
        || name
            .strip_prefix(family)
            .is_some_and(|rest| rest.starts_with('-'))
}

/// How a curve compares with another over a range of idle budgets.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The budgets both curves reach inside the asked range, if any (a
    /// curve reaches every budget from its cheapest setting up).
    pub overlap: Option<(f64, f64)>,
    /// The smallest margin (other's p75 minus this curve's, in percentage
    /// points) and the budget where it occurs; positive when strictly
    /// below everywhere in the overlap.
    pub closest: Option<(f64, f64)>,
}

impl Comparison {
    /// Whether the curve is strictly below the other over the whole range
    /// asked for (both cover it and the margin is positive everywhere).
    pub fn below_over(&self, lo: f64, hi: f64) -> bool {
        matches!(
            (self.overlap, self.closest),
            (Some((a, b)), Some((_, margin))) if a <= lo && b >= hi && margin > 0.0
        )
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.overlap, self.closest) {
            (Some((a, b)), Some((x, margin))) => write!(
                f,
                "compared over {a:.2}x-{b:.2}x, closest margin {margin:+.2} points at {x:.2}x"
            ),
            _ => write!(f, "no common idle budgets"),
        }
    }
}

/// Compares `curve` with `other` over idle budgets `lo..=hi`: at every
/// point of either curve inside the common range, and at its ends.
pub fn compare(curve: &Curve, other: &Curve, lo: f64, hi: f64) -> Comparison {
    let (Some((a0, _)), Some((b0, _))) = (curve.span(), other.span()) else {
        return Comparison {
            overlap: None,
            closest: None,
        };
    };
    let (from, to) = (lo.max(a0).max(b0), hi);
    if from > to {
        return Comparison {
            overlap: None,
            closest: None,
        };
    }
    let xs = curve
        .points
        .iter()
        .chain(&other.points)
        .map(|p| p.0)
        .filter(|&x| x >= from && x <= to)
        .chain([from, to]);
    let mut closest: Option<(f64, f64)> = None;
    for x in xs {
        if let (Some(y), Some(o)) = (curve.at(x), other.at(x)) {
            let margin = o - y;
            if closest.is_none_or(|(_, m)| margin < m) {
                closest = Some((x, margin));
            }
        }
    }
    Comparison {
        overlap: Some((from, to)),
        closest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(policy: &str, idle: f64, p75: f64) -> PolicyReport {
        PolicyReport {
            policy: policy.to_owned(),
            functions: 1,
            requests: 1,
            cold_start_p50_pct: 0.0,
            cold_start_p75_pct: p75,
            cold_start_rate_pct: 0.0,
            idle_replica_seconds: 0.0,
            idle_vs_fixed_10m: idle,
            mean_queueing_delay_ms: 0.0,
            scale_writes: 0,
        }
    }

    fn reports() -> Vec<PolicyReport> {
        vec![
            report("fixed-1m", 0.5, 50.0),
            report("fixed-10m", 1.0, 30.0),
            report("fixed-60m", 1.5, 10.0),
            report("learned-1e-3", 0.4, 45.0),
            report("learned-1e-4", 1.0, 20.0),
            report("learned-2e-5", 1.6, 9.0),
            report("learned", 0.9, 25.0),
            report("learned-3e-4", 0.95, 25.0),
            report("learned-5e-4", 0.7, 46.0),
            report("learnedx", 0.1, 99.0),
        ]
    }

    #[test]
    fn a_family_is_its_undominated_settings_sorted_by_idle() {
        let c = Curve::of(&reports(), "learned");
        assert_eq!(
            c.points,
            vec![(0.4, 45.0), (0.9, 25.0), (1.0, 20.0), (1.6, 9.0)]
        );
    }

    #[test]
    fn reading_between_points_is_linear_nothing_below_and_flat_above() {
        let c = Curve::of(&reports(), "fixed");
        assert_eq!(c.at(0.75), Some(40.0));
        assert_eq!(c.at(1.5), Some(10.0));
        assert_eq!(c.at(0.49), None);
        assert_eq!(c.at(3.0), Some(10.0));
    }

    #[test]
    fn below_everywhere_reports_the_closest_margin() {
        let r = reports();
        let cmp = compare(&Curve::of(&r, "learned"), &Curve::of(&r, "fixed"), 0.5, 1.5);
        assert_eq!(cmp.overlap, Some((0.5, 1.5)));
        // learned at 0.5: 45 - 20 × 0.1/0.5 = 41, fixed 50: margin 9; at 1.5
        // learned 20 - 11 × 0.5/0.6 ≈ 10.83, fixed 10: margin -0.83.
        let (x, margin) = cmp.closest.unwrap();
        assert_eq!(x, 1.5);
        assert!((margin + 0.8333).abs() < 1e-3, "{margin}");
        assert!(!cmp.below_over(0.5, 1.5));
        let cheaper = compare(&Curve::of(&r, "learned"), &Curve::of(&r, "fixed"), 0.5, 1.0);
        assert!(cheaper.below_over(0.5, 1.0), "{cheaper}");
    }

    #[test]
    fn a_range_one_curve_does_not_cover_is_not_below() {
        let r = reports();
        let cmp = compare(&Curve::of(&r, "learned"), &Curve::of(&r, "fixed"), 0.3, 1.2);
        assert_eq!(cmp.overlap, Some((0.5, 1.2)));
        assert!(!cmp.below_over(0.3, 1.2), "fixed has no setting below 0.5x");
        let none = compare(&Curve::of(&r, "fixed"), &Curve::of(&r, "kpa"), 0.5, 1.5);
        assert_eq!(none.overlap, None);
        assert!(!none.below_over(0.5, 1.5));
    }
}
