//! API keys: held only as SHA-256 digests, the presented key's digest
//! compared in constant time against every one of them.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, header};
use ring::digest::{SHA256, SHA256_OUTPUT_LEN, digest};
use subtle::{Choice, ConstantTimeEq};

use super::failure::{AuthConfigError, AuthFailure};
use super::identity::Identity;

/// A Function's API keys and where a request carries one.
pub(super) struct ApiKeys {
    /// SHA-256 of each accepted key; the keys themselves are not kept.
    digests: Vec<[u8; SHA256_OUTPUT_LEN]>,
    /// The custom header carrying the key; `None` is `Authorization: Bearer`.
    header: Option<HeaderName>,
    /// Where the key goes, for the missing-credentials answer.
    hint: Arc<str>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("keys", &self.digests.len())
            .field("header", &self.carrier())
            .finish()
    }
}

impl ApiKeys {
    /// Digests `keys` (empty ones are dropped: they must never match) and
    /// parses the custom `header`, if any. No key at all is not an error:
    /// every request is then refused.
    pub(super) fn new(keys: &[Vec<u8>], header: Option<&str>) -> Result<Self, AuthConfigError> {
        let header = header
            .map(|h| {
                HeaderName::from_bytes(h.as_bytes()).map_err(|_| AuthConfigError::BadKeyHeader {
                    header: h.to_owned(),
                })
            })
            .transpose()?;
        let mut digests = Vec::with_capacity(keys.len());
        for key in keys.iter().filter(|k| !k.is_empty()) {
            let mut d = [0u8; SHA256_OUTPUT_LEN];
            d.copy_from_slice(digest(&SHA256, key).as_ref());
            digests.push(d);
        }
        let hint = match &header {
            Some(h) => format!("send the API key in the {h} header"),
            None => "send Authorization: Bearer <API key>".to_owned(),
        };
        Ok(Self {
            digests,
            header,
            hint: hint.into(),
        })
    }

    /// How many keys are accepted.
    pub(super) fn len(&self) -> usize {
        self.digests.len()
    }

    /// The header that carries the key.
    pub(super) fn carrier(&self) -> HeaderName {
        self.header.clone().unwrap_or(header::AUTHORIZATION)
    }

    /// Where the key goes, for a missing-credentials answer.
    pub(super) fn hint(&self) -> &Arc<str> {
        &self.hint
    }

    /// The key the request presents, if any (empty counts as none).
    fn presented<'h>(&self, headers: &'h HeaderMap) -> Option<&'h [u8]> {
        let key = match &self.header {
            Some(name) => headers.get(name).map(|v| v.as_bytes().trim_ascii()),
            None => bearer(headers).map(str::as_bytes),
        };
        key.filter(|k| !k.is_empty())
    }

    /// Lets the request through when it carries one of the keys. The
    /// presented key's digest is compared with every key's, without
    /// stopping at a match, so the time taken tells nothing about which
    /// key (or how much of one) matched. Allocates nothing.
    pub(super) fn check(&self, headers: &HeaderMap) -> Result<Identity, AuthFailure> {
        let Some(key) = self.presented(headers) else {
            return Err(AuthFailure::MissingCredentials {
                hint: Arc::clone(&self.hint),
            });
        };
        let presented = digest(&SHA256, key);
        let mut matched = Choice::from(0);
        for accepted in &self.digests {
            matched |= accepted.as_slice().ct_eq(presented.as_ref());
        }
        if bool::from(matched) {
            Ok(Identity::api_key(self.carrier()))
        } else {
            Err(AuthFailure::InvalidKey)
        }
    }
}

/// The credential of an `Authorization: Bearer <credential>` header (the
/// scheme is case-insensitive), trimmed; `None` without one.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, credential) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let credential = credential.trim();
    (!credential.is_empty()).then_some(credential)
}
