//! What can be wrong with a certificate, its key or a name it is filed
//! under: each error says which, for the log line or the Function status
//! that reports it.

/// A certificate, key or name the gateway cannot serve TLS with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The certificate PEM holds no `CERTIFICATE` block.
    #[error("no certificate found: the PEM holds no CERTIFICATE block")]
    NoCertificate,
    /// The key PEM holds no private key block.
    #[error(
        "no private key found: the PEM holds no PRIVATE KEY (PKCS#8), RSA PRIVATE KEY (PKCS#1) or EC PRIVATE KEY (SEC1) block"
    )]
    NoPrivateKey,
    /// A PEM document could not be read.
    #[error("the {what} PEM is malformed: {reason}")]
    Pem {
        /// `certificate` or `private key`.
        what: &'static str,
        /// What the PEM reader said.
        reason: String,
    },
    /// The leaf certificate is not a valid X.509 certificate.
    #[error("the certificate cannot be parsed: {0}")]
    BadCertificate(String),
    /// The private key is of a type or curve the gateway cannot sign with.
    #[error("unsupported private key type: {0} (supported: RSA, ECDSA P-256/P-384, Ed25519)")]
    UnsupportedKey(String),
    /// The private key is not the one the leaf certificate was issued for.
    #[error("the private key does not match the certificate's public key")]
    KeyMismatch,
    /// A name a certificate is filed under is neither a host nor a
    /// one-label wildcard (`*.example.com`).
    #[error("{0:?} is not a host name or a one-label wildcard such as *.example.com")]
    InvalidName(String),
    /// rustls refused the settings (cannot happen with the ring provider's
    /// defaults; reported rather than assumed).
    #[error("building the TLS settings: {0}")]
    Config(String),
    /// A self-signed certificate could not be made.
    #[error("making a self-signed certificate: {0}")]
    SelfSigned(String),
}
