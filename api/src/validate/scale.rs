//! Validation of `spec.scale`: each knob's bounds and the rules between
//! them (min <= initial <= max), as the CRD's schema and CEL rules of
//! `ScaleSpec` say.

use super::{ValidationErrors, duration_in_range, in_range};
use crate::function::ScaleSpec;

/// Checks the autoscaling knobs.
pub(super) fn validate_scale(s: &ScaleSpec, errs: &mut ValidationErrors) {
    in_range(errs, "spec.scale.min", s.min, 0, 1000);
    in_range(errs, "spec.scale.max", s.max, 1, 1000);
    if s.min > s.max {
        errs.push(
            "spec.scale.min",
            format!("min ({}) must not exceed max ({})", s.min, s.max),
        );
    }
    if s.initial < s.min || s.initial > s.max {
        errs.push(
            "spec.scale.initial",
            format!(
                "initial ({}) must lie between min ({}) and max ({})",
                s.initial, s.min, s.max
            ),
        );
    }
    in_range(errs, "spec.scale.target", s.target, 1, 100_000);
    in_range(
        errs,
        "spec.scale.targetUtilization",
        s.target_utilization,
        1,
        100,
    );
    duration_in_range(errs, "spec.scale.stableWindow", s.stable_window, 6, 3600);
    in_range(
        errs,
        "spec.scale.panicWindowPercent",
        s.panic_window_percent,
        1,
        100,
    );
    in_range(
        errs,
        "spec.scale.panicThresholdPercent",
        s.panic_threshold_percent,
        110,
        1000,
    );
    duration_in_range(
        errs,
        "spec.scale.scaleDownDelay",
        s.scale_down_delay,
        0,
        3600,
    );
    duration_in_range(
        errs,
        "spec.scale.scaleToZeroGracePeriod",
        s.scale_to_zero_grace_period,
        1,
        3600,
    );
}
