//! Authentication of requests to Functions with `spec.auth`: the gateway
//! checks a request's API key or JWT before it reaches (or wakes) the
//! function, refuses it with 401 or 403 otherwise, and tells the function
//! who called with `X-Flint-Subject` and `X-Flint-Claim-<name>` headers,
//! which clients cannot forge ([`strip_identity_headers`]).
//!
//! A [`FunctionAuth`] is one Function's rule, built at each routing-table
//! rebuild from the spec and the secret material its owner resolved
//! ([`Credentials`]: a Kubernetes Secret, or a file or environment variable
//! in `flint dev`). Key sets fetched from issuers are cached per URL in a
//! [`JwksRegistry`] that outlives rebuilds.
//!
//! The parts: `api_keys` (digests, constant-time comparison), `jwt`
//! (signature, claims), `jose` (algorithms, the token's header),
//! `token_cache` (tokens that verified, let through again without the
//! signature check), `keyset` (which published key verifies a token),
//! `jwks` (caching key sets per URL, bounded refetching), `fetch` (one
//! bounded HTTPS GET), `identity` (what the function is told) and
//! `failure` (what the client is told).

mod api_keys;
mod failure;
mod fetch;
mod identity;
mod jose;
mod jwks;
mod jwt;
mod keyset;
mod token_cache;

#[cfg(test)]
mod tests;

use flint_api::function::AuthSpec;
use http::HeaderMap;
use ring::digest::{Context, SHA256, SHA256_OUTPUT_LEN};

pub use failure::{AuthConfigError, AuthFailure};
pub use fetch::{DEFAULT_MAX_AGE, MAX_MAX_AGE, MIN_MAX_AGE, cache_lifetime};
pub use identity::{
    AuthMethod, CLAIM_HEADER_PREFIX, Identity, SUBJECT_HEADER, strip_identity_headers,
};
pub use jwks::{JwksRegistry, JwksSettings};
pub use jwt::{MAX_CLAIM_HEADER_BYTES, MAX_TOKEN_BYTES, MIN_HMAC_KEY_BYTES};

use api_keys::ApiKeys;
use jwt::JwtRule;

/// Secret material a Function's rule needs, resolved by the gateway's
/// owner (from the Kubernetes Secrets the spec names, or from a file or an
/// environment variable in `flint dev`). Raw bytes, used as given: the
/// owner splits values into keys and trims line ends.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The accepted API keys (none: every request is refused).
    pub api_keys: Vec<Vec<u8>>,
    /// The HMAC key for HS256/384/512 tokens (none: such tokens are
    /// refused).
    pub hmac_key: Option<Vec<u8>>,
    /// The issuer's key set as a JSON document (`flint dev`'s `jwksFile`);
    /// when given, it is used instead of fetching `jwksUrl`.
    pub jwks_document: Option<Vec<u8>>,
}

impl std::fmt::Debug for Credentials {
    /// Counts and sizes only: secrets never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("api_keys", &self.api_keys.len())
            .field("hmac_key", &self.hmac_key.as_ref().map(|_| "<redacted>"))
            .field("jwks_document", &self.jwks_document.as_ref().map(Vec::len))
            .finish()
    }
}

impl Credentials {
    /// A digest of every value, each length-prefixed: tells whether the
    /// material changed without keeping it.
    fn digest(&self) -> CredentialsDigest {
        let mut context = Context::new(&SHA256);
        let mut value = |bytes: Option<&[u8]>| match bytes {
            None => context.update(&[0]),
            Some(bytes) => {
                context.update(&[1]);
                context.update(&(bytes.len() as u64).to_le_bytes());
                context.update(bytes);
            }
        };
        value(Some(&(self.api_keys.len() as u64).to_le_bytes()));
        for key in &self.api_keys {
            value(Some(key));
        }
        value(self.hmac_key.as_deref());
        value(self.jwks_document.as_deref());
        let mut digest = [0u8; SHA256_OUTPUT_LEN];
        digest.copy_from_slice(context.finish().as_ref());
        CredentialsDigest(digest)
    }
}

/// SHA-256 of a rule's [`Credentials`] (never logged).
#[derive(Clone, Copy, PartialEq, Eq)]
struct CredentialsDigest([u8; SHA256_OUTPUT_LEN]);

impl std::fmt::Debug for CredentialsDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<digest>")
    }
}

/// One Function's authentication rule: which API keys and which tokens
/// let a request through. Holds key digests, never the keys, and the
/// tokens that verified lately (so a rule is kept across routing-table
/// rebuilds while its spec and material stay the same:
/// [`FunctionAuth::is_built_from`]).
#[derive(Debug)]
pub struct FunctionAuth {
    api_keys: Option<ApiKeys>,
    jwt: Option<JwtRule>,
    /// What it was built from, to tell whether a rebuild may keep it.
    spec: AuthSpec,
    credentials: CredentialsDigest,
}

impl FunctionAuth {
    /// The rule for `spec` with the secret material in `credentials`; key
    /// sets named by URL are cached in `registry`. An empty key list is
    /// not an error (every request is then refused, fail closed); a spec
    /// that names no method, no source for its keys, a bad header or URL,
    /// a short HMAC key or an unparseable local key set is.
    pub fn new(
        spec: &AuthSpec,
        credentials: Credentials,
        registry: &JwksRegistry,
    ) -> Result<Self, AuthConfigError> {
        if spec.api_keys.is_none() && spec.jwt.is_none() {
            return Err(AuthConfigError::NoMethod);
        }
        let digest = credentials.digest();
        let api_keys = match &spec.api_keys {
            None => None,
            Some(spec) => {
                let source = &spec.keys;
                if source.secret_name.is_none() && source.file.is_none() && source.env.is_none() {
                    return Err(AuthConfigError::NoKeySource {
                        field: "spec.auth.apiKeys.keys",
                    });
                }
                let keys = ApiKeys::new(&credentials.api_keys, spec.header.as_deref())?;
                if keys.len() == 0 {
                    tracing::debug!("no API keys resolved: every API-key request is refused");
                }
                Some(keys)
            }
        };
        let jwt = spec
            .jwt
            .as_ref()
            .map(|jwt| {
                JwtRule::new(
                    jwt,
                    credentials.hmac_key.as_deref(),
                    credentials.jwks_document.as_deref(),
                    registry,
                )
            })
            .transpose()?;
        Ok(Self {
            api_keys,
            jwt,
            spec: spec.clone(),
            credentials: digest,
        })
    }

    /// Whether this rule is what [`FunctionAuth::new`] would build from
    /// `spec` and `credentials` (against the same registry): a rebuild of
    /// the routing table then keeps it, with the tokens it remembers.
    pub fn is_built_from(&self, spec: &AuthSpec, credentials: &Credentials) -> bool {
        self.spec == *spec && self.credentials == credentials.digest()
    }

    /// How many tokens were verified in full (not let through as
    /// remembered) since the rule was built.
    #[cfg(test)]
    pub(crate) fn tokens_verified_in_full(&self) -> u64 {
        self.jwt.as_ref().map_or(0, JwtRule::verified_in_full)
    }

    /// How many verified tokens the rule remembers.
    #[cfg(test)]
    pub(crate) fn tokens_remembered(&self) -> usize {
        self.jwt.as_ref().map_or(0, |jwt| jwt.cache().len())
    }

    /// Checks the request's headers: lets it through when it carries one
    /// of the API keys or a valid token (either, when both are set). A
    /// refusal reports the token's failure when the `Authorization: Bearer`
    /// credential looks like a JWT, else the API key's. Async only because
    /// an unknown `kid` may refetch the issuer's key set; an API key, or a
    /// token whose key is cached, is answered without awaiting anything.
    pub async fn authorize(&self, headers: &HeaderMap) -> Result<Identity, AuthFailure> {
        let key_failure = match &self.api_keys {
            Some(keys) => match keys.check(headers) {
                Ok(identity) => return Ok(identity),
                Err(failure) => Some(failure),
            },
            None => None,
        };
        let Some(jwt) = &self.jwt else {
            return Err(key_failure.unwrap_or_else(|| self.missing()));
        };
        match (api_keys::bearer(headers), key_failure) {
            (Some(token), None) => jwt.verify(token).await,
            (Some(token), Some(_)) if looks_like_jwt(token) => jwt.verify(token).await,
            (_, Some(key_failure)) => Err(match key_failure {
                AuthFailure::MissingCredentials { .. } => self.missing(),
                other => other,
            }),
            (None, None) => Err(self.missing()),
        }
    }

    /// The missing-credentials failure naming where credentials go.
    fn missing(&self) -> AuthFailure {
        let hint = match (&self.api_keys, &self.jwt) {
            (Some(keys), None) => std::sync::Arc::clone(keys.hint()),
            (None, _) => "send Authorization: Bearer <token>".into(),
            (Some(keys), Some(_)) => {
                if keys.carrier() == http::header::AUTHORIZATION {
                    "send Authorization: Bearer <API key or token>".into()
                } else {
                    format!(
                        "send the API key in the {} header, or Authorization: Bearer <token>",
                        keys.carrier()
                    )
                    .into()
                }
            }
        };
        AuthFailure::MissingCredentials { hint }
    }
}

/// Whether a credential looks like a JWT: three dot-separated parts (a
/// JWS compact serialization), none empty but the signature's.
fn looks_like_jwt(credential: &str) -> bool {
    let mut parts = credential.split('.');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some(h), Some(p), Some(_), None) if !h.is_empty() && !p.is_empty()
    )
}
