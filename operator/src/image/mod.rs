//! Immutable revisions: a Function's image tag resolved to its digest when a
//! revision is cut, so a later push of the same tag never changes what a
//! revision runs (Knative Serving's tag-to-digest resolution).
//!
//! Pure parts — [`registries`] (the skip and plain-HTTP lists),
//! [`reference`] (whether and where to resolve, the pinned reference) and
//! [`credentials`] (`kubernetes.io/dockerconfigjson` Secrets to registry
//! credentials) — are separate from the one piece of network I/O,
//! [`resolver`], which asks the registry for the manifest's digest with the
//! `oci-client` crate, bounded in time.

pub mod credentials;
pub mod reference;
pub mod registries;
pub mod resolver;

pub use credentials::{CredentialError, registry_auth};
pub use reference::{Plan, ReferenceError, pinned, plan};
pub use registries::{DEFAULT_SKIP_REGISTRIES, RegistryList};
pub use resolver::{DEFAULT_TIMEOUT, ResolveError, Resolver};
