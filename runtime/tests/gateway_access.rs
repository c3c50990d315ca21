//! Who may reach a Function, through a real gateway on real sockets:
//! cluster-local Functions on the public and the internal listener, API
//! keys and JWTs, HMAC and from a key set fetched from a server on
//! 127.0.0.1 (each refusal asserting that the app was not reached and the
//! revision at zero was not woken; `alg: none`, alg confusion, expiry,
//! issuer, audience, unknown keys, the issuer's rotation), key rotation
//! through the keyring,
//! identity headers, rules kept across rebuilds until their Secret
//! changes, keys that cannot be read, the https redirect and custom
//! domains.

mod gateway_support;
#[allow(dead_code)]
#[path = "../src/gateway/auth/tests/tokens.rs"]
mod tokens;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flint_api::Protocol;
use flint_api::backend::{FunctionAccess, FunctionKey, FunctionRoute};
use flint_api::function::{
    ApiKeyAuth, AuthSpec, ClaimName, JwtAlgorithm, JwtAuth, KeySource, RequiredClaim, TlsSpec,
    Visibility,
};
use flint_runtime::gateway::auth::FunctionAuth;
use flint_runtime::gateway::gate::Guard;
use flint_runtime::gateway::keyring::{CertPem, Keyring, KeyringError};
use flint_runtime::gateway::{Gateway, Listener, ListenerKind};
use gateway_support::*;
use http::{Request, StatusCode};
use http_body_util::Full;

/// Secret material by Secret name, changeable while the gateway runs.
#[derive(Default)]
struct TestKeyring(Mutex<HashMap<String, Vec<Vec<u8>>>>);

impl TestKeyring {
    fn set(&self, name: &str, values: &[&str]) {
        let values = values.iter().map(|v| v.as_bytes().to_vec()).collect();
        self.0.lock().unwrap().insert(name.to_owned(), values);
    }
}

impl Keyring for TestKeyring {
    fn values(&self, f: &FunctionKey, source: &KeySource) -> Result<Vec<Vec<u8>>, KeyringError> {
        let name = source.secret_name.clone().unwrap_or_default();
        self.0
            .lock()
            .unwrap()
            .get(&name)
            .cloned()
            .ok_or(KeyringError::SecretNotFound {
                namespace: f.namespace.clone(),
                name,
            })
    }
    fn file(&self, _: &FunctionKey, path: &str) -> Result<Vec<u8>, KeyringError> {
        Err(KeyringError::Unsupported(path.to_owned()))
    }
    fn tls(&self, ns: &str, name: &str) -> Result<CertPem, KeyringError> {
        Err(KeyringError::SecretNotFound {
            namespace: ns.to_owned(),
            name: name.to_owned(),
        })
    }
    fn default_tls(&self, _: &[String]) -> Option<Result<CertPem, KeyringError>> {
        None
    }
}

fn secret(name: &str) -> KeySource {
    KeySource {
        secret_name: Some(name.to_owned()),
        ..KeySource::default()
    }
}

fn api_keys(header: Option<&str>) -> AuthSpec {
    AuthSpec {
        api_keys: Some(ApiKeyAuth {
            keys: secret("keys"),
            header: header.map(str::to_owned),
        }),
        jwt: None,
    }
}

fn hmac_jwt() -> AuthSpec {
    AuthSpec {
        api_keys: None,
        jwt: Some(JwtAuth {
            issuer: "https://issuer.test".into(),
            audiences: vec!["orders".into()],
            jwks_url: None,
            jwks_file: None,
            algorithms: vec![JwtAlgorithm::HS256],
            hmac_key: Some(secret("hmac")),
            clock_skew_seconds: 0,
            required_claims: vec![RequiredClaim {
                name: "scope".into(),
                values: vec!["orders:read".into()],
            }],
            forward_claims: vec![ClaimName("email".into())],
        }),
    }
}

/// Function `ns/<name>` with one revision (`<name>-00001`) and `access`.
fn function(name: &str, access: FunctionAccess) -> FunctionRoute {
    let rev = format!("{name}-00001");
    FunctionRoute {
        access,
        ..single(name, revision(&rev, 0, 10))
    }
}

/// A gateway with the test keyring, serving a public and an internal
/// listener; returns it, the internal address and the keyring.
async fn gateway_with_keyring() -> (Running, SocketAddr, Arc<TestKeyring>) {
    let gw = gateway(config()).await;
    let keyring = Arc::new(TestKeyring::default());
    gw.gateway.set_keyring(keyring.clone());
    let internal = serve_internal(&gw.gateway);
    (gw, internal, keyring)
}

/// Serves `gateway`'s internal listener on a free port; returns it.
fn serve_internal(gateway: &Gateway) -> SocketAddr {
    let socket = flint_runtime::gateway::listener(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = socket.local_addr().unwrap();
    let g = gateway.clone();
    tokio::spawn(async move {
        let listeners = vec![Listener::plain(socket, ListenerKind::Internal)];
        g.serve_listeners(listeners, std::future::pending()).await
    });
    addr
}

async fn get_with(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::builder().uri(path).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    request(addr, req.body(Full::new(Bytes::new())).unwrap()).await
}

#[tokio::test]
async fn a_cluster_local_function_is_unknown_on_the_public_listener_only() {
    let app = app("app", Protocol::Http1).await;
    let (gw, internal, _) = gateway_with_keyring().await;
    let local = FunctionAccess {
        visibility: Some(Visibility::ClusterLocal),
        ..FunctionAccess::default()
    };
    gw.gateway.set_routes(vec![
        function("hidden", local),
        function("open", FunctionAccess::default()),
    ]);
    for name in ["hidden", "open"] {
        gw.gateway.set_endpoints(
            &key(name, &format!("{name}-00001")),
            vec![ready("p", app.addr)],
        );
    }
    let host = "hidden.ns.localhost";
    let (status, _, body) = get(gw.addr, host, "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The same answer as for a Function that does not exist.
    let (_, _, unknown) = get(gw.addr, "nothing.ns.localhost", "/").await;
    assert_eq!(body.replace("hidden", "nothing"), unknown);
    let (status, _, _) = get(gw.addr, "127.0.0.1", "/function/ns/hidden/").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the path form hides it too");
    assert_eq!(
        app.stats.served.load(std::sync::atomic::Ordering::SeqCst),
        0
    );

    let (status, _, body) = get(internal, host, "/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = get(internal, "open.ns.localhost", "/").await;
    assert_eq!(status, StatusCode::OK, "public Functions answer inside too");
    let (status, _, _) = get(gw.addr, "open.ns.localhost", "/").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn api_keys_refuse_without_reaching_or_waking_the_function() {
    let (gw, _, keyring) = gateway_with_keyring().await;
    keyring.set("keys", &["k-one", "k-two"]);
    let access = |header| FunctionAccess {
        auth: Some(api_keys(header)),
        ..FunctionAccess::default()
    };
    // At zero: no replica. Any request let through would poke.
    gw.gateway.set_routes(vec![
        function("bearer", access(None)),
        function("header", access(Some("X-Api-Key"))),
    ]);
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], StatusCode, &'a str);
    let cases: [Case<'_>; 6] = [
        (
            "bearer",
            &[],
            StatusCode::UNAUTHORIZED,
            "missing_credentials",
        ),
        (
            "bearer",
            &[("authorization", "Bearer nope")],
            StatusCode::UNAUTHORIZED,
            "invalid_key",
        ),
        (
            "bearer",
            &[("authorization", "Basic k-one")],
            StatusCode::UNAUTHORIZED,
            "",
        ),
        (
            "bearer",
            &[("x-api-key", "k-one")],
            StatusCode::UNAUTHORIZED,
            "missing_credentials",
        ),
        (
            "header",
            &[("authorization", "Bearer k-one")],
            StatusCode::UNAUTHORIZED,
            "missing_credentials",
        ),
        (
            "header",
            &[("x-api-key", "k-onex")],
            StatusCode::UNAUTHORIZED,
            "invalid_key",
        ),
    ];
    for (name, headers, want, _) in cases {
        let (status, resp, body) =
            get_with(gw.addr, &format!("{name}.ns.localhost"), "/", headers).await;
        assert_eq!(status, want, "{name} {headers:?}: {body}");
        let challenge = resp
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(
            challenge.is_some_and(|c| c.starts_with("Bearer")),
            "{name} {headers:?}"
        );
        assert!(body.contains(&format!("ns/{name}")), "{body}");
        assert!(
            !body.contains("k-one"),
            "a refusal never echoes a key: {body}"
        );
    }
    assert!(
        gw.pokes.taken().is_empty(),
        "no refused request woke the function"
    );
    let metrics = gw.gateway.metrics_text().unwrap();
    let failures = samples(&metrics, "flint_auth_failures_total");
    let count = |reason: &str| {
        failures
            .iter()
            .filter(|(labels, _)| labels.contains(&format!("reason=\"{reason}\"")))
            .map(|(_, v)| *v)
            .sum::<f64>()
    };
    assert_eq!(
        count("missing_credentials") + count("invalid_key") + count("malformed_token"),
        6.0,
        "{failures:?}"
    );

    // The right key gets through: the request waits for a replica (a poke).
    let app = app("app", Protocol::Http1).await;
    gw.gateway
        .set_endpoints(&key("header", "header-00001"), vec![ready("p", app.addr)]);
    let (status, _, body) = get_with(
        gw.addr,
        "header.ns.localhost",
        "/whoami",
        &[
            ("x-api-key", "k-two"),
            ("x-flint-subject", "admin"),
            ("x-flint-claim-role", "root"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body, "app ",
        "neither the key nor spoofed identity headers reach the function"
    );
}

#[tokio::test]
async fn a_rotated_key_replaces_the_old_without_a_route_change() {
    let app = app("app", Protocol::Http1).await;
    let (gw, _, keyring) = gateway_with_keyring().await;
    keyring.set("keys", &["old"]);
    gw.gateway.set_routes(vec![function(
        "f",
        FunctionAccess {
            auth: Some(api_keys(None)),
            ..FunctionAccess::default()
        },
    )]);
    gw.gateway
        .set_endpoints(&key("f", "f-00001"), vec![ready("p", app.addr)]);
    let addr = gw.addr;
    let call = move |k: &'static str| async move {
        get_with(addr, "f.ns.localhost", "/", &[("authorization", k)]).await
    };
    assert_eq!(call("Bearer old").await.0, StatusCode::OK);
    keyring.set("keys", &["old", "new"]);
    gw.gateway.refresh_access();
    assert_eq!(call("Bearer new").await.0, StatusCode::OK);
    assert_eq!(
        call("Bearer old").await.0,
        StatusCode::OK,
        "both during the rotation"
    );
    keyring.set("keys", &["new"]);
    gw.gateway.refresh_access();
    assert_eq!(call("Bearer old").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call("Bearer new").await.0, StatusCode::OK);
}

#[tokio::test]
async fn keys_that_cannot_be_read_refuse_everything_with_503_naming_the_secret() {
    let (gw, _, _) = gateway_with_keyring().await;
    gw.gateway.set_routes(vec![function(
        "f",
        FunctionAccess {
            auth: Some(api_keys(None)),
            ..FunctionAccess::default()
        },
    )]);
    let (status, headers, body) = get_with(
        gw.addr,
        "f.ns.localhost",
        "/",
        &[("authorization", "Bearer anything")],
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(headers.contains_key("retry-after"));
    assert!(body.contains("Secret ns/keys not found"), "{body}");
    assert!(gw.pokes.taken().is_empty());
}

/// An HS256 token for `claims`, signed with `key`.
fn token(key: &[u8], claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn jwts_pass_the_identity_and_refuse_with_401_or_403() {
    let app = app("app", Protocol::Http1).await;
    let (gw, _, keyring) = gateway_with_keyring().await;
    let key = "a-shared-key-of-at-least-32-bytes!!";
    keyring.set("hmac", &[key]);
    gw.gateway.set_routes(vec![function(
        "orders",
        FunctionAccess {
            auth: Some(hmac_jwt()),
            ..FunctionAccess::default()
        },
    )]);
    let claims = |exp: u64, aud: &str, scope: &str| {
        serde_json::json!({"iss": "https://issuer.test", "aud": aud, "sub": "user-7",
            "exp": exp, "scope": scope, "email": "u7@example.com"})
    };
    let bearer = |t: String| format!("Bearer {t}");
    let cases = [
        (
            token(key.as_bytes(), claims(now() - 60, "orders", "orders:read")),
            StatusCode::UNAUTHORIZED,
            "expired",
        ),
        (
            token(
                key.as_bytes(),
                claims(now() + 600, "billing", "orders:read"),
            ),
            StatusCode::UNAUTHORIZED,
            "audience",
        ),
        (
            token(
                b"another-key-of-at-least-32-bytes!!!",
                claims(now() + 600, "orders", "orders:read"),
            ),
            StatusCode::UNAUTHORIZED,
            "signature",
        ),
        (
            token(
                key.as_bytes(),
                claims(now() + 600, "orders", "orders:write"),
            ),
            StatusCode::FORBIDDEN,
            "scope",
        ),
    ];
    for (t, want, what) in cases {
        let (status, _, body) = get_with(
            gw.addr,
            "orders.ns.localhost",
            "/",
            &[("authorization", &bearer(t))],
        )
        .await;
        assert_eq!(status, want, "{what}: {body}");
    }
    assert!(gw.pokes.taken().is_empty());
    gw.gateway.set_endpoints(
        &self::key("orders", "orders-00001"),
        vec![ready("p", app.addr)],
    );
    let good = token(
        key.as_bytes(),
        claims(now() + 600, "orders", "openid orders:read"),
    );
    let (status, _, body) = get_with(
        gw.addr,
        "orders.ns.localhost",
        "/whoami",
        &[("authorization", &bearer(good))],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("x-flint-subject=user-7"), "{body}");
    assert!(
        body.contains("x-flint-claim-email=u7@example.com"),
        "{body}"
    );
}

/// A JWT rule for the test issuer fetching its keys from `url`, RS256
/// and ES256 only.
fn remote_jwt(url: &str) -> AuthSpec {
    AuthSpec {
        api_keys: None,
        jwt: Some(JwtAuth {
            issuer: tokens::ISSUER.into(),
            audiences: vec![tokens::AUDIENCE.into()],
            jwks_url: Some(url.into()),
            jwks_file: None,
            algorithms: vec![JwtAlgorithm::RS256, JwtAlgorithm::ES256],
            hmac_key: None,
            clock_skew_seconds: 0,
            required_claims: Vec::new(),
            forward_claims: Vec::new(),
        }),
    }
}

#[tokio::test]
async fn jwts_from_a_fetched_key_set_refuse_every_forgery_and_follow_a_rotation() {
    use serde_json::json;
    use tokens::{Answer, JwksServer, TestKey, claims, claims_with, hs256, jwks, unsigned};
    let (rsa, es) = (TestKey::rsa("rsa-1"), TestKey::es256("es-1"));
    let rotated = TestKey::es256("es-2");
    let server = JwksServer::start(Answer::Keys(jwks(&[&rsa, &es]))).await;
    let mut config = config();
    config.access.allow_http_jwks = true;
    let gw = gateway(config).await;
    gw.gateway.set_routes(vec![function(
        "orders",
        FunctionAccess {
            auth: Some(remote_jwt(&server.url)),
            ..FunctionAccess::default()
        },
    )]);
    let later = tokens::now() + 600;
    let cases = [
        ("no token", None, "missing_credentials"),
        (
            "alg none",
            Some(unsigned(&claims())),
            "algorithm_not_allowed",
        ),
        (
            "HS256 keyed with the RSA public key (alg confusion)",
            Some(hs256(
                tokens::RSA_PUBLIC_PEM.as_bytes(),
                Some("rsa-1"),
                &claims(),
            )),
            "algorithm_not_allowed",
        ),
        (
            "expired",
            Some(rsa.sign(&claims_with(json!({"exp": tokens::now() - 5})))),
            "expired",
        ),
        (
            "not yet valid",
            Some(es.sign(&claims_with(json!({"nbf": later})))),
            "not_yet_valid",
        ),
        (
            "wrong issuer",
            Some(rsa.sign(&claims_with(json!({"iss": "https://evil.test"})))),
            "wrong_issuer",
        ),
        (
            "wrong audience",
            Some(es.sign(&claims_with(json!({"aud": "billing"})))),
            "wrong_audience",
        ),
        (
            "a key the issuer does not publish (yet)",
            Some(rotated.sign(&claims())),
            "unknown_key",
        ),
    ];
    for (what, token, reason) in &cases {
        let bearer = token.as_ref().map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = bearer
            .iter()
            .map(|b| ("authorization", b.as_str()))
            .collect();
        let (status, resp, body) = get_with(gw.addr, "orders.ns.localhost", "/", &headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert!(resp.contains_key("www-authenticate"), "{what}");
        let metrics = gw.gateway.metrics_text().unwrap();
        let counted = samples(&metrics, "flint_auth_failures_total")
            .iter()
            .any(|(labels, v)| labels.contains(&format!("reason=\"{reason}\"")) && *v >= 1.0);
        assert!(counted, "{what}: counted as {reason}");
    }
    assert!(
        gw.pokes.taken().is_empty(),
        "no refused token woke the function at zero"
    );
    let fetched = server.hits();
    assert!(fetched >= 1, "the key set was fetched");

    // A replica: a good token reaches it with its identity, and spoofed
    // identity headers are replaced.
    let app = app("app", Protocol::Http1).await;
    gw.gateway
        .set_endpoints(&key("orders", "orders-00001"), vec![ready("p", app.addr)]);
    let good = format!("Bearer {}", rsa.sign(&claims()));
    let (status, _, body) = get_with(
        gw.addr,
        "orders.ns.localhost",
        "/whoami",
        &[("authorization", &good), ("x-flint-subject", "admin")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("x-flint-subject=user-1"), "{body}");
    assert!(!body.contains("admin"), "{body}");

    // The issuer rotates to a new key: a token naming it is verified once
    // the key set is fetched again (at most once per 10 s per URL,
    // whatever the unknown kids presented meanwhile).
    server.set(Answer::Keys(jwks(&[&rsa, &es, &rotated])));
    let fresh = format!("Bearer {}", rotated.sign(&claims()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, _, body) = get_with(
            gw.addr,
            "orders.ns.localhost",
            "/whoami",
            &[("authorization", &fresh)],
        )
        .await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(std::time::Instant::now() < deadline, "rotation never seen");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert_eq!(
        server.hits(),
        fetched + 1,
        "one more fetch, not one per unknown token"
    );
}

/// The Function's rule in the gateway's table now.
fn rule_of(gateway: &Gateway, name: &str) -> Arc<FunctionAuth> {
    match &gateway.table().function("ns", name).unwrap().gate.guard {
        Guard::Auth(auth) => Arc::clone(auth),
        other => panic!("{name} has no rule: {other:?}"),
    }
}

#[tokio::test]
async fn a_rule_outlives_rebuilds_until_its_secret_changes() {
    let app = app("app", Protocol::Http1).await;
    let (gw, _, keyring) = gateway_with_keyring().await;
    let (old, new) = (
        "a-shared-key-of-at-least-32-bytes!!",
        "the-next-key-of-at-least-32-bytes!!",
    );
    keyring.set("hmac", &[old]);
    let routes = vec![function(
        "orders",
        FunctionAccess {
            auth: Some(hmac_jwt()),
            ..FunctionAccess::default()
        },
    )];
    gw.gateway.set_routes(routes.clone());
    gw.gateway.set_endpoints(
        &self::key("orders", "orders-00001"),
        vec![ready("p", app.addr)],
    );
    let claims = serde_json::json!({"iss": "https://issuer.test", "aud": "orders",
        "sub": "user-7", "exp": now() + 600, "scope": "orders:read"});
    let addr = gw.addr;
    let call = move |key: &str| {
        let auth = format!("Bearer {}", token(key.as_bytes(), claims.clone()));
        async move {
            let headers = [("authorization", auth.as_str())];
            get_with(addr, "orders.ns.localhost", "/", &headers).await.0
        }
    };
    assert_eq!(call(old).await, StatusCode::OK);
    let first = rule_of(&gw.gateway, "orders");
    gw.gateway.set_routes(routes);
    gw.gateway.refresh_access();
    assert!(Arc::ptr_eq(&first, &rule_of(&gw.gateway, "orders")));
    assert_eq!(call(old).await, StatusCode::OK);
    keyring.set("hmac", &[new]);
    gw.gateway.refresh_access();
    assert!(!Arc::ptr_eq(&first, &rule_of(&gw.gateway, "orders")));
    assert_eq!(
        call(old).await,
        StatusCode::UNAUTHORIZED,
        "a token verified under the old key is not remembered"
    );
    assert_eq!(call(new).await, StatusCode::OK);
}

#[tokio::test]
async fn tls_redirect_sends_plain_requests_to_https() {
    let (gw, _, _) = gateway_with_keyring().await;
    gw.gateway.set_routes(vec![function(
        "f",
        FunctionAccess {
            tls: Some(TlsSpec {
                secret_name: None,
                redirect: true,
            }),
            ..FunctionAccess::default()
        },
    )]);
    let (status, headers, _) = get(gw.addr, "f.ns.localhost:8080", "/a/b?c=1").await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(headers["location"], "https://f.ns.localhost/a/b?c=1");
    assert!(gw.pokes.taken().is_empty());
}

#[tokio::test]
async fn custom_domains_route_to_their_first_claimant() {
    let app = app("app", Protocol::Http1).await;
    let (gw, _, _) = gateway_with_keyring().await;
    let claim = |created: &str| FunctionAccess {
        domains: vec!["api.example.org".into()],
        created: Some(created.into()),
        ..FunctionAccess::default()
    };
    gw.gateway.set_routes(vec![
        function("second", claim("2026-02-01T00:00:00Z")),
        function("first", claim("2026-01-01T00:00:00Z")),
    ]);
    gw.gateway
        .set_endpoints(&key("first", "first-00001"), vec![ready("p", app.addr)]);
    let (status, _, body) = get(gw.addr, "api.example.org", "/whoami").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        gw.gateway
            .revision(&key("second", "second-00001"))
            .is_none_or(|s| s.waiting() == 0)
    );
}

#[tokio::test]
async fn the_platform_s_own_callers_pass_every_gate_with_the_internal_token() {
    let app = app("app", Protocol::Http1).await;
    let (gw, _, keyring) = gateway_with_keyring().await;
    keyring.set("keys", &["k"]);
    let guarded = FunctionAccess {
        visibility: Some(Visibility::ClusterLocal),
        auth: Some(api_keys(None)),
        ..FunctionAccess::default()
    };
    gw.gateway.set_routes(vec![function("f", guarded)]);
    gw.gateway
        .set_endpoints(&key("f", "f-00001"), vec![ready("p", app.addr)]);
    let token = gw.gateway.internal_token().expose().to_owned();
    let (status, _, body) = get_with(
        gw.addr,
        "f.ns.localhost",
        "/whoami",
        &[("x-flint-internal", &token)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, "app ", "the token never reaches the function");
    let (status, _, _) = get_with(
        gw.addr,
        "f.ns.localhost",
        "/whoami",
        &[("x-flint-internal", "wrong")],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a wrong token is no token");
}
