//! Pure schedule arithmetic: which Functions' schedules exist, which tick of
//! a schedule is due at a given instant, and the invocation id of a tick.
//! No clock inside: `now` is always an argument.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use flint_api::{Function, ScheduleMethod};

/// One schedule of one Function, parsed.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Stable key: `<namespace>.<function>.<index>` (a valid ConfigMap key).
    pub key: String,
    /// Namespace of the Function.
    pub namespace: String,
    /// Name of the Function.
    pub function: String,
    /// The cron expression, parsed.
    pub cron: croner::Cron,
    /// The expression's text (for logs).
    pub expr: String,
    /// Time zone the expression is read in.
    pub tz: Tz,
    /// Request path.
    pub path: String,
    /// Request method.
    pub method: ScheduleMethod,
    /// Request body.
    pub body: Option<String>,
}

/// Every valid schedule of `functions` (namespace `default` when unset).
/// Schedules that do not parse are left out with a warning: `validate()`
/// and the CRD refuse them before they get here.
pub fn entries(functions: &[Function]) -> Vec<Entry> {
    let mut out = Vec::new();
    for f in functions {
        let Some(name) = f.metadata.name.as_deref() else {
            continue;
        };
        let ns = f.metadata.namespace.as_deref().unwrap_or("default");
        for (i, s) in f.spec.schedules.iter().enumerate() {
            let parsed = flint_api::validate::parse_cron(&s.cron)
                .and_then(|cron| Ok((cron, flint_api::validate::parse_timezone(&s.timezone)?)));
            match parsed {
                Ok((cron, tz)) => out.push(Entry {
                    key: format!("{ns}.{name}.{i}"),
                    namespace: ns.to_owned(),
                    function: name.to_owned(),
                    cron,
                    expr: s.cron.clone(),
                    tz,
                    path: s.path.clone(),
                    method: s.method,
                    body: s.body.clone(),
                }),
                Err(reason) => {
                    tracing::warn!(namespace = ns, function = name, index = i, %reason, "schedule ignored")
                }
            }
        }
    }
    out
}

/// The latest tick at or before `now`.
pub fn latest_tick(cron: &croner::Cron, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_previous_occurrence(&now.with_timezone(&tz), true)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The first tick after `now`.
pub fn next_tick(cron: &croner::Cron, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&now.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The tick to fire at `now`, if any: the latest tick after `since` (ticks
/// up to `since` were already considered) and at most `catch_up` old
/// (older ticks, missed while no scheduler ran, are skipped, as a
/// CronJob's `startingDeadlineSeconds` does).
pub fn due(
    cron: &croner::Cron,
    tz: Tz,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    catch_up: chrono::Duration,
) -> Option<DateTime<Utc>> {
    latest_tick(cron, tz, now).filter(|t| *t > since && now - *t <= catch_up)
}

/// The invocation id of `tick` of `entry`: the same from every scheduler,
/// so a tick fired twice by accident is one invocation on the queue.
pub fn invocation_id(entry: &Entry, tick: DateTime<Utc>) -> String {
    format!("cron.{}.{}", entry.key, tick.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 28, h, m, s).unwrap()
    }

    fn cron(expr: &str) -> croner::Cron {
        flint_api::validate::parse_cron(expr).unwrap()
    }

    #[test]
    fn due_ticks() {
        let every5 = cron("*/5 * * * *");
        let mins = chrono::Duration::minutes;
        for (since, now, want) in [
            // A tick exactly now, not yet considered.
            (at(9, 59, 59), at(10, 0, 0), Some(at(10, 0, 0))),
            // Considered already.
            (at(10, 0, 0), at(10, 0, 30), None),
            // Between ticks.
            (at(10, 1, 0), at(10, 4, 59), None),
            // Several missed: only the latest fires.
            (at(9, 40, 0), at(10, 6, 0), Some(at(10, 5, 0))),
            // Older than the catch-up window: skipped.
            (at(9, 0, 0), at(10, 9, 0), None),
        ] {
            assert_eq!(
                due(&every5, chrono_tz::UTC, since, now, mins(3)),
                want,
                "{since} → {now}"
            );
        }
    }

    #[test]
    fn time_zones_move_the_ticks() {
        // 09:00 in Paris is 08:00 UTC in March before the clocks change (29 March 2026).
        let nine = cron("0 9 * * *");
        let paris: Tz = "Europe/Paris".parse().unwrap();
        assert_eq!(latest_tick(&nine, paris, at(8, 30, 0)), Some(at(8, 0, 0)));
        assert_eq!(
            latest_tick(&nine, chrono_tz::UTC, at(8, 30, 0)),
            Some(Utc.with_ymd_and_hms(2026, 3, 27, 9, 0, 0).unwrap())
        );
        assert_eq!(
            next_tick(&nine, paris, at(8, 30, 0)),
            Some(Utc.with_ymd_and_hms(2026, 3, 29, 7, 0, 0).unwrap()),
            "after the change to summer time 09:00 Paris is 07:00 UTC"
        );
    }

    #[test]
    fn entries_and_ids() {
        let text = "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: { name: tick, namespace: team }\nspec:\n  image: x\n  schedules:\n    - { cron: \"* * * * *\" }\n    - { cron: \"0 9 * * mon-fri\", timezone: Europe/Paris, path: /report, method: GET }\n";
        let functions = flint_api::parse_functions(text).unwrap();
        let e = entries(&functions);
        assert_eq!(
            e.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
            ["team.tick.0", "team.tick.1"]
        );
        assert_eq!(e[1].path, "/report");
        assert_eq!(e[1].method, ScheduleMethod::Get);
        assert_eq!(
            invocation_id(&e[0], at(10, 0, 0)),
            format!("cron.team.tick.0.{}", at(10, 0, 0).timestamp())
        );
    }
}
