//! A JSON Web Key Set as verification keys: which key verifies a token
//! (by `kid` and algorithm), and which published keys are never used.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flint_api::function::JwtAlgorithm;
use jsonwebtoken::DecodingKey;
use ring::digest::{SHA256, SHA256_OUTPUT_LEN, digest};
use serde::Deserialize;

use super::failure::AuthFailure;

/// What a key can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    /// Whether a key of this kind verifies `alg` (never an HMAC one: a key
    /// set holds public keys, and a public key must never serve as an HMAC
    /// secret).
    fn fits(self, alg: JwtAlgorithm) -> bool {
        use JwtAlgorithm::*;
        match self {
            Self::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            Self::P256 => alg == ES256,
            Self::P384 => alg == ES384,
            Self::Ed25519 => alg == EdDSA,
        }
    }
}

/// One verification key of a key set.
struct KeyEntry {
    kid: Option<String>,
    /// The key's declared `alg`, if any: then only that algorithm.
    alg: Option<String>,
    kind: KeyKind,
    key: DecodingKey,
}

/// A key set's verification keys. Keys that cannot verify signatures
/// (encryption keys, symmetric `oct` keys, unknown types or curves) are
/// left out.
pub(super) struct KeySet {
    keys: Vec<KeyEntry>,
    /// Unique in the process: tokens verified against this set are
    /// remembered with it, and are verified again once another set
    /// replaces it.
    generation: u64,
    /// SHA-256 of the document it was parsed from: a refetch of the same
    /// document keeps this set (and its generation).
    digest: [u8; SHA256_OUTPUT_LEN],
}

/// The generation the next parsed key set gets.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (&k.kid, k.kind)))
            .finish()
    }
}

/// A key set's key as published (RFC 7517), only the fields used.
#[derive(Deserialize)]
struct RawKey {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

#[derive(Deserialize)]
struct RawKeySet {
    keys: Vec<serde_json::Value>,
}

/// What a lookup found.
pub(super) enum Lookup {
    /// The index of the key to verify with.
    Found(usize),
    /// No key has the token's `kid` (for its algorithm): a newer key set
    /// may have it.
    Missing,
    /// The token names no `kid` and several keys fit: refetching will not
    /// help.
    Ambiguous,
}

impl KeySet {
    /// Parses a JSON Web Key Set, keeping the keys that verify signatures.
    pub(super) fn parse(document: &[u8]) -> Result<Self, String> {
        let raw: RawKeySet = serde_json::from_slice(document).map_err(|e| e.to_string())?;
        let keys = raw
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<RawKey>(value).ok())
            .filter_map(KeyEntry::from_raw)
            .collect();
        let mut sha = [0u8; SHA256_OUTPUT_LEN];
        sha.copy_from_slice(digest(&SHA256, document).as_ref());
        Ok(Self {
            keys,
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            digest: sha,
        })
    }

    /// This set's generation, unique in the process.
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether `other` was parsed from the same document.
    pub(super) fn same_document(&self, other: &Self) -> bool {
        self.digest == other.digest
    }

    /// How many verification keys the set holds.
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The key to verify a token signed with `alg` naming `kid`. Without a
    /// `kid`, the one key that fits `alg`, if only one does.
    pub(super) fn find(&self, kid: Option<&str>, alg: JwtAlgorithm) -> Lookup {
        let alg_name = super::jose::alg_name(alg);
        let fits =
            |k: &KeyEntry| k.kind.fits(alg) && k.alg.as_deref().is_none_or(|a| a == alg_name);
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .position(|k| k.kid.as_deref() == Some(kid) && fits(k))
                .map_or(Lookup::Missing, Lookup::Found),
            None => {
                let mut candidates = self.keys.iter().enumerate().filter(|(_, k)| fits(k));
                match (candidates.next(), candidates.next()) {
                    (Some((i, _)), None) => Lookup::Found(i),
                    (Some(_), Some(_)) => Lookup::Ambiguous,
                    (None, _) => Lookup::Missing,
                }
            }
        }
    }

    /// The key at `index` (from [`KeySet::find`]).
    pub(super) fn key(&self, index: usize) -> Option<&DecodingKey> {
        self.keys.get(index).map(|k| &k.key)
    }
}

impl KeyEntry {
    fn from_raw(raw: RawKey) -> Option<Self> {
        if raw.usage.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        if raw
            .key_ops
            .as_ref()
            .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
        {
            return None;
        }
        let (kind, key) = match (raw.kty.as_str(), raw.crv.as_deref()) {
            ("RSA", _) => (
                KeyKind::Rsa,
                DecodingKey::from_rsa_components(raw.n.as_deref()?, raw.e.as_deref()?).ok()?,
            ),
            ("EC", Some(crv @ ("P-256" | "P-384"))) => (
                if crv == "P-256" {
                    KeyKind::P256
                } else {
                    KeyKind::P384
                },
                DecodingKey::from_ec_components(raw.x.as_deref()?, raw.y.as_deref()?).ok()?,
            ),
            ("OKP", Some("Ed25519")) => (
                KeyKind::Ed25519,
                DecodingKey::from_ed_components(raw.x.as_deref()?).ok()?,
            ),
            // `oct` (symmetric) keys are never taken from a key set.
            _ => return None,
        };
        Some(Self {
            kid: raw.kid,
            alg: raw.alg,
            kind,
            key,
        })
    }
}

/// The key for (`kid`, `alg`) in `keys`, with its index, or why none fits.
pub(super) fn lookup(
    keys: &Arc<KeySet>,
    kid: Option<&str>,
    alg: JwtAlgorithm,
) -> Result<(Arc<KeySet>, usize), AuthFailure> {
    match keys.find(kid, alg) {
        Lookup::Found(i) => Ok((Arc::clone(keys), i)),
        Lookup::Missing => Err(AuthFailure::UnknownKey(
            "no key of the issuer matches the token's kid and algorithm",
        )),
        Lookup::Ambiguous => Err(AuthFailure::UnknownKey(AMBIGUOUS)),
    }
}

/// Why a token without `kid` found no key while several would fit.
pub(super) const AMBIGUOUS: &str = "the token names no kid and several of the issuer's keys fit";
