//! Validation of `spec.traffic`: each target names exactly one revision
//! (one of this function's) or the latest, tags are unique DNS labels short
//! enough for the tagged host, and the percents sum to 100.

use std::collections::HashSet;

use super::{ValidationErrors, in_range};
use crate::function::TrafficTarget;
use crate::names;

/// Checks the traffic targets of the function named `name`.
pub(super) fn validate_traffic(name: &str, traffic: &[TrafficTarget], errs: &mut ValidationErrors) {
    let mut tags = HashSet::new();
    for (i, t) in traffic.iter().enumerate() {
        let latest = t.latest_revision == Some(true);
        match (&t.revision, latest) {
            (Some(_), true) | (None, false) => errs.push(
                format!("spec.traffic[{i}]"),
                "exactly one of revision or latestRevision: true must be set",
            ),
            (Some(rev), false) if names::revision_number(name, rev).is_none() => errs.push(
                format!("spec.traffic[{i}].revision"),
                format!("{rev:?} is not a revision of this function (expected {name}-NNNNN)"),
            ),
            _ => {}
        }
        in_range(
            errs,
            &format!("spec.traffic[{i}].percent"),
            t.percent,
            0,
            100,
        );
        if let Some(tag) = &t.tag {
            if !names::is_dns1035_label(tag) {
                errs.push(
                    format!("spec.traffic[{i}].tag"),
                    format!("{tag:?} must be a DNS label: lowercase letters, digits and '-', starting with a letter"),
                );
            } else if tag.len() + 1 + name.len() > names::MAX_DNS_LABEL_LEN {
                errs.push(
                    format!("spec.traffic[{i}].tag"),
                    format!("{tag:?} is too long: <tag>-<name> must be at most 63 characters"),
                );
            }
            if !tags.insert(tag.as_str()) {
                errs.push(
                    format!("spec.traffic[{i}].tag"),
                    format!("{tag:?} is used by another traffic target"),
                );
            }
        }
    }
    let sum: u64 = traffic.iter().map(|t| u64::from(t.percent)).sum();
    if !traffic.is_empty() && sum != 100 {
        errs.push(
            "spec.traffic",
            format!("percents must sum to 100, they sum to {sum}"),
        );
    }
}
