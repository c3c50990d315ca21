//! `desired_objects`: from a Function and the revisions that exist, everything
//! the cluster should hold — which revision is the latest (and whether it must
//! be created), its Deployment, every kept revision's Service, the resolved
//! traffic and which old revisions to delete. Pure; the apply step does I/O.

use flint_api::revision_plan::{PlanError, PlanRevision, PlanSpec, RevisionPlan, plan_revisions};
use flint_api::{Function, TrafficStatus};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;

use super::hash::spec_hash;
use super::objects::{self, Owner};
use super::revision::ExistingRevision;
use super::traffic::{self, TrafficError};

/// Why desired objects cannot be computed for a Function.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DesiredError {
    /// The Function has no `metadata.name`.
    #[error("the Function has no metadata.name")]
    MissingName,
    /// The Function has no `metadata.namespace`.
    #[error("function {0:?} has no metadata.namespace")]
    MissingNamespace(String),
    /// The Function has no `metadata.uid` (it was not read from the API server).
    #[error("function {0:?} has no metadata.uid")]
    MissingUid(String),
    /// Every revision number up to 99999 is used.
    #[error(
        "function {0:?} has used every revision number up to 99999; recreate it to start again"
    )]
    RevisionNumbersExhausted(String),
}

/// The revision the Function's current spec maps to, as the shared revision
/// plan decides it (re-exported so the reconciler's callers keep one path).
pub use flint_api::revision_plan::LatestRevision;

/// Everything the cluster should hold for one Function.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredState {
    /// The revision of the current spec.
    pub latest: LatestRevision,
    /// The Deployment to create, only when `latest.created`: existing
    /// Deployments are never re-applied (revisions are immutable, and the
    /// autoscaler owns their replica counts).
    pub deployment: Option<Deployment>,
    /// The Service of every revision that is kept, the new one included.
    pub services: Vec<Service>,
    /// The revision `latestRevision: true` stands for, if any is ready.
    pub latest_ready: Option<String>,
    /// `spec.traffic` resolved, or why it could not be.
    pub resolved: Result<Vec<TrafficStatus>, TrafficError>,
    /// The traffic in force: `resolved` when it succeeded, else the previous
    /// `status.traffic`, so a bad change never takes working traffic away.
    pub traffic: Vec<TrafficStatus>,
    /// Revisions to delete (Deployment and Service): no traffic, beyond
    /// `revisionHistoryLimit`.
    pub delete: Vec<String>,
}

impl DesiredState {
    /// Runs the new revision's function container on `image` (its tag
    /// resolved to a digest, see [`super::pin`]). The spec hash stays the
    /// spec's: the revision is the spec's, pinned once, as it is cut. Does
    /// nothing when no revision is cut.
    pub fn pin_image(&mut self, image: &str) {
        let app = self
            .deployment
            .as_mut()
            .and_then(|d| d.spec.as_mut())
            .and_then(|s| s.template.spec.as_mut())
            .and_then(|p| {
                p.containers
                    .iter_mut()
                    .find(|c| c.name == objects::CONTAINER_NAME)
            });
        if let Some(app) = app {
            app.image = Some(image.to_owned());
        }
    }

    /// The image the new revision's function container runs, if one is cut.
    pub fn new_image(&self) -> Option<&str> {
        super::revision::app_container(self.deployment.as_ref()?)?
            .image
            .as_deref()
    }

    /// The state to apply when the new revision cannot be cut (its image
    /// could not be resolved): no Deployment and no Service for it, the
    /// newest existing revision stays the latest, and nothing is deleted
    /// until the Function settles again. The revisions that exist keep
    /// serving as they do. Unchanged when no revision was to be cut.
    pub fn hold(mut self, existing: &[ExistingRevision]) -> Self {
        if !self.latest.created {
            return self;
        }
        let held = std::mem::take(&mut self.latest.name);
        self.services
            .retain(|s| s.metadata.name.as_deref() != Some(held.as_str()));
        self.deployment = None;
        self.delete.clear();
        match existing.iter().max_by_key(|r| r.number) {
            Some(newest) => {
                self.latest = LatestRevision {
                    name: newest.name.clone(),
                    number: newest.number,
                    spec_hash: newest.spec_hash.clone(),
                    created: false,
                };
            }
            None => {
                self.latest.name = held;
                self.latest.created = false;
            }
        }
        self
    }
}

/// What the shared revision plan reads of each existing revision: its name,
/// number, spec hash and whether it is ready. `flint dev` uses it too.
pub fn plan_input(existing: &[ExistingRevision]) -> Vec<PlanRevision> {
    existing
        .iter()
        .map(|r| PlanRevision {
            name: r.name.clone(),
            number: r.number,
            spec_hash: r.spec_hash.clone(),
            ready: r.is_ready(),
        })
        .collect()
}

/// Computes the desired state of `function` given the revisions that exist.
/// Which revision is cut, which is latest ready, the traffic in force and
/// what is deleted come from [`plan_revisions`] (shared with `flint dev`);
/// this adds the objects: the new revision's Deployment and every kept
/// revision's Service. A new revision is cut when the pod-shaping spec
/// differs from the latest existing revision's (a return to an older spec is
/// a new revision too, as in Knative; pin the old revision in `spec.traffic`
/// to roll back to it).
pub fn desired_objects(
    function: &Function,
    existing: &[ExistingRevision],
) -> Result<DesiredState, DesiredError> {
    let name = function
        .metadata
        .name
        .as_deref()
        .ok_or(DesiredError::MissingName)?;
    let namespace = function
        .metadata
        .namespace
        .as_deref()
        .ok_or_else(|| DesiredError::MissingNamespace(name.to_owned()))?;
    let uid = function
        .metadata
        .uid
        .as_deref()
        .ok_or_else(|| DesiredError::MissingUid(name.to_owned()))?;
    let owner = Owner {
        name,
        namespace,
        uid,
        generation: function.metadata.generation.unwrap_or(1),
    };
    let spec = &function.spec;
    let hash = spec_hash(spec);
    let plan_spec = PlanSpec {
        function: name,
        spec_hash: &hash,
        traffic: &spec.traffic,
        history_limit: spec.revision_history_limit,
    };
    let previous = function
        .status
        .as_ref()
        .map(|s| s.traffic.as_slice())
        .unwrap_or_default();
    let plan = plan_revisions(plan_spec, &plan_input(existing), previous, |ready| {
        traffic::resolve(&spec.traffic, existing, ready)
    })
    .map_err(|e| match e {
        PlanError::RevisionNumbersExhausted(_) => {
            DesiredError::RevisionNumbersExhausted(name.to_owned())
        }
    })?;
    let RevisionPlan {
        latest,
        latest_ready,
        resolved,
        traffic: routed,
        delete,
    } = plan;
    let deployment = latest
        .created
        .then(|| objects::deployment(owner, &latest.name, &latest.spec_hash, spec));

    let mut services: Vec<Service> = existing
        .iter()
        .filter(|r| !delete.contains(&r.name))
        .map(|r| {
            let cut_at = Owner {
                generation: r.generation,
                ..owner
            };
            objects::service(cut_at, &r.name)
        })
        .collect();
    if latest.created {
        services.push(objects::service(owner, &latest.name));
    }

    Ok(DesiredState {
        latest,
        deployment,
        services,
        latest_ready,
        resolved,
        traffic: routed,
        delete,
    })
}
