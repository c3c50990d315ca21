use super::*;
use std::path::PathBuf;

fn loaded(yaml_spec: &str) -> Loaded {
    let text = format!(
        "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: {{name: hello, namespace: default}}\nspec:\n  image: x\n  command: [python3, app.py]\n{yaml_spec}"
    );
    let function = flint_api::parse_functions(&text).expect("valid").remove(0);
    let path = PathBuf::from("/fns/hello/function.yaml");
    let local =
        super::super::local::resolve(&function, &path, &Default::default()).expect("runs locally");
    Loaded {
        path,
        function,
        local,
    }
}

fn rev(n: u32) -> RevisionKey {
    RevisionKey::new("default", "hello", format!("hello-{n:05}"))
}

fn traffic(state: &DevState) -> Vec<(String, u32)> {
    state.routes()[0]
        .traffic
        .iter()
        .map(|t| (t.revision_name.clone(), t.percent))
        .collect()
}

#[test]
fn first_revision_is_ready_at_zero_and_takes_all_traffic() {
    let mut state = DevState::default();
    let (actions, notes) = state.apply(&[loaded("  scale: {initial: 0}\n")]);
    assert_eq!(actions.len(), 1);
    let Action::Add {
        key,
        process,
        initial,
        drain,
        ..
    } = &actions[0]
    else {
        panic!("{actions:?}")
    };
    assert_eq!(key, &rev(1));
    assert_eq!(*initial, 0);
    assert_eq!(*drain, Duration::from_secs(300));
    assert_eq!(process.argv, ["python3", "app.py"]);
    assert_eq!(process.dir, PathBuf::from("/fns/hello"));
    assert_eq!(traffic(&state), [("hello-00001".to_owned(), 100)]);
    assert!(
        notes
            .iter()
            .any(|n| n == "traffic default/hello: 100% hello-00001"),
        "{notes:?}"
    );
    // Same manifest again: nothing to do.
    let (actions, notes) = state.apply(&[loaded("  scale: {initial: 0}\n")]);
    assert!(
        actions.is_empty() && notes.is_empty(),
        "{actions:?} {notes:?}"
    );
}

#[test]
fn a_changed_spec_rolls_a_revision_that_takes_traffic_only_once_ready() {
    let mut state = DevState::default();
    state.apply(&[loaded("  scale: {initial: 0}\n")]);
    let (actions, _) = state.apply(&[loaded(
        "  env: [{name: A, value: b}]\n  scale: {initial: 0}\n",
    )]);
    let Action::Add {
        key,
        initial,
        process,
        ..
    } = &actions[0]
    else {
        panic!("{actions:?}")
    };
    assert_eq!(key, &rev(2));
    assert_eq!(
        *initial, 1,
        "a new revision starts a replica to prove itself"
    );
    assert_eq!(process.env, [("A".to_owned(), "b".to_owned())]);
    assert_eq!(traffic(&state), [("hello-00001".to_owned(), 100)]);

    let (_, notes) = state.revision_ready(&rev(2));
    assert_eq!(traffic(&state), [("hello-00002".to_owned(), 100)]);
    assert_eq!(notes, ["traffic default/hello: 100% hello-00002"]);
}

#[test]
fn a_failing_new_revision_never_takes_traffic_from_a_working_one() {
    let mut state = DevState::default();
    state.apply(&[loaded("")]);
    state.apply(&[loaded("  args: [--broken]\n")]);
    state.revision_failed(&rev(2), "process exit status: 1");
    assert_eq!(traffic(&state), [("hello-00001".to_owned(), 100)]);
    let routes = state.routes();
    let failure = routes[0].revisions[1].failure.as_deref();
    assert_eq!(failure, Some("process exit status: 1"));
    // Fixing the manifest rolls a third revision, which takes over once ready.
    state.apply(&[loaded("  args: [--fixed]\n")]);
    state.revision_ready(&rev(3));
    assert_eq!(traffic(&state), [("hello-00003".to_owned(), 100)]);
}

#[test]
fn scale_only_changes_rescale_without_a_new_revision() {
    let mut state = DevState::default();
    state.apply(&[loaded("")]);
    let (actions, _) = state.apply(&[loaded("  scale: {max: 3}\n")]);
    assert_eq!(actions.len(), 1);
    let Action::Rescale { key, scale } = &actions[0] else {
        panic!("{actions:?}")
    };
    assert_eq!(key, &rev(1));
    assert_eq!(scale.max, 3);
}

#[test]
fn traffic_splits_between_revisions_and_bad_targets_keep_the_old_split() {
    let mut state = DevState::default();
    state.apply(&[loaded("")]);
    state.apply(&[loaded("  args: [v2]\n")]);
    state.revision_ready(&rev(2));
    let split = "  args: [v2]\n  traffic:\n    - {latestRevision: true, percent: 90}\n    - {revision: hello-00001, percent: 10, tag: previous}\n";
    state.apply(&[loaded(split)]);
    assert_eq!(
        traffic(&state),
        [
            ("hello-00002".to_owned(), 90),
            ("hello-00001".to_owned(), 10)
        ]
    );
    assert_eq!(
        state.describe()[0].traffic,
        "90% hello-00002, 10% hello-00001 (previous)"
    );

    let missing = "  args: [v2]\n  traffic:\n    - {revision: hello-00009, percent: 100}\n";
    let (_, notes) = state.apply(&[loaded(missing)]);
    assert_eq!(
        traffic(&state),
        [
            ("hello-00002".to_owned(), 90),
            ("hello-00001".to_owned(), 10)
        ]
    );
    assert!(
        notes[0].contains("hello-00009") && notes[0].contains("keeping the previous split"),
        "{notes:?}"
    );
}

#[test]
fn removed_manifests_remove_their_revisions() {
    let mut state = DevState::default();
    state.apply(&[loaded("")]);
    state.apply(&[loaded("  args: [v2]\n")]);
    let (actions, notes) = state.apply(&[]);
    assert_eq!(
        actions,
        [
            Action::Remove { key: rev(1) },
            Action::Remove { key: rev(2) }
        ]
    );
    assert_eq!(
        notes,
        ["function default/hello removed (its manifest is gone)"]
    );
    assert!(state.routes().is_empty());
}

#[test]
fn idle_revisions_beyond_the_history_limit_are_deleted_oldest_first() {
    let mut state = DevState::default();
    let spec = |n: u32| format!("  args: [v{n}]\n  revisionHistoryLimit: 1\n");
    state.apply(&[loaded(&spec(1))]);
    let mut removed = Vec::new();
    for n in 2..=4 {
        let (a, _) = state.apply(&[loaded(&spec(n))]);
        let (b, _) = state.revision_ready(&rev(n));
        removed.extend(a.into_iter().chain(b).filter_map(|a| match a {
            Action::Remove { key } => Some(key),
            _ => None,
        }));
    }
    // With limit 1, at most one revision without traffic is kept besides the latest.
    assert_eq!(removed, [rev(1), rev(2)]);
    let names: Vec<String> = state.routes()[0]
        .revisions
        .iter()
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(names, ["hello-00003", "hello-00004"]);
}

/// The revisions `flint dev` still runs for the one function.
fn revision_names(state: &DevState) -> Vec<String> {
    state.routes()[0]
        .revisions
        .iter()
        .map(|r| r.name.clone())
        .collect()
}

fn removed(actions: &[Action]) -> Vec<RevisionKey> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Remove { key } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

// The drift from the operator, fixed by the shared revision plan: each test
// below failed before `flint dev` called `plan_revisions`.

#[test]
fn no_revision_is_numbered_past_the_maximum() {
    let mut state = DevState::default();
    state.apply(&[loaded("")]);
    for f in state.functions.values_mut() {
        for r in &mut f.revisions {
            r.existing.number = flint_api::names::MAX_REVISION_NUMBER;
            r.existing.name =
                flint_api::names::revision_name("hello", flint_api::names::MAX_REVISION_NUMBER);
        }
    }
    let (actions, notes) = state.apply(&[loaded("  args: [v2]\n")]);
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Add { .. })),
        "{actions:?}"
    );
    assert!(notes.iter().any(|n| n.contains("99999")), "{notes:?}");
    assert_eq!(revision_names(&state), ["hello-99999"]);
    assert_eq!(traffic(&state), [("hello-99999".to_owned(), 100)]);
}

#[test]
fn the_latest_ready_revision_is_kept_past_the_history_limit() {
    let mut state = DevState::default();
    let pinned =
        "  traffic:\n    - {revision: hello-00001, percent: 100}\n  revisionHistoryLimit: 0\n";
    state.apply(&[loaded(pinned)]);
    state.apply(&[loaded(&format!("  args: [v2]\n{pinned}"))]);
    let (ready, _) = state.revision_ready(&rev(2));
    let (cut, _) = state.apply(&[loaded(&format!("  args: [v3]\n{pinned}"))]);
    // hello-00002 is what `latestRevision: true` stands for while
    // hello-00003 deploys: the operator keeps it, and so must `flint dev`.
    assert_eq!(removed(&ready), []);
    assert_eq!(removed(&cut), []);
    assert_eq!(
        revision_names(&state),
        ["hello-00001", "hello-00002", "hello-00003"]
    );
}

/// A spec whose traffic cannot be resolved (hello-00009 does not exist), so
/// the previous split (all to hello-00002) stays in force, and whose
/// `pin` target names hello-00001.
fn unresolvable_with(pin: &str) -> String {
    format!(
        "  args: [v2]\n  revisionHistoryLimit: 0\n  traffic:\n    - {pin}\n    - {{revision: hello-00009, percent: 50}}\n"
    )
}

fn revision_pinned_in_spec_traffic_is_kept(pin: &str) {
    let mut state = DevState::default();
    state.apply(&[loaded("")]);
    state.apply(&[loaded("  args: [v2]\n")]);
    state.revision_ready(&rev(2));
    assert_eq!(traffic(&state), [("hello-00002".to_owned(), 100)]);
    let (actions, notes) = state.apply(&[loaded(&unresolvable_with(pin))]);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("keeping the previous split")),
        "{notes:?}"
    );
    assert_eq!(removed(&actions), []);
    assert_eq!(revision_names(&state), ["hello-00001", "hello-00002"]);
}

#[test]
fn a_revision_pinned_by_name_in_spec_traffic_is_kept() {
    revision_pinned_in_spec_traffic_is_kept("{revision: hello-00001, percent: 50}");
}

#[test]
fn a_revision_pinned_by_a_tag_in_spec_traffic_is_kept() {
    revision_pinned_in_spec_traffic_is_kept("{revision: hello-00001, percent: 50, tag: old}");
}

fn named(name: &str, yaml_spec: &str) -> Loaded {
    let text = format!(
        "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  image: x\n  command: [python3, app.py]\n{yaml_spec}"
    );
    let function = flint_api::parse_functions(&text).expect("valid").remove(0);
    let path = PathBuf::from(format!("/fns/{name}/function.yaml"));
    let local =
        super::super::local::resolve(&function, &path, &Default::default()).expect("runs locally");
    Loaded {
        path,
        function,
        local,
    }
}

/// The owner of `api.example.test` among the routes, as the gateway and
/// the printed warnings decide it.
fn domain_owner(state: &DevState) -> String {
    let routes = state.routes();
    let claimants: Vec<flint_api::domains::Claimant<'_>> = routes
        .iter()
        .map(|r| flint_api::domains::Claimant {
            function: flint_api::backend::FunctionKey::new(&r.namespace, &r.name),
            created: r.access.created.as_deref(),
            domains: &r.access.domains,
        })
        .collect();
    let (owners, _) = flint_api::domains::claims(&claimants, "localhost");
    owners
        .values()
        .next()
        .map(ToString::to_string)
        .unwrap_or_default()
}

#[test]
fn a_domain_goes_to_the_function_loaded_first_even_within_the_same_second() {
    let domains = "  domains: [api.example.test]\n";
    let mut state = DevState::default();
    state.apply(&[named("zeta", domains)]);
    // A later scan, at once: the same second, most likely.
    state.apply(&[named("alpha", domains), named("zeta", domains)]);
    assert_eq!(domain_owner(&state), "default/zeta");
    let created: Vec<String> = state
        .routes()
        .iter()
        .map(|r| r.access.created.clone().unwrap())
        .collect();
    assert!(created[1] < created[0], "zeta before alpha: {created:?}");
    assert_eq!(created[0].len(), "2025-01-01T00:00:00.000000000Z".len());

    // Loaded by one scan: a tie, which the smaller name takes.
    let mut state = DevState::default();
    state.apply(&[named("zeta", domains), named("alpha", domains)]);
    assert_eq!(domain_owner(&state), "default/alpha");
}
