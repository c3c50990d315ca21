//! Asks a registry for the digest of a tag: the only network I/O of image
//! resolution, through the `oci-client` crate (rustls, the ring provider).
//!
//! A `HEAD` of the manifest gives the digest in `Docker-Content-Digest`
//! (a registry that leaves it out gets a `GET`, and the body's SHA-256). The
//! manifest asked for is whatever the tag names: an image index (manifest
//! list) is pinned as the index, so every platform keeps its own image, as
//! Knative does. Every resolution is bounded: connect and read timeouts, and
//! one deadline over the whole exchange (token request included).

use std::time::Duration;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tracing::debug;

use super::registries::RegistryList;

/// How long one resolution may take, token request included, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a registry gave no digest.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The HTTP client could not be built (TLS setup).
    #[error("building the registry client: {0}")]
    Client(#[source] OciDistributionError),
    /// The registry refused or failed the request, or was unreachable.
    #[error("registry {registry:?} answered for {image:?}: {source}")]
    Registry {
        /// The image, as resolved.
        image: String,
        /// The registry asked.
        registry: String,
        /// What went wrong.
        source: OciDistributionError,
    },
    /// No answer in time.
    #[error("registry {registry:?} gave no digest for {image:?} within {seconds}s")]
    Timeout {
        /// The image, as resolved.
        image: String,
        /// The registry asked.
        registry: String,
        /// The deadline, in seconds.
        seconds: u64,
    },
    /// The registry's digest is not `sha256:` or `sha512:` and hex.
    #[error("registry {registry:?} answered for {image:?} with a malformed digest {digest:?}")]
    BadDigest {
        /// The image, as resolved.
        image: String,
        /// The registry asked.
        registry: String,
        /// What it answered.
        digest: String,
    },
}

/// Resolves tags to digests. Holds no connection and no credentials between
/// resolutions: each builds its own client, because `oci-client` keeps the
/// credentials it was given per registry, and a shared client would lend
/// one Function's pull secret to another Function's image in the same
/// registry.
#[derive(Debug, Clone)]
pub struct Resolver {
    insecure: RegistryList,
    timeout: Duration,
}

impl Resolver {
    /// A resolver speaking plain HTTP to the `insecure` registries (test and
    /// loopback registries) and HTTPS to every other, giving up on a
    /// resolution after `timeout`.
    pub fn new(insecure: RegistryList, timeout: Duration) -> Self {
        // reqwest is built without a bundled crypto provider: use ring, the
        // one the Kubernetes client already links. Installing twice is a
        // harmless error (another part of the process got there first).
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self { insecure, timeout }
    }

    /// The digest of the manifest `reference` names, asked with `auth`.
    pub async fn digest(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
    ) -> Result<String, ResolveError> {
        let registry = reference.registry().to_owned();
        let image = reference.whole();
        let plain = self.insecure.contains(&registry);
        let client = Client::try_from(ClientConfig {
            protocol: if plain {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(self.timeout),
            read_timeout: Some(self.timeout),
            // An index is pinned as it is: no platform is picked.
            platform_resolver: None,
            ..ClientConfig::default()
        })
        .map_err(ResolveError::Client)?;
        debug!(image = %image, registry = %registry, plain, "resolving an image tag");
        let exchange = async {
            client
                .auth(reference, auth, RegistryOperation::Pull)
                .await?;
            client.fetch_manifest_digest(reference, auth).await
        };
        let digest = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ResolveError::Timeout {
                image: image.clone(),
                registry: registry.clone(),
                seconds: self.timeout.as_secs().max(1),
            })?
            .map_err(|source| ResolveError::Registry {
                image: image.clone(),
                registry: registry.clone(),
                source,
            })?;
        if !well_formed(&digest) {
            return Err(ResolveError::BadDigest {
                image,
                registry,
                digest,
            });
        }
        Ok(digest)
    }
}

/// Whether `digest` is `sha256:` with 64 lowercase hex digits or `sha512:`
/// with 128: what a pod's image reference may carry.
pub fn well_formed(digest: &str) -> bool {
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    match digest.split_once(':') {
        Some(("sha256", h)) => hex(h, 64),
        Some(("sha512", h)) => hex(h, 128),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sha_digests_in_lowercase_hex_are_well_formed() {
        let ok256 = format!("sha256:{}", "a1".repeat(32));
        let ok512 = format!("sha512:{}", "0f".repeat(64));
        assert!(well_formed(&ok256));
        assert!(well_formed(&ok512));
        for bad in [
            format!("sha256:{}", "A1".repeat(32)),
            format!("sha256:{}", "a1".repeat(31)),
            format!("md5:{}", "a1".repeat(16)),
            "sha256".to_owned(),
            String::new(),
            format!("sha256:{}/x", "a1".repeat(31)),
        ] {
            assert!(!well_formed(&bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_an_error_naming_it() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let resolver = Resolver::new(RegistryList::new(["127.0.0.1:1"]), DEFAULT_TIMEOUT);
        let reference = Reference::try_from("127.0.0.1:1/app:1").unwrap();
        let error = resolver
            .digest(&reference, &RegistryAuth::Anonymous)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, ResolveError::Registry { registry, .. } if registry == "127.0.0.1:1"),
            "{error:?}"
        );
        assert!(error.to_string().contains("127.0.0.1:1/app:1"), "{error}");
    }
}
