//! Validation of a parsed Function: every problem, each with the field path it
//! concerns (`spec.traffic[1].percent`). The rules are the same as the CRD's
//! schema bounds and CEL rules, so `flint dev` refuses exactly what a cluster
//! would; a test evaluates the CEL rules against the same cases.
//!
//! This module holds the error types, the walk over the spec and the checks
//! of the container's own fields; each larger area of the spec is checked in
//! its own module, called in the order of the spec's fields so that the
//! problems come out in that order.

use std::fmt;

mod access;
mod pod;
mod scale;
mod schedule;
mod traffic;
mod volumes;

use crate::duration::Duration;
use crate::function::Function;
use crate::names::{self, MAX_FUNCTION_NAME_LEN, RESERVED_PORTS};

pub use schedule::{parse_cron, parse_timezone};

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `spec.scale.min`.
    pub path: String,
    /// What is wrong, in words a person can act on.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in one Function (never empty when returned as an error).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// The problems, in the order of the spec's fields.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// Checks `function` against every rule of the Function API and returns all
/// problems at once.
pub fn validate(function: &Function) -> Result<(), ValidationErrors> {
    let mut errs = ValidationErrors::default();
    let name = function.metadata.name.as_deref().unwrap_or_default();
    validate_metadata(function, &mut errs);
    let spec = &function.spec;

    if spec.image.trim().is_empty() {
        errs.push("spec.image", "must not be empty");
    }
    if let Some(command) = &spec.command
        && command.first().is_none_or(|c| c.trim().is_empty())
    {
        errs.push("spec.command", "must name a program when set");
    }
    if spec.port == 0 {
        errs.push("spec.port", "must be between 1 and 65535");
    } else if RESERVED_PORTS.contains(&spec.port) {
        errs.push(
            "spec.port",
            format!(
                "{} is reserved by the platform (reserved: 8012, 8022, 9091)",
                spec.port
            ),
        );
    }
    for (i, env) in spec.env.iter().enumerate() {
        if env.name.is_empty() || env.name.contains('=') {
            errs.push(
                format!("spec.env[{i}].name"),
                "must be a non-empty name without '='",
            );
        } else if env.name.len() as u64 > crate::crd::ENV_NAME_MAX_LENGTH {
            errs.push(
                format!("spec.env[{i}].name"),
                format!(
                    "must be at most {} characters",
                    crate::crd::ENV_NAME_MAX_LENGTH
                ),
            );
        }
    }
    if spec.env.len() > crate::crd::ENV_MAX_ENTRIES {
        errs.push(
            "spec.env",
            format!("must have at most {} entries", crate::crd::ENV_MAX_ENTRIES),
        );
    }
    in_range(
        &mut errs,
        "spec.timeoutSeconds",
        spec.timeout_seconds,
        1,
        3600,
    );
    in_range(&mut errs, "spec.concurrency", spec.concurrency, 0, 10_000);
    in_range(
        &mut errs,
        "spec.revisionHistoryLimit",
        spec.revision_history_limit,
        0,
        100,
    );
    volumes::validate_volumes(function, &mut errs);
    pod::validate_pod(spec, &mut errs);
    scale::validate_scale(&spec.scale, &mut errs);
    traffic::validate_traffic(name, &spec.traffic, &mut errs);
    in_range(
        &mut errs,
        "spec.async.maxRetries",
        spec.async_.max_retries,
        0,
        100,
    );
    in_range(
        &mut errs,
        "spec.async.maxInFlight",
        spec.async_.max_in_flight,
        1,
        10_000,
    );
    duration_in_range(
        &mut errs,
        "spec.async.maxAge",
        spec.async_.max_age,
        1,
        168 * 3600,
    );
    for (i, schedule) in spec.schedules.iter().enumerate() {
        schedule::validate_schedule(i, schedule, &mut errs);
    }
    access::validate_access(spec, &mut errs);

    if errs.0.is_empty() { Ok(()) } else { Err(errs) }
}

fn validate_metadata(function: &Function, errs: &mut ValidationErrors) {
    match function.metadata.name.as_deref() {
        None | Some("") => errs.push("metadata.name", "is required"),
        Some(name) if name.len() > MAX_FUNCTION_NAME_LEN => errs.push(
            "metadata.name",
            format!(
                "{name:?} is {} characters; at most {MAX_FUNCTION_NAME_LEN} are allowed so that revision names (<name>-00001) stay valid DNS labels",
                name.len()
            ),
        ),
        Some(name) if !names::is_dns1035_label(name) => errs.push(
            "metadata.name",
            format!("{name:?} must be a DNS label: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit"),
        ),
        Some(_) => {}
    }
    if let Some(ns) = function.metadata.namespace.as_deref()
        && !names::is_dns1123_label(ns)
    {
        errs.push("metadata.namespace", format!("{ns:?} must be a DNS label"));
    }
}

fn in_range(errs: &mut ValidationErrors, path: &str, v: u32, lo: u32, hi: u32) {
    if v < lo || v > hi {
        errs.push(
            path,
            format!("{v} is out of range; must be between {lo} and {hi}"),
        );
    }
}

fn duration_in_range(
    errs: &mut ValidationErrors,
    path: &str,
    d: Duration,
    lo_secs: u64,
    hi_secs: u64,
) {
    if d < Duration::from_secs(lo_secs) || d > Duration::from_secs(hi_secs) {
        errs.push(
            path,
            format!(
                "{d} is out of range; must be between {} and {}",
                Duration::from_secs(lo_secs),
                Duration::from_secs(hi_secs)
            ),
        );
    }
}
