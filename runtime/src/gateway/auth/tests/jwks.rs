//! Key sets fetched from a server on 127.0.0.1: caching, refetching on an
//! unknown `kid` at most once per interval whatever the burst, keeping the
//! last good keys, and the bounds on a fetch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flint_api::function::JwtAlgorithm::*;
use http::{HeaderMap, HeaderValue, StatusCode, header};

use super::fixtures::*;
use crate::gateway::auth::{
    AuthConfigError, Credentials, DEFAULT_MAX_AGE, FunctionAuth, JwksRegistry, JwksSettings,
    MAX_MAX_AGE, MIN_MAX_AGE, cache_lifetime,
};

fn remote(server: &JwksServer, registry: &JwksRegistry) -> FunctionAuth {
    FunctionAuth::new(
        &jwt_spec(remote_rule(&server.url, &[ES256, RS256])),
        Credentials::default(),
        registry,
    )
    .unwrap()
}

#[tokio::test]
async fn fetched_once_then_cached() {
    let a = TestKey::es256("a");
    let server = JwksServer::start(Answer::Keys(jwks(&[&a]))).await;
    let registry = registry();
    let auth = remote(&server, &registry);
    for _ in 0..20 {
        assert_eq!(check(&auth, &bearer(&a.sign(&claims()))).await, Ok(()));
    }
    assert_eq!(server.hits(), 1);
    // A rebuilt rule (same URL, same registry) keeps the cache.
    let rebuilt = remote(&server, &registry);
    drop(auth);
    assert_eq!(check(&rebuilt, &bearer(&a.sign(&claims()))).await, Ok(()));
    assert_eq!(server.hits(), 1);
}

/// The interval of the refetch tests: long enough that a loaded machine
/// still runs each step well within it.
const INTERVAL: Duration = Duration::from_millis(1000);

#[tokio::test]
async fn unknown_kid_refetches_when_the_issuer_rotates() {
    let (a, b) = (TestKey::es256("a"), TestKey::rsa("b"));
    let (token_a, token_b) = (a.sign(&claims()), b.sign(&claims()));
    let server = JwksServer::start(Answer::Keys(jwks(&[&a]))).await;
    let registry = JwksRegistry::new(local_settings(INTERVAL));
    let auth = remote(&server, &registry);
    assert_eq!(check(&auth, &bearer(&token_a)).await, Ok(()));
    assert_eq!(server.hits(), 1);
    // The issuer rotates to b.
    server.set(Answer::Keys(jwks(&[&b])));
    // Within min_refresh of the last fetch: no refetch, b is unknown yet.
    assert_eq!(
        check(&auth, &bearer(&token_b)).await,
        Err((401, "unknown_key"))
    );
    assert_eq!(server.hits(), 1);
    tokio::time::sleep(INTERVAL + Duration::from_millis(100)).await;
    assert_eq!(check(&auth, &bearer(&token_b)).await, Ok(()));
    assert_eq!(server.hits(), 2);
    // a left the key set; asking for it again soon does not refetch.
    assert_eq!(
        check(&auth, &bearer(&token_a)).await,
        Err((401, "unknown_key"))
    );
    assert_eq!(check(&auth, &bearer(&token_b)).await, Ok(()));
    assert_eq!(server.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_unknown_kids_fetches_at_most_once_per_interval() {
    let a = TestKey::es256("a");
    let forger = TestKey::es256("forger");
    // Tokens naming random kids, made beforehand so that each burst is
    // quick whatever the machine.
    let forged = |prefix: &str, n: usize| -> Vec<String> {
        (0..n)
            .map(|i| {
                let mut header = jsonwebtoken::Header::new(forger.alg);
                header.kid = Some(format!("{prefix}-{i}"));
                jsonwebtoken::encode(&header, &claims(), &forger.encoding).unwrap()
            })
            .collect()
    };
    let server = JwksServer::start(Answer::Keys(jwks(&[&a]))).await;
    let registry = JwksRegistry::new(local_settings(INTERVAL));
    let auth = Arc::new(remote(&server, &registry));
    assert_eq!(check(&auth, &bearer(&a.sign(&claims()))).await, Ok(()));
    assert_eq!(server.hits(), 1);
    for round in 0..2 {
        let (burst, again) = (
            forged(&format!("burst-{round}"), 200),
            forged(&format!("again-{round}"), 50),
        );
        tokio::time::sleep(INTERVAL + Duration::from_millis(100)).await;
        let tasks: Vec<_> = burst
            .into_iter()
            .map(|token| {
                let auth = Arc::clone(&auth);
                tokio::spawn(async move { check(&auth, &bearer(&token)).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), Err((401, "unknown_key")));
        }
        assert_eq!(server.hits(), 2 + round, "one fetch in round {round}");
        // More random kids right after: no fetch at all.
        for token in again {
            assert_eq!(
                check(&auth, &bearer(&token)).await,
                Err((401, "unknown_key"))
            );
        }
        assert_eq!(server.hits(), 2 + round);
        // The known key kept working throughout.
        assert_eq!(check(&auth, &bearer(&a.sign(&claims()))).await, Ok(()));
    }
}

#[tokio::test]
async fn a_failed_fetch_keeps_the_last_good_keys() {
    let a = TestKey::es256("a");
    let server = JwksServer::start(Answer::Keys(jwks(&[&a]))).await;
    let registry = JwksRegistry::new(local_settings(Duration::from_millis(100)));
    let auth = remote(&server, &registry);
    assert_eq!(check(&auth, &bearer(&a.sign(&claims()))).await, Ok(()));
    server.set(Answer::Status(StatusCode::INTERNAL_SERVER_ERROR));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let unknown = TestKey::es256("z").sign(&claims());
    assert_eq!(
        check(&auth, &bearer(&unknown)).await,
        Err((401, "unknown_key"))
    );
    assert_eq!(server.hits(), 2, "the refetch was tried");
    assert_eq!(check(&auth, &bearer(&a.sign(&claims()))).await, Ok(()));
}

#[tokio::test]
async fn fetch_failures_without_keys_are_jwks_unavailable() {
    let a = TestKey::es256("a");
    let token = a.sign(&claims());
    let big = {
        let mut set: serde_json::Value = serde_json::from_slice(&jwks(&[&a])).unwrap();
        set["padding"] = "x".repeat(4096).into();
        serde_json::to_vec(&set).unwrap()
    };
    let cases = [
        (
            "server error",
            Answer::Status(StatusCode::SERVICE_UNAVAILABLE),
        ),
        ("not found", Answer::Status(StatusCode::NOT_FOUND)),
        (
            "redirect not followed",
            Answer::Redirect("/elsewhere".into()),
        ),
        ("larger than max_bytes", Answer::Keys(big)),
        (
            "not a key set",
            Answer::Keys(b"<html>hello</html>".to_vec()),
        ),
        (
            "slower than the timeout",
            Answer::Slow(Duration::from_secs(3), jwks(&[&a])),
        ),
    ];
    for (name, answer) in cases {
        let server = JwksServer::start(answer).await;
        let registry = JwksRegistry::new(JwksSettings {
            max_bytes: 2048,
            timeout: Duration::from_millis(300),
            ..local_settings(Duration::from_secs(10))
        });
        let auth = remote(&server, &registry);
        let started = Instant::now();
        let result = auth.authorize(&bearer(&token)).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{name}: bounded in time"
        );
        assert_eq!(outcome(&result), Err((401, "jwks_unavailable")), "{name}");
        let failure = result.unwrap_err();
        assert_eq!(
            failure.to_string(),
            "the issuer's signing keys are unavailable; try again later",
            "{name}"
        );
        // Within min_refresh, further requests do not hammer the issuer.
        assert_eq!(
            outcome(&auth.authorize(&bearer(&token)).await),
            Err((401, "jwks_unavailable"))
        );
        assert_eq!(server.hits(), 1, "{name}: one fetch, no redirect followed");
    }
}

#[tokio::test]
async fn a_url_nobody_listens_on_is_jwks_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    drop(listener);
    let auth = FunctionAuth::new(
        &jwt_spec(remote_rule(&url, &[ES256])),
        Credentials::default(),
        &registry(),
    )
    .unwrap();
    let token = TestKey::es256("a").sign(&claims());
    assert_eq!(
        check(&auth, &bearer(&token)).await,
        Err((401, "jwks_unavailable"))
    );
}

#[test]
fn urls_must_be_https_on_clusters() {
    let cluster = JwksRegistry::new(JwksSettings::default());
    let build = |url: &str, registry: &JwksRegistry| {
        FunctionAuth::new(
            &jwt_spec(remote_rule(url, &[ES256])),
            Credentials::default(),
            registry,
        )
        .map(drop)
    };
    assert!(build("https://issuer.test/jwks", &cluster).is_ok());
    for (url, reason) in [
        (
            "http://issuer.test/jwks",
            "is not https (plain http is allowed only in flint dev)",
        ),
        ("ftp://issuer.test/jwks", "is not an absolute https URL"),
        ("/jwks", "is not an absolute https URL"),
        (
            "https://user:pass@issuer.test/jwks",
            "must not carry credentials",
        ),
    ] {
        assert_eq!(
            build(url, &cluster),
            Err(AuthConfigError::BadJwksUrl {
                url: url.into(),
                reason
            }),
            "{url}"
        );
    }
    assert!(
        build("http://127.0.0.1:1/jwks", &registry()).is_ok(),
        "allowed in flint dev"
    );
}

#[test]
fn cache_lifetime_follows_cache_control_within_bounds() {
    let with = |value: &str| {
        let mut headers = HeaderMap::new();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_str(value).unwrap());
        cache_lifetime(&headers)
    };
    assert_eq!(cache_lifetime(&HeaderMap::new()), DEFAULT_MAX_AGE);
    assert_eq!(DEFAULT_MAX_AGE, Duration::from_secs(300));
    assert_eq!(with("public, max-age=600"), Duration::from_secs(600));
    assert_eq!(with("max-age=10"), MIN_MAX_AGE);
    assert_eq!(with("max-age=9999999"), MAX_MAX_AGE);
    assert_eq!(MAX_MAX_AGE, Duration::from_secs(86_400));
    assert_eq!(with("no-store"), MIN_MAX_AGE);
    assert_eq!(with("no-cache, max-age=3600"), MIN_MAX_AGE);
    assert_eq!(with("Max-Age=\"120\""), Duration::from_secs(120));
    assert_eq!(with("public"), DEFAULT_MAX_AGE);
    assert_eq!(with("max-age=soon"), DEFAULT_MAX_AGE);
}

#[tokio::test]
async fn concurrent_first_requests_share_one_fetch() {
    let a = TestKey::es256("a");
    let server = JwksServer::start(Answer::Slow(Duration::from_millis(100), jwks(&[&a]))).await;
    let registry = registry();
    let auth = Arc::new(remote(&server, &registry));
    let token = a.sign(&claims());
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (auth, token) = (Arc::clone(&auth), token.clone());
            tokio::spawn(async move { check(&auth, &bearer(&token)).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(()));
    }
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn a_client_going_away_does_not_cancel_the_fetch() {
    let a = TestKey::es256("a");
    let server = JwksServer::start(Answer::Slow(Duration::from_millis(300), jwks(&[&a]))).await;
    let registry = registry();
    let auth = Arc::new(remote(&server, &registry));
    let token = a.sign(&claims());
    let first = {
        let (auth, token) = (Arc::clone(&auth), token.clone());
        tokio::spawn(async move { check(&auth, &bearer(&token)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    first.abort();
    // The next request waits for the fetch the first one started.
    assert_eq!(check(&auth, &bearer(&token)).await, Ok(()));
    assert_eq!(server.hits(), 1);
}

#[test]
fn authorize_is_send() {
    fn send<T: Send>(_: &T) {}
    let registry = registry();
    let auth = FunctionAuth::new(
        &jwt_spec(remote_rule("http://127.0.0.1:1/jwks", &[ES256])),
        Credentials::default(),
        &registry,
    )
    .unwrap();
    let headers = HeaderMap::new();
    let future = auth.authorize(&headers);
    send(&future);
}
