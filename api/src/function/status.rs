//! The observed state of a Function (`status`), written by the operator
//! (and `keepAlive` by the autoscaler). Apart from the spec because the two
//! have different writers and readers: users write the spec, only Flint
//! writes the status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{KeepAlive, Protocol, ScaleSpec};

/// Observed state of a Function, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    /// The generation the status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, ConfigurationsReady and RoutesReady, with reasons a person can act on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Where the function is reached: http://<name>.<namespace>.<domain>.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The newest revision created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_created_revision: Option<String>,
    /// The newest revision that became ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ready_revision: Option<String>,
    /// Traffic split resolved to concrete revisions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<TrafficStatus>,
    /// The revisions that exist, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<RevisionStatus>,
    /// Ready replicas across all revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Replicas the autoscaler wants across all revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// The image each kept revision runs, as its Deployment has it: pinned
    /// by digest (`repo@sha256:…`) when the tag was resolved as the
    /// revision was cut, so a later push of the tag does not change it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["revision"]))]
    pub images: Vec<RevisionImage>,
    /// Per revision: why the keep-alive policy keeps, pre-warms or releases
    /// the last replica, and what it has learned (written by the autoscaler,
    /// read back by the next operator leader).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["revision"]))]
    pub keep_alive: Vec<KeepAliveStatus>,
}

/// The image one revision runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionImage {
    /// The revision.
    pub revision: String,
    /// Its image: `spec.image` with the tag resolved to a digest, or as
    /// written (given by digest, or in a registry the operator skips).
    pub image: String,
}

/// The keep-alive policy's view of one revision. Written by the autoscaler
/// under its own field manager; the reconciler never touches it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeepAliveStatus {
    /// The revision.
    pub revision: String,
    /// The policy in force (`scale.keepAlive`).
    pub policy: KeepAlive,
    /// Why the last replica is kept, pre-warmed or released, in words, e.g.
    /// "learned from 12 idle times, periodic: released at 14:30 UTC; next call expected 14:58-15:01 UTC, pre-warming from 14:58 UTC".
    pub message: String,
    /// What the policy has learned (idle-time histogram, last activity),
    /// compactly encoded: opaque, at most 1 KiB. Lets a new operator leader
    /// make the decisions the previous one would have made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub learned: Option<String>,
}

/// A traffic target resolved to a concrete revision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficStatus {
    /// The revision receiving this share.
    pub revision_name: String,
    /// Percent of requests.
    pub percent: u32,
    /// Whether this entry follows the latest ready revision.
    #[serde(default)]
    pub latest_revision: bool,
    /// The tag, if the target has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The tagged URL, if the target has a tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The observed state of one revision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionStatus {
    /// Revision name, e.g. hello-00002.
    pub name: String,
    /// Whether at least one replica is ready (or the revision is healthy at zero).
    pub ready: bool,
    /// Ready replicas.
    #[serde(default)]
    pub replicas: i32,
    /// Why the revision is not ready, in one word (e.g. ImagePullBackOff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A sentence a person can act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `concurrency` the revision was created with; the gateway limits
    /// its replicas to this, whatever the spec says now. Empty for a
    /// revision created before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// The `timeoutSeconds` the revision was created with; the gateway times
    /// its requests out by this. Empty for a revision created before it was
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// The `protocol` the revision was created with; the gateway speaks it to
    /// the revision's replicas. Empty for a revision created before it was
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// The `scale` settings the autoscaler scales the revision with (except
    /// `min`, which only revisions taking traffic hold). The latest created
    /// revision follows the spec's current `scale`; every other revision
    /// keeps the `scale` it had when it stopped being the latest (else the
    /// one it was created with). Empty for a revision created before it was
    /// recorded, which follows the spec's current `scale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "revision_scale_schema")]
    pub scale: Option<ScaleSpec>,
}

/// Schema of `status.revisions[].scale`: the `ScaleSpec` schema without its
/// CEL rules. The operator writes it from a valid spec, and the API server
/// prices a rule inside a list by the most entries the list could hold: in
/// this unbounded list, the rules would eat into the CRD's CEL cost budget.
fn revision_scale_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = ScaleSpec::json_schema(generator);
    schema.remove("x-kubernetes-validations");
    schema.insert("nullable".to_owned(), serde_json::Value::Bool(true));
    schema
}
