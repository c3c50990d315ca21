//! Certificates for the module's tests: made with rcgen, or with the
//! `openssl` command for the key encodings rcgen does not write.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls::sign::CertifiedKey;

/// The kind and encoding of a test certificate's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    /// ECDSA P-256 in PKCS#8 (rcgen).
    EcdsaPkcs8,
    /// Ed25519 in PKCS#8 (rcgen).
    Ed25519,
    /// ECDSA P-256 in SEC1 (openssl).
    EcdsaSec1,
    /// RSA 2048 in PKCS#1 (openssl).
    RsaPkcs1,
    /// ECDSA P-521 in PKCS#8, which the ring provider cannot sign with (openssl).
    EcdsaP521,
}

/// A self-signed certificate for `hosts` and its key, as PEM.
pub(crate) fn pem_pair(hosts: &[&str], key: Key) -> (String, String) {
    let names: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    let alg = match key {
        Key::EcdsaPkcs8 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Key::Ed25519 => &rcgen::PKCS_ED25519,
        Key::EcdsaSec1 | Key::RsaPkcs1 | Key::EcdsaP521 => return openssl_pair(hosts, key),
    };
    let pair = rcgen::KeyPair::generate_for(alg).unwrap();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .self_signed(&pair)
        .unwrap();
    (cert.pem(), pair.serialize_pem())
}

/// A servable certificate for `hosts`.
pub(crate) fn certified(hosts: &[&str]) -> Arc<CertifiedKey> {
    let (cert, key) = pem_pair(hosts, Key::EcdsaPkcs8);
    Arc::new(super::certified_key(cert.as_bytes(), key.as_bytes()).unwrap())
}

fn openssl_pair(hosts: &[&str], key: Key) -> (String, String) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "flint-tls-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| -> PathBuf { dir.join(name) };
    let newkey: &[&str] = match key {
        Key::RsaPkcs1 => &["-newkey", "rsa:2048"],
        Key::EcdsaP521 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
        _ => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    };
    let san = hosts
        .iter()
        .map(|h| format!("DNS:{h}"))
        .collect::<Vec<_>>()
        .join(",");
    let subject = format!("/CN={}", hosts.first().copied().unwrap_or("test"));
    let (cert, pkcs8) = (path("cert.pem"), path("key.pem"));
    let mut args: Vec<&str> = vec!["req", "-x509", "-nodes", "-days", "30"];
    args.extend_from_slice(newkey);
    let san_arg = format!("subjectAltName={san}");
    args.extend_from_slice(&["-subj", &subject, "-addext", &san_arg]);
    let (cert_s, key_s) = (cert.to_string_lossy(), pkcs8.to_string_lossy());
    args.extend_from_slice(&["-keyout", &key_s, "-out", &cert_s]);
    openssl(&args);
    let converted = path("converted.pem");
    let conv_s = converted.to_string_lossy();
    let key_file = match key {
        Key::RsaPkcs1 => {
            openssl(&["rsa", "-traditional", "-in", &key_s, "-out", &conv_s]);
            &converted
        }
        Key::EcdsaSec1 => {
            openssl(&["ec", "-in", &key_s, "-out", &conv_s]);
            &converted
        }
        _ => &pkcs8,
    };
    let pair = (
        std::fs::read_to_string(&cert).unwrap(),
        std::fs::read_to_string(key_file).unwrap(),
    );
    let _ = std::fs::remove_dir_all(&dir);
    pair
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command (needed to make test keys rcgen cannot)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
