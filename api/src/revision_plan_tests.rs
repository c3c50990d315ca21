use super::*;

fn rev(n: u32, hash: &str, ready: bool) -> PlanRevision {
    PlanRevision {
        name: revision_name("f", n),
        number: n,
        spec_hash: hash.into(),
        ready,
    }
}

fn spec<'a>(hash: &'a str, traffic: &'a [TrafficTarget], limit: u32) -> PlanSpec<'a> {
    PlanSpec {
        function: "f",
        spec_hash: hash,
        traffic,
        history_limit: limit,
    }
}

fn to(name: &str) -> TrafficStatus {
    TrafficStatus {
        revision_name: name.into(),
        percent: 100,
        latest_revision: false,
        tag: None,
        url: None,
    }
}

/// Routes everything to the latest ready revision.
fn latest(ready: Option<&str>) -> Result<Vec<TrafficStatus>, ()> {
    ready.map(|r| vec![to(r)]).ok_or(())
}

#[test]
fn an_unchanged_spec_cuts_nothing_and_a_changed_one_cuts_the_next_number() {
    let existing = [rev(1, "a", true), rev(3, "b", true)];
    let same = plan_revisions(spec("b", &[], 5), &existing, &[], latest).expect("plan");
    assert_eq!((same.latest.number, same.latest.created), (3, false));
    let changed = plan_revisions(spec("a", &[], 5), &existing, &[], latest).expect("plan");
    assert_eq!(changed.latest.name, "f-00004");
    assert!(changed.latest.created);
    assert_eq!(changed.latest_ready.as_deref(), Some("f-00003"));
}

#[test]
fn the_number_after_the_last_is_refused() {
    let existing = [rev(MAX_REVISION_NUMBER, "a", true)];
    assert_eq!(
        plan_revisions(spec("b", &[], 5), &existing, &[], latest),
        Err(PlanError::RevisionNumbersExhausted("f".into()))
    );
    // The spec it already runs needs no number.
    assert!(plan_revisions(spec("a", &[], 5), &existing, &[], latest).is_ok());
}

#[test]
fn idle_revisions_beyond_the_limit_go_oldest_first_and_the_rest_stay() {
    let pinned = [TrafficTarget {
        revision: Some("f-00002".into()),
        latest_revision: None,
        percent: 0,
        tag: Some("old".into()),
    }];
    let existing = [
        rev(1, "a", true),
        rev(2, "b", true),
        rev(3, "c", true),
        rev(4, "d", true),
        rev(5, "e", false),
    ];
    // Resolution fails: the previous traffic (f-00001) stays in force.
    let plan = plan_revisions(spec("e", &pinned, 0), &existing, &[to("f-00001")], |_| {
        Err::<Vec<TrafficStatus>, ()>(())
    })
    .expect("plan");
    assert_eq!(plan.traffic, [to("f-00001")]);
    // Kept: f-00005 (latest), f-00004 (latest ready), f-00002 (pinned),
    // f-00001 (routed).
    assert_eq!(plan.delete, ["f-00003"]);
    let plan = plan_revisions(spec("e", &pinned, 1), &existing, &[], latest).expect("plan");
    assert_eq!(plan.delete, ["f-00001"]);
    let plan = plan_revisions(spec("e", &[], 1), &existing, &[], latest).expect("plan");
    assert_eq!(plan.delete, ["f-00002", "f-00001"]);
}
