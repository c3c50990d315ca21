//! What the rule tests share beyond [`super::tokens`]: specs, settings,
//! headers and the outcome of a check.

use std::time::Duration;

use flint_api::function::{
    ApiKeyAuth, AuthSpec, ClaimName, JwtAlgorithm, JwtAuth, KeySource, RequiredClaim,
};
use http::{HeaderMap, HeaderValue, header};

use super::super::{AuthFailure, Credentials, FunctionAuth, Identity, JwksRegistry, JwksSettings};
pub use super::tokens::*;

/// A key source naming a Secret.
pub fn secret(name: &str) -> KeySource {
    KeySource {
        secret_name: Some(name.into()),
        ..KeySource::default()
    }
}

/// `spec.auth` with API keys only.
pub fn api_key_spec(header: Option<&str>) -> AuthSpec {
    AuthSpec {
        api_keys: Some(ApiKeyAuth {
            keys: secret("keys"),
            header: header.map(Into::into),
        }),
        jwt: None,
    }
}

/// A JWT rule for the test issuer and audience, accepting `algorithms`,
/// with its key set from a file (the test gives the document).
pub fn jwt_rule(algorithms: &[JwtAlgorithm]) -> JwtAuth {
    JwtAuth {
        issuer: ISSUER.into(),
        audiences: vec![AUDIENCE.into(), "other-audience".into()],
        jwks_url: None,
        jwks_file: Some("jwks.json".into()),
        algorithms: algorithms.to_vec(),
        hmac_key: None,
        clock_skew_seconds: 60,
        required_claims: Vec::new(),
        forward_claims: Vec::new(),
    }
}

pub fn jwt_spec(rule: JwtAuth) -> AuthSpec {
    AuthSpec {
        api_keys: None,
        jwt: Some(rule),
    }
}

pub fn required(name: &str, values: &[&str]) -> RequiredClaim {
    RequiredClaim {
        name: name.into(),
        values: values.iter().map(|v| (*v).into()).collect(),
    }
}

pub fn forward(name: &str) -> ClaimName {
    ClaimName(name.into())
}

/// Settings for tests: plain http to 127.0.0.1, short intervals.
pub fn local_settings(min_refresh: Duration) -> JwksSettings {
    JwksSettings {
        allow_http: true,
        min_refresh,
        timeout: Duration::from_secs(2),
        ..JwksSettings::default()
    }
}

pub fn registry() -> JwksRegistry {
    JwksRegistry::new(local_settings(Duration::from_millis(200)))
}

/// Headers with `Authorization: Bearer <credential>`.
pub fn bearer(credential: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {credential}")).unwrap(),
    );
    headers
}

/// Headers with `name: value`.
pub fn with_header(name: &'static str, value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(name, HeaderValue::from_str(value).unwrap());
    headers
}

pub fn credentials_with_document(document: Vec<u8>) -> Credentials {
    Credentials {
        jwks_document: Some(document),
        ..Credentials::default()
    }
}

/// A case's expected outcome: `Ok(())` or `Err((status, reason))`.
pub type Expected = Result<(), (u16, &'static str)>;

/// The outcome as the table states it: `Ok(())` or `(status, reason)`.
pub fn outcome(result: &Result<Identity, AuthFailure>) -> Expected {
    match result {
        Ok(_) => Ok(()),
        Err(f) => Err((f.status().as_u16(), f.reason())),
    }
}

pub async fn check(auth: &FunctionAuth, headers: &HeaderMap) -> Expected {
    outcome(&auth.authorize(headers).await)
}

/// A JWT rule fetching its keys from `url`.
pub fn remote_rule(url: &str, algorithms: &[JwtAlgorithm]) -> JwtAuth {
    JwtAuth {
        jwks_url: Some(url.into()),
        jwks_file: None,
        ..jwt_rule(algorithms)
    }
}
