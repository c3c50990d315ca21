//! Property test of the revision plan: over random histories of spec edits
//! and readiness changes, the plan never deletes a revision that traffic
//! (resolved or kept), `spec.traffic` (by name, tagged or not) or
//! `latestRevision` names, never deletes the latest created one, and numbers
//! new revisions strictly upward.

use flint_api::names::revision_name;
use flint_api::{PlanRevision, PlanSpec, TrafficStatus, TrafficTarget, plan_revisions};
use proptest::prelude::*;

/// One event in a Function's life.
#[derive(Debug, Clone)]
enum Step {
    /// The spec is edited: its identity, traffic and history limit.
    Edit {
        hash: u8,
        traffic: Vec<(Option<u32>, Option<String>)>,
        limit: u32,
    },
    /// The revision at this index (modulo how many exist) becomes ready.
    Ready(usize),
    /// The revision at this index loses readiness (it fails).
    Fail(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (
            0u8..4,
            prop::collection::vec(
                (
                    prop::option::of(1u32..10),
                    prop::option::of(prop::sample::select(vec!["a".to_owned(), "b".to_owned()])),
                ),
                0..3,
            ),
            0u32..3,
        )
            .prop_map(|(hash, traffic, limit)| Step::Edit {
                hash,
                traffic,
                limit
            }),
        any::<usize>().prop_map(Step::Ready),
        any::<usize>().prop_map(Step::Fail),
    ]
}

/// Resolves targets as the operator does: a named revision must exist, a
/// `latestRevision` target needs a ready revision.
fn resolve(
    targets: &[TrafficTarget],
    existing: &[PlanRevision],
    latest_ready: Option<&str>,
) -> Result<Vec<TrafficStatus>, ()> {
    let defaults = [TrafficTarget {
        revision: None,
        latest_revision: Some(true),
        percent: 100,
        tag: None,
    }];
    let targets = if targets.is_empty() {
        &defaults[..]
    } else {
        targets
    };
    targets
        .iter()
        .map(|t| {
            let name = match &t.revision {
                Some(n) if existing.iter().any(|r| &r.name == n) => n.clone(),
                Some(_) => return Err(()),
                None => latest_ready.ok_or(())?.to_owned(),
            };
            Ok(TrafficStatus {
                revision_name: name,
                percent: t.percent,
                latest_revision: t.revision.is_none(),
                tag: t.tag.clone(),
                url: None,
            })
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn the_plan_keeps_what_is_named_and_numbers_upward(steps in prop::collection::vec(step(), 1..40)) {
        let mut existing: Vec<PlanRevision> = Vec::new();
        let mut traffic_in_force: Vec<TrafficStatus> = Vec::new();
        let mut hash = "0".to_owned();
        let mut targets: Vec<TrafficTarget> = Vec::new();
        let mut limit = 1;
        let mut highest = 0;
        for step in steps {
            match &step {
                Step::Edit { hash: h, traffic, limit: l } => {
                    hash = h.to_string();
                    limit = *l;
                    targets = traffic
                        .iter()
                        .map(|(n, tag)| TrafficTarget {
                            revision: n.map(|n| revision_name("f", n)),
                            latest_revision: n.is_none().then_some(true),
                            percent: 0,
                            tag: tag.clone(),
                        })
                        .collect();
                }
                Step::Ready(i) | Step::Fail(i) => {
                    let n = existing.len().max(1);
                    if let Some(r) = existing.get_mut(i % n) {
                        r.ready = matches!(step, Step::Ready(_));
                    }
                }
            }
            let spec = PlanSpec { function: "f", spec_hash: &hash, traffic: &targets, history_limit: limit };
            let plan = plan_revisions(spec, &existing, &traffic_in_force, |ready| {
                resolve(&targets, &existing, ready)
            })
            .map_err(|e| TestCaseError::fail(e.to_string()))?;

            for gone in &plan.delete {
                prop_assert!(existing.iter().any(|r| &r.name == gone), "deletes {gone}, which does not exist");
                prop_assert!(*gone != plan.latest.name, "deletes the latest created {gone}");
                prop_assert!(plan.latest_ready.as_deref() != Some(gone.as_str()), "deletes the latest ready {gone}");
                prop_assert!(!plan.traffic.iter().any(|t| &t.revision_name == gone), "deletes {gone}, which takes traffic");
                prop_assert!(!targets.iter().any(|t| t.revision.as_deref() == Some(gone.as_str())), "deletes {gone}, which spec.traffic names");
            }
            if let Some(newest_ready) = existing.iter().filter(|r| r.ready).max_by_key(|r| r.number) {
                let latest_is_ready = existing.iter().any(|r| r.name == plan.latest.name && r.ready);
                if !latest_is_ready {
                    prop_assert_eq!(plan.latest_ready.as_deref(), Some(newest_ready.name.as_str()));
                }
            }
            if plan.latest.created {
                prop_assert!(plan.latest.number > highest, "{} after {highest}", plan.latest.number);
                prop_assert_eq!(&plan.latest.name, &revision_name("f", plan.latest.number));
                highest = plan.latest.number;
                existing.push(PlanRevision {
                    name: plan.latest.name.clone(),
                    number: plan.latest.number,
                    spec_hash: hash.clone(),
                    ready: false,
                });
            } else {
                prop_assert_eq!(plan.latest.number, highest);
            }
            existing.retain(|r| !plan.delete.contains(&r.name));
            traffic_in_force = plan.traffic;
        }
    }
}
