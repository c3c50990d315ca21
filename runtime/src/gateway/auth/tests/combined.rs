//! API keys and JWTs on one Function: either lets a request through, and a
//! refusal reports the JWT's failure when the credential looks like one.

use flint_api::function::{ApiKeyAuth, AuthSpec, JwtAlgorithm::*};
use http::HeaderMap;
use serde_json::json;

use super::fixtures::*;
use crate::gateway::auth::{AuthMethod, Credentials, FunctionAuth};

/// The method that let the request through, or `(status, reason)`.
type Outcome = Result<AuthMethod, (u16, &'static str)>;

fn both(header: Option<&str>, es: &TestKey) -> FunctionAuth {
    let spec = AuthSpec {
        api_keys: Some(ApiKeyAuth {
            keys: secret("keys"),
            header: header.map(Into::into),
        }),
        jwt: Some(jwt_rule(&[ES256])),
    };
    let credentials = Credentials {
        api_keys: vec![b"the-key".to_vec()],
        jwks_document: Some(jwks(&[es])),
        ..Credentials::default()
    };
    FunctionAuth::new(&spec, credentials, &registry()).unwrap()
}

#[tokio::test]
async fn either_method_table() {
    let es = TestKey::es256("es-1");
    let good = es.sign(&claims());
    let expired = es.sign(&claims_with(json!({"exp": now() - 3600})));
    let mut key_and_expired = with_header("x-api-key", "the-key");
    key_and_expired.insert(
        "authorization",
        format!("Bearer {expired}").parse().unwrap(),
    );
    let mut wrong_key_and_good = with_header("x-api-key", "wrong");
    wrong_key_and_good.insert("authorization", format!("Bearer {good}").parse().unwrap());
    let mut wrong_key_and_expired = with_header("x-api-key", "wrong");
    wrong_key_and_expired.insert(
        "authorization",
        format!("Bearer {expired}").parse().unwrap(),
    );
    #[rustfmt::skip]
    let cases: Vec<(&str, Option<&str>, HeaderMap, Outcome)> = vec![
        ("bearer API key", None, bearer("the-key"), Ok(AuthMethod::ApiKey)),
        ("bearer JWT", None, bearer(&good), Ok(AuthMethod::Jwt)),
        ("bearer wrong key", None, bearer("wrong"), Err((401, "invalid_key"))),
        ("bearer expired JWT", None, bearer(&expired), Err((401, "expired"))),
        ("nothing", None, HeaderMap::new(), Err((401, "missing_credentials"))),
        ("custom header key", Some("X-Api-Key"), with_header("x-api-key", "the-key"), Ok(AuthMethod::ApiKey)),
        ("custom header key, expired JWT too", Some("X-Api-Key"), key_and_expired, Ok(AuthMethod::ApiKey)),
        ("wrong custom key, good JWT", Some("X-Api-Key"), wrong_key_and_good, Ok(AuthMethod::Jwt)),
        ("wrong custom key, expired JWT", Some("X-Api-Key"), wrong_key_and_expired, Err((401, "expired"))),
        ("wrong custom key alone", Some("X-Api-Key"), with_header("x-api-key", "wrong"), Err((401, "invalid_key"))),
        ("JWT only, with a custom key header configured", Some("X-Api-Key"), bearer(&good), Ok(AuthMethod::Jwt)),
        ("non-JWT bearer, custom key header configured", Some("X-Api-Key"), bearer("the-key"), Err((401, "missing_credentials"))),
    ];
    for (name, header, headers, expected) in cases {
        let auth = both(header, &es);
        let got = auth
            .authorize(&headers)
            .await
            .map(|identity| identity.method())
            .map_err(|f| (f.status().as_u16(), f.reason()));
        assert_eq!(got, expected, "{name}");
    }
    let failure = both(Some("X-Api-Key"), &es)
        .authorize(&HeaderMap::new())
        .await
        .unwrap_err();
    assert_eq!(
        failure.to_string(),
        "missing credentials: send the API key in the x-api-key header, or Authorization: Bearer <token>"
    );
}
