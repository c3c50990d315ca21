//! The revision lifecycle of one Function, decided without I/O and without
//! Kubernetes: whether the current spec cuts a new revision and its number,
//! which revision `latestRevision: true` stands for, the traffic in force, and
//! which old revisions to delete. The operator (`desired_objects`) and
//! `flint dev` both call [`plan_revisions`], so the two cannot drift apart;
//! the objects a revision becomes (Deployment, Service, local process) are
//! each caller's own.

use std::collections::BTreeSet;

use crate::names::{MAX_REVISION_NUMBER, revision_name};
use crate::{TrafficStatus, TrafficTarget};

/// Why no plan can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The spec needs a new revision and every number up to
    /// [`MAX_REVISION_NUMBER`] is used.
    #[error(
        "function {0:?} has used every revision number up to 99999; recreate it to start again"
    )]
    RevisionNumbersExhausted(String),
}

/// What the plan reads from the spec: the Function's name, the identity of
/// its current pod-shaping spec, its traffic targets and history limit.
#[derive(Debug, Clone, Copy)]
pub struct PlanSpec<'a> {
    /// The Function's name, which revision names start with.
    pub function: &'a str,
    /// The identity (hash) of the current spec; a revision is cut when it
    /// differs from the newest revision's.
    pub spec_hash: &'a str,
    /// `spec.traffic` as written.
    pub traffic: &'a [TrafficTarget],
    /// `spec.revisionHistoryLimit`: idle revisions kept, newest first.
    pub history_limit: u32,
}

/// What the plan needs to know of a revision that exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRevision {
    /// Its name, e.g. `hello-00002`.
    pub name: String,
    /// Its number (2 for `hello-00002`).
    pub number: u32,
    /// The identity of the spec it was cut from.
    pub spec_hash: String,
    /// Whether it can take traffic.
    pub ready: bool,
}

/// The revision the current spec maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestRevision {
    /// Its name, e.g. `hello-00003`.
    pub name: String,
    /// Its number.
    pub number: u32,
    /// The identity of the current spec.
    pub spec_hash: String,
    /// Whether it does not exist yet and must be created.
    pub created: bool,
}

/// The revision lifecycle decided for one Function. `E` is the traffic
/// resolver's error (the caller resolves `spec.traffic`, see
/// [`plan_revisions`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionPlan<E> {
    /// The revision of the current spec.
    pub latest: LatestRevision,
    /// The revision `latestRevision: true` stands for: the latest created one
    /// if it is ready, otherwise the newest ready one.
    pub latest_ready: Option<String>,
    /// `spec.traffic` resolved, or why it could not be.
    pub resolved: Result<Vec<TrafficStatus>, E>,
    /// The traffic in force: `resolved` when it succeeded, else the previous
    /// traffic, so a bad change never takes working traffic away.
    pub traffic: Vec<TrafficStatus>,
    /// Revisions to delete, newest first: not the latest created, not the
    /// latest ready, not routed by `traffic` nor named in `spec.traffic`
    /// (by name, tagged or not), and beyond the history limit.
    pub delete: Vec<String>,
}

/// Plans the revisions of one Function from its spec, the revisions that
/// exist and the traffic previously in force. A new revision is cut, numbered
/// one past the newest, when the spec's identity differs from the newest
/// revision's (a return to an older spec is a new revision too).
///
/// `resolve` turns `spec.traffic` into concrete traffic given the latest ready
/// revision; it is passed in so the resolution rules stay in one place, with
/// their own error type.
pub fn plan_revisions<E>(
    spec: PlanSpec<'_>,
    existing: &[PlanRevision],
    previous_traffic: &[TrafficStatus],
    resolve: impl FnOnce(Option<&str>) -> Result<Vec<TrafficStatus>, E>,
) -> Result<RevisionPlan<E>, PlanError> {
    let latest = latest_revision(spec, existing)?;
    let latest_ready = latest_ready(&latest.name, existing);
    let resolved = resolve(latest_ready.as_deref());
    let traffic = match &resolved {
        Ok(t) => t.clone(),
        Err(_) => previous_traffic.to_vec(),
    };

    let mut keep: BTreeSet<&str> = BTreeSet::from([latest.name.as_str()]);
    keep.extend(latest_ready.as_deref());
    keep.extend(traffic.iter().map(|t| t.revision_name.as_str()));
    keep.extend(spec.traffic.iter().filter_map(|t| t.revision.as_deref()));
    let mut idle: Vec<&PlanRevision> = existing
        .iter()
        .filter(|r| !keep.contains(r.name.as_str()))
        .collect();
    idle.sort_by_key(|r| std::cmp::Reverse(r.number));
    let limit = usize::try_from(spec.history_limit).unwrap_or(usize::MAX);
    let delete = idle.iter().skip(limit).map(|r| r.name.clone()).collect();

    Ok(RevisionPlan {
        latest,
        latest_ready,
        resolved,
        traffic,
        delete,
    })
}

/// The newest revision when its identity matches the spec's, else a new one
/// numbered one past it.
fn latest_revision(
    spec: PlanSpec<'_>,
    existing: &[PlanRevision],
) -> Result<LatestRevision, PlanError> {
    let newest = existing.iter().max_by_key(|r| r.number);
    if let Some(r) = newest.filter(|r| r.spec_hash == spec.spec_hash) {
        return Ok(LatestRevision {
            name: r.name.clone(),
            number: r.number,
            spec_hash: r.spec_hash.clone(),
            created: false,
        });
    }
    let number = newest.map_or(1, |r| r.number.saturating_add(1));
    if number > MAX_REVISION_NUMBER {
        return Err(PlanError::RevisionNumbersExhausted(
            spec.function.to_owned(),
        ));
    }
    Ok(LatestRevision {
        name: revision_name(spec.function, number),
        number,
        spec_hash: spec.spec_hash.to_owned(),
        created: true,
    })
}

/// The latest created revision if it is ready, otherwise the newest ready one.
fn latest_ready(latest_created: &str, existing: &[PlanRevision]) -> Option<String> {
    existing
        .iter()
        .find(|r| r.name == latest_created && r.ready)
        .or_else(|| existing.iter().filter(|r| r.ready).max_by_key(|r| r.number))
        .map(|r| r.name.clone())
}

#[cfg(test)]
#[path = "revision_plan_tests.rs"]
mod tests;
