//! Errors of the reconciler, each with a low-cardinality metric label.

use super::desired::DesiredError;
use super::pin::PinError;

/// Why one reconcile of one Function failed. The controller requeues the
/// Function with backoff; other Functions are unaffected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Function cannot be turned into objects.
    #[error(transparent)]
    Desired(#[from] DesiredError),
    /// Listing the Function's Deployments, Services or pods failed.
    #[error("listing {kind} of function {function:?}: {source}")]
    List {
        /// What was listed.
        kind: &'static str,
        /// The Function.
        function: String,
        /// The API error.
        source: kube::Error,
    },
    /// A server-side apply of a Deployment or Service failed.
    #[error("applying {kind} {name:?}: {source}")]
    Apply {
        /// Kind of the object.
        kind: &'static str,
        /// Name of the object.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// Deleting a revision's object failed.
    #[error("deleting {kind} {name:?}: {source}")]
    Delete {
        /// Kind of the object.
        kind: &'static str,
        /// Name of the object.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// Writing the Function's status failed.
    #[error("writing the status of function {function:?}: {source}")]
    Status {
        /// The Function.
        function: String,
        /// The API error.
        source: kube::Error,
    },
    /// The image of a new revision could not be resolved to a digest: the
    /// revision was not cut, and the status says why.
    #[error("the image of function {function:?} could not be resolved: {source}")]
    Image {
        /// The Function.
        function: String,
        /// What failed (boxed: registry errors are large, and every
        /// reconcile result carries this enum).
        source: Box<PinError>,
    },
    /// Removing an earlier operator version's finalizer failed.
    #[error("removing the finalizer of function {function:?}: {source}")]
    Finalizer {
        /// The Function.
        function: String,
        /// The API error.
        source: kube::Error,
    },
}

impl Error {
    /// The label of this error in `flint_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Desired(_) => "invalid_function",
            Error::List { .. } => "list",
            Error::Apply { .. } => "apply",
            Error::Delete { .. } => "delete",
            Error::Status { .. } => "status",
            Error::Finalizer { .. } => "finalizer",
            Error::Image { .. } => "image_resolution",
        }
    }
}
