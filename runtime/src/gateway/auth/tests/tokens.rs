//! Keys, tokens and a JWKS server, made with public crates only: shared
//! by the rule tests here and the gateway's end-to-end tests
//! (`runtime/tests/gateway_access.rs` includes this file). The RSA key is
//! fixed (ring cannot generate those); the others are generated per test.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair,
};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "flint-test";

/// A fixed 2048-bit RSA test key (PKCS#1), made with `openssl genrsa`:
/// for tests only, it protects nothing.
const RSA_PRIVATE_PEM: &str = "\
-----BEGIN RSA PRIVATE KEY-----\n\
MIIEpAIBAAKCAQEAvllN77ULuyRTbltGjuGjm6zypVP2sL35AZuyt+I53YYfRliv\n\
FIU5hZuEXG0dZiMSSjZyJNITgHalVkNedbnY7hjYnNWvKDRvUjm796Mp6Z73llyc\n\
PmAXNdQbYsA3oC2IhGt7UQOBwoeaCwDbNFzYyFFWKTQQCbxOPsB5SotrICwTPo1P\n\
YWxJJgiXfp3a0p8dSM1Yup3XzEAWaR4/Wo2JBTHDpbyj7VgTlXYSSmC8u19HGT57\n\
LSjodxPfK9pdP4BgSZ+GsofJfrYlCBisaTx7PJvWOOS+HSZe7HCLVLM+i5lty+H4\n\
5v0FM4tqC1pMxJEFdYuI7XZaqbpbwXgg9mqySQIDAQABAoIBAAL4RLmFMxon3m9d\n\
2DN5fMJ8h8qhjTtDs4NdaQPqcSmuIoXH829YBsY5X27LuwYxbOMgh1ZgurIp57l5\n\
Upt2m1ZXp+WGhfWUH9qCERczgf9lngpIBp4IhMQvu3+mbRfALh2WybVBX0BoOjSK\n\
vmDKRA2YC0aYS9nDCNt8yEer9i9pybk8PUSZi0rvkSbNlyn5H5h1e4mBY3+UXfuA\n\
u0t1REzvtw3Vi357TwUKRNDCPlF0PkcATF+948inHQYG7Kbn7tLqgH38FkKkGppk\n\
9H0hl4wB/+kgD7P6HOBva+q2wzrCzuuh+QzQiAndaGpZKVC8IQWC+x2UumVrM7k6\n\
kGJ1XsECgYEA7P+e3SjAjj+gvkvft1w+7rixqZx5T7tpNHO1R9XEvz3VEBjoyaNR\n\
1v4b2OdLUWD6okvk4D8gvZdUWKFBBgnusddTCaMvu9GeC/F4c/TeNmvZKPo4n5//\n\
RYETvqS7lH6Lh0l17bhJIm4hjihpOCwTgkX0jasdPaC2CREe3fOMhrkCgYEAzZwz\n\
zASkPvk34Z428uAVbiKtphuITTzP+2dF91iURYjEOvx3YptxZLARBy597Z6aShuy\n\
JB7pncgdPmaPJ+6xq7ry4VXNagEgTIoHxsQ3CrSVIWI7PybyjxRpGsST6ELfqY9X\n\
t90QDryJ9fxVr9lZZTtbPLbu1qU4nTC2/ufjwBECgYEAlbaE7MCpozKeoJfdoz8q\n\
ojMaSEMIf02sj+3oPpDT0NuGlLynkXkSYfX0MXkrIyVYLt4yn1ZBoILQTYzQPrhX\n\
iRC07AmiRcuNQ44uwVGWblqCvFgVHQE9iPKZPn1h4dRu3++QB7O6v31CxULR9SIi\n\
0NDQRA4sUpoLZH7kOOF5jEECgYBy731476NM3I2jXokC7catAU+myj9ARd1RgOJ4\n\
qRiBYjmna5flFFWn3lA2foPAf+dpw9+qF2mqXMIULsqZnPHOuLuqwQcJ2cVPY92C\n\
/A50uoue1MWfwMrYtqUmZHr12+QhadK0IiwmwLgyPLM9kLdLQon2/5+1dziVjjTN\n\
e50xsQKBgQC+WtIiBF8pT73GGRKGFHSNPjM1w3WajUrf0sNtRvO9TGooFs97pSLw\n\
qN/J2VjTWrMlKsf2oL3WijfL4cc22cWPeUkCgFFQ13uPq3SjYyXOwoyPN6/bjrL6\n\
ZiDsS0MebpAx8tCmz0M/WVzNh5iNRXSI6I9krNgSNoOaGD2uHG7CAQ==\n\
-----END RSA PRIVATE KEY-----\n";

/// Its public key as `openssl rsa -pubout` writes it: what an attacker
/// would use as an HMAC secret in an algorithm-confusion attack.
pub const RSA_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAvllN77ULuyRTbltGjuGj\n\
m6zypVP2sL35AZuyt+I53YYfRlivFIU5hZuEXG0dZiMSSjZyJNITgHalVkNedbnY\n\
7hjYnNWvKDRvUjm796Mp6Z73llycPmAXNdQbYsA3oC2IhGt7UQOBwoeaCwDbNFzY\n\
yFFWKTQQCbxOPsB5SotrICwTPo1PYWxJJgiXfp3a0p8dSM1Yup3XzEAWaR4/Wo2J\n\
BTHDpbyj7VgTlXYSSmC8u19HGT57LSjodxPfK9pdP4BgSZ+GsofJfrYlCBisaTx7\n\
PJvWOOS+HSZe7HCLVLM+i5lty+H45v0FM4tqC1pMxJEFdYuI7XZaqbpbwXgg9mqy\n\
SQIDAQAB\n\
-----END PUBLIC KEY-----\n";

/// Its modulus and exponent, base64url, as in a JWK.
const RSA_N: &str = "vllN77ULuyRTbltGjuGjm6zypVP2sL35AZuyt-I53YYfRlivFIU5hZuEXG0dZiMSSjZyJNITgHalVkNedbnY7hjYnNWvKDRvUjm796Mp6Z73llycPmAXNdQbYsA3oC2IhGt7UQOBwoeaCwDbNFzYyFFWKTQQCbxOPsB5SotrICwTPo1PYWxJJgiXfp3a0p8dSM1Yup3XzEAWaR4_Wo2JBTHDpbyj7VgTlXYSSmC8u19HGT57LSjodxPfK9pdP4BgSZ-GsofJfrYlCBisaTx7PJvWOOS-HSZe7HCLVLM-i5lty-H45v0FM4tqC1pMxJEFdYuI7XZaqbpbwXgg9mqySQ";
const RSA_E: &str = "AQAB";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A signing key with its JWK (public half).
pub struct TestKey {
    pub alg: Algorithm,
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

impl TestKey {
    pub fn rsa(kid: &str) -> Self {
        let body: String = RSA_PRIVATE_PEM
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(body).unwrap();
        Self {
            alg: Algorithm::RS256,
            kid: kid.into(),
            encoding: EncodingKey::from_rsa_der(&der),
            jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": RSA_N, "e": RSA_E}),
        }
    }

    pub fn es256(kid: &str) -> Self {
        Self::ec(
            kid,
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            Algorithm::ES256,
            "P-256",
        )
    }

    pub fn es384(kid: &str) -> Self {
        Self::ec(
            kid,
            &ECDSA_P384_SHA384_FIXED_SIGNING,
            Algorithm::ES384,
            "P-384",
        )
    }

    fn ec(
        kid: &str,
        curve: &'static ring::signature::EcdsaSigningAlgorithm,
        alg: Algorithm,
        crv: &str,
    ) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(curve, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(curve, pkcs8.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref();
        let half = (point.len() - 1) / 2;
        Self {
            alg,
            kid: kid.into(),
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "kid": kid, "crv": crv,
                "x": URL_SAFE_NO_PAD.encode(&point[1..1 + half]),
                "y": URL_SAFE_NO_PAD.encode(&point[1 + half..]),
            }),
        }
    }

    pub fn ed25519(kid: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        Self {
            alg: Algorithm::EdDSA,
            kid: kid.into(),
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "OKP", "kid": kid, "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            }),
        }
    }

    /// A token with `claims`, signed by this key, naming its `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// A key set document holding `keys`' public halves.
pub fn jwks(keys: &[&TestKey]) -> Vec<u8> {
    serde_json::to_vec(&json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}))
        .unwrap()
}

/// Valid claims: the test issuer and audience, `sub`, ten minutes left.
pub fn claims() -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "exp": now() + 600, "iat": now()})
}

/// `claims()` with `changes` merged in (a `null` removes the claim).
pub fn claims_with(changes: Value) -> Value {
    let mut claims = claims();
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

/// A token that is signed by nothing: `alg: none`.
pub fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
    )
}

/// An HS256 token signed with `secret`, naming `kid`.
pub fn hs256(secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(Into::into);
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// What the JWKS server answers.
#[derive(Clone)]
pub enum Answer {
    /// 200 with this body and `Cache-Control: max-age=600`.
    Keys(Vec<u8>),
    /// This status, empty body.
    Status(StatusCode),
    /// 302 to this location.
    Redirect(String),
    /// The keys, after a delay.
    Slow(Duration, Vec<u8>),
}

/// A JWKS server on 127.0.0.1 counting its requests.
pub struct JwksServer {
    pub url: String,
    hits: Arc<AtomicUsize>,
    answer: Arc<Mutex<Answer>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    pub async fn start(answer: Answer) -> Self {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        let hits = Arc::new(AtomicUsize::new(0));
        let answer = Arc::new(Mutex::new(answer));
        let (h, a) = (Arc::clone(&hits), Arc::clone(&answer));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (h, a) = (Arc::clone(&h), Arc::clone(&a));
                tokio::spawn(async move {
                    let service = service_fn(move |_req| {
                        let (h, a) = (Arc::clone(&h), Arc::clone(&a));
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            let answer = a.lock().unwrap().clone();
                            let keys = |body: Vec<u8>| {
                                Response::builder()
                                    .header(header::CONTENT_TYPE, "application/json")
                                    .header(header::CACHE_CONTROL, "public, max-age=600")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap()
                            };
                            let response = match answer {
                                Answer::Keys(body) => keys(body),
                                Answer::Slow(delay, body) => {
                                    tokio::time::sleep(delay).await;
                                    keys(body)
                                }
                                Answer::Status(status) => Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                                Answer::Redirect(location) => Response::builder()
                                    .status(StatusCode::FOUND)
                                    .header(header::LOCATION, location)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            };
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            url,
            hits,
            answer,
            task,
        }
    }

    /// How many requests it answered (or started answering).
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Answers `answer` from now on.
    pub fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }
}
