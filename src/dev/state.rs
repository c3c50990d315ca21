//! What `flint dev` runs, decided without I/O: which revisions exist for the
//! manifests on disk, which of them are ready, how traffic is split, and which
//! old revisions go. It uses the operator's own revision identity (spec hash),
//! traffic resolution and revision plan (`flint_api::revision_plan`: which
//! revision is cut and numbered, which are kept and which deleted), so a
//! manifest behaves the same here as on a cluster.
//!
//! This module changes the state; what the gateway and the status page read
//! of it is built in `view`, and how a revision's replicas run in
//! [`LocalRun::process_spec`].

mod view;

use std::collections::BTreeMap;
use std::time::Duration;

use flint_api::backend::RevisionKey;
use flint_api::revision_plan::{PlanSpec, plan_revisions};
use flint_api::{FunctionSpec, ScaleSpec, TrafficStatus};
use flint_operator::reconcile::desired::plan_input;
use flint_operator::reconcile::hash::spec_hash;
use flint_operator::reconcile::traffic::resolve;
use flint_operator::reconcile::{ExistingRevision, RevisionHealth};
use flint_runtime::local::ProcessSpec;

use super::loader::Loaded;

pub use view::FunctionSummary;

/// Something to do to the backend and autoscaler.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start managing a new revision at `initial` replicas.
    Add {
        /// The revision.
        key: RevisionKey,
        /// How to run its replicas.
        process: Box<ProcessSpec>,
        /// Its autoscaling knobs.
        scale: ScaleSpec,
        /// Replicas to start with.
        initial: u32,
        /// How long a leaving replica may finish in-flight requests.
        drain: Duration,
    },
    /// The Function's scaling knobs changed (no new revision).
    Rescale {
        /// The revision.
        key: RevisionKey,
        /// The new knobs.
        scale: ScaleSpec,
    },
    /// Drain and forget a revision.
    Remove {
        /// The revision.
        key: RevisionKey,
    },
}

#[derive(Debug, Clone)]
struct Revision {
    existing: ExistingRevision,
    /// What the gateway reads of the revision's spec; the whole spec is
    /// kept once per Function, not once per revision.
    serving: Serving,
}

/// The part of a revision's spec its route carries.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Serving {
    concurrency: u32,
    timeout_seconds: u32,
    protocol: flint_api::Protocol,
}

impl Serving {
    fn of(spec: &FunctionSpec) -> Self {
        Self {
            concurrency: spec.concurrency,
            timeout_seconds: spec.timeout_seconds,
            protocol: spec.protocol,
        }
    }
}

#[derive(Debug, Clone)]
struct FunctionState {
    /// Boxed: the spec is large inline, and the map's nodes hold eleven
    /// states each, mostly partly filled.
    spec: Box<FunctionSpec>,
    /// The notes on fields not applied locally, last printed.
    local_notes: Vec<String>,
    revisions: Vec<Revision>,
    traffic: Vec<TrafficStatus>,
    traffic_error: Option<String>,
    /// When `flint dev` first loaded it (RFC 3339 with nanoseconds, always
    /// nine digits, so the text orders as the time): who owns a domain two
    /// Functions claim, as a cluster's creation time decides. Functions
    /// loaded by the same scan share it (a tie goes to the smaller name).
    created: String,
}

/// Every function `flint dev` serves, with its revisions and traffic.
#[derive(Debug, Default)]
pub struct DevState {
    functions: BTreeMap<(String, String), FunctionState>,
}

impl DevState {
    /// Brings the state in line with the manifests just loaded; returns what
    /// to do and lines to print.
    pub fn apply(&mut self, loaded: &[Loaded]) -> (Vec<Action>, Vec<String>) {
        let mut actions = Vec::new();
        let mut notes = Vec::new();
        // A set: with 10,000 Functions a list's lookups add up to seconds.
        let mut present = std::collections::BTreeSet::new();
        // Finer than a cluster's seconds: a Function added in the same
        // second as another, by a later scan, was still loaded after it.
        let now = k8s_openapi::jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%S%.9fZ")
            .to_string();
        for l in loaded {
            let ns = l
                .function
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into());
            let name = l.function.metadata.name.clone().unwrap_or_default();
            let spec = &l.function.spec;
            present.insert((ns.clone(), name.clone()));
            // The local environment and directory are part of a revision
            // here: editing a `.env` file or a Secret manifest rolls one.
            let hash = format!("{}-{}", spec_hash(spec), l.local.identity());
            let state = self
                .functions
                .entry((ns.clone(), name.clone()))
                .or_insert_with(|| FunctionState {
                    spec: Box::new(spec.clone()),
                    local_notes: Vec::new(),
                    revisions: Vec::new(),
                    traffic: Vec::new(),
                    traffic_error: None,
                    created: now.clone(),
                });
            if state.spec.scale != spec.scale {
                for r in &state.revisions {
                    actions.push(Action::Rescale {
                        key: key(&ns, &r.existing.name),
                        scale: spec.scale.clone(),
                    });
                }
            }
            if *state.spec != *spec {
                *state.spec = spec.clone();
            }
            if state.local_notes != l.local.notes {
                notes.extend(l.local.notes.iter().cloned());
                state.local_notes = l.local.notes.clone();
            }
            let existing: Vec<ExistingRevision> =
                state.revisions.iter().map(|r| r.existing.clone()).collect();
            let plan = plan_revisions(
                plan_spec(&name, &hash, spec),
                &plan_input(&existing),
                &state.traffic,
                |ready| resolve(&spec.traffic, &existing, ready),
            );
            let latest = match plan {
                Ok(plan) => plan.latest,
                Err(e) => {
                    notes.push(format!("no revision cut for {ns}/{name}: {e}"));
                    continue;
                }
            };
            if latest.created {
                let number = latest.number;
                let rev_name = latest.name;
                let first = state.revisions.is_empty();
                let mut existing =
                    ExistingRevision::new(rev_name.clone(), number, latest.spec_hash);
                // The first revision has nothing to protect: it is ready at
                // zero. Later ones must start a replica before taking traffic.
                existing.health = if first {
                    RevisionHealth::Ready
                } else {
                    RevisionHealth::Deploying
                };
                let initial = if first {
                    spec.scale.initial
                } else {
                    spec.scale.initial.max(1)
                };
                let process = Box::new(l.local.process_spec(spec, &rev_name));
                actions.push(Action::Add {
                    key: key(&ns, &rev_name),
                    process,
                    scale: spec.scale.clone(),
                    initial,
                    drain: Duration::from_secs(u64::from(spec.timeout_seconds)),
                });
                notes.push(format!(
                    "revision {ns}/{rev_name} created{}",
                    if first {
                        String::new()
                    } else {
                        " (spec changed); it takes traffic once a replica is ready".into()
                    }
                ));
                state.revisions.push(Revision {
                    existing,
                    serving: Serving::of(spec),
                });
            }
        }
        let gone: Vec<(String, String)> = self
            .functions
            .keys()
            .filter(|k| !present.contains(k))
            .cloned()
            .collect();
        for (ns, name) in gone {
            if let Some(state) = self.functions.remove(&(ns.clone(), name.clone())) {
                for r in state.revisions {
                    actions.push(Action::Remove {
                        key: key(&ns, &r.existing.name),
                    });
                }
                notes.push(format!(
                    "function {ns}/{name} removed (its manifest is gone)"
                ));
            }
        }
        self.settle(None, &mut actions, &mut notes);
        (actions, notes)
    }

    /// A replica of `revision` became ready: the revision has proven itself.
    pub fn revision_ready(&mut self, revision: &RevisionKey) -> (Vec<Action>, Vec<String>) {
        self.set_health(revision, RevisionHealth::Ready)
    }

    /// Replicas of `revision` keep failing to start.
    pub fn revision_failed(
        &mut self,
        revision: &RevisionKey,
        message: &str,
    ) -> (Vec<Action>, Vec<String>) {
        let health = RevisionHealth::Failed {
            reason: "RevisionFailed".into(),
            message: message.to_owned(),
        };
        self.set_health(revision, health)
    }

    fn set_health(
        &mut self,
        revision: &RevisionKey,
        health: RevisionHealth,
    ) -> (Vec<Action>, Vec<String>) {
        let mut actions = Vec::new();
        let mut notes = Vec::new();
        let function = (revision.namespace.clone(), revision.function.clone());
        let Some(state) = self.functions.get_mut(&function) else {
            return (actions, notes);
        };
        if let Some(r) = state
            .revisions
            .iter_mut()
            .find(|r| r.existing.name == revision.revision)
            && r.existing.health != health
        {
            r.existing.health = health;
            // Only this Function's traffic and history can change.
            self.settle(Some(&function), &mut actions, &mut notes);
        }
        (actions, notes)
    }

    /// Re-resolves traffic and collects old revisions past the history
    /// limit, of every Function or of `only`.
    fn settle(
        &mut self,
        only: Option<&(String, String)>,
        actions: &mut Vec<Action>,
        notes: &mut Vec<String>,
    ) {
        // One Function's entry, or all of them: the same iterator type.
        let functions = match only {
            Some(function) => self
                .functions
                .range_mut(function.clone()..=function.clone()),
            None => self.functions.range_mut::<(String, String), _>(..),
        };
        for ((ns, name), state) in functions {
            let existing: Vec<ExistingRevision> =
                state.revisions.iter().map(|r| r.existing.clone()).collect();
            // Settling cuts nothing: the spec is the latest revision's.
            let latest_hash = existing.last().map_or("", |r| r.spec_hash.as_str());
            let plan = plan_revisions(
                plan_spec(name, latest_hash, &state.spec),
                &plan_input(&existing),
                &state.traffic,
                |ready| resolve(&state.spec.traffic, &existing, ready),
            );
            let Ok(plan) = plan else {
                continue;
            };
            match plan.resolved {
                Ok(traffic) => {
                    if traffic != state.traffic {
                        notes.push(format!("traffic {ns}/{name}: {}", view::describe(&traffic)));
                        state.traffic = traffic;
                    }
                    state.traffic_error = None;
                }
                Err(e) => {
                    let message = e.to_string();
                    if state.traffic_error.as_deref() != Some(message.as_str()) {
                        notes.push(format!(
                            "traffic {ns}/{name}: {message}; keeping the previous split"
                        ));
                        state.traffic_error = Some(message);
                    }
                }
            }
            // History: the plan's deletions come newest first; report them
            // oldest first.
            let limit = state.spec.revision_history_limit;
            for old in plan.delete.iter().rev() {
                state.revisions.retain(|r| r.existing.name != *old);
                actions.push(Action::Remove { key: key(ns, old) });
                notes.push(format!(
                    "revision {ns}/{old} deleted (beyond revisionHistoryLimit {limit})"
                ));
            }
        }
    }
}

/// What the shared revision plan reads of a local function's spec; `hash` is
/// the revision identity `flint dev` uses (the spec hash and the local
/// environment's).
fn plan_spec<'a>(function: &'a str, hash: &'a str, spec: &'a FunctionSpec) -> PlanSpec<'a> {
    PlanSpec {
        function,
        spec_hash: hash,
        traffic: &spec.traffic,
        history_limit: spec.revision_history_limit,
    }
}

fn key(ns: &str, revision: &str) -> RevisionKey {
    let function = revision.rsplit_once('-').map_or(revision, |(f, _)| f);
    RevisionKey::new(ns, function, revision)
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
