//! Where the gateway's secret material comes from: the API keys, HMAC keys,
//! key-set files and certificates a Function's `spec.auth` and `spec.tls`
//! name. The gateway's owner supplies a [`Keyring`] (Kubernetes Secrets in
//! `flint gateway`, files and environment variables in `flint dev`) and
//! calls [`super::Gateway::refresh_access`] when what it holds changes.

use flint_api::backend::FunctionKey;
use flint_api::function::KeySource;

/// Why secret material could not be had; names the Secret, file or
/// variable, never its content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// The Secret does not exist (or is not readable by the gateway).
    #[error("Secret {namespace}/{name} not found")]
    SecretNotFound {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The Secret exists but lacks a key.
    #[error("Secret {namespace}/{name} has no key {key:?}")]
    MissingKey {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The key.
        key: String,
    },
    /// A file could not be read.
    #[error("reading {path}: {reason}")]
    File {
        /// The file, as resolved.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// An environment variable is unset or not UTF-8.
    #[error("environment variable {0} is not set")]
    Env(String),
    /// The source names nothing this keyring reads (a Secret in `flint
    /// dev`, a file on a cluster).
    #[error("{0}")]
    Unsupported(String),
}

/// A certificate chain and its private key, both PEM, as a
/// `kubernetes.io/tls` Secret holds them (`tls.crt`, `tls.key`).
pub type CertPem = (Vec<u8>, Vec<u8>);

/// A Function's secret material, as the gateway's owner holds it.
pub trait Keyring: Send + Sync + 'static {
    /// The values `source` names for `function`: every value of the Secret
    /// (or its one `key`), every non-empty line of a file, every
    /// comma-separated item of a variable.
    fn values(
        &self,
        function: &FunctionKey,
        source: &KeySource,
    ) -> Result<Vec<Vec<u8>>, KeyringError>;

    /// The content of the file `path` of `function` (a key set for `flint
    /// dev`'s `jwksFile`).
    fn file(&self, function: &FunctionKey, path: &str) -> Result<Vec<u8>, KeyringError>;

    /// The certificate chain and key (PEM) of the `kubernetes.io/tls`
    /// Secret `name` in `namespace`.
    fn tls(&self, namespace: &str, name: &str) -> Result<CertPem, KeyringError>;

    /// The certificate for hosts of Functions with `spec.tls` but no
    /// Secret of their own (`hosts`), as PEM chain and key; `None` when the
    /// gateway has none (those hosts then fail the TLS handshake).
    fn default_tls(&self, hosts: &[String]) -> Option<Result<CertPem, KeyringError>>;
}

/// A keyring that holds nothing: every Function with auth is refused
/// until a real one is set, and no certificate is served.
#[derive(Debug, Default, Clone, Copy)]
pub struct EmptyKeyring;

impl Keyring for EmptyKeyring {
    fn values(&self, _: &FunctionKey, _: &KeySource) -> Result<Vec<Vec<u8>>, KeyringError> {
        Err(KeyringError::Unsupported(
            "the gateway was started without secret material".to_owned(),
        ))
    }

    fn file(&self, _: &FunctionKey, path: &str) -> Result<Vec<u8>, KeyringError> {
        Err(KeyringError::Unsupported(format!(
            "the gateway reads no files ({path})"
        )))
    }

    fn tls(&self, namespace: &str, name: &str) -> Result<CertPem, KeyringError> {
        Err(KeyringError::SecretNotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    fn default_tls(&self, _: &[String]) -> Option<Result<CertPem, KeyringError>> {
        None
    }
}
