//! Pins a new revision's image: its tag resolved to a digest in the
//! registry, with the credentials of the Secrets the Function (or its
//! ServiceAccount) names in `imagePullSecrets`, before the revision's
//! Deployment is created. Only a
//! new revision is pinned; an existing one keeps the image it was created
//! with, whatever the tag names now.

use std::error::Error as StdError;

use flint_api::Function;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::Api;
use kube::{Client, ResourceExt};
use tracing::{debug, info, instrument};

use crate::image::credentials::DOCKER_CONFIG_JSON_TYPE;
use crate::image::{
    CredentialError, Plan, ReferenceError, RegistryList, ResolveError, Resolver, pinned, plan,
    registry_auth,
};

/// How the operator pins images: the registries it leaves alone, and the
/// resolver for the others.
#[derive(Debug, Clone)]
pub struct ImagePinning {
    /// Registries whose tags are not resolved (see [`crate::image::registries`]).
    pub skip: RegistryList,
    /// Asks registries for digests.
    pub resolver: Resolver,
}

/// Why a new revision's image could not be pinned. The revision is then
/// not cut; the Function's status says why.
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    /// `spec.image` does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A Secret named in `imagePullSecrets` does not exist.
    #[error("imagePullSecret {secret:?} does not exist in namespace {namespace:?}")]
    SecretMissing {
        /// The Secret's name.
        secret: String,
        /// The Function's namespace.
        namespace: String,
    },
    /// Reading a Secret named in `imagePullSecrets` failed.
    #[error("reading imagePullSecret {secret:?}: {source}")]
    SecretRead {
        /// The Secret's name.
        secret: String,
        /// The API error.
        source: kube::Error,
    },
    /// Reading the Function's ServiceAccount (for its `imagePullSecrets`) failed.
    #[error("reading ServiceAccount {account:?} for its imagePullSecrets: {source}")]
    AccountRead {
        /// The ServiceAccount's name.
        account: String,
        /// The API error.
        source: kube::Error,
    },
    /// A Secret gives no credentials.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// The registry gave no digest.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
}

impl PinError {
    /// The whole story, causes included (a transport error's own message
    /// often says only "error sending request"; its cause says "connection
    /// refused"), for the Function's status and Events.
    pub fn describe(&self) -> String {
        let mut text = self.to_string();
        let mut cause = self.source();
        while let Some(error) = cause {
            let part = error.to_string();
            if !text.contains(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            cause = error.source();
        }
        text
    }
}

/// The image the new revision of `function` runs: `Some(repo@digest)` when
/// its tag was resolved, `None` when it runs as written (given by digest
/// already, or in a registry on the skip list).
#[instrument(skip_all, fields(namespace = function.namespace(), name = %function.name_any(), image = %function.spec.image))]
pub async fn pin_image(
    function: &Function,
    client: &Client,
    pinning: &ImagePinning,
) -> Result<Option<String>, PinError> {
    let reference = match plan(&function.spec.image, &pinning.skip)? {
        Plan::Pinned => return Ok(None),
        Plan::Skipped { registry } => {
            info!(registry = %registry, "registry is on the skip list; the image keeps its tag");
            return Ok(None);
        }
        Plan::Resolve(reference) => reference,
    };
    let secrets = pull_secrets(function, client).await?;
    let auth = registry_auth(reference.registry(), &secrets)?;
    let digest = pinning.resolver.digest(&reference, &auth).await?;
    let image = pinned(&reference, &digest);
    info!(pinned = %image, "resolved the image tag");
    Ok(Some(image))
}

/// The Secrets to log in with, in order: those the Function names in
/// `imagePullSecrets`, then those its ServiceAccount names (which Kubernetes
/// adds to the pods' own). Each is read by name (`get`, the operator's only
/// access to Secrets), never listed. A Secret the Function names must exist;
/// one its ServiceAccount names is skipped when missing or not a Docker
/// config, as the kubelet skips it.
async fn pull_secrets(function: &Function, client: &Client) -> Result<Vec<Secret>, PinError> {
    let namespace = function.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let named: Vec<&str> = function
        .spec
        .image_pull_secrets
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    let mut out = Vec::new();
    for name in &named {
        match read_secret(&secrets, name).await? {
            Some(secret) => out.push(secret),
            None => {
                return Err(PinError::SecretMissing {
                    secret: (*name).to_owned(),
                    namespace,
                });
            }
        }
    }
    for name in account_secrets(function, client, &namespace).await? {
        if named.contains(&name.as_str()) {
            continue;
        }
        match read_secret(&secrets, &name).await? {
            Some(secret) if secret.type_.as_deref() == Some(DOCKER_CONFIG_JSON_TYPE) => {
                out.push(secret);
            }
            _ => {
                debug!(secret = %name, "skipping a ServiceAccount's imagePullSecret that is missing or not a Docker config")
            }
        }
    }
    Ok(out)
}

/// Secret `name`, `None` when it does not exist.
async fn read_secret(secrets: &Api<Secret>, name: &str) -> Result<Option<Secret>, PinError> {
    match secrets.get(name).await {
        Ok(secret) => Ok(Some(secret)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(source) => Err(PinError::SecretRead {
            secret: name.to_owned(),
            source,
        }),
    }
}

/// The names of the `imagePullSecrets` of the Function's ServiceAccount
/// (`serviceAccountName`, else `default`); none when it does not exist.
async fn account_secrets(
    function: &Function,
    client: &Client,
    namespace: &str,
) -> Result<Vec<String>, PinError> {
    let name = function
        .spec
        .service_account_name
        .as_deref()
        .unwrap_or("default");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    match accounts.get(name).await {
        Ok(account) => Ok(account
            .image_pull_secrets
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.name)
            .collect()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
        Err(source) => Err(PinError::AccountRead {
            account: name.to_owned(),
            source,
        }),
    }
}
