//! API keys: where they are read, which are accepted, rotation, and that
//! the function never sees them.

use http::HeaderMap;

use super::fixtures::*;
use crate::gateway::auth::{AuthMethod, Credentials, FunctionAuth, strip_identity_headers};

fn keys(keys: &[&str]) -> Credentials {
    Credentials {
        api_keys: keys.iter().map(|k| k.as_bytes().to_vec()).collect(),
        ..Credentials::default()
    }
}

/// A case: name, custom header, accepted keys, request headers, outcome.
type Case = (
    &'static str,
    Option<&'static str>,
    Vec<&'static str>,
    HeaderMap,
    Expected,
);

#[tokio::test]
async fn api_key_table() {
    let none = HeaderMap::new;
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("missing key", None, vec!["k1"], none(), Err((401, "missing_credentials"))),
        ("wrong key", None, vec!["k1", "k2"], bearer("k3"), Err((401, "invalid_key"))),
        ("right key", None, vec!["k1", "k2"], bearer("k2"), Ok(())),
        ("right key, lower-case scheme", None, vec!["k1"], with_header("authorization", "bearer k1"), Ok(())),
        ("prefix of a key", None, vec!["secret-key"], bearer("secret"), Err((401, "invalid_key"))),
        ("key with a suffix", None, vec!["secret"], bearer("secret-key"), Err((401, "invalid_key"))),
        ("other scheme", None, vec!["k1"], with_header("authorization", "Basic k1"), Err((401, "missing_credentials"))),
        ("empty bearer", None, vec!["k1"], with_header("authorization", "Bearer "), Err((401, "missing_credentials"))),
        ("custom header: right key", Some("X-Api-Key"), vec!["k1"], with_header("x-api-key", "k1"), Ok(())),
        ("custom header: wrong key", Some("X-Api-Key"), vec!["k1"], with_header("x-api-key", "nope"), Err((401, "invalid_key"))),
        ("custom header: key in Authorization instead", Some("X-Api-Key"), vec!["k1"], bearer("k1"), Err((401, "missing_credentials"))),
        ("empty key set refuses", None, vec![], bearer("anything"), Err((401, "invalid_key"))),
        ("empty configured key never matches", None, vec![""], with_header("authorization", "Bearer "), Err((401, "missing_credentials"))),
    ];
    let registry = registry();
    for (name, custom, accepted, headers, expected) in cases {
        let auth = FunctionAuth::new(&api_key_spec(custom), keys(&accepted), &registry).unwrap();
        assert_eq!(check(&auth, &headers).await, expected, "{name}");
    }
}

#[tokio::test]
async fn rotated_keys_follow_the_credentials() {
    let registry = registry();
    let spec = api_key_spec(None);
    let old = FunctionAuth::new(&spec, keys(&["old"]), &registry).unwrap();
    assert_eq!(check(&old, &bearer("old")).await, Ok(()));
    assert_eq!(check(&old, &bearer("new")).await, Err((401, "invalid_key")));
    // During the rotation both are accepted.
    let both = FunctionAuth::new(&spec, keys(&["old", "new"]), &registry).unwrap();
    assert_eq!(check(&both, &bearer("old")).await, Ok(()));
    assert_eq!(check(&both, &bearer("new")).await, Ok(()));
    // After it, only the new one.
    let new = FunctionAuth::new(&spec, keys(&["new"]), &registry).unwrap();
    assert_eq!(check(&new, &bearer("new")).await, Ok(()));
    assert_eq!(check(&new, &bearer("old")).await, Err((401, "invalid_key")));
}

#[tokio::test]
async fn the_function_never_sees_the_key() {
    let registry = registry();
    for (custom, carrier) in [(None, "authorization"), (Some("X-Api-Key"), "x-api-key")] {
        let auth = FunctionAuth::new(&api_key_spec(custom), keys(&["k1"]), &registry).unwrap();
        let mut headers = with_header(carrier, if custom.is_some() { "k1" } else { "Bearer k1" });
        headers.insert("x-flint-subject", "admin".parse().unwrap());
        headers.insert("x-other", "kept".parse().unwrap());
        strip_identity_headers(&mut headers);
        let identity = auth.authorize(&headers).await.unwrap();
        assert_eq!(identity.method(), AuthMethod::ApiKey);
        assert_eq!(identity.subject(), None);
        identity.apply(&mut headers);
        assert!(headers.get(carrier).is_none(), "{carrier} removed");
        assert!(headers.get("x-flint-subject").is_none());
        assert_eq!(headers["x-other"], "kept");
    }
}

#[tokio::test]
async fn missing_credentials_name_the_header() {
    let registry = registry();
    let auth =
        FunctionAuth::new(&api_key_spec(Some("X-Api-Key")), keys(&["k1"]), &registry).unwrap();
    let failure = auth.authorize(&HeaderMap::new()).await.unwrap_err();
    assert_eq!(
        failure.to_string(),
        "missing credentials: send the API key in the x-api-key header"
    );
    assert_eq!(failure.www_authenticate(), "Bearer realm=\"flint\"");
    let failure = auth
        .authorize(&with_header("x-api-key", "wrong-key"))
        .await
        .unwrap_err();
    assert_eq!(failure.to_string(), "invalid API key");
    assert!(
        !failure
            .www_authenticate()
            .to_str()
            .unwrap()
            .contains("wrong-key")
    );
    assert_eq!(
        failure.www_authenticate(),
        "Bearer realm=\"flint\", error=\"invalid_token\", error_description=\"invalid API key\""
    );
}

#[test]
fn credentials_debug_shows_no_secret() {
    let credentials = Credentials {
        api_keys: vec![b"very-secret-key".to_vec()],
        hmac_key: Some(b"very-secret-hmac".to_vec()),
        jwks_document: None,
    };
    let text = format!("{credentials:?}");
    assert!(!text.contains("very-secret"), "{text}");
    let registry = registry();
    let auth = FunctionAuth::new(&api_key_spec(None), credentials, &registry).unwrap();
    let text = format!("{auth:?}");
    assert!(!text.contains("very-secret"), "{text}");
}
