//! What the autoscaler reads from the Function resources: which revisions
//! to scale and with which knobs ([`revisions_to_scale`]), how each
//! Function's async backlog reaches its revisions ([`backlog_route`]), and
//! what a previous leader persisted for a revision ([`persisted_learned`]);
//! and the watch that hands them to the running autoscaler. The readers are
//! pure functions of the Functions, tested as tables; the watch is the only
//! I/O. Apart from the assembly because this is the autoscaler's whole view
//! of the CRD, the one place to change when the CRD does.

use std::collections::HashMap;

use flint_api::backend::RevisionKey;
use flint_api::{Function, ScaleSpec};
use futures::StreamExt;
use kube::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};

use super::super::AutoscalerHandle;
use super::super::backlog::BacklogRoute;
use super::super::source::FunctionKey;
use super::store_settled;

/// The revisions to scale: each revision a Function's status lists (and its
/// latest created one), each with its own scaling knobs. The latest created
/// revision follows the spec: it takes the Function's current `spec.scale`,
/// so an edit applies at once, before the status catches up. Every other
/// revision keeps the `scale` its `status.revisions[].scale` reports (the one
/// it last followed as the latest, else the one it was created with), or the
/// current `spec.scale` when none is recorded (a revision created before
/// they were). `scale.min` holds only revisions that take traffic: those
/// with a share above zero in the status, and the latest created one while
/// the spec's traffic follows the latest revision (so a rollout's new
/// revision comes up to `min` and takes over). Every other revision (an old
/// one, or one only a tag at 0 % names) may scale to zero: `min` is a promise
/// about serving, not a price paid per revision kept in history.
pub fn revisions_to_scale<'a>(
    functions: impl IntoIterator<Item = &'a Function>,
) -> HashMap<RevisionKey, ScaleSpec> {
    let mut out = HashMap::new();
    for f in functions {
        let (Some(ns), Some(name)) = (f.metadata.namespace.as_deref(), f.metadata.name.as_deref())
        else {
            continue;
        };
        let Some(status) = &f.status else { continue };
        let follows_latest = f.spec.traffic.is_empty()
            || f.spec
                .traffic
                .iter()
                .any(|t| t.latest_revision == Some(true) && t.percent > 0);
        let serving = |rev: &str| {
            status
                .traffic
                .iter()
                .any(|t| t.revision_name == rev && t.percent > 0)
                || (follows_latest && status.latest_created_revision.as_deref() == Some(rev))
        };
        let latest = status.latest_created_revision.as_deref();
        let recorded = |rev: &str| {
            status
                .revisions
                .iter()
                .find(|r| r.name == rev)
                .and_then(|r| r.scale.as_ref())
        };
        let names = status
            .revisions
            .iter()
            .map(|r| r.name.as_str())
            .chain(latest);
        for rev in names {
            let mut spec = match recorded(rev) {
                Some(own) if latest != Some(rev) => own.clone(),
                _ => f.spec.scale.clone(),
            };
            if !serving(rev) {
                spec.min = 0;
            }
            out.insert(RevisionKey::new(ns, name, rev), spec);
        }
    }
    out
}

/// How a Function's asynchronous backlog reaches its revisions on a cluster: `spec.async.maxInFlight` and
/// `status.traffic`. While no traffic is resolved yet (no revision was
/// ever ready) the whole backlog goes to the latest ready revision, or
/// else the latest created one: that is the revision the split will
/// route to once it is ready, and waking it is what resolves the split.
/// `None` for a Function without namespace, name or status.
pub fn backlog_route(f: &Function) -> Option<(FunctionKey, BacklogRoute)> {
    let namespace = f.metadata.namespace.clone()?;
    let function = f.metadata.name.clone()?;
    let status = f.status.as_ref()?;
    let max_in_flight = f.spec.async_.max_in_flight;
    let newest = status
        .latest_ready_revision
        .as_ref()
        .or(status.latest_created_revision.as_ref());
    let route = BacklogRoute::from_traffic(max_in_flight, &status.traffic).or_all_to(newest);
    Some((
        FunctionKey {
            namespace,
            function,
        },
        route,
    ))
}

/// What a previous leader persisted for `key` (its Function's
/// `status.keepAlive[].learned`).
pub fn persisted_learned<'a>(
    functions: impl IntoIterator<Item = &'a Function>,
    key: &RevisionKey,
) -> Option<String> {
    functions
        .into_iter()
        .find(|f| {
            f.metadata.namespace.as_deref() == Some(key.namespace.as_str())
                && f.metadata.name.as_deref() == Some(key.function.as_str())
        })?
        .status
        .as_ref()?
        .keep_alive
        .iter()
        .find(|e| e.revision == key.revision)?
        .learned
        .clone()
}

pub(super) async fn follow_functions(
    api: Api<Function>,
    writer: reflector::store::Writer<Function>,
    handle: AutoscalerHandle,
) {
    let reader = writer.as_reader();
    let mut events = reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .boxed();
    let mut tracked: HashMap<RevisionKey, ScaleSpec> = HashMap::new();
    let mut routes: HashMap<FunctionKey, BacklogRoute> = HashMap::new();
    while let Some(event) = events.next().await {
        if !store_settled(event, "Functions") {
            continue;
        }
        let state = reader.state();
        let wanted = revisions_to_scale(state.iter().map(|f| f.as_ref()));
        for key in tracked.keys().filter(|k| !wanted.contains_key(*k)) {
            handle.remove(key);
        }
        for (key, spec) in &wanted {
            if tracked.get(key) != Some(spec) {
                let learned = if tracked.contains_key(key) {
                    None
                } else {
                    persisted_learned(state.iter().map(|f| f.as_ref()), key)
                };
                handle.upsert_restoring(key.clone(), spec.clone(), learned.as_deref());
            }
        }
        tracked = wanted;
        let now: HashMap<FunctionKey, BacklogRoute> =
            state.iter().filter_map(|f| backlog_route(f)).collect();
        if now != routes {
            handle.set_backlog_routes(now.clone());
            routes = now;
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use flint_api::{FunctionSpec, FunctionStatus};

    fn function(ns: &str, name: &str, revisions: &[&str], latest: Option<&str>) -> Function {
        let spec: FunctionSpec =
            serde_json::from_value(serde_json::json!({"image": "x", "scale": {"max": 7}})).unwrap();
        let mut f = Function::new(name, spec);
        f.metadata.namespace = Some(ns.into());
        f.status = Some(FunctionStatus {
            revisions: revisions
                .iter()
                .map(|r| {
                    serde_json::from_value(
                        serde_json::json!({"name": r, "ready": true, "replicas": 0}),
                    )
                    .unwrap()
                })
                .collect(),
            latest_created_revision: latest.map(Into::into),
            ..FunctionStatus::default()
        });
        f
    }

    #[test]
    fn every_listed_revision_is_scaled_with_the_functions_knobs() {
        let a = function("default", "a", &["a-00001", "a-00002"], Some("a-00003"));
        let b = function("team", "b", &[], None);
        let mut no_status = function("default", "c", &[], None);
        no_status.status = None;
        let wanted = revisions_to_scale([&a, &b, &no_status]);
        let mut keys: Vec<String> = wanted
            .keys()
            .map(|k| format!("{}/{}/{}", k.namespace, k.function, k.revision))
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "default/a/a-00001",
                "default/a/a-00002",
                "default/a/a-00003"
            ]
        );
        assert!(wanted.values().all(|s| s.max == 7));
    }

    #[test]
    fn min_holds_only_the_revisions_that_take_traffic() {
        let traffic = |rev: &str, percent: u32, tag: Option<&str>| {
            serde_json::from_value::<flint_api::TrafficStatus>(serde_json::json!({
                "revisionName": rev, "percent": percent, "tag": tag
            }))
            .unwrap()
        };
        let with_min = |mut f: Function, spec_traffic: serde_json::Value, status_traffic| {
            f.spec.scale.min = 1;
            f.spec.traffic = serde_json::from_value(spec_traffic).unwrap();
            f.status.as_mut().unwrap().traffic = status_traffic;
            f
        };
        let mins = |f: &Function| {
            let mut v: Vec<(String, u32)> = revisions_to_scale([f])
                .into_iter()
                .map(|(k, s)| (k.revision, s.min))
                .collect();
            v.sort();
            v
        };
        let revs = &["a-00001", "a-00002", "a-00003"];
        // Following the latest: old revisions at zero, the latest at min.
        let latest = with_min(
            function("default", "a", revs, Some("a-00003")),
            serde_json::json!([]),
            vec![traffic("a-00003", 100, None)],
        );
        assert_eq!(
            mins(&latest),
            [
                ("a-00001".into(), 0),
                ("a-00002".into(), 0),
                ("a-00003".into(), 1)
            ]
        );
        // A rollout: the new revision is not ready yet, the old one serves.
        let rollout = with_min(
            function("default", "a", &["a-00001", "a-00002"], Some("a-00003")),
            serde_json::json!([]),
            vec![traffic("a-00002", 100, None)],
        );
        assert_eq!(
            mins(&rollout),
            [
                ("a-00001".into(), 0),
                ("a-00002".into(), 1),
                ("a-00003".into(), 1)
            ]
        );
        // A split between two pinned revisions and a tag at 0 %: the tagged
        // one and the latest (not followed) keep min 0.
        let split = with_min(
            function("default", "a", revs, Some("a-00003")),
            serde_json::json!([
                {"revision": "a-00001", "percent": 90},
                {"revision": "a-00002", "percent": 10},
                {"revision": "a-00003", "percent": 0, "tag": "next"}
            ]),
            vec![
                traffic("a-00001", 90, None),
                traffic("a-00002", 10, None),
                traffic("a-00003", 0, Some("next")),
            ],
        );
        assert_eq!(
            mins(&split),
            [
                ("a-00001".into(), 1),
                ("a-00002".into(), 1),
                ("a-00003".into(), 0)
            ]
        );
    }

    #[test]
    fn the_latest_revision_follows_the_spec_and_older_ones_keep_their_scale() {
        use flint_api::KeepAlive;
        // The spec now asks for min 2, max 20, fixed keep-alive. a-00001
        // recorded its own scale; a-00002 was created before scale was
        // recorded; the status still reports a-00003 (the latest) with
        // settings from before the last edit.
        let recorded = |min: u32, max: u32, keep_alive: KeepAlive| ScaleSpec {
            min,
            max,
            initial: min,
            keep_alive,
            ..ScaleSpec::default()
        };
        let statuses = [
            ("a-00001", Some(recorded(1, 5, KeepAlive::Learned))),
            ("a-00002", None),
            ("a-00003", Some(recorded(1, 3, KeepAlive::Adaptive))),
        ];
        let traffic = |rev: &str, percent: u32| {
            serde_json::from_value::<flint_api::TrafficStatus>(serde_json::json!({
                "revisionName": rev, "percent": percent
            }))
            .unwrap()
        };
        let build = |latest: &str, spec_traffic: serde_json::Value, status_traffic| {
            let mut f = function("default", "a", &[], Some(latest));
            f.spec.scale = recorded(2, 20, KeepAlive::Fixed);
            f.spec.traffic = serde_json::from_value(spec_traffic).unwrap();
            let status = f.status.as_mut().unwrap();
            status.traffic = status_traffic;
            status.revisions = statuses
                .iter()
                .map(|(name, scale)| flint_api::RevisionStatus {
                    scale: scale.clone(),
                    ..serde_json::from_value(serde_json::json!({"name": name, "ready": true}))
                        .unwrap()
                })
                .collect();
            f
        };
        type Want = (&'static str, u32, u32, KeepAlive);
        let table: [(&str, Function, Vec<Want>); 4] = [
            (
                "following the latest: it takes the spec, older ones keep theirs at min 0",
                build(
                    "a-00003",
                    serde_json::json!([]),
                    vec![traffic("a-00003", 100)],
                ),
                vec![
                    ("a-00001", 0, 5, KeepAlive::Learned),
                    ("a-00002", 0, 20, KeepAlive::Fixed),
                    ("a-00003", 2, 20, KeepAlive::Fixed),
                ],
            ),
            (
                "a pinned revision keeps its own scale, min included",
                build(
                    "a-00003",
                    serde_json::json!([
                        {"revision": "a-00001", "percent": 60},
                        {"latestRevision": true, "percent": 40}
                    ]),
                    vec![traffic("a-00001", 60), traffic("a-00003", 40)],
                ),
                vec![
                    ("a-00001", 1, 5, KeepAlive::Learned),
                    ("a-00002", 0, 20, KeepAlive::Fixed),
                    ("a-00003", 2, 20, KeepAlive::Fixed),
                ],
            ),
            (
                "a pinned revision with nothing recorded takes the spec; the latest unrouted goes to min 0",
                build(
                    "a-00003",
                    serde_json::json!([{"revision": "a-00002", "percent": 100}]),
                    vec![traffic("a-00002", 100)],
                ),
                vec![
                    ("a-00001", 0, 5, KeepAlive::Learned),
                    ("a-00002", 2, 20, KeepAlive::Fixed),
                    ("a-00003", 0, 20, KeepAlive::Fixed),
                ],
            ),
            (
                "a rollout: the new latest follows the spec, the serving one keeps what it last followed",
                build(
                    "a-00004",
                    serde_json::json!([]),
                    vec![traffic("a-00003", 100)],
                ),
                vec![
                    ("a-00001", 0, 5, KeepAlive::Learned),
                    ("a-00002", 0, 20, KeepAlive::Fixed),
                    ("a-00003", 1, 3, KeepAlive::Adaptive),
                    ("a-00004", 2, 20, KeepAlive::Fixed),
                ],
            ),
        ];
        for (case, f, want) in table {
            let mut got: Vec<Want> = revisions_to_scale([&f])
                .into_iter()
                .map(|(k, s)| {
                    let rev = ["a-00001", "a-00002", "a-00003", "a-00004"]
                        .into_iter()
                        .find(|r| *r == k.revision)
                        .unwrap();
                    (rev, s.min, s.max, s.keep_alive)
                })
                .collect();
            got.sort_by_key(|w| w.0);
            assert_eq!(got, want, "{case}");
        }
    }

    fn routed_function(
        traffic: &[(&str, u32)],
        ready: Option<&str>,
        created: Option<&str>,
    ) -> Function {
        let spec: flint_api::FunctionSpec = serde_json::from_value(serde_json::json!({
            "image": "x", "async": {"maxInFlight": 12}
        }))
        .unwrap();
        let mut f = Function::new("a", spec);
        f.metadata.namespace = Some("ns".into());
        f.status = Some(flint_api::FunctionStatus {
            traffic: traffic
                .iter()
                .map(|&(r, p)| flint_api::TrafficStatus {
                    revision_name: r.into(),
                    percent: p,
                    latest_revision: false,
                    tag: None,
                    url: None,
                })
                .collect(),
            latest_ready_revision: ready.map(Into::into),
            latest_created_revision: created.map(Into::into),
            ..flint_api::FunctionStatus::default()
        });
        f
    }

    #[test]
    fn a_functions_route_follows_its_resolved_traffic_or_its_latest_revision() {
        let key = FunctionKey {
            namespace: "ns".into(),
            function: "a".into(),
        };
        let split = routed_function(&[("a-2", 50), ("a-1", 50)], Some("a-2"), Some("a-3"));
        assert_eq!(
            backlog_route(&split),
            Some((
                key.clone(),
                BacklogRoute {
                    max_in_flight: 12,
                    traffic: vec![("a-2".into(), 50), ("a-1".into(), 50)],
                }
            ))
        );
        let unresolved = routed_function(&[], Some("a-2"), Some("a-3"));
        assert_eq!(
            backlog_route(&unresolved).map(|(_, r)| r.traffic),
            Some(vec![("a-2".into(), 100)])
        );
        let never_ready = routed_function(&[], None, Some("a-1"));
        assert_eq!(
            backlog_route(&never_ready).map(|(_, r)| r.traffic),
            Some(vec![("a-1".into(), 100)])
        );
        let mut no_status = routed_function(&[], None, None);
        no_status.status = None;
        assert_eq!(backlog_route(&no_status), None);
    }
}
