//! Rules that cannot be built: each error names the field at fault.

use flint_api::function::{ApiKeyAuth, AuthSpec, JwtAlgorithm::*, KeySource};

use super::fixtures::*;
use crate::gateway::auth::{AuthConfigError, Credentials, FunctionAuth};

#[test]
fn config_error_table() {
    let hmac = |algorithms: &[flint_api::function::JwtAlgorithm], key: bool| {
        let mut rule = jwt_rule(algorithms);
        rule.jwks_file = None;
        rule.hmac_key = key.then(|| secret("hmac"));
        jwt_spec(rule)
    };
    let no_key_set = {
        let mut rule = jwt_rule(&[RS256]);
        rule.jwks_file = None;
        jwt_spec(rule)
    };
    let no_audience = {
        let mut rule = jwt_rule(&[RS256]);
        rule.audiences = Vec::new();
        jwt_spec(rule)
    };
    let no_issuer = {
        let mut rule = jwt_rule(&[RS256]);
        rule.issuer = String::new();
        jwt_spec(rule)
    };
    let bad_forward = {
        let mut rule = jwt_rule(&[RS256]);
        rule.forward_claims = vec![forward("bad claim")];
        jwt_spec(rule)
    };
    let no_source = AuthSpec {
        api_keys: Some(ApiKeyAuth {
            keys: KeySource::default(),
            header: None,
        }),
        jwt: None,
    };
    let with_hmac = |len: usize| Credentials {
        hmac_key: Some(vec![7; len]),
        ..Credentials::default()
    };
    let document = |bytes: &[u8]| credentials_with_document(bytes.to_vec());
    #[rustfmt::skip]
    let cases: Vec<(&str, AuthSpec, Credentials, AuthConfigError, &str)> = vec![
        ("no method", AuthSpec::default(), Credentials::default(), AuthConfigError::NoMethod, "spec.auth: set apiKeys, jwt or both"),
        ("no key source", no_source, Credentials::default(), AuthConfigError::NoKeySource { field: "spec.auth.apiKeys.keys" }, "spec.auth.apiKeys.keys: name a secretName (cluster), a file or an env (flint dev)"),
        ("bad key header", api_key_spec(Some("X Api Key")), Credentials::default(), AuthConfigError::BadKeyHeader { header: "X Api Key".into() }, "spec.auth.apiKeys.header: \"X Api Key\" is not a valid header name"),
        ("HS256 without hmacKey", hmac(&[HS256], false), Credentials::default(), AuthConfigError::HmacKeyNeeded, "spec.auth.jwt.hmacKey: HS256, HS384 and HS512 need hmacKey"),
        ("hmacKey without HS", { let mut s = hmac(&[RS256], true); s.jwt.as_mut().unwrap().jwks_file = Some("j".into()); s }, Credentials::default(), AuthConfigError::HmacKeyUnused, "spec.auth.jwt.algorithms: hmacKey needs an HS algorithm in algorithms"),
        ("short HMAC key", hmac(&[HS256], true), with_hmac(16), AuthConfigError::HmacKeyTooShort { len: 16, min: 32 }, "spec.auth.jwt.hmacKey: the key is 16 bytes; HMAC keys must be at least 32 bytes"),
        ("empty HMAC key", hmac(&[HS256], true), with_hmac(0), AuthConfigError::HmacKeyTooShort { len: 0, min: 32 }, "spec.auth.jwt.hmacKey: the key is 0 bytes; HMAC keys must be at least 32 bytes"),
        ("RS256 without a key set", no_key_set, Credentials::default(), AuthConfigError::NoKeySet { algorithm: "RS256" }, "spec.auth.jwt: RS256 needs jwksUrl or jwksFile (flint dev)"),
        ("unparseable key set", jwt_spec(jwt_rule(&[RS256])), document(b"{not json"), AuthConfigError::BadJwksDocument { reason: "key must be a string at line 1 column 2".into() }, "spec.auth.jwt.jwksFile: not a JSON Web Key Set: key must be a string at line 1 column 2"),
        ("key set without keys", jwt_spec(jwt_rule(&[RS256])), document(b"{}"), AuthConfigError::BadJwksDocument { reason: "missing field `keys` at line 1 column 2".into() }, "spec.auth.jwt.jwksFile: not a JSON Web Key Set: missing field `keys` at line 1 column 2"),
        ("no audience", no_audience, Credentials::default(), AuthConfigError::NoAudience, "spec.auth.jwt.audiences: name at least one audience"),
        ("no issuer", no_issuer, Credentials::default(), AuthConfigError::NoIssuer, "spec.auth.jwt.issuer: must not be empty"),
        ("no algorithm", jwt_spec(jwt_rule(&[])), Credentials::default(), AuthConfigError::NoAlgorithm, "spec.auth.jwt.algorithms: name at least one algorithm"),
        ("bad forwarded claim", bad_forward, Credentials::default(), AuthConfigError::BadForwardClaim { name: "bad claim".into() }, "spec.auth.jwt.forwardClaims: \"bad claim\" does not make a valid header name"),
    ];
    let registry = registry();
    for (name, spec, credentials, error, text) in cases {
        let got = FunctionAuth::new(&spec, credentials, &registry).map(drop);
        assert_eq!(got, Err(error), "{name}");
        assert_eq!(got.unwrap_err().to_string(), text, "{name}");
    }
}

#[test]
fn empty_secrets_are_not_config_errors() {
    let registry = registry();
    assert!(FunctionAuth::new(&api_key_spec(None), Credentials::default(), &registry).is_ok());
    let mut rule = jwt_rule(&[HS256]);
    rule.jwks_file = None;
    rule.hmac_key = Some(secret("hmac"));
    assert!(FunctionAuth::new(&jwt_spec(rule), Credentials::default(), &registry).is_ok());
    // A key set file named but not (yet) given: tokens are refused.
    assert!(
        FunctionAuth::new(
            &jwt_spec(jwt_rule(&[ES256])),
            Credentials::default(),
            &registry
        )
        .is_ok()
    );
}
