//! JWTs: the header read without allocating (`alg`, `kid`), the signature
//! and the registered claims (`exp`, `nbf`, `iss`, `aud`) checked by
//! `jsonwebtoken`, then the Function's required claims, and the identity
//! built from `sub` and the forwarded claims. A token that passed is
//! remembered ([`TokenCache`]) and let through again without all that.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flint_api::function::{JwtAlgorithm, JwtAuth, RequiredClaim};
use http::{HeaderName, HeaderValue};
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Map, Value};

use super::failure::{AuthConfigError, AuthFailure};
use super::identity::{CLAIM_HEADER_PREFIX, Identity};
use super::jose::{alg_name, decode, read_header, to_jsonwebtoken};
use super::jwks::{JwksRegistry, KeySource};
use super::keyset::KeySet;
use super::token_cache::{self, DEFAULT_CAPACITY, TokenCache, Verified};

/// Tokens longer than this are refused unread.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// A forwarded claim's header value longer than this is dropped (not cut:
/// a cut value could mean something else).
pub const MAX_CLAIM_HEADER_BYTES: usize = 1024;
/// The shortest HMAC key accepted: 256 bits, the least RFC 7518 §3.2
/// allows (for HS256; HS384 and HS512 ask for more and get a warning).
pub const MIN_HMAC_KEY_BYTES: usize = 32;

/// A required claim, with its name shared by the failures it causes.
#[derive(Debug)]
struct Required {
    name: Arc<str>,
    values: Vec<String>,
}

/// A Function's JWT rule, ready to check tokens.
pub(super) struct JwtRule {
    /// One `Validation` per accepted algorithm, in the spec's order
    /// (`jsonwebtoken` checks that the key's family fits each algorithm
    /// listed, so each algorithm gets its own).
    validations: Vec<(JwtAlgorithm, Validation)>,
    /// The HMAC key, when HS algorithms are accepted and one was given.
    hmac: Option<DecodingKey>,
    /// Where asymmetric keys come from, when such algorithms are accepted.
    keys: Option<KeySource>,
    required: Vec<Required>,
    forward: Vec<(String, HeaderName)>,
    /// The tokens that verified.
    cache: TokenCache,
    /// How many tokens were checked in full (the others were remembered).
    verified_in_full: AtomicU64,
}

impl std::fmt::Debug for JwtRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtRule")
            .field(
                "algorithms",
                &self.validations.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
            )
            .field("hmac_key", &self.hmac.is_some())
            .field("keys", &self.keys)
            .field("required", &self.required)
            .field("forward", &self.forward)
            .field("cache", &self.cache)
            .finish()
    }
}

impl JwtRule {
    /// Checks `spec` and builds the rule. `hmac_key` and `jwks_document`
    /// are the resolved secret material (see
    /// [`Credentials`](super::Credentials)).
    pub(super) fn new(
        spec: &JwtAuth,
        hmac_key: Option<&[u8]>,
        jwks_document: Option<&[u8]>,
        registry: &JwksRegistry,
    ) -> Result<Self, AuthConfigError> {
        if spec.issuer.is_empty() {
            return Err(AuthConfigError::NoIssuer);
        }
        if spec.audiences.iter().all(String::is_empty) {
            return Err(AuthConfigError::NoAudience);
        }
        if spec.algorithms.is_empty() {
            return Err(AuthConfigError::NoAlgorithm);
        }
        let wants_hmac = spec.algorithms.iter().any(|a| a.is_hmac());
        match (wants_hmac, spec.hmac_key.is_some()) {
            (true, false) => return Err(AuthConfigError::HmacKeyNeeded),
            (false, true) => return Err(AuthConfigError::HmacKeyUnused),
            _ => {}
        }
        if let Some(source) = &spec.hmac_key
            && source.secret_name.is_none()
            && source.file.is_none()
            && source.env.is_none()
        {
            return Err(AuthConfigError::NoKeySource {
                field: "spec.auth.jwt.hmacKey",
            });
        }
        let hmac = match hmac_key.filter(|_| wants_hmac) {
            Some(key) if key.len() < MIN_HMAC_KEY_BYTES => {
                return Err(AuthConfigError::HmacKeyTooShort {
                    len: key.len(),
                    min: MIN_HMAC_KEY_BYTES,
                });
            }
            Some(key) => Some(DecodingKey::from_secret(key)),
            None => None,
        };
        let keys = match spec.algorithms.iter().find(|a| !a.is_hmac()) {
            None => None,
            Some(first) => Some(match (jwks_document, &spec.jwks_url, &spec.jwks_file) {
                (Some(document), _, _) => KeySource::Local(Arc::new(
                    KeySet::parse(document)
                        .map_err(|reason| AuthConfigError::BadJwksDocument { reason })?,
                )),
                (None, Some(url), _) => KeySource::Remote(registry.cache(url)?),
                (None, None, Some(_)) => KeySource::Unavailable,
                (None, None, None) => {
                    return Err(AuthConfigError::NoKeySet {
                        algorithm: alg_name(*first),
                    });
                }
            }),
        };
        let mut validations = Vec::with_capacity(spec.algorithms.len());
        for alg in &spec.algorithms {
            if validations.iter().any(|(a, _)| a == alg) {
                continue;
            }
            let mut v = Validation::new(to_jsonwebtoken(*alg));
            v.leeway = u64::from(spec.clock_skew_seconds);
            v.validate_exp = true;
            v.validate_nbf = true;
            v.validate_aud = true;
            v.set_issuer(&[&spec.issuer]);
            v.set_audience(&spec.audiences);
            v.set_required_spec_claims(&["exp", "iss", "aud"]);
            validations.push((*alg, v));
        }
        let required = spec
            .required_claims
            .iter()
            .map(|RequiredClaim { name, values }| Required {
                name: name.as_str().into(),
                values: values.clone(),
            })
            .collect();
        let forward = spec
            .forward_claims
            .iter()
            .map(|claim| {
                let header = format!("{CLAIM_HEADER_PREFIX}{}", claim.0.to_ascii_lowercase());
                HeaderName::from_bytes(header.as_bytes())
                    .map(|h| (claim.0.clone(), h))
                    .map_err(|_| AuthConfigError::BadForwardClaim {
                        name: claim.0.clone(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            validations,
            hmac,
            keys,
            required,
            forward,
            cache: TokenCache::new(DEFAULT_CAPACITY),
            verified_in_full: AtomicU64::new(0),
        })
    }

    /// Checks `token` as [`JwtRule::verify_in_full`] does, unless it passed
    /// that check before and is still valid ([`TokenCache`]): then its
    /// identity is had from the cache, without reading the token.
    pub(super) async fn verify(&self, token: &str) -> Result<Identity, AuthFailure> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthFailure::MalformedToken("token is larger than 16 KiB"));
        }
        let Some(now) = token_cache::now() else {
            return self
                .verify_in_full(token)
                .await
                .map(|(identity, _)| identity);
        };
        let key = self.cache.key(token);
        let current = self.keys.as_ref().and_then(KeySource::generation);
        if let Some(identity) = self.cache.get(key, token, now, current) {
            return Ok(identity);
        }
        let (identity, verified) = self.verify_in_full(token).await?;
        if let Some(verified) = verified {
            self.cache.insert(key, token, &identity, verified, now);
        }
        Ok(identity)
    }

    /// How many tokens were checked in full since the rule was built.
    #[cfg(test)]
    pub(super) fn verified_in_full(&self) -> u64 {
        self.verified_in_full.load(Ordering::Relaxed)
    }

    /// The token cache.
    #[cfg(test)]
    pub(super) fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// Checks `token`: its header, algorithm, signature, registered claims
    /// and the required claims, in that order; only a token whose
    /// signature verifies gets a claim-related answer. With the identity,
    /// what it verified against, for the cache (`None`: its `exp` or `nbf`
    /// is not a number of seconds, it is not remembered).
    async fn verify_in_full(
        &self,
        token: &str,
    ) -> Result<(Identity, Option<Verified>), AuthFailure> {
        self.verified_in_full.fetch_add(1, Ordering::Relaxed);
        let mut scratch = [0u8; 512];
        let (alg, kid) = read_header(token, &mut scratch)?;
        let Some((alg, validation)) = self.validations.iter().find(|(a, _)| Some(*a) == alg) else {
            return Err(AuthFailure::AlgorithmNotAllowed(match alg {
                None => "the token's alg is none or unknown",
                Some(_) => "the token's alg is not one this function accepts",
            }));
        };
        let (claims, key_set) = if alg.is_hmac() {
            // HS tokens verify only with the configured HMAC key, never
            // with a key from the key set.
            let key = self.hmac.as_ref().ok_or(AuthFailure::UnknownKey(
                "no HMAC key is available to verify this token",
            ))?;
            (decode(token, key, validation)?, None)
        } else {
            let source = self.keys.as_ref().ok_or(AuthFailure::AlgorithmNotAllowed(
                "the token's alg is not one this function accepts",
            ))?;
            let (keys, index) = source.key_for(kid.as_deref(), *alg).await?;
            let key = keys.key(index).ok_or(AuthFailure::UnknownKey(
                "no key of the issuer matches the token's kid and algorithm",
            ))?;
            (decode(token, key, validation)?, Some(keys.generation()))
        };
        for required in &self.required {
            if !claim_satisfies(claims.get(&*required.name), &required.values) {
                return Err(AuthFailure::MissingClaim {
                    claim: Arc::clone(&required.name),
                });
            }
        }
        let seconds = |claim| claims.get(claim).map(Value::as_u64);
        let verified = match (seconds("exp"), seconds("nbf")) {
            (Some(Some(exp)), None) => Some(Verified {
                key_set,
                exp,
                nbf: 0,
            }),
            (Some(Some(exp)), Some(Some(nbf))) => Some(Verified { key_set, exp, nbf }),
            _ => None,
        };
        Ok((self.identity(&claims), verified))
    }

    /// The identity of a verified token: `sub` and the forwarded claims
    /// whose values make headers (strings as they are, others as compact
    /// JSON, at most [`MAX_CLAIM_HEADER_BYTES`]).
    fn identity(&self, claims: &Map<String, Value>) -> Identity {
        let subject = match claims.get("sub") {
            Some(Value::String(s)) => claim_header_value(s),
            _ => None,
        };
        let mut forwarded = Vec::with_capacity(self.forward.len());
        for (claim, header) in &self.forward {
            let value = match claims.get(claim) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => claim_header_value(s),
                Some(other) => claim_header_value(&other.to_string()),
            };
            if let Some(value) = value {
                forwarded.push((header.clone(), value));
            } else if claims.contains_key(claim) {
                tracing::debug!(
                    claim,
                    "forwarded claim dropped: not a valid header value or over 1 KiB"
                );
            }
        }
        Identity::jwt(subject, forwarded)
    }
}

/// The header value for a claim, if it makes one of at most
/// [`MAX_CLAIM_HEADER_BYTES`].
fn claim_header_value(value: &str) -> Option<HeaderValue> {
    if value.is_empty() || value.len() > MAX_CLAIM_HEADER_BYTES {
        return None;
    }
    HeaderValue::from_str(value).ok()
}

/// Whether a claim's value satisfies a required claim: it equals one of
/// `accepted`, or it is an array holding one, or a space-separated string
/// (like `scope`) holding one. Non-string values compare as compact JSON.
fn claim_satisfies(claim: Option<&Value>, accepted: &[String]) -> bool {
    let matches = |v: &Value| match v {
        Value::String(s) => accepted.iter().any(|a| a == s),
        other => {
            let text = other.to_string();
            accepted.contains(&text)
        }
    };
    match claim {
        None | Some(Value::Null) => false,
        Some(Value::Array(items)) => items.iter().any(matches),
        Some(Value::String(s)) => {
            accepted.iter().any(|a| a == s)
                || s.split(' ')
                    .any(|word| !word.is_empty() && accepted.iter().any(|a| a == word))
        }
        Some(other) => matches(other),
    }
}
