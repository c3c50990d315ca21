//! What `authorize` costs, per call: `cargo test -p flint-runtime --lib
//! gateway::auth::tests::measure -- --ignored --nocapture` (build with
//! `--release` for numbers worth quoting). A JWT is measured twice: new
//! tokens, each verified in full (and remembered), and one token presented
//! again and again, let through as remembered.

use std::time::{Duration, Instant};

use flint_api::function::JwtAlgorithm::*;
use serde_json::json;

use super::fixtures::*;
use crate::gateway::auth::{Credentials, FunctionAuth};

const CALLS: u32 = 100_000;

async fn per_call(auth: &FunctionAuth, headers: &http::HeaderMap, calls: u32) -> Duration {
    assert!(auth.authorize(headers).await.is_ok());
    let started = Instant::now();
    for _ in 0..calls {
        std::hint::black_box(auth.authorize(std::hint::black_box(headers)).await.is_ok());
    }
    started.elapsed() / calls
}

/// The cost of a token's first presentation: `n` new tokens of `key`,
/// each verified in full.
async fn per_new_token(auth: &FunctionAuth, key: &TestKey, n: u32) -> Duration {
    let tokens: Vec<_> = (0..n)
        .map(|i| bearer(&key.sign(&claims_with(json!({ "jti": i })))))
        .collect();
    let before = auth.tokens_verified_in_full();
    let started = Instant::now();
    for headers in &tokens {
        assert!(auth.authorize(std::hint::black_box(headers)).await.is_ok());
    }
    let took = started.elapsed() / n;
    assert_eq!(auth.tokens_verified_in_full() - before, u64::from(n));
    took
}

#[tokio::test]
#[ignore = "a measurement, not a test"]
async fn measure_authorize() {
    let registry = registry();
    let keys = Credentials {
        api_keys: (0..4)
            .map(|i| format!("key-number-{i}-0123456789abcdef").into_bytes())
            .collect(),
        ..Credentials::default()
    };
    let api = FunctionAuth::new(&api_key_spec(None), keys, &registry).unwrap();
    let headers = bearer("key-number-3-0123456789abcdef");
    println!(
        "api key (4 keys): {:?}/call",
        per_call(&api, &headers, CALLS).await
    );

    let (es, rsa, ed) = (
        TestKey::es256("es"),
        TestKey::rsa("rsa"),
        TestKey::ed25519("ed"),
    );
    let document = jwks(&[&es, &rsa, &ed]);
    let auth = FunctionAuth::new(
        &jwt_spec(jwt_rule(&[ES256, RS256, EdDSA])),
        credentials_with_document(document.clone()),
        &registry,
    )
    .unwrap();
    for (name, key) in [("ES256", &es), ("RS256", &rsa), ("EdDSA", &ed)] {
        println!(
            "JWT {name} (key set cached), verified in full: {:?}/call",
            per_new_token(&auth, key, CALLS / 100).await
        );
        let headers = bearer(&key.sign(&claims()));
        let before = auth.tokens_verified_in_full();
        println!(
            "JWT {name}, remembered: {:?}/call",
            per_call(&auth, &headers, CALLS).await
        );
        assert_eq!(auth.tokens_verified_in_full() - before, 1);
    }

    let server = JwksServer::start(Answer::Keys(document)).await;
    let remote = FunctionAuth::new(
        &jwt_spec(remote_rule(&server.url, &[ES256, RS256])),
        Credentials::default(),
        &registry,
    )
    .unwrap();
    let headers = bearer(&rsa.sign(&claims()));
    println!(
        "JWT RS256 (fetched key set), remembered: {:?}/call",
        per_call(&remote, &headers, CALLS).await
    );
    assert_eq!(server.hits(), 1);

    let mut rule = jwt_rule(&[HS256]);
    rule.jwks_file = None;
    rule.hmac_key = Some(secret("hmac"));
    let secret = b"0123456789abcdef0123456789abcdef".to_vec();
    let hs = FunctionAuth::new(
        &jwt_spec(rule),
        Credentials {
            hmac_key: Some(secret.clone()),
            ..Credentials::default()
        },
        &registry,
    )
    .unwrap();
    let tokens: Vec<_> = (0..CALLS / 10)
        .map(|i| bearer(&hs256(&secret, None, &claims_with(json!({ "jti": i })))))
        .collect();
    let started = Instant::now();
    for headers in &tokens {
        assert!(hs.authorize(headers).await.is_ok());
    }
    println!(
        "JWT HS256, verified in full: {:?}/call",
        started.elapsed() / (CALLS / 10)
    );
    let headers = bearer(&hs256(&secret, None, &claims()));
    println!(
        "JWT HS256, remembered: {:?}/call",
        per_call(&hs, &headers, CALLS).await
    );
}
