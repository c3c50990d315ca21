//! Deleting the revisions beyond `revisionHistoryLimit`: only objects the
//! Function owns, never whatever carries a matching name or label.
//!
//! Owning means an owner reference to the Function as controller, with the
//! Function's `uid`: a label or a name anyone may set, but an owner
//! reference with that uid only the operator writes (and an object that
//! points at the Function that way is the Function's anyway, as far as the
//! garbage collector is concerned). Each delete carries the owned object's
//! own `uid` as a precondition, so an object replaced under the same name
//! between the list and the delete is refused by the API server rather than
//! deleted.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Preconditions};
use tracing::{info, warn};

use super::error::Error;

/// Whether `meta` names the Function with `function_uid` as its controlling
/// owner.
pub fn owned_by(function_uid: &str, meta: &ObjectMeta) -> bool {
    // The uid alone identifies the Function (uids are unique for the
    // cluster's lifetime); its apiVersion may change across CRD versions.
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == function_uid && o.controller == Some(true))
}

/// What came of deleting one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// It was deleted (or went while being deleted).
    Deleted,
    /// The Function has no such object (none listed under its name and label).
    Absent,
    /// An object of that name exists but the Function does not own it: left alone.
    NotOwned,
}

/// Deletes `revisions` of the Function with uid `function_uid`:
/// each one's Deployment among `owned` (the Function's Deployments, already
/// filtered by [`owned_by`]) and its Service among `listed` (the Services
/// carrying the Function's label), if the Function owns it. Objects the
/// Function does not own are left alone and logged.
pub async fn delete_revisions(
    function_uid: &str,
    deployments: &Api<Deployment>,
    services: &Api<Service>,
    owned: &[Deployment],
    listed: &[Service],
    revisions: &[String],
) -> Result<(), Error> {
    for revision in revisions {
        let named = |meta: &ObjectMeta| meta.name.as_deref() == Some(revision.as_str());
        let outcome = match owned.iter().find(|d| named(&d.metadata)) {
            Some(d) => {
                let deleted = deployments.delete(revision, &pinned(&d.metadata)).await;
                judge(deleted, "Deployment", revision)?
            }
            None => Outcome::Absent,
        };
        log(revision, "Deployment", outcome);
        let outcome = match listed.iter().find(|s| named(&s.metadata)) {
            None => Outcome::Absent,
            Some(s) if !owned_by(function_uid, &s.metadata) => Outcome::NotOwned,
            Some(s) => {
                let deleted = services.delete(revision, &pinned(&s.metadata)).await;
                judge(deleted, "Service", revision)?
            }
        };
        log(revision, "Service", outcome);
    }
    Ok(())
}

fn log(revision: &str, kind: &'static str, outcome: Outcome) {
    match outcome {
        Outcome::Deleted => info!(revision, kind, "deleted revision object"),
        Outcome::Absent => {}
        Outcome::NotOwned => warn!(
            revision,
            kind, "not deleting an object the Function does not own"
        ),
    }
}

/// A background delete of the object read as `meta`, refused by the API
/// server unless the object of that name is still that one (its uid).
fn pinned(meta: &ObjectMeta) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: meta.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    }
}

/// What the answer to deleting `kind` `name` means.
fn judge<T>(
    deleted: Result<T, kube::Error>,
    kind: &'static str,
    name: &str,
) -> Result<Outcome, Error> {
    match deleted {
        Ok(_) => Ok(Outcome::Deleted),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Outcome::Deleted),
        // The uid precondition failed: another object took the name.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Outcome::NotOwned),
        Err(source) => Err(Error::Delete {
            kind,
            name: name.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn meta(owners: Vec<(&str, Option<bool>)>) -> ObjectMeta {
        ObjectMeta {
            owner_references: Some(
                owners
                    .into_iter()
                    .map(|(uid, controller)| OwnerReference {
                        api_version: "flint.dev/v1alpha1".into(),
                        kind: "Function".into(),
                        name: "hello".into(),
                        uid: uid.into(),
                        controller,
                        block_owner_deletion: None,
                    })
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn only_a_controlling_owner_reference_with_the_functions_uid_is_ownership() {
        assert!(owned_by("uid-1", &meta(vec![("uid-1", Some(true))])));
        assert!(owned_by(
            "uid-1",
            &meta(vec![("other", Some(true)), ("uid-1", Some(true))])
        ));
        // Another Function of the same name (recreated: a new uid).
        assert!(!owned_by("uid-1", &meta(vec![("uid-0", Some(true))])));
        // A mere owner, not the controller.
        assert!(!owned_by("uid-1", &meta(vec![("uid-1", None)])));
        assert!(!owned_by("uid-1", &meta(vec![("uid-1", Some(false))])));
        assert!(!owned_by("uid-1", &ObjectMeta::default()));
    }
}
