//! Property tests of the autoscaler's Prometheus text parsing and of traffic
//! split resolution: any input is handled without a panic, well-formed
//! metrics are read back exactly, and a resolved split keeps every target's
//! percent and names only revisions that exist.

use flint_api::TrafficTarget;
use flint_api::backend::RevisionKey;
use flint_api::metrics as names;
use flint_operator::autoscaler::source::direct::parse_totals;
use flint_operator::reconcile::revision::{ExistingRevision, RevisionHealth};
use flint_operator::reconcile::traffic::{TrafficError, latest_ready, resolve};
use proptest::prelude::*;

/// Lines that look like metrics text: comments, samples of our counters
/// with odd labels and values, and noise.
fn metrics_line() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "# (HELP|TYPE) [a-z_]{1,30} [a-z ]{0,20}",
        (
            prop_oneof![
                Just(names::REQUESTS_TOTAL.to_owned()),
                Just(names::REQUEST_CONCURRENCY_SECONDS_TOTAL.to_owned()),
                "[a-z_]{1,20}",
            ],
            prop::collection::vec(("[a-z]{1,10}", "[ -~]{0,10}"), 0..4),
            prop_oneof![
                any::<f64>().prop_map(|v| v.to_string()),
                Just("NaN".to_owned()),
                Just("+Inf".to_owned()),
                "[ -~]{0,8}",
            ],
        )
            .prop_map(|(name, labels, value)| {
                let labels: Vec<String> =
                    labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
                format!("{name}{{{}}} {value}", labels.join(","))
            }),
    ]
}

fn revision(n: u32, ready: bool) -> ExistingRevision {
    let mut r = ExistingRevision::new(format!("f-{n:05}"), n, "h");
    if !ready {
        r.health = RevisionHealth::Deploying;
    }
    r
}

proptest! {
    #[test]
    fn parse_totals_never_panics(lines in prop::collection::vec(metrics_line(), 0..20)) {
        let _ = parse_totals(&lines.join("\n"));
    }

    #[test]
    fn parse_totals_reads_back_what_a_gateway_writes(
        samples in prop::collection::vec(("[a-z]{1,6}", "[a-z]{1,6}", 1u32..5, 0u32..1_000_000, 0u32..1_000_000), 1..8),
    ) {
        let mut text = String::new();
        let mut want = std::collections::HashMap::<RevisionKey, (f64, f64)>::new();
        for (ns, f, rev, conc, reqs) in &samples {
            let labels = format!("namespace=\"{ns}\",function=\"{f}\",revision=\"{f}-{rev:05}\"");
            text.push_str(&format!("{}{{{labels}}} {conc}\n", names::REQUEST_CONCURRENCY_SECONDS_TOTAL));
            text.push_str(&format!("{}{{{labels},code=\"200\"}} {reqs}\n", names::REQUESTS_TOTAL));
            let e = want.entry(RevisionKey::new(ns, f, format!("{f}-{rev:05}"))).or_default();
            e.0 += f64::from(*conc);
            e.1 += f64::from(*reqs);
        }
        let got = parse_totals(&text).unwrap();
        prop_assert_eq!(got.len(), want.len());
        for (key, (conc, reqs)) in want {
            let t = got[&key];
            prop_assert_eq!((t.concurrency_seconds, t.requests), (conc, reqs));
        }
    }

    #[test]
    fn traffic_resolution_never_panics_and_keeps_the_split(
        existing in prop::collection::vec(any::<bool>(), 0..5),
        targets in prop::collection::vec((prop::option::of(1u32..8), 0u32..=100, prop::option::of("[a-z]{1,5}")), 0..5),
        latest_created in 1u32..8,
    ) {
        let existing: Vec<_> = existing.iter().enumerate()
            .map(|(i, ready)| revision(u32::try_from(i).unwrap() + 1, *ready))
            .collect();
        let targets: Vec<TrafficTarget> = targets.into_iter().map(|(rev, percent, tag)| TrafficTarget {
            revision: rev.map(|n| format!("f-{n:05}")),
            latest_revision: rev.is_none().then_some(true),
            percent,
            tag,
        }).collect();
        let latest = latest_ready(&format!("f-{latest_created:05}"), &existing).map(|r| r.name.clone());
        if let Some(name) = &latest {
            prop_assert!(existing.iter().any(|r| &r.name == name && r.is_ready()));
        }
        match resolve(&targets, &existing, latest.as_deref()) {
            Ok(resolved) => {
                let expected = if targets.is_empty() { 1 } else { targets.len() };
                prop_assert_eq!(resolved.len(), expected);
                for (i, status) in resolved.iter().enumerate() {
                    prop_assert!(existing.iter().any(|r| r.name == status.revision_name));
                    if let Some(t) = targets.get(i) {
                        prop_assert_eq!(status.percent, t.percent);
                        prop_assert_eq!(&status.tag, &t.tag);
                        prop_assert_eq!(status.latest_revision, t.revision.is_none());
                    } else {
                        prop_assert_eq!(status.percent, 100);
                    }
                }
            }
            Err(TrafficError::TargetNotFound(missing)) => {
                prop_assert!(!missing.is_empty());
                for m in missing {
                    prop_assert!(!existing.iter().any(|r| r.name == m));
                }
            }
            Err(TrafficError::NoReadyRevision) => prop_assert!(latest.is_none()),
        }
    }
}
