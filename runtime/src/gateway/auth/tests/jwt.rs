//! JWTs with a key set given whole (no fetching): validity, issuer,
//! audience, algorithms, required and forwarded claims, size.

use flint_api::function::JwtAlgorithm::{self, *};
use flint_api::function::RequiredClaim;
use http::HeaderMap;
use serde_json::json;

use super::fixtures::*;
use crate::gateway::auth::{
    AuthMethod, Credentials, FunctionAuth, MAX_TOKEN_BYTES, strip_identity_headers,
};

const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-hmac";

/// The keys of the table: the key set holds `es`, `rsa` and `ed`;
/// `stranger` is in no key set.
struct Keys {
    es: TestKey,
    es384: TestKey,
    rsa: TestKey,
    ed: TestKey,
    stranger: TestKey,
}

fn keys() -> Keys {
    Keys {
        es: TestKey::es256("es-1"),
        es384: TestKey::es384("es384-1"),
        rsa: TestKey::rsa("rsa-1"),
        ed: TestKey::ed25519("ed-1"),
        stranger: TestKey::es256("es-1"),
    }
}

fn auth_with(rule: flint_api::function::JwtAuth, keys: &Keys) -> FunctionAuth {
    let document = jwks(&[&keys.es, &keys.es384, &keys.rsa, &keys.ed]);
    FunctionAuth::new(
        &jwt_spec(rule),
        credentials_with_document(document),
        &registry(),
    )
    .unwrap()
}

#[tokio::test]
async fn jwt_table() {
    let k = keys();
    let t = now();
    let default_algs: &[JwtAlgorithm] = &[RS256, ES256, EdDSA];
    #[rustfmt::skip]
    let cases: Vec<(&str, &[JwtAlgorithm], String, Expected)> = vec![
        ("valid ES256", default_algs, k.es.sign(&claims()), Ok(())),
        ("valid RS256", default_algs, k.rsa.sign(&claims()), Ok(())),
        ("valid EdDSA", default_algs, k.ed.sign(&claims()), Ok(())),
        ("valid ES384", &[ES384], k.es384.sign(&claims()), Ok(())),
        ("second audience", default_algs, k.es.sign(&claims_with(json!({"aud": "other-audience"}))), Ok(())),
        ("audience array naming one", default_algs, k.es.sign(&claims_with(json!({"aud": ["x", AUDIENCE]}))), Ok(())),
        ("expired", default_algs, k.es.sign(&claims_with(json!({"exp": t - 120}))), Err((401, "expired"))),
        ("expired within clock skew", default_algs, k.es.sign(&claims_with(json!({"exp": t - 30}))), Ok(())),
        ("not yet valid", default_algs, k.es.sign(&claims_with(json!({"nbf": t + 120}))), Err((401, "not_yet_valid"))),
        ("not yet valid within clock skew", default_algs, k.es.sign(&claims_with(json!({"nbf": t + 30}))), Ok(())),
        ("no exp", default_algs, k.es.sign(&claims_with(json!({"exp": null}))), Err((401, "malformed_token"))),
        ("wrong audience", default_algs, k.es.sign(&claims_with(json!({"aud": "someone-else"}))), Err((401, "wrong_audience"))),
        ("audience array naming none", default_algs, k.es.sign(&claims_with(json!({"aud": ["x", "y"]}))), Err((401, "wrong_audience"))),
        ("no audience", default_algs, k.es.sign(&claims_with(json!({"aud": null}))), Err((401, "wrong_audience"))),
        ("wrong issuer", default_algs, k.es.sign(&claims_with(json!({"iss": "https://evil.test"}))), Err((401, "wrong_issuer"))),
        ("no issuer", default_algs, k.es.sign(&claims_with(json!({"iss": null}))), Err((401, "wrong_issuer"))),
        ("signed by another key with the same kid", default_algs, k.stranger.sign(&claims()), Err((401, "invalid_signature"))),
        ("unknown kid", default_algs, TestKey::es256("es-9").sign(&claims()), Err((401, "unknown_key"))),
        ("alg none", default_algs, unsigned(&claims()), Err((401, "algorithm_not_allowed"))),
        ("algorithm not in the list", &[ES256], k.rsa.sign(&claims()), Err((401, "algorithm_not_allowed"))),
        ("EdDSA not in the list", &[RS256, ES256], k.ed.sign(&claims()), Err((401, "algorithm_not_allowed"))),
        ("alg confusion: HS256 with the RSA public key (PEM)", &[RS256], hs256(RSA_PUBLIC_PEM.as_bytes(), Some("rsa-1"), &claims()), Err((401, "algorithm_not_allowed"))),
        ("garbage", default_algs, "not-a-token".into(), Err((401, "malformed_token"))),
        ("header not JSON", default_algs, "bm90LWpzb24.e30.c2ln".into(), Err((401, "malformed_token"))),
        ("four parts", default_algs, format!("{}.x", k.es.sign(&claims())), Err((401, "malformed_token"))),
        ("oversized token", default_algs, k.es.sign(&claims_with(json!({"pad": "x".repeat(MAX_TOKEN_BYTES)}))), Err((401, "malformed_token"))),
    ];
    for (name, algorithms, token, expected) in cases {
        let auth = auth_with(jwt_rule(algorithms), &k);
        assert_eq!(check(&auth, &bearer(&token)).await, expected, "{name}");
    }
    let auth = auth_with(jwt_rule(default_algs), &k);
    assert_eq!(
        check(&auth, &HeaderMap::new()).await,
        Err((401, "missing_credentials"))
    );
}

/// An RS256 public key must never serve as an HMAC secret, even when HS256
/// is accepted (with its own key) and the token names the RSA key's kid,
/// and even when the key set publishes a symmetric key.
#[tokio::test]
async fn alg_confusion_with_hmac_accepted() {
    let rsa = TestKey::rsa("rsa-1");
    let public_der = {
        use base64::Engine;
        let body: String = RSA_PUBLIC_PEM
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    };
    let mut set: serde_json::Value = serde_json::from_slice(&jwks(&[&rsa])).unwrap();
    set["keys"].as_array_mut().unwrap().push(json!({
        "kty": "oct", "kid": "oct-1",
        "k": base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, RSA_PUBLIC_PEM),
    }));
    let mut rule = jwt_rule(&[RS256, HS256]);
    rule.hmac_key = Some(secret("hmac"));
    let auth = FunctionAuth::new(
        &jwt_spec(rule),
        Credentials {
            hmac_key: Some(HMAC_SECRET.to_vec()),
            jwks_document: Some(serde_json::to_vec(&set).unwrap()),
            ..Credentials::default()
        },
        &registry(),
    )
    .unwrap();
    #[rustfmt::skip]
    let cases: Vec<(&str, String, Expected)> = vec![
        ("RS256 as issued", rsa.sign(&claims()), Ok(())),
        ("HS256 with the configured secret", hs256(HMAC_SECRET, None, &claims()), Ok(())),
        ("HS256 signed with the RSA public key PEM, RSA kid", hs256(RSA_PUBLIC_PEM.as_bytes(), Some("rsa-1"), &claims()), Err((401, "invalid_signature"))),
        ("HS256 signed with the RSA public key DER, RSA kid", hs256(&public_der, Some("rsa-1"), &claims()), Err((401, "invalid_signature"))),
        ("HS256 signed with the key set's oct key", hs256(RSA_PUBLIC_PEM.as_bytes(), Some("oct-1"), &claims()), Err((401, "invalid_signature"))),
        ("RS256 header naming the oct key", TestKey::rsa("oct-1").sign(&claims()), Err((401, "unknown_key"))),
    ];
    for (name, token, expected) in cases {
        assert_eq!(check(&auth, &bearer(&token)).await, expected, "{name}");
    }
}

/// HS256 accepted but the Secret holding its key is missing: refused.
#[tokio::test]
async fn hmac_without_its_key_refuses() {
    let mut rule = jwt_rule(&[HS256]);
    rule.jwks_file = None;
    rule.hmac_key = Some(secret("hmac"));
    let auth = FunctionAuth::new(&jwt_spec(rule), Credentials::default(), &registry()).unwrap();
    let token = hs256(HMAC_SECRET, None, &claims());
    assert_eq!(
        check(&auth, &bearer(&token)).await,
        Err((401, "unknown_key"))
    );
}

#[tokio::test]
async fn required_claims_table() {
    let k = keys();
    let rule = |required: Vec<RequiredClaim>| {
        let mut rule = jwt_rule(&[ES256]);
        rule.required_claims = required;
        rule
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<RequiredClaim>, serde_json::Value, Expected)> = vec![
        ("claim missing", vec![required("role", &["admin"])], claims(), Err((403, "missing_claim"))),
        ("claim with another value", vec![required("role", &["admin"])], claims_with(json!({"role": "user"})), Err((403, "missing_claim"))),
        ("claim equal", vec![required("role", &["admin", "ops"])], claims_with(json!({"role": "ops"})), Ok(())),
        ("array holding one", vec![required("groups", &["ops"])], claims_with(json!({"groups": ["dev", "ops"]})), Ok(())),
        ("array holding none", vec![required("groups", &["ops"])], claims_with(json!({"groups": ["dev"]})), Err((403, "missing_claim"))),
        ("scope string holding one", vec![required("scope", &["invoke"])], claims_with(json!({"scope": "read invoke write"})), Ok(())),
        ("scope string holding a longer word only", vec![required("scope", &["invoke"])], claims_with(json!({"scope": "read invoke:all"})), Err((403, "missing_claim"))),
        ("boolean claim", vec![required("email_verified", &["true"])], claims_with(json!({"email_verified": true})), Ok(())),
        ("two required, one missing", vec![required("role", &["admin"]), required("scope", &["invoke"])], claims_with(json!({"role": "admin"})), Err((403, "missing_claim"))),
        ("two required, both there", vec![required("role", &["admin"]), required("scope", &["invoke"])], claims_with(json!({"role": "admin", "scope": "invoke"})), Ok(())),
    ];
    for (name, required, claims, expected) in cases {
        let auth = auth_with(rule(required), &k);
        assert_eq!(
            check(&auth, &bearer(&k.es.sign(&claims))).await,
            expected,
            "{name}"
        );
    }
    // Signature first: a forged token lacking the claim is a 401, not a 403.
    let auth = auth_with(rule(vec![required("role", &["admin"])]), &k);
    assert_eq!(
        check(&auth, &bearer(&k.stranger.sign(&claims()))).await,
        Err((401, "invalid_signature"))
    );
    let failure = auth
        .authorize(&bearer(&k.es.sign(&claims())))
        .await
        .unwrap_err();
    assert_eq!(failure.to_string(), "token lacks required claim \"role\"");
    assert_eq!(
        failure.www_authenticate(),
        "Bearer realm=\"flint\", error=\"insufficient_scope\", error_description=\"token lacks required claim 'role'\""
    );
}

#[tokio::test]
async fn forwarded_claims_become_headers() {
    let k = keys();
    let mut rule = jwt_rule(&[ES256]);
    rule.forward_claims = ["email", "Tenant_ID", "groups", "n", "bad", "huge", "absent"]
        .into_iter()
        .map(forward)
        .collect();
    let auth = auth_with(rule, &k);
    let token = k.es.sign(&claims_with(json!({
        "email": "a@example.test",
        "Tenant_ID": "t-42",
        "groups": ["dev", "ops"],
        "n": 7,
        "bad": "line\nbreak",
        "huge": "x".repeat(2000),
    })));
    let mut headers = bearer(&token);
    headers.insert("x-flint-subject", "root".parse().unwrap());
    headers.insert("x-flint-claim-bad", "spoofed".parse().unwrap());
    headers.insert("x-flint-claim-role", "admin".parse().unwrap());
    strip_identity_headers(&mut headers);
    let identity = auth.authorize(&headers).await.unwrap();
    assert_eq!(identity.method(), AuthMethod::Jwt);
    assert_eq!(identity.subject(), Some("user-1"));
    identity.apply(&mut headers);
    assert_eq!(headers["x-flint-subject"], "user-1");
    assert_eq!(headers["x-flint-claim-email"], "a@example.test");
    assert_eq!(headers["x-flint-claim-tenant_id"], "t-42");
    assert_eq!(headers["x-flint-claim-groups"], r#"["dev","ops"]"#);
    assert_eq!(headers["x-flint-claim-n"], "7");
    assert!(
        headers.get("x-flint-claim-bad").is_none(),
        "invalid value dropped, spoof gone"
    );
    assert!(
        headers.get("x-flint-claim-huge").is_none(),
        "over 1 KiB dropped"
    );
    assert!(headers.get("x-flint-claim-absent").is_none());
    assert!(
        headers.get("x-flint-claim-role").is_none(),
        "spoofed claim stripped"
    );
    assert!(headers.get("authorization").is_some(), "the token stays");
}

#[test]
fn header_spoofing_is_stripped() {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("X-Flint-Subject", "admin"),
        ("X-Flint-Claim-Role", "admin"),
        ("x-flint-claim-tenant", "other"),
        ("x-flint-claims", "kept: not the prefix"),
        ("x-flint-claim", "kept: no name"),
        ("x-request-id", "kept"),
    ] {
        headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    headers.append("x-flint-claim-role", "twice".parse().unwrap());
    strip_identity_headers(&mut headers);
    let mut left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
    left.sort_unstable();
    assert_eq!(left, ["x-flint-claim", "x-flint-claims", "x-request-id"]);
}

#[tokio::test]
async fn a_bad_key_set_key_is_skipped() {
    let es = TestKey::es256("es-1");
    let mut set: serde_json::Value = serde_json::from_slice(&jwks(&[&es])).unwrap();
    let keys = set["keys"].as_array_mut().unwrap();
    keys.insert(0, json!({"kty": "RSA", "kid": "broken"}));
    keys.insert(
        0,
        json!({"kty": "AKP", "kid": "future", "alg": "ML-DSA-44"}),
    );
    keys.insert(
        0,
        json!({"kty": "EC", "kid": "enc", "use": "enc", "crv": "P-256", "x": "AA", "y": "AA"}),
    );
    let auth = FunctionAuth::new(
        &jwt_spec(jwt_rule(&[ES256])),
        credentials_with_document(serde_json::to_vec(&set).unwrap()),
        &registry(),
    )
    .unwrap();
    assert_eq!(check(&auth, &bearer(&es.sign(&claims()))).await, Ok(()));
}

#[tokio::test]
async fn a_token_without_kid_uses_the_only_fitting_key() {
    let es = TestKey::es256("es-1");
    let rsa = TestKey::rsa("rsa-1");
    let no_kid = |key: &TestKey| {
        let header = jsonwebtoken::Header::new(key.alg);
        jsonwebtoken::encode(&header, &claims(), &key.encoding).unwrap()
    };
    let auth = FunctionAuth::new(
        &jwt_spec(jwt_rule(&[ES256, RS256])),
        credentials_with_document(jwks(&[&es, &rsa])),
        &registry(),
    )
    .unwrap();
    assert_eq!(check(&auth, &bearer(&no_kid(&es))).await, Ok(()));
    assert_eq!(check(&auth, &bearer(&no_kid(&rsa))).await, Ok(()));
    let es2 = TestKey::es256("es-2");
    let auth = FunctionAuth::new(
        &jwt_spec(jwt_rule(&[ES256])),
        credentials_with_document(jwks(&[&es, &es2])),
        &registry(),
    )
    .unwrap();
    assert_eq!(
        check(&auth, &bearer(&no_kid(&es))).await,
        Err((401, "unknown_key"))
    );
}

#[tokio::test]
async fn failures_tell_what_is_wrong_without_echoing_the_token() {
    let k = keys();
    let auth = auth_with(jwt_rule(&[ES256]), &k);
    let token = k.es.sign(&claims_with(json!({"exp": now() - 3600})));
    let failure = auth.authorize(&bearer(&token)).await.unwrap_err();
    assert_eq!(failure.to_string(), "token expired");
    let challenge = failure.www_authenticate();
    assert_eq!(
        challenge,
        "Bearer realm=\"flint\", error=\"invalid_token\", error_description=\"token expired\""
    );
    assert!(!challenge.to_str().unwrap().contains(&token[..20]));
}
