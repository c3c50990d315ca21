//! The JOSE side of a token: algorithm names, its header read without
//! allocating (`alg`, `kid`, `crit`), and its signature and registered
//! claims checked by `jsonwebtoken`, with its errors as failures.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flint_api::function::JwtAlgorithm;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::failure::AuthFailure;
/// The algorithm's name as in a JWS header.
pub(super) const fn alg_name(alg: JwtAlgorithm) -> &'static str {
    match alg {
        JwtAlgorithm::RS256 => "RS256",
        JwtAlgorithm::RS384 => "RS384",
        JwtAlgorithm::RS512 => "RS512",
        JwtAlgorithm::PS256 => "PS256",
        JwtAlgorithm::PS384 => "PS384",
        JwtAlgorithm::PS512 => "PS512",
        JwtAlgorithm::ES256 => "ES256",
        JwtAlgorithm::ES384 => "ES384",
        JwtAlgorithm::EdDSA => "EdDSA",
        JwtAlgorithm::HS256 => "HS256",
        JwtAlgorithm::HS384 => "HS384",
        JwtAlgorithm::HS512 => "HS512",
    }
}

pub(super) const fn to_jsonwebtoken(alg: JwtAlgorithm) -> Algorithm {
    match alg {
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::RS384 => Algorithm::RS384,
        JwtAlgorithm::RS512 => Algorithm::RS512,
        JwtAlgorithm::PS256 => Algorithm::PS256,
        JwtAlgorithm::PS384 => Algorithm::PS384,
        JwtAlgorithm::PS512 => Algorithm::PS512,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::ES384 => Algorithm::ES384,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::HS384 => Algorithm::HS384,
        JwtAlgorithm::HS512 => Algorithm::HS512,
    }
}

const ALL_ALGORITHMS: [JwtAlgorithm; 12] = [
    JwtAlgorithm::RS256,
    JwtAlgorithm::RS384,
    JwtAlgorithm::RS512,
    JwtAlgorithm::PS256,
    JwtAlgorithm::PS384,
    JwtAlgorithm::PS512,
    JwtAlgorithm::ES256,
    JwtAlgorithm::ES384,
    JwtAlgorithm::EdDSA,
    JwtAlgorithm::HS256,
    JwtAlgorithm::HS384,
    JwtAlgorithm::HS512,
];

/// The algorithm named `name` in a JWS header, if the gateway knows it.
fn parse_alg(name: &str) -> Option<JwtAlgorithm> {
    ALL_ALGORITHMS.into_iter().find(|a| alg_name(*a) == name)
}

/// The JOSE header fields the gateway reads.
#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    kid: Option<Cow<'a, str>>,
    /// Critical extensions (RFC 7515 §4.1.11): none is understood, so a
    /// token that has any is refused.
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// Reads `alg` and `kid` from the token's header, decoding into `scratch`
/// when it fits (it nearly always does). `alg` is `None` for `none` and
/// for algorithms the gateway does not know.
pub(super) fn read_header<'s>(
    token: &str,
    scratch: &'s mut [u8; 512],
) -> Result<(Option<JwtAlgorithm>, Option<Cow<'s, str>>), AuthFailure> {
    const MALFORMED: AuthFailure =
        AuthFailure::MalformedToken("expected three base64url parts separated by dots");
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(MALFORMED);
    };
    let bad_header = AuthFailure::MalformedToken("the token's header is not base64url JSON");
    let raw: RawHeader<'_> = match URL_SAFE_NO_PAD.decode_slice(header, scratch.as_mut_slice()) {
        Ok(n) => serde_json::from_slice(&scratch[..n]).map_err(|_| bad_header)?,
        Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
            let bytes = URL_SAFE_NO_PAD
                .decode(header)
                .map_err(|_| bad_header.clone())?;
            let raw: RawHeader<'_> = serde_json::from_slice(&bytes).map_err(|_| bad_header)?;
            return header_fields(RawHeader {
                alg: Cow::Owned(raw.alg.into_owned()),
                kid: raw.kid.map(|k| Cow::Owned(k.into_owned())),
                crit: raw.crit,
            });
        }
        Err(_) => return Err(bad_header),
    };
    header_fields(raw)
}

fn header_fields(
    raw: RawHeader<'_>,
) -> Result<(Option<JwtAlgorithm>, Option<Cow<'_, str>>), AuthFailure> {
    if raw.crit.is_some() {
        return Err(AuthFailure::MalformedToken(
            "the token has critical header extensions the gateway does not support",
        ));
    }
    Ok((parse_alg(&raw.alg), raw.kid))
}

/// Verifies the signature and the registered claims, and returns the claims.
pub(super) fn decode(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
) -> Result<Map<String, Value>, AuthFailure> {
    jsonwebtoken::decode::<Map<String, Value>>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|error| match error.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_)
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::Crypto(_) => AuthFailure::InvalidSignature,
            ErrorKind::ExpiredSignature => AuthFailure::Expired,
            ErrorKind::ImmatureSignature => AuthFailure::NotYetValid,
            ErrorKind::InvalidIssuer => AuthFailure::WrongIssuer,
            ErrorKind::InvalidAudience => AuthFailure::WrongAudience,
            ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
                "iss" => AuthFailure::WrongIssuer,
                "aud" => AuthFailure::WrongAudience,
                "exp" => AuthFailure::MalformedToken("the token has no exp claim"),
                _ => AuthFailure::MalformedToken("the token lacks a registered claim"),
            },
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                AuthFailure::AlgorithmNotAllowed("the token's alg does not fit the key")
            }
            _ => AuthFailure::MalformedToken("the token's claims are not valid JSON"),
        })
}
