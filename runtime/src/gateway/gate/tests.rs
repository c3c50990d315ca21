//! A rebuilt gate keeps its Function's rule (and the tokens it verified)
//! while the spec and the secret material stay the same, and builds a new
//! one when either changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use flint_api::backend::{FunctionAccess, FunctionKey, FunctionRoute};
use flint_api::function::{AuthSpec, JwtAlgorithm, JwtAuth, KeySource};
use http::Request;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::{Gate, Guard};
use crate::gateway::AccessSettings;
use crate::gateway::auth::JwksRegistry;
use crate::gateway::keyring::{CertPem, Keyring, KeyringError};

/// Secret values by Secret name.
#[derive(Default)]
struct Secrets(Mutex<HashMap<String, Vec<Vec<u8>>>>);

impl Secrets {
    fn set(&self, name: &str, value: &str) {
        let mut secrets = self.0.lock().unwrap();
        secrets.insert(name.into(), vec![value.as_bytes().to_vec()]);
    }
}

impl Keyring for Secrets {
    fn values(&self, f: &FunctionKey, source: &KeySource) -> Result<Vec<Vec<u8>>, KeyringError> {
        let name = source.secret_name.clone().unwrap_or_default();
        let secrets = self.0.lock().unwrap();
        secrets
            .get(&name)
            .cloned()
            .ok_or(KeyringError::SecretNotFound {
                namespace: f.namespace.clone(),
                name,
            })
    }
    fn file(&self, _: &FunctionKey, path: &str) -> Result<Vec<u8>, KeyringError> {
        Err(KeyringError::Unsupported(path.into()))
    }
    fn tls(&self, _: &str, name: &str) -> Result<CertPem, KeyringError> {
        Err(KeyringError::Unsupported(name.into()))
    }
    fn default_tls(&self, _: &[String]) -> Option<Result<CertPem, KeyringError>> {
        None
    }
}

const HMAC: &str = "0123456789abcdef0123456789abcdef-first";

fn spec(audience: &str) -> AuthSpec {
    AuthSpec {
        api_keys: None,
        jwt: Some(JwtAuth {
            issuer: "https://issuer.test".into(),
            audiences: vec![audience.into()],
            jwks_url: None,
            jwks_file: None,
            algorithms: vec![JwtAlgorithm::HS256],
            hmac_key: Some(KeySource {
                secret_name: Some("hmac".into()),
                ..KeySource::default()
            }),
            clock_skew_seconds: 0,
            required_claims: Vec::new(),
            forward_claims: Vec::new(),
        }),
    }
}

fn route(auth: Option<AuthSpec>) -> FunctionRoute {
    FunctionRoute {
        namespace: "ns".into(),
        name: "f".into(),
        revisions: Vec::new(),
        traffic: Vec::new(),
        access: FunctionAccess {
            auth,
            ..FunctionAccess::default()
        },
    }
}

struct Builder {
    secrets: Secrets,
    registry: JwksRegistry,
    settings: AccessSettings,
}

impl Builder {
    fn new() -> Self {
        let secrets = Secrets::default();
        secrets.set("hmac", HMAC);
        Self {
            secrets,
            registry: JwksRegistry::new(Default::default()),
            settings: AccessSettings::default(),
        }
    }

    fn build(&self, route: &FunctionRoute, previous: Option<&Gate>) -> Gate {
        Gate::build(
            route,
            &self.settings,
            &self.secrets,
            &self.registry,
            previous,
        )
    }
}

fn rule(gate: &Gate) -> &Arc<crate::gateway::auth::FunctionAuth> {
    match &gate.guard {
        Guard::Auth(auth) => auth,
        other => panic!("no rule: {other:?}"),
    }
}

async fn admit(gate: &Gate, token: &str) -> bool {
    let mut req = Request::get("/")
        .header("authorization", format!("Bearer {token}"))
        .body(())
        .unwrap();
    gate.admit(("ns", "f"), &mut req, false, 443).await.is_ok()
}

#[tokio::test]
async fn a_rebuild_keeps_the_rule_while_spec_and_material_stay() {
    let b = Builder::new();
    let first = b.build(&route(Some(spec("orders"))), None);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = json!({"iss": "https://issuer.test", "aud": "orders", "sub": "u", "exp": exp});
    let token = jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(HMAC.as_bytes()),
    )
    .unwrap();
    assert!(admit(&first, &token).await);

    let same = b.build(&route(Some(spec("orders"))), Some(&first));
    assert!(Arc::ptr_eq(rule(&first), rule(&same)));
    assert!(admit(&same, &token).await);
    assert_eq!(
        rule(&same).tokens_verified_in_full(),
        1,
        "remembered across the rebuild"
    );

    let other_spec = b.build(&route(Some(spec("invoices"))), Some(&same));
    assert!(!Arc::ptr_eq(rule(&same), rule(&other_spec)));

    b.secrets
        .set("hmac", "0123456789abcdef0123456789abcdef-second");
    let rotated = b.build(&route(Some(spec("orders"))), Some(&same));
    assert!(!Arc::ptr_eq(rule(&same), rule(&rotated)));
    assert!(
        !admit(&rotated, &token).await,
        "the old key's token is refused"
    );

    // Without a rule before (open, or keys unreadable), one is built.
    let open = b.build(&route(None), Some(&rotated));
    assert!(matches!(open.guard, Guard::Open));
    let again = b.build(&route(Some(spec("orders"))), Some(&open));
    assert!(!Arc::ptr_eq(rule(&rotated), rule(&again)));
    b.secrets.0.lock().unwrap().clear();
    let unreadable = b.build(&route(Some(spec("orders"))), Some(&again));
    assert!(matches!(unreadable.guard, Guard::Unavailable(_)));
}
