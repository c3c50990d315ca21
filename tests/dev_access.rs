//! `flint dev` end to end for who may reach a Function: API keys from a
//! file (rotated while it runs) and from the environment, JWTs checked
//! against a key set on disk (replaced while it runs), cluster-local
//! Functions, TLS with the self-signed certificate, and a custom domain two
//! Functions claim. The real binary, real child processes, real sockets on
//! 127.0.0.1.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;
use support::{
    Dev, free_port, get, get_with, metric, pids_in, temp_dir, write_atomic, write_function,
};

const WAIT: Duration = Duration::from_secs(60);

/// The pid in the test app's answer (`<greeting> pid=<pid>`).
fn pid_of(body: &str) -> &str {
    body.split("pid=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no pid in {body:?}"))
}

/// The request headers the test app's `/headers` saw, lowercased.
fn seen_headers(body: &str) -> String {
    body.split_once('\n')
        .map_or("", |(_, headers)| headers)
        .to_ascii_lowercase()
}

#[test]
fn api_keys_from_a_file_refuse_without_waking_and_rotate_without_a_new_revision() {
    let dir = temp_dir("access-keyfile");
    write_function(
        &dir,
        "keyed",
        "keyed",
        "  scale: {initial: 0}\n  auth:\n    apiKeys:\n      keys: {file: keys.txt}\n",
    );
    std::fs::write(dir.join("keyed/keys.txt"), "old-key\n").unwrap();
    let dev = Dev::start(&dir);
    let call = |key: Option<&str>| {
        let bearer = key.map(|k| format!("Bearer {k}"));
        let headers: Vec<(&str, &str)> = bearer
            .as_deref()
            .map(|b| ("Authorization", b))
            .into_iter()
            .collect();
        get_with(dev.gateway, "keyed.default.localhost", "/headers", &headers).unwrap()
    };

    // Refusals are the gateway's: the function at zero is not woken.
    let (status, head, body) = call(None);
    assert_eq!(status, 401, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer realm=\"flint\""),
        "{head}"
    );
    assert!(
        body.starts_with("function default/keyed refused the request: missing credentials"),
        "{body}"
    );
    let (status, _, body) = call(Some("guessed-key"));
    assert_eq!(status, 401, "{body}");
    assert!(
        !body.contains("guessed-key"),
        "the answer names the key: {body}"
    );
    assert!(
        pids_in(&dir).is_empty(),
        "a refused request woke the function"
    );

    let (status, _, body) = call(Some("old-key"));
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("keyed pid="), "{body}");
    let pid = pid_of(&body).to_owned();
    assert!(
        !seen_headers(&body).contains("authorization:"),
        "the key reached the function: {body}"
    );

    // Rotate: the new key replaces the old in the file.
    let rotated = Instant::now();
    write_atomic(&dir.join("keyed/keys.txt"), "new-key\n");
    dev.wait_for(Duration::from_secs(10), "the rotated keys", || {
        call(Some("old-key")).0 == 401 && call(Some("new-key")).0 == 200
    });
    let took = rotated.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "rotation took {took:?}:\n{}",
        dev.output()
    );
    let (status, _, body) = call(Some("new-key"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        pid_of(&body),
        pid,
        "the same replica answers: no new revision, no restart"
    );
    let output = dev.output();
    assert!(
        output.contains("key files changed: rebuilding the functions' auth"),
        "{output}"
    );
    assert!(
        !output.contains("keyed-00002"),
        "rotating a key cut a revision:\n{output}"
    );
    let refused = |reason: &str| {
        metric(
            dev.admin,
            "flint_auth_failures_total",
            &[
                "namespace=\"default\"",
                "function=\"keyed\"",
                &format!("reason=\"{reason}\""),
            ],
        )
    };
    assert_eq!(refused("missing_credentials"), 1.0);
    assert!(
        refused("invalid_key") >= 2.0,
        "the guessed key and the old one"
    );
    println!("rotation applied in {took:?}");
}

#[test]
fn api_keys_from_the_environment_in_a_header_of_their_own() {
    let dir = temp_dir("access-env");
    write_function(
        &dir,
        "envkeyed",
        "envkeyed",
        "  auth:\n    apiKeys:\n      keys: {env: FLINT_E2E_API_KEYS}\n      header: X-Api-Key\n",
    );
    write_function(
        &dir,
        "unset",
        "unset",
        "  auth:\n    apiKeys:\n      keys: {env: FLINT_E2E_UNSET_KEYS}\n",
    );
    let dev = Dev::start_with(
        &dir,
        free_port(),
        &[],
        &[("FLINT_E2E_API_KEYS", "key-one, key-two")],
    );
    let host = "envkeyed.default.localhost";
    let call = |headers: &[(&str, &str)]| get_with(dev.gateway, host, "/headers", headers).unwrap();

    assert_eq!(call(&[]).0, 401);
    let (status, _, body) = call(&[("Authorization", "Bearer key-one")]);
    assert_eq!(status, 401, "the key belongs in X-Api-Key: {body}");
    assert_eq!(call(&[("X-Api-Key", "key-three")]).0, 401);
    for key in ["key-one", "key-two"] {
        let (status, _, body) = call(&[("X-Api-Key", key)]);
        assert_eq!(status, 200, "{key}: {body}");
        assert!(body.starts_with("envkeyed pid="), "{body}");
        assert!(
            !seen_headers(&body).contains("x-api-key:"),
            "the key reached the function: {body}"
        );
    }

    // A variable that is not set refuses everything, saying so.
    let (status, head, body) = get_with(dev.gateway, "unset.default.localhost", "/", &[]).unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    assert_eq!(
        body.trim_end(),
        "function default/unset cannot check credentials: spec.auth.apiKeys: environment variable FLINT_E2E_UNSET_KEYS is not set"
    );
}

/// An ES256 signing key and its public half as a JWK.
struct SigningKey {
    pkcs8: Vec<u8>,
    jwk: serde_json::Value,
}

impl SigningKey {
    fn new(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        // Uncompressed point: 0x04, x, y.
        let point = pair.public_key().as_ref();
        Self {
            pkcs8: pkcs8.as_ref().to_vec(),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            }),
        }
    }

    fn token(&self, kid: &str, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(&self.pkcs8)).unwrap()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_jwt_checked_against_a_jwks_file_passes_the_subject_to_the_function() {
    const ISSUER: &str = "https://login.flint.test/";
    let dir = temp_dir("access-jwt");
    write_function(
        &dir,
        "orders",
        "orders",
        &format!(
            "  auth:\n    jwt:\n      issuer: {ISSUER}\n      audiences: [orders-api]\n      jwksFile: jwks.json\n      forwardClaims: [email]\n"
        ),
    );
    let key = SigningKey::new("dev-1");
    std::fs::write(
        dir.join("orders/jwks.json"),
        json!({"keys": [key.jwk]}).to_string(),
    )
    .unwrap();
    let dev = Dev::start(&dir);
    let claims = |aud: &str, exp: u64| json!({"iss": ISSUER, "aud": aud, "sub": "user-42", "email": "ada@flint.test", "iat": now(), "exp": exp});
    let call = |token: &str| {
        let bearer = format!("Bearer {token}");
        get_with(
            dev.gateway,
            "orders.default.localhost",
            "/headers",
            &[("Authorization", &bearer), ("X-Flint-Subject", "admin")],
        )
        .unwrap()
    };

    let valid = key.token("dev-1", &claims("orders-api", now() + 600));
    let (status, _, body) = call(&valid);
    assert_eq!(status, 200, "{body}\n{}", dev.output());
    let seen = seen_headers(&body);
    assert!(seen.contains("x-flint-subject: user-42\n"), "{body}");
    assert!(
        !seen.contains("x-flint-subject: admin"),
        "a client-sent identity header reached the function: {body}"
    );
    assert!(
        seen.contains("x-flint-claim-email: ada@flint.test\n"),
        "{body}"
    );

    // What the key set on disk does not vouch for.
    let other = SigningKey::new("dev-1");
    let refusals = [
        (
            "signed by another key",
            other.token("dev-1", &claims("orders-api", now() + 600)),
        ),
        (
            "for another audience",
            key.token("dev-1", &claims("billing", now() + 600)),
        ),
        (
            "expired",
            key.token("dev-1", &claims("orders-api", now() - 3600)),
        ),
        (
            "with an unknown kid",
            key.token("dev-2", &claims("orders-api", now() + 600)),
        ),
    ];
    for (what, token) in &refusals {
        let (status, head, body) = call(token);
        assert_eq!(status, 401, "a token {what}: {body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("error=\"invalid_token\""),
            "a token {what}: {head}"
        );
    }
    assert_eq!(call("not-a-jwt").0, 401);

    // The issuer's key set on disk changes: tokens of the new key pass,
    // those of the old one no longer do.
    write_atomic(
        &dir.join("orders/jwks.json"),
        &json!({"keys": [other.jwk]}).to_string(),
    );
    let from_other = other.token("dev-1", &claims("orders-api", now() + 600));
    dev.wait_for(Duration::from_secs(10), "the new key set", || {
        call(&from_other).0 == 200 && call(&valid).0 == 401
    });
    assert!(
        !dev.output().contains("orders-00002"),
        "a new key set cut a revision:\n{}",
        dev.output()
    );
}

#[test]
fn a_cluster_local_function_answers_on_the_internal_port_only() {
    let dir = temp_dir("access-local");
    write_function(&dir, "ledger", "ledger", "  visibility: cluster-local\n");
    write_function(&dir, "shop", "shop", "");
    let dev = Dev::start(&dir);
    dev.wait_output(WAIT, "cluster-local: on the in-cluster port only");

    // On the public port, the same 404 as for a Function that does not exist.
    let (status, unknown) = get(dev.gateway, "nosuch.default.localhost", "/").unwrap();
    assert_eq!(status, 404, "{unknown}");
    let (status, body) = get(dev.gateway, "ledger.default.localhost", "/").unwrap();
    assert_eq!(status, 404, "{body}");
    assert_eq!(body, unknown.replace("nosuch", "ledger"));
    let (status, body) = dev.call("ledger", "/").unwrap();
    assert_eq!(status, 404, "{body}");

    // On the in-cluster port, by host and by path; public ones answer there too.
    let (status, body) = get(dev.internal, "ledger.default.localhost", "/").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("ledger pid="), "{body}");
    let (status, body) = get(dev.internal, "localhost", "/function/default/ledger/").unwrap();
    assert_eq!(status, 200, "{body}");
    for addr in [dev.gateway, dev.internal] {
        let (status, body) = get(addr, "shop.default.localhost", "/").unwrap();
        assert_eq!(
            (status, body.starts_with("shop pid=")),
            (200, true),
            "{addr}: {body}"
        );
    }
}

/// Runs `program` with `args` and stdin closed; its stdout, or a panic
/// with its stderr.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The certificate the TLS port serves to a client asking for `host` (SNI).
fn served_certificate(port: u16, host: &str, into: &Path) -> String {
    let connect = format!("127.0.0.1:{port}");
    let chain = run(
        "openssl",
        &["s_client", "-connect", &connect, "-servername", host],
    );
    let start = chain
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap_or_else(|| panic!("no certificate served:\n{chain}"));
    let end = chain.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
    std::fs::write(into, format!("{}\n", &chain[start..end])).unwrap();
    run(
        "openssl",
        &[
            "x509",
            "-in",
            into.to_str().unwrap(),
            "-noout",
            "-ext",
            "subjectAltName",
        ],
    )
}

#[test]
fn tls_serves_a_certificate_covering_the_function_s_host() {
    let dir = temp_dir("access-tls");
    write_function(&dir, "secure", "secure", "  tls: {}\n");
    let dev = Dev::start(&dir);
    let host = "secure.default.localhost";
    let port = dev.tls.port();
    dev.wait_output(WAIT, &format!("https://{host}:{port}/"));

    let pem = dir.join("served.pem");
    let names = served_certificate(port, host, &pem);
    let names: Vec<&str> = names
        .lines()
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .collect();
    assert!(names.contains(&format!("DNS:{host}").as_str()), "{names:?}");

    // curl checks the served certificate against the host (no -k): the
    // certificate itself is the trust anchor.
    let resolve = format!("{host}:{port}:127.0.0.1");
    let url = format!("https://{host}:{port}/");
    let answer = run(
        "curl",
        &[
            "-sS",
            "--max-time",
            "30",
            "--cacert",
            pem.to_str().unwrap(),
            "--resolve",
            &resolve,
            "-w",
            "\n%{http_code} %{scheme}",
            &url,
        ],
    );
    let (body, status) = answer.rsplit_once('\n').unwrap();
    assert_eq!(status, "200 HTTPS", "{answer}");
    assert!(body.starts_with("secure pid="), "{answer}");

    // Without `redirect`, plain HTTP still answers.
    let (status, body) = get(dev.gateway, host, "/").unwrap();
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_domain_two_functions_claim_goes_to_the_one_loaded_first() {
    let dir = temp_dir("access-domains");
    // `zeta` is loaded first; `alpha`, which a tie would favour, later.
    write_function(&dir, "zeta", "zeta", "  domains: [api.example.test]\n");
    let dev = Dev::start(&dir);
    let (status, body) = get(dev.gateway, "api.example.test", "/").unwrap();
    assert_eq!(
        (status, body.starts_with("zeta pid=")),
        (200, true),
        "{body}"
    );
    // Within the same second, most likely: a later load all the same.
    write_function(&dir, "alpha", "alpha", "  domains: [api.example.test]\n");
    dev.wait_output(
        WAIT,
        "warning  default/alpha: domain api.example.test is already claimed by Function default/zeta, created earlier; not routed there",
    );
    let (status, body) = get(dev.gateway, "alpha.default.localhost", "/").unwrap();
    assert_eq!(
        (status, body.starts_with("alpha pid=")),
        (200, true),
        "{body}"
    );
    for _ in 0..5 {
        let (status, body) = get(dev.gateway, "api.example.test", "/").unwrap();
        assert_eq!(
            (status, body.starts_with("zeta pid=")),
            (200, true),
            "{body}"
        );
    }
    assert!(
        !dev.output().contains("warning  default/zeta"),
        "{}",
        dev.output()
    );
}
