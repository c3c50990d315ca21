//! Validation of a parsed Function: every problem, each with the field path it
//! concerns (`spec.traffic[1].percent`). The rules are the same as the CRD's
//! schema bounds and CEL rules, so `flint dev` refuses exactly what a cluster
//! would; a test evaluates the CEL rules against the same cases.

use std::collections::HashSet;
use std::fmt;

mod pod;

use crate::duration::Duration;
use crate::function::{Function, ScaleSpec, Schedule, TrafficTarget, VOLUME_SOURCE_MESSAGE};
use crate::names::{self, MAX_FUNCTION_NAME_LEN, RESERVED_PORTS};

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
    validate_volumes(function, &mut errs);
    pod::validate_pod(spec, &mut errs);
    validate_scale(&spec.scale, &mut errs);
    validate_traffic(name, &spec.traffic, &mut errs);
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
        validate_schedule(i, schedule, &mut errs);
    }

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

fn validate_volumes(function: &Function, errs: &mut ValidationErrors) {
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

fn validate_scale(s: &ScaleSpec, errs: &mut ValidationErrors) {
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

fn validate_traffic(name: &str, traffic: &[TrafficTarget], errs: &mut ValidationErrors) {
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

fn validate_schedule(i: usize, s: &Schedule, errs: &mut ValidationErrors) {
    if let Err(reason) = parse_cron(&s.cron) {
        errs.push(
            format!("spec.schedules[{i}].cron"),
            format!("{:?} is not a cron expression: {reason}", s.cron),
        );
    }
    if let Err(reason) = parse_timezone(&s.timezone) {
        errs.push(format!("spec.schedules[{i}].timezone"), reason);
    }
    if !s.path.starts_with('/') {
        errs.push(format!("spec.schedules[{i}].path"), "must start with '/'");
    }
}

/// Parses a schedule's five-field cron expression into the evaluator the
/// scheduler runs, after the same checks as the CRD's pattern (which name
/// the field and value at fault). Anything this accepts, the scheduler can
/// run; anything the CRD's pattern refuses, this refuses too.
pub fn parse_cron(expr: &str) -> Result<croner::Cron, String> {
    check_cron(expr)?;
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())
}

/// Parses an IANA time zone name (`UTC`, `Europe/Paris`) against the time
/// zone database the scheduler uses.
pub fn parse_timezone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>().map_err(|_| {
        format!("{name:?} is not a time zone of the IANA database (e.g. UTC, Europe/Paris)")
    })
}

/// Checks a five-field cron expression: minute, hour, day of month, month,
/// day of week; each field `*`, a number, a range `a-b`, a list `a,b`, with an
/// optional step `/n`; months and weekdays also by three-letter name.
fn check_cron(expr: &str) -> Result<(), String> {
    const FIELDS: [(&str, u32, u32); 5] = [
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day of month", 1, 31),
        ("month", 1, 12),
        ("day of week", 0, 7),
    ];
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let parts: Vec<&str> = expr.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(format!("expected 5 fields, found {}", parts.len()));
    }
    for (field, (what, lo, hi)) in parts.iter().zip(FIELDS) {
        let value = |v: &str| -> Result<u32, String> {
            let lower = v.to_ascii_lowercase();
            let named = match what {
                "month" => MONTHS
                    .iter()
                    .position(|m| *m == lower)
                    .map(|p| p as u32 + 1),
                "day of week" => DAYS.iter().position(|d| *d == lower).map(|p| p as u32),
                _ => None,
            };
            let n = match named {
                Some(n) => n,
                None => v
                    .parse::<u32>()
                    .map_err(|_| format!("{what} {v:?} is not a number"))?,
            };
            if n < lo || n > hi {
                return Err(format!("{what} {n} is outside {lo}-{hi}"));
            }
            Ok(n)
        };
        for item in field.split(',') {
            let (range, step) = match item.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (item, None),
            };
            if let Some(step) = step
                && step.parse::<u32>().map_or(true, |s| s == 0)
            {
                return Err(format!("{what} step {step:?} must be a positive number"));
            }
            if range == "*" {
                continue;
            }
            match range.split_once('-') {
                Some((a, b)) => {
                    if value(a)? > value(b)? {
                        return Err(format!("{what} range {range:?} runs backwards"));
                    }
                }
                None => {
                    value(range)?;
                }
            }
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::{check_cron, parse_cron, parse_timezone};

    #[test]
    fn parsed_cron_agrees_with_the_check() {
        for ok in [
            "* * * * *",
            "*/5 * * * *",
            "0 9-17 * * mon-fri",
            "0 0 * * 7",
        ] {
            assert!(parse_cron(ok).is_ok(), "{ok}");
        }
        // Extensions the evaluator knows but the CRD's pattern refuses.
        for bad in ["0 0 L * *", "0 0 * * 5#2", "0 0 * * * *"] {
            assert!(parse_cron(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_time_zone_names_its_field() {
        let text = "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: { name: tick }\nspec:\n  image: x\n  schedules:\n    - { cron: \"* * * * *\" }\n    - { cron: \"0 0 L * *\", timezone: Mars/Olympus_Mons }\n";
        let err = crate::parse_functions(text).unwrap_err().to_string();
        assert!(
            err.contains("spec.schedules[1].timezone: \"Mars/Olympus_Mons\" is not a time zone"),
            "{err}"
        );
        assert!(
            err.contains("spec.schedules[1].cron: \"0 0 L * *\" is not a cron expression"),
            "{err}"
        );
        assert!(!err.contains("schedules[0]"), "{err}");
    }

    #[test]
    fn time_zones() {
        for ok in [
            "UTC",
            "Europe/Paris",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+5",
        ] {
            assert!(parse_timezone(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            parse_timezone("Mars/Olympus_Mons").unwrap_err(),
            "\"Mars/Olympus_Mons\" is not a time zone of the IANA database (e.g. UTC, Europe/Paris)"
        );
    }

    #[test]
    fn cron_expressions() {
        for ok in [
            "* * * * *",
            "*/5 * * * *",
            "0 9-17 * * mon-fri",
            "15,45 0 1 jan,jul 0",
            "0 0 * * 7",
        ] {
            assert_eq!(check_cron(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("* * * *", "expected 5 fields"),
            ("60 * * * *", "minute 60 is outside 0-59"),
            ("* 24 * * *", "hour 24"),
            ("*/0 * * * *", "step"),
            ("* * 0 * *", "day of month 0"),
            ("* * * foo *", "month \"foo\""),
            ("5-1 * * * *", "backwards"),
        ] {
            let err = check_cron(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
