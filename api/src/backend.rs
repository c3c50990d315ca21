//! The seams between Flint's parts, so the operator (autoscaler) and the
//! runtime (gateway, local processes) never depend on each other: the binary
//! wires implementations of these traits together, on a cluster and in
//! `flint dev` alike.

use std::future::Future;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::function::{AuthSpec, Protocol, TlsSpec, TrafficStatus, Visibility};
use crate::poke::ScalePoke;

/// Identifies one revision of one Function.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionKey {
    /// Namespace of the Function.
    pub namespace: String,
    /// Name of the Function.
    pub function: String,
    /// Name of the revision, e.g. `hello-00001`.
    pub revision: String,
}

impl RevisionKey {
    /// A key for `namespace/function`, revision `revision`.
    pub fn new(
        namespace: impl Into<String>,
        function: impl Into<String>,
        revision: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            function: function.into(),
            revision: revision.into(),
        }
    }
}

impl std::fmt::Display for RevisionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.revision)
    }
}

/// Identifies one Function: what the autoscaler keys a Function's backlog
/// and status by, and what asynchronous invocations are addressed to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionKey {
    /// Namespace of the Function.
    pub namespace: String,
    /// Name of the Function.
    pub function: String,
}

impl FunctionKey {
    /// The Function `namespace/function`.
    pub fn new(namespace: impl Into<String>, function: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            function: function.into(),
        }
    }

    /// The Function a revision belongs to.
    pub fn of(revision: &RevisionKey) -> Self {
        Self::new(revision.namespace.clone(), revision.function.clone())
    }
}

impl std::fmt::Display for FunctionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.function)
    }
}

/// One replica of a revision as the gateway sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Stable identity of the replica (pod name, or local process id).
    pub id: String,
    /// Where the replica's app listens.
    pub addr: SocketAddr,
    /// Passed its readiness probe and may receive requests.
    pub ready: bool,
    /// Shutting down: must receive no new requests.
    pub terminating: bool,
}

/// What the gateway needs to know about one revision to route to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRoute {
    /// Revision name.
    pub name: String,
    /// Hard limit of in-flight requests per replica; 0 = none.
    pub concurrency: u32,
    /// Per-request timeout in seconds.
    pub timeout_seconds: u32,
    /// Protocol spoken to the app.
    pub protocol: Protocol,
    /// Set when the revision failed (crash loop, image pull): the reason
    /// answered with 503 instead of waiting for a replica that will not come.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Whether the gateway checks a starting replica itself (a TCP connect
    /// to its port, what the default readiness probe does) and routes to it
    /// as soon as it answers, instead of waiting for the kubelet's next
    /// probe (up to a second) and the EndpointSlice update. Set on clusters
    /// for revisions without a custom `readinessProbe`, which stays the
    /// kubelet's to judge.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub probe_starting: bool,
}

/// Everything the gateway routes for one Function: its revisions and the
/// resolved traffic split (status.traffic).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionRoute {
    /// Namespace of the Function.
    pub namespace: String,
    /// Name of the Function.
    pub name: String,
    /// Revisions that may receive traffic (directly or by tag).
    pub revisions: Vec<RevisionRoute>,
    /// Resolved traffic split; percents sum to 100 (or the list is empty when
    /// no revision is ready yet, which the gateway answers with 503).
    pub traffic: Vec<TrafficStatus>,
    /// Who may reach the Function and at which hosts.
    #[serde(default, skip_serializing_if = "FunctionAccess::is_open")]
    pub access: FunctionAccess,
}

/// Who may reach a Function and how, as its spec says (`visibility`,
/// `auth`, `domains`, `tls`); the gateway resolves the Secrets and files it
/// names. Every field empty: public at its own host, anyone, plain HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionAccess {
    /// `spec.visibility`; unset, the gateway's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
    /// `spec.auth`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,
    /// `spec.domains`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// `spec.tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// When the Function was created (RFC 3339), which decides who owns a
    /// domain two Functions claim ([`crate::domains::claims`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

impl FunctionAccess {
    /// Whether nothing is set: the Function is open at its own host.
    pub fn is_open(&self) -> bool {
        self == &Self::default()
    }
}

/// Replica counts of a revision as the backend reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Replicas {
    /// Replicas asked for.
    pub desired: u32,
    /// Replicas ready to serve.
    pub ready: u32,
}

/// Where an existing revision stands when an autoscaler starts scaling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// How long ago its replicas were first asked for.
    pub age: std::time::Duration,
    /// Its replica counts now.
    pub replicas: Replicas,
}

/// Why the backend could not carry out a scale write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scaling {revision} failed: {reason}")]
pub struct ScaleError {
    /// The revision.
    pub revision: RevisionKey,
    /// What went wrong.
    pub reason: String,
}

/// Writes replica counts. The autoscaler is its only caller, so exactly one
/// component ever changes a revision's scale (Kubernetes: the Deployment's
/// scale subresource; `flint dev`: local processes).
pub trait ScaleActuator: Send + Sync + 'static {
    /// Sets the number of replicas of `revision`.
    fn scale(
        &self,
        revision: &RevisionKey,
        replicas: u32,
    ) -> impl Future<Output = Result<(), ScaleError>> + Send;
    /// Reports the replicas of `revision`.
    fn replicas(
        &self,
        revision: &RevisionKey,
    ) -> impl Future<Output = Result<Replicas, ScaleError>> + Send;
    /// How long ago `revision`'s replicas were first asked for and how
    /// many there are, in one read, where the backend knows: an autoscaler
    /// that starts (a new leader, a restart) takes over an older revision
    /// as it stands instead of treating it as new. The default, unknown,
    /// treats every revision as new.
    fn standing(
        &self,
        revision: &RevisionKey,
    ) -> impl Future<Output = Result<Option<Standing>, ScaleError>> + Send {
        let _ = revision;
        std::future::ready(Ok(None))
    }
}

/// Receives the gateway's scale-from-zero pokes. Must not block: the gateway
/// calls it on the request path.
pub trait PokeSink: Send + Sync + 'static {
    /// A request is waiting for a revision with no ready replica.
    fn poke(&self, poke: ScalePoke);

    /// Presents `token` with every later poke, where pokes cross a process
    /// boundary (the gateway's HTTP sink; the autoscaler refuses a poke
    /// without it). In-process sinks need no credential: the default does
    /// nothing.
    fn present(&self, token: &crate::drain::ControlToken) {
        let _ = token;
    }
}

/// Why a schedule's tick could not be claimed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("claiming tick {tick} of schedule {schedule}: {reason}")]
pub struct TickClaimError {
    /// The schedule's key.
    pub schedule: String,
    /// The tick, in seconds since the Unix epoch.
    pub tick: i64,
    /// What went wrong.
    pub reason: String,
}

/// Durable record of the last tick each cron schedule fired, shared by every
/// scheduler that may fire it (operator replicas across failovers; `flint
/// dev` across restarts), so that each tick fires at most once.
pub trait TickStore: Send + Sync + 'static {
    /// Claims `tick` (seconds since the Unix epoch) of `schedule`: `true`
    /// when the caller is the one to fire it, `false` when this tick or a
    /// later one was claimed already. Atomic against concurrent claimers.
    fn claim(
        &self,
        schedule: &str,
        tick: i64,
    ) -> impl Future<Output = Result<bool, TickClaimError>> + Send;
}
