//! Keeps each Function's `status.keepAlive` in line with the autoscaler:
//! why every revision's last replica is kept, pre-warmed or released, and
//! what its keep-alive policy has learned (read back by the next leader,
//! see [`super::AutoscalerHandle::upsert_restoring`]).
//!
//! Written with server-side apply under its own field manager, so the
//! reconciler's status writes and these never clear each other. A Function
//! is written only when what the API server holds differs from what the
//! autoscaler would write (a new leader whose predecessor persisted the
//! same thing writes nothing), only once all its revisions were taken over,
//! and at most [`MAX_WRITES_PER_ROUND`] Functions per round, so a leader
//! taking over thousands of Functions does not flood the API server.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use flint_api::{Function, KeepAliveStatus};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::Store;

use super::AutoscalerHandle;
use super::source::FunctionKey;
use flint_api::backend::RevisionKey;

/// Field manager of the autoscaler's status writes.
pub const FIELD_MANAGER: &str = "flint-autoscaler";
/// How often the statuses are compared and written.
pub const WRITE_INTERVAL: Duration = Duration::from_secs(5);
/// Most Functions written per round.
pub const MAX_WRITES_PER_ROUND: usize = 50;

/// One Function's new `status.keepAlive`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The Function.
    pub function: FunctionKey,
    /// Its entries, by revision name.
    pub entries: Vec<KeepAliveStatus>,
}

/// The Functions whose `status.keepAlive` differs from `reports`, the
/// autoscaler's view of every revision it took over; `ready` says whether
/// all of a Function's revisions were taken over (until then its persisted
/// entries are still needed and are left alone). Pure.
pub fn status_updates<'a>(
    functions: impl IntoIterator<Item = &'a Function>,
    reports: Vec<(RevisionKey, KeepAliveStatus)>,
    ready: impl Fn(&FunctionKey) -> bool,
) -> Vec<StatusUpdate> {
    let mut wanted: BTreeMap<FunctionKey, Vec<KeepAliveStatus>> = BTreeMap::new();
    for (key, status) in reports {
        wanted
            .entry(FunctionKey::new(&key.namespace, &key.function))
            .or_default()
            .push(status);
    }
    let mut out = Vec::new();
    for f in functions {
        let (Some(ns), Some(name)) = (f.metadata.namespace.as_deref(), f.metadata.name.as_deref())
        else {
            continue;
        };
        let key = FunctionKey::new(ns, name);
        let mut entries = wanted.remove(&key).unwrap_or_default();
        entries.sort_by(|a, b| a.revision.cmp(&b.revision));
        let mut current = f
            .status
            .as_ref()
            .map(|s| s.keep_alive.clone())
            .unwrap_or_default();
        current.sort_by(|a, b| a.revision.cmp(&b.revision));
        if entries != current && ready(&key) {
            out.push(StatusUpdate {
                function: key,
                entries,
            });
        }
    }
    out
}

/// The server-side apply body of `update`.
pub fn patch_body(update: &StatusUpdate) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": flint_api::names::API_VERSION,
        "kind": flint_api::names::KIND,
        "status": { "keepAlive": update.entries },
    })
}

/// Writes the updates of one round; failures are logged and retried next
/// round (the difference remains).
pub async fn write_round(
    client: &kube::Client,
    store: &Store<Function>,
    handle: &AutoscalerHandle,
) {
    let functions = store.state();
    let report = handle.keep_alive(SystemTime::now());
    let taking_over = report.taking_over;
    let updates = status_updates(functions.iter().map(|f| f.as_ref()), report.entries, |k| {
        !taking_over.contains(k)
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for update in updates.iter().take(MAX_WRITES_PER_ROUND) {
        let api: Api<Function> = Api::namespaced(client.clone(), &update.function.namespace);
        let written = api
            .patch_status(
                &update.function.function,
                &params,
                &Patch::Apply(patch_body(update)),
            )
            .await;
        if let Err(error) = written {
            tracing::warn!(namespace = %update.function.namespace, function = %update.function.function, %error, "writing status.keepAlive failed; retrying");
        }
    }
}

/// Writes every [`WRITE_INTERVAL`], forever (run it under the leader's halt).
pub async fn run(client: kube::Client, store: Store<Function>, handle: AutoscalerHandle) {
    let mut tick = tokio::time::interval(WRITE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        write_round(&client, &store, &handle).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flint_api::{FunctionSpec, FunctionStatus, KeepAlive};

    fn function(name: &str, keep_alive: Vec<KeepAliveStatus>) -> Function {
        let spec: FunctionSpec = serde_json::from_value(serde_json::json!({"image": "x"})).unwrap();
        let mut f = Function::new(name, spec);
        f.metadata.namespace = Some("ns".into());
        f.status = Some(FunctionStatus {
            keep_alive,
            ..FunctionStatus::default()
        });
        f
    }

    fn entry(revision: &str, message: &str) -> KeepAliveStatus {
        KeepAliveStatus {
            revision: revision.into(),
            policy: KeepAlive::Learned,
            message: message.into(),
            learned: Some("AQA=".into()),
        }
    }

    fn report(function: &str, e: KeepAliveStatus) -> (RevisionKey, KeepAliveStatus) {
        (RevisionKey::new("ns", function, &e.revision), e)
    }

    #[test]
    fn writes_only_what_differs_and_only_once_taken_over() {
        let same = function("same", vec![entry("same-1", "a"), entry("same-2", "b")]);
        let changed = function("changed", vec![entry("changed-1", "old")]);
        let waiting = function("waiting", vec![entry("waiting-1", "persisted")]);
        let reports = vec![
            // Reported in another order than stored: still the same.
            report("same", entry("same-2", "b")),
            report("same", entry("same-1", "a")),
            report("changed", entry("changed-1", "new")),
            report("waiting", entry("waiting-1", "fresh")),
            // A Function that is gone: nothing to write.
            report("gone", entry("gone-1", "x")),
        ];
        let updates = status_updates([&same, &changed, &waiting], reports, |k| {
            k.function != "waiting"
        });
        assert_eq!(
            updates,
            vec![StatusUpdate {
                function: FunctionKey::new("ns", "changed"),
                entries: vec![entry("changed-1", "new")],
            }]
        );
    }

    #[test]
    fn entries_of_revisions_no_longer_scaled_are_dropped() {
        let f = function("f", vec![entry("f-1", "a"), entry("f-2", "b")]);
        let updates = status_updates([&f], vec![report("f", entry("f-2", "b"))], |_| true);
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].entries, vec![entry("f-2", "b")]);
        let body = patch_body(&updates[0]);
        assert_eq!(
            body,
            serde_json::json!({
                "apiVersion": "flint.dev/v1alpha1",
                "kind": "Function",
                "status": {"keepAlive": [
                    {"revision": "f-2", "policy": "learned", "message": "b", "learned": "AQA="}
                ]},
            })
        );
    }
}
