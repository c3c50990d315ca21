//! Why a request was refused ([`AuthFailure`]) and why a Function's rule
//! could not be built ([`AuthConfigError`]).

use std::sync::Arc;

use http::{HeaderValue, StatusCode};

/// Why a request was refused. Its `Display` is the body a client reads: it
/// names what is wrong so that an honest client can fix it, and never
/// echoes the credential, a key or a claim's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No credential where the Function expects one.
    #[error("missing credentials: {hint}")]
    MissingCredentials {
        /// Where the credential goes (`send Authorization: Bearer <token>`…).
        hint: Arc<str>,
    },
    /// The API key is not one of the Function's keys.
    #[error("invalid API key")]
    InvalidKey,
    /// The token is not a well-formed JWT (or is too large to be one).
    #[error("malformed token: {0}")]
    MalformedToken(&'static str),
    /// The token's signature does not verify with the issuer's key.
    #[error("invalid token signature")]
    InvalidSignature,
    /// The token's `exp` is past (beyond the tolerated clock skew).
    #[error("token expired")]
    Expired,
    /// The token's `nbf` is ahead (beyond the tolerated clock skew).
    #[error("token not yet valid")]
    NotYetValid,
    /// The token's `iss` is not the Function's issuer.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// The token's `aud` names none of the Function's audiences.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// No key of the issuer matches the token's `kid` (and algorithm).
    #[error("unknown signing key: {0}")]
    UnknownKey(&'static str),
    /// The token's `alg` is not one the Function accepts.
    #[error("token algorithm is not accepted: {0}")]
    AlgorithmNotAllowed(&'static str),
    /// The issuer's key set could not be had, so no token can be checked.
    #[error("the issuer's signing keys are unavailable; try again later")]
    JwksUnavailable,
    /// A valid token lacks a claim (or value) the Function requires.
    #[error("token lacks required claim {claim:?}")]
    MissingClaim {
        /// The required claim's name (from the Function's spec).
        claim: Arc<str>,
    },
}

impl AuthFailure {
    /// The response status: 403 for a valid identity without a required
    /// claim, 401 for everything else.
    ///
    /// [`AuthFailure::JwksUnavailable`] is 401, not 503, on purpose: the
    /// gateway could not verify the credential, which is what 401 says;
    /// a 503 would let anyone holding a forged token (with a made-up `kid`)
    /// make the gateway look unavailable to 5xx alerts and to clients'
    /// retry logic, and it would be retried by proxies. Operators see the
    /// cause in the `jwks_unavailable` reason and the fetch errors logged.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingClaim { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// A short, fixed label for metrics (bounded cardinality).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingCredentials { .. } => "missing_credentials",
            Self::InvalidKey => "invalid_key",
            Self::MalformedToken(_) => "malformed_token",
            Self::InvalidSignature => "invalid_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::UnknownKey(_) => "unknown_key",
            Self::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            Self::JwksUnavailable => "jwks_unavailable",
            Self::MissingClaim { .. } => "missing_claim",
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3): no error code when
    /// the request carried no credential, `invalid_token` for a refused
    /// one, `insufficient_scope` for a 403.
    pub fn www_authenticate(&self) -> HeaderValue {
        const BARE: &str = "Bearer realm=\"flint\"";
        let error = match self {
            Self::MissingCredentials { .. } => return HeaderValue::from_static(BARE),
            Self::MissingClaim { .. } => "insufficient_scope",
            _ => "invalid_token",
        };
        let description: String = self
            .to_string()
            .chars()
            .map(|c| match c {
                '"' | '\\' => '\'',
                ' '..='~' => c,
                _ => '?',
            })
            .collect();
        HeaderValue::from_str(&format!(
            "{BARE}, error=\"{error}\", error_description=\"{description}\""
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(BARE))
    }
}

/// Why a Function's authentication rule could not be built. Each names the
/// spec field (or the credential) at fault; none echoes a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    /// `spec.auth` has neither method.
    #[error("spec.auth: set apiKeys, jwt or both")]
    NoMethod,
    /// A key source names nowhere to read keys from.
    #[error("{field}: name a secretName (cluster), a file or an env (flint dev)")]
    NoKeySource {
        /// The field at fault.
        field: &'static str,
    },
    /// The API key header is not a valid header name.
    #[error("spec.auth.apiKeys.header: {header:?} is not a valid header name")]
    BadKeyHeader {
        /// The header as given.
        header: String,
    },
    /// `spec.auth.jwt.issuer` is empty.
    #[error("spec.auth.jwt.issuer: must not be empty")]
    NoIssuer,
    /// `spec.auth.jwt.audiences` is empty.
    #[error("spec.auth.jwt.audiences: name at least one audience")]
    NoAudience,
    /// `spec.auth.jwt.algorithms` is empty.
    #[error("spec.auth.jwt.algorithms: name at least one algorithm")]
    NoAlgorithm,
    /// An HS algorithm is accepted but no `hmacKey` is named.
    #[error("spec.auth.jwt.hmacKey: HS256, HS384 and HS512 need hmacKey")]
    HmacKeyNeeded,
    /// `hmacKey` is named but no HS algorithm is accepted.
    #[error("spec.auth.jwt.algorithms: hmacKey needs an HS algorithm in algorithms")]
    HmacKeyUnused,
    /// The HMAC key is shorter than the hash it keys (RFC 7518 §3.2).
    #[error(
        "spec.auth.jwt.hmacKey: the key is {len} bytes; HMAC keys must be at least {min} bytes"
    )]
    HmacKeyTooShort {
        /// The key's length.
        len: usize,
        /// The least accepted length.
        min: usize,
    },
    /// An asymmetric algorithm is accepted but no key set is named.
    #[error("spec.auth.jwt: {algorithm} needs jwksUrl or jwksFile (flint dev)")]
    NoKeySet {
        /// The first asymmetric algorithm listed.
        algorithm: &'static str,
    },
    /// `jwksUrl` is not an absolute https URL (or http where allowed).
    #[error("spec.auth.jwt.jwksUrl: {url:?} {reason}")]
    BadJwksUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The local key set (`jwksFile`) is not a JSON Web Key Set.
    #[error("spec.auth.jwt.jwksFile: not a JSON Web Key Set: {reason}")]
    BadJwksDocument {
        /// What is wrong with it.
        reason: String,
    },
    /// A forwarded claim's name does not make a header name.
    #[error("spec.auth.jwt.forwardClaims: {name:?} does not make a valid header name")]
    BadForwardClaim {
        /// The claim name as given.
        name: String,
    },
}
