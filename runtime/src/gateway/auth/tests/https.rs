//! Key sets over HTTPS (the cluster's only way): a server on 127.0.0.1
//! with a self-signed certificate, trusted through
//! `JwksSettings::extra_roots_pem` or not at all.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use flint_api::function::JwtAlgorithm::*;
use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::fixtures::*;
use crate::gateway::auth::{Credentials, FunctionAuth, JwksRegistry, JwksSettings};

/// Serves `body` over TLS on 127.0.0.1 with a fresh self-signed
/// certificate for that address: the URL, the certificate (PEM) and the
/// hit counter.
async fn https_server(body: Vec<u8>) -> (String, String, Arc<AtomicUsize>) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert_pem = certified.cert.pem();
    let chain = vec![CertificateDer::from(certified.cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/jwks", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let body = Bytes::from(body);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, counter, body) = (acceptor.clone(), Arc::clone(&counter), body.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |_req| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let body = body.clone();
                    async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, cert_pem, hits)
}

fn cluster_registry(extra_roots_pem: Option<Vec<u8>>) -> JwksRegistry {
    JwksRegistry::new(JwksSettings {
        extra_roots_pem,
        timeout: Duration::from_secs(2),
        ..JwksSettings::default()
    })
}

#[tokio::test]
async fn https_with_a_trusted_root() {
    let key = TestKey::es256("a");
    let (url, cert_pem, hits) = https_server(jwks(&[&key])).await;
    let registry = cluster_registry(Some(cert_pem.into_bytes()));
    let auth = FunctionAuth::new(
        &jwt_spec(remote_rule(&url, &[ES256])),
        Credentials::default(),
        &registry,
    )
    .unwrap();
    assert_eq!(check(&auth, &bearer(&key.sign(&claims()))).await, Ok(()));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn https_with_an_untrusted_certificate_is_jwks_unavailable() {
    let key = TestKey::es256("a");
    let (url, _, hits) = https_server(jwks(&[&key])).await;
    for roots in [None, Some(b"not a certificate".to_vec())] {
        let registry = cluster_registry(roots);
        let auth = FunctionAuth::new(
            &jwt_spec(remote_rule(&url, &[ES256])),
            Credentials::default(),
            &registry,
        )
        .unwrap();
        assert_eq!(
            check(&auth, &bearer(&key.sign(&claims()))).await,
            Err((401, "jwks_unavailable"))
        );
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "no request crossed an untrusted TLS session"
    );
}
