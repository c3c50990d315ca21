//! Tokens that verified are let through again without verifying: counted
//! through the rule, with the cache's own rules of time, key-set
//! generation, size and concurrency tested on the cache itself.

use std::sync::Arc;
use std::time::Duration;

use flint_api::function::JwtAlgorithm::*;
use serde_json::json;

use super::fixtures::*;
use crate::gateway::auth::token_cache::{MAX_AGE, TokenCache, Verified};
use crate::gateway::auth::{Credentials, FunctionAuth, Identity, JwksRegistry};

fn verified_in_full(auth: &FunctionAuth) -> u64 {
    auth.tokens_verified_in_full()
}

fn remembered(auth: &FunctionAuth) -> usize {
    auth.tokens_remembered()
}

fn local(algorithms: &[flint_api::function::JwtAlgorithm], keys: &[&TestKey]) -> FunctionAuth {
    let mut rule = jwt_rule(algorithms);
    rule.forward_claims = vec![forward("email")];
    FunctionAuth::new(
        &jwt_spec(rule),
        credentials_with_document(jwks(keys)),
        &registry(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_remembered_token_is_let_through_without_verifying() {
    let es = TestKey::es256("es");
    let auth = local(&[ES256], &[&es]);
    let token = es.sign(&claims_with(json!({"email": "a@example.test"})));
    let first = auth.authorize(&bearer(&token)).await.unwrap();
    assert_eq!(first.subject(), Some("user-1"));
    for _ in 0..10 {
        assert_eq!(auth.authorize(&bearer(&token)).await.unwrap(), first);
    }
    assert_eq!(verified_in_full(&auth), 1);
    assert_eq!(remembered(&auth), 1);
    // Another token of the same user is another entry.
    let other = es.sign(&claims_with(json!({"email": "b@example.test"})));
    let second = auth.authorize(&bearer(&other)).await.unwrap();
    assert_eq!(second.claims()[0].1, "b@example.test");
    assert_eq!(verified_in_full(&auth), 2);
}

#[tokio::test]
async fn failures_are_never_remembered() {
    let (es, stranger) = (TestKey::es256("es"), TestKey::es256("es"));
    let mut rule = jwt_rule(&[ES256]);
    rule.required_claims = vec![required("role", &["admin"])];
    let auth = FunctionAuth::new(
        &jwt_spec(rule),
        credentials_with_document(jwks(&[&es])),
        &registry(),
    )
    .unwrap();
    let admin = es.sign(&claims_with(json!({"role": "admin"})));
    // The same claims signed by a key with the same kid: same payload,
    // another signature.
    let forged = stranger.sign(&claims_with(json!({"role": "admin"})));
    let lacking = es.sign(&claims());
    for _ in 0..3 {
        assert_eq!(
            check(&auth, &bearer(&forged)).await,
            Err((401, "invalid_signature"))
        );
        assert_eq!(
            check(&auth, &bearer(&lacking)).await,
            Err((403, "missing_claim"))
        );
    }
    assert_eq!(verified_in_full(&auth), 6);
    assert_eq!(remembered(&auth), 0);
    assert_eq!(check(&auth, &bearer(&admin)).await, Ok(()));
    // A forgery of a remembered token is still checked, and refused.
    assert_eq!(
        check(&auth, &bearer(&forged)).await,
        Err((401, "invalid_signature"))
    );
    assert_eq!(verified_in_full(&auth), 8);
    assert_eq!(remembered(&auth), 1);
}

#[tokio::test]
async fn an_expired_remembered_token_is_refused() {
    let es = TestKey::es256("es");
    let mut rule = jwt_rule(&[ES256]);
    rule.clock_skew_seconds = 0;
    let auth = FunctionAuth::new(
        &jwt_spec(rule),
        credentials_with_document(jwks(&[&es])),
        &registry(),
    )
    .unwrap();
    let exp = now() + 1;
    let token = es.sign(&claims_with(json!({ "exp": exp })));
    assert_eq!(check(&auth, &bearer(&token)).await, Ok(()));
    assert_eq!(check(&auth, &bearer(&token)).await, Ok(()));
    assert_eq!(verified_in_full(&auth), 1);
    // `jsonwebtoken` refuses once a whole second has passed `exp`.
    while now() <= exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(check(&auth, &bearer(&token)).await, Err((401, "expired")));
    assert_eq!(verified_in_full(&auth), 2);
}

/// The interval between refetches: long enough that a loaded machine
/// still runs each step well within it.
const INTERVAL: Duration = Duration::from_millis(1000);

#[tokio::test]
async fn a_token_of_an_older_key_set_is_verified_again() {
    let (a, b) = (TestKey::es256("a"), TestKey::rsa("b"));
    let (token_a, token_b) = (a.sign(&claims()), b.sign(&claims()));
    let unknown = |kid: &str| TestKey::es256(kid).sign(&claims());
    let server = JwksServer::start(Answer::Keys(jwks(&[&a]))).await;
    let registry = JwksRegistry::new(local_settings(INTERVAL));
    let auth = FunctionAuth::new(
        &jwt_spec(remote_rule(&server.url, &[ES256, RS256])),
        Credentials::default(),
        &registry,
    )
    .unwrap();
    let refetch = |kid: &'static str| {
        let (auth, server) = (&auth, &server);
        async move {
            let hits = server.hits();
            tokio::time::sleep(INTERVAL + Duration::from_millis(100)).await;
            assert_eq!(
                check(auth, &bearer(&unknown(kid))).await,
                Err((401, "unknown_key"))
            );
            assert_eq!(server.hits(), hits + 1, "refetched for {kid}");
        }
    };
    assert_eq!(check(&auth, &bearer(&token_a)).await, Ok(()));
    assert_eq!(check(&auth, &bearer(&token_a)).await, Ok(()));
    assert_eq!(verified_in_full(&auth), 1);
    // The same document again: the same key set, still remembered.
    refetch("x").await;
    assert_eq!(check(&auth, &bearer(&token_a)).await, Ok(()));
    assert_eq!(verified_in_full(&auth), 2, "only the unknown kid");
    // The issuer adds b: a is verified again (and passes) once.
    server.set(Answer::Keys(jwks(&[&a, &b])));
    refetch("y").await;
    assert_eq!(check(&auth, &bearer(&token_b)).await, Ok(()));
    for _ in 0..3 {
        assert_eq!(check(&auth, &bearer(&token_a)).await, Ok(()));
    }
    assert_eq!(verified_in_full(&auth), 5);
    // The issuer drops a: a's remembered token is refused.
    server.set(Answer::Keys(jwks(&[&b])));
    refetch("z").await;
    assert_eq!(
        check(&auth, &bearer(&token_a)).await,
        Err((401, "unknown_key"))
    );
    assert_eq!(check(&auth, &bearer(&token_b)).await, Ok(()));
    assert_eq!(verified_in_full(&auth), 8);
}

fn identity(n: usize) -> Identity {
    Identity::jwt(Some(format!("user-{n}").parse().unwrap()), Vec::new())
}

/// An entry verified against key set 7, `exp` at `exp` seconds.
fn verified(exp: u64, nbf: u64) -> Verified {
    Verified {
        key_set: Some(7),
        exp,
        nbf,
    }
}

#[test]
fn an_entry_answers_within_exp_nbf_max_age_and_its_key_set() {
    let secs = Duration::from_secs;
    let t = 1_700_000_000;
    let cache = TokenCache::new(64);
    let get = |token: &str, at: Duration, current| {
        cache
            .get(cache.key(token), token, at, current)
            .map(|i| i.subject().unwrap().to_owned())
    };
    let put = |token: &str, v: Verified, at: Duration| {
        cache.insert(cache.key(token), token, &identity(1), v, at);
    };
    put("short", verified(t + 30, 0), secs(t));
    assert_eq!(
        get("short", secs(t + 29), Some(7)).as_deref(),
        Some("user-1")
    );
    assert_eq!(
        get("short", secs(t + 30), Some(7)),
        None,
        "exp itself, no skew"
    );
    assert_eq!(get("short", secs(t + 10), Some(8)), None, "another key set");
    assert_eq!(get("short", secs(t + 10), None), None, "no key set");
    assert_eq!(
        get("short", secs(t) - Duration::from_millis(1), Some(7)),
        None,
        "clock went back"
    );
    put("long", verified(t + 3600, t - 10), secs(t));
    assert!(get("long", secs(t) + MAX_AGE - secs(1), Some(7)).is_some());
    assert_eq!(get("long", secs(t) + MAX_AGE, Some(7)), None, "max age");
    // Not valid now without skew: not remembered at all.
    put("early", verified(t + 3600, t + 5), secs(t));
    put("late", verified(t - 5, 0), secs(t));
    assert_eq!(get("early", secs(t + 10), Some(7)), None);
    assert_eq!(cache.len(), 2);
    // HMAC tokens ignore key-set generations.
    let hmac = Verified {
        key_set: None,
        ..verified(t + 30, 0)
    };
    put("hmac", hmac, secs(t));
    assert!(get("hmac", secs(t + 1), Some(99)).is_some());
    assert!(get("hmac", secs(t + 1), None).is_some());
    // The same key with another token (a keyed-hash collision nobody can
    // make happen on purpose) is a miss.
    let key = cache.key("long");
    assert!(cache.get(key, "lonG", secs(t + 1), Some(7)).is_none());
}

#[test]
fn the_bound_holds_under_twice_as_many_tokens() {
    let t = 1_700_000_000;
    let now = Duration::from_secs(t);
    let cache = TokenCache::new(10_000);
    let token = |n: usize| format!("eyJhbGciOiJFUzI1NiJ9.{n:0>600}.signature");
    for n in 0..20_000 {
        let token = token(n);
        cache.insert(
            cache.key(&token),
            &token,
            &identity(n),
            verified(t + 600, 0),
            now,
        );
        assert!(cache.len() <= 10_000, "after {n}");
    }
    assert!(cache.len() > 9_000, "full, or nearly: {}", cache.len());
    // The newest are there, the oldest went first.
    let found = |n: usize| {
        let token = token(n);
        cache.get(cache.key(&token), &token, now, Some(7)).is_some()
    };
    assert!((19_900..20_000).all(found));
    assert!(!(0..100).any(found));
    // Entries past their time leave as new ones come, full or not.
    // (400 tokens reach each of the 16 shards, but for a 10⁻¹⁰ chance.)
    let later = now + MAX_AGE;
    for n in 0..400 {
        let token = format!("later-{n}");
        let v = verified(t + 3600, 0);
        cache.insert(cache.key(&token), &token, &identity(n), v, later);
    }
    assert_eq!(cache.len(), 400);
}

#[test]
fn threads_share_a_cache() {
    let t = 1_700_000_000;
    let now = Duration::from_secs(t);
    let cache = Arc::new(TokenCache::new(256));
    let shared: Vec<String> = (0..8).map(|n| format!("shared-token-{n}")).collect();
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let (cache, shared) = (&cache, &shared);
            scope.spawn(move || {
                for round in 0..2_000 {
                    let n = round % shared.len();
                    let token = &shared[n];
                    let key = cache.key(token);
                    match cache.get(key, token, now, Some(7)) {
                        Some(found) => assert_eq!(found, identity(n)),
                        None => cache.insert(key, token, &identity(n), verified(t + 600, 0), now),
                    }
                    // And tokens of its own, more than the cache holds.
                    let own = format!("thread-{thread}-token-{round}");
                    cache.insert(
                        cache.key(&own),
                        &own,
                        &identity(round),
                        verified(t + 600, 0),
                        now,
                    );
                }
            });
        }
    });
    assert!(cache.len() <= 256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_on_several_threads_share_the_rule() {
    let es = TestKey::es256("es");
    let auth = Arc::new(local(&[ES256], &[&es]));
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..4)
            .map(|n| es.sign(&claims_with(json!({"sub": format!("user-{n}")}))))
            .collect(),
    );
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let (auth, tokens) = (Arc::clone(&auth), Arc::clone(&tokens));
            tokio::spawn(async move {
                for round in 0..200 {
                    let n = (task + round) % tokens.len();
                    let identity = auth.authorize(&bearer(&tokens[n])).await.unwrap();
                    assert_eq!(identity.subject(), Some(format!("user-{n}").as_str()));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    // Each token verified once, or a few times when first presented by
    // several requests at once; never once per request.
    assert!(
        verified_in_full(&auth) <= 4 * 8,
        "{}",
        verified_in_full(&auth)
    );
    assert_eq!(remembered(&auth), 4);
}
