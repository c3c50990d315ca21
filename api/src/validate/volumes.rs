//! Validation of `spec.volumes`: names unique DNS labels, absolute mount
//! paths, exactly one source each (the CRD's [`VOLUME_SOURCE_RULE`]).
//!
//! [`VOLUME_SOURCE_RULE`]: crate::function::VOLUME_SOURCE_RULE

use std::collections::HashSet;

use super::ValidationErrors;
use crate::function::{Function, VOLUME_SOURCE_MESSAGE};
use crate::names;

/// Checks every volume of `function`.
pub(super) fn validate_volumes(function: &Function, errs: &mut ValidationErrors) {
    let mut seen = HashSet::new();
    for (i, v) in function.spec.volumes.iter().enumerate() {
        if !names::is_dns1123_label(&v.name) {
            errs.push(
                format!("spec.volumes[{i}].name"),
                format!("{:?} must be a DNS label", v.name),
            );
        } else if !seen.insert(v.name.as_str()) {
            errs.push(
                format!("spec.volumes[{i}].name"),
                format!("{:?} is used by another volume", v.name),
            );
        }
        if !v.mount_path.starts_with('/') {
            errs.push(
                format!("spec.volumes[{i}].mountPath"),
                "must be an absolute path",
            );
        }
        let sources = [
            v.secret.is_some(),
            v.config_map.is_some(),
            v.projected.is_some(),
            v.empty_dir.is_some(),
            v.persistent_volume_claim.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() != 1 {
            errs.push(format!("spec.volumes[{i}]"), VOLUME_SOURCE_MESSAGE);
        }
    }
}
