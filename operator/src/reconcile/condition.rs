//! The Function's condition types, statuses and the reasons the reconciler
//! names itself, as enums: the status step writes them and the event
//! notices read them back, so both spell them the same way. A failed
//! revision's reason is Kubernetes' own (e.g. `ImagePullBackOff`) and stays
//! a string.

/// A condition type of the Function's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionType {
    /// The Function serves its latest configuration on its routes.
    Ready,
    /// The latest created revision is ready.
    ConfigurationsReady,
    /// Every traffic target resolves to a revision.
    RoutesReady,
    /// Every custom domain in `spec.domains` is routed to the Function
    /// (present only when it lists some).
    DomainsReady,
}

impl ConditionType {
    /// The type as written in `status.conditions[].type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::ConfigurationsReady => "ConfigurationsReady",
            Self::RoutesReady => "RoutesReady",
            Self::DomainsReady => "DomainsReady",
        }
    }
}

/// A condition's status, as Kubernetes spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not known yet (e.g. a revision still deploying).
    Unknown,
}

impl ConditionStatus {
    /// The status as written in `status.conditions[].status`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

/// A condition (or revision status) reason the reconciler names itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Ready is True: the latest revision is ready and every route resolves.
    Ready,
    /// The latest revision is ready.
    RevisionReady,
    /// A revision's replicas are not ready yet.
    RevisionDeploying,
    /// Every traffic target resolves to a revision.
    TrafficResolved,
    /// A traffic target names a revision that does not exist.
    TrafficTargetNotFound,
    /// No revision is ready to take the latest revision's traffic.
    NoReadyRevision,
    /// The image of a new revision could not be resolved to a digest, so the
    /// revision was not cut.
    ImageResolutionFailed,
    /// Every custom domain is routed to the Function.
    DomainsClaimed,
    /// A custom domain is another Function's (claimed first) or the
    /// platform's.
    DomainConflict,
}

impl Reason {
    /// The reason as written in conditions and Events (PascalCase).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::RevisionReady => "RevisionReady",
            Self::RevisionDeploying => "RevisionDeploying",
            Self::TrafficResolved => "TrafficResolved",
            Self::TrafficTargetNotFound => "TrafficTargetNotFound",
            Self::NoReadyRevision => "NoReadyRevision",
            Self::ImageResolutionFailed => "ImageResolutionFailed",
            Self::DomainsClaimed => "DomainsClaimed",
            Self::DomainConflict => "DomainConflict",
        }
    }

    /// Whether `reason` (as read back from a status) is this one.
    pub fn is(self, reason: &str) -> bool {
        reason == self.as_str()
    }
}
