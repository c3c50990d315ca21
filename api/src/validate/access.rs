//! Validation of who may reach a Function (`spec.auth`, `spec.domains`,
//! `spec.tls`): the same rules as the CRD's schema bounds and CEL rules.

use std::collections::HashSet;

use super::ValidationErrors;
use crate::domains::Domain;
use crate::function::{AuthSpec, FunctionSpec, JwtAuth, KeySource};
use crate::names;

/// Most custom domains one Function may claim.
const MAX_DOMAINS: usize = 32;

/// Checks `spec.auth`, `spec.domains` and `spec.tls`.
pub(super) fn validate_access(spec: &FunctionSpec, errs: &mut ValidationErrors) {
    if let Some(auth) = &spec.auth {
        validate_auth(auth, errs);
    }
    if spec.domains.len() > MAX_DOMAINS {
        errs.push(
            "spec.domains",
            format!("must have at most {MAX_DOMAINS} entries"),
        );
    }
    let mut seen = HashSet::new();
    for (i, entry) in spec.domains.iter().enumerate() {
        if let Err(message) = Domain::parse(entry) {
            errs.push(format!("spec.domains[{i}]"), message);
        }
        if !seen.insert(entry.as_str()) {
            errs.push(
                format!("spec.domains[{i}]"),
                format!("{entry:?} is listed twice"),
            );
        }
    }
    if let Some(name) = spec.tls.as_ref().and_then(|t| t.secret_name.as_deref()) {
        secret_name(errs, "spec.tls.secretName", name);
    }
}

fn validate_auth(auth: &AuthSpec, errs: &mut ValidationErrors) {
    if auth.api_keys.is_none() && auth.jwt.is_none() {
        errs.push("spec.auth", "set apiKeys, jwt or both");
    }
    if let Some(keys) = &auth.api_keys {
        key_source(errs, "spec.auth.apiKeys.keys", &keys.keys);
        if let Some(header) = &keys.header
            && (header.is_empty()
                || header.len() > 64
                || !header
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            errs.push(
                "spec.auth.apiKeys.header",
                format!("{header:?} must be a header name of at most 64 letters, digits and '-'"),
            );
        }
    }
    if let Some(jwt) = &auth.jwt {
        validate_jwt(jwt, errs);
    }
}

fn validate_jwt(jwt: &JwtAuth, errs: &mut ValidationErrors) {
    let path = "spec.auth.jwt";
    if jwt.issuer.is_empty() || jwt.issuer.len() > 1024 {
        errs.push(format!("{path}.issuer"), "must be 1 to 1024 characters");
    }
    if jwt.audiences.is_empty() || jwt.audiences.len() > 16 {
        errs.push(format!("{path}.audiences"), "must list 1 to 16 audiences");
    }
    if jwt.jwks_url.is_none() && jwt.jwks_file.is_none() && jwt.hmac_key.is_none() {
        errs.push(path, "set jwksUrl, jwksFile (flint dev) or hmacKey");
    }
    if let Some(url) = &jwt.jwks_url
        && (url.len() > 2048 || !(url.starts_with("https://") || url.starts_with("http://")))
    {
        errs.push(
            format!("{path}.jwksUrl"),
            format!("{url:?} must be an http(s) URL of at most 2048 characters"),
        );
    }
    if jwt.algorithms.is_empty() || jwt.algorithms.len() > 12 {
        errs.push(format!("{path}.algorithms"), "must list 1 to 12 algorithms");
    }
    let hmac = jwt.algorithms.iter().any(|a| a.is_hmac());
    match (&jwt.hmac_key, hmac) {
        (None, true) => errs.push(
            format!("{path}.algorithms"),
            "HS256, HS384 and HS512 need hmacKey",
        ),
        (Some(_), false) => errs.push(
            format!("{path}.hmacKey"),
            "hmacKey needs an HS algorithm in algorithms",
        ),
        (Some(key), true) => key_source(errs, &format!("{path}.hmacKey"), key),
        (None, false) => {}
    }
    if jwt.clock_skew_seconds > 600 {
        errs.push(
            format!("{path}.clockSkewSeconds"),
            format!("must be at most 600, got {}", jwt.clock_skew_seconds),
        );
    }
    if jwt.required_claims.len() > 16 {
        errs.push(
            format!("{path}.requiredClaims"),
            "must have at most 16 entries",
        );
    }
    for (i, claim) in jwt.required_claims.iter().enumerate() {
        if claim.name.is_empty() || claim.name.len() > 128 {
            errs.push(
                format!("{path}.requiredClaims[{i}].name"),
                "must be 1 to 128 characters",
            );
        }
        if claim.values.is_empty() || claim.values.len() > 32 {
            errs.push(
                format!("{path}.requiredClaims[{i}].values"),
                "must list 1 to 32 values",
            );
        }
    }
    if jwt.forward_claims.len() > 16 {
        errs.push(
            format!("{path}.forwardClaims"),
            "must have at most 16 entries",
        );
    }
    for (i, claim) in jwt.forward_claims.iter().enumerate() {
        let name = &claim.0;
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            errs.push(
                format!("{path}.forwardClaims[{i}]"),
                format!("{name:?} must be 1 to 64 letters, digits, '_' or '-'"),
            );
        }
    }
}

fn key_source(errs: &mut ValidationErrors, path: &str, source: &KeySource) {
    if source.secret_name.is_none() && source.file.is_none() && source.env.is_none() {
        errs.push(
            path,
            "name a secretName (cluster), a file or an env (flint dev)",
        );
    }
    if source.file.is_some() && source.env.is_some() {
        errs.push(path, "file and env are exclusive");
    }
    if let Some(name) = &source.secret_name {
        secret_name(errs, &format!("{path}.secretName"), name);
    }
    if let Some(key) = &source.key
        && (key.is_empty()
            || key.len() > 253
            || !key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)))
    {
        errs.push(
            format!("{path}.key"),
            format!("{key:?} must be a Secret data key: letters, digits, '-', '.' or '_'"),
        );
    }
    if let Some(env) = &source.env
        && (env.is_empty()
            || env.len() > 256
            || env.starts_with(|c: char| c.is_ascii_digit())
            || !env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    {
        errs.push(
            format!("{path}.env"),
            format!("{env:?} must be an environment variable name"),
        );
    }
}

fn secret_name(errs: &mut ValidationErrors, path: &str, name: &str) {
    if name.is_empty() || !names::is_dns1123_subdomain(name) {
        errs.push(
            path,
            format!("{name:?} must be a Secret name (a lowercase DNS subdomain)"),
        );
    }
}
