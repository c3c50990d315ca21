//! The auth targets of the `gateway` role: two more Functions behind the
//! same app, one with `spec.auth.apiKeys`, one with `spec.auth.jwt`, their
//! secret material made at start and held in memory by [`BenchKeyring`].
//!
//! - `key.bench.localhost`: four random API keys, sent as
//!   `Authorization: Bearer <key>`;
//! - `jwt.bench.localhost`: tokens of a fresh ES256 key pair (or RS256,
//!   with `FLINT_BENCH_JWT_ALG=RS256` and a 2048-bit PKCS#1 DER private key
//!   in the file `FLINT_BENCH_JWT_RSA_KEY`: ring cannot generate RSA keys),
//!   its key set given as a JWKS document (`jwksFile`, read through
//!   [`Keyring::file`]), a required `scope` claim.
//!
//! The credential each client sends is written, as a whole `Authorization`
//! header, to the files `api-key` and `jwt` of the directory the role is
//! given, before the gateway listens.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flint_api::backend::FunctionKey;
use flint_api::function::{ApiKeyAuth, AuthSpec, JwtAlgorithm, JwtAuth, KeySource, RequiredClaim};
use flint_runtime::gateway::keyring::{CertPem, Keyring, KeyringError};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents,
};
use serde_json::json;

use crate::BenchError;

const ISSUER: &str = "https://issuer.bench.localhost/";
const AUDIENCE: &str = "flint-bench";
const KID: &str = "bench-1";
/// The key file `spec.auth.jwt.jwksFile` names; [`BenchKeyring::file`]
/// answers it.
const JWKS_FILE: &str = "jwks.json";
/// How many API keys the Function accepts (the client sends the first;
/// every digest is compared anyway).
const API_KEYS: usize = 4;
/// How long the token is valid: longer than any run.
const TOKEN_SECONDS: u64 = 24 * 3600;

/// The secret material of the auth Functions, in memory.
pub struct BenchKeyring {
    api_keys: Vec<Vec<u8>>,
    jwks: Vec<u8>,
}

impl Keyring for BenchKeyring {
    fn values(&self, _: &FunctionKey, _: &KeySource) -> Result<Vec<Vec<u8>>, KeyringError> {
        Ok(self.api_keys.clone())
    }

    fn file(&self, _: &FunctionKey, path: &str) -> Result<Vec<u8>, KeyringError> {
        if path == JWKS_FILE {
            Ok(self.jwks.clone())
        } else {
            Err(KeyringError::File {
                path: path.to_owned(),
                reason: "the bench holds no such file".to_owned(),
            })
        }
    }

    fn tls(&self, namespace: &str, name: &str) -> Result<CertPem, KeyringError> {
        Err(KeyringError::SecretNotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    fn default_tls(&self, _: &[String]) -> Option<Result<CertPem, KeyringError>> {
        None
    }
}

/// What the auth targets need: the keyring, the two Functions' specs and
/// the `Authorization` header values clients send.
pub struct AuthSetup {
    pub keyring: BenchKeyring,
    pub api_key_spec: AuthSpec,
    pub jwt_spec: AuthSpec,
    pub api_key_header: String,
    pub jwt_header: String,
}

impl AuthSetup {
    /// Makes the keys and the token (ES256 unless `FLINT_BENCH_JWT_ALG`
    /// says RS256).
    pub fn new() -> Result<Self, BenchError> {
        let rng = SystemRandom::new();
        let mut api_keys = Vec::with_capacity(API_KEYS);
        for _ in 0..API_KEYS {
            let mut raw = [0u8; 32];
            rng.fill(&mut raw)
                .map_err(|_| "no randomness for the API keys")?;
            api_keys.push(URL_SAFE_NO_PAD.encode(raw).into_bytes());
        }
        let api_key = String::from_utf8(api_keys.first().cloned().unwrap_or_default())?;
        let alg = std::env::var("FLINT_BENCH_JWT_ALG").unwrap_or_else(|_| "ES256".to_owned());
        let signer = match alg.as_str() {
            "ES256" => Signer::es256(&rng)?,
            "RS256" => {
                let path = std::env::var("FLINT_BENCH_JWT_RSA_KEY")
                    .map_err(|_| "RS256 needs FLINT_BENCH_JWT_RSA_KEY (a PKCS#1 DER key file)")?;
                Signer::rs256(&std::fs::read(&path).map_err(|e| format!("{path}: {e}"))?)?
            }
            other => return Err(format!("FLINT_BENCH_JWT_ALG={other}: ES256 or RS256").into()),
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "bench-user",
            "scope": "openid bench:read",
            "iat": now,
            "exp": now + TOKEN_SECONDS,
        });
        let mut header = Header::new(signer.alg);
        header.kid = Some(KID.to_owned());
        let token = jsonwebtoken::encode(&header, &claims, &signer.encoding)?;
        let jwks = serde_json::to_vec(&json!({ "keys": [signer.jwk] }))?;
        let api_key_spec = AuthSpec {
            api_keys: Some(ApiKeyAuth {
                keys: KeySource {
                    secret_name: Some("bench-keys".to_owned()),
                    ..KeySource::default()
                },
                header: None,
            }),
            jwt: None,
        };
        let jwt_spec = AuthSpec {
            api_keys: None,
            jwt: Some(JwtAuth {
                issuer: ISSUER.to_owned(),
                audiences: vec![AUDIENCE.to_owned()],
                jwks_url: None,
                jwks_file: Some(JWKS_FILE.to_owned()),
                algorithms: vec![signer.spec_alg],
                hmac_key: None,
                clock_skew_seconds: 60,
                required_claims: vec![RequiredClaim {
                    name: "scope".to_owned(),
                    values: vec!["bench:read".to_owned()],
                }],
                forward_claims: Vec::new(),
            }),
        };
        Ok(Self {
            keyring: BenchKeyring { api_keys, jwks },
            api_key_spec,
            jwt_spec,
            api_key_header: format!("Bearer {api_key}"),
            jwt_header: format!("Bearer {token}"),
        })
    }

    /// Writes the `Authorization` values to `dir`/`api-key` and `dir`/`jwt`.
    pub fn write(&self, dir: &Path) -> Result<(), BenchError> {
        for (name, value) in [("api-key", &self.api_key_header), ("jwt", &self.jwt_header)] {
            let path = dir.join(name);
            std::fs::write(&path, value).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// A token signing key with its public half as a JWK.
struct Signer {
    alg: Algorithm,
    spec_alg: JwtAlgorithm,
    encoding: EncodingKey,
    jwk: serde_json::Value,
}

impl Signer {
    /// A fresh P-256 key.
    fn es256(rng: &SystemRandom) -> Result<Self, BenchError> {
        let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(alg, rng).map_err(|_| "generating a P-256 key failed")?;
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), rng)
            .map_err(|e| format!("the P-256 key: {e}"))?;
        // An uncompressed point: 0x04, x, y.
        let point = pair.public_key().as_ref();
        let (x, y) = point
            .get(1..)
            .filter(|xy| xy.len() == 64)
            .map(|xy| xy.split_at(32))
            .ok_or("the P-256 public key is not an uncompressed point")?;
        Ok(Self {
            alg: Algorithm::ES256,
            spec_alg: JwtAlgorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": KID, "use": "sig", "alg": "ES256",
                "x": URL_SAFE_NO_PAD.encode(x),
                "y": URL_SAFE_NO_PAD.encode(y),
            }),
        })
    }

    /// The RSA key `der` (PKCS#1).
    fn rs256(der: &[u8]) -> Result<Self, BenchError> {
        let pair = RsaKeyPair::from_der(der).map_err(|e| format!("the RSA key: {e}"))?;
        let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
        Ok(Self {
            alg: Algorithm::RS256,
            spec_alg: JwtAlgorithm::RS256,
            encoding: EncodingKey::from_rsa_der(der),
            jwk: json!({
                "kty": "RSA", "kid": KID, "use": "sig", "alg": "RS256",
                "n": URL_SAFE_NO_PAD.encode(&public.n),
                "e": URL_SAFE_NO_PAD.encode(&public.e),
            }),
        })
    }
}
