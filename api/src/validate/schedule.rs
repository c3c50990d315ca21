//! Validation of `spec.schedules`, and the parsers of a cron expression and
//! a time zone that the operator's scheduler runs too: one parser for both,
//! so that what `validate()` accepts is what the scheduler can run.

use super::ValidationErrors;
use crate::function::Schedule;

/// Checks the schedule at index `i`.
pub(super) fn validate_schedule(i: usize, s: &Schedule, errs: &mut ValidationErrors) {
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
